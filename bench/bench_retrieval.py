"""Chunk-level emotion retrieval (issue 6, item 7): do the rankers find the more emotional chunks?

    python bench/bench_retrieval.py --pretrained ../Chunk-Level-Emotion-Retrieval    # ~10 min on 2 cores
    python bench/bench_retrieval.py --emos Act,Val,Dom                                # also V/D on the spliced set
    python bench/bench_retrieval.py --published                                       # published ranker training

Test sets with known chunk-level truth, scored by evaluate_retrieval.py (pair accuracy: the fraction of
chunk pairs from two parts of different true value ranked in the right order, 0.5 = chance; Kendall tau
between rank and the per-chunk truth):
  spliced Emo-DB   make_spliced_set.py on the test speakers (03, 08) of prepare_emodb.py's fixed split: an
                   anger+sadness or boredom+happiness pair of one speaker joined by a 0.3 s pause (both orders)
  demo corpus      make_demo_corpus.py's Test speakers, whose synthetic arousal follows a trajectory within
                   the utterance (flat, rising, falling, peak); arousal only
Rankers (one per seed; ranking sequences by generate_ranking_seqence.py):
  Emo-DB rankers   training_ranker.py on the 6 Train speakers of the fixed split (the same rankers as
                   bench_emodb.py; shared through --work). On the demo corpus they run cross-corpus with
                   --feature-norm corpus (the demo corpus' own statistics)
  demo rankers     training_ranker.py on the demo corpus' Train speakers (in-domain for the demo rows)
  published v1.6   the authors' released MSP-Podcast rankers (--pretrained), published NormTerm
Baselines: loudness (chunks ranked by RMS energy) and random (one permutation per seed).
Default (reduced for a 2-core CPU, printed with the results): rankers -ep 1 with 512 pairs per epoch,
-batch 16, lr 1e-3. Emo-DB clips are cut to 2.0 s in the shared copy, so each spliced utterance is 4.3 s.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402
from bench_emodb import add_ranker_args, published_rankers, ranker_steps  # noqa: E402

NAME = 'retrieval'
SYSTEMS = {'emodb': 'Emo-DB rankers (6 train speakers)', 'demo': 'demo-corpus rankers (Train speakers)',
           'published': 'published v1.6 rankers (MSP-Podcast)', 'loudness': 'loudness (RMS) baseline',
           'random': 'random ranks'}
SETS = {'spliced': 'spliced Emo-DB (test speakers)', 'demo': 'demo corpus (Test)'}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pretrained', default=A.default_pretrained(),
                   help="root of the authors' repository (its v1.6 rankers and NormTerm); omitted: no published row")
    p.add_argument('--emos', default='Act', help='attributes scored on the spliced set (the demo corpus has arousal '
                   'truth only): Act, Dom, Val, a comma list or all')
    p.add_argument('--no-demo', action='store_true', help='skip the demo corpus rows')
    p.add_argument('--n', type=int, default=420, help='utterances of the demo corpus (make_demo_corpus.py --n)')
    add_ranker_args(p)
    p.add_argument('--published', action='store_true', help='published ranker training: -ep 20 -batch 128, 100k '
                   'pairs per epoch, lr 1e-4')
    A.add_emodb_args(p)
    A.add_common_args(p)
    return p


def evaluate_step(corpus, rankseq, emo, out, baseline=None, seed=0):
    argv = ['--corpus', corpus, '--split', 'Test', '--emo', emo, '--out', out, '--seed', seed]
    argv += ['--rankseq', rankseq] if rankseq else []
    argv += ['--baseline', *baseline] if baseline else []
    return ('evaluate_retrieval', argv, Path(out).with_suffix('.log'), Path(out).with_suffix('.done'))


def rankseq_step(corpus, feats, emo, out, ckpt=None, pretrained=None, norm=None, limit=()):
    argv = ['-emo', emo, '-set', 'Test', '--corpus', corpus, '--features', feats, '--out', out, '-batch', 64,
            '--workers', 0, '--device', 'cpu', *limit]
    argv += ['--pretrained', pretrained] if pretrained else ['--checkpoint', ckpt]
    argv += ['--feature-norm', norm] if norm else []
    return ('generate_ranking_seqence', argv, Path(out) / f'rankseq_{emo}.log', Path(out) / f'.rankseq_{emo}.done')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    args.cmd = A.command_line(__file__, argv)
    if args.published:
        published_rankers(args)
    from utils import parse_emos
    emos, seeds = parse_emos(args.emos), A.seeds_of(args.seeds)
    settings = dict(seeds=seeds, emos=emos, ranker_epochs=args.ranker_epochs, ranker_pairs_per_epoch=args.ranker_pairs,
                    ranker_batch=args.ranker_batch, ranker_lr=args.ranker_lr, pretrained=args.pretrained,
                    demo=not args.no_demo, jobs=args.jobs, reduced=not args.published)
    info = A.header(NAME, settings)
    t0 = time.time()
    data, work = Path(args.data), Path(args.work)
    log_dir = work / 'bench_retrieval' / 'logs'
    emodb = A.emodb_fold(args, 0, 1, log_dir)
    emodb_lld = A.emodb_features(args, emodb, log_dir)
    spliced = data / f'{A.emodb_name(args)}_spliced_test'
    if not (spliced / 'ChunkTruth' / 'chunk_truth.json').exists():
        A.run_step('make_spliced_set', [emodb, spliced, '--from-splits', 'Test1', '--force'], log_dir / 'spliced.log')
    sets = {'spliced': (spliced, A.ensure_features(spliced, data / 'features' / spliced.name / 'lld', 'lld', log_dir))}
    if not args.no_demo:
        demo = A.ensure_demo_corpus(data / 'demo_corpus', log_dir, n=args.n)
        sets['demo'] = (demo, A.ensure_features(demo, data / 'features' / demo.name / 'lld', 'lld', log_dir))
    ev = work / 'bench_retrieval' / A.tag(ep=args.ranker_epochs, pairs=args.ranker_pairs, batch=args.ranker_batch,
                                          lr=args.ranker_lr, limit=args.limit, emodb=A.emodb_name(args), n=args.n)
    jobs = []        # each job: a ranker chain, then ranking sequences + evaluate_retrieval on the test sets

    def targets(key, ckpt=None, pretrained=None, emo='Act', norm_of=None, only=None):
        steps, outs = [], {}
        for s, (corpus, feats) in sets.items():
            if (s == 'demo' and emo != 'Act') or (only and s != only):
                continue
            d = ev / key / s
            steps.append(rankseq_step(corpus, feats, emo, d, ckpt, pretrained, (norm_of or {}).get(s),
                                      A.limit_args(args)))
            out = d / f'eval_{emo}.json'
            steps.append(evaluate_step(corpus, d / f'testing_{emo}.json', emo, out))
            outs[(s, emo)] = out
        return steps, outs

    for seed in seeds:
        for e in emos:
            rsteps, ckpt, _ = ranker_steps(args, emodb, emodb_lld, seed, e, work / 'rankers')
            steps, outs = targets(f'emodb_s{seed}_{e}', ckpt, emo=e, norm_of={'demo': 'corpus'})
            jobs.append({'key': ('emodb', seed, e), 'outs': outs, 'fresh': args.fresh, 'steps': rsteps + steps})
        if 'demo' in sets:
            rsteps, ckpt, _ = ranker_steps(args, *sets['demo'], seed, 'Act', work / 'rankers')
            steps, outs = targets(f'demo_s{seed}_Act', ckpt, only='demo')      # in-domain rows only
            jobs.append({'key': ('demo', seed, 'Act'), 'outs': outs, 'fresh': args.fresh, 'steps': rsteps + steps})
        for s, (corpus, _) in sets.items():
            for e in (emos if s == 'spliced' else ['Act']):
                out = ev / f'baselines_s{seed}' / s / f'eval_{e}.json'
                jobs.append({'key': ('baselines', seed, s, e), 'outs': {(s, e): out}, 'fresh': args.fresh,
                             'steps': [evaluate_step(corpus, None, e, out, ['loudness', 'random'], seed)]})
    if args.pretrained:
        for e in emos:
            steps, outs = targets(f'published_{e}', pretrained=args.pretrained, emo=e)
            jobs.append({'key': ('published', None, e), 'outs': outs, 'fresh': args.fresh, 'steps': steps})
    results, failed = A.run_jobs(jobs, args.jobs, desc=NAME)

    runs = []    # one row per (system, seed, set, emo)
    for job in jobs:
        if job['key'] not in results:
            continue
        for (s, e), out in job['outs'].items():
            res = json.loads(Path(out).read_text())['results']
            for name, r in res.items():
                system = name if job['key'][0] == 'baselines' else job['key'][0]
                seed = job['key'][1]
                if system == 'loudness' and seed != seeds[0]:
                    continue                    # deterministic: count it once
                runs.append({'system': system, 'seed': seed, 'set': s, 'emo': e, 'pair_acc': r['pair_acc_macro'],
                             'pair_acc_micro': r['pair_acc_micro'], 'tau': r['tau_mean'], 'n_utts': r['n_utts'],
                             'n_pairs': r['n_pairs'], 'by_trajectory': r.get('by_trajectory')})
    cols = [(s, e) for s in sets for e in (emos if s == 'spliced' else ['Act'])]
    head = ['System'] + [f'{SETS[s]}: {e} pair acc / tau' for s, e in cols]
    table, summary = [], []
    for sys_, label in SYSTEMS.items():
        rr = [r for r in runs if r['system'] == sys_]
        if not rr:
            continue
        cells, s_ = [], {'system': sys_}
        for s, e in cols:
            x = [r for r in rr if r['set'] == s and r['emo'] == e]
            if x:
                s_[f'{s}_{e}'] = {'pair_acc': A.mean_std([r['pair_acc'] for r in x])[:2],
                                  'tau': A.mean_std([r['tau'] for r in x])[:2], 'n_utts': x[0]['n_utts']}
            cells.append(f"{A.fmt_ms([r['pair_acc'] for r in x])} / {A.fmt_ms([r['tau'] for r in x])}" if x else '–')
        summary.append(s_)
        det = ' (deterministic)' if sys_ in ('loudness', 'published') else ''
        table.append([label + det] + cells)
    n_utts = {f'{s}': next((r['n_utts'] for r in runs if r['set'] == s), 0) for s in sets}
    table = A.markdown_table(head, table)
    wall = time.time() - t0
    print(f'\n{table}\n(test utterances: {n_utts})\n')
    print(f'RESULT {NAME}: ' + '; '.join(
        f"{s['system']}: " + ', '.join(f"{k} {v['pair_acc'][0]:.3f}" for k, v in s.items() if k != 'system')
        for s in summary) + f' (pair accuracy, 0.5 = chance; {wall / 60:.1f} min)')
    A.report_failures(failed)
    png = plot(summary, cols, args, Path(args.images)) if summary else None
    md = (f'### Chunk-level retrieval: rankers vs loudness vs random (`bench_{NAME}`)\n\n'
          f'Command: `{args.cmd}`  \n'
          f'Settings: seeds {seeds}; rankers -ep {args.ranker_epochs}, {args.ranker_pairs} pairs/epoch, '
          f'-batch {args.ranker_batch}, lr {args.ranker_lr}'
          f'{" (REDUCED from the published settings)" if not args.published else ""}; '
          f'test utterances {n_utts}.  \n'
          f'{A.machine_md(info)}; {A.wall_note(wall, results)}.  \n'
          f'Pair accuracy (macro over utterances; 0.5 = chance, 1 = every cross-part chunk pair in the true order) / '
          f'Kendall tau, mean ± std over seeds. {A.TRUNCATION_NOTE}\n\n{table}\n')
    return A.report(NAME, md, failed, args.out, settings=settings, info=info, wall=wall, png=png, command=args.cmd,
                    summary=summary, runs=runs, n_utts=n_utts, note=A.TRUNCATION_NOTE)


def plot(summary, cols, args, out_dir):
    plt = A.plt_agg()
    colors = {'emodb': '#1f77b4', 'demo': '#2ca02c', 'published': '#9467bd', 'loudness': '#ff7f0e',
              'random': '#7f7f7f'}
    fig, ax = plt.subplots(figsize=(2.6 * len(cols) + 4, 4.4))
    nmax = max(sum(f'{c[0]}_{c[1]}' in s for s in summary) for c in cols)
    w = 0.8 / nmax
    for i, c in enumerate(cols):
        here = [s for s in summary if f'{c[0]}_{c[1]}' in s and np.isfinite(s[f'{c[0]}_{c[1]}']['pair_acc'][0])]
        for j, s in enumerate(here):
            (y, e), x = s[f'{c[0]}_{c[1]}']['pair_acc'], i + (j - (len(here) - 1) / 2) * w
            ax.bar(x, y, w, yerr=e, capsize=3, color=colors[s['system']], label=SYSTEMS[s['system']])
            ax.text(x, y + e + 0.01, f'{y:.2f}', ha='center', va='bottom', fontsize=8)
    handles = {lab: h for h, lab in zip(*ax.get_legend_handles_labels())}
    handles = {lab: handles[lab] for lab in SYSTEMS.values() if lab in handles}
    ax.axhline(0.5, color='k', lw=0.8, ls='--')
    ax.text(len(cols) - 0.5, 0.505, 'chance', ha='right', va='bottom', fontsize=8)
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([f'{SETS[s]}\n{e}' for s, e in cols], fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel(f'pair accuracy (mean ± std over seeds {args.seeds})')
    ax.grid(axis='y', alpha=0.3)
    ax.set_title(f'Chunk retrieval; rankers -ep {args.ranker_epochs} x {args.ranker_pairs} pairs '
                 f'(Emo-DB clips cut to 2.0 s)', fontsize=9)
    fig.legend(handles.values(), handles.keys(), loc='lower center', ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return A.save_png(fig, NAME, out_dir)


if __name__ == '__main__':
    main()
