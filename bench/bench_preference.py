"""Bench 2 -- preference labels: the project's vectorised QA vs the published script's operations and a plain loop.

    python bench/bench_preference.py                       # 30k utterances x 5 raters (~3 min on 2 cores)
    python bench/bench_preference.py --published-utts 30000 --plain-utts 30000    # both loops over everything (hours)
    python bench/bench_preference.py --n-utts 2000 --published-utts 20 --plain-utts 100 --check-utts 200   # smoke

Fast side: `preference.preference_pairs` (what generate_preference_labels.py runs) on the whole synthetic
split (vectorised partner draw per block of utterances, label table of the distinct rating histograms, two
threads; also timed on one thread).
Slow sides, both written here (none of the authors' code is copied):
- published operations: the work of the authors' `chunk_emotion_rankers/generate_preference_labels.py`
  (Chunk-Level-Emotion-Retrieval at 137cedd), operation for operation: per utterance one draw with the legacy
  global-state generator, `choice(N, int(0.1 N), replace=False)` over all N utterances (the utterance itself
  included), and its two file names as `str`; per pair the QA table: for each rating of the first utterance a
  new array of the partner's rating list, the subtraction, and the ==0 / >0 / <0 counts with Python's `sum`
  into three lists, summed again, divided by the total and packed into an `np.array`; then `np.max` against
  the threshold and `np.argmax` for the label, and the pair and label appended to two lists. Ratings are
  Python lists, as the published label parser returns them;
- plain loop: the same decision in plain Python: `random.sample` of the partners among the other
  utterances, a double loop over the rating pairs of each pair.
Each loop runs on the first --published-utts / --plain-utts utterances (same ratings, same N, same number
of partners) and its time is extrapolated linearly to all utterances (each utterance costs P x R^2 whatever
it is): those numbers say "extrapolated". All sides compute the pair table only (no CSV writing).
Correctness: on a --check-utts split, both slow sides' QA decisions on the fast path's own partner draws must
give exactly the fast path's pairs (the draws come from a fast run with threshold 0, which keeps every drawn
pair); the partner draws themselves differ (the fast path uses numpy's default_rng and never draws the
utterance itself; a self-pair never gets a label in the published script, its "greater" and "lower" shares
being equal).
Synthetic ratings: latent level U(1.5, 6.5) per utterance, each rater latent + N(0, 1) rounded and clipped
to the 1..7 Likert scale.
"""
import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402

from preference import preference_pairs  # noqa: E402


def synthetic_ratings(n, raters, seed):
    rng = np.random.default_rng(seed)
    latent = rng.uniform(1.5, 6.5, n)
    return np.clip(np.rint(latent[:, None] + rng.normal(0, 1.0, (n, raters))), 1, 7)


def decide(g, l, e, threshold):
    """QA decision from the counts: 1 (i > j), 0 (i < j) or None (equal wins / no fraction >= threshold)."""
    tot = g + l + e
    if tot == 0:
        return None
    pg, pl, pe = g / tot, l / tot, e / tot
    best = max(pg, pl, pe)
    if best < threshold or best == pe:
        return None
    return 1 if best == pg else 0


def qa_table_published(sent1, sent2):
    """The published QA table's operations: per rating of sent1 a new array of sent2, a subtraction and three
    Python-`sum` counts collected in lists; the lists summed; the shares packed in an np.array."""
    equal, greater, lower = [], [], []
    for a in sent1:
        diff = a - np.array(sent2)
        equal.append(sum(diff == 0))
        greater.append(sum(diff > 0))
        lower.append(sum(diff < 0))
    e, g, l = sum(equal), sum(greater), sum(lower)
    total = e + g + l
    return np.array([g / total, l / total, e / total])


def qa_published(ri, rj, threshold):
    """The published decision on one pair: np.max of the shares against the threshold, np.argmax for the label
    (0 -> label 1, 1 -> label 0, 2 = equal -> no pair)."""
    prob = qa_table_published(ri, rj)
    if np.max(prob) >= threshold:
        k = np.argmax(prob)
        if k == 0:
            return 1
        if k == 1:
            return 0
    return None


def qa_plain(ri, rj, threshold):
    """Plain Python: every rating pair in a double loop."""
    g = l = e = 0
    for a in ri:
        for b in rj:
            if a > b:
                g += 1
            elif a < b:
                l += 1
            else:
                e += 1
    return decide(g, l, e, threshold)


