"""Method 2: multi-scale chunk regularization (MSCR) for audio-text SER (SPEC §5): train, test, sweep.

    python training.py --model mscr --corpus ROOT                       # 5000 iterations, batch 128
    python training.py --model mscr --corpus ROOT --scales 1.0          # same model, regulariser off
    python testing.py  --model mscr --corpus ROOT --missing-audio 0.5 --missing-mode chunks
    python testing.py  --model mscr --corpus ROOT --sweep --missing-mode frames,chunks,modality
    (python mscr.py train|test ... does the same without the method-1 scripts)

Inputs: an audio frame store (--audio-store, default features/<corpus>/<--audio-feature>: wav2vec2 as
published, or lld; any dim and hop, one-second chunks are m = chunk_frames(hop) frames, 62 at 16 ms,
50 at 20 ms) and a text token store (--text-store, default features/<corpus>/text; any dim).
Normalisation: audio frames are z-normalised with the feature NormTerm of the audio store (--norm DIR,
the folder norm_para.py --features <audio store> --out DIR writes; without --norm the same Train-split
statistics are computed at start with norm_para's streaming maths), NaN -> 0, clipped to [-3, 3].
Labels are z-normalised with the label terms of that folder (or the Train consensus mean/std) and
mapped back for reporting. Text token embeddings are used raw: they leave the encoder through its
final LayerNorm, so they are already on a unit scale, and the model's first layer is a learned
projection. All statistics are stored in the checkpoint's .meta.json and reused by testing.

Missing data (testing; seeded and nested: what is missing at fraction p is also missing at any
larger p, so sweep curves are not noisy in p):
  frames    round(p·T) audio frames of each utterance are missing: left out of the chunk means;
            a chunk whose frames are all missing is dropped from the sequence
  chunks    round(p·C) of the C word-aligned audio chunks are dropped (key-padding mask)
  tokens    round(q·N) text tokens are dropped; the text loses tokens in every non-modality mode,
            and `tokens` treats the audio like `frames`
  modality  each utterance loses the whole modality with probability p (audio) / q (text): only
            that modality's global token is left
--sweep evaluates --sweep-fracs for audio-only, text-only and both missing and writes
<out>/<name>_<split>_sweep.csv and one PNG per mode (CCC vs missing fraction per attribute).
"""
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from utils import (
    EMOS,
    atomic_torch_save,
    atomic_write_text,
    ccc,
    ccc_loss,
    ddp_cleanup,
    ddp_setup,
    get_device,
    load_norm,
    plot_curves,
    set_seed,
    unwrap,
)

MODES = ("frames", "chunks", "tokens", "modality")
DEFAULT_LR = 1e-4


# ============================================================================ flags
def _add(parser, *names, **kw):
    """Register a flag unless the host parser (training.py / testing.py) already has it."""
    if not any(n in parser._option_string_actions for n in names):
        parser.add_argument(*names, **kw)


