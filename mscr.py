"""Method 2: multi-scale chunk regularization (MSCR) for audio-text SER (docs/mscr.md) -- the library behind
`training.py --model mscr` and `testing.py --model mscr`: training loop, test, missing-data sweep, one
training step (`mscr_step`), the data loader (`make_loader`), checkpoint save/load and one-utterance
prediction (for predict.py).

Inputs: an audio frame store (wav2vec2 as published, or lld; one-second chunks are m = chunk_frames(hop)
frames) and a text token store. Audio is cut into chunks -- one-second dynamic windows, one per aligned
word ('dynamic', as published) or each word's own frames ('words') -- randomly cropped to multi-scale
fractions while training, pyramid-pooled, and fed with the text tokens to `TransformerENC_CoAtten`.
Normalisation: Train-split statistics of the utterance means (as published; or frame level), for audio and
text alike, z, NaN -> 0, clip to [-3, 3]; labels with the Train consensus mean/std. All statistics travel
in the checkpoint's .meta.json.

Missing data (testing; seeded and nested: what is missing at fraction p is also missing at any larger p):
  frames    round(p·T) audio frames of each utterance are missing: left out of the chunk means;
            a chunk whose frames are all missing is masked (treated exactly like a padded position)
  chunks    round(p·C) of the C audio chunks are dropped (padded positions)
  tokens    round(q·N) text tokens are dropped; the text loses tokens in every non-modality mode,
            and `tokens` treats the audio like `frames`
  modality  each utterance loses the whole modality with probability p (audio) / q (text): only
            that modality's global token is left
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

import checkpoints
import cli
import dataloader as D
import interrupts
import metrics as M
import norm as normalisation
from errors import ToolkitError
from feature_store import FeatureStore, StoreError, default_features
from model import TransformerENC_CoAtten, audio_chunk_features
from utils import (
    EMOS,
    amp_context,
    atomic_write_text,
    ccc,
    ccc_loss,
    ddp_cleanup,
    ddp_setup,
    gather_batch,
    get_device,
    make_scaler,
    normalize_feats,
    plot_curves,
    rank_rng_states,
    set_seed,
    unwrap,
)

MSCR_NORM_LEVELS = ('utterance', 'frame')            # --mscr-norm: statistics of utterance means or of frames
MSCR_CHUNKINGS = ('dynamic', 'words')               # --chunking
MSCR_MISSING_MODES = ('frames', 'chunks', 'tokens', 'modality')   # --missing-mode (module docstring)

DEFAULT_LR = 1e-4


# ============================================================================ small pieces
def parse_scales(s):
    try:
        sc = tuple(float(x) for x in str(s).split(',') if x.strip())
    except ValueError:
        sc = ()
    if not sc or any(not 0 < f <= 1 for f in sc):
        raise ToolkitError(f'--scales {s!r}: give fractions in (0, 1], e.g. 0.2,0.4,0.6,0.8,1.0 (or 1.0)')
    return sc


def default_name(args, scales):
    tag = '-'.join(f'{f:g}' for f in scales)
    words = '_words' if getattr(args, 'chunking', 'dynamic') == 'words' else ''
    return f'MSCR_iter{args.iters}_batch{args.batch_size}_{args.audio_feature}_scales{tag}{words}'


def build_model(cfg):
    return TransformerENC_CoAtten(cfg['audio_dim'] * 7, cfg['text_dim'], d=cfg['hidden'], heads=cfg['heads'],
                                  ff=cfg.get('ff'), n_self=cfg['self_layers'], n_co=cfg['co_layers'],
                                  dropout=cfg['dropout'], max_len=cfg['max_len'])


def forward_batch(model, batch, device, scales=None):
    """Batch dict (dataloader.mscr_collate) -> (B, 3) predictions. scales: crop fractions (training) or
    None (evaluation: chunks whole). Missing-data masks in the batch are applied here."""
    a = batch['a'].to(device, non_blocking=True)
    fk = batch.get('frame_keep')
    pooled, a_pad = audio_chunk_features(a, batch['start'], batch['length'], scales,
                                         None if fk is None else fk.to(device))
    if 'chunk_keep' in batch:
        a_pad = a_pad | ~batch['chunk_keep'].to(device) | ~batch['audio_on'].to(device)[:, None]
    return model(pooled, a_pad, batch['t'].to(device, non_blocking=True), batch['t_pad'].to(device))


def mtl_loss(pred, y):
    """Mean over Act/Dom/Val of (1 - CCC) over the batch."""
    return sum(ccc_loss(pred[:, k], y[:, k]) for k in range(3)) / 3


def mscr_step(model, opt, scaler, batch, device, scales, amp='off'):
    """One training iteration (forward with crops, MTL CCC loss, backward, Adam step) -> the loss. The CCCs
    are over the global batch (under DDP every rank's predictions and labels, utils.gather_batch)."""
    model.train()
    with amp_context(device, amp):
        pred = forward_batch(model, batch, device, scales)
    loss = mtl_loss(*gather_batch(pred.float(), batch['y'].to(device)))
    if not torch.isfinite(loss):
        raise ToolkitError(f'the training loss is {loss.item()}; lower --lr or use --amp off')
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.item()


@torch.no_grad()
def predict(model, loader, device, amp='off', desc=None):
    """z-space predictions and labels of a whole loader, in dataset order."""
    model.eval()
    P, Y, I = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None, dynamic_ncols=True):
        with amp_context(device, amp):
            P.append(forward_batch(model, batch, device).float().cpu())
        Y.append(batch['y'])
        I.append(batch['idx'])
    order = torch.cat(I).argsort()
    return torch.cat(P)[order].numpy(), torch.cat(Y)[order].numpy()


