"""Datasets and batching: method-1 utterance and pair datasets, padding, dynamic chunks, samplers, and the
MSCR datasets (word-aligned audio + text, missing-data masks).

    ds = UtteranceDataset(store, names, fnorm, targets) # a memmap slice per item, z-norm, NaN->0, clip
    loader, sampler = make_loader(ds, ...)              # workers, DistributedSampler, PadCollate
    chunks = to_chunks(x, lengths, m, device)           # padded batch -> (B, 22, m, D) in one gather

Normalisation (norm.py), checkpoints (checkpoints.py) and flags (cli.py) live elsewhere.
"""
import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from corpus import CorpusError
from errors import ToolkitError
from model import dynamic_chunks
from utils import EMO_COL, EMOS, atomic_write_text, dynamic_chunk_split, normalize_feats, pad_batch

K_CHUNKS = 22                        # C = 11 chunks x scaling factor n = 2 (docs/chunking.md)


def chunk_frames(hop):
    """m = whole frames in one second (62 at the published 16 ms hop, 100 at 10 ms, 50 at 20 ms)."""
    return int(np.floor(1.0 / float(hop) + 1e-6))


def limit_names(names, limit, seed=0):
    """At most `limit` names: a seeded random subset kept in the original order."""
    if not limit or len(names) <= limit:
        return list(names)
    keep = np.sort(np.random.default_rng(seed).choice(len(names), limit, replace=False))
    return [names[i] for i in keep]


# ================================================================ datasets and batches
class UtteranceDataset(Dataset):
    """(normalised features (T, D) float32, *targets[i], i) per utterance; one memmap slice per item."""

    def __init__(self, store, names, norm, targets=()):
        self.store, self.names, self.norm = store, list(names), norm
        self.targets = [np.asarray(t, np.float32) for t in targets]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        name = self.names[i]
        return (self.norm(name, self.store.get(name)), *(t[i] for t in self.targets), i)


class PairDataset(Dataset):
    """(features of utterance 1, of utterance 2, preference label) per preference pair."""

    def __init__(self, store, names, idx1, idx2, labels, norm):
        self.store, self.names, self.norm = store, list(names), norm
        self.idx1, self.idx2 = np.asarray(idx1), np.asarray(idx2)
        self.labels = np.asarray(labels, np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        """-> (features 1, features 2, label, utterance index 1, utterance index 2); the indexes let an evaluation
        run each utterance once however many pairs it is in (ranker.run_epoch)."""
        a, b = self.names[self.idx1[i]], self.names[self.idx2[i]]
        return self.norm(a, self.store.get(a)), self.norm(b, self.store.get(b)), self.labels[i], self.idx1[i], self.idx2[i]


class PadCollate:
    """Batch of items whose first `n_feats` entries are (T, D) arrays -> one zero-padded (n*B, T, D)
    tensor + lengths (n*B,), then the other entries stacked. Chunks are cut later, on the device."""

    def __init__(self, m, n_feats=1):
        self.m, self.n = m, n_feats

    def __call__(self, batch):
        cols = list(zip(*batch))
        x, lengths = pad_batch([a for c in cols[:self.n] for a in c], min_len=self.m)
        rest = [torch.as_tensor(np.asarray(c)) for c in cols[self.n:]]
        return (x, lengths, *rest)


def to_chunks(x, lengths, m, device, K=K_CHUNKS):
    """Padded batch (B, T, D) -> dynamic chunks (B, K, m, D) on `device` with one gather (docs/chunking.md)."""
    x = x.to(device, non_blocking=True)
    return dynamic_chunk_split(x, lengths, m, K)


def make_loader(ds, batch, collate, shuffle, workers, device, rank=0, world=1, seed=0, drop_last=False):
    """DataLoader over a DistributedSampler (also for one process: same code path everywhere).
    drop_last drops a final incomplete batch (a 1-utterance batch has no CCC)."""
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == 'cuda', persistent_workers=workers > 0, drop_last=drop_last,
                        generator=torch.Generator().manual_seed(seed))   # keeps the global RNG for dropout only
    return loader, sampler