def add_args(parser):
    """Register every MSCR flag on `parser`; flags the host script already defines are left to it."""
    import dataloader
    if "--corpus" not in parser._option_string_actions:
        dataloader.add_data_args(parser)      # --corpus --features --norm --device --amp --seed --workers --limit
    _add(parser, "-batch", "--batch-size", dest="batch_size", type=int, default=128,
         help="batch size (global over DDP processes; MSCR default 128)")
    _add(parser, "--lr", type=float, default=None, help=f"Adam learning rate (MSCR default {DEFAULT_LR})")
    _add(parser, "--resume", action="store_true", help="continue an interrupted run from its .resume.pt")
    _add(parser, "--checkpoint", default=None, help="checkpoint file: training writes it, testing reads it "
         "(default <save-dir>/<name>.pth.tar)")
    g = parser.add_argument_group("MSCR (--model mscr)")   # shares the parser's option table
    a = lambda *n, **k: _add(g, *n, **k)
    a("--audio-feature", default="wav2vec2", help="audio store name under features/<corpus>/ (published: wav2vec2; "
      "lld works too)")
    a("--audio-store", default=None, help="audio frame store folder (default features/<corpus>/<audio-feature>, "
      "or --features)")
    a("--text-store", default=None, help="text token store folder (default features/<corpus>/text)")
    a("--iters", type=int, default=5000, help="training iterations (MSCR default 5000)")
    a("--val-every", type=int, default=100, help="validate and keep the best model every N iterations")
    a("--scales", default="0.2,0.4,0.6,0.8,1.0",
      help="multi-scale crop fractions of a chunk, comma separated; 1.0 alone turns the regulariser off")
    a("--hidden", type=int, default=256, help="model width")
    a("--heads", type=int, default=4, help="attention heads")
    a("--ff", type=int, default=512, help="feed-forward width")
    a("--self-layers", type=int, default=3, help="self-attention layers per modality")
    a("--co-layers", type=int, default=2, help="co-attention layers per direction")
    a("--dropout", type=float, default=0.3, help="transformer dropout")
    a("--max-len", type=int, default=128, help="max sequence length incl. the global token; longer sequences "
      "are capped with a warning (audio: fewer, more overlapping chunks; text: first tokens)")
    a("--save-dir", default="trained_mscr_model", help="folder for MSCR checkpoints, logs and results")
    a("--name", default=None, help="checkpoint stem (default MSCR_iter{iters}_batch{batch}_{audio-feature}_scales{...})")
    a("-set", "--split", dest="split_set", default=None, help="testing: Train, Validation, Test or all (default Test)")
    a("--missing-audio", type=float, default=0.0, help="testing: missing audio fraction p (see --missing-mode)")
    a("--missing-text", type=float, default=0.0, help="testing: missing text fraction q")
    a("--missing-mode", default="frames", help="frames|chunks|tokens|modality (a comma list with --sweep)")
    a("--sweep", action="store_true", help="testing: CCC vs missing fraction (audio-only, text-only, both); "
      "writes a CSV and a PNG per mode")
    a("--sweep-fracs", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1", help="fractions evaluated by --sweep")
    a("--out", default=None, help="testing: folder for the sweep CSV/PNGs (default --save-dir)")
    return parser


def _arg(args, name, default=None):
    v = getattr(args, name, None)
    return default if v is None else v


def parse_scales(s):
    try:
        sc = tuple(float(x) for x in str(s).split(",") if x.strip())
    except ValueError:
        sc = ()
    if not sc or any(not 0 < f <= 1 for f in sc):
        raise SystemExit(f"error: --scales {s!r}: give fractions in (0, 1], e.g. 0.2,0.4,0.6,0.8,1.0 (or 1.0)")
    return sc


def default_name(args, scales):
    tag = "-".join(f"{f:g}" for f in scales)
    return f"MSCR_iter{args.iters}_batch{args.batch_size}_{args.audio_feature}_scales{tag}"


# ============================================================================ data and model glue
def forward_batch(model, batch, m, device, scales=None):
    """Batch dict (dataloader.mscr_collate) -> (B, 3) predictions. scales: crop fractions (training) or
    None (evaluation: chunks whole). Missing-data masks in the batch are applied here."""
    from model import audio_chunk_features
    a = batch["a"].to(device, non_blocking=True)
    fk = batch.get("frame_keep")
    pooled, a_pad = audio_chunk_features(a, batch["a_len"], batch["C"], m, scales,
                                         None if fk is None else fk.to(device))
    if "chunk_keep" in batch:
        a_pad = a_pad | ~batch["chunk_keep"].to(device) | ~batch["audio_on"].to(device)[:, None]
    return model(pooled, a_pad, batch["t"].to(device, non_blocking=True), batch["t_pad"].to(device))


def mtl_loss(pred, y):
    """Mean over Act/Dom/Val of (1 - CCC) over the batch."""
    return sum(ccc_loss(pred[:, k], y[:, k]) for k in range(3)) / 3


@torch.no_grad()
def predict(model, loader, m, device, amp="off", desc=None):
    """z-space predictions and labels of a whole loader, in dataset order."""
    from dataloader import amp_context
    model.eval()
    P, Y, I = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None, dynamic_ncols=True):
        with amp_context(device, amp):
            P.append(forward_batch(model, batch, m, device).float().cpu())
        Y.append(batch["y"])
        I.append(batch["idx"])
    order = torch.cat(I).argsort()
    return torch.cat(P)[order].numpy(), torch.cat(Y)[order].numpy()