def published_loop(lists, rows, ratio, threshold, seed):
    """The published script's loop for the utterances in rows: legacy-generator choice of int(ratio N) partners
    among all N (itself included), names as str, QA table + max/argmax per pair, pairs and labels in lists."""
    rng = np.random.RandomState(seed)   # what np.random.seed(seed) + np.random.choice use
    N = len(lists)
    names = np.array([f'MSP-PODCAST_{k:07d}.wav' for k in range(N)])
    pairs, labels = [], []
    for i in rows:
        idx = rng.choice(N, int(N * ratio), replace=False)
        for j in range(len(idx)):
            name1, name2 = str(names[i]), str(names[idx[j]])
            prob = qa_table_published(lists[i], lists[idx[j]])
            if np.max(prob) >= threshold:
                k = np.argmax(prob)
                if k == 0:
                    labels.append(1)
                    pairs.append((name1, name2))
                elif k == 1:
                    labels.append(0)
                    pairs.append((name1, name2))
    return pairs, labels


def plain_loop(lists, rows, ratio, threshold, seed):
    """For each utterance i in rows: random.sample of 10 % of the others, then qa_plain per pair."""
    rng = random.Random(seed)
    N = len(lists)
    P = min(int(N * ratio), N - 1)
    out = []
    for i in rows:
        others = [k for k in range(N) if k != i]
        for j in rng.sample(others, P):
            lab = qa_plain(lists[i], lists[j], threshold)
            if lab is not None:
                out.append((i, j, lab))
    return out


def check(ratings, lists, n, args):
    """Both slow sides' QA decisions on the fast path's own partner draws: their pairs must equal the fast path's."""
    sub = ratings[:n]
    fast = set(zip(*(a.tolist() for a in preference_pairs(sub, args.ratio, args.threshold, args.seed, args.method))))
    ai, aj, _ = preference_pairs(sub, args.ratio, 0.0, args.seed, args.method)       # every drawn pair
    res = dict(utterances=n, drawn_pairs=len(ai), fast_pairs=len(fast))
    for name, fn, data in (('published', qa_published, lists), ('plain', qa_plain, lists)):
        loop = {(i, j, lab) for i, j in zip(ai.tolist(), aj.tolist())
                if (lab := fn(data[i], data[j], args.threshold)) is not None}
        res[f'{name}_pairs'], res[f'{name}_identical'] = len(loop), loop == fast
    res['identical'] = res['published_identical'] and res['plain_identical']
    print(f'check on {n:,} utterances: {len(ai):,} drawn pairs -> fast {len(fast):,} / published operations '
          f'{res["published_pairs"]:,} / plain loop {res["plain_pairs"]:,} labelled pairs: '
          f'{"IDENTICAL" if res["identical"] else "DIFFERENT"}')
    return res


def time_loop(fn, data, n_loop, N, P, args):
    t0 = time.perf_counter()
    out = fn(data, range(n_loop), args.ratio, args.threshold, args.seed)
    sec = time.perf_counter() - t0
    pairs = out[1] if isinstance(out, tuple) else out
    return dict(seconds=sec * N / n_loop, seconds_measured=sec, utts_measured=n_loop, extrapolated=n_loop < N,
                utt_per_s=n_loop / sec, kept_fraction=len(pairs) / max(n_loop * P, 1))


