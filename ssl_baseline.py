"""The standard SSL baseline (docs/ssl.md, "The SSL baseline"): an utterance-level model on raw audio, trained and
tested in the same harness as method 1 (corpora, folds, label normalisation, records, metrics).

    python training.py --model ssl --upstream models/wavlm-large -emo all --finetune top:4 --pooling attentive
    python testing.py  --model ssl --checkpoint runs/ssl_baseline/ssl_wavlm-large_attentive_top4_ActDomVal.pth.tar

SSL encoder (any wav2vec2-family model transformers.AutoModel loads) -> its last hidden state (or --ssl-layer K)
-> pooling over the valid frames ('mean', or 'attentive' statistics pooling: attention-weighted mean and standard
deviation) -> head dropout, Linear(P, H), tanh, dropout, Linear(H, attributes) -> one output per attribute.
Loss: mean over the attributes of 1 - CCC on z-normalised labels (Train consensus statistics). Encoder:
'frozen', 'top:N' (the top N transformer layers and the final layer norm train) or 'full' (everything but the
convolutional feature encoder, frozen as the published recipes do). Saved: the trainable parameters only (a plain
state_dict) with a provenance record naming the upstream by the SHA-256 of its weight files; the rest of the encoder
comes from the upstream at load time, which is refused when its checksum differs.
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

import checkpoints as C
import features as F
import interrupts
import metrics as M
import norm as N
from audio import load_audio
from dataloader import gather_eval, limit_names
from errors import ToolkitError
from utils import EMO_COL, amp_context, atomic_write_text, ccc, ccc_loss, make_scaler, parse_emos, set_seed, unwrap

SR = 16000
OUT_DIR = C.REPO / 'runs' / 'ssl_baseline'


def add_args(p, train=True):
    g = p.add_argument_group('SSL baseline (--model ssl)')
    g.add_argument('--upstream', default=None, help='the SSL encoder: a local folder or a hub name you choose (testing: '
                   'default the one the record names; its weights must have the recorded SHA-256)')
    if train:
        g.add_argument('--pooling', default='mean', choices=['mean', 'attentive'], help='mean over frames, or '
                       'attentive statistics pooling (weighted mean and std)')
        g.add_argument('--finetune', default='frozen', help="'frozen', 'top:N' (top N transformer layers) or 'full' "
                       "(all but the convolutional feature encoder)")
        g.add_argument('--ssl-layer', type=int, default=None, help='pool this hidden state instead of the last one')
        g.add_argument('--max-seconds', type=float, default=8.0, help='training crops: a random window of at most '
                       'this many seconds per utterance (evaluation sees whole utterances)')
        g.add_argument('--head-dropout', type=float, default=0.1)


# ================================================================ model
class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: frame weights softmax(w2 tanh(W1 h)) over the valid frames -> [mean, std]."""

    def __init__(self, d, hidden=128):
        super().__init__()
        self.att = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h, valid):
        h = h.float()
        w = torch.softmax(self.att(h).squeeze(-1).masked_fill(~valid, float('-inf')), 1)[..., None]
        mu = (w * h).sum(1)
        sd = ((w * h * h).sum(1) - mu ** 2).clamp(min=1e-6).sqrt()
        return torch.cat([mu, sd], -1)


def mean_pool(h, valid):
    v = valid[..., None].to(h.dtype)
    return (h * v).sum(1) / v.sum(1).clamp(min=1)


class SSLBaseline(nn.Module):
    """encoder -> pooling -> head; forward(wav (B, S) float, lengths (B,) samples) -> (B, n_out)."""

    def __init__(self, encoder, n_out, pooling='mean', layer=None, dropout=0.1):
        super().__init__()
        self.encoder, self.pooling, self.layer = encoder, pooling, layer
        d = encoder.config.hidden_size
        self.pool = AttentiveStatsPool(d) if pooling == 'attentive' else None
        p = 2 * d if pooling == 'attentive' else d
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(p, d), nn.Tanh(), nn.Dropout(dropout), nn.Linear(d, n_out))
        self.use_mask = getattr(encoder.config, 'feat_extract_norm', 'layer') == 'layer'

    def forward(self, wav, lengths):
        mask = torch.arange(wav.shape[1], device=wav.device)[None] < lengths[:, None]
        kw = {'attention_mask': mask.long()} if self.use_mask else {}
        out = self.encoder(wav, output_hidden_states=self.layer is not None, **kw)
        h = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        frames = self.encoder._get_feat_extract_output_lengths(lengths)
        valid = torch.arange(h.shape[1], device=h.device)[None] < frames[:, None]
        pooled = self.pool(h, valid) if self.pool is not None else mean_pool(h.float(), valid)
        return self.head(pooled.float())


