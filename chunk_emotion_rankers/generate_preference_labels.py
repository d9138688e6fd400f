"""Preference labels for the chunk emotion rankers with the QA approach (docs/method1.md, "Preference labels").

    python chunk_emotion_rankers/generate_preference_labels.py -emo Act -set Train
    python chunk_emotion_rankers/generate_preference_labels.py                  # -emo all -set all
    python chunk_emotion_rankers/generate_preference_labels.py --benchmark 30000 --raters 5

For each utterance i of a split, 10 % of the split's other utterances are drawn without replacement as
partners j (seeded). Every annotator rating of i is compared with every rating of j; if the largest of
p_greater, p_lower, p_equal is >= 0.6, greater gives label 1, lower label 0, equal no pair.
Output: preference_labels/<training|validation|testing>_<Emo>.csv with Sentence1,Sentence2,PreferLabel.

Vectorised: ratings are a NaN-padded (N, R) matrix; partners are drawn for a block of utterances at once
(random keys + argpartition), and the comparisons run as numpy broadcasting over (rows, partners, R, R)
with NaN masking (NaN compares False), in blocks that bound memory. When the ratings take few distinct
values (a Likert scale) the same counts come from rating histograms (matrix products), whose cost does
not grow with R^2; both paths give identical pairs (tested). The self-pair is never drawn.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cli import PREF_DIR, SPLIT_FILE, open_corpus, parse_sets, run_script  # noqa: E402
from corpus import CorpusError  # noqa: E402
from dataloader import limit_names  # noqa: E402
from errors import ToolkitError  # noqa: E402
from utils import ensure_dir, parse_emos  # noqa: E402

MEM_ELEMS = 1 << 25      # elements per temporary comparison block (~32 MB of bools)


def pad_ratings(lists):
    """List of 1-D rating arrays -> (N, max R) float64 matrix padded with NaN."""
    R = max((len(r) for r in lists), default=1)
    out = np.full((len(lists), max(R, 1)), np.nan)
    for i, r in enumerate(lists):
        out[i, :len(r)] = r
    return out


def draw_partners(rng, rows, N, P):
    """P distinct partners != i for every i in `rows` (sorted), drawn without replacement: (len(rows), P)."""
    part = np.stack([rng.choice(N - 1, P, replace=False) for _ in rows]) if len(rows) else np.zeros((0, P), int)
    part += part >= np.asarray(rows)[:, None]                   # skip the utterance itself
    return np.sort(part, axis=1)


def qa_counts_broadcast(Ri, Rj):
    """Ri (b, R), Rj (b, P, R) NaN-padded -> (greater, lower, total) rating-pair counts, each (b, P)."""
    a, c = Ri[:, None, :, None], Rj[:, :, None, :]
    gt = (a > c).sum((2, 3))
    lt = (a < c).sum((2, 3))
    tot = np.isfinite(Ri).sum(1)[:, None] * np.isfinite(Rj).sum(2)
    return gt, lt, tot


def histograms(ratings):
    """(N, R) NaN-padded ratings -> counts H (N, V) per distinct value and `below` (N, V) = #ratings < value."""
    vals = np.unique(ratings[np.isfinite(ratings)])
    H = np.stack([(ratings == v).sum(1) for v in vals], 1).astype(np.float32)
    below = np.cumsum(H, 1) - H
    return H, below


def qa_counts_hist(Hi, H, below, pj):
    """Histogram form of qa_counts_broadcast: rows with histograms Hi (b, V) against their partners pj (b, P)
    -> (greater, lower, total). Only the drawn partners are compared (cost b*P*V, not b*N*V)."""
    gt = np.einsum('bv,bpv->bp', Hi, below[pj])                # ratings of i above ratings of j
    eq = np.einsum('bv,bpv->bp', Hi, H[pj])
    tot = Hi.sum(1)[:, None] * H.sum(1)[pj]
    return gt, tot - gt - eq, tot


