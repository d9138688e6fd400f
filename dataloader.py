"""Method-1 data path, shared by the ranker scripts, training.py, testing.py (and predict.py).

    store = open_store(args.features, corpus)           # FeatureStore, clear "extract first" error
    m = chunk_frames(store.hop)                         # frames in one second (62 at the 16 ms hop)
    fnorm = build_feat_norm('speaker', store, corpus)   # ONE place for every normalisation scope
    ds = UtteranceDataset(store, names, fnorm, targets) # a memmap slice per item, z-norm, NaN->0, clip
    loader = make_loader(ds, ...)                       # workers, DistributedSampler, PadCollate
    chunks = to_chunks(x, lengths, m, device)           # padded batch -> (B, 22, m, D) in one gather

Normalisation scopes (--feature-norm): 'published' = a NormTerm folder (the authors' one with
--pretrained/--init-from DIR); 'train' = statistics of the Train split (a NormTerm folder given with
--norm, else computed here); 'speaker' = per-speaker statistics over all of the speaker's utterances in
the store (speaker IDs from the corpus label file); 'corpus' = statistics of the evaluated corpus.
Checkpoints: plain state_dicts with the published names; metadata in a sibling <name>.meta.json,
resume state in <name>.resume.pt, per-epoch log <name>.log.csv and loss curve <name>.loss.png.
"""
import contextlib
import json
import os
import random
import sys
import time
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
from utils import (
    EMO_COL,
    EMOS,
    EPS_STD,
    atomic_torch_save,
    atomic_write_text,
    dynamic_chunk_split,
    load_norm,
    normalize_feats,
    pad_batch,
    unwrap,
)

REPO = Path(__file__).resolve().parent
K_CHUNKS = 22                        # C = 11 chunks x scaling factor n = 2 (SPEC §3)
PUBLISHED_PRESET = 'published'
PUB_SEQ2SEQ_DIR = 'trained_seq2seq_model_v1.6'
PUB_RANKER_DIR = 'chunk_emotion_rankers/trained_ranker_model_v1.6'
SEQ2SEQ_DIR = REPO / 'trained_seq2seq_model'
RANKER_DIR = REPO / 'chunk_emotion_rankers' / 'trained_ranker_model'
PREF_DIR = REPO / 'chunk_emotion_rankers' / 'preference_labels'
RANKSEQ_DIR = REPO / 'chunk_emotion_rankers' / 'EmoChunkRankSeq'
SPLIT_FILE = {'Train': 'training', 'Validation': 'validation', 'Test': 'testing'}
SPLITS = list(SPLIT_FILE)
NORM_SCOPES = ['published', 'train', 'speaker', 'corpus']


def die(msg):
    """Stop a script with a clear one-line message (no traceback)."""
    raise SystemExit(f'error: {msg}')


def parse_sets(s):
    """'-set Train|Validation|Test|all' (case-insensitive, comma lists) -> list of user split names."""
    if s.lower() == 'all':
        return list(SPLITS)
    out = []
    for x in s.split(','):
        m = [k for k in SPLITS if k.lower() == x.strip().lower()]
        if not m:
            die(f"unknown split '{x}'; use Train, Validation, Test or all")
        out.append(m[0])
    return out


# ================================================================ common flags
def add_data_args(p):
    p.add_argument('--corpus', default=None, help='corpus root in MSP-Podcast layout (default: the demo corpus '
                   'data/demo_corpus, built on first use)')
    p.add_argument('--features', default=None, help='LLD feature store folder (default features/<corpus name>/lld; '
                   'build it with extract_features.py)')
    p.add_argument('--norm', default=None, help='NormTerm folder ({feat,act,dom,val}_norm_{means,stds}.mat, e.g. '
                   'from norm_para.py). Default: Train-split statistics computed on the fly, or DIR/NormTerm '
                   'with --pretrained/--init-from DIR')
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    p.add_argument('--amp', default='fp16', choices=['fp16', 'bf16', 'off'],
                   help='mixed precision on CUDA (ignored on CPU); fp16 uses a gradient scaler')
    p.add_argument('--seed', type=int, default=0, help='random seed (sampling, init, dropout)')
    p.add_argument('--workers', type=int, default=2, help='DataLoader worker processes (0 = load in the main process)')
    p.add_argument('--limit', type=int, default=None, help='quick runs: use at most N utterances (or pairs) per split')


