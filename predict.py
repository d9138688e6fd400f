"""Emotion of any recording: utterance-level Act/Dom/Val on the 1-7 scale and chunk-level emotion curves.

  python predict.py speech.wav --pretrained ../Chunk-Level-Emotion-Retrieval --plot plots/
  python predict.py my_recordings/ --out results.csv --json results.json --checkpoint my_run/ --rankers
  python predict.py talk.wav --model mscr --checkpoint trained_mscr_model/MSCR_....pth.tar --text "..."

Models: `--pretrained DIR` = a clone of the authors' repository (its v1.6 models and NormTerm, checked by
SHA-256); `--checkpoint DIR|FILE` = your own training.py output (its .meta.json record holds the
normalisation statistics; a model without one needs --norm DIR); neither = the demo models of the
repository, trained on synthetic speech (announced on the console and in the outputs). Each model is
checked to be the attribute asked for (-emo) and to match the LLDs computed here (docs/pretrained.md).
`--model mscr` runs an audio-text MSCR checkpoint instead (utterance level only; transcript from --text,
--transcript or a <name>.txt next to the audio; without one the text modality is treated as missing).
Feature normalisation (--feature-norm, norm.py): default what the model was trained with; 'published' /
'train' the statistics of the release / of the model's training corpus; 'corpus' the statistics of the
files given; 'speaker' per-speaker statistics of the files given (speaker = the sub-folder of each file,
or --speakers CSV with columns file,speaker). Statistics from under 30 s of audio are flagged.
Labels are mapped back with the model's label statistics (or --norm DIR).

Pipeline per window (docs/method1.md): LLDs of the model's preset -> z-norm, NaN -> 0, clip [-3, 3] -> pad
to >= 62 frames -> 22 chunks of 62 frames (1 s) -> one Seq2Seq prediction per chunk (the curve) ->
utterance = mean of the 22 chunks -> de-normalised. Values outside the 1-7 scale are clipped and counted
per file (column n_clipped); --no-clip gives the raw model outputs. Any format soundfile reads, any
sample rate; channels are mixed to mono (a silent channel is left out), resampled to 16 kHz. Clips
shorter than 1 s are zero-padded to 62 frames, so their 22 chunks are identical and the curve is flat.

Input checks (column `warning`, summary at the end; see audio.py): no speech found, clipped audio, very
low level, a silent channel, a file shorter than its header claims.

Long files: a file up to --max-seconds (20) is one window, as in the published code. A longer file is
cut into windows of --window seconds (10) that overlap by at least --overlap seconds (5), spread evenly
from start to end. The file's curve is sampled every --grid seconds (0.5) between the first and last
chunk centre by linear interpolation inside each window, blended across windows with triangular weights.
The utterance value of a long file is the time-average of that curve. With --rankers the ranker score of
each chunk (g = f1 - f0) is stitched the same way and ranked over the whole curve (rank 1 = most emotional).

Batch mode: directories are searched recursively for audio files; files are processed -batch at a time
with one forward pass per model per batch. A file that fails is listed with its reason at the end and in
the CSV's `error` column; the rest are processed. The exit code is 1 when every file failed, 2 on a setup
error (models, normalisation, output paths).
"""
import csv
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import checkpoints as C
import norm as N
from audio import SR, AudioError, load_audio, speech_note
from cli import nonneg_float, parser, positive_float, positive_int, run_script
from errors import ToolkitError
from features import LLDExtractor
from utils import (
    EMOS,
    atomic_write,
    atomic_write_text,
    chunk_starts,
    dynamic_chunk_split,
    get_device,
    normalize_feats,
    pad_batch,
    parse_emos,
    rank_desc_min,
)

K = 22  # chunks per utterance (C = 11 chunks x scaling factor n = 2)
AUDIO_EXTS = {'.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3', '.aiff', '.aif', '.au', '.caf', '.w64', '.rf64'}
SCALE = (1.0, 7.0)