def scores(pred, y, norm):
    """CCC per attribute on de-normalised predictions and labels, and the MTL loss (mean of 1 - CCC)."""
    out = {}
    for k, e in enumerate(EMOS):
        mu, sd = norm[e]
        out[e] = ccc(pred[:, k] * sd + mu, y[:, k] * sd + mu)
    out['loss'] = float(np.mean([1 - out[e] for e in EMOS]))
    return out


# ============================================================================ data
def open_stores(args, corpus, audio_path=None, text_path=None):
    """(audio FeatureStore, text FeatureStore) with clear errors naming the extract_features.py command."""
    feat = args.audio_feature
    a_path = Path(args.audio_store or audio_path or default_features(corpus, feat))
    t_path = Path(args.text_store or text_path or default_features(corpus, 'text'))
    out = []
    for path, kind in ((a_path, feat), (t_path, 'text')):
        cmd = f'python extract_features.py --corpus {corpus.root} --feature {kind} --out {path}'
        if not (path / 'meta.json').exists():
            raise ToolkitError(f'no {kind} feature store at {path}; extract it first:\n  {cmd}'
                               + ('\n  (or use LLD audio: --audio-feature lld)' if kind == 'wav2vec2' else ''))
        try:
            out.append(FeatureStore(path))
        except StoreError as e:
            raise ToolkitError(f'{e}\n  {cmd}') from None
    audio, text = out
    if not audio.hop:
        raise ToolkitError(f'{a_path} holds {audio.meta.get("feature")!r} features without a frame hop; the MSCR '
                           f'audio input must be a frame-level store (lld or wav2vec2)')
    if text.hop is not None:
        raise ToolkitError(f'{t_path} is a frame-level store (hop {text.hop} s); --text-store must hold text token '
                           f'embeddings (extract_features.py --feature text)')
    return audio, text


def make_datasets(args, corpus, audio, text, norm, splits, max_len, chunking, verbose=True):
    out = []
    for s in splits:
        names = D.limit_names(corpus.files(s), args.limit, args.seed)
        out.append(D.MSCRDataset(corpus, s, audio, text, norm, max_len, args.seed, verbose, names, chunking))
    return out