def scores(pred, y, norm):
    """CCC per attribute on de-normalised predictions and labels, and the MTL loss (mean of 1 - CCC)."""
    out = {}
    for k, e in enumerate(EMOS):
        mu, sd = norm[e]
        out[e] = ccc(pred[:, k] * sd + mu, y[:, k] * sd + mu)
    out["loss"] = float(np.mean([1 - out[e] for e in EMOS]))
    return out


def build_model(cfg):
    from model import TransformerENC_CoAtten
    return TransformerENC_CoAtten(cfg["audio_dim"] * 7, cfg["text_dim"], d=cfg["hidden"], heads=cfg["heads"],
                                  ff=cfg["ff"], n_self=cfg["self_layers"], n_co=cfg["co_layers"],
                                  dropout=cfg["dropout"], max_len=cfg["max_len"])


def _stores(args, corpus, audio_path=None, text_path=None):
    """(audio FeatureStore, text FeatureStore) with clear errors naming the extract_features.py command."""
    from dataloader import default_features, die
    from feature_store import FeatureStore, StoreError
    feat = args.audio_feature
    a_path = Path(args.audio_store or _arg(args, "features") or audio_path or default_features(corpus, feat))
    t_path = Path(args.text_store or text_path or default_features(corpus, "text"))
    out = []
    for path, kind in ((a_path, feat), (t_path, "text")):
        cmd = f"python extract_features.py --corpus {corpus.root} --feature {kind} --out {path}"
        if not (path / "meta.json").exists():
            die(f"no {kind} feature store at {path}; extract it first:\n  {cmd}"
                + ("\n  (or use LLD audio: --audio-feature lld)" if kind == "wav2vec2" else ""))
        try:
            out.append(FeatureStore(path))
        except StoreError as e:
            die(f"{e}\n  {cmd}")
    audio, text = out
    if not audio.hop:
        die(f"{a_path} holds {audio.meta.get('feature')!r} features without a frame hop; the MSCR audio input must "
            f"be a frame-level store (lld or wav2vec2)")
    if text.hop is not None:
        die(f"{t_path} is a frame-level store (hop {text.hop} s); --text-store must hold text token embeddings "
            f"(extract_features.py --feature text)")
    return audio, text


def _norms(args, corpus, audio, limit_train=None):
    """{'feat': (mean, std), 'Act'|'Dom'|'Val': (mean, std)}, source description."""
    from dataloader import die, label_norm
    nd, fscope, lscope = _arg(args, "norm"), _arg(args, "feature_norm"), _arg(args, "label_norm")
    if fscope in ("speaker", "corpus"):
        die(f"--feature-norm {fscope} is a method-1 option; MSCR normalises with the audio store's NormTerm "
            f"(--norm DIR) or, by default, the same Train-split statistics computed at start")
    if "published" in (fscope, lscope) and not nd:
        die("--feature-norm/--label-norm published need a NormTerm folder: pass --norm DIR")
    if nd:
        try:
            norm = load_norm(nd)
        except FileNotFoundError as e:
            die(e)
        if len(norm["feat"][0]) != audio.dim:
            die(f"NormTerm {nd} has {len(norm['feat'][0])} feature dims but the audio store {audio.path} has "
                f"{audio.dim}; run python norm_para.py --corpus {corpus.root} --features {audio.path} --out DIR "
                f"and pass --norm DIR")
        src = str(Path(nd).resolve())
        if fscope == "train":   # explicit: Train statistics of the store instead of the folder's
            norm["feat"], src = _train_feat_stats(audio, corpus, limit_train), f"Train statistics of {audio.path}"
        if lscope == "train":
            norm.update({e: label_norm("train", e, corpus) for e in EMOS})
        return norm, src
    norm = {"feat": _train_feat_stats(audio, corpus, limit_train), **{e: label_norm("train", e, corpus) for e in EMOS}}
    return norm, f"Train statistics of {audio.path} (computed at start; norm_para.py gives the same numbers)"


def _train_feat_stats(audio, corpus, names=None):
    from dataloader import norm_stats
    names = corpus.files("Train") if names is None else names
    return norm_stats(audio, [n for n in names if n in audio])