class EpochSubsetSampler(torch.utils.data.Sampler):
    """Each epoch a fresh seeded random subset of `per_epoch` items (all items if fewer), split evenly over
    the DDP ranks like DistributedSampler (same draw on every rank; call set_epoch)."""

    def __init__(self, n_items, per_epoch, rank=0, world=1, seed=0):
        self.n, self.k = n_items, min(per_epoch or n_items, n_items)
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return -(-self.k // self.world)

    def __iter__(self):
        idx = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)[:self.k]
        idx = np.resize(idx, len(self) * self.world)      # pad with repeats to a multiple of world
        return iter(idx[self.rank::self.world].tolist())


class GroupedPairSampler(EpochSubsetSampler):
    """--pair-sampling grouped: each epoch `per_epoch` preference pairs drawn so that a step's pairs share
    utterances. The utterances are dealt at random into groups of `group` (a fresh seeded deal every epoch) and
    the epoch takes the pairs whose two utterances fall into the same group, group after group, each group's
    pairs in random order (more deals are drawn until `per_epoch` pairs are found). A step of B pairs then runs
    about `group` utterances instead of up to 2B: the LSTM work per pair drops by the number of pairs an
    utterance is in within the step, while every pair still has the same chance of being drawn in an epoch.
    Split over the DDP ranks like EpochSubsetSampler."""

    def __init__(self, idx1, idx2, n_utts, per_epoch, group, rank=0, world=1, seed=0):
        super().__init__(len(idx1), per_epoch, rank, world, seed)
        self.idx1, self.idx2 = np.asarray(idx1), np.asarray(idx2)
        self.n_utts, self.group = int(n_utts), max(2, int(group))

    @staticmethod
    def group_size(n_utts, n_pairs, batch, max_utts):
        """Utterances per group so that a group holds about one batch of pairs (pairs are spread evenly over
        the n_utts^2 / 2 utterance pairs), at most `max_utts` (those that fit one LSTM pass), at least 2."""
        dense = int(np.ceil(n_utts * np.sqrt(min(1.0, batch / max(n_pairs, 1)))))
        return max(2, min(dense, max_utts) if max_utts else dense)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        picks, have, free = [], 0, np.ones(self.n, bool)
        for _ in range(1000):
            g = np.empty(self.n_utts, np.int64)
            g[rng.permutation(self.n_utts)] = np.arange(self.n_utts) // self.group
            g1 = g[self.idx1]
            inside = np.flatnonzero((g1 == g[self.idx2]) & free)      # a pair is drawn once per epoch
            inside = inside[np.lexsort((rng.random(len(inside)), g1[inside]))][:self.k - have]
            picks.append(inside)
            free[inside] = False
            have += len(inside)
            if have >= self.k:
                break
        if have < self.k:        # pathological tables: the rest uniformly
            picks.append(rng.permutation(np.flatnonzero(free))[:self.k - have])
        idx = np.concatenate(picks)
        idx = np.resize(idx, len(self) * self.world)
        return iter(idx[self.rank::self.world].tolist())


def gather_eval(pred_by_index, world):
    """Merge {dataset index: value} dicts from every DDP rank (DistributedSampler pads with repeats)."""
    if world == 1:
        return pred_by_index
    import torch.distributed as dist
    parts = [None] * world
    dist.all_gather_object(parts, pred_by_index)
    out = {}
    for p in parts:
        out.update(p)
    return out


# ================================================================ MSCR datasets (mscr.py owner) ====
# MSCR (method 2, docs/mscr.md): audio chunks (one-second dynamic windows or exact word boundaries) + text tokens.
CHUNKINGS = ('dynamic', 'words')
MSCR_NORMS = ('utterance', 'frame')