# ----------------------------------------------------------------------------- models and normalisation
def find_models(args):
    """{('seq'|'rank', emo): Checkpoint}, all checked against -emo and one LLD preset."""
    emos = parse_emos(args.emo)
    spec = args.checkpoint
    out = {('seq', e): C.resolve('seq2seq', e, args.pretrained, spec, args.norm, 30, 128) for e in emos}
    if args.rankers:
        rk_spec = args.ranker_dir or spec
        if spec and not args.ranker_dir and not Path(spec).is_dir():
            raise ToolkitError(f'--rankers with --checkpoint {spec} (a file): pass the rankers with --ranker-dir DIR')
        for e in emos:
            out[('rank', e)] = C.resolve('ranker', e, None if args.ranker_dir else args.pretrained, rk_spec,
                                         args.norm, 20, 128)
    first = out[('seq', emos[0])].features
    preset, hop = first.get('preset') or 'published', first.get('hop') or 0.016
    for (kind, e), ck in out.items():
        ck.check('seq2seq' if kind == 'seq' else 'ranker', e, preset, hop, 130)
    return out, emos, preset, hop


def model_norms(args, models):
    """(scope, {key: FeatNorm or None}, {emo: (mean, std)}, {emo: label record}) for the models."""
    feat, scopes = {}, set()
    for key, ck in models.items():
        scope, feat[key] = N.model_feat_stats(ck, args.feature_norm, args.norm)
        scopes.add(scope)
    if len(scopes) > 1:
        raise ToolkitError(f'the models were trained with different normalisation scopes ({sorted(scopes)}); pass '
                           f'--feature-norm to use one for all')
    labels, lrec = {}, {}
    for (kind, e), ck in models.items():
        if kind == 'seq':
            labels[e], lrec[e] = N.model_label_stats(ck, e, args.norm)
    return scopes.pop(), feat, labels, lrec