class IterationBatches(torch.utils.data.Sampler):
    """Index batches of iterations start .. iters-1. Epoch e is a permutation of the dataset seeded by
    (seed, e); iteration i takes batch i mod (n // batch) of epoch i // (n // batch) (the rest of an epoch
    is dropped), so a run resumed at iteration i sees exactly the batches the uninterrupted run would.
    Under DDP every process takes its share [rank::world] of the global batch."""

    def __init__(self, n, batch, iters, seed=0, start=0, rank=0, world=1):
        self.n, self.batch, self.iters, self.seed, self.start = n, batch, iters, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = max(1, n // batch)

    def __iter__(self):
        perm_epoch, perm = None, None
        for it in range(self.start, self.iters):
            e, k = divmod(it, self.per_epoch)
            if e != perm_epoch:
                perm_epoch, perm = e, np.random.default_rng([self.seed, e]).permutation(self.n)
            yield perm[k * self.batch:(k + 1) * self.batch][self.rank::self.world].tolist()

    def __len__(self):
        return max(0, self.iters - self.start)


def make_loader(ds, batch, workers, device, batch_sampler=None):
    """DataLoader over an MSCRDataset: `batch_sampler` (training: IterationBatches) or plain batches in order."""
    kw = dict(batch_sampler=batch_sampler) if batch_sampler is not None else dict(batch_size=batch, shuffle=False)
    # a private generator: creating the loader's iterator leaves the global RNG (crops, dropout) alone,
    # so a resumed run continues exactly
    return torch.utils.data.DataLoader(ds, num_workers=workers, collate_fn=D.mscr_collate,
                                       pin_memory=device.type == 'cuda', generator=torch.Generator(), **kw)


# ============================================================================ checkpoints
def save_mscr(path, model, meta):
    """Plain state_dict (published parameter names) at `path` + its sibling .meta.json with the weights'
    SHA-256 and the toolkit revision, both atomic (checkpoints.save_model)."""
    checkpoints.save_model(model, path, {**meta, 'kind': 'mscr', 'attributes': list(EMOS)})


def load_mscr(ckpt, device='cpu'):
    """(model in eval mode, meta) from an MSCR checkpoint and its sibling .meta.json."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise ToolkitError(f'no MSCR checkpoint {ckpt}; train it with `python training.py --model mscr` (same '
                           f'--scales, --iters, -batch, --chunking and --audio-feature, or --name), or pass '
                           f'--checkpoint PATH')
    meta = checkpoints.read_record(ckpt)
    if meta.get('model') != 'mscr' or 'audio_mean' not in meta:
        raise ToolkitError(f'{ckpt}: no MSCR metadata of this version next to it ({checkpoints.sibling(ckpt, ".meta.json")}); '
                           f'train it again with python training.py --model mscr')
    checkpoints.check_record_checksum(ckpt, meta)
    sha = meta.get('weights_sha256')
    if sha is None:
        print(f'note: {ckpt.name}: no SHA-256 in its record (written by an older toolkit); not verified',
              file=sys.stderr)
    elif checkpoints.sha256_file(ckpt) != sha:
        raise checkpoints.CheckpointError(f'{ckpt}: checksum mismatch with its .meta.json (SHA-256 {sha[:12]}...): '
                                          f'the file is corrupt or was replaced; train it again')
    model = build_model(meta['config'])
    model.load_state_dict(torch.load(ckpt, map_location='cpu', weights_only=True))
    return model.to(device).eval(), meta


def model_source(meta):
    """Where an MSCR model comes from, as for method 1: 'demo' when it was trained on the embedded demo corpus
    (synthetic speech, e.g. the shipped trained_mscr_model/), else 'own'."""
    return 'demo' if Path(str(meta.get('corpus') or '')).name == checkpoints.DEMO_CORPUS else 'own'


def provenance(ckpt, meta):
    """Columns naming an MSCR model in every output: source, path and SHA-256 of the weights."""
    return {'model_source': model_source(meta), 'model': checkpoints.display_path(ckpt),
            'model_sha256': meta.get('weights_sha256') or checkpoints.sha256_file(ckpt)}


def norm_of(meta):
    """The normalisation dict (norm.mscr_norm layout) stored in a checkpoint's metadata."""
    return {'audio': (np.asarray(meta['audio_mean']), np.asarray(meta['audio_std'])),
            'text': (np.asarray(meta['text_mean']), np.asarray(meta['text_std'])),
            **{e: tuple(meta['label_norm'][e]) for e in EMOS}}


# ============================================================================ training
def prepare_training(args, rank, world, device, is_main):
    """Corpus, stores, normalisation, datasets, model, optimiser and the run's files -> a namespace."""
    scales = parse_scales(args.scales)
    set_seed(args.seed + rank, getattr(args, 'threads', 1))
    corpus = cli.open_corpus(args.corpus, args.fold)
    audio, text = open_stores(args, corpus)
    args.audio_feature = audio.meta.get('feature') or args.audio_feature
    train_names = D.limit_names(corpus.files('Train'), args.limit, args.seed)
    norm = normalisation.mscr_norm(corpus, audio, text, train_names, args.mscr_norm)
    train, val = make_datasets(args, corpus, audio, text, norm, ['Train', 'Validation'], args.max_seq_len,
                               args.chunking, is_main)
    if len(train) < 2 or len(val) < 2:
        raise ToolkitError(f'MSCR needs at least 2 Train and 2 Validation utterances with audio and text features '
                           f'(found {len(train)} and {len(val)})')
    bs = min(args.batch_size, len(train))
    if is_main and bs < args.batch_size:
        print(f'note: batch {bs} (the Train split has only {len(train)} usable utterances)')
    cfg = dict(audio_dim=audio.dim, text_dim=text.dim, hidden=args.hidden, heads=args.heads, ff=args.ff,
               self_layers=args.self_layers, co_layers=args.co_layers, dropout=args.dropout, max_len=args.max_seq_len)
    model = build_model(cfg).to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda'
                                                          else None)
    name = args.name or default_name(args, scales)
    ckpt = Path(args.checkpoint) if args.checkpoint else Path(args.save_dir) / f'{name}.pth.tar'
    fields = ['iteration', 'train_loss', 'val_loss'] + [f'val_ccc_{e}' for e in EMOS] + ['best']
    s = SimpleNamespace(args=args, scales=scales, corpus=corpus, audio=audio, text=text, norm=norm, train=train,
                        val=val, bs=bs, model=model, device=device, is_main=is_main, rank=rank, world=world,
                        amp=args.amp, opt=torch.optim.Adam(model.parameters(), lr=args.lr or DEFAULT_LR),
                        scaler=make_scaler(device, args.amp), name=name, it=0, best=float('inf'), best_it=0,
                        run=checkpoints.Run(ckpt, fields, is_main, args.resume,
                                            resume_settings(args, scales, corpus, audio, text, ckpt),
                                            getattr(args, 'overwrite', False), ('.last.pth.tar', '.last.meta.json')))
    try:
        s.meta = run_meta(s, cfg)
        if args.resume:
            nxt, s.best, s.best_it = s.run.load_state(s.model, s.opt, s.scaler)
            s.it = nxt - 1     # the resume state stores the iteration in its 'epoch' field
            if is_main:
                print(f'resumed {s.run.state_path} at iteration {s.it} (best validation loss {s.best:.4f} at '
                      f'{s.best_it})')
    except BaseException:
        s.run.close()
        raise
    return s


