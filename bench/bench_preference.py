"""Bench 2 -- preference labels: the project's vectorised QA vs a per-pair Python loop.

    python bench/bench_preference.py                       # 30k utterances x 5 raters, loop on 1,000 of them
    python bench/bench_preference.py --loop-utts 30000     # the loop over everything too (~10 min+)
    python bench/bench_preference.py --n-utts 2000 --loop-utts 100 --check-utts 300    # smoke size

Fast side: `preference_pairs` of chunk_emotion_rankers/generate_preference_labels.py (partners for a
block of utterances at once, comparisons as rating histograms / numpy broadcasting) on the whole synthetic
split. Slow side: the QA approach as first published, written here: for every utterance draw 10 % of the
others, and for every pair compare every rating with every rating in a Python double loop. The loop runs on
the first --loop-utts utterances (same ratings, same N, same number of partners) and its time is
extrapolated linearly to all utterances (cost per utterance is P x R^2 whatever the utterance): that
number is labelled "extrapolated". Both sides compute the pair table only (no CSV writing).
Correctness: on --check-utts utterances the loop's labels on the fast path's own partner draws must give
exactly the fast path's pairs (the partner draws come from the fast path run with threshold 0, which
keeps every drawn pair).
Synthetic ratings: latent level U(1.5, 6.5) per utterance, each rater latent + N(0, 1) rounded and
clipped to the 1..7 Likert scale (the same recipe as generate_preference_labels.py --benchmark).
"""
import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402


def synthetic_ratings(n, raters, seed):
    rng = np.random.default_rng(seed)
    latent = rng.uniform(1.5, 6.5, n)
    return np.clip(np.rint(latent[:, None] + rng.normal(0, 1.0, (n, raters))), 1, 7)


def qa_pair(ri, rj, threshold):
    """Published-style QA of one pair: 1 (i > j), 0 (i < j) or None (equal / no clear winner)."""
    g = l = e = 0
    for a in ri:
        for b in rj:
            if a > b:
                g += 1
            elif a < b:
                l += 1
            else:
                e += 1
    tot = g + l + e
    if tot == 0:
        return None
    pg, pl, pe = g / tot, l / tot, e / tot
    best = max(pg, pl, pe)
    if best < threshold or best == pe:
        return None
    return 1 if best == pg else 0


