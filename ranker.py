"""Chunk emotion rankers (docs/method1.md, "Rankers" and "Ranking sequences"): preference-pair tables,
pair logits, one training/evaluation epoch, macro-F1, and ranking sequences from a trained ranker.

A ranker f (LSTMnet, 2 outputs) scores a pair of chunks by f(x1) - f(x2). Chunk c_i's score in an
utterance is the number of chunks c_j for which the ordered pair (c_i, c_j) gets class 1; class 1 wins
exactly when g(c_i) > g(c_j) with g = f1 - f0, so one batched forward pass over the 22 chunks gives the
same 'min'-method ranks as the 462-pass tournament (`rank_sequence_allpairs`, the reference).
"""
import contextlib
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from tqdm import tqdm

from dataloader import K_CHUNKS, to_chunks
from errors import ToolkitError
from preference import SPLIT_FILE
from utils import MAX_CHUNKS, amp_context, atomic_write_text, chunk_starts, micro_slices, rank_desc_min


def load_pairs(path, store, limit=None, seed=0):
    """Pair CSV -> (names, idx1, idx2, labels) restricted to utterances in the feature store."""
    path = Path(path)
    if not path.exists():
        split = {v: k for k, v in SPLIT_FILE.items()}.get(path.stem.split('_')[0], path.stem.rsplit('_', 1)[0])
        emo = path.stem.split('_')[-1]
        raise ToolkitError(f'no preference labels {path}; generate them with\n  python chunk_emotion_rankers/'
                           f'generate_preference_labels.py -emo {emo} -set {split}')
    try:
        df = pd.read_csv(path, dtype={'Sentence1': 'category', 'Sentence2': 'category', 'PreferLabel': 'int8'})
    except Exception as e:
        raise ToolkitError(f'{path}: cannot read the pair table ({e}); expected columns '
                           f'Sentence1,Sentence2,PreferLabel') from None
    names = sorted(set(df['Sentence1'].cat.categories) | set(df['Sentence2'].cat.categories))
    a = pd.Categorical(df['Sentence1'], categories=names).codes
    b = pd.Categorical(df['Sentence2'], categories=names).codes
    ok = np.array([n in store for n in names], bool)
    keep = ok[a] & ok[b]
    if not keep.all():
        print(f'note: {int((~keep).sum())} of {len(keep)} pairs in {path.name} use utterances missing from the '
              f'feature store {store.path}; skipped')
    a, b, lab = a[keep], b[keep], df['PreferLabel'].to_numpy()[keep]
    if limit and len(lab) > limit:
        sel = np.sort(np.random.default_rng(seed).choice(len(lab), limit, replace=False))
        a, b, lab = a[sel], b[sel], lab[sel]
    if len(lab) == 0:
        raise ToolkitError(f'{path}: no usable pairs')
    return names, a, b, lab


