"""Accuracy on real speech (issue 6, item 6): Emo-DB, speaker-independent, CCC per attribute.

    python bench/bench_emodb.py                      # fixed split, 3 seeds, Act/Dom/Val, reduced (~15 min, 2 cores)
    python bench/bench_emodb.py --folds 5            # 5 speaker-disjoint folds (every speaker tested once)
    python bench/bench_emodb.py --published          # published epochs, batches and pairs (days on CPU)

Systems (same features: the published LLD preset; same split; same seeds):
  (a) Seq2Seq + ranker curves  the full method 1: preference labels (generate_preference_labels.py) ->
                               chunk rankers (training_ranker.py) -> ranking sequences of the Train split
                               (generate_ranking_seqence.py) -> Seq2Seq trained on utterance mean + curve
                               (training.py) -> testing.py
  (b) Seq2Seq, alpha = 1       the same model and training, but every target curve is constant at the
                               utterance mean (ranking sequences with all ranks equal; training.py has no
                               alpha flag, and a constant curve makes both loss terms utterance-level)
  (c) ridge on mean+std LLDs   utterance functionals (mean and std over frames of the 130 LLDs, z-normalised
                               with Train statistics) -> ridge regression on the raters' mean, the penalty
                               chosen on the Development speakers (deterministic: same for every seed)
Split: --folds 1 = prepare_emodb.py's fixed split (Test1 03,08; Development 09,10; Train the other six);
--folds 5 = the pairs 03,08 | 09,10 | 11,12 | 13,14 | 15,16 each tested once (fold k validates on pair k+1),
predictions pooled over folds. Reported: CCC per attribute (and arousal AUC: anger, happiness, fear vs
boredom, sadness), mean ± std over --seeds; the rankers' chunk-level macro-F1 on the Test pairs.
Default (reduced for a 2-core CPU, printed with the results): rankers -ep 1 with 512 pairs per epoch,
-batch 16, lr 1e-3; Seq2Seq -ep 1 -batch 8. The shared Emo-DB copy is cut to 2.0 s per file.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy_common as A  # noqa: E402

NAME = 'emodb'
SYSTEMS = {'rank': '(a) Seq2Seq + ranker curves', 'const': '(b) Seq2Seq, alpha = 1 (utterance mean only)',
           'ridge': '(c) ridge on mean+std of LLDs'}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--folds', type=int, default=1, help='1 = the fixed split; 2..5 = speaker-disjoint folds')
    p.add_argument('--emos', default='all', help='attributes: Act, Dom, Val, a comma list or all')
    p.add_argument('-ep', '--epochs', type=int, default=1, help='Seq2Seq epochs (published 30)')
    p.add_argument('-batch', '--batch', type=int, default=8, help='Seq2Seq utterances per step (published 128)')
    p.add_argument('--lr', type=float, default=1e-3, help='Seq2Seq learning rate (published 1e-3)')
    add_ranker_args(p)
    p.add_argument('--published', action='store_true', help='published settings: Seq2Seq -ep 30 -batch 128; rankers '
                   '-ep 20 -batch 128, 100k pairs per epoch, lr 1e-4')
    A.add_emodb_args(p)
    A.add_common_args(p)
    return p


def add_ranker_args(p):
    p.add_argument('--ranker-epochs', type=int, default=1, help='ranker epochs (published 20)')
    p.add_argument('--ranker-pairs', type=int, default=512, help='ranker pairs per epoch (published 100000)')
    p.add_argument('--ranker-batch', type=int, default=16, help='ranker pairs per step (published 128)')
    p.add_argument('--ranker-lr', type=float, default=1e-3, help='ranker learning rate (published 1e-4)')
    p.add_argument('--pair-ratio', type=float, default=0.1, help='fraction of a split drawn as preference partners per '
                   'utterance (generate_preference_labels.py --ratio; published 0.1)')


def published_rankers(args):
    args.ranker_epochs, args.ranker_pairs, args.ranker_batch, args.ranker_lr = 20, 100000, 128, 1e-4


def ranker_steps(args, corpus, feats, seed, emo, rk_root):
    """Steps: preference labels -> ranker -> its test macro-F1 -> ranking sequences of the Train split.
    Returns (steps, checkpoint path, ranking-sequence folder). Folders are shared between benches."""
    common = ['--corpus', corpus, '--features', feats, '--workers', 0, '--device', 'cpu', *A.limit_args(args)]
    rt = A.tag(ep=args.ranker_epochs, pairs=args.ranker_pairs, batch=args.ranker_batch, lr=args.ranker_lr,
               limit=args.limit, **({'ratio': args.pair_ratio} if args.pair_ratio != 0.1 else {}))
    d = Path(rk_root) / f'{Path(corpus).name}_{rt}' / f's{seed}'
    ckpt = d / 'model' / f'LSTM_epoch{args.ranker_epochs}_batch{args.ranker_batch}_{emo}_ranker.pth.tar'
    steps = [
        ('generate_preference_labels', ['-emo', emo, '-set', 'all', '--corpus', corpus, '--out', d / 'pairs',
                                        '--seed', seed, '--ratio', args.pair_ratio, *A.limit_args(args)],
         d / f'pairs_{emo}.log',
         d / f'.pairs_{emo}.done'),
        ('training_ranker', ['-emo', emo, '-ep', args.ranker_epochs, '-batch', args.ranker_batch, '--lr',
                             args.ranker_lr, '--pairs-per-epoch', args.ranker_pairs, '--pairs', d / 'pairs',
                             '--out', d / 'model', '--seed', seed, '--overwrite', *common], d / f'ranker_{emo}.log',
         d / f'.ranker_{emo}.done'),
        ('testing_ranker', ['-emo', emo, '--checkpoint', ckpt, '--pairs', d / 'pairs', '-set', 'Test',
                            '--max-pairs', 1000, '-batch', 64, *common], d / f'test_ranker_{emo}.log',
         d / f'.test_ranker_{emo}.done'),
        ('generate_ranking_seqence', ['-emo', emo, '-set', 'Train', '--checkpoint', ckpt, '--out', d / 'rankseq',
                                      '-batch', 64, *common], d / f'rankseq_{emo}.log', d / f'.rankseq_{emo}.done'),
    ]
    return steps, ckpt, d / 'rankseq'


def ranker_f1(job_dir, emo, outs):
    """Macro-F1 of testing_ranker (its return value, or the value saved when it ran before)."""
    p = Path(job_dir) / f'ranker_test_{emo}.json'
    if outs and outs.get('out'):
        _, _, n, f1, acc, _ = outs['out'][0]
        from utils import atomic_write_text
        atomic_write_text(p, json.dumps({'pairs': int(n), 'macro_f1': float(f1), 'acc': float(acc)}))
    return json.loads(p.read_text())['macro_f1'] if p.exists() else float('nan')


def seq2seq_steps(args, corpus, feats, seed, emo, rankseq, d):
    common = ['--corpus', corpus, '--features', feats, '--workers', 0, '--device', 'cpu', *A.limit_args(args)]
    ckpt = d / f'LSTM_epoch{args.epochs}_batch{args.batch}_EmoRankerSeq_{emo}.pth.tar'
    return [('training', ['-emo', emo, '-ep', args.epochs, '-batch', args.batch, '--lr', args.lr, '--rankseq', rankseq,
                          '--out', d, '--seed', seed, '--overwrite', *common], d / f'train_{emo}.log',
             d / f'.train_{emo}.done'),
            ('testing', ['-emo', emo, '--checkpoint', ckpt, '-set', 'Test', '-batch', 64, '--out', d / 'test', *common],
             d / f'test_{emo}.log', d / f'.test_{emo}.done')]


# ---------------------------------------------------------------- (c) ridge baseline
def functionals(store, names, mean=None, std=None):
    X = np.stack([np.concatenate([np.nanmean(f, 0), np.nanstd(f, 0)]) for f in (store.get(n) for n in names)])
    X = np.nan_to_num(X)
    if mean is None:
        mean, std = X.mean(0), np.maximum(X.std(0), 1e-8)
    return (X - mean) / std, mean, std


def ridge_fit(X, y, alpha):
    Xb = np.hstack([X, np.ones((len(X), 1))])
    reg = alpha * np.eye(Xb.shape[1])
    reg[-1, -1] = 0                                  # no penalty on the intercept
    return np.linalg.solve(Xb.T @ Xb + reg, Xb.T @ y)


def ridge_predict(w, X):
    return np.hstack([X, np.ones((len(X), 1))]) @ w


def ridge_fold(corpus_root, feats, emo, alphas=(0.01, 0.1, 1, 10, 100, 1000, 10000)):
    """Train: raters' mean (the Seq2Seq's utterance target); alpha by Development CCC; -> test DataFrame."""
    from corpus import Corpus
    from feature_store import FeatureStore
    from utils import EMO_COL
    c, store = Corpus(corpus_root), FeatureStore(feats)
    r = c.rating_lists(emo, 'Train')
    tr = [n for n in c.files('Train') if n in store and n in r]
    col = c.labels.set_index('FileName')[EMO_COL[emo]]
    dev = [n for n in c.files('Validation') if n in store]
    te = [n for n in c.files('Test') if n in store]
    Xtr, m, s = functionals(store, tr)
    ytr = np.array([r[n].mean() for n in tr])
    Xdev, Xte = functionals(store, dev, m, s)[0], functionals(store, te, m, s)[0]
    best = max(alphas, key=lambda a: A.ccc(ridge_predict(ridge_fit(Xtr, ytr, a), Xdev), col.loc[dev]))
    pred = ridge_predict(ridge_fit(Xtr, ytr, best), Xte)
    return pd.DataFrame({'FileName': te, 'Label': col.loc[te].to_numpy(float), 'Pred': pred, 'alpha': best})


# ---------------------------------------------------------------- run
def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    args.cmd = A.command_line(__file__, argv)
    if args.published:
        args.epochs, args.batch = 30, 128
        published_rankers(args)
    from utils import parse_emos
    emos, seeds = parse_emos(args.emos), A.seeds_of(args.seeds)
    settings = dict(folds=args.folds, split='fixed (Test1 03,08; Dev 09,10)' if args.folds == 1 else 'speaker pairs',
                    seeds=seeds, emos=emos, seq2seq_epochs=args.epochs, seq2seq_batch=args.batch, seq2seq_lr=args.lr,
                    ranker_epochs=args.ranker_epochs, ranker_pairs_per_epoch=args.ranker_pairs,
                    ranker_batch=args.ranker_batch, ranker_lr=args.ranker_lr, jobs=args.jobs,
                    reduced=not args.published)
    info = A.header(NAME, settings)
    t0 = time.time()
    work = Path(args.work)
    log_dir = work / 'bench_emodb' / 'logs'
    folds = [A.emodb_fold(args, k, args.folds, log_dir) for k in range(args.folds)]
    feats = A.emodb_features(args, folds[0], log_dir)
    const = A.constant_rankseq(folds[0], work / 'bench_emodb' / A.emodb_name(args) / 'rankseq_constant')
    s2s = work / 'bench_emodb' / A.emodb_name(args) / A.tag(ep=args.epochs, batch=args.batch, lr=args.lr,
                                                            rk=args.ranker_epochs, rp=args.ranker_pairs,
                                                            rb=args.ranker_batch, rl=args.ranker_lr, limit=args.limit)
    jobs = []
    for seed in seeds:
        for k, fold in enumerate(folds):
            for e in emos:
                rsteps, _, rankseq = ranker_steps(args, fold, feats, seed, e, work / 'rankers')
                d = s2s / 'rank' / f's{seed}' / f'fold{k}'
                jobs.append({'key': ('rank', seed, k, e), 'dir': d, 'rk_dir': rankseq.parent, 'fresh': args.fresh,
                             'steps': rsteps + seq2seq_steps(args, fold, feats, seed, e, rankseq, d)})
                d = s2s / 'const' / f's{seed}' / f'fold{k}'
                jobs.append({'key': ('const', seed, k, e), 'dir': d, 'fresh': args.fresh,
                             'steps': seq2seq_steps(args, fold, feats, seed, e, const, d)})
    results, failed = A.run_jobs(jobs, args.jobs, desc=NAME)

    preds, f1s = {}, {}
    for job in jobs:
        sys_, seed, k, e = job['key']
        if job['key'] not in results:
            continue
        p = job['dir'] / 'test' / f'{e}_Test_predictions.csv'
        preds.setdefault((sys_, seed, e), []).append(pd.read_csv(p).assign(fold=k))
        if sys_ == 'rank':
            f1s.setdefault(e, []).append(ranker_f1(job['rk_dir'], e, results[job['key']][2]))
    for k, fold in enumerate(folds):
        for e in emos:
            df = ridge_fold(fold, feats, e).assign(fold=k)
            for seed in seeds:
                preds.setdefault(('ridge', seed, e), []).append(df)
    runs = []
    for (sys_, seed, e), dfs in preds.items():
        df = pd.concat(dfs)
        ok = len(dfs) == args.folds
        runs.append({'system': sys_, 'seed': seed, 'emo': e, 'n': len(df),
                     'ccc': A.ccc(df.Pred, df.Label) if ok else None,
                     'auc': A.arousal_auc(df.FileName, df.Pred) if ok and e == 'Act' else None,
                     'fold_ccc': [round(A.ccc(g.Pred, g.Label), 4) for _, g in df.groupby('fold')]})
    table, summary = [], []
    for sys_, label in SYSTEMS.items():
        s = {'system': sys_}
        cells = []
        for e in emos:
            vals = [r['ccc'] for r in runs if r['system'] == sys_ and r['emo'] == e]
            s[f'ccc_{e}'] = A.mean_std(vals)[:2]
            cells.append(A.fmt_ms(vals))
        if 'Act' in emos:
            vals = [r['auc'] for r in runs if r['system'] == sys_ and r['emo'] == 'Act']
            s['auc_Act'] = A.mean_std(vals)[:2]
            cells.append(A.fmt_ms(vals))
        if sys_ == 'rank':
            s['ranker_f1'] = {e: A.mean_std(f1s.get(e, []))[:2] for e in emos}
        cells.append(', '.join(f'{e} {A.fmt_ms(f1s.get(e, []))}' for e in emos) if sys_ == 'rank' else '–')
        summary.append(s)
        table.append([label + (' (deterministic)' if sys_ == 'ridge' else '')] + cells)
    head = ['System'] + [f'{e} CCC' for e in emos] + (['Arousal AUC'] if 'Act' in emos else []) + \
           ['Ranker test macro-F1 (chunk pairs)']
    table = A.markdown_table(head, table)
    wall = time.time() - t0
    print(f'\n{table}\n')
    print(f'RESULT {NAME}: ' + '; '.join(f"{s['system']}: " + ', '.join(f'{e} {s[f"ccc_{e}"][0]:.3f}' for e in emos)
                                        for s in summary) + f' (CCC, mean of {len(seeds)} seeds; {wall / 60:.1f} min)')
    A.report_failures(failed)
    png = plot(summary, emos, args, Path(args.images)) if summary else None
    split = ('the fixed split (test speakers 03, 08; development 09, 10; train the other six)' if args.folds == 1
             else f'{args.folds} speaker-disjoint folds of 2 test speakers, predictions pooled')
    md = (f'### Emo-DB: Seq2Seq with ranker curves vs alpha = 1 vs ridge (`bench_{NAME}`)\n\n'
          f'Command: `{args.cmd}`  \n'
          f'Settings: {split}; seeds {seeds}; Seq2Seq -ep {args.epochs} -batch {args.batch} lr {args.lr}; rankers '
          f'-ep {args.ranker_epochs}, {args.ranker_pairs} pairs/epoch, -batch {args.ranker_batch}, lr {args.ranker_lr}'
          f"{' (REDUCED from the published settings)' if not args.published else ''}.  \n"
          f'{A.machine_md(info)}; {A.wall_note(wall, results)}.  \n'
          f'CCC on the Test speakers, mean ± std over seeds. {A.TRUNCATION_NOTE}\n\n{table}\n')
    return A.report(NAME, md, failed, args.out, settings=settings, info=info, wall=wall, png=png, command=args.cmd,
                    summary=summary, runs=runs, note=A.TRUNCATION_NOTE)


def plot(summary, emos, args, out_dir):
    plt = A.plt_agg()
    metrics = [f'ccc_{e}' for e in emos] + (['auc_Act'] if 'Act' in emos else [])
    colors = {'rank': '#1f77b4', 'const': '#ff7f0e', 'ridge': '#7f7f7f'}
    fig, ax = plt.subplots(figsize=(2.2 * len(metrics) + 4, 4.6))
    w = 0.8 / len(summary)
    for j, s in enumerate(summary):
        xs = np.arange(len(metrics)) + (j - (len(summary) - 1) / 2) * w
        ys = [s[m][0] for m in metrics]
        es = [s[m][1] for m in metrics]
        ax.bar(xs, ys, w, yerr=es, capsize=3, color=colors[s['system']], label=SYSTEMS[s['system']])
        for x, y, e in zip(xs, ys, es):
            if np.isfinite(y):
                ax.text(x, max(y, 0) + (e if np.isfinite(e) else 0) + 0.01, f'{y:.2f}', ha='center', va='bottom',
                        fontsize=8)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([m.replace('ccc_', 'CCC ').replace('auc_Act', 'arousal AUC\n(W,F,A vs L,T)') for m in metrics])
    ax.axhline(0, color='k', lw=0.6)
    ax.set_ylim(min(0, *[s[m][0] - 0.05 for s in summary for m in metrics if np.isfinite(s[m][0])]), 1.1)
    ax.set_ylabel(f'mean ± std over seeds {args.seeds}')
    ax.grid(axis='y', alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc='lower center', ncol=3, fontsize=8)
    split = 'fixed split (test 03, 08)' if args.folds == 1 else f'{args.folds} speaker-disjoint folds'
    ax.set_title(f'Emo-DB, {split}; Seq2Seq -ep {args.epochs} -batch {args.batch}, rankers -ep {args.ranker_epochs} '
                 f'x {args.ranker_pairs} pairs (clips cut to 2.0 s)', fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return A.save_png(fig, NAME, out_dir)


if __name__ == '__main__':
    main()