def resume_settings(args, scales, corpus=None, audio=None, text=None, ckpt=None):
    """The flags a resumed MSCR run must share with the interrupted one (checkpoints.Run refuses others), with the
    corpus, the feature stores and the checkpoint path."""
    keys = ('batch_size', 'lr', 'seed', 'chunking', 'mscr_norm', 'hidden', 'heads', 'ff', 'self_layers', 'co_layers',
            'dropout', 'max_seq_len', 'limit', 'amp', 'audio_feature')      # --iters may grow, as -ep for method 1
    where = {'corpus': corpus and corpus.root, 'audio_store': audio and audio.path, 'text_store': text and text.path,
             'checkpoint': ckpt}
    return {**{k: getattr(args, k, None) for k in keys}, 'scales': list(scales),
            **{k: checkpoints.display_path(v) if v is not None else None for k, v in where.items()}}


def model_label(name):
    """A hub name as is; a local model folder relative to the repository (no machine paths in records)."""
    return checkpoints.display_path(name) if name and Path(name).exists() else name


def run_meta(s, cfg):
    a = s.args
    return dict(model='mscr', name=s.name, config=cfg, scales=list(s.scales), chunking=a.chunking, m=s.train.m,
                hop=s.audio.hop, lr=a.lr or DEFAULT_LR, batch=s.bs, iters=a.iters, val_every=a.val_every,
                seed=a.seed, corpus=checkpoints.display_path(s.corpus.root), fold=s.corpus.fold,
                audio_store=checkpoints.display_path(s.audio.path), text_store=checkpoints.display_path(s.text.path), audio_feature=a.audio_feature,
                audio_preset=s.audio.meta.get('preset'), audio_model=model_label(s.audio.meta.get('model')),
                text_model=model_label(s.text.meta.get('model')), feature_norm=f'{a.mscr_norm} statistics of the Train split',
                mscr_norm=a.mscr_norm,
                audio_mean=np.asarray(s.norm['audio'][0]).tolist(), audio_std=np.asarray(s.norm['audio'][1]).tolist(),
                text_mean=np.asarray(s.norm['text'][0]).tolist(), text_std=np.asarray(s.norm['text'][1]).tolist(),
                label_norm={e: [float(s.norm[e][0]), float(s.norm[e][1])] for e in EMOS},
                data={'train': s.train.report, 'validation': s.val.report})