def file_table(path, column, files, flag):
    """A CSV with columns file,<column> -> {str(file): value or None}; files match by path, name or stem."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {'file', column} <= set(df.columns):
        raise ToolkitError(f"{flag} {path}: needs columns 'file' and '{column}' (found {list(df.columns)})")
    by = {}
    for f, v in zip(df['file'], df[column]):
        by[f] = by[Path(f).name] = by[Path(f).stem] = v
    return {str(p): by.get(str(p), by.get(Path(p).name, by.get(Path(p).stem))) for p in files}


def speaker_of(files, inputs, csv_path):
    """file -> speaker: a --speakers CSV (file,speaker; file matched by path, name or stem), else the sub-folder
    of the input folder that holds the file (files given directly: the parent folder's name)."""
    if csv_path:
        out = file_table(csv_path, 'speaker', files, '--speakers')
        missing = [p for p, s in out.items() if not s]
        if missing:
            raise ToolkitError(f'--speakers {csv_path}: no speaker for {len(missing)} file(s), e.g. {missing[0]}')
        return out
    roots = [Path(i) for i in inputs if Path(i).is_dir()]
    out = {}
    for p in files:
        root = next((r for r in roots if r in p.parents), None)
        rel = p.relative_to(root).parts if root else ()
        out[str(p)] = rel[0] if len(rel) > 1 else p.parent.name
    return out


# ----------------------------------------------------------------------------- windows and stitching
def make_windows(T, hop, max_len=20.0, window=10.0, overlap=5.0):
    """Frame ranges [(start, end), ...]: one window up to max_len seconds (--max-seconds), else overlapping
    windows."""
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

    models: {('seq'|'rank', emo): (LSTMnet, (feat_mean, feat_std) or None)}; label_norm: {emo: (mean, std)}.
    Checkpoints sharing feature statistics share one normalised chunk tensor and one forward each; statistics
    passed to a call (corpus/speaker normalisation) replace the models' own for that call.
    """

    def __init__(self, models, label_norm, hop, device, max_len=20.0, window=10.0, overlap=5.0,
                 grid=0.5, max_chunks=4096):
        self.models, self.label_norm = dict(models), label_norm
        self.hop, self.device, self.m = hop, device, int(np.floor(1.0 / hop + 1e-6))  # 62 frames at 16 ms
        self.max_len, self.window, self.overlap, self.grid = max_len, window, overlap, grid
        self.max_windows = max(1, max_chunks // K)

    @torch.inference_mode()
    def _forward(self, pieces, stats=None):
        """pieces: list of raw (L, D) arrays -> {('seq'|'rank', emo): (N, 22) numpy, normalised units}."""
        groups = {}
        for key, (net, own) in self.models.items():
            mean, std = stats or own
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

    def __call__(self, feats, stats=None):
        """feats: list of raw (T_i, 130) LLD arrays -> list of result dicts (one per file)."""
        plan, pieces = [], []
        for f in feats:
            wins = make_windows(len(f), self.hop, self.max_len, self.window, self.overlap)
            plan.append((len(pieces), wins))
            pieces += [f[s:e] for s, e in wins]
        if not pieces:
            return []
        raw = self._forward(pieces, stats)
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
        raise ToolkitError(f"{flag} {path}: cannot write there ({e.strerror or e}); choose a writable "
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

COLORS = {'Act': '#d62728', 'Dom': '#2ca02c', 'Val': '#1f77b4'}
NAMES = {'Act': 'Arousal', 'Dom': 'Dominance', 'Val': 'Valence'}


def _plot_waveform(ax0, signal, row, title, spans):
    """Waveform panel: min/max envelope per pixel column so long files stay fast and readable."""
    dur = len(signal) / SR
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
    for t0, t1, label in spans or []:
        ax0.text((t0 + t1) / 2, 1.08 * peak, label, ha='center', va='top', fontsize=9, color='0.15')


def _plot_curves(ax1, row, times):
    """Curves panel: chunk curves, utterance values (dashed), rank-1 chunks; -> (curves, has_ranks)."""
    emos = [e for e in EMOS if row.get(e) is not None]
    curves = {e: np.asarray(row[f'{e}_curve']) for e in emos if row.get(f'{e}_curve') is not None}
    has_ranks = False
    for emo in emos:
        c = COLORS[emo]
        if emo in curves:
            ax1.plot(times, curves[emo], '-o', color=c, ms=3, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        else:  # utterance-level model (MSCR): a solid line per attribute
            ax1.plot([], [], '-', color=c, lw=1.8, label=f"{NAMES[emo]} ({emo})")
        ax1.axhline(row[emo], color=c, ls='--' if emo in curves else '-', lw=1.1 if emo in curves else 2, alpha=0.9)
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
    return curves, has_ranks


def _plot_axes(ax1, plt, dur, times, curves, has_ranks):
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


def plot_file(signal, row, png, title=None, spans=None):
    """Waveform on top, chunk curves of the attributes over time below, utterance values as dashed lines.

    spans: optional [(t0, t1, label), ...] regions shaded and labelled on both panels (e.g. known segments).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(9, 5.4), sharex=True, gridspec_kw={'height_ratios': [1, 2.4]})
    try:
        _plot_waveform(ax0, signal, row, title, spans)
        for k, (t0, t1, _) in enumerate(spans or []):
            for a in (ax0, ax1):
                a.axvspan(t0, t1, color='0.5', alpha=0.08 if k % 2 else 0.0, lw=0)
        times = np.asarray(row.get('chunk_times') if row.get('chunk_times') is not None else [], dtype=float)
        curves, has_ranks = _plot_curves(ax1, row, times)
        _plot_axes(ax1, plt, len(signal) / SR, times, curves, has_ranks)
        for a in (ax0, ax1):
            a.spines[['top', 'right']].set_visible(False)
        fig.tight_layout()
        fig.subplots_adjust(right=0.91)
        atomic_write(png, lambda f: fig.savefig(f, dpi=110, format='png', metadata={'Software': None}))
    finally:
        plt.close(fig)


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
    for k in ('n_clipped', 'n_out_of_scale', 'warning'):
        if k in r:
            out[k] = r[k]
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


def _failure(path, e):
    return str(e) if isinstance(e, ToolkitError) else f"{path}: {type(e).__name__}: {e}"


