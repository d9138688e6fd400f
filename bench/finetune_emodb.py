"""Fine-tuning the published models on a small corpus (issue 9, item 4): Emo-DB, speaker-disjoint folds.

    python bench/finetune_emodb.py --pretrained ../Chunk-Level-Emotion-Retrieval            # Act, ~15 min on 2 cores
    python bench/finetune_emodb.py --pretrained ../Chunk-Level-Emotion-Retrieval --emos all # Act, Dom, Val
    python bench/finetune_emodb.py --pretrained DIR --published        # published epochs and batch (hours on CPU)

Rows (each under --feature-norm train and speaker, see --norms):
  (a) zero-shot   the authors' released MSP-Podcast v1.6 models (testing.py --pretrained DIR), also with their
                  own NormTerm (feature norm 'published') as the reference
  (b) scratch     training.py from random weights on the fold's Train speakers
  (c) fine-tuned  training.py --init-from DIR (all weights trained, --ft-lr)
  (d) frozen      training.py --init-from DIR --freeze lstm (only fc1/fc2 trained, --freeze-lr)
Labels are z-normalised with the published label NormTerm for (a), (c), (d) (the released heads are
calibrated to it) and with the fold's Train labels for (b). Target curves: ranking sequences of the
published rankers (--curves published) or constant curves (--curves constant).

Folds: Emo-DB's 10 speakers in pairs 03,08 | 09,10 | 11,12 | 13,14 | 15,16; fold k tests pair k and
validates (best epoch) on pair k+1; the other six speakers train. Every speaker is tested once, so for
each seed the test predictions of all folds are pooled: CCC per attribute over all 535 utterances and
the arousal AUC (predicted Act of anger, happiness, fear vs boredom, sadness). Reported: mean ± std over
--seeds. Corpus: prepare_emodb.py (real speech; dimensional labels from a category -> PAD table, so CCC
measures how well the category's PAD point is recovered). The shared Emo-DB copy is cut to 2.0 s per file.

Default (reduced for a 2-core CPU, printed with the results): -ep 1, -batch 8 (about 40 updates per
model), Act only. --published uses -ep 30 -batch 128 for every trained model.
The authors' models are not part of this repository: clone https://github.com/winston-lin-wei-cheng/
Chunk-Level-Emotion-Retrieval and pass its root with --pretrained (rows (a), (c), (d) need it).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402

NAME = 'finetune_emodb'
CONDS = {'zeroshot': '(a) zero-shot', 'scratch': '(b) scratch', 'finetune': '(c) fine-tuned',
         'freeze': '(d) frozen LSTM'}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pretrained', default=A.default_pretrained(),
                   help="root of the authors' repository (NormTerm/, trained_seq2seq_model_v1.6/, ...); without "
                        "it only (b) runs")
    p.add_argument('--folds', type=int, default=5, help='speaker-disjoint folds of 2 test speakers (1..5)')
    p.add_argument('--emos', default='Act', help="attributes: Act, Dom, Val, a comma list or all (default Act: "
                   "its CCC and the arousal AUC; 'all' takes about 3x as long)")
    p.add_argument('--norms', default='train,speaker', help='feature normalisation scopes to compare (train, speaker, '
                   'corpus)')
    p.add_argument('--conds', default='zeroshot,scratch,finetune,freeze', help='which of the rows (a)-(d) to run')
    p.add_argument('-ep', '--epochs', type=int, default=1, help='training epochs of every trained model (published 30)')
    p.add_argument('-batch', '--batch', type=int, default=8, help='utterances per step (published 128)')
    p.add_argument('--lr', type=float, default=1e-3, help='learning rate from scratch (published 1e-3)')
    p.add_argument('--ft-lr', type=float, default=1e-4, help='learning rate of full fine-tuning (c)')
    p.add_argument('--freeze-lr', type=float, default=1e-3, help='learning rate of the head with a frozen LSTM (d)')
    p.add_argument('--curves', default=None, choices=['published', 'constant'],
                   help='target curves: ranking sequences of the published rankers (default with --pretrained) '
                        'or constant curves at the utterance mean')
    p.add_argument('--published', action='store_true', help='published training settings: -ep 30 -batch 128')
    A.add_emodb_args(p)
    A.add_common_args(p)
    return p


def setup(args, log_dir):
    """Fold corpora, the LLD store (shared by all folds: same audio, same names) and the target curves."""
    folds = [A.emodb_fold(args, k, args.folds, log_dir) for k in range(args.folds)]
    feats = A.emodb_features(args, folds[0], log_dir)
    work = Path(args.work) / NAME / A.emodb_name(args)
    if args.curves == 'published':
        rs = work / f'rankseq_published_{A.tag(pretrained=str(Path(args.pretrained).resolve()), limit=args.limit)}'
        for e in args.emo_list:
            if not (rs / f'training_{e}.json').exists() or args.fresh:
                A.run_step('generate_ranking_seqence', ['-emo', e, '-set', 'all', '--pretrained', args.pretrained,
                           '--corpus', folds[0], '--features', feats, '--out', rs.with_name(rs.name + '_raw'),
                           '--workers', 0, '--device', 'cpu', *A.limit_args(args)],
                           log_dir / f'rankseq_published_{e}.log')
                A.merge_rankseq(rs.with_name(rs.name + '_raw'), e, rs)
    else:
        rs = A.constant_rankseq(folds[0], work / 'rankseq_constant')
    return folds, feats, rs


def make_jobs(args, folds, feats, rs, log_dir):
    jobs = []
    work = Path(args.work) / NAME / A.tag(ep=args.epochs, batch=args.batch, lr=args.lr, ft=args.ft_lr,
                                          fz=args.freeze_lr, curves=args.curves, folds=args.folds, limit=args.limit,
                                          data=A.emodb_name(args))
    common = ['--features', feats, '--workers', 0, '--device', 'cpu', *A.limit_args(args)]
    if 'zeroshot' in args.cond_list and args.pretrained:
        for k, fold in enumerate(folds):
            # the release's 'train' statistics are its published ones (MSP-Podcast v1.6 Train): no separate row
            for norm in ['published'] + [n for n in args.norm_list if n != 'train']:
                for e in args.emo_list:
                    d = work / 'zeroshot' / norm / f'fold{k}'
                    argv = ['-emo', e, '--pretrained', args.pretrained, '--corpus', fold, '--feature-norm', norm,
                            '-set', 'Test', '-batch', 64, '--out', d, *common]
                    jobs.append({'key': ('zeroshot', norm, None, k, e), 'dir': d, 'fresh': args.fresh,
                                 'steps': [('testing', argv, d / f'test_{e}.log', d / f'.test_{e}.done')]})
    for cond in [c for c in args.cond_list if c != 'zeroshot']:
        if cond != 'scratch' and not args.pretrained:
            continue
        lr = {'scratch': args.lr, 'finetune': args.ft_lr, 'freeze': args.freeze_lr}[cond]
        extra = [] if cond == 'scratch' else ['--init-from', args.pretrained]
        extra += ['--freeze', 'lstm'] if cond == 'freeze' else []
        label_norm = 'train' if cond == 'scratch' else 'published'
        for seed in args.seed_list:
            for norm in args.norm_list:
                for k, fold in enumerate(folds):
                    for e in args.emo_list:
                        d = work / cond / norm / f's{seed}' / f'fold{k}'
                        ckpt = d / f'LSTM_epoch{args.epochs}_batch{args.batch}_EmoRankerSeq_{e}.pth.tar'
                        train = ['-emo', e, '-ep', args.epochs, '-batch', args.batch, '--lr', lr, '--corpus', fold,
                                 '--rankseq', rs, '--out', d, '--seed', seed, '--feature-norm', norm,
                                 '--label-norm', label_norm, '--overwrite', *extra, *common]
                        test = ['-emo', e, '--checkpoint', ckpt, '--corpus', fold, '-set', 'Test', '-batch', 64,
                                '--out', d / 'test', *common]
                        jobs.append({'key': (cond, norm, seed, k, e), 'dir': d, 'fresh': args.fresh,
                                     'steps': [('training', train, d / f'train_{e}.log', d / f'.train_{e}.done'),
                                               ('testing', test, d / f'test_{e}.log', d / f'.test_{e}.done')]})
    # longest first keeps both workers busy to the end
    cost = {'scratch': 3, 'finetune': 3, 'freeze': 1, 'zeroshot': 0.5}
    return sorted(jobs, key=lambda j: -cost[j['key'][0]])


def collect(args, jobs, results):
    """Per (cond, norm, seed): pooled test predictions over folds -> CCC per attribute, arousal AUC."""
    preds = {}      # (cond, norm, seed) -> emo -> list of DataFrames
    secs = {}
    for job in jobs:
        if job['key'] not in results:
            continue
        cond, norm, seed, k, e = job['key']
        p = job['dir'] / ('test' if cond != 'zeroshot' else '') / f'{e}_Test_predictions.csv'
        preds.setdefault((cond, norm, seed), {}).setdefault(e, []).append(pd.read_csv(p).assign(fold=k))
        if cond != 'zeroshot':
            s = results[job['key']][0]['seconds']
            if s is not None:
                secs.setdefault((cond, norm), []).append(s)
    rows = []
    for (cond, norm, seed), by_emo in preds.items():
        r = {'cond': cond, 'norm': norm, 'seed': seed}
        for e, dfs in by_emo.items():
            df = pd.concat(dfs)
            complete = len(dfs) == args.folds
            r[f'ccc_{e}'] = A.ccc(df.Pred, df.Label) if complete else float('nan')
            r[f'fold_ccc_{e}'] = [round(A.ccc(g.Pred, g.Label), 4) for _, g in df.groupby('fold')]
            r[f'n_{e}'] = len(df)
            if e == 'Act':
                r['auc_Act'] = A.arousal_auc(df.FileName, df.Pred) if complete else float('nan')
        rows.append(r)
    return rows, {f'{c}/{n}': round(float(np.mean(v)), 1) for (c, n), v in secs.items()}


def summarise(args, rows, secs):
    table, summary = [], []
    order = [(c, n) for c in CONDS for n in (['published'] if c == 'zeroshot' else []) + args.norm_list]
    for cond, norm in order:
        rr = [r for r in rows if r['cond'] == cond and r['norm'] == norm]
        if not rr:
            continue
        s = {'cond': cond, 'norm': norm, 'label_norm': 'train' if cond == 'scratch' else 'published',
             'seeds': sorted({r['seed'] for r in rr if r['seed'] is not None}),
             'seconds_per_model': secs.get(f'{cond}/{norm}')}
        for e in args.emo_list:
            s[f'ccc_{e}'] = A.mean_std([r.get(f'ccc_{e}') for r in rr])[:2]
        if 'Act' in args.emo_list:
            s['auc_Act'] = A.mean_std([r.get('auc_Act') for r in rr])[:2]
        summary.append(s)
        det = ' (deterministic)' if cond == 'zeroshot' else ''
        table.append([CONDS[cond] + det, norm, s['label_norm']]
                     + [A.fmt_ms([r.get(f'ccc_{e}') for r in rr]) for e in args.emo_list]
                     + ([A.fmt_ms([r.get('auc_Act') for r in rr])] if 'Act' in args.emo_list else [])
                     + [f"{s['seconds_per_model']:.0f}" if s['seconds_per_model'] else '–'])
    head = ['Model', 'Feature norm', 'Label norm'] + [f'{e} CCC' for e in args.emo_list] + \
           (['Arousal AUC'] if 'Act' in args.emo_list else []) + ['s / model (train)']
    return summary, A.markdown_table(head, table)


def plot(args, summary, path_dir):
    plt = A.plt_agg()
    metrics = [f'ccc_{e}' for e in args.emo_list] + (['auc_Act'] if 'Act' in args.emo_list else [])
    titles = {**{f'ccc_{e}': f'{e} CCC' for e in A.EMOS}, 'auc_Act': 'Arousal AUC (W,F,A vs L,T)'}
    norms = ['published'] + args.norm_list
    colors = {'published': '#7f7f7f', 'train': '#1f77b4', 'speaker': '#ff7f0e', 'corpus': '#2ca02c'}
    conds = [c for c in CONDS if any(s['cond'] == c for s in summary)]
    ncol = 2 if len(metrics) > 2 else len(metrics)
    nrow = -(-len(metrics) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol + 0.6, 3.6 * nrow + 0.9), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.axis('off')
    w = 0.8 / max(sum(any(s['cond'] == c and s['norm'] == n for s in summary) for n in norms) for c in conds)
    for ax, m in zip(axes.flat, metrics):
        for i, c in enumerate(conds):
            here = [s for n in norms for s in summary if s['cond'] == c and s['norm'] == n and np.isfinite(s[m][0])]
            for j, s in enumerate(here):
                x = i + (j - (len(here) - 1) / 2) * w
                ax.bar(x, s[m][0], w, yerr=s[m][1], capsize=3, color=colors.get(s['norm']),
                       label=f"feature norm: {s['norm']}")
                ax.text(x, s[m][0] + max(s[m][1], 0) + 0.01, f"{s[m][0]:.{3 if m == 'auc_Act' else 2}f}",
                        ha='center', va='bottom', fontsize=7)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels([CONDS[c].replace(') ', ')\n') for c in conds], fontsize=9)
        ax.set_title(titles[m], fontsize=10)
        ax.set_ylim(min(0, *[s[m][0] for s in summary if np.isfinite(s[m][0])]) - 0.05, 1.08)
        ax.axhline(0.5 if m == 'auc_Act' else 0, color='k', lw=0.6)
        ax.grid(axis='y', alpha=0.3)
    for row in axes:
        row[0].set_ylabel('mean ± std over seeds')
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc='lower center', ncol=len(handles), fontsize=9)
    fig.suptitle(f'Emo-DB, speaker-disjoint folds: {args.folds} x 2 test speakers, seeds {args.seeds}; -ep {args.epochs} '
                 f'-batch {args.batch} (clips cut to 2.0 s)', fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return A.save_png(fig, NAME, path_dir)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    args.cmd = A.command_line(__file__, argv)
    if args.published:
        args.epochs, args.batch = 30, 128
    from utils import parse_emos
    args.emo_list = parse_emos(args.emos)
    args.norm_list = [n.strip() for n in args.norms.split(',') if n.strip()]
    args.cond_list = [c.strip() for c in args.conds.split(',') if c.strip()]
    args.seed_list = A.seeds_of(args.seeds)
    bad = [c for c in args.cond_list if c not in CONDS] + \
          [n for n in args.norm_list if n not in ('train', 'speaker', 'corpus')]
    if bad:
        raise SystemExit(f'error: unknown --conds/--norms value(s) {bad}')
    if args.pretrained:
        from checkpoints import require_release
        require_release(args.pretrained)          # the unmodified v1.6 release, checked by SHA-256
    if not args.pretrained:
        print("note: no --pretrained folder: rows (a), (c), (d) need the authors' released models; running (b) only")
    args.curves = args.curves or ('published' if args.pretrained else 'constant')
    if args.curves == 'published' and not args.pretrained:
        raise SystemExit('error: --curves published needs --pretrained DIR')
    settings = dict(folds=args.folds, seeds=args.seed_list, emos=args.emo_list, norms=args.norm_list,
                    conds=args.cond_list, epochs=args.epochs, batch=args.batch, lr_scratch=args.lr,
                    lr_finetune=args.ft_lr, lr_freeze=args.freeze_lr, curves=args.curves, jobs=args.jobs,
                    pretrained=args.pretrained, reduced=not args.published)
    info = A.header(NAME, settings)
    t0 = time.time()
    log_dir = Path(args.work) / NAME / 'logs'
    folds, feats, rs = setup(args, log_dir)
    jobs = make_jobs(args, folds, feats, rs, log_dir)
    results, failed = A.run_jobs(jobs, args.jobs, desc=NAME)
    rows, secs = collect(args, jobs, results)
    summary, table = summarise(args, rows, secs)
    wall = time.time() - t0
    print(f'\n{table}\n')
    print(f'RESULT {NAME}: ' + '; '.join(
        f"{CONDS[s['cond']]}/{s['norm']}: " + ', '.join(f"{k.split('_')[1] if k.startswith('ccc') else 'AUC'} "
                                                         f"{v[0]:.3f}" for k, v in s.items()
                                                         if k.startswith(('ccc_', 'auc_')))
        for s in summary) + f' ({wall / 60:.1f} min)')
    A.report_failures(failed)
    png = plot(args, summary, args.images) if summary else None
    md = (f'### Fine-tuning the published models on Emo-DB (`{NAME}`)\n\n'
          f'Command: `{args.cmd}`  \n'
          f"Settings: {args.folds} speaker-disjoint folds (2 test speakers each), seeds {args.seed_list}, "
          f"-ep {args.epochs} -batch {args.batch}, lr scratch {args.lr} / fine-tune {args.ft_lr} / frozen LSTM "
          f"{args.freeze_lr}, target curves: {args.curves}"
          f"{' (REDUCED from the published -ep 30 -batch 128)' if not args.published else ''}.  \n"
          f"{A.machine_md(info)}; {A.wall_note(wall, results)}.  \n"
          f'Metrics on the pooled test predictions of all folds (every speaker tested once), mean ± std over '
          f'seeds. {A.TRUNCATION_NOTE}\n\n{table}\n')
    return A.report(NAME, md, failed, args.out, settings=settings, info=info, wall=wall, png=png, command=args.cmd,
                    summary=summary, runs=rows, note=A.TRUNCATION_NOTE)


if __name__ == '__main__':
    main()