def validate(s, train_loss, t0, rng):
    """Validation scores; keep the best model; log; write the resume state (main process) with `rng`, every
    rank's random states (utils.rank_rng_states, gathered by all ranks before)."""
    if not s.is_main:
        return
    v = scores(*predict(unwrap(s.model), s.val_loader, s.device, s.amp), s.norm)
    with interrupts.deferred():   # best model, log and resume state of this validation are written together
        improved = v['loss'] < s.best
        if improved:
            s.best, s.best_it = v['loss'], s.it
            save_mscr(s.run.ckpt, s.model, {**s.meta, 'best_iter': s.it, 'best_val_loss': s.best,
                                            'val_ccc': {e: v[e] for e in EMOS}})
        s.run.logger.log(iteration=s.it, train_loss=round(train_loss, 5), val_loss=round(v['loss'], 5),
                         **{f'val_ccc_{e}': round(v[e], 4) for e in EMOS}, best=int(improved))
        try:
            plot_curves(s.run.log_path, s.run.png_path, x='iteration', title=s.run.ckpt.name)
        except Exception as e:   # a plotting problem must never stop training
            print(f'note: loss plot not written ({e})', file=sys.stderr)
        s.run.save_state(s.model, s.opt, s.scaler, s.it, s.best, s.best_it, rng)
    tqdm.write(f'iter {s.it}: train {train_loss:.4f}  val {v["loss"]:.4f}  CCC '
               + '  '.join(f'{e} {v[e]:.3f}' for e in EMOS) + ('  *best' if improved else ''))
    if s.it == s.args.iters:   # the last model too, for best-vs-last comparisons
        save_mscr(checkpoints.sibling(s.run.ckpt, '.last.pth.tar'), s.model, {**s.meta, 'last_iter': s.it,
                                                                    'val_loss': v['loss'], 'val_ccc': v,
                                                                    'finished': True})


def train_mscr(args):
    """Train TransformerENC_CoAtten on Act/Dom/Val at once (MTL CCC loss); keeps the best validation
    checkpoint and the last one (<name>.last.pth.tar), each with .meta.json; <name>.log.csv, .loss.png, .resume.pt.
    Returns the best checkpoint's path."""
    rank, world, device, is_main = ddp_setup(args.device)
    s = None
    try:
        s = prepare_training(args, rank, world, device, is_main)
        return _train_loop(s, args, rank, world, device, is_main)
    finally:
        if s is not None:
            s.run.close()      # the run's files stay locked until here
        ddp_cleanup()