def add_norm_args(p):
    p.add_argument('--feature-norm', default=None, choices=NORM_SCOPES,
                   help="feature z-normalisation: 'published' (a NormTerm folder: --norm or DIR/NormTerm), "
                        "'train' (Train-split statistics), 'speaker' (per-speaker statistics, speaker IDs from "
                        "the corpus), 'corpus' (statistics of the corpus itself). Default: published with "
                        "--pretrained/--init-from DIR, what the checkpoint was trained with in testing, else train")
    p.add_argument('--label-norm', default=None, choices=['published', 'train'],
                   help="label z-normalisation: 'published' (act/dom/val of the NormTerm folder) or 'train' "
                        "(consensus labels of the Train split); default as --feature-norm")


def open_corpus(root):
    from corpus import DEFAULT_CORPUS, Corpus, CorpusError, ensure_demo_corpus
    try:
        return Corpus(ensure_demo_corpus(root or DEFAULT_CORPUS))
    except CorpusError as e:
        die(e)


def default_features(corpus, kind='lld'):
    for base in (REPO, Path.cwd()):
        p = base / 'features' / corpus.name / kind
        if (p / 'meta.json').exists():
            return p
    return REPO / 'features' / corpus.name / kind


def open_store(path, corpus):
    """The corpus's LLD FeatureStore, or a clear message with the extract_features.py command to run."""
    from feature_store import FeatureStore, StoreError
    path = Path(path) if path else default_features(corpus)
    cmd = (f'python extract_features.py --corpus {corpus.root} --feature lld --out {path}')
    if not (path / 'meta.json').exists():
        die(f'no feature store at {path}; extract the LLDs first:\n  {cmd}')
    try:
        store = FeatureStore(path)
    except StoreError as e:
        die(f'{e}\n  {cmd}')
    if store.hop is None:
        die(f'{path} holds {store.meta.get("feature")} features without a frame hop; method 1 needs frame-level '
            f'LLDs:\n  {cmd}')
    return store


def chunk_frames(hop):
    """m = whole frames in one second (62 at the published 16 ms hop, 100 at 10 ms, 50 at 20 ms)."""
    return int(np.floor(1.0 / float(hop) + 1e-6))


def require_preset(store, preset, why):
    if store.meta.get('preset') != preset:
        die(f"{store.path} was extracted with preset {store.meta.get('preset')!r} (hop {store.hop} s), but {why} "
            f"need(s) the {preset!r} LLD preset. Extract it into another folder and pass it with --features:\n"
            f"  python extract_features.py --corpus {store.meta.get('corpus', 'ROOT')} --feature lld "
            f"--preset {preset} --out {store.path.parent / (store.path.name + '_' + preset)}")


def limit_names(names, limit, seed=0):
    """At most `limit` names: a seeded random subset kept in the original order."""
    if not limit or len(names) <= limit:
        return list(names)
    keep = np.sort(np.random.default_rng(seed).choice(len(names), limit, replace=False))
    return [names[i] for i in keep]


# ================================================================ normalisation (one shared helper)
class FeatNorm:
    """Per-utterance feature z-normalisation: one (mean, std) pair or one per group (speaker)."""

    def __init__(self, mean, std, scope='train', source='', groups=None, group_of=None):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.maximum(np.asarray(std, np.float32), EPS_STD)
        self.scope, self.source = scope, str(source)
        self.groups = {g: (np.asarray(m, np.float32), np.maximum(np.asarray(s, np.float32), EPS_STD))
                       for g, (m, s) in (groups or {}).items()}
        self.group_of = dict(group_of or {})

    def stats(self, name):
        g = self.group_of.get(name)
        return self.groups.get(g, (self.mean, self.std))

    def __call__(self, name, x):
        """z-normalise, NaN -> 0, clip to [-3, 3] (SPEC §2)."""
        return normalize_feats(x, *self.stats(name))

    def to_meta(self):
        out = {'feature_norm': self.scope, 'feature_norm_source': self.source}
        if not self.groups:   # global statistics travel with the checkpoint
            out.update(feat_mean=self.mean.tolist(), feat_std=self.std.tolist())
        return out