def set_trainable(model, finetune):
    """'frozen' | 'top:N' | 'full' -> which encoder parameters train (the head always does)."""
    enc = model.encoder
    for p in enc.parameters():
        p.requires_grad_(False)
    if finetune == 'full':
        for p in enc.parameters():
            p.requires_grad_(True)
        enc.freeze_feature_encoder()
    elif finetune.startswith('top:'):
        try:
            n = int(finetune[4:])
        except ValueError:
            n = -1
        layers = enc.encoder.layers
        if not 0 < n <= len(layers):
            raise ToolkitError(f'--finetune {finetune}: N must be 1..{len(layers)} (the transformer layers)')
        for mod in list(layers[-n:]) + [enc.encoder.layer_norm]:
            for p in mod.parameters():
                p.requires_grad_(True)
    elif finetune != 'frozen':
        raise ToolkitError(f"--finetune {finetune!r}: use 'frozen', 'top:N' or 'full'")
    if getattr(enc, 'masked_spec_embed', None) is not None:   # the time-mask vector: fixed (a batch without
        enc.masked_spec_embed.requires_grad_(False)            # masked frames would leave it unused under DDP)
    layers, k = enc.encoder.layers, model.layer
    if k is not None and k % (len(layers) + 1) < len(layers):   # layers above the pooled one: never used
        k %= len(layers) + 1
        unused = list(layers[k:]) + ([enc.encoder.layer_norm] if enc.config.do_stable_layer_norm else [])
        for mod in unused:
            for p in mod.parameters():
                p.requires_grad_(False)
    return [n for n, p in model.named_parameters() if p.requires_grad]