def _train_loop(s, args, rank, world, device, is_main):
    """Iterations, validation every --val-every, the best and the last model (the run's files are locked)."""
    if is_main:
        n_par = sum(p.numel() for p in s.model.parameters())
        print(f'MSCR {s.name}: {n_par / 1e6:.2f}M parameters; audio {s.audio.dim}-d, hop {s.audio.hop} s, '
              f'm={s.train.m}, {args.chunking} chunks; text {s.text.dim}-d; scales {s.scales}; batch {s.bs}; '
              f'{args.iters} iterations on {device}{f" x{world}" if world > 1 else ""}; {s.meta["feature_norm"]}')
    sampler = IterationBatches(len(s.train), s.bs, args.iters, args.seed, s.it, rank, world)
    loader = make_loader(s.train, s.bs, args.workers, device, sampler)
    s.val_loader = make_loader(s.val, min(256, len(s.val)), args.workers, device)
    bar = tqdm(total=args.iters, initial=s.it, desc='MSCR', disable=not is_main, dynamic_ncols=True)
    losses, t0 = [], time.time()
    for batch in loader:
        losses.append(mscr_step(s.model, s.opt, s.scaler, batch, device, s.scales, s.amp))
        s.it += 1
        bar.update(1)
        if s.it % args.val_every == 0 or s.it == args.iters:
            validate(s, float(np.mean(losses)), t0, rank_rng_states(device))
            losses = []
            if world > 1:
                torch.distributed.barrier()
    bar.close()
    s.run.finish()          # the record says the run completed (an interrupted one stays finished: false)
    if is_main:
        print(f'best validation loss {s.best:.4f} (mean 1-CCC) at iteration {s.best_it}\n  model {s.run.ckpt}\n'
              f'  last {checkpoints.sibling(s.run.ckpt, ".last.pth.tar")}\n  log {s.run.log_path}\n  curve {s.run.png_path}')
    return s.run.ckpt


# ============================================================================ prediction (predict.py)
@torch.no_grad()
def predict_utterance(model, meta, frames, tokens, n_words, device='cpu'):
    """One utterance -> {'Act', 'Dom', 'Val'} on the rating scale (for predict.py).

    frames: (T, Da) raw audio features of the checkpoint's kind or None (audio absent); tokens: (N, Dt) raw
    token embeddings or None (text absent); both are normalised here with the training statistics in `meta`.
    n_words: number of words (None: one chunk per second). Without word times the audio is cut into
    one-second dynamic chunks, one per word, whatever chunking the model was trained with."""
    cfg, cap = meta['config'], meta['config']['max_len'] - 1
    norm = norm_of(meta)
    a = np.zeros((0, cfg['audio_dim']), np.float32) if frames is None else \
        normalize_feats(np.asarray(frames, np.float32), *norm['audio'])
    t = np.zeros((0, cfg['text_dim']), np.float32) if tokens is None else \
        normalize_feats(np.asarray(tokens[:cap], np.float32), *norm['text'])
    C = max(2, int(n_words) if n_words else int(round(len(a) * meta['hop'])))
    spans = D.dynamic_spans(len(a), min(C, cap), meta['m']) if len(a) else np.zeros((0, 2), np.int64)
    b = D.mscr_collate([dict(a=a, spans=spans, t=t, y=np.zeros(3, np.float32), idx=0)])
    # an absent modality (0 frames / 0 tokens) is padding only: the model sees just its global token
    model.eval()
    z = forward_batch(model, b, torch.device(device))[0].float().cpu().numpy()
    return {e: float(z[k] * meta['label_norm'][e][1] + meta['label_norm'][e][0]) for k, e in enumerate(EMOS)}


# ============================================================================ testing and the sweep
def evaluate(model, ds, loader, norm, device, amp='off', missing=None, preds=False):
    """Scores of a whole split, optionally with missing data (dict(audio=p, text=q, mode=...)); with preds=True
    also the de-normalised predictions and labels {emo: (pred, label)} in dataset order."""
    ds.missing = missing
    try:
        p, y = predict(model, loader, device, amp)
    finally:
        ds.missing = None
    s = scores(p, y, norm)
    if not preds:
        return s
    return s, {e: (p[:, k] * norm[e][1] + norm[e][0], y[:, k] * norm[e][1] + norm[e][0]) for k, e in enumerate(EMOS)}