def mscr_word_alignments(corpus, names, cache_path=None):
    """FileName -> (word times [(start, end)] in seconds or None, source). Words come from the TextGrid's
    first tier (silence dropped); fallbacks, reported by the dataset: the transcript's word count when the
    TextGrid is missing or unreadable (source 'transcript': no times, one dynamic chunk per word), else
    ('duration': one chunk per second). Cached in `cache_path` (CSV keyed by the ForceAligned folder's
    mtime) because reading 100k TextGrids takes a while; an unwritable cache is skipped."""
    tg_dir = getattr(corpus, 'textgrid_dir', None)
    stamp = str(os.path.getmtime(tg_dir)) if tg_dir is not None and os.path.isdir(tg_dir) else 'none'
    cache = {}
    if cache_path and Path(cache_path).exists():
        try:
            df = pd.read_csv(cache_path, dtype={'stamp': str, 'times': str}, keep_default_na=False)
            cache = {r.FileName: (_parse_times(r.times, r.n_words), r.source)
                     for r in df.itertuples() if r.stamp == stamp}
        except Exception:   # unreadable or old cache: rebuild it
            cache = {}
    todo = [n for n in names if n not in cache]
    for n in tqdm(todo, desc='word alignments', unit='utt', disable=len(todo) < 500, dynamic_ncols=True):
        try:
            w = corpus.words(n)
        except CorpusError:
            w = None
        if w is not None:
            cache[n] = ([(float(a), float(b)) for a, b, _ in w], 'textgrid')
            continue
        t = corpus.transcript(n)
        cache[n] = (len(t.split()), 'transcript') if t and t.strip() else (None, 'duration')
    if todo and cache_path:
        rows = [(k, len(v) if isinstance(v, list) else v, src, stamp,
                 ';'.join(f'{a:.4f}:{b:.4f}' for a, b in v) if isinstance(v, list) else '')
                for k, (v, src) in cache.items()]
        df = pd.DataFrame(rows, columns=['FileName', 'n_words', 'source', 'stamp', 'times'])
        with contextlib.suppress(OSError):
            atomic_write_text(cache_path, df.to_csv(index=False))
    return {n: cache[n] for n in names}


def _parse_times(s, n):
    """Cache cell -> word times list ('textgrid'), a word count ('transcript') or None ('duration')."""
    if s:
        return [tuple(float(v) for v in p.split(':')) for p in s.split(';')]
    return None if n in ('', None) else int(n)


def word_spans(times, hop, T, cap):
    """Exact word-boundary chunks (docs/mscr.md, "Chunks"): word i covers the frames whose time stamp
    k·hop lies in [start_i, end_i), i.e. [round(start/hop), round(end/hop)), at least one frame, clipped to
    the T frames. With more than `cap` words, consecutive words are merged into `cap` groups (each group
    spans its first word's start to its last word's end). -> (C, 2) int64 array of (start, length)."""
    t = np.asarray(times, np.float64).reshape(-1, 2)
    if len(t) > cap:
        groups = np.array_split(np.arange(len(t)), cap)
        t = np.array([[t[g[0], 0], t[g[-1], 1]] for g in groups])
    lo = np.clip(np.round(t[:, 0] / hop).astype(np.int64), 0, max(T - 1, 0))
    hi = np.clip(np.round(t[:, 1] / hop).astype(np.int64), lo + 1, max(T, 1))
    return np.stack([lo, hi - lo], 1)


def dynamic_spans(T, C, m):
    """One-second dynamic chunks of one utterance -> (C, 2) int64 array of (start, length)."""
    start, length = dynamic_chunks(torch.tensor([T]), torch.tensor([C]), m)
    return np.stack([start[0].numpy(), length[0].numpy()], 1).astype(np.int64)