def preference_pairs(ratings, ratio=0.1, threshold=0.6, seed=31, method='auto'):
    """QA preference pairs of one split. ratings: (N, R) NaN-padded annotator ratings.
    Returns (i, j, label) int arrays: utterance i preferred over j (1) or not (0)."""
    ratings = np.asarray(ratings, np.float64)
    N = len(ratings)
    P = min(int(N * ratio), N - 1)
    if P < 1:
        return (np.zeros(0, np.int64),) * 3
    rng = np.random.default_rng(seed)
    R = ratings.shape[1]
    if method == 'auto':
        method = 'hist' if len(np.unique(ratings[np.isfinite(ratings)])) <= 32 else 'broadcast'
    if method == 'hist':
        H, below = histograms(ratings)
    draw_rows = max(1, MEM_ELEMS // (8 * P))
    cmp_rows = max(1, MEM_ELEMS // (P * R * R) if method == 'broadcast' else MEM_ELEMS // (3 * P * H.shape[1]))
    out_i, out_j, out_l = [], [], []
    for r0 in range(0, N, draw_rows):
        rows = np.arange(r0, min(r0 + draw_rows, N))
        part = draw_partners(rng, rows, N, P)
        for c0 in range(0, len(rows), cmp_rows):
            ri, pj = rows[c0:c0 + cmp_rows], part[c0:c0 + cmp_rows]
            if method == 'hist':
                gt, lt, tot = qa_counts_hist(H[ri], H, below, pj)
            else:
                gt, lt, tot = qa_counts_broadcast(ratings[ri], ratings[pj])
            need = threshold * tot - 1e-6 * np.maximum(tot, 1)   # p >= threshold, robust to rounding
            win, lose = (gt >= need) & (tot > 0), (lt >= need) & (tot > 0)
            keep = win | lose
            ii, pp = np.nonzero(keep)
            out_i.append(ri[ii].astype(np.int32))
            out_j.append(pj[ii, pp].astype(np.int32))
            out_l.append(win[ii, pp].astype(np.int8))
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
    return cat(out_i, np.int32), cat(out_j, np.int32), cat(out_l, np.int8)


def _csv_field(s):
    s = str(s)
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s


def write_pairs(path, names, i, j, label):
    """Write Sentence1,Sentence2,PreferLabel rows to a temporary file in the same folder, then os.replace
    (atomic). Rows are streamed per run of equal Sentence1 from pre-encoded name fields (fast for 10^8 rows)."""
    path = Path(path)
    ensure_dir(path.parent)
    field = [_csv_field(n) for n in names]
    pre = [(f + ',').encode() for f in field]
    suf = ([(f + ',0\n').encode() for f in field], [(f + ',1\n').encode() for f in field])
    i, j, label = np.asarray(i), np.asarray(j), np.asarray(label)
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]]) if len(i) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(i)]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.' + path.name, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(b'Sentence1,Sentence2,PreferLabel\n')
            for a, b in zip(starts.tolist(), ends.tolist()):
                p = pre[i[a]]
                f.write(b''.join([p + suf[lab][k] for k, lab in zip(j[a:b].tolist(), label[a:b].tolist())]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def benchmark(n, raters, ratio, seed, method):
    rng = np.random.default_rng(seed)
    latent = rng.uniform(1.5, 6.5, n)
    ratings = np.clip(np.rint(latent[:, None] + rng.normal(0, 1.0, (n, raters))), 1, 7)
    names = [f'MSP-PODCAST_{k // 100:04d}_{k % 100:04d}.wav' for k in range(n)]
    for meth in ([method] if method != 'both' else ['hist', 'broadcast']):
        t0 = time.perf_counter()
        i, j, lab = preference_pairs(ratings, ratio, 0.6, seed, meth)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            write_pairs(Path(d) / 'pairs.csv', names, i, j, lab)
            size = (Path(d) / 'pairs.csv').stat().st_size
        t2 = time.perf_counter()
        print(f'{meth:9s}: {n} utterances x {raters} raters, {int(n * ratio)} partners each: '
              f'{len(lab):,} pairs ({lab.mean():.1%} label 1) in {t1 - t0:.1f} s; CSV ({size / 1e6:.0f} MB) '
              f'written in {t2 - t1:.1f} s')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-emo', '--emo_attr', default='all', help='Act, Dom, Val or all')
    p.add_argument('-set', '--split_set', default='all', help='Train, Validation, Test or all (those present)')
    p.add_argument('--corpus', default=None, help='corpus root (default: the demo corpus data/demo_corpus)')
    p.add_argument('--out', default=str(PREF_DIR), help='output folder (default chunk_emotion_rankers/preference_labels)')
    p.add_argument('--ratio', type=float, default=0.1, help='fraction of the split drawn as partners per utterance')
    p.add_argument('--threshold', type=float, default=0.6, help='minimum fraction of the winning comparison')
    p.add_argument('--seed', type=int, default=31, help='random seed of the partner draw')
    p.add_argument('--method', default='auto', choices=['auto', 'hist', 'broadcast', 'both'],
                   help="comparison kernel: auto = histograms for <= 32 distinct rating values, else broadcasting "
                        "('both' only with --benchmark)")
    p.add_argument('--limit', type=int, default=None, help='quick runs: at most N utterances per split')
    p.add_argument('--benchmark', type=int, default=None, metavar='N',
                   help='time N synthetic utterances instead (nothing is written except a temporary CSV)')
    p.add_argument('--raters', type=int, default=5, help='raters per synthetic utterance for --benchmark')
    args = p.parse_args(argv)
    if args.benchmark:
        return benchmark(args.benchmark, args.raters, args.ratio, args.seed, args.method)
    if args.method == 'both':
        raise ToolkitError("--method both is for --benchmark only")
    ensure_dir(args.out)
    corpus = open_corpus(args.corpus)
    written, empty = [], []
    for emo in parse_emos(args.emo_attr):
        for split in parse_sets(args.split_set):
            try:
                lists = corpus.rating_lists(emo, split)
                names = [n for n in corpus.files(split) if n in lists]
            except CorpusError as e:
                raise ToolkitError(str(e)) from None
            missing = len(corpus.files(split)) - len(names)
            names = limit_names(names, args.limit, args.seed)
            if len(names) < 2:
                empty.append(f'{split}/{emo} ({len(names)} rated utterances)')
                continue
            t0 = time.time()
            i, j, lab = preference_pairs(pad_ratings([lists[n] for n in names]), args.ratio, args.threshold,
                                         args.seed, args.method)
            out = Path(args.out) / f'{SPLIT_FILE[split]}_{emo}.csv'
            write_pairs(out, names, i, j, lab)
            note = f'; {missing} without ratings skipped' if missing else ''
            print(f'{emo} {split}: {len(names)} utterances{note} -> {len(lab)} pairs '
                  f'({int(lab.sum())} label 1) in {time.time() - t0:.1f} s: {out}')
            written.append(out)
    if empty:
        print('no pairs for: ' + ', '.join(empty))
    if not written:
        raise ToolkitError(f'no preference labels written: no split of {corpus.root} has two rated utterances')
    return written


if __name__ == '__main__':
    sys.exit(run_script(main))