def check_test_flags(args):
    modes = [x.strip() for x in args.missing_mode.split(',') if x.strip()]
    if not modes or any(x not in MSCR_MISSING_MODES for x in modes):
        raise ToolkitError(f'--missing-mode {args.missing_mode!r}: choose from {", ".join(MSCR_MISSING_MODES)}')
    if len(modes) > 1 and not args.sweep:
        raise ToolkitError('several --missing-mode values need --sweep')
    for v in (args.missing_audio, args.missing_text):
        if not 0 <= v <= 1:
            raise ToolkitError(f'missing fractions must lie in [0, 1], got {v}')
    fracs = sorted({float(x) for x in args.sweep_fracs.split(',') if x.strip()})
    if not fracs or any(not 0 <= p <= 1 for p in fracs):
        raise ToolkitError(f'--sweep-fracs {args.sweep_fracs!r}: give fractions in [0, 1]')
    return modes, fracs


def test_mscr(args):
    """CCC per attribute on a split, optionally with missing data, or a missing-data sweep (CSV + PNGs).
    Returns the scores dict (one split), {split: scores} (several) or the sweep DataFrame(s)."""
    if int(os.environ.get('RANK', 0)) != 0:   # evaluation is cheap: one process does it
        return None
    modes, fracs = check_test_flags(args)
    device = get_device(args.device)
    if args.audio_store and (Path(args.audio_store) / 'meta.json').exists():   # the default name uses its kind
        kind = json.loads((Path(args.audio_store) / 'meta.json').read_text()).get('feature')
        args.audio_feature = kind or args.audio_feature
    ckpt = Path(args.checkpoint) if args.checkpoint else \
        Path(args.save_dir) / f'{args.name or default_name(args, parse_scales(args.scales))}.pth.tar'
    model, meta = load_mscr(ckpt, device)
    if model_source(meta) == 'demo':
        print(f'NOTE: {ckpt.name}: {checkpoints.DEMO_NOTE}', file=sys.stderr)
    checkpoints.Checkpoint(ckpt, meta, model_source(meta)).require_finished(getattr(args, 'allow_unfinished', False))
    corpus = cli.open_corpus(args.corpus, args.fold)
    same = Path(meta['corpus']).resolve() == corpus.root.resolve()   # else: the stores of the corpus given
    args.audio_feature = meta.get('audio_feature') or args.audio_feature
    audio, text = open_stores(args, corpus, meta['audio_store'] if same else None, meta['text_store'] if same else None)
    cfg = meta['config']
    if audio.dim != cfg['audio_dim'] or text.dim != cfg['text_dim'] or abs(audio.hop - meta['hop']) > 1e-9:
        raise ToolkitError(f'{ckpt} expects {cfg["audio_dim"]}-d audio at a {meta["hop"]} s hop and '
                           f'{cfg["text_dim"]}-d text; {audio.path} has {audio.dim}-d at {audio.hop} s, '
                           f'{text.path} {text.dim}-d')
    splits = cli.parse_sets(args.split_set or 'Test', corpus)
    ctx = SimpleNamespace(args=args, model=model, meta=meta, norm=norm_of(meta), corpus=corpus, audio=audio,
                          text=text, device=device, ckpt=ckpt, modes=modes, fracs=fracs)
    res = {sp: test_split(ctx, sp) for sp in splits}
    return res[splits[0]] if len(splits) == 1 else res