class MSCRDataset(Dataset):
    """Utterances of one split with audio frames, chunk spans, text tokens and z-normalised labels.

    norm: see `norm.mscr_norm`. chunking: 'dynamic' (C = number of aligned words, at least 2, one-second
    windows) or 'words' (each aligned word's own frames, from the TextGrid times). Items: dict(
    a=(T, Da) normalised frames, spans=(C, 2) chunk (start, length), t=(N, Dt) normalised token
    embeddings (at most max_len-1), y=(3,) z-labels, idx). Normalisation: z, NaN -> 0, clip to [-3, 3].
    Utterances missing from a store, without frames/tokens, with a NaN label or (words) without a TextGrid
    are skipped and reported. Longer sequences are capped with a warning (counted in `report`): audio gets
    max_len-1 chunks that still cover the whole utterance; text keeps its first max_len-1 tokens.
    Set `self.missing = dict(audio=p, text=q, mode=...)` to add the seeded missing-data keep masks.
    """

    def __init__(self, corpus, split, audio, text, norm, max_len=128, seed=0, verbose=True, names=None,
                 chunking='dynamic'):
        if chunking not in CHUNKINGS:
            raise ToolkitError(f'chunking {chunking!r}: choose from {", ".join(CHUNKINGS)}')
        self.audio, self.text, self.seed, self.chunking = audio, text, seed, chunking
        self.m = chunk_frames(audio.hop)
        self.a_norm = tuple(np.asarray(v, np.float32) for v in norm['audio'])
        self.t_norm = tuple(np.asarray(v, np.float32) for v in norm['text'])
        self.cap = max_len - 1
        names = corpus.files(split) if names is None else names
        Y = corpus.labels.set_index('FileName').reindex(names)[[EMO_COL[e] for e in EMOS]].to_numpy(np.float64)
        a_len, t_len = audio.lengths(), text.lengths()
        wa = mscr_word_alignments(corpus, names, Path(text.path).parent / 'word_alignments.csv')
        skipped, self.items = [], []
        fallback = {'transcript': 0, 'duration': 0}
        capped_words = capped_tokens = 0
        for n, y in zip(names, Y):
            words, src = wa[n]
            why = ('not in the audio store' if n not in a_len else 'no audio frames' if a_len[n] == 0 else
                   'not in the text store' if n not in t_len else 'no text tokens' if t_len[n] == 0 else
                   'a consensus label is NaN' if not np.all(np.isfinite(y)) else
                   'no word times (TextGrid) for --chunking words' if chunking == 'words' and not (isinstance(words, list) and words)
                   else None)
            if why:
                skipped.append((n, why))
                continue
            if src != 'textgrid':
                fallback[src] += 1
            spans, n_words = self._spans(words, a_len[n])
            capped_words += n_words > self.cap
            capped_tokens += t_len[n] > self.cap
            z = np.float32([(y[i] - norm[e][0]) / norm[e][1] for i, e in enumerate(EMOS)])
            self.items.append((n, spans, z))
        self.names = [it[0] for it in self.items]
        self.skipped, self.missing = skipped, None
        self.report = dict(split=split, used=len(self.items), skipped=len(skipped), chunking=chunking,
                           capped_words=int(capped_words), capped_tokens=int(capped_tokens),
                           **{f'words_from_{k}': v for k, v in fallback.items()})
        self._print_report(split, verbose)

    def _spans(self, words, T):
        """Chunk spans of one utterance and its word count."""
        if self.chunking == 'words':
            return word_spans(words, self.audio.hop, T, self.cap), len(words)
        n_words = len(words) if isinstance(words, list) else words
        C = max(int(round(T * self.audio.hop)) if n_words is None else n_words, 2)
        return dynamic_spans(T, min(C, self.cap), self.m), C

    def _print_report(self, split, verbose):
        r = self.report
        if verbose:
            print(f'{split}: {r["used"]} utterances ({r["skipped"]} skipped; {self.chunking} chunks)'
                  + ''.join(f'; {r["words_from_" + k]} without a TextGrid: words counted from the {k}'
                            for k in ('transcript', 'duration') if r['words_from_' + k]))
            for n, why in self.skipped[:10]:
                print(f'  skipped {n}: {why}')
            if len(self.skipped) > 10:
                print(f'  ... and {len(self.skipped) - 10} more')
        if r['capped_words']:
            warnings.warn(f'{split}: {r["capped_words"]} utterances have more than {self.cap} aligned words; their '
                          f'audio is split into {self.cap} chunks (still covering the whole utterance). Raise '
                          f'--max-seq-len to keep one chunk per word.')
        if r['capped_tokens']:
            warnings.warn(f'{split}: {r["capped_tokens"]} transcripts have more than {self.cap} tokens; only the '
                          f'first {self.cap} are used. Raise --max-seq-len to keep them all.')

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        name, spans, y = self.items[i]
        a = normalize_feats(np.array(self.audio.get(name)), *self.a_norm)
        t = normalize_feats(np.array(self.text.get(name)[:self.cap], dtype=np.float32), *self.t_norm)
        item = dict(a=a, spans=spans, t=t, y=y, idx=i)
        if self.missing:
            item.update(mscr_missing_masks(len(a), len(spans), len(t), self.missing, self.seed, i))
        return item