def norm_stats(store, names, by=None, progress=False):
    """THE statistics helper for every scope: per-dimension mean and population std of all frames of
    `names` (streaming, Chan-merged, NaN ignored; norm_para.py's maths). With `by` (name -> group or
    None) one (mean, std) per group is returned as {group: (mean, std)}; else (mean, std)."""
    from norm_para import feature_stats
    names = [n for n in names if n in store]
    if not names:
        die(f'none of the requested utterances is in the feature store {store.path}')
    if by is None:
        mean, std, *_ = feature_stats(store, names, progress=progress)
        return mean, np.maximum(std, EPS_STD)
    groups = {}
    for n in names:
        if by.get(n) is not None:
            groups.setdefault(by[n], []).append(n)
    return {g: norm_stats(store, ns) for g, ns in groups.items()}


def speaker_map(corpus, names):
    """name -> speaker ID (None where the label file has none / 'Unknown')."""
    return {n: corpus.speaker(n) for n in names}


def build_feat_norm(scope, store, corpus, norm_dir=None, meta=None):
    """FeatNorm for a scope (see the module docstring). `meta`: a checkpoint's metadata, whose stored
    global statistics are reused for 'train'/'published' when no --norm folder is given."""
    meta = meta or {}
    if scope in ('published', 'train') and norm_dir:
        mean, std = load_norm(norm_dir, need=('feat',))['feat']
        return FeatNorm(mean, std, scope, Path(norm_dir).resolve())
    if scope in ('published', 'train') and meta.get('feat_mean') is not None and meta.get('feature_norm') == scope:
        return FeatNorm(meta['feat_mean'], meta['feat_std'], scope, meta.get('feature_norm_source', 'checkpoint'))
    if scope == 'published':
        die("--feature-norm published needs a NormTerm folder: pass --norm DIR (or --pretrained/--init-from with "
            "the authors' repository folder)")
    everything = [n for n in corpus.files() if n in store]
    if scope == 'train':
        train = [n for n in corpus.files('Train') if n in store]
        if not train:
            die(f'{corpus.consensus_path}: no Train utterance in {store.path}, so there are no Train statistics; '
                f'use --feature-norm corpus|speaker or --norm DIR')
        mean, std = norm_stats(store, train)
        return FeatNorm(mean, std, 'train', f'{corpus.name}:Train')
    mean, std = norm_stats(store, everything)
    if scope == 'corpus':
        return FeatNorm(mean, std, 'corpus', corpus.name)
    if scope == 'speaker':
        spk = speaker_map(corpus, everything)
        known = sum(v is not None for v in spk.values())
        if known == 0:
            die(f'{corpus.consensus_path} has no speaker IDs (SpkrID column empty or Unknown), so per-speaker '
                f'normalisation is impossible; use --feature-norm corpus or train')
        if known < len(spk):
            print(f'note: {len(spk) - known} of {len(spk)} utterances have no speaker ID; they use corpus statistics')
        return FeatNorm(mean, std, 'speaker', corpus.name, norm_stats(store, everything, by=spk), spk)
    die(f'unknown --feature-norm {scope!r}; use one of {NORM_SCOPES}')


