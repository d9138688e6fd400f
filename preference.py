"""QA preference labels of one split, vectorised (docs/method1.md, "Preference labels").

For each utterance i, 10 % of the split's other utterances are drawn without replacement as partners j
(seeded). Every annotator rating of i is compared with every rating of j; if the largest of p_greater,
p_lower, p_equal is >= 0.6, greater gives label 1, lower label 0, equal no pair.

Ratings are a NaN-padded (N, R) matrix. Partners are drawn for a block of utterances at once
(`draw_partners`: draws with replacement, sorted, repeats replaced by fresh draws; each utterance gets a
uniform random subset, independently of the others). Rows are processed in fixed blocks, each with its own
random stream spawned from the seed, on two threads: the pairs depend on the seed and N only, not on the
thread count. A pair's label depends only on the two rating histograms, so when a split has few distinct
histograms (Likert ratings, a handful of raters) the labels of all histogram pairs are computed once and
looked up (`method='table'`); otherwise the counts come from rating histograms (matrix products, 'hist')
or numpy broadcasting over (rows, partners, R, R) with NaN masking ('broadcast'). All kernels give
identical pairs (tested). The self-pair is never drawn. Speed against the published loop:
bench/bench_preference.py.
"""
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from utils import ensure_dir

# file-name prefix of the per-split preference labels and ranking sequences (<prefix>_<Emo>.csv|json)
SPLIT_FILE = {'Train': 'training', 'Validation': 'validation', 'Test': 'testing'}
MEM_ELEMS = 1 << 25      # elements per temporary comparison block (~32 MB of bools)
BLOCK_ELEMS = 1 << 22    # partner draws per block of utterances (16 MB of int32)
TABLE_CLASSES = 4096     # at most this many distinct rating histograms -> one label table (16 MB)


def pad_ratings(lists):
    """List of 1-D rating arrays -> (N, max R) float64 matrix padded with NaN."""
    R = max((len(r) for r in lists), default=1)
    out = np.full((len(lists), max(R, 1)), np.nan)
    for i, r in enumerate(lists):
        out[i, :len(r)] = r
    return out