class Trainable(nn.Module):
    """The saved part of a model: its trainable parameters (plain state_dict) — what save_model and Run write."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, set(names)

    def state_dict(self, *a, **k):
        return {n: v for n, v in unwrap(self.model).state_dict().items() if n in self.names}

    def load_state_dict(self, sd, strict=True):
        missing = self.names - set(sd)
        if strict and missing:
            raise C.CheckpointError(f'the saved weights lack {sorted(missing)[:4]}')
        return unwrap(self.model).load_state_dict(sd, strict=False)


def build(upstream, emos, pooling, finetune, layer=None, dropout=0.1):
    from transformers import AutoModel
    enc = F._hf_load(AutoModel, upstream, 'speech encoder')
    if not hasattr(enc, 'freeze_feature_encoder'):
        raise ToolkitError(f'{upstream}: a {type(enc).__name__} is not a wav2vec2-family audio encoder')
    model = SSLBaseline(enc, len(emos), pooling, layer, dropout)
    try:
        from transformers import AutoFeatureExtractor
        model.normalize = bool(getattr(F._hf_load(AutoFeatureExtractor, upstream, 'feature extractor'),
                                       'do_normalize', True))
    except Exception:      # no preprocessor_config.json: the wav2vec2 default, per-utterance normalisation
        model.normalize = True
    return model, set_trainable(model, finetune)


# ================================================================ data
class AudioDataset(Dataset):
    """(normalised waveform float32, z-labels (n_emos,), index) per utterance; random crops when `crop` seconds."""

    def __init__(self, corpus, names, labels, crop=None, normalize=True, seed=0):
        self.corpus, self.names, self.labels = corpus, list(names), np.asarray(labels, np.float32)
        self.crop, self.normalize, self.seed, self.epoch = crop, normalize, seed, 0

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        x = load_audio(self.corpus.audio_path(self.names[i]), SR).astype(np.float32)
        if self.crop and len(x) > self.crop * SR:
            n = int(self.crop * SR)
            s = np.random.default_rng([self.seed, self.epoch, i]).integers(0, len(x) - n + 1)
            x = x[s:s + n]
        if self.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        return x.astype(np.float32), self.labels[i], i


def collate(batch, min_len=SR):
    """Zero-padded (B, S) waveforms (at least 1 s: the encoder's time masking needs frames) + lengths."""
    lens = [len(b[0]) for b in batch]
    x = np.zeros((len(batch), max(max(lens), min_len)), np.float32)
    for k, b in enumerate(batch):
        x[k, :lens[k]] = b[0]
    return (torch.from_numpy(x), torch.tensor(lens), torch.from_numpy(np.stack([b[1] for b in batch])),
            torch.tensor([b[2] for b in batch]))


def split_data(corpus, split, emos, lnorm, limit=None, seed=0):
    cols = corpus.labels.set_index('FileName')[[EMO_COL[e] for e in emos]]
    names = [n for n in corpus.files(split) if n in cols.index and np.isfinite(cols.loc[n].to_numpy(float)).all()]
    names = limit_names(names, limit, seed)
    y = cols.loc[names].to_numpy(np.float64)
    z = (y - np.array([lnorm[e][0] for e in emos])) / np.array([lnorm[e][1] for e in emos])
    return names, y, z


@torch.no_grad()
def predict(model, loader, device, amp, world=1):
    """{dataset index: (n_emos,) normalised predictions}."""
    model.eval()
    out = {}
    for x, lens, _, idx in loader:
        with amp_context(device, amp):
            p = model(x.to(device), lens.to(device)).float().cpu().numpy()
        out.update({int(i): v for i, v in zip(idx, p)})
    return gather_eval(out, world)


# ================================================================ training
def ckpt_name(upstream, pooling, finetune, emos):
    return f'ssl_{Path(str(upstream)).name}_{pooling}_{finetune.replace(":", "")}_{"".join(emos)}.pth.tar'


def train(args, corpus, rank, world, device, is_main):
    if not args.upstream:
        raise ToolkitError('--model ssl needs --upstream (a local folder of a wav2vec2/HuBERT/WavLM model, or a hub '
                           'name); docs/ssl.md, "Bring your own upstream"')
    emos = parse_emos(args.emo_attr or 'all')
    set_seed(args.seed, args.threads)
    lr = args.lr or 1e-4
    model, trainable = build(args.upstream, emos, args.pooling, args.finetune, args.ssl_layer, args.head_dropout)
    ident = F.upstream_identity(args.upstream)
    lnorm = N.label_stats(corpus, 'Train', emos)
    lrec = {'scope': 'train', 'source': f'Train consensus of {corpus.name}', 'sha256': None,
            'computed_on': {'corpus': corpus.name, 'split': 'Train'}, 'stats': {e: list(v) for e, v in lnorm.items()}}
    tn, _, tz = split_data(corpus, 'Train', emos, lnorm, args.limit, args.seed)
    vn, vy, vz = split_data(corpus, 'Validation', emos, lnorm, args.limit, args.seed)
    if len(tn) < 2 or len(vn) < 2:
        raise ToolkitError(f'{corpus.consensus_path}: fewer than 2 Train or Validation utterances with labels')
    train_ds = AudioDataset(corpus, tn, tz, args.max_seconds, model.normalize, seed=args.seed)
    valid_ds = AudioDataset(corpus, vn, vz, normalize=model.normalize)
    per_rank = max(1, args.batch_size // world)
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=args.seed)
    tr = DataLoader(train_ds, per_rank, sampler=sampler, num_workers=args.workers, collate_fn=collate,
                    drop_last=len(train_ds) > per_rank * world, generator=torch.Generator().manual_seed(args.seed))
    va = DataLoader(valid_ds, per_rank, sampler=DistributedSampler(valid_ds, world, rank, shuffle=False),
                    num_workers=args.workers, collate_fn=collate)
    model.to(device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    scaler = make_scaler(device, args.amp)
    ckpt = Path(args.checkpoint) if args.checkpoint else OUT_DIR / ckpt_name(args.upstream, args.pooling,
                                                                             args.finetune, emos)
    settings = {'epochs': args.epochs, 'batch': args.batch_size, 'lr': lr, 'seed': args.seed, 'pooling': args.pooling,
                'finetune': args.finetune, 'ssl_layer': args.ssl_layer, 'max_seconds': args.max_seconds,
                'head_dropout': args.head_dropout, 'limit': args.limit, 'amp': args.amp, 'fold': corpus.fold,
                'emo': emos, 'upstream_sha256': ident['sha256'], 'corpus': C.display_path(corpus.root),
                'checkpoint': C.display_path(ckpt)}
    record = {'version': C.RECORD_VERSION, 'kind': 'ssl_baseline', 'attributes': emos,
              'features': {'kind': 'ssl_audio', 'upstream': ident['name'], 'upstream_sha256': ident['sha256'],
                           'upstream_files': ident['weights_sha256'], 'model_type': model.encoder.config.model_type,
                           'hop': float(np.prod(model.encoder.config.conv_stride)) / SR,
                           'dim': model.encoder.config.hidden_size, 'layer': args.ssl_layer,
                           'input_normalize': model.normalize},
              'chunks': {}, 'network': {'pooling': args.pooling, 'finetune': args.finetune, 'n_out': len(emos),
                                        'head_dropout': args.head_dropout, 'trainable': len(trainable)},
              'feature_norm': {'scope': 'utterance', 'source': 'zero mean, unit variance per waveform', 'mean': None,
                               'std': None},
              'label_norm': lrec,
              'corpus': {'name': corpus.name, 'root': C.display_path(corpus.root),
                         'splits': {'Train': len(tn), 'Validation': len(vn)}, 'fold': corpus.fold},
              'init_from': None, 'settings': settings}
    saved = Trainable(model, trainable)
    run = C.Run(ckpt, ['epoch', 'train_loss', 'val_loss', 'val_ccc'], is_main, args.resume,
                {k: v for k, v in settings.items() if k != 'epochs'}, args.overwrite)     # -ep may grow on --resume
    try:
        net, start, best, best_ep = run.start(model, opt, scaler, False, world, device, 'ssl', float('inf'))
        if args.resume:            # the saved state holds the trainable part only
            start, best, best_ep = run.load_state(saved, opt, scaler)
            print(f'ssl: resuming at epoch {start} (best {best:.4f} at epoch {best_ep})')
        if is_main:
            n_par = sum(p.numel() for p in model.parameters() if p.requires_grad)
            print(f'SSL baseline {"/".join(emos)}: {len(tn)} train / {len(vn)} validation utterances, {args.upstream} '
                  f'({args.finetune}, {n_par} trainable parameters), {args.pooling} pooling, {device}, lr {lr} -> {ckpt}')
        for ep in range(start, args.epochs):
            t0 = time.time()
            sampler.set_epoch(ep)
            train_ds.epoch = ep
            net.train()
            if args.finetune == 'frozen':
                unwrap(net).encoder.eval()
            losses = []
            for x, lens, z, _ in tqdm(tr, desc=f'ssl ep{ep}', leave=False, disable=not is_main, dynamic_ncols=True):
                with amp_context(device, args.amp):
                    p = net(x.to(device), lens.to(device))
                z = z.to(device)
                loss = sum(ccc_loss(p[:, k].float(), z[:, k]) for k in range(len(emos))) / len(emos)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                losses.append(loss.item())
            out = predict(net, va, device, args.amp, world)
            pv = np.stack([out[i] for i in range(len(vn))])
            vccc = float(np.mean([ccc(pv[:, k], vz[:, k]) for k in range(len(emos))]))
            vloss, tloss = 1 - vccc, float(np.mean(losses)) if losses else float('nan')
            improved = vloss < best
            with interrupts.deferred():
                if improved:
                    best, best_ep = vloss, ep
                    run.save_best(saved, {**record, 'result': {'best_epoch': ep, 'val_ccc': vccc}})
                run.save_state(saved, opt, scaler, ep, best, best_ep)
                run.log(epoch=ep, train_loss=tloss, val_loss=vloss, val_ccc=vccc)
            if is_main:
                print(f'ssl epoch {ep}: train loss {tloss:.4f} | valid mean CCC {vccc:.4f}'
                      f'{"  * saved" if improved else ""} ({time.time() - t0:.0f} s)')
    finally:
        run.close()
    return ckpt


# ================================================================ testing
def load(path, upstream=None, device='cpu'):
    """(model, Checkpoint) of a saved baseline: the record's upstream (or `upstream`, which must have the recorded
    weights' SHA-256) + the saved trainable parameters."""
    path = Path(path)
    rec = C.read_record(path)
    if not rec or rec.get('kind') != 'ssl_baseline':
        raise C.CheckpointError(f'{path}: not an SSL-baseline checkpoint (its record {C.sibling(path, ".meta.json").name} '
                                f'{"is missing" if not rec else "says kind " + repr(rec.get("kind"))})')
    ck = C.Checkpoint(path, rec, 'own')
    ck.verify_bytes()
    f, net = rec['features'], rec['network']
    up = upstream or f['upstream']
    try:
        got = F.upstream_identity(up)['sha256']
    except F.ExtractorSetupError as e:
        raise C.CheckpointError(f'{e}; {path} was trained on the upstream {f["upstream"]!r}: pass its folder with '
                                f'--upstream DIR') from None
    if got != f['upstream_sha256']:
        raise C.CheckpointError(f'{path} was trained on the upstream {f["upstream"]!r} (SHA-256 {f["upstream_sha256"][:12]}'
                                f'...), but {up} has SHA-256 {got[:12]}...: another upstream; pass --upstream with the '
                                f'weights the model was trained on')
    model, names = build(up, rec['attributes'], net['pooling'], net['finetune'], f.get('layer'), net['head_dropout'])
    Trainable(model, names).load_state_dict(C.load_state_dict(path))
    return model.to(device).eval(), ck


def test(args, corpus, device):
    if not args.checkpoint:
        raise ToolkitError('--model ssl: pass the baseline with --checkpoint FILE (training.py --model ssl wrote it)')
    model, ck = load(args.checkpoint, args.upstream, device)
    emos, stats = ck.attributes, ck.record['label_norm']['stats']
    want = parse_emos(args.emo_attr) if args.emo_attr else emos
    sets = cli_sets(args, corpus)
    rows = []
    for split in sets:
        names, y, z = split_data(corpus, split, emos, {e: stats[e] for e in emos}, args.limit, args.seed)
        if not names:
            continue
        ds = AudioDataset(corpus, names, z, normalize=model.normalize)
        out = predict(model, DataLoader(ds, args.batch_size, collate_fn=collate, num_workers=args.workers), device,
                      args.amp)
        pz = np.stack([out[i] for i in range(len(names))])
        for k, e in enumerate(emos):
            if e not in want:
                continue
            pred = pz[:, k] * stats[e][1] + stats[e][0]
            path = Path(args.out) / f'{e}_{split}_predictions.csv'
            atomic_write_text(path, pd.DataFrame({'FileName': names, 'Label': y[:, k], 'Pred': pred.round(5)})
                              .to_csv(index=False))
            r = M.evaluate_on(corpus, names, pred, y[:, k], args.bootstrap, args.bootstrap_n)
            rows.append({'Attr': e, 'Split': split, 'Release_splits': '+'.join(corpus.release_splits(names=names)),
                         'N': len(names), **M.interval_columns(r), 'feature_norm': 'utterance (waveform)',
                         'predictions': C.display_path(path), 'model': C.display_path(ck.path),
                         'model_sha256': ck.sha256, 'upstream': ck.features['upstream']})
    if not rows:
        raise ToolkitError(f'no utterances with labels in {sets}')
    df = pd.DataFrame(rows)
    atomic_write_text(Path(args.out) / 'metrics.csv', df.to_csv(index=False))
    M.print_table(rows, 'feature norm', 'feature_norm')
    print(f'SSL baseline {C.display_path(ck.path)} (upstream {ck.features["upstream"]}); predictions and metrics.csv '
          f'in {args.out}', file=sys.stderr)
    return rows


def cli_sets(args, corpus):
    spec = args.split_set or 'Test'
    if spec == 'all':
        return [s for s in ('Train', 'Validation', 'Test') if corpus.files(s)]
    return [s.strip() for s in spec.split(',')]