def pair_logits(model, x, lengths, m, device, pos=None):
    """Padded (2B, T, D) batch [utterances 1; utterances 2] -> f(x1_k) - f(x2_k): (B, K, 2). With pos = (first,
    second, pairs) (pair_parts), x holds each utterance once and pair j is (x[first[j]], x[second[j]])."""
    chunks = to_chunks(x, lengths, m, device)              # (2B, K, m, D) or (U, K, m, D)
    out = model(chunks.flatten(0, 1)).view(len(x), chunks.shape[1], 2)
    if pos is None:
        return out[:len(x) // 2] - out[len(x) // 2:]
    return out[pos[0]] - out[pos[1]]


def pair_parts(first, second, per):
    """A training step's pairs (utterance indexes first[j], second[j]) -> parts [(rows, (i1, i2, pairs))] of at most
    `per` distinct utterances each: `rows` are the batch rows ([utterances 1; utterances 2]) of the part's
    utterances, each once; pair j of the part is (rows[i1[j]], rows[i2[j]]) and is pair pairs[j] of the batch.
    Pairs that share an utterance (a connected component of the step's pair graph) go into the same part where
    the part size allows, so that utterance runs once and one dropout mask serves its pairs (in the step's sum of
    CE, each pair counts once, as before)."""
    B = len(first)
    root = {}

    def find(u):
        while root.setdefault(u, u) != u:
            root[u] = root[root[u]]
            u = root[u]
        return u

    for a, b in zip(first, second):
        root[find(a)] = find(b)
    comp = {}
    for j, a in enumerate(first):
        comp.setdefault(find(a), []).append(j)
    parts, cur, utts = [], [], {}
    for j in (j for js in comp.values() for j in js):
        new = {first[j], second[j]} - set(utts)
        if cur and len(utts) + len(new) > max(per, 2):
            parts.append((cur, utts))
            cur, utts = [], {}
        for r, u in ((j, first[j]), (B + j, second[j])):
            utts.setdefault(u, r)
        cur.append(j)
    parts.append((cur, utts))
    out = []
    for pairs, utts in parts:
        at = {u: i for i, u in enumerate(utts)}
        out.append((torch.tensor(list(utts.values())),
                    (torch.tensor([at[first[j]] for j in pairs]), torch.tensor([at[second[j]] for j in pairs]),
                     torch.tensor(pairs))))
    return out


def macro_f1(conf):
    """conf[true, pred] (2x2 counts) -> (macro-F1, accuracy)."""
    conf = np.asarray(conf, np.float64)
    f1 = [2 * conf[c, c] / d if (d := conf[c].sum() + conf[:, c].sum()) > 0 else 0.0 for c in range(2)]
    return float(np.mean(f1)), float(np.trace(conf) / max(conf.sum(), 1))


def run_epoch(model, loader, m, device, amp, opt=None, scaler=None, desc='', show=True, max_chunks=MAX_CHUNKS):
    """One pass; trains when `opt` is given. Returns (mean CE, confusion matrix counts 2x2) over all ranks.

    Memory does not grow with the batch: at most `max_chunks` chunks go through the LSTM at once. Training
    accumulates the gradients of a step over parts of the batch's pairs (the mean CE of the whole batch, each
    part's sum of CE divided by the batch's count); with the utterance indexes (PairDataset's batches) a part
    holds pairs that share utterances and runs each of its utterances once (pair_parts). max_chunks=0 trains on
    the whole batch in one pass, each pair's two utterances run for that pair (the code path, and the bytes, of
    the demo artefacts shipped before issue 28; ~1.5 MB of memory per chunk). Evaluation (batches that carry the utterance indexes, as
    PairDataset's do) runs every utterance once per pass and reads each pair's logits from its two utterances'
    chunk outputs: the same logits as a forward pass per pair, many times fewer LSTM runs when utterances recur
    in many pairs."""
    train = opt is not None
    model.train(train)
    loss_sum, n, conf = torch.zeros((), device=device), 0, torch.zeros(2, 2, dtype=torch.long, device=device)
    cache = {}        # evaluation: utterance index -> its chunk outputs (K, 2)
    with torch.set_grad_enabled(train):
        for x, lengths, y, *ids in tqdm(loader, desc=desc, leave=False, disable=not show, dynamic_ncols=True):
            B = len(y)
            y = y.to(device).long()
            if train and not max_chunks:      # one pass over the batch, a forward pass per pair (before issue 28)
                with amp_context(device, amp):
                    d = pair_logits(model, x, lengths, m, device)
                yk = y[:, None].expand(-1, d.shape[1])
                loss = torch.nn.functional.cross_entropy(d.float().flatten(0, 1), yk.flatten())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                loss_sum += loss.detach() * yk.numel()
                n += yk.numel()
                conf += torch.bincount(2 * yk.flatten() + d.argmax(-1).flatten(), minlength=4).view(2, 2)
                continue
            if train:
                opt.zero_grad(set_to_none=True)
                parts = pair_parts(*[i.tolist() for i in ids], max_chunks // K_CHUNKS) if ids else \
                    [(p_, None) for p_ in map(_pair_rows, [B] * B, micro_slices(B, max_chunks // (2 * K_CHUNKS)))]
                for k, (rows, pos) in enumerate(parts):
                    with amp_context(device, amp):
                        d = pair_logits(model, x[rows], lengths[rows], m, device, pos)
                    sel = rows[:len(rows) // 2] if pos is None else pos[2]
                    ys = y[sel][:, None].expand(-1, d.shape[1])
                    ce = torch.nn.functional.cross_entropy(d.float().flatten(0, 1), ys.flatten(), reduction='sum')
                    last = k == len(parts) - 1
                    with contextlib.nullcontext() if last or not hasattr(model, 'no_sync') else model.no_sync():
                        scaler.scale(ce / (B * d.shape[1])).backward()
                    loss_sum += ce.detach()
                    n += ys.numel()
                    conf += torch.bincount(2 * ys.flatten() + d.argmax(-1).flatten(), minlength=4).view(2, 2)
                scaler.step(opt)
                scaler.update()
                continue
            if ids:
                d = _cached_pair_logits(model, x, lengths, torch.cat(ids).tolist(), cache, m, device, amp, max_chunks)
            else:
                with amp_context(device, amp):
                    d = torch.cat([pair_logits(model, x[r], lengths[r], m, device)
                                   for r in map(_pair_rows, [B] * B, micro_slices(B, max_chunks // (2 * K_CHUNKS) or B))])
            yk = y[:, None].expand(-1, d.shape[1])
            loss_sum += torch.nn.functional.cross_entropy(d.float().flatten(0, 1), yk.flatten(), reduction='sum')
            n += yk.numel()
            conf += torch.bincount(2 * yk.flatten() + d.argmax(-1).flatten(), minlength=4).view(2, 2)
    stats = torch.cat([loss_sum.view(1).double(), torch.tensor([n], device=device, dtype=torch.double),
                       conf.flatten().double()])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(stats)
    return float(stats[0] / max(stats[1], 1)), stats[2:].view(2, 2).cpu().numpy()


def _pair_rows(B, s):
    """Rows of pairs s (a slice) in a [utterances 1; utterances 2] batch of B pairs."""
    r = torch.arange(B)[s]
    return torch.cat([r, B + r])


def _cached_pair_logits(model, x, lengths, ids, cache, m, device, amp, max_chunks):
    """Evaluation: padded (2B, T, D) [utterances 1; utterances 2] with their utterance indexes `ids` -> (B, K, 2)
    pair logits; the chunk outputs of utterances not yet in `cache` are computed (each once) and kept there."""
    first = {}
    for j, u in enumerate(ids):
        if u not in cache:
            first.setdefault(u, j)
    new = list(first.values())
    for s in micro_slices(len(new), max_chunks // K_CHUNKS or len(new)):
        rows = torch.tensor(new[s])
        with amp_context(device, amp):
            chunks = to_chunks(x[rows], lengths[rows], m, device)            # (b, K, m, D)
            out = model(chunks.flatten(0, 1)).float().view(len(rows), chunks.shape[1], 2)
        cache.update(zip([ids[j] for j in new[s]], out))
    out = torch.stack([cache[u] for u in ids])
    B = len(ids) // 2
    return out[:B] - out[B:]


@torch.no_grad()
def rank_sequences(model, chunks, lengths, m):
    """chunks (B, K, m, D), frame counts (B,) -> (B, K) int ranks from one forward pass of B*K chunks."""
    B, K = chunks.shape[:2]
    g = model.chunk_scores(chunks.flatten(0, 1)).float().view(B, K)
    ranks = rank_desc_min(g.cpu())
    starts, _ = chunk_starts(lengths, m, K)
    ranks[starts[:, -1] == starts[:, 0]] = 1          # identical chunks tie, as in the tournament
    return ranks


@torch.no_grad()
def rank_sequence_allpairs(model, chunks):
    """Reference: the straightforward tournament, 462 siamese passes for K=22 chunks (K, m, D) -> (K,) ranks."""
    K = len(chunks)
    wins = np.zeros(K)
    for i in range(K):
        for j in range(K):
            if i != j:
                d = model(chunks[i:i + 1]) - model(chunks[j:j + 1])     # f(c_i) - f(c_j)
                wins[i] += int(d.argmax(1)) == 1
    return rankdata(-wins, method='min').astype(int)


def rank_loader(model, loader, names, m, device, amp='off', desc=''):
    """{name: {'ChunkRankSeq': [K ints]}} for every utterance of a loader over an UtteranceDataset."""
    out = {}
    for x, lengths, idx in tqdm(loader, desc=desc, dynamic_ncols=True, leave=False):
        with amp_context(device, amp):
            ranks = rank_sequences(model, to_chunks(x, lengths, m, device), lengths, m)
        for i, r in zip(idx.tolist(), ranks.tolist()):
            out[names[i]] = {'ChunkRankSeq': r}
    return out


# ================================================================ ranking-sequence files
def rankseq_record_path(path):
    """EmoChunkRankSeq/training_Act.json -> EmoChunkRankSeq/training_Act.meta.json (its record)."""
    return Path(path).with_suffix('.meta.json')


def write_rank_sequences(path, seqs, record):
    """The published JSON {FileName: {'ChunkRankSeq': [K ints]}} (what the authors' code reads) and, beside it,
    its record <name>.meta.json: `record` (attribute, split, ranker, corpus, features) + the JSON's SHA-256."""
    text = json.dumps(seqs, indent=4) + '\n'
    atomic_write_text(path, text)
    rec = {'kind': 'ranking_sequences', 'version': 1, **record, 'utterances': len(seqs),
           'sha256': hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_text(rankseq_record_path(path), json.dumps(rec, indent=1) + '\n')
    return rec


def load_rank_sequences(path, emo=None, corpus=None, split=None, K=None):
    """({FileName: [K ints]}, record or None) of a ranking-sequence JSON, checked where it is read: a truncated or
    malformed file, entries that are not K whole ranks in 1..K, and (with its record) another attribute, corpus or
    split than asked, or a file changed after it was written, stop with the file's name. A file without a record
    (written before records existed) is read with a note: its attribute, ranker and corpus cannot be checked."""
    path = Path(path)
    how = 'make it again with chunk_emotion_rankers/generate_ranking_seqence.py'
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as e:
        raise ToolkitError(f'{path}: cannot read the ranking sequences ({e}); {how}') from None
    except ValueError as e:
        raise ToolkitError(f'{path}: not valid JSON ({e}; truncated?); {how}') from None
    if not isinstance(data, dict):
        raise ToolkitError(f'{path}: expected {{FileName: {{"ChunkRankSeq": [ranks]}}}}, found a JSON '
                           f'{type(data).__name__}; {how}')
    out, bad = {}, []
    for name, v in data.items():
        seq = v.get('ChunkRankSeq') if isinstance(v, dict) else None
        ok = isinstance(seq, list) and len(seq) > 0 and all(
            isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= len(seq) for r in seq)
        if not ok or (K is not None and len(seq) != K):
            bad.append(name)
        else:
            out[name] = seq
    if bad:
        v = data[bad[0]]
        raise ToolkitError(f'{path}: {len(bad)} of {len(data)} entries are not {K or "K"} whole ranks in 1..{K or "K"} '
                           f'(e.g. {bad[0]}: {json.dumps(v)[:120]}); {how}')
    rp = rankseq_record_path(path)
    if not rp.is_file():
        print(f'note: {path.name}: no record {rp.name} (written before records existed): its attribute, ranker and '
              f'corpus cannot be checked', file=sys.stderr)
        return out, None
    try:
        rec = json.loads(rp.read_text())
    except ValueError as e:
        raise ToolkitError(f'{rp}: unreadable record ({e}); {how}') from None
    if not isinstance(rec, dict) or rec.get('kind') != 'ranking_sequences':
        raise ToolkitError(f'{rp}: not a ranking-sequence record; {how}')
    if rec.get('sha256') != hashlib.sha256(raw).hexdigest():
        raise ToolkitError(f'{path}: changed after it was written (its SHA-256 differs from {rp.name}); {how}')
    for key, want, what in (('attribute', emo, '-emo'), ('split', split, 'the split'),
                            ('corpus', corpus, 'the corpus')):
        have = rec.get(key)
        have = have.get('name') if isinstance(have, dict) else have
        if want is not None and have is not None and have != want:
            raise ToolkitError(f'{path} holds ranking sequences of {key} {have!r} (its record {rp.name}), but '
                               f'{what} here is {want!r}; pass the sequences of {want} (--rankseq DIR), or {how}')
    return out, rec