def finish_row(r, emos, notes, clip=True):
    """Scale check (values outside 1-7 clipped unless clip=False, counted in n_clipped) and the warning column."""
    lo, hi = SCALE
    n = 0
    for e in emos:
        for key in (e, f'{e}_curve'):
            v = r.get(key)
            if v is None:
                continue
            arr = np.asarray(v, dtype=np.float64)
            n += int(np.sum((arr < lo) | (arr > hi)))
            if clip:
                r[key] = float(np.clip(arr, lo, hi)) if arr.ndim == 0 else np.clip(arr, lo, hi)
    r['n_clipped' if clip else 'n_out_of_scale'] = n
    r['warning'] = '; '.join(x for x in notes if x)
    return r


class Seq2SeqEngine:
    """Method 1: LLDs -> Seq2Seq chunk curves (+ ranker ranks), one forward per model per batch of files."""

    def __init__(self, args, files, device):
        if args.text or args.transcript:
            print('note: --text/--transcript are only used by --model mscr; the Seq2Seq models are audio-only')
        self.models, self.emos, preset, hop = find_models(args)
        self.rankers = {e for k, e in self.models if k == 'rank'}
        self.scope, feat, labels, self.lrec = model_norms(args, self.models)
        self.ext = LLDExtractor(preset, None if preset == 'published' else hop)
        nets = {key: (C.load_model(ck, device), None if feat[key] is None else (feat[key].mean, feat[key].std))
                for key, ck in self.models.items()}
        self.pred = Predictor(nets, labels, self.ext.hop, device, args.max_seconds, args.window, args.overlap,
                              args.grid)
        self.feat_desc = next((f.describe() for f in feat.values() if f is not None), f'{self.scope} (files given)')
        self.clip, self.cache, self.failed, self.notes, self.file_stats = not args.no_clip, None, {}, {}, {}
        self.stats_warning = None
        C.announce(self.models.values())
        print(f"models ({', '.join(sorted({ck.source for ck in self.models.values()}))}): "
              f"{'; '.join(f'{k} {e}: {C.display_path(ck.path)}' for (k, e), ck in self.models.items())}\n"
              f"feature norm: {self.feat_desc}; LLD preset {preset}; device {device}")
        if self.scope in ('corpus', 'speaker'):
            self._data_stats(args, files)

    def _extract(self, path, notes=None):
        sig = load_audio(path, SR, notes=notes)
        try:
            f = self.ext(sig, SR)
        except ValueError as e:
            raise AudioError(f"{path}: {e}; the clip is too short to analyse") from None
        return sig, f

    def _data_stats(self, args, files):
        """--feature-norm corpus|speaker, pass 1: statistics over the files given (features cached on disk)."""
        group = speaker_of(files, args.inputs, args.speakers) if self.scope == 'speaker' else \
            {str(p): 'all files' for p in files}
        self.cache = Path(tempfile.mkdtemp(prefix='predict_feats_'))
        acc = {}
        for i, p in enumerate(tqdm(files, desc=f'{self.scope} statistics', unit='file')):
            notes = []
            try:
                _, f = self._extract(p, notes)
            except Exception as e:
                self.failed[str(p)] = _failure(p, e)
                continue
            self.notes[str(p)] = notes
            np.save(self.cache / f'{i}.npy', f)
            acc.setdefault(group[str(p)], N.RunningStats(f.shape[1])).update(f)
        stats = {g: (rs.mean, np.maximum(rs.std, 1e-8)) for g, rs in acc.items()}
        self.file_stats = {p: stats[g] for p, g in group.items() if g in stats}
        warnings = [N.warn_little_audio(rs.frames * self.ext.hop, f'{self.scope} ({g})') for g, rs in acc.items()]
        self.stats_warning = '; '.join(w for w in warnings if w) or None
        self.feat_desc = f'{self.scope} ({len(stats)} group(s) of the files given)'

    def _load(self, i, p):
        if self.cache is not None:
            return load_audio(p, SR), np.load(self.cache / f'{i}.npy'), self.notes.get(str(p), [])
        notes = []
        sig, f = self._extract(p, notes)
        return sig, f, notes

    def __call__(self, group):
        """[(index, path), ...] -> [(path, signal | None, row), ...]."""
        out, ok = [], []
        for i, p in group:
            if str(p) in self.failed:
                out.append((p, None, {'file': str(p), 'error': self.failed[str(p)]}))
                continue
            try:  # the signal is needed for the duration and the plot
                sig, f, notes = self._load(i, p)
            except Exception as e:
                out.append((p, None, {'file': str(p), 'error': _failure(p, e)}))
                continue
            ok.append((p, sig, f, notes + [speech_note(f, self.ext.feature_names, self.ext.hop)]))
        by_stats = {}
        for item in ok:
            st = self.file_stats.get(str(item[0]))
            by_stats.setdefault(None if st is None else id(st), (st, []))[1].append(item)
        for st, items in by_stats.values():
            try:
                results = self.pred([f for _, _, f, _ in items], st)
            except Exception as e:  # e.g. out of memory: report the batch, keep going
                why = f"prediction failed ({type(e).__name__}: {str(e)[:200]}); try -batch 1"
                out += [(p, None, {'file': str(p), 'error': f"{p}: {why}"}) for p, *_ in items]
                continue
            for (p, sig, _, notes), r in zip(items, results):
                r.update(file=str(p), duration=round(len(sig) / SR, 3), error='')
                out.append((p, sig, finish_row(r, self.emos, notes, self.clip)))
        return out

    def close(self):
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None

    def provenance(self):
        """Columns naming the models, their checksums and the normalisation (every row of the CSV)."""
        src = sorted({ck.source for ck in self.models.values()})
        return {'model_source': ', '.join(f'demo ({C.DEMO_NOTE})' if s == 'demo' else s for s in src),
                'models': '; '.join(f'{k} {e}: {C.display_path(ck.path)}' for (k, e), ck in self.models.items()),
                'model_sha256': '; '.join(f'{k} {e}: {ck.sha256}' for (k, e), ck in self.models.items()),
                'normalisation': f'features: {self.feat_desc}; labels: ' + ', '.join(
                    f'{e} {r["scope"]} ({r["source"]})' for e, r in self.lrec.items())}

    def meta(self):
        pred = self.pred
        return {'model': 'seq2seq', **self.provenance(),
                'records': {f'{k} {e}': ck.provenance() for (k, e), ck in self.models.items()},
                'feature_norm': self.scope, 'feature_norm_warning': self.stats_warning,
                'label_norm': {e: list(v) for e, v in pred.label_norm.items()},
                'features': f"LLD {self.ext.preset} preset", 'hop': pred.hop, 'chunk_frames': pred.m, 'chunks': K,
                'max_seconds': pred.max_len, 'window': pred.window, 'overlap': pred.overlap, 'grid': pred.grid,
                'scale': '1-7', 'clipped': self.clip, 'rank_1': 'most emotional chunk (highest attribute)'}