def _drop_smallest(u, p):
    """Keep mask dropping the round(p·n) items with the smallest uniforms u (so masks are nested in p)."""
    k = int(np.floor(p * len(u) + 0.5))
    keep = np.ones(len(u), bool)
    keep[np.argsort(u, kind='stable')[:k]] = False
    return keep


def mscr_missing_masks(T, C, N, missing, seed, i):
    """Seeded keep masks of utterance i: frames (T,), chunks (C,), tokens (N,), audio_on, text_on.

    missing: dict(audio=p, text=q, mode='frames'|'chunks'|'tokens'|'modality'). The uniforms depend only
    on (seed, i), so what is missing at p is also missing at any larger p. In the frames/chunks/tokens
    modes the text loses round(q·N) tokens and the audio round(p·T) frames (frames, tokens) or
    round(p·C) chunks (chunks); in the modality mode each modality is absent with probability p / q."""
    rng = np.random.default_rng([seed, i, 7919])
    uf, uc, ut, um = rng.random(T), rng.random(C), rng.random(N), rng.random(2)
    pa, pt, mode = float(missing.get('audio', 0)), float(missing.get('text', 0)), missing.get('mode', 'frames')
    out = dict(frame_keep=np.ones(T, bool), chunk_keep=np.ones(C, bool), token_keep=np.ones(N, bool),
               audio_on=True, text_on=True)
    if mode == 'modality':
        out['audio_on'], out['text_on'] = bool(um[0] >= pa), bool(um[1] >= pt)
    else:
        out['token_keep'] = _drop_smallest(ut, pt)
        if mode == 'chunks':
            out['chunk_keep'] = _drop_smallest(uc, pa)
        else:
            out['frame_keep'] = _drop_smallest(uf, pa)
    return out


def mscr_collate(items):
    """Items -> batch dict: a (B, T, Da) zero-padded, a_len (B,), start/length (B, Cmax) chunk spans
    (length 0 = no chunk), t (B, N, Dt), t_pad (B, N) bool (True = padding or missing token), y (B, 3),
    idx (B,); with missing masks also frame_keep (B, T), chunk_keep (B, Cmax) and audio_on (B,)."""
    B = len(items)
    T = max(1, max(len(it['a']) for it in items))
    N = max(1, max(len(it['t']) for it in items))
    C = max(len(it['spans']) for it in items)
    a = torch.zeros(B, T, items[0]['a'].shape[1])
    t = torch.zeros(B, N, items[0]['t'].shape[1])
    t_pad = torch.ones(B, N, dtype=torch.bool)
    spans = torch.zeros(B, C, 2, dtype=torch.long)
    for b, it in enumerate(items):
        a[b, :len(it['a'])] = torch.from_numpy(it['a'])
        t[b, :len(it['t'])] = torch.from_numpy(it['t'])
        t_pad[b, :len(it['t'])] = False
        spans[b, :len(it['spans'])] = torch.from_numpy(np.asarray(it['spans'], np.int64))
    out = dict(a=a, a_len=torch.tensor([len(it['a']) for it in items]), start=spans[..., 0], length=spans[..., 1],
               t=t, t_pad=t_pad, y=torch.from_numpy(np.stack([it['y'] for it in items])),
               idx=torch.tensor([it['idx'] for it in items]))
    if 'frame_keep' in items[0]:
        fk = torch.zeros(B, T, dtype=torch.bool)
        ck = torch.zeros(B, C, dtype=torch.bool)
        for b, it in enumerate(items):
            fk[b, :len(it['a'])] = torch.from_numpy(it['frame_keep'])
            ck[b, :len(it['spans'])] = torch.from_numpy(it['chunk_keep'])
            t_pad[b, :len(it['t'])] = ~torch.from_numpy(it['token_keep'])
            if not it['text_on']:
                t_pad[b] = True
        out.update(frame_keep=fk, chunk_keep=ck, audio_on=torch.tensor([it['audio_on'] for it in items]))
    return out
