"""Emotion of any recording: utterance-level Act/Dom/Val on the 1-7 scale and chunk-level emotion curves.

  python predict.py speech.wav --pretrained ../Chunk-Level-Emotion-Retrieval --plot plots/
  python predict.py my_recordings/ --out results.csv --json results.json --rankers
  python predict.py talk.wav --model mscr --checkpoint trained_mscr_model/MSCR_....pth.tar --text "..."

Models: `--pretrained DIR` = a clone of the authors' repository (its NormTerm/, trained_seq2seq_model_v1.6/
and chunk_emotion_rankers/trained_ranker_model_v1.6/); `--checkpoint DIR|FILE` = your own training.py
output (normalisation statistics from the checkpoint's .meta.json, else --norm-dir, else NormTerm/);
neither = the demo models shipped at the repository root (trained_seq2seq_model/). `--model mscr` runs an
audio-text MSCR checkpoint instead (utterance level only; transcript from --text, --transcript or a
<name>.txt next to the audio; without one the text modality is treated as missing).
Feature normalisation (--feature-norm): 'published' (the authors' NormTerm, default with --pretrained),
'train' (the statistics the model was trained with, default otherwise), 'corpus' (statistics of the files
given, e.g. for a recording setup far from the training corpus). Labels always use the models' statistics.

Pipeline per window (SPEC §7): openSMILE LLDs with the published preset (32 ms frames, 16 ms hop,
130 dims) -> z-norm with the NormTerm, NaN -> 0, clip [-3, 3] -> pad to >= 62 frames -> 22 chunks of 62
frames (1 s) -> one Seq2Seq LSTM prediction per chunk (the curve) -> utterance = mean of the 22 chunks ->
de-normalised with the label NormTerm. Any format soundfile reads (WAV, FLAC, OGG, ...), any sample rate
and channel count (mixed to mono, resampled to 16 kHz). Clips shorter than 1 s are zero-padded (in the
normalised domain) to 62 frames, so their 22 chunks are identical and the curve is flat.

Long files: a file up to --max-len seconds (20) is one window, as in the published code. A longer file is
cut into windows of --window seconds (10, about the longest MSP-Podcast training utterance) that overlap
by at least --overlap seconds (5), spread evenly from the start to the end. Each window gets its 22
chunk predictions; the file's curve is sampled every --grid seconds (0.5) between the first and last
chunk centre by linear interpolation inside each window, blended across overlapping windows with
triangular weights (peak at the window centre). The utterance value of a long file is the time-average
of that curve. With --rankers the ranker score of each chunk (g = f1 - f0, a function of the chunk
alone) is stitched the same way and ranked over the whole curve (rank 1 = most emotional).

Batch mode: directories are searched recursively for audio files; files are processed --batch at a
time with one forward pass per model per batch. A file that fails (unreadable, empty, ...) is listed
with its reason at the end and in the CSV's `error` column; the rest are processed. The exit code is
non-zero only when every file failed (or the models cannot be loaded).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from audio import SR, AudioError, load_audio
from model import LSTMnet
from utils import (
    EMOS,
    atomic_write_text,
    chunk_starts,
    dynamic_chunk_split,
    get_device,
    load_norm,
    normalize_feats,
    pad_batch,
    parse_emos,
    rank_desc_min,
)

ROOT = Path(__file__).resolve().parent
K = 22  # chunks per utterance (C = 11 chunks x scaling factor n = 2)
SEQ_SUBDIRS = ['trained_seq2seq_model_v1.6', 'trained_seq2seq_model', '.']
RANKER_SUBDIRS = ['chunk_emotion_rankers/trained_ranker_model_v1.6', 'chunk_emotion_rankers/trained_ranker_model',
                  'trained_ranker_model_v1.6', 'trained_ranker_model', '.']
AUTHORS_URL = 'https://github.com/winston-lin-wei-cheng/Chunk-Level-Emotion-Retrieval'
AUDIO_EXTS = {'.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3', '.aiff', '.aif', '.au', '.caf', '.w64', '.rf64'}


class PredictError(Exception):
    """Setup problem (models, NormTerm, output paths): the message names the path and what to do."""


# ----------------------------------------------------------------------------- models
def find_checkpoint(dirs, pattern, what):
    """Newest file matching `pattern` in the first of `dirs` that has one; None when there is none."""
    for d in dirs:
        hits = sorted(Path(d).glob(pattern), key=lambda p: p.stat().st_mtime)
        if hits:
            if len(hits) > 1:
                print(f"note: {len(hits)} {what} checkpoints in {d}; using the newest, {hits[-1].name}")
            return hits[-1]
    return None


def load_lstm(path, out_dim, device):
    """LSTMnet of the published shapes from a plain state_dict; a clear error naming what differs."""
    try:
        sd = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise PredictError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                           f"re-download it or retrain") from None
    for key in ('state_dict', 'model'):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    kind = 'chunk emotion ranker (fc2: 2 outputs)' if out_dim == 2 else 'Seq2Seq model (fc2: 1 output)'
    if not isinstance(sd, dict):
        raise PredictError(f"{path}: not a state_dict; expected a {kind} saved as a plain state_dict")
    sd = {k.removeprefix('module.'): v for k, v in sd.items()}
    net = LSTMnet(out_dim=out_dim)
    want = net.state_dict()
    problems = [f"{k} missing" for k in want if k not in sd]
    problems += [f"unexpected {k}" for k in sd if k not in want]
    problems += [f"{k} is {tuple(sd[k].shape)}, expected {tuple(want[k].shape)}" for k in want
                 if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if problems:
        raise PredictError(f"{path}: not a {kind} of the published shapes (2-layer LSTM 130->130, fc1 130->130): "
                           f"{'; '.join(problems[:4])}{' ...' if len(problems) > 4 else ''}. Pass the right file "
                           f"(Seq2Seq: *_EmoRankerSeq_<Emo>.pth.tar, ranker: *_<Emo>_ranker.pth.tar) or retrain it")
    net.load_state_dict(sd, strict=True)
    return net.to(device).eval()


def resolve_models(args):
    """-> dict(seq2seq={emo: path}, rankers={emo: path}, pub_norm=Path|None, source=str, emos=[...])."""
    emos = parse_emos(args.emo)
    pub_norm, files = None, None
    if args.pretrained:
        base = Path(args.pretrained).expanduser()
        if not base.is_dir():
            raise PredictError(f"--pretrained {base}: not a folder; pass the root of your clone of the authors' "
                               f"repository (git clone {AUTHORS_URL})")
        seq_dirs = [base / s for s in SEQ_SUBDIRS]
        rk_dirs = [Path(args.ranker_dir).expanduser()] if args.ranker_dir else [base / s for s in RANKER_SUBDIRS]
        pub_norm = base / 'NormTerm'
        if not pub_norm.is_dir():
            raise PredictError(f"--pretrained {base}: no NormTerm/ folder; {base} should be the root of the authors' "
                               f"repository (NormTerm/, trained_seq2seq_model_v1.6/, chunk_emotion_rankers/"
                               f"trained_ranker_model_v1.6/), git clone {AUTHORS_URL}")
        source = f"pretrained {base}"
        hint = (f"{base} should hold trained_seq2seq_model_v1.6/ and chunk_emotion_rankers/"
                f"trained_ranker_model_v1.6/ as in the authors' repository")
    else:
        sdir = Path(args.checkpoint_dir).expanduser() if args.checkpoint_dir else ROOT / 'trained_seq2seq_model'
        if '{emo}' in str(sdir) or sdir.is_file():  # one checkpoint file (per attribute with '{emo}')
            files = {e: Path(str(sdir).replace('{emo}', e)) for e in emos}
            if len(set(files.values())) < len(emos):
                raise PredictError(f"--checkpoint {sdir} is one file but -emo asks for {', '.join(emos)}; pass -emo "
                                   f"{emos[0]}, a folder, or a path with '{{emo}}' (e.g. run/LSTM_..._{{emo}}.pth.tar)")
            for _e, f in files.items():
                if not f.is_file():
                    raise PredictError(f"--checkpoint: {f} does not exist; check the path (and -emo)")
            sdir = files[emos[0]].parent
        seq_dirs = [sdir]
        rk_dirs = [Path(args.ranker_dir).expanduser()] if args.ranker_dir else \
            [sdir / s for s in RANKER_SUBDIRS[:2]] + [ROOT / 'chunk_emotion_rankers' / 'trained_ranker_model']
        source = f"checkpoints {sdir}"
        if not sdir.is_dir():
            what = f"--checkpoint {sdir}: no such file or folder" if args.checkpoint_dir else \
                f"no trained models at {sdir} (the shipped demo models are missing)"
            raise PredictError(f"{what}. Either pass --pretrained DIR, DIR being your clone of the authors' released "
                               f"models (git clone {AUTHORS_URL}), or train first: python training.py -emo all")
        hint = "train it first (python training.py -emo <Emo>) or pass --checkpoint PATH / --pretrained DIR"
    seq, rk = {}, {}
    for emo in emos:
        p = files[emo] if files else find_checkpoint(seq_dirs, f'*EmoRankerSeq_{emo}.pth.tar', f'{emo} Seq2Seq')
        if p is None:
            raise PredictError(f"no Seq2Seq checkpoint *EmoRankerSeq_{emo}.pth.tar in "
                               f"{', '.join(str(d) for d in seq_dirs if d.is_dir()) or seq_dirs[0]}; {hint}")
        seq[emo] = p
        if args.rankers:
            r = find_checkpoint(rk_dirs, f'*_{emo}_ranker.pth.tar', f'{emo} ranker')
            if r is None:
                raise PredictError(f"--rankers: no ranker checkpoint *_{emo}_ranker.pth.tar in "
                                   f"{', '.join(str(d) for d in rk_dirs)}; train it (chunk_emotion_rankers/"
                                   f"training_ranker.py -emo {emo}), pass --ranker-dir DIR, or drop --rankers")
            rk[emo] = r
    return dict(seq2seq=seq, rankers=rk, pub_norm=pub_norm, source=source, emos=emos)


def read_meta(ckpt):
    """Training metadata next to a checkpoint (<name>.meta.json, written by training.py); {} if none."""
    base = ckpt.name[:-len('.pth.tar')] if ckpt.name.endswith('.pth.tar') else ckpt.stem
    p = ckpt.with_name(base + '.meta.json')
    try:
        return json.loads(p.read_text()) if p.exists() else {}
    except (OSError, ValueError) as e:
        raise PredictError(f"{p}: unreadable metadata ({e}); delete it or retrain") from None


def _load_norm(d, key):
    try:
        return load_norm(d, need=(key,))[key]
    except (FileNotFoundError, KeyError, ValueError, OSError) as e:
        raise PredictError(f"{d}: unusable NormTerm for {key} ({e})") from None


def resolve_norm(args, cfg):
    """Feature statistics per checkpoint, label statistics per attribute, LLD preset and hop.

    Feature scopes: 'published' = the authors' NormTerm (--norm-dir, else DIR/NormTerm of --pretrained);
    'train' = the statistics the model was trained with (--norm-dir, else the checkpoint's .meta.json,
    else DIR/NormTerm of --pretrained, else NormTerm/); 'corpus' = the files given (filled in later).
    Labels: --norm-dir, else the checkpoint's metadata, else the NormTerm of --pretrained, else NormTerm/.
    """
    explicit = Path(args.norm_dir).expanduser() if args.norm_dir else None
    if explicit and not explicit.is_dir():
        raise PredictError(f"--norm-dir {explicit}: no such folder; pass the NormTerm folder that belongs to the models")
    local = ROOT / 'NormTerm'
    ckpts = list(cfg['seq2seq'].values()) + list(cfg['rankers'].values())
    metas = {p: read_meta(p) for p in ckpts}
    scope = args.feature_norm
    if scope is None:
        trained = {m.get('feature_norm') for m in metas.values()} - {None}
        scope = 'published' if cfg['pub_norm'] else 'train'
        if trained & {'speaker', 'corpus'}:
            scope = 'corpus'
            print(f"note: the models were trained with --feature-norm {'/'.join(sorted(trained))}; predict.py uses "
                  f"statistics of the files given (--feature-norm corpus)")
    feat = {}
    for p, meta in metas.items():
        if scope == 'corpus':
            feat[p] = None
        elif scope == 'published':
            d = explicit or cfg['pub_norm']
            if d:
                feat[p] = _load_norm(d, 'feat')
            elif meta.get('feature_norm') == 'published' and meta.get('feat_mean') is not None:
                feat[p] = (np.asarray(meta['feat_mean']), np.asarray(meta['feat_std']))
            else:
                raise PredictError("--feature-norm published needs the authors' NormTerm: pass --pretrained DIR "
                                   "(their repository root) or --norm-dir DIR/NormTerm")
        else:  # train
            if explicit:
                feat[p] = _load_norm(explicit, 'feat')
            elif meta.get('feat_mean') is not None:
                feat[p] = (np.asarray(meta['feat_mean']), np.asarray(meta['feat_std']))
            elif cfg['pub_norm'] or local.is_dir():
                feat[p] = _load_norm(cfg['pub_norm'] or local, 'feat')
            else:
                raise PredictError(f"{p}: no feature statistics: its .meta.json holds none and {local} does not "
                                   f"exist; pass --norm-dir DIR (the NormTerm written by norm_para.py for the "
                                   f"training corpus) or use --feature-norm corpus")
        if feat[p] is not None and len(feat[p][0]) != 130:
            raise PredictError(f"the feature statistics for {p.name} have {len(feat[p][0])} dims, the LLDs have "
                               f"130; pass the NormTerm that belongs to the models (--norm-dir)")
    labels = {}
    for emo, p in cfg['seq2seq'].items():
        meta = metas[p]
        if explicit:
            labels[emo] = _load_norm(explicit, emo)
        elif meta.get('label_mean') is not None:
            labels[emo] = (float(meta['label_mean']), float(meta['label_std']))
        elif cfg['pub_norm'] or local.is_dir():
            labels[emo] = _load_norm(cfg['pub_norm'] or local, emo)
        else:
            raise PredictError(f"{p}: no label statistics to map predictions back to 1-7: its .meta.json holds "
                               f"none and {local} does not exist; pass --norm-dir DIR")
    presets = {(m.get('feature_preset') or 'published', None if (m.get('feature_preset') or 'published') ==
                'published' else m.get('hop')) for m in metas.values()}
    if cfg['pub_norm']:
        presets = {('published', None)}
    if len(presets) > 1:
        raise PredictError(f"the checkpoints were trained on different LLD presets {sorted(map(str, presets))}; "
                           f"pass models trained on one preset (e.g. --emo Act)")
    preset, hop = presets.pop()
    return dict(scope=scope, feat=feat, labels=labels, preset=preset, hop=hop,
                label_source=str(explicit or ('checkpoint metadata' if any('label_mean' in m for m in metas.values())
                                              else cfg['pub_norm'] or local)))


# ----------------------------------------------------------------------------- windows and stitching
def make_windows(T, hop, max_len=20.0, window=10.0, overlap=5.0):
    """Frame ranges [(start, end), ...]: one window up to max_len seconds, else overlapping windows."""
    W = int(round(window / hop))
    if T * hop <= max_len or T <= W:
        return [(0, T)]
    H = max(1, W - int(round(overlap / hop)))
    n = int(math.ceil((T - W) / H)) + 1
    starts = np.round(np.linspace(0, T - W, n)).astype(int)
    return [(int(s), int(s) + W) for s in starts]


def chunk_centres(start, length, m, hop):
    """Centre times (s) of the 22 chunks of a window of `length` frames starting at frame `start`."""
    st, _ = chunk_starts([length], m, K)
    return (start + st[0].numpy() + min(m, length) / 2) * hop


def stitch(wins, centres, values, grid_step):
    """Blend per-window chunk curves into one curve on a regular time grid (triangular weights)."""
    t0, t1 = centres[0][0], centres[-1][-1]
    grid = np.arange(t0, t1 + 1e-9, grid_step)
    if grid[-1] < t1 - 1e-6:
        grid = np.append(grid, t1)
    acc, wsum = np.zeros_like(grid), np.zeros_like(grid)
    for c, v in zip(centres, values):
        inside = (grid >= c[0] - 1e-9) & (grid <= c[-1] + 1e-9)
        mid, half = (c[0] + c[-1]) / 2, max((c[-1] - c[0]) / 2, 1e-6)
        w = np.clip(1 - np.abs(grid - mid) / half, 1e-3, None) * inside
        acc += w * np.interp(grid, c, v)
        wsum += w
    return grid, acc / np.maximum(wsum, 1e-12)


class Predictor:
    """Chunk-level predictions for raw LLD matrices, batched across files.

    models: {('seq'|'rank', emo): (LSTMnet, (feat_mean, feat_std))}; label_norm: {emo: (mean, std)}.
    Checkpoints sharing feature statistics share one normalised chunk tensor and one forward each.
    """

    def __init__(self, models, label_norm, hop, device, max_len=20.0, window=10.0, overlap=5.0,
                 grid=0.5, max_chunks=4096):
        self.models, self.label_norm = dict(models), label_norm
        self.hop, self.device, self.m = hop, device, int(np.floor(1.0 / hop + 1e-6))  # 62 frames at 16 ms
        self.max_len, self.window, self.overlap, self.grid = max_len, window, overlap, grid
        self.max_windows = max(1, max_chunks // K)

    def set_feature_stats(self, mean, std):
        """Use one (mean, std) for every model (--feature-norm corpus)."""
        self.models = {k: (net, (mean, std)) for k, (net, _) in self.models.items()}

    @torch.inference_mode()
    def _forward(self, pieces):
        """pieces: list of raw (L, D) arrays -> {('seq'|'rank', emo): (N, 22) numpy, normalised units}."""
        groups = {}
        for key, (net, (mean, std)) in self.models.items():
            sk = (np.asarray(mean, np.float32).tobytes(), np.asarray(std, np.float32).tobytes())
            groups.setdefault(sk, ((mean, std), []))[1].append((key, net))
        out = {}
        for (mean, std), members in groups.values():
            for b in range(0, len(pieces), self.max_windows):
                normed = [normalize_feats(p, mean, std) for p in pieces[b:b + self.max_windows]]
                x, lengths = pad_batch(normed, min_len=self.m)
                chunks = dynamic_chunk_split(x.to(self.device), lengths, self.m, K)  # (N, 22, m, D)
                flat = chunks.reshape(-1, self.m, chunks.shape[-1])
                for key, net in members:
                    y = net(flat)[:, 0] if key[0] == 'seq' else net.chunk_scores(flat)
                    out.setdefault(key, []).append(y.reshape(-1, K).float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}

    def __call__(self, feats):
        """feats: list of raw (T_i, 130) LLD arrays -> list of result dicts (one per file)."""
        plan, pieces = [], []
        for f in feats:
            wins = make_windows(len(f), self.hop, self.max_len, self.window, self.overlap)
            plan.append((len(pieces), wins))
            pieces += [f[s:e] for s, e in wins]
        if not pieces:
            return []
        raw = self._forward(pieces)
        results = []
        for first, wins in plan:
            sl = slice(first, first + len(wins))
            cents = [chunk_centres(s, e - s, self.m, self.hop) for s, e in wins]
            r = {'n_windows': len(wins)}
            for (kind, emo) in self.models:
                if kind != 'seq':
                    continue
                mean, std = self.label_norm[emo]
                vals = raw[('seq', emo)][sl] * std + mean  # (n_windows, 22) on the 1-7 scale
                if len(wins) == 1:
                    times, curve = cents[0], vals[0]
                else:
                    times, curve = stitch(wins, cents, list(vals), self.grid)
                r[emo], r[f'{emo}_curve'], r['chunk_times'] = float(curve.mean()), curve, times
                if ('rank', emo) in raw:
                    g = raw[('rank', emo)][sl]
                    score = g[0] if len(wins) == 1 else stitch(wins, cents, list(g), self.grid)[1]
                    r[f'{emo}_rank_score'], r[f'{emo}_ranks'] = score, rank_desc_min(score)
            results.append(r)
        return results


# ----------------------------------------------------------------------------- inputs and outputs
def list_inputs(paths):
    """Files as given plus audio files found recursively in directories (sorted); errors for missing paths."""
    files, missing = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob('*') if q.is_file() and q.suffix.lower() in AUDIO_EXTS
                           and not any(part.startswith('.') for part in q.relative_to(p).parts))
            if not found:
                missing.append((p, f"{p}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTS))})"))
            files += found
        elif p.exists():
            files.append(p)
        else:
            missing.append((p, f"{p}: no such file or folder"))
    return files, missing


def check_writable(path, flag):
    """Fail before any work when an output path cannot be written (names the path and the flag)."""
    path = Path(path)
    target = path if flag == '--plot' else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target, prefix='.predict_write_test')
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise PredictError(f"{flag} {path}: cannot write there ({e.strerror or e}); choose a writable "
                           f"location, e.g. {flag} ./{path.name}") from None


def plot_name(path, used):
    name = Path(path).stem
    n, i = name, 1
    while n in used:
        n, i = f"{name}_{i}", i + 1
    used.add(n)
    return n + '.png'


COLORS = {'Act': '#d62728', 'Dom': '#2ca02c', 'Val': '#1f77b4'}
NAMES = {'Act': 'Arousal', 'Dom': 'Dominance', 'Val': 'Valence'}


def plot_file(signal, row, png, title=None, spans=None):
    """Waveform on top, chunk curves of the attributes over time below, utterance values as dashed lines.

    spans: optional [(t0, t1, label), ...] regions shaded and labelled on both panels (e.g. known segments).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    dur = len(signal) / SR
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(9, 5.4), sharex=True, gridspec_kw={'height_ratios': [1, 2.4]})
    # waveform: min/max envelope per pixel column so long files stay fast and readable
    nb = min(len(signal), 3000)
    if nb < len(signal):
        edges = np.linspace(0, len(signal), nb + 1).astype(int)
        tb, lo, hi = edges[:-1] / SR, np.minimum.reduceat(signal, edges[:-1]), np.maximum.reduceat(signal, edges[:-1])
    else:
        tb, lo, hi = np.arange(len(signal)) / SR, signal, signal
    ax0.fill_between(tb, lo, hi, color='0.35', lw=0.3)
    if nb >= len(signal):
        ax0.plot(tb, signal, color='0.35', lw=0.5)
    peak = max(float(np.abs(signal).max()), 1e-4)
    ax0.set_ylim(-1.1 * peak, 1.1 * peak)
    ax0.set_yticks([])
    ax0.set_ylabel('waveform')
    ax0.set_title(title or Path(row['file']).name, loc='left', fontsize=11, fontweight='bold')
    ax0.set_title(f"{dur:.2f} s" + (f", {row['n_windows']} windows" if row.get('n_windows', 1) > 1 else ''),
                  loc='right', fontsize=9, color='0.4')
    for k, (t0, t1, label) in enumerate(spans or []):
        for a in (ax0, ax1):
            a.axvspan(t0, t1, color='0.5', alpha=0.08 if k % 2 else 0.0, lw=0)
        ax0.text((t0 + t1) / 2, 1.08 * peak, label, ha='center', va='top', fontsize=9, color='0.15')
    times = np.asarray(row.get('chunk_times') if row.get('chunk_times') is not None else [], dtype=float)
    emos = [e for e in EMOS if row.get(e) is not None]
    curves = {e: np.asarray(row[f'{e}_curve']) for e in emos if row.get(f'{e}_curve') is not None}
    has_ranks = False
    for emo in emos:
        c = COLORS[emo]
        if emo in curves:
            ax1.plot(times, curves[emo], '-o', color=c, ms=3, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        else:  # utterance-level model (MSCR): a solid line per attribute
            ax1.plot([], [], '-', color=c, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        ax1.axhline(row[emo], color=c, ls='--' if emo in curves else '-', lw=1.1 if emo in curves else 2,
                    alpha=0.9)
        ranks = row.get(f'{emo}_ranks')
        if ranks is not None and len(ranks):
            has_ranks = True
            top = int(np.argmin(ranks))
            ax1.plot(times[top], curves[emo][top], marker='*', ms=13, color=c, mec='k', mew=0.6, zorder=5)
    label_y, prev = {}, -np.inf  # right-margin value labels, pushed apart so they never overlap
    for emo in sorted(emos, key=lambda e: row[e]):
        prev = label_y[emo] = max(row[emo], prev + 0.3)
    for emo in emos:
        ax1.annotate(f"{emo} {row[emo]:.2f}", xy=(1.0, label_y[emo]), xycoords=('axes fraction', 'data'),
                     xytext=(4, 0), textcoords='offset points', va='center', fontsize=9, color=COLORS[emo],
                     fontweight='bold', annotation_clip=False)
    lo_v = min([1.0] + [float(np.min(c)) for c in curves.values()] + [row[e] for e in emos])
    hi_v = max([7.0] + [float(np.max(c)) for c in curves.values()] + [row[e] for e in emos])
    ax1.set_ylim(lo_v - 0.15, hi_v + 0.15)
    ax1.axhline(4, color='0.6', lw=0.8, zorder=0)
    ax1.set_yticks(range(1, 8))
    ax1.set_yticklabels(['1 low', '2', '3', '4', '5', '6', '7 high'])
    ax1.set_ylabel('predicted emotion (1-7)')
    ax1.set_xlabel('time (s)', fontsize=9)
    ax1.set_xlim(0, max(dur, times.max() if len(times) else 0, 1e-3))
    ax1.grid(alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    if curves:
        handles.append(plt.Line2D([], [], color='0.3', ls='--', lw=1.1))
        labels.append('utterance value')
    if has_ranks:
        handles.append(plt.Line2D([], [], color='w', marker='*', ms=11, mfc='0.6', mec='k'))
        labels.append('rank-1 chunk (ranker)')
    ax1.legend(handles, labels, loc='lower left', bbox_to_anchor=(0, 1.0), ncol=len(labels), fontsize=8.5,
               frameon=False, handlelength=1.8, columnspacing=1.2, borderaxespad=0.2)
    ax1.text(0.0, -0.16, 'dots: one prediction per 1 s chunk, at the chunk centre' if curves else
             'utterance-level predictions (this model has no chunk curve)', transform=ax1.transAxes,
             fontsize=8, color='0.4')
    for a in (ax0, ax1):
        a.spines[['top', 'right']].set_visible(False)
    fig.tight_layout()
    fig.subplots_adjust(right=0.91)
    fd, tmp = tempfile.mkstemp(dir=Path(png).parent, prefix='.' + Path(png).name, suffix='.png')
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the PNG normal permissions
        os.replace(tmp, png)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def row_for_csv(r, emos, rankers, curves=True):
    out = {'file': r['file'], 'duration': r.get('duration')}
    for e in emos:
        out[e] = r.get(e)
    if curves:
        for e in emos:
            out[f'{e}_curve'] = r.get(f'{e}_curve')
        out['chunk_times'] = r.get('chunk_times')
    for e in emos:
        if e in rankers:
            out[f'{e}_ranks'] = r.get(f'{e}_ranks')
    out['n_windows'] = r.get('n_windows')
    if 'transcript' in r:
        out['transcript'] = r['transcript']
    out['error'] = r.get('error', '')
    for k, v in out.items():
        if isinstance(v, (np.ndarray, list)):
            v = np.asarray(v)
            out[k] = json.dumps([int(x) for x in v] if v.dtype.kind in 'iu' else [round(float(x), 4) for x in v])
        elif isinstance(v, float):
            out[k] = round(v, 4)
    return out


def to_jsonable(r):
    out = {}
    for k, v in r.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out


# ----------------------------------------------------------------------------- main
def build_parser():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('inputs', nargs='+', help='audio files and/or folders (searched recursively)')
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--pretrained', metavar='DIR',
                     help="root of a clone of the authors' repository (Chunk-Level-Emotion-Retrieval): uses its "
                          "NormTerm/, trained_seq2seq_model_v1.6/ and chunk_emotion_rankers/trained_ranker_model_v1.6/")
    src.add_argument('--checkpoint', '--checkpoint-dir', dest='checkpoint_dir', metavar='PATH',
                     help="your own models: a folder with LSTM_epoch*_EmoRankerSeq_<Emo>.pth.tar (newest per "
                          "attribute), one file (with one -emo), or a path with '{emo}'; default: the shipped demo "
                          "models in trained_seq2seq_model/. With --model mscr: an MSCR checkpoint file or folder "
                          "(default trained_mscr_model/)")
    ap.add_argument('--ranker-dir', metavar='DIR',
                    help='folder with *_<Emo>_ranker.pth.tar for --rankers (default: next to the models, else '
                         'chunk_emotion_rankers/trained_ranker_model/)')
    ap.add_argument('--norm-dir', metavar='DIR',
                    help='NormTerm folder of the models (default: DIR/NormTerm with --pretrained, else NormTerm/)')
    ap.add_argument('-emo', '--emo', default='all', help='Act, Dom, Val, a comma list, or all (default)')
    ap.add_argument('--rankers', action='store_true',
                    help='also run the chunk emotion rankers: per-chunk ranks (1 = most emotional chunk)')
    ap.add_argument('--model', choices=['seq2seq', 'mscr'], default='seq2seq',
                    help='seq2seq: method 1, audio only (default); mscr: audio-text MSCR model')
    txt = ap.add_mutually_exclusive_group()
    txt.add_argument('--text', help='transcript of a single input file (MSCR only)')
    txt.add_argument('--transcript', metavar='FILE',
                     help='transcript file (MSCR only): plain text for a single input, or a CSV with columns '
                          'file,text for many')
    ap.add_argument('--out', default='results.csv', help='CSV of per-file results (default results.csv)')
    ap.add_argument('--json', metavar='FILE', help='also write the results as JSON (for programs)')
    ap.add_argument('--plot', metavar='DIR', help='write one PNG per file (waveform + emotion curves) into DIR')
    ap.add_argument('--feature-norm', choices=['published', 'train', 'corpus'], default=None,
                    help="feature z-norm statistics: 'published' = the NormTerm of --pretrained (default there), "
                         "'train' = the NormTerm that came with your checkpoints (--norm-dir; default otherwise), "
                         "'corpus' = mean/std over the files given (e.g. for a different recording setup). "
                         "Labels are always de-normalised with the models' NormTerm")
    ap.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    ap.add_argument('--batch', type=int, default=16, help='files per batch (one forward pass per model per batch)')
    ap.add_argument('--max-len', type=float, default=20.0,
                    help='files up to this many seconds are one window (default 20)')
    ap.add_argument('--window', type=float, default=10.0, help='window length in s for longer files (default 10)')
    ap.add_argument('--overlap', type=float, default=5.0, help='minimum window overlap in s (default 5)')
    ap.add_argument('--grid', type=float, default=0.5, help='time step in s of the stitched curve of long files')
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args):
    t_start = time.time()
    if args.batch < 1:
        raise PredictError('--batch must be >= 1')
    if not (0 <= args.overlap < args.window <= args.max_len):
        raise PredictError(f'need 0 <= --overlap ({args.overlap}) < --window ({args.window}) <= --max-len '
                           f'({args.max_len})')
    device = get_device(args.device)
    # fail fast on outputs, inputs and models before any work
    check_writable(args.out, '--out')
    if args.json:
        check_writable(args.json, '--json')
    if args.plot:
        check_writable(args.plot, '--plot')
    files, missing = list_inputs(args.inputs)
    if not files:
        raise PredictError('nothing to do: ' + '; '.join(m for _, m in missing))
    engine = MSCREngine(args, files, device) if args.model == 'mscr' else Seq2SeqEngine(args, files, device)
    from tqdm import tqdm

    rows, interrupted, used_names = [], False, set()
    bar = tqdm(total=len(files), desc='predict', unit='file')
    try:
        for b in range(0, len(files), args.batch):
            group = list(enumerate(files))[b:b + args.batch]
            for p, sig, r in engine(group):
                if sig is not None and args.plot:
                    png = Path(args.plot) / plot_name(p, used_names)
                    try:
                        plot_file(sig, r, png)
                        r['plot'] = str(png)
                    except Exception as e:  # a plot failure must not lose the predictions
                        r['plot_error'] = f"{png}: plot failed ({type(e).__name__}: {e})"
                        print(f"warning: {r['plot_error']}", file=sys.stderr)
                rows.append(r)
            bar.update(len(group))
    except KeyboardInterrupt:
        print(f"\ninterrupted: writing the {len(rows)} results so far (no work lost)", file=sys.stderr)
        interrupted = True
    finally:
        bar.close()
        engine.close()
        order = {str(p): i for i, p in enumerate(files)}
        rows.sort(key=lambda r: order.get(r['file'], 0))
        rows = [{'file': str(p), 'error': m} for p, m in missing] + rows
        write_outputs(rows, args, engine)

    emos = engine.emos
    n_ok = sum(1 for r in rows if not r.get('error'))
    errs = [r for r in rows if r.get('error')]
    if n_ok and len(rows) <= 20:
        for r in rows:
            if not r.get('error'):
                print(f"{r['file']}: " + '  '.join(f"{e} {r[e]:.2f}" for e in emos) + f"  ({r['duration']:.2f} s)")
    print(f"{n_ok}/{len(rows)} files predicted in {time.time() - t_start:.1f} s -> {args.out}"
          + (f", {args.json}" if args.json else '') + (f", plots in {args.plot}" if args.plot else ''))
    if errs:
        print(f"{len(errs)} file(s) failed (listed with the reason; also in the 'error' column of {args.out}):",
              file=sys.stderr)
        for r in errs:
            print(f"  {r['error']}", file=sys.stderr)
    if interrupted:
        return 130
    return 0 if n_ok else 1


def _failure(path, e):
    return str(e) if isinstance(e, AudioError) else f"{path}: {type(e).__name__}: {e}"


class Seq2SeqEngine:
    """Method 1: LLDs -> Seq2Seq chunk curves (+ ranker ranks), one forward per model per batch of files."""

    def __init__(self, args, files, device):
        if args.text or args.transcript:
            print('note: --text/--transcript are only used by --model mscr; the Seq2Seq models are audio-only')
        self.cfg = cfg = resolve_models(args)
        self.norm = norm = resolve_norm(args, cfg)
        self.emos, self.rankers = cfg['emos'], cfg['rankers']
        models = {('seq', e): (load_lstm(p, 1, device), norm['feat'][p]) for e, p in cfg['seq2seq'].items()}
        models.update({('rank', e): (load_lstm(p, 2, device), norm['feat'][p]) for e, p in cfg['rankers'].items()})
        print(f"models: {cfg['source']} ({', '.join(f'{e}: {p.name}' for e, p in cfg['seq2seq'].items())}"
              f"{'; rankers' if cfg['rankers'] else ''}); feature norm: {norm['scope']}; labels: "
              f"{norm['label_source']}; LLD preset {norm['preset']}; device {device}")
        from features import LLDExtractor
        self.ext = LLDExtractor(preset=norm['preset'], hop=norm['hop'])
        self.pred = Predictor(models, norm['labels'], self.ext.hop, device, args.max_len, args.window, args.overlap,
                              args.grid)
        self.cache, self.failed = None, {}
        if norm['scope'] == 'corpus':
            self._corpus_stats(files)

    def _extract(self, path):
        sig = load_audio(path, SR)
        try:
            f = self.ext(sig, SR)
        except ValueError as e:
            raise AudioError(f"{path}: {e}; the clip is too short to analyse") from None
        return sig, f

    def _corpus_stats(self, files):
        """--feature-norm corpus, pass 1: statistics over all given files (features cached on disk)."""
        from tqdm import tqdm
        self.cache = Path(tempfile.mkdtemp(prefix='predict_feats_'))
        s1, s2, n = np.zeros(130), np.zeros(130), np.zeros(130)
        for i, p in enumerate(tqdm(files, desc='corpus statistics', unit='file')):
            try:
                _, f = self._extract(p)
            except Exception as e:
                self.failed[str(p)] = _failure(p, e)
                continue
            np.save(self.cache / f'{i}.npy', f)
            ok = np.isfinite(f)
            f64 = np.where(ok, f, 0).astype(np.float64)
            s1, s2, n = s1 + f64.sum(0), s2 + (f64 ** 2).sum(0), n + ok.sum(0)
        mean = s1 / np.maximum(n, 1)
        std = np.sqrt(np.maximum(s2 / np.maximum(n, 1) - mean ** 2, 0))
        self.pred.set_feature_stats(mean, np.where(std < 1e-8, 1e-8, std))

    def __call__(self, group):
        """[(index, path), ...] -> [(path, signal | None, row), ...]."""
        out, ok, feats, sigs = [], [], [], []
        for i, p in group:
            if str(p) in self.failed:
                out.append((p, None, {'file': str(p), 'error': self.failed[str(p)]}))
                continue
            try:  # the signal is needed for the duration and the plot
                sig, f = (load_audio(p, SR), np.load(self.cache / f'{i}.npy')) if self.cache else self._extract(p)
            except Exception as e:
                out.append((p, None, {'file': str(p), 'error': _failure(p, e)}))
                continue
            ok.append(p)
            sigs.append(sig)
            feats.append(f)
        try:
            results = self.pred(feats)
        except Exception as e:  # e.g. out of memory: report the batch, keep going
            why = f"prediction failed ({type(e).__name__}: {str(e)[:200]}); try --batch 1"
            return out + [(p, None, {'file': str(p), 'error': f"{p}: {why}"}) for p in ok]
        for p, sig, r in zip(ok, sigs, results):
            r.update(file=str(p), duration=round(len(sig) / SR, 3), error='')
            out.append((p, sig, r))
        return out

    def close(self):
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None

    def meta(self):
        norm, cfg, pred = self.norm, self.cfg, self.pred
        return {'model': 'seq2seq', 'models': {e: str(p) for e, p in cfg['seq2seq'].items()},
                'rankers': {e: str(p) for e, p in cfg['rankers'].items()},
                'feature_norm': norm['scope'], 'label_norm': {e: list(v) for e, v in norm['labels'].items()},
                'features': f"LLD {norm['preset']} preset", 'hop': pred.hop, 'chunk_frames': pred.m, 'chunks': K,
                'max_len': pred.max_len, 'window': pred.window, 'overlap': pred.overlap, 'grid': pred.grid,
                'scale': '1-7', 'rank_1': 'most emotional chunk (highest attribute)'}


class MSCREngine:
    """Method 2 (audio + text): utterance-level Act/Dom/Val from an MSCR checkpoint, one file at a time.

    Text per file: --text (one input file), --transcript FILE (plain text for one input, or a CSV with
    columns file,text), else a <name>.txt next to the audio; without any, the text modality is absent
    (the model sees only its global text token, the missing-modality case MSCR is trained to resist)."""

    def __init__(self, args, files, device):
        import mscr
        from features import LLDExtractor, TextEncoder, Wav2Vec2Extractor
        self.mscr, self.device, self.emos, self.rankers = mscr, device, list(EMOS), {}
        if args.rankers:
            print('note: --rankers applies to --model seq2seq only')
        spec = Path(args.checkpoint_dir).expanduser() if args.checkpoint_dir else ROOT / 'trained_mscr_model'
        if args.pretrained:
            raise PredictError('--pretrained holds the authors\' method-1 models; for --model mscr pass your MSCR '
                               'checkpoint with --checkpoint FILE (from python training.py --model mscr)')
        if spec.is_dir():
            hits = sorted(spec.glob('*.pth.tar'), key=lambda q: q.stat().st_mtime)
            hits = [h for h in hits if read_meta(h).get('model') == 'mscr']
            if not hits:
                raise PredictError(f"no MSCR checkpoint in {spec}; train one (python training.py --model mscr) or "
                                   f"pass --checkpoint FILE")
            spec = hits[-1]
        self.ckpt = spec
        try:
            self.model, self.m = mscr.load_mscr(spec, device)
        except RuntimeError as e:
            raise PredictError(f"{spec}: does not match its .meta.json config ({str(e).splitlines()[0][:300]}); "
                               f"pass the checkpoint written together with that metadata") from None
        meta = self.m
        kind = meta.get('audio_feature', 'wav2vec2')
        if kind == 'lld':
            preset = meta.get('audio_preset') or 'published'
            self.ext = LLDExtractor(preset, None if preset == 'published' else meta.get('hop'))
            self.audio = lambda sig: self.ext(sig, SR)
        else:
            w2v = Wav2Vec2Extractor(meta.get('audio_model') or 'facebook/wav2vec2-large-robust', device)
            self.audio = lambda sig: w2v([sig])[0]
        self.texts = self._texts(args, files)
        self.enc = TextEncoder(meta.get('text_model'), device) if any(self.texts.values()) else None
        print(f"model: MSCR {spec} (audio {kind}, text {meta.get('text_model') or 'default MiniLM'}); "
              f"{sum(bool(t) for t in self.texts.values())}/{len(files)} files with a transcript; device {device}")

    @staticmethod
    def _texts(args, files):
        texts = {str(p): None for p in files}
        if args.text is not None:
            if len(files) != 1:
                raise PredictError(f'--text gives one transcript but {len(files)} files were given; use --transcript '
                                   f'CSV (columns file,text) or <name>.txt files next to the audio')
            texts[str(files[0])] = args.text
            return texts
        if args.transcript:
            tp = Path(args.transcript)
            if not tp.is_file():
                raise PredictError(f'--transcript {tp}: no such file')
            if tp.suffix.lower() == '.csv':
                import pandas as pd
                df = pd.read_csv(tp, dtype=str, keep_default_na=False)
                if not {'file', 'text'} <= set(df.columns):
                    raise PredictError(f"--transcript {tp}: needs columns 'file' and 'text' (found {list(df.columns)})")
                by = {}
                for f, t in zip(df['file'], df['text']):
                    by[f] = by[Path(f).name] = by[Path(f).stem] = t
                for p in files:
                    texts[str(p)] = by.get(str(p), by.get(Path(p).name, by.get(Path(p).stem)))
            elif len(files) == 1:
                texts[str(files[0])] = tp.read_text(encoding='utf-8', errors='replace')
            else:
                raise PredictError(f'--transcript {tp}: a plain text file is one transcript but {len(files)} files '
                                   f'were given; use a CSV with columns file,text')
            return texts
        for p in files:  # sidecar transcripts
            side = Path(p).with_suffix('.txt')
            if side.is_file():
                texts[str(p)] = side.read_text(encoding='utf-8', errors='replace')
        return texts

    def __call__(self, group):
        out = []
        for _, p in group:
            try:
                sig = load_audio(p, SR)
                frames = self.audio(sig)
                text = (self.texts.get(str(p)) or '').strip()
                words = [w for w in text.split() if any(ch.isalnum() for ch in w)]
                tokens = self.enc([text])[0] if words else None
                pred = self.mscr.predict_utterance(self.model, self.m, frames, tokens, len(words) or None,
                                                   self.device)
            except Exception as e:
                out.append((p, None, {'file': str(p), 'error': _failure(p, e)}))
                continue
            out.append((p, sig, {'file': str(p), 'duration': round(len(sig) / SR, 3), **pred, 'n_windows': 1,
                                 'transcript': text if words else '', 'error': ''}))
        return out

    def close(self):
        pass

    def meta(self):
        return {'model': 'mscr', 'checkpoint': str(self.ckpt), 'audio_feature': self.m.get('audio_feature'),
                'text_model': self.m.get('text_model'), 'label_norm': self.m.get('label_norm'), 'scale': '1-7',
                'text': 'no transcript: text modality absent (global token only)'}


def write_outputs(rows, args, engine):
    import csv
    import io
    table = [row_for_csv(r, engine.emos, engine.rankers, curves=isinstance(engine, Seq2SeqEngine)) for r in rows]
    if not table:
        return
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for t in table for k in t))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(table)
    atomic_write_text(args.out, buf.getvalue())
    if args.json:
        atomic_write_text(args.json, json.dumps({'meta': engine.meta(), 'results': [to_jsonable(r) for r in rows]},
                                                indent=1, allow_nan=False) + '\n')


if __name__ == '__main__':
    sys.exit(main())