def draw_partners(rng, rows, N, P):
    """P distinct partners != i for every i in `rows`, each row a uniform random P-subset of the other N - 1
    utterances, drawn independently: (len(rows), P) int32, rows in no particular order.

    P draws with replacement per row, sorted; every repeated value is replaced by a fresh draw that is not
    yet in its row (rounds until none is left; the first of equal fresh draws wins). The decisions depend on
    the draws only through equality, so the result is invariant under relabelling the utterances: uniform.
    Dense case (2P > N - 1): the P smallest of N - 1 random keys."""
    rows = np.asarray(rows, np.int64)
    b, n = len(rows), N - 1
    if n < 2 * P:
        part = np.argsort(rng.random((b, n)), axis=1)[:, :P].astype(np.int32)
    else:
        base = (np.arange(b, dtype=np.int32) * np.int32(n))[:, None]     # row keys r*n + v (b*n < 2**31)
        part = rng.integers(0, n, (b, P), dtype=np.int32)
        part += base
        part.sort(axis=1)
        flat = part.reshape(-1)                         # globally sorted: membership by binary search
        slot = np.flatnonzero(flat[1:] == flat[:-1]) + 1
        row = (slot // P).astype(np.int32)
        acc, fill_slot, fill_key = np.zeros(0, np.int32), [], []
        while len(slot):
            key = row * np.int32(n) + rng.integers(0, n, len(slot), dtype=np.int32)
            uk, first = np.unique(key, return_index=True)
            new = flat[np.searchsorted(flat, uk).clip(max=len(flat) - 1)] != uk
            if len(acc):
                new &= acc[np.searchsorted(acc, uk).clip(max=len(acc) - 1)] != uk
            take = first[new]
            fill_slot.append(slot[take])
            fill_key.append(key[take])
            acc = np.sort(np.concatenate([acc, key[take]]))
            left = np.ones(len(slot), bool)
            left[take] = False
            slot, row = slot[left], row[left]
        if fill_slot:
            flat[np.concatenate(fill_slot)] = np.concatenate(fill_key)
        part -= base
    part += part >= rows[:, None]                       # skip the utterance itself
    return part


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
    H = np.stack([(ratings == v).sum(1) for v in vals], 1).astype(np.float32) if len(vals) else \
        np.zeros((len(ratings), 1), np.float32)
    below = np.cumsum(H, 1) - H
    return H, below


def qa_counts_hist(Hi, H, below, pj):
    """Histogram form of qa_counts_broadcast: rows with histograms Hi (b, V) against their partners pj (b, P)
    -> (greater, lower, total). Only the drawn partners are compared (cost b*P*V, not b*N*V)."""
    gt = np.einsum('bv,bpv->bp', Hi, below[pj])                # ratings of i above ratings of j
    eq = np.einsum('bv,bpv->bp', Hi, H[pj])
    tot = Hi.sum(1)[:, None] * H.sum(1)[pj]
    return gt, tot - gt - eq, tot


def qa_labels(gt, lt, tot, threshold):
    """Counts -> int8 labels: 1 (i greater), 0 (i lower), -1 (no pair: equal wins or no fraction >= threshold)."""
    need = threshold * tot - 1e-6 * np.maximum(tot, 1)          # p >= threshold, robust to rounding
    lab = np.full(np.shape(gt), -1, np.int8)
    lab[(lt >= need) & (tot > 0)] = 0
    lab[(gt >= need) & (tot > 0)] = 1
    return lab


def label_table(ratings, threshold, max_classes=TABLE_CLASSES):
    """Utterances grouped by rating histogram: (class of each utterance (N,), int8 label table (U, U)), or None
    when there are more than max_classes distinct histograms."""
    H, _ = histograms(ratings)
    U, cls = np.unique(H, axis=0, return_inverse=True)
    if len(U) > max_classes:
        return None
    gt = U @ (np.cumsum(U, 1) - U).T
    tot = U.sum(1)[:, None] * U.sum(1)[None, :]
    return cls.reshape(-1).astype(np.int32), qa_labels(gt, tot - gt - U @ U.T, tot, threshold)


def _block_labels(ratings, rows, part, threshold, method, table, hist):
    """Labels (len(rows), P) int8 of one block of utterances against their partners."""
    if method == 'table':
        cls, lab = table
        return lab[cls[rows][:, None], cls[part]]
    out = np.empty(part.shape, np.int8)
    R = ratings.shape[1]
    P = part.shape[1]
    step = max(1, MEM_ELEMS // (P * R * R) if method == 'broadcast' else MEM_ELEMS // (3 * P * hist[0].shape[1]))
    for c0 in range(0, len(rows), step):
        ri, pj = rows[c0:c0 + step], part[c0:c0 + step]
        if method == 'hist':
            counts = qa_counts_hist(hist[0][ri], hist[0], hist[1], pj)
        else:
            counts = qa_counts_broadcast(ratings[ri], ratings[pj])
        out[c0:c0 + step] = qa_labels(*counts, threshold)
    return out


def preference_pairs(ratings, ratio=0.1, threshold=0.6, seed=31, method='auto', threads=2):
    """QA preference pairs of one split. ratings: (N, R) NaN-padded annotator ratings.
    Returns (i, j, label) arrays (int32, int32, int8): utterance i preferred over j (1) or not (0), grouped by i.
    method: 'auto' (table when the split has <= TABLE_CLASSES distinct rating histograms, else hist for
    <= 32 distinct values, else broadcast), 'table', 'hist' or 'broadcast'; all give identical pairs."""
    ratings = np.asarray(ratings, np.float64)
    N = len(ratings)
    P = min(int(N * ratio), N - 1)
    if P < 1:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8)
    table = label_table(ratings, threshold) if method in ('auto', 'table') else None
    if method == 'auto':
        method = 'table' if table else 'hist' if len(np.unique(ratings[np.isfinite(ratings)])) <= 32 else 'broadcast'
    if method == 'table' and table is None:
        table = label_table(ratings, threshold, max_classes=N)
    hist = histograms(ratings) if method == 'hist' else None
    rows_per_block = max(1, min(BLOCK_ELEMS // P, (2 ** 31 - 1) // max(N, 1)))
    starts = range(0, N, rows_per_block)
    seeds = np.random.SeedSequence(seed).spawn(len(starts))

    def block(k):
        rows = np.arange(starts[k], min(starts[k] + rows_per_block, N))
        part = draw_partners(np.random.default_rng(seeds[k]), rows, N, P)
        lab = _block_labels(ratings, rows, part, threshold, method, table, hist)
        keep = lab >= 0
        return np.repeat(rows.astype(np.int32), keep.sum(1)), part[keep], lab[keep]

    with ThreadPoolExecutor(max(1, threads)) as ex:
        out = list(ex.map(block, range(len(starts))))
    return tuple(np.concatenate([o[k] for o in out]) for k in range(3))


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