def naive_preference(lists, rows, ratio, threshold, seed):
    """The per-pair Python loop: for each utterance i in rows, 10 % of the others as partners, one pair at a time."""
    rng = random.Random(seed)
    N = len(lists)
    P = min(int(N * ratio), N - 1)
    out = []
    for i in rows:
        others = [k for k in range(N) if k != i]
        for j in rng.sample(others, P):
            lab = qa_pair(lists[i], lists[j], threshold)
            if lab is not None:
                out.append((i, j, lab))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-utts', type=int, default=30000, help='utterances in the synthetic split (published bench: 30000)')
    p.add_argument('--raters', type=int, default=5, help='ratings per utterance (default 5)')
    p.add_argument('--ratio', type=float, default=0.1, help='fraction of the split drawn as partners (default 0.1)')
    p.add_argument('--threshold', type=float, default=0.6, help='QA threshold (default 0.6)')
    p.add_argument('--loop-utts', type=int, default=1000,
                   help='utterances the per-pair loop runs on (extrapolated to --n-utts; --loop-utts N = the full run)')
    p.add_argument('--check-utts', type=int, default=1000,
                   help='split size of the exact fast-vs-loop pair check (0 = skip)')
    p.add_argument('--method', default='auto', choices=['auto', 'hist', 'broadcast'],
                   help='kernel of the fast path (auto = histograms for Likert ratings)')
    p.add_argument('--seed', type=int, default=31, help='seed of the ratings and the partner draws')
    p.add_argument('--out', default=None, help='folder for the JSON (default bench/results)')
    p.add_argument('--no-plot', action='store_true', help='do not write images/bench_preference.png')
    args = p.parse_args(argv)
    from chunk_emotion_rankers.generate_preference_labels import preference_pairs

    info = common.machine('cpu')
    print(common.machine_line(info))
    N, R = args.n_utts, args.raters
    P = min(int(N * args.ratio), N - 1)
    ratings = synthetic_ratings(N, R, args.seed)
    lists = [list(map(float, r)) for r in ratings]
    print(f'{N:,} utterances x {R} raters, {P:,} partners each = {N * P:,} comparisons of {R * R} rating pairs')

    # correctness: identical pairs on a small split, loop fed the fast path's partner draws
    check = None
    if args.check_utts:
        n = min(args.check_utts, N)
        sub = ratings[:n]
        fi, fj, fl = preference_pairs(sub, args.ratio, args.threshold, args.seed, args.method)
        ai, aj, _ = preference_pairs(sub, args.ratio, 0.0, args.seed, args.method)       # every drawn pair
        sl = [lists[k] for k in range(n)]
        loop = {(int(i), int(j), lab) for i, j in zip(ai, aj) if (lab := qa_pair(sl[i], sl[j], args.threshold)) is not None}
        fast = set(zip(fi.tolist(), fj.tolist(), fl.tolist()))
        check = dict(utterances=n, drawn_pairs=len(ai), fast_pairs=len(fast), loop_pairs=len(loop), identical=fast == loop)
        print(f'check on {n:,} utterances: {len(ai):,} drawn pairs -> fast {len(fast):,} / loop {len(loop):,} labelled '
              f'pairs: {"IDENTICAL" if fast == loop else "DIFFERENT"}')

    t0 = time.perf_counter()
    i, j, lab = preference_pairs(ratings, args.ratio, args.threshold, args.seed, args.method)
    t_fast = time.perf_counter() - t0
    n_pairs = len(lab)
    del i, j

    n_loop = min(args.loop_utts, N)
    t0 = time.perf_counter()
    loop_pairs = naive_preference(lists, range(n_loop), args.ratio, args.threshold, args.seed)
    t_loop_sub = time.perf_counter() - t0
    t_loop = t_loop_sub * N / n_loop
    extrap = n_loop < N
    kept_loop = len(loop_pairs) / max(n_loop * P, 1)

    fast_rate, loop_rate = N / t_fast, n_loop / t_loop_sub
    label = f'extrapolated from {n_loop:,} utterances' if extrap else 'measured'
    print(f'fast (vectorised QA) : {t_fast:8.2f} s for {N:,} utterances = {common.fmt_rate(fast_rate)} utt/s, '
          f'{N * P / t_fast / 1e6:,.1f} M pair comparisons/s, {n_pairs:,} labelled pairs ({n_pairs / (N * P):.1%} kept)')
    print(f'loop (per-pair Python): {t_loop:8.1f} s for {N:,} utterances ({label}; {t_loop_sub:.1f} s measured) = '
          f'{common.fmt_rate(loop_rate)} utt/s, {n_loop * P / t_loop_sub / 1e6:,.3f} M pair comparisons/s, '
          f'{kept_loop:.1%} kept')
    ratio = t_loop / t_fast
    print(f'RESULT preference: vectorised {t_fast:.2f} s vs per-pair loop {t_loop:,.0f} s '
          f'({"extrapolated" if extrap else "measured"}) for {N:,} utt x {R} raters -> {ratio:,.0f}x faster'
          + (f'; check {"passed" if check["identical"] else "FAILED"}' if check else ''))

    res = dict(machine=info, n_utts=N, raters=R, partners=P, ratio=args.ratio, threshold=args.threshold,
               method=args.method, seed=args.seed,
               fast=dict(seconds=t_fast, utt_per_s=fast_rate, pairs=n_pairs, comparisons_per_s=N * P / t_fast),
               loop=dict(seconds=t_loop, seconds_measured=t_loop_sub, utts_measured=n_loop, extrapolated=extrap,
                         utt_per_s=loop_rate, kept_fraction=kept_loop),
               speedup=ratio, check=check)
    common.save_results('preference', res, args.out)
    if not args.no_plot:
        plt = common.plt_agg()
        fig, ax = plt.subplots(figsize=(6, 2.6))
        ax.barh(['vectorised QA', 'per-pair loop' + (' (extrap.)' if extrap else '')], [t_fast, t_loop],
                color=['tab:green', 'tab:gray'])
        ax.set_xscale('log')
        ax.set_xlabel('seconds (log)')
        ax.set_title(f'Preference labels, {N:,} utt x {R} raters, {P:,} partners: {ratio:,.0f}x', fontsize=9)
        for y, t in enumerate([t_fast, t_loop]):
            ax.text(t, y, f' {t:,.1f} s', va='center', fontsize=8)
        fig.tight_layout()
        common.save_png(fig, 'preference', args.out and Path(args.out))
    if check and not check['identical']:
        raise SystemExit('error: the vectorised preference pairs differ from the per-pair loop')
    return res


if __name__ == '__main__':
    main()
