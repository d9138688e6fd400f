"""Grouped vs uniform pair sampling of the ranker (--pair-sampling): LSTM work per epoch at several corpus sizes.

    python bench/bench_pair_sampling.py                  # 280 (the demo's Train), 2,800 and 28,000 utterances
    python bench/bench_pair_sampling.py --utts 280 --out /tmp/p.json

For each size a Train split of N utterances gets QA preference labels as generate_preference_labels.py makes them
(preference.preference_pairs: 10 % partners, threshold 0.6) from seeded random ratings of 5 annotators on a
1-7 scale. An epoch of --pairs-per-epoch pairs (default: the demo's 384 on the demo's Train size, the published 100,000 at scale) is drawn
by both samplers with the demo's settings (batch 128, --max-chunks 768); the LSTM work of a training step is
the number of distinct utterances of its pairs (ranker.pair_parts runs each once per part; an utterance that
parts share runs once per part, counted here too) times 22 chunks. The time of that work is measured in the
same run: one training pass (forward + backward) of 768 chunks of the published ranker, 2 threads.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def chunk_runs(sampler, a, b, batch, per):
    """LSTM chunk runs of an epoch: per step, the utterance runs of its parts (ranker.pair_parts) x 22."""
    from ranker import pair_parts
    idx = np.fromiter(sampler, np.int64)
    runs, steps = 0, 0
    for s in range(0, len(idx), batch):
        step = idx[s:s + batch]
        parts = pair_parts(a[step].tolist(), b[step].tolist(), per)
        runs += sum(len(rows) for rows, _ in parts)
        steps += 1
    return runs * 22, steps


def seconds_per_1k_chunks(threads=2, n=768):
    import torch

    from model import LSTMnet
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = LSTMnet(130, 130, 2).train()
    x = torch.randn(n, 62, 130)
    best = float('inf')
    for _ in range(3):
        t = time.perf_counter()
        net(x).sum().backward()
        best = min(best, time.perf_counter() - t)
    return best / n * 1000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--utts', default='280,2800,28000', help='Train utterances per size (default %(default)s)')
    ap.add_argument('--pairs-per-epoch', default='384,100000,100000', help='pairs per epoch for each size (default '
                    '%(default)s: the demo\'s PAIRS on the demo\'s Train size, the published 100k at scale)')
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--max-chunks', type=int, default=768)
    ap.add_argument('--out', default=None, help='results folder (default bench/results)')
    a = ap.parse_args(argv)
    from dataloader import EpochSubsetSampler, GroupedPairSampler
    from preference import preference_pairs
    info = common.machine()
    print(common.machine_line(info))
    t1k = seconds_per_1k_chunks()
    print(f'one training pass: {t1k:.3f} s per 1,000 chunks (2 threads)')
    rows, per = [], a.max_chunks // 22
    sizes, per_epoch = [int(v) for v in a.utts.split(',')], [int(v) for v in a.pairs_per_epoch.split(',')]
    for n, want in zip(sizes, per_epoch + per_epoch[-1:] * len(sizes)):
        ratings = np.random.default_rng(n).integers(1, 8, (n, 5)).astype(float)
        ratings += np.random.default_rng(n + 1).normal(0, 1.5, (n, 1)).round()    # utterance effect: real preferences
        i, j, _ = preference_pairs(ratings)
        k = min(want, len(i))
        group = GroupedPairSampler.group_size(n, len(i), a.batch, per)
        row = {'utterances': n, 'pairs': int(len(i)), 'pairs_per_epoch': k, 'group': group}
        for name, s in (('uniform', EpochSubsetSampler(len(i), k, seed=0)),
                        ('grouped', GroupedPairSampler(i, j, n, k, group, seed=0))):
            t = time.perf_counter()
            chunks, steps = chunk_runs(s, i, j, a.batch, per)
            row[name] = {'steps': steps, 'chunk_runs': chunks, 'utterance_runs_per_step': chunks / 22 / steps,
                         'lstm_seconds_per_epoch': chunks / 1000 * t1k,
                         'sampling_seconds': time.perf_counter() - t}
        row['work_ratio'] = row['uniform']['chunk_runs'] / row['grouped']['chunk_runs']
        rows.append(row)
        u, g = row['uniform'], row['grouped']
        print(f"RESULT {n:>6} utterances, {len(i):>9,} pairs, {k:,} per epoch (group {group}): utterance runs per step "
              f"{u['utterance_runs_per_step']:.0f} -> {g['utterance_runs_per_step']:.0f}; LSTM time per epoch "
              f"{u['lstm_seconds_per_epoch']:.0f} s -> {g['lstm_seconds_per_epoch']:.0f} s (x{row['work_ratio']:.2f})")
    return rows, common.save_results('pair_sampling', {'command': 'python bench/bench_pair_sampling.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:]), 'machine': info, 'seconds_per_1k_chunks': t1k,
        'batch': a.batch, 'max_chunks': a.max_chunks, 'rows': rows}, a.out)


if __name__ == '__main__':
    main()