def plot(res, out):
    plt = common.plt_agg()
    names = ['vectorised (2 threads)', 'vectorised (1 thread)', 'plain loop', "published script's operations"]
    secs = [res['fast']['seconds'], res['fast_1thread']['seconds'], res['plain']['seconds'], res['published']['seconds']]
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.barh(names, secs, color=['tab:green', 'tab:olive', 'tab:gray', 'tab:red'])
    ax.set_xscale('log')
    ax.set_xlabel('seconds (log); loops extrapolated')
    ax.set_title(f"Preference labels, {res['n_utts']:,} utt x {res['raters']} raters, {res['partners']:,} partners",
                 fontsize=9)
    for y, t in enumerate(secs):
        ax.text(t, y, f' {t:,.1f} s', va='center', fontsize=8)
    fig.tight_layout()
    common.save_png(fig, 'preference', out and Path(out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-utts', type=int, default=30000, help='utterances in the synthetic split (default 30000)')
    p.add_argument('--raters', type=int, default=5, help='ratings per utterance (default 5)')
    p.add_argument('--ratio', type=float, default=0.1, help='fraction of the split drawn as partners (default 0.1)')
    p.add_argument('--threshold', type=float, default=0.6, help='QA threshold (default 0.6)')
    p.add_argument('--published-utts', type=int, default=60,
                   help="utterances the published script's operations run on (extrapolated to --n-utts; default 60)")
    p.add_argument('--plain-utts', type=int, default=1000,
                   help='utterances the plain loop runs on (extrapolated to --n-utts; default 1000)')
    p.add_argument('--check-utts', type=int, default=500, help='split size of the exact pair check (0 = skip)')
    p.add_argument('--method', default='auto', choices=['auto', 'table', 'hist', 'broadcast'],
                   help='kernel of the fast path (default auto: the label table for Likert ratings)')
    p.add_argument('--seed', type=int, default=31, help='seed of the ratings and the partner draws')
    p.add_argument('--out', default=None, help='folder for the JSON and PNG (default bench/results, images/)')
    p.add_argument('--no-plot', action='store_true', help='do not write images/bench_preference.png')
    args = p.parse_args(argv)

    info = common.machine('cpu')
    print(common.machine_line(info))
    N, R = args.n_utts, args.raters
    P = min(int(N * args.ratio), N - 1)
    ratings = synthetic_ratings(N, R, args.seed)
    lists = [list(map(float, r)) for r in ratings]
    print(f'{N:,} utterances x {R} raters, {P:,} partners each = {N * P:,} comparisons of {R * R} rating pairs')
    chk = check(ratings, lists, min(args.check_utts, N), args) if args.check_utts else None

    fast = {}
    for threads in (2, 1):
        t0 = time.perf_counter()
        _, _, lab = preference_pairs(ratings, args.ratio, args.threshold, args.seed, args.method, threads=threads)
        sec = time.perf_counter() - t0
        fast[threads] = dict(seconds=sec, utt_per_s=N / sec, pairs=len(lab), comparisons_per_s=N * P / sec)
        del lab
    pub = time_loop(published_loop, lists, min(args.published_utts, N), N, int(N * args.ratio), args)
    plain = time_loop(plain_loop, lists, min(args.plain_utts, N), N, P, args)

    t_fast = fast[2]['seconds']
    for name, r in (('published ops', pub), ('plain loop', plain)):
        label = f'extrapolated from {r["utts_measured"]:,} utterances' if r['extrapolated'] else 'measured'
        print(f'{name:15s}: {r["seconds"]:9.1f} s for {N:,} utterances ({label}; {r["seconds_measured"]:.1f} s '
              f'measured) = {common.fmt_rate(r["utt_per_s"])} utt/s, {r["kept_fraction"]:.1%} kept')
    print(f'vectorised     : {t_fast:9.2f} s on 2 threads, {fast[1]["seconds"]:.2f} s on 1 thread '
          f'({fast[2]["pairs"]:,} labelled pairs, {fast[2]["pairs"] / (N * P):.1%} kept)')
    extrap = pub['extrapolated'] or plain['extrapolated']
    res = dict(machine=info, n_utts=N, raters=R, partners=P, ratio=args.ratio, threshold=args.threshold,
               method=args.method, seed=args.seed, fast=fast[2], fast_1thread=fast[1], published=pub, plain=plain,
               speedup_vs_published=pub['seconds'] / t_fast, speedup_vs_plain=plain['seconds'] / t_fast,
               published_vs_plain=pub['seconds'] / plain['seconds'], check=chk)
    print(f'RESULT preference: vectorised {t_fast:.2f} s vs the published script\'s operations {pub["seconds"]:,.0f} s '
          f'({res["speedup_vs_published"]:,.0f}x) and plain loop {plain["seconds"]:,.0f} s '
          f'({res["speedup_vs_plain"]:,.0f}x){" (loops extrapolated)" if extrap else ""} for {N:,} utt x {R} raters'
          + (f'; check {"passed" if chk["identical"] else "FAILED"}' if chk else ''))
    print(f'side by side: vectorised / published operations / plain loop = 1 : {res["speedup_vs_published"]:,.0f} : '
          f'{res["speedup_vs_plain"]:,.0f}; the published operations take {res["published_vs_plain"]:.1f}x the plain '
          f'loop\'s time')
    common.save_results('preference', res, args.out)
    if not args.no_plot:
        plot(res, args.out)
    if chk and not chk['identical']:
        raise SystemExit('error: the vectorised preference pairs differ from the loops')
    return res


if __name__ == '__main__':
    main()