def _datasets(args, corpus, audio, text, norm, splits, max_len, verbose=True):
    from dataloader import MSCRDataset, limit_names
    out = []
    for s in splits:
        names = limit_names(corpus.files(s), _arg(args, "limit"), args.seed)
        out.append(MSCRDataset(corpus, s, audio, text, norm, max_len, args.seed, verbose, names))
    return out


def _loader(ds, batch, workers, device, sampler=None, drop_last=False):
    from dataloader import mscr_collate
    return torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, shuffle=False, drop_last=drop_last,
                                       num_workers=workers, collate_fn=mscr_collate,
                                       pin_memory=device.type == "cuda", persistent_workers=workers > 0)


# ============================================================================ training
def train_mscr(args):
    """Train TransformerENC_CoAtten on Act/Dom/Val at once (MTL CCC loss); keeps the best validation
    checkpoint (plain state_dict) with <name>.meta.json, <name>.log.csv, <name>.loss.png, <name>.resume.pt."""
    from dataloader import Run, amp_context, die, limit_names, make_scaler, open_corpus
    rank, world, device, is_main = ddp_setup(_arg(args, "device"))
    scales = parse_scales(args.scales)
    lr = _arg(args, "lr", DEFAULT_LR)
    amp = _arg(args, "amp", "fp16")
    set_seed(args.seed + rank)
    corpus = open_corpus(args.corpus)
    audio, text = _stores(args, corpus)
    args.audio_feature = audio.meta.get("feature") or args.audio_feature
    norm, norm_src = _norms(args, corpus, audio, limit_names(corpus.files("Train"), _arg(args, "limit"), args.seed))
    train, val = _datasets(args, corpus, audio, text, norm, ["Train", "Validation"], args.max_len, is_main)
    if len(train) < 2 or len(val) < 2:
        die(f"MSCR needs at least 2 Train and 2 Validation utterances with audio and text features "
            f"(found {len(train)} and {len(val)})")
    bs = max(1, min(args.batch_size // world, len(train) // world))
    if is_main and bs * world < args.batch_size:
        print(f"note: batch {bs * world} (the Train split has only {len(train)} usable utterances)")
    sampler = torch.utils.data.DistributedSampler(train, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = _loader(train, bs, args.workers, device, sampler, drop_last=True)
    val_loader = _loader(val, max(bs, 64), args.workers, device)

    cfg = dict(audio_dim=audio.dim, text_dim=text.dim, hidden=args.hidden, heads=args.heads, ff=args.ff,
               self_layers=args.self_layers, co_layers=args.co_layers, dropout=args.dropout, max_len=args.max_len)
    model = build_model(cfg).to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = make_scaler(device, amp)
    name = args.name or default_name(args, scales)
    fields = ["iteration", "train_loss", "val_loss"] + [f"val_ccc_{e}" for e in EMOS] + ["best", "seconds"]
    ckpt = Path(args.checkpoint) if _arg(args, "checkpoint") else Path(args.save_dir) / f"{name}.pth.tar"
    run = Run(ckpt, fields, is_main, args.resume)
    it, best, best_it, epoch = 0, float("inf"), 0, 0
    if args.resume:
        st = torch.load(run.state_path, map_location="cpu", weights_only=False)
        unwrap(model).load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        scaler.load_state_dict(st["scaler"])
        it, best, best_it, epoch = st["iter"], st["best"], st["best_iter"], st["epoch"]
        random.setstate(st["rng"]["python"])
        np.random.set_state(st["rng"]["numpy"])
        torch.set_rng_state(st["rng"]["torch"])
        if st["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["rng"]["cuda"])
        if is_main:
            print(f"resumed {run.state_path} at iteration {it} (best validation loss {best:.4f} at {best_it})")
    meta = dict(model="mscr", name=name, config=cfg, scales=list(scales), m=train.m, hop=audio.hop, lr=lr,
                batch=bs * world, iters=args.iters, val_every=args.val_every, seed=args.seed,
                corpus=str(corpus.root.resolve()), audio_store=str(audio.path.resolve()),
                text_store=str(text.path.resolve()), audio_feature=args.audio_feature,
                audio_preset=audio.meta.get("preset"), audio_model=audio.meta.get("model"),
                text_model=text.meta.get("model"), feature_norm=norm_src,
                feat_mean=np.asarray(norm["feat"][0]).tolist(), feat_std=np.asarray(norm["feat"][1]).tolist(),
                label_norm={e: [float(norm[e][0]), float(norm[e][1])] for e in EMOS},
                text_norm="raw token embeddings", data={"train": train.report, "validation": val.report},
                created=time.strftime("%Y-%m-%d %H:%M:%S"))
    if is_main:
        n_par = sum(p.numel() for p in model.parameters())
        print(f"MSCR {name}: {n_par / 1e6:.2f}M parameters; audio {audio.dim}-d, hop {audio.hop} s, m={train.m}; "
              f"text {text.dim}-d; scales {scales}; batch {bs * world}; lr {lr}; {args.iters} iterations on "
              f"{device}{f' x{world}' if world > 1 else ''}{' AMP ' + amp if device.type == 'cuda' and amp != 'off' else ''}")
        print(f"normalisation: {norm_src}")

    def batches(ep):
        while True:
            sampler.set_epoch(ep)
            for b in loader:
                yield ep, b
            ep += 1

    stream = batches(epoch)
    bar = tqdm(total=args.iters, initial=it, desc="MSCR", disable=not is_main, dynamic_ncols=True)
    run_loss, run_n, t0 = 0.0, 0, time.time()
    while it < args.iters:
        model.train()
        epoch, batch = next(stream)
        with amp_context(device, amp):
            pred = forward_batch(model, batch, train.m, device, scales)
        loss = mtl_loss(pred.float(), batch["y"].to(device))
        if not torch.isfinite(loss):
            die(f"iteration {it + 1}: the loss is {loss.item()}; lower --lr or use --amp off "
                f"(resume state of the last validation: {run.state_path})")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        it += 1
        run_loss, run_n = run_loss + loss.item(), run_n + 1
        bar.update(1)
        bar.set_postfix(loss=f"{run_loss / run_n:.4f}", best=f"{best:.4f}", refresh=False)
        if it % args.val_every and it != args.iters:
            continue
        if is_main:
            s = scores(*predict(unwrap(model), val_loader, train.m, device, amp), norm)
            improved = s["loss"] < best
            if improved:
                best, best_it = s["loss"], it
                run.save_best(model, {**meta, "best_iter": it, "best_val_loss": best,
                                      "val_ccc": {e: s[e] for e in EMOS}})
            run.logger.log(iteration=it, train_loss=round(run_loss / run_n, 5), val_loss=round(s["loss"], 5),
                    **{f"val_ccc_{e}": round(s[e], 4) for e in EMOS}, best=int(improved),
                    seconds=round(time.time() - t0, 1))
            _plot_iter(run)
            rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
            atomic_torch_save({"model": unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                               "scaler": scaler.state_dict(), "iter": it, "best": best, "best_iter": best_it,
                               "epoch": epoch + 1, "rng": rng}, run.state_path)
            tqdm.write(f"iter {it}: train {run_loss / run_n:.4f}  val {s['loss']:.4f}  CCC "
                       + "  ".join(f"{e} {s[e]:.3f}" for e in EMOS) + ("  *best" if improved else ""))
        run_loss, run_n = 0.0, 0
        if world > 1:
            torch.distributed.barrier()
    bar.close()
    if is_main:
        print(f"best validation loss {best:.4f} (mean 1-CCC) at iteration {best_it}\n  model {run.ckpt}\n"
              f"  log {run.log_path}\n  curve {run.png_path}")
    ddp_cleanup()
    return run.ckpt


def _plot_iter(run):
    try:
        plot_curves(run.log_path, run.png_path, x="iteration", title=run.ckpt.name)
    except Exception as e:   # a plotting problem must never stop training
        print(f"note: loss plot not written ({e})", file=sys.stderr)


# ============================================================================ testing
def load_mscr(ckpt, device="cpu"):
    """(model in eval mode, meta) from an MSCR checkpoint and its sibling .meta.json."""
    from dataloader import die, read_meta
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        die(f"no MSCR checkpoint {ckpt}; train it with `python training.py --model mscr` (same --scales, --iters, "
            f"-batch and --audio-feature, or --name), or pass --checkpoint PATH")
    meta = read_meta(ckpt)
    if meta.get("model") != "mscr":
        die(f"{ckpt}: no MSCR metadata next to it ({ckpt.name[:-8] if ckpt.name.endswith('.pth.tar') else ckpt.stem}"
            f".meta.json); it is not a checkpoint written by training.py --model mscr")
    model = build_model(meta["config"])
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_utterance(model, meta, frames, tokens, n_words, device="cpu"):
    """One utterance -> {'Act', 'Dom', 'Val'} on the rating scale (for predict.py).

    frames: (T, Da) raw audio features of the checkpoint's kind (normalised here with the training
    statistics in `meta`) or None (audio absent); tokens: (N, Dt) token embeddings or None (text absent);
    n_words: aligned word count (None: one chunk per second)."""
    from dataloader import mscr_collate
    from utils import normalize_feats
    cfg, cap = meta["config"], meta["config"]["max_len"] - 1
    a = np.zeros((0, cfg["audio_dim"]), np.float32) if frames is None else \
        normalize_feats(np.asarray(frames, np.float32), np.asarray(meta["feat_mean"]), np.asarray(meta["feat_std"]))
    t = np.zeros((0, cfg["text_dim"]), np.float32) if tokens is None else np.array(tokens[:cap], np.float32)
    C = max(2, int(n_words) if n_words else int(round(len(a) * meta["hop"])))
    b = mscr_collate([dict(a=a, t=t, C=min(C, cap), y=np.zeros(3, np.float32), idx=0)])
    # an absent modality (0 frames / 0 tokens) is padding only: the model sees just its global token
    model.eval()
    z = forward_batch(model, b, meta["m"], torch.device(device))[0].float().cpu().numpy()
    return {e: float(z[k] * meta["label_norm"][e][1] + meta["label_norm"][e][0]) for k, e in enumerate(EMOS)}


def evaluate(model, ds, loader, meta, norm, device, amp="off", missing=None):
    """Scores of a whole split, optionally with missing data (dict(audio=p, text=q, mode=...))."""
    ds.missing = missing
    try:
        return scores(*predict(model, loader, meta["m"], device, amp), norm)
    finally:
        ds.missing = None


def test_mscr(args):
    """CCC per attribute on a split, optionally with missing data, or a missing-data sweep (CSV + PNGs)."""
    from dataloader import die, open_corpus
    if int(os.environ.get("RANK", 0)) != 0:   # evaluation is cheap: one process does it
        return None
    device = get_device(_arg(args, "device"))
    amp = _arg(args, "amp", "fp16")
    store = args.audio_store or _arg(args, "features")
    if store and (Path(store) / "meta.json").exists():   # the default name uses the store's feature kind
        args.audio_feature = json.loads((Path(store) / "meta.json").read_text()).get("feature") or args.audio_feature
    ckpt = Path(args.checkpoint) if _arg(args, "checkpoint") else \
        Path(args.save_dir) / f"{args.name or default_name(args, parse_scales(args.scales))}.pth.tar"
    model, meta = load_mscr(ckpt, device)
    modes = [x.strip() for x in args.missing_mode.split(",") if x.strip()]
    if not modes or any(x not in MODES for x in modes):
        die(f"--missing-mode {args.missing_mode!r}: choose from {', '.join(MODES)}")
    if len(modes) > 1 and not args.sweep:
        die("several --missing-mode values need --sweep")
    for v in (args.missing_audio, args.missing_text):
        if not 0 <= v <= 1:
            die(f"missing fractions must lie in [0, 1], got {v}")
    corpus = open_corpus(args.corpus)
    same = Path(meta["corpus"]).resolve() == corpus.root.resolve()   # else: the stores of the corpus given
    args.audio_feature = meta.get("audio_feature") or args.audio_feature
    audio, text = _stores(args, corpus, meta["audio_store"] if same else None, meta["text_store"] if same else None)
    cfg = meta["config"]
    if audio.dim != cfg["audio_dim"] or text.dim != cfg["text_dim"] or abs(audio.hop - meta["hop"]) > 1e-9:
        die(f"{ckpt} expects {cfg['audio_dim']}-d audio at a {meta['hop']} s hop and {cfg['text_dim']}-d text; "
            f"{audio.path} has {audio.dim}-d at {audio.hop} s, {text.path} {text.dim}-d")
    # the training run's normalisation travels with the checkpoint
    norm = {"feat": (np.asarray(meta["feat_mean"]), np.asarray(meta["feat_std"])),
            **{e: tuple(meta["label_norm"][e]) for e in EMOS}}
    from dataloader import parse_sets
    splits = parse_sets(_arg(args, "split_set") or "Test")
    res = {sp: _test_split(args, sp, model, meta, corpus, audio, text, norm, device, amp, modes, ckpt) for sp in splits}
    return res[splits[0]] if len(splits) == 1 else res


def _test_split(args, split, model, meta, corpus, audio, text, norm, device, amp, modes, ckpt):
    from dataloader import die
    ds, = _datasets(args, corpus, audio, text, norm, [split], meta["config"]["max_len"])
    if len(ds) < 2:
        die(f"fewer than 2 usable {split} utterances")
    loader = _loader(ds, min(args.batch_size, 256), args.workers, device)
    stem = ckpt.name[: -len(".pth.tar")] if ckpt.name.endswith(".pth.tar") else ckpt.stem
    print(f"{stem} (scales {meta['scales']}, best iteration {meta.get('best_iter')}) on {corpus.name} "
          f"{split}: {len(ds)} utterances")
    if not args.sweep:
        miss = dict(audio=args.missing_audio, text=args.missing_text, mode=modes[0])
        s = evaluate(model, ds, loader, meta, norm, device, amp, miss if args.missing_audio or args.missing_text else None)
        print(f"missing audio {args.missing_audio:g}, text {args.missing_text:g} ({modes[0]}): "
              + "  ".join(f"{e} CCC {s[e]:.4f}" for e in EMOS))
        return s
    fracs = sorted({float(x) for x in args.sweep_fracs.split(",") if x.strip()})
    if not fracs or any(not 0 <= p <= 1 for p in fracs):
        die(f"--sweep-fracs {args.sweep_fracs!r}: give fractions in [0, 1]")
    base = evaluate(model, ds, loader, meta, norm, device, amp)
    rows = []
    for mode in modes:
        for p in tqdm(fracs, desc=f"sweep {mode}", dynamic_ncols=True):
            for cond, (pa, pt) in (("audio", (p, 0.0)), ("text", (0.0, p)), ("both", (p, p))):
                s = base if p == 0 else evaluate(model, ds, loader, meta, norm, device, amp,
                                                 dict(audio=pa, text=pt, mode=mode))
                rows.append(dict(mode=mode, missing=cond, fraction=p, **{f"ccc_{e}": round(s[e], 5) for e in EMOS},
                                 ccc_mean=round(float(np.mean([s[e] for e in EMOS])), 5), n=len(ds)))
    import pandas as pd
    df = pd.DataFrame(rows)
    out = Path(_arg(args, "out") or args.save_dir)
    csv_path = out / f"{stem}_{split}_sweep.csv"
    atomic_write_text(csv_path, df.to_csv(index=False))
    pngs = [plot_sweep(df[df["mode"] == mode], out / f"{stem}_{split}_sweep_{mode}.png",
                       f"{stem} on {corpus.name} {split} ({mode} missing, n={len(ds)})") for mode in modes]
    print(df.to_string(index=False))
    print(f"wrote {csv_path}\n      " + "\n      ".join(map(str, pngs)))
    return df


def plot_sweep(df, png, title):
    """CCC vs missing fraction, one panel per attribute, one line per condition (audio/text/both)."""
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
    for ax, e in zip(axes, EMOS):
        for cond, g in df.groupby("missing", sort=False):
            ax.plot(g["fraction"], g[f"ccc_{e}"], marker="o", ms=3, label=f"{cond} missing")
        ax.set_title(e)
        ax.set_xlabel("missing fraction")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("CCC")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=Path(png).parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return Path(png)


def main(argv=None):
    """python mscr.py train|test [flags]: the same as training.py / testing.py --model mscr."""
    import argparse
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("train", "test"):
        raise SystemExit("usage: python mscr.py train|test [flags]   (python mscr.py train --help for the flags)")
    p = add_args(argparse.ArgumentParser(prog=f"mscr.py {argv[0]}", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv[1:])
    return train_mscr(args) if argv[0] == "train" else test_mscr(args)


if __name__ == "__main__":
    main()