def label_norm(scope, emo, corpus, norm_dir=None, meta=None):
    """(mean, std) used to z-normalise `emo` labels: a NormTerm folder, the checkpoint's, or Train consensus."""
    meta = meta or {}
    if norm_dir and scope in ('published', 'train'):
        return load_norm(norm_dir, need=(emo,))[emo]
    if meta.get('label_mean') is not None and meta.get('label_norm') == scope:
        return float(meta['label_mean']), float(meta['label_std'])
    if scope == 'published':
        die("--label-norm published needs a NormTerm folder: pass --norm DIR (or --pretrained/--init-from DIR)")
    v = corpus.labels.set_index('FileName').loc[corpus.files('Train'), EMO_COL[emo]].to_numpy(np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        die(f'{corpus.consensus_path}: no {EMO_COL[emo]} label in the Train split for label normalisation; '
            f'pass --norm DIR or --label-norm published')
    return float(v.mean()), float(max(v.std(), EPS_STD))


def default_scopes(args, meta=None, published_dir=None):
    """Resolve --feature-norm/--label-norm (defaults: 'published' with an authors'-layout folder, else what the
    checkpoint was trained with, else 'train') and the NormTerm folder each reads (None = compute/ckpt)."""
    meta = meta or {}
    pub_norm = str(Path(published_dir) / 'NormTerm') if published_dir else None
    fscope = args.feature_norm or ('published' if published_dir else meta.get('feature_norm', 'train'))
    lscope = args.label_norm or ('published' if published_dir else meta.get('label_norm', 'train'))
    fdir = args.norm or (pub_norm if fscope == 'published' else None)
    ldir = args.norm or (pub_norm if lscope == 'published' else None)
    return fscope, lscope, fdir, ldir


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
        a, b = self.names[self.idx1[i]], self.names[self.idx2[i]]
        return self.norm(a, self.store.get(a)), self.norm(b, self.store.get(b)), self.labels[i]


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
    """Padded batch (B, T, D) -> dynamic chunks (B, K, m, D) on `device` with one gather (SPEC §3)."""
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


# ================================================================ checkpoints and runs
def ranker_name(ep, batch, emo):
    return f'LSTM_epoch{ep}_batch{batch}_{emo}_ranker.pth.tar'


def seq2seq_name(ep, batch, emo):
    return f'LSTM_epoch{ep}_batch{batch}_EmoRankerSeq_{emo}.pth.tar'


def sibling(path, suffix):
    """LSTM_..._Act.pth.tar -> LSTM_..._Act<suffix> in the same folder."""
    path = Path(path)
    base = path.name[:-len('.pth.tar')] if path.name.endswith('.pth.tar') else path.stem
    return path.with_name(base + suffix)


def read_meta(ckpt):
    p = sibling(ckpt, '.meta.json')
    return json.loads(p.read_text()) if p.exists() else {}


def find_checkpoint(spec, kind, emo, ep, batch):
    """Checkpoint path for `kind` ('ranker'|'seq2seq'). spec: None (our default folder and name), a file,
    a path with '{emo}', or a folder: ours or the authors' repository root (their v1.6 names)."""
    ours = (ranker_name if kind == 'ranker' else seq2seq_name)(ep, batch, emo)
    pub = ranker_name(20, 128, emo) if kind == 'ranker' else seq2seq_name(30, 128, emo)
    if spec is None:
        p = (RANKER_DIR if kind == 'ranker' else SEQ2SEQ_DIR) / ours
        if p.is_file():
            return p
        how = (f'python chunk_emotion_rankers/training_ranker.py -ep {ep} -batch {batch} -emo {emo}' if kind == 'ranker'
               else f'python training.py -ep {ep} -batch {batch} -emo {emo}')
        die(f'no {kind} checkpoint {p}; train it with `{how}`, or pass --checkpoint PATH / --pretrained DIR')
    p = Path(str(spec).replace('{emo}', emo))
    if p.is_file():
        return p
    if p.is_dir():
        subs = ['.', PUB_RANKER_DIR, 'trained_ranker_model_v1.6', 'chunk_emotion_rankers/trained_ranker_model',
                'trained_ranker_model'] if kind == 'ranker' else ['.', PUB_SEQ2SEQ_DIR, 'trained_seq2seq_model']
        tried = [p / s / n for s in subs for n in dict.fromkeys([ours, pub])]
        for c in tried:
            if c.is_file():
                return c
        pattern = f'*_{emo}_ranker.pth.tar' if kind == 'ranker' else f'*EmoRankerSeq_{emo}.pth.tar'
        found = sorted({c for s in subs for c in (p / s).glob(pattern)})
        if len(found) == 1:
            return found[0]
        if found:
            die(f'{p} holds several {kind} checkpoints for {emo}: {[str(f) for f in found]}; pass one file')
        die(f'{p} holds no {kind} checkpoint for {emo} (looked for {ours} / {pub} in {subs})')
    die(f'checkpoint {p} does not exist')


def load_lstm(path, kind):
    """LSTMnet (out_dim 2 ranker / 1 seq2seq) loaded strictly from a plain state_dict (ours or published)."""
    from model import LSTMnet
    try:
        sd = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        die(f'{path}: cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]})')
    for key in ('state_dict', 'model'):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    sd = {k.removeprefix('module.'): v for k, v in sd.items()}
    model = LSTMnet(out_dim=2 if kind == 'ranker' else 1)
    want = model.state_dict()
    bad = [f'{k}: expected {tuple(v.shape)}, found {tuple(sd[k].shape)}' for k, v in want.items()
           if k in sd and hasattr(sd[k], 'shape') and sd[k].shape != v.shape]
    bad += [f'{k}: missing' for k in want if k not in sd] + [f'{k}: unexpected' for k in sd if k not in want]
    if bad:
        die(f'{path} is not a {kind} checkpoint of the published shape (LSTM 130->130 x2, fc1 130->130, fc2 130->'
            f'{2 if kind == "ranker" else 1}): ' + '; '.join(bad[:6]) + (' ...' if len(bad) > 6 else ''))
    model.load_state_dict(sd, strict=True)
    return model


def load_for_eval(args, kind, emo, corpus, store, device):
    """Everything testing/ranking scripts need before a forward pass: the checkpoint (ours, --checkpoint or the
    authors' --pretrained folder), checks that the feature store matches what it was trained on (preset, hop),
    the feature normalisation and the model in eval mode. Returns (model, fnorm, ckpt, meta, scopes)."""
    ckpt = find_checkpoint(args.pretrained or args.checkpoint, kind, emo, args.epochs, args.batch_size)
    meta = read_meta(ckpt)
    pub = published_dir_of(args.pretrained)
    if args.pretrained:
        if pub is None:
            die(f"--pretrained {args.pretrained}: no NormTerm/ folder there; pass the root of the authors' repository")
        require_preset(store, PUBLISHED_PRESET, "the authors' released models (--pretrained)")
    elif meta.get('feature_preset') and meta['feature_preset'] != store.meta.get('preset'):
        require_preset(store, meta['feature_preset'], f'{ckpt.name} (trained on it)')
    m = chunk_frames(store.hop)
    if meta.get('m') and meta['m'] != m:
        die(f'{ckpt.name} was trained with {meta["m"]}-frame chunks (hop {meta.get("hop")} s), {store.path} has hop '
            f'{store.hop} s; use features with the same hop')
    scopes = default_scopes(args, meta, pub)          # (feature scope, label scope, feature dir, label dir)
    fnorm = build_feat_norm(scopes[0], store, corpus, scopes[2], meta)
    model = load_lstm(ckpt, kind).to(device).eval()
    return model, fnorm, ckpt, meta, scopes


def published_dir_of(spec):
    """The authors'-layout root a --pretrained/--init-from spec points at (a folder holding NormTerm/), or None."""
    if spec is None:
        return None
    p = Path(spec)
    return p if p.is_dir() and (p / 'NormTerm').is_dir() else None


def amp_context(device, amp):
    if device.type != 'cuda' or amp == 'off':
        return contextlib.nullcontext()
    return torch.autocast('cuda', dtype=torch.bfloat16 if amp == 'bf16' else torch.float16)


def make_scaler(device, amp):
    return torch.amp.GradScaler('cuda', enabled=device.type == 'cuda' and amp == 'fp16')


class Run:
    """Files of one training run next to its best checkpoint (only the main process writes)."""

    def __init__(self, ckpt, fields, is_main=True, resume=False):
        self.ckpt, self.is_main = Path(ckpt), is_main
        self.meta_path = sibling(ckpt, '.meta.json')
        self.state_path = sibling(ckpt, '.resume.pt')
        self.log_path, self.png_path = sibling(ckpt, '.log.csv'), sibling(ckpt, '.loss.png')
        if resume and not self.state_path.exists():
            die(f'--resume: no resume state {self.state_path} (nothing to continue); run without --resume')
        if is_main:
            from utils import CSVLogger
            self.logger = CSVLogger(self.log_path, fields, resume=resume)

    def save_best(self, model, meta):
        if self.is_main:
            sd = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
            atomic_torch_save(sd, self.ckpt)
            atomic_write_text(self.meta_path, json.dumps(meta, indent=1) + '\n')

    def save_state(self, model, opt, scaler, epoch, best, best_epoch):
        if self.is_main:
            rng = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state(),
                   'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
            atomic_torch_save({'model': unwrap(model).state_dict(), 'optimizer': opt.state_dict(),
                               'scaler': scaler.state_dict(), 'epoch': epoch, 'best': best,
                               'best_epoch': best_epoch, 'rng': rng}, self.state_path)

    def load_state(self, model, opt, scaler):
        """-> (next epoch, best, best_epoch); restores weights, optimizer, scaler and RNG states."""
        s = torch.load(self.state_path, map_location='cpu', weights_only=False)
        unwrap(model).load_state_dict(s['model'])
        opt.load_state_dict(s['optimizer'])
        scaler.load_state_dict(s['scaler'])
        random.setstate(s['rng']['python'])
        np.random.set_state(s['rng']['numpy'])
        torch.set_rng_state(s['rng']['torch'])
        if s['rng']['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s['rng']['cuda'])
        return s['epoch'] + 1, s['best'], s['best_epoch']

    def log(self, **row):
        if self.is_main:
            self.logger.log(**row)
            from utils import plot_curves
            try:
                plot_curves(self.log_path, self.png_path, title=self.ckpt.name)
            except Exception as e:   # a plotting problem must never stop training
                print(f'note: loss plot not written ({e})', file=sys.stderr)


def base_meta(args, store, m, emo, kind):
    return {'kind': kind, 'emo': emo, 'epochs': args.epochs, 'batch': args.batch_size, 'lr': args.lr,
            'seed': args.seed, 'corpus': store.meta.get('corpus') or args.corpus,
            'features': str(store.path.resolve()), 'feature_preset': store.meta.get('preset'), 'hop': store.hop,
            'm': m, 'K': K_CHUNKS, 'init_from': str(Path(args.init_from).resolve()) if args.init_from else None,
            'freeze': getattr(args, 'freeze', None), 'created': time.strftime('%Y-%m-%d %H:%M:%S')}


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


def mscr_feature_stats(store, names, level='utterance'):
    """(mean, std) per dimension for MSCR normalisation (docs/mscr.md, "Normalisation").

    level 'utterance' (as published): mean and population std, over the utterances `names`, of each
    utterance's mean feature vector (NaN ignored); streaming (memory independent of the corpus size).
    level 'frame': mean and std over all frames (tokens) of `names`, the method-1 statistics.
    A zero std becomes a small epsilon."""
    names = [n for n in names if n in store]
    if not names:
        raise ToolkitError(f'none of the Train utterances is in the feature store {store.path}; extract its '
                           f'features first (extract_features.py)')
    if level == 'frame':
        return norm_stats(store, names)
    lengths = store.lengths()
    names = [n for n in names if lengths[n] > 0]
    s, s2 = np.zeros(store.dim), np.zeros(store.dim)
    for n in names:
        with warnings.catch_warnings():      # an all-NaN dimension of one utterance counts as 0
            warnings.simplefilter('ignore', RuntimeWarning)
            u = np.nan_to_num(np.nanmean(np.asarray(store.get(n), np.float64), axis=0))
        s, s2 = s + u, s2 + u * u
    k = max(len(names), 1)
    mean = s / k
    std = np.sqrt(np.maximum(s2 / k - mean * mean, 0.0))
    return mean, np.maximum(std, EPS_STD)


def mscr_norm(corpus, audio, text, train_names, level='utterance'):
    """{'audio': (mean, std), 'text': (mean, std), 'Act'|'Dom'|'Val': (mean, std)} from the Train split:
    feature statistics at `level` for each store, labels with the Train consensus mean and std."""
    return {'audio': mscr_feature_stats(audio, train_names, level),
            'text': mscr_feature_stats(text, train_names, level),
            **{e: label_norm('train', e, corpus) for e in EMOS}}


class MSCRDataset(Dataset):
    """Utterances of one split with audio frames, chunk spans, text tokens and z-normalised labels.

    norm: see `mscr_norm`. chunking: 'dynamic' (C = number of aligned words, at least 2, one-second
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
                   'no word times (TextGrid) for --chunking words' if chunking == 'words' and not words else None)
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