def test_split(c, split):
    a = c.args
    ds, = make_datasets(a, c.corpus, c.audio, c.text, c.norm, [split], c.meta['config']['max_len'],
                        c.meta.get('chunking', 'dynamic'))
    if len(ds) < 2:
        raise ToolkitError(f'fewer than 2 usable {split} utterances')
    loader = make_loader(ds, min(a.batch_size, 256), a.workers, c.device)
    released = c.corpus.release_splits(names=ds.names)
    stem = checkpoints.sibling(c.ckpt, '').name
    print(f'{stem} (scales {c.meta["scales"]}, {c.meta.get("chunking", "dynamic")} chunks, best iteration '
          f'{c.meta.get("best_iter")}) on {c.corpus.name} {split}: {len(ds)} utterances of release split(s) '
          f'{"+".join(released)}')
    if not a.sweep:
        miss = dict(audio=a.missing_audio, text=a.missing_text, mode=c.modes[0])
        s, pl = evaluate(c.model, ds, loader, c.norm, c.device, a.amp,
                         miss if a.missing_audio or a.missing_text else None, preds=True)
        print(f'missing audio {a.missing_audio:g}, text {a.missing_text:g} ({c.modes[0]})')
        # the intervals of method 1 (testing.py): metrics.evaluate on the de-normalised predictions, same flags
        rows = [{'Attr': e, 'Split': split, 'Release_splits': '+'.join(released), 'N': len(ds),
                 **M.interval_columns(M.evaluate_on(c.corpus, ds.names, *pl[e], a.bootstrap, a.bootstrap_n))}
                for e in EMOS]
        M.print_table(rows)
        s = {**s, 'release_splits': '+'.join(released)}
        rec = dict(checkpoint=checkpoints.display_path(c.ckpt), corpus=c.corpus.name, split=split,
                   release_splits=released, n=len(ds), missing=miss, **{f'ccc_{e}': s[e] for e in EMOS},
                   metrics=rows)
        path = Path(a.out) / f'{stem}_{split}_scores.json'
        atomic_write_text(path, json.dumps(rec, indent=1, default=float) + '\n')
        csv_path = Path(a.out) / f'{stem}_{split}_metrics.csv'
        atomic_write_text(csv_path, pd.DataFrame(rows).assign(missing_audio=a.missing_audio,
                                                              missing_text=a.missing_text).to_csv(index=False))
        print(f'wrote {path}\n      {csv_path}')
        return s
    df = sweep(c.model, ds, loader, c.norm, c.device, a.amp, c.modes, c.fracs).assign(
        split=split, release_splits='+'.join(released))
    out = Path(a.out)
    csv_path = out / f'{stem}_{split}_sweep.csv'
    prov = provenance(c.ckpt, c.meta)
    atomic_write_text(csv_path, df.assign(**prov, note=checkpoints.DEMO_NOTE if prov['model_source'] == 'demo'
                                          else '').to_csv(index=False))
    pngs = [plot_sweep(df[df['mode'] == mode], out / f'{stem}_{split}_sweep_{mode}.png',
                       f'{stem} on {c.corpus.name} {split} ({mode} missing, n={len(ds)})') for mode in c.modes]
    print(df.to_string(index=False))
    print(f'wrote {csv_path}\n      ' + '\n      '.join(map(str, pngs)))
    return df


def sweep(model, ds, loader, norm, device, amp, modes, fracs):
    """CCC per attribute for each mode, fraction and condition (audio, text or both missing) -> DataFrame."""
    base = evaluate(model, ds, loader, norm, device, amp)
    rows = []
    for mode in modes:
        for p in tqdm(fracs, desc=f'sweep {mode}', dynamic_ncols=True):
            for cond, (pa, pt) in (('audio', (p, 0.0)), ('text', (0.0, p)), ('both', (p, p))):
                s = base if p == 0 else evaluate(model, ds, loader, norm, device, amp, dict(audio=pa, text=pt, mode=mode))
                rows.append(dict(mode=mode, missing=cond, fraction=p, **{f'ccc_{e}': round(s[e], 5) for e in EMOS},
                                 ccc_mean=round(float(np.mean([s[e] for e in EMOS])), 5), n=len(ds)))
    return pd.DataFrame(rows)


def plot_sweep(df, png, title):
    """CCC vs missing fraction, one panel per attribute, one line per condition (audio/text/both)."""
    fig = Figure(figsize=(11, 3.4))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, e in zip(axes, EMOS):
        for cond, g in df.groupby('missing', sort=False):
            ax.plot(g['fraction'], g[f'ccc_{e}'], marker='o', ms=3, label=f'{cond} missing')
        ax.set_title(e)
        ax.set_xlabel('missing fraction')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('CCC')
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=Path(png).parent, suffix='.png')
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png)
    return Path(png)
