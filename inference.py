"""Inference behind predict.py: the models a command line names, their normalisation, windowing and stitching
of long files, batched chunk-level prediction (`Predictor`) and the two engines that turn audio files into result
rows: `Seq2SeqEngine` (method 1: LLDs -> Seq2Seq chunk curves, optional ranker ranks) and `MSCREngine` (method 2:
audio + text, utterance level). How the pieces work: the docstring of predict.py and docs/pretrained.md."""
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import checkpoints as C
import norm as N
from audio import SR, AudioError, load_audio, speech_note
from errors import ToolkitError
from features import LLDExtractor
from utils import (
    EMOS,
    chunk_starts,
    dynamic_chunk_split,
    normalize_feats,
    pad_batch,
    parse_emos,
    rank_desc_min,
)

K = 22  # chunks per utterance (C = 11 chunks x scaling factor n = 2)
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
        ck.check('seq2seq' if kind == 'seq' else 'ranker', e, preset, hop, first.get('dim') or 130)
        ck.require_finished(getattr(args, 'allow_unfinished', False))
        f = ck.features
        if (f.get('kind') or 'lld') != (first.get('kind') or 'lld') or f.get('upstream_sha256') != \
                first.get('upstream_sha256') or f.get('layers') != first.get('layers'):
            raise ToolkitError(f'{ck.path} was trained on other features ({f.get("kind")} {f.get("upstream")} '
                               f'{f.get("layers")}) than {out[("seq", emos[0])].path} ({first.get("kind")} '
                               f'{first.get("upstream")} {first.get("layers")}); pass models of one feature store')
    return out, emos, preset, hop


def unfinished_columns(ckpts):
    """{'model_finished': False, 'model_note': ...} when a model comes from an unfinished run (--allow-unfinished),
    else {} (the columns of a normal run are unchanged)."""
    notes = [ck.unfinished_note() for ck in ckpts if not ck.finished]
    return {'model_finished': False, 'model_note': '; '.join(notes)} if notes else {}


class SSLFrames:
    """The frames an SSL model was trained on, for one signal: the upstream given with --upstream (refused unless its
    weights have the SHA-256 in the model's record), the recorded layers, rounded to the store's dtype."""

    preset, feature_names = 'ssl', None

    def __init__(self, features, upstream, device, max_seconds=30.0):
        from features import SSLExtractor, upstream_identity
        if not upstream:
            raise ToolkitError(f'the models were trained on SSL features of {features.get("upstream")!r}; pass its '
                               f'folder with --upstream DIR')
        got = upstream_identity(upstream)['sha256']
        if got != features.get('upstream_sha256'):
            raise ToolkitError(f'--upstream {upstream}: SHA-256 {got[:12]}..., but the models were trained on '
                               f'{features.get("upstream")!r} (SHA-256 {str(features.get("upstream_sha256"))[:12]}...): '
                               f'another upstream; pass the one the model records')
        self.ext = SSLExtractor(upstream, ','.join(map(str, features['layers'])), device, 1, max_seconds)
        self.hop, self.dtype = self.ext.hop, np.dtype(features.get('dtype') or 'float32')

    def __call__(self, signal, sr=SR):
        return self.ext([signal])[0].astype(self.dtype).astype(np.float32)


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
    from corpus import csv_error
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ToolkitError(f'{flag} {csv_error(path, e)}') from None
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
        first = next(iter(self.models.values())).features
        self.ext = SSLFrames(first, getattr(args, 'upstream', None), device) if first.get('kind') == 'ssl' else \
            LLDExtractor(preset, None if preset == 'published' else hop)
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
            try:
                self._data_stats(args, files)
            except BaseException:      # e.g. Ctrl-C in pass 1: no cached features left behind
                self.close()
                raise

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
            voiced = speech_note(f, self.ext.feature_names, self.ext.hop) if self.ext.feature_names else None
            ok.append((p, sig, f, notes + [voiced]))
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
                    f'{e} {r["scope"]} ({r["source"]})' for e, r in self.lrec.items()),
                **unfinished_columns(self.models.values())}

    def meta(self):
        pred = self.pred
        return {'model': 'seq2seq', **self.provenance(),
                'records': {f'{k} {e}': ck.provenance() for (k, e), ck in self.models.items()},
                'feature_norm': self.scope, 'feature_norm_warning': self.stats_warning,
                'label_norm': {e: list(v) for e, v in pred.label_norm.items()},
                'features': f"LLD {self.ext.preset} preset" if self.ext.preset != 'ssl' else
                f"SSL {self.ext.ext.name} layers {self.ext.ext.layers}", 'hop': pred.hop, 'chunk_frames': pred.m, 'chunks': K,
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
        self.source = mscr.model_source(meta)
        C.Checkpoint(spec, meta, self.source).require_finished(getattr(args, 'allow_unfinished', False))
        C.announce([C.Checkpoint(spec, meta, self.source)])
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
        print(f"model ({self.source}): MSCR {spec} (audio {kind}, text {meta.get('text_model') or 'default MiniLM'}); "
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
        prov = self.mscr.provenance(self.ckpt, self.m)
        return {'model_source': f'demo ({C.DEMO_NOTE})' if self.source == 'demo' else self.source,
                'models': prov['model'], 'model_sha256': prov['model_sha256'],
                'normalisation': f"features: {self.m.get('feature_norm')}; labels: training statistics"}

    def meta(self):
        return {'model': 'mscr', **self.provenance(), 'clipped': self.clip, 'audio_feature': self.m.get('audio_feature'),
                'text_model': self.m.get('text_model'), 'label_norm': self.m.get('label_norm'), 'scale': '1-7',
                'text': 'no transcript: text modality absent (global token only)'}