class MSCREngine:
    """Method 2 (audio + text): utterance-level Act/Dom/Val from an MSCR checkpoint, one file at a time.

    Text per file: --text (one input file), --transcript FILE (plain text for one input, or a CSV with
    columns file,text), else a <name>.txt next to the audio; without any, the text modality is absent
    (the model sees only its global text token, the missing-modality case MSCR is trained to resist)."""

    def __init__(self, args, files, device):
        import mscr
        from features import TextEncoder, Wav2Vec2Extractor
        self.mscr, self.device, self.emos, self.rankers = mscr, device, list(EMOS), {}
        self.clip = not args.no_clip
        if args.rankers:
            print('note: --rankers applies to --model seq2seq only')
        spec = Path(args.checkpoint).expanduser() if args.checkpoint else C.REPO / 'trained_mscr_model'
        if args.pretrained:
            raise ToolkitError('--pretrained holds the authors\' method-1 models; for --model mscr pass your MSCR '
                               'checkpoint with --checkpoint FILE (from python training.py --model mscr)')
        if spec.is_dir():
            hits = sorted(spec.glob('*.pth.tar'), key=lambda q: q.stat().st_mtime)
            hits = [h for h in hits if C.read_record(h).get('model') == 'mscr']
            if not hits:
                raise ToolkitError(f"no MSCR checkpoint in {spec}; train one (python training.py --model mscr) or "
                                   f"pass --checkpoint FILE")
            spec = hits[-1]
        self.ckpt = spec
        try:
            self.model, self.m = mscr.load_mscr(spec, device)
        except RuntimeError as e:
            raise ToolkitError(f"{spec}: does not match its .meta.json config ({str(e).splitlines()[0][:300]}); "
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
                raise ToolkitError(f'--text gives one transcript but {len(files)} files were given; use --transcript '
                                   f'CSV (columns file,text) or <name>.txt files next to the audio')
            texts[str(files[0])] = args.text
            return texts
        if args.transcript:
            tp = Path(args.transcript)
            if not tp.is_file():
                raise ToolkitError(f'--transcript {tp}: no such file')
            if tp.suffix.lower() == '.csv':
                texts.update(file_table(tp, 'text', files, '--transcript'))
            elif len(files) == 1:
                texts[str(files[0])] = tp.read_text(encoding='utf-8', errors='replace')
            else:
                raise ToolkitError(f'--transcript {tp}: a plain text file is one transcript but {len(files)} files '
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
            notes = []
            try:
                sig = load_audio(p, SR, notes=notes)
                frames = self.audio(sig)
                text = (self.texts.get(str(p)) or '').strip()
                words = [w for w in text.split() if any(ch.isalnum() for ch in w)]
                tokens = self.enc([text])[0] if words else None
                pred = self.mscr.predict_utterance(self.model, self.m, frames, tokens, len(words) or None,
                                                   self.device)
            except Exception as e:
                out.append((p, None, {'file': str(p), 'error': _failure(p, e)}))
                continue
            row = {'file': str(p), 'duration': round(len(sig) / SR, 3), **pred, 'n_windows': 1,
                   'transcript': text if words else '', 'error': ''}
            out.append((p, sig, finish_row(row, self.emos, notes, self.clip)))
        return out

    def close(self):
        pass

    def provenance(self):
        return {'model_source': 'own', 'models': C.display_path(self.ckpt), 'model_sha256': C.sha256_file(self.ckpt),
                'normalisation': f"features: {self.m.get('feature_norm')}; labels: training statistics"}

    def meta(self):
        return {'model': 'mscr', **self.provenance(), 'clipped': self.clip, 'audio_feature': self.m.get('audio_feature'),
                'text_model': self.m.get('text_model'), 'label_norm': self.m.get('label_norm'), 'scale': '1-7',
                'text': 'no transcript: text modality absent (global token only)'}


def write_outputs(rows, args, engine):
    prov = engine.provenance()
    table = [row_for_csv(r, engine.emos, engine.rankers, curves=isinstance(engine, Seq2SeqEngine)) for r in rows]
    table = [{**t, **prov} for t in table]
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


# ----------------------------------------------------------------------------- main
def build_parser():
    ap = parser(__doc__)
    ap.add_argument('inputs', nargs='+', help='audio files and/or folders (searched recursively)')
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--pretrained', metavar='DIR',
                     help="root of a clone of the authors' repository (Chunk-Level-Emotion-Retrieval): its "
                          "v1.6 models and NormTerm, checked by SHA-256")
    src.add_argument('--checkpoint', metavar='PATH',
                     help="your own models: a folder with LSTM_epoch*_EmoRankerSeq_<Emo>.pth.tar (and rankers), one "
                          "file (with one -emo), or a path with '{emo}'; each needs its .meta.json record or --norm. "
                          "Default: the demo models (synthetic speech). With --model mscr: an MSCR checkpoint file "
                          "or folder (default trained_mscr_model/)")
    ap.add_argument('--ranker-dir', metavar='DIR', help='folder with *_<Emo>_ranker.pth.tar for --rankers (default: '
                    'the --checkpoint folder, the release of --pretrained, or the demo rankers)')
    ap.add_argument('--norm', metavar='DIR', help="NormTerm folder whose statistics replace the models' own")
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
    ap.add_argument('--feature-norm', choices=list(N.SCOPES), default=None,
                    help="feature statistics: 'published' / 'train' (the release's / the model's training corpus's), "
                         "'corpus' (all files given), 'speaker' (per speaker of the files given: sub-folder or "
                         "--speakers). Default: what the model was trained with")
    ap.add_argument('--speakers', metavar='CSV', help="file,speaker table for --feature-norm speaker (default: the "
                    "sub-folder of each file is its speaker)")
    ap.add_argument('--no-clip', action='store_true', help='report raw model outputs, not clipped to the 1-7 scale')
    ap.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    ap.add_argument('-batch', '--batch', dest='batch', type=positive_int, default=16,
                    help='files per batch (one forward pass per model per batch)')
    ap.add_argument('--max-seconds', type=positive_float, default=20.0,
                    help='files up to this many seconds are one window (default 20)')
    ap.add_argument('--window', type=positive_float, default=10.0, help='window length in s for longer files (default 10)')
    ap.add_argument('--overlap', type=nonneg_float, default=5.0, help='minimum window overlap in s (default 5)')
    ap.add_argument('--grid', type=positive_float, default=0.5, help='time step in s of the stitched curve of long files')
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.batch < 1:
        raise ToolkitError('-batch must be >= 1')
    if not (0 <= args.overlap < args.window <= args.max_seconds):
        raise ToolkitError(f'need 0 <= --overlap ({args.overlap}) < --window ({args.window}) <= --max-seconds '
                           f'({args.max_seconds})')
    device = get_device(args.device)
    for path, flag in ((args.out, '--out'), (args.json, '--json'), (args.plot, '--plot')):
        if path:
            check_writable(path, flag)      # fail fast on outputs, inputs and models before any work
    files, missing = list_inputs(args.inputs)
    if not files:
        raise ToolkitError('nothing to do: ' + '; '.join(m for _, m in missing))
    engine = MSCREngine(args, files, device) if args.model == 'mscr' else Seq2SeqEngine(args, files, device)
    t0 = time.time()
    rows, interrupted = process(args, files, engine)
    order = {str(p): i for i, p in enumerate(files)}
    rows.sort(key=lambda r: order.get(r['file'], 0))
    rows = [{'file': str(p), 'error': m} for p, m in missing] + rows
    write_outputs(rows, args, engine)
    summary(rows, engine, args, time.time() - t0)
    if interrupted:
        return 130
    return 0 if any(not r.get('error') for r in rows) else 1


def process(args, files, engine):
    """Run the engine over `files` in batches, plotting as it goes -> (rows, interrupted)."""
    rows, used_names = [], set()
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
        return rows, True
    finally:
        bar.close()
        engine.close()
    return rows, False


def summary(rows, engine, args, seconds):
    ok = [r for r in rows if not r.get('error')]
    errs = [r for r in rows if r.get('error')]
    if ok and len(rows) <= 20:
        for r in ok:
            print(f"{r['file']}: " + '  '.join(f"{e} {r[e]:.2f}" for e in engine.emos) + f"  ({r['duration']:.2f} s)")
    print(f"{len(ok)}/{len(rows)} files predicted in {seconds:.1f} s -> {args.out}"
          + (f", {args.json}" if args.json else '') + (f", plots in {args.plot}" if args.plot else ''))
    clipped = [r for r in ok if r.get('n_clipped')]
    if clipped:
        print(f"{len(clipped)} file(s) had values outside the 1-7 scale, clipped (column n_clipped; --no-clip for "
              f"raw outputs)")
    warned = [r for r in ok if r.get('warning')]
    if warned:
        print(f"{len(warned)} file(s) with input warnings (column 'warning'; their values may mean little):",
              file=sys.stderr)
        for r in warned:
            print(f"  {r['file']}: {r['warning']}", file=sys.stderr)
    if errs:
        print(f"{len(errs)} file(s) failed (listed with the reason; also in the 'error' column of {args.out}):",
              file=sys.stderr)
        for r in errs:
            print(f"  {r['error']}", file=sys.stderr)
    if 'demo' in engine.provenance()['model_source']:
        print(f'NOTE: {C.DEMO_NOTE}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(run_script(main))
