"""Shared helpers of the benchmarks: machine description, result files, synthetic feature stores.

Every bench prints the machine it ran on, one comparison line starting with `RESULT`, and writes
bench/results/<name>.json (and images/bench_<name>.png where a plot helps).
"""
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
RESULTS = REPO / 'bench' / 'results'
IMAGES = REPO / 'images'
MSP_V111_UTTS = 150_000          # MSP-Podcast v1.11: ~150k utterances of ~6 s
MSP_MEAN_SEC = 6.0


# ---------------------------------------------------------------- machine
def cpu_model():
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device='cpu'):
    """Dict naming the machine a number came from (CPU, cores, torch, device)."""
    import torch
    dev = str(device)
    info = {'cpu': cpu_model(), 'cores': os.cpu_count(),
            'cores_usable': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
            'torch_threads': torch.get_num_threads(), 'torch': torch.__version__, 'numpy': np.__version__,
            'python': platform.python_version(), 'device': dev, 'host': platform.node(),
            'load_avg_1min': round(os.getloadavg()[0], 2) if hasattr(os, 'getloadavg') else None}
    if dev.startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(torch.device(dev))
    return info


def machine_line(info):
    gpu = f", GPU {info['gpu']}" if info.get('gpu') else ''
    return (f"machine: {info['cpu']}, {info['cores_usable']} usable cores ({info['torch_threads']} torch threads), "
            f"torch {info['torch']}, numpy {info['numpy']}, Python {info['python']}, device {info['device']}{gpu}; "
            f"load average {info['load_avg_1min']} at start")


def set_threads(n):
    """--threads: torch CPU threads (None = torch's default, one per core)."""
    import torch
    if n:
        torch.set_num_threads(n)


def pick_device(name):
    """--device: 'cpu', 'cuda', 'cuda:1' or 'auto' -> torch.device (clear error when CUDA is absent)."""
    from utils import get_device
    return get_device(None if name in (None, 'auto') else name)


def sync(device):
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize(device)     # the device under test, not the current one (--device cuda:1)


@contextmanager
def timer(out, key):
    """with timer(res, 'seconds'): ...  -> res['seconds'] = wall time."""
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


# ---------------------------------------------------------------- outputs
def save_results(name, results, out_dir=None):
    """Atomically write bench/results/<name>.json; returns its path."""
    from utils import atomic_write_text
    path = Path(out_dir or RESULTS) / f'{name}.json'
    results = {'bench': name, 'date': time.strftime('%Y-%m-%d %H:%M:%S'), **results}
    atomic_write_text(path, json.dumps(results, indent=1, default=_jsonable) + '\n')
    print(f'wrote {path}')
    return path


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def save_png(fig, name, out_dir=None):
    """Atomically save a matplotlib figure as images/bench_<name>.png; returns its path."""
    import matplotlib.pyplot as plt
    out = Path(out_dir or IMAGES)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f'bench_{name}.png'
    fd, tmp = tempfile.mkstemp(dir=out, prefix='.' + path.name, suffix='.png')
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f'wrote {path}')
    return path


def plt_agg():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def fmt_rate(x):
    return f'{x:,.1f}' if x < 100 else f'{x:,.0f}'


# ---------------------------------------------------------------- synthetic data
def utt_names(n):
    """MSP-Podcast-like file names, unique for n up to 10^8."""
    return [f'MSP-PODCAST_{k // 10000:04d}_{k % 10000:04d}.wav' for k in range(n)]


def utt_lengths(n, hop, mean_sec=MSP_MEAN_SEC, seed=0, min_sec=0.5, max_sec=11.0):
    """Frame counts of n synthetic utterances: log-normal durations (MSP-Podcast segments are ~2.75-11 s,
    mean ~6 s), clipped to [min_sec, max_sec]. A few short ones (< 1 s) exercise the padding path."""
    rng = np.random.default_rng(seed)
    sigma = 0.35
    sec = np.exp(rng.normal(np.log(mean_sec) - sigma ** 2 / 2, sigma, n))
    sec[rng.random(n) < 0.01] = min_sec
    return np.maximum(1, np.round(np.clip(sec, min_sec, max_sec) / hop)).astype(np.int64)


def existing_store(path, n, dim):
    """The synthetic store already at `path` when it has n utterances of `dim`; otherwise None, after removing
    whatever stale or broken store was there (a rerun reuses what it built)."""
    from feature_store import FeatureStore
    if not (Path(path) / 'meta.json').exists():
        return None
    try:
        st = FeatureStore(path)
        if len(st) == n and st.dim == dim:
            return st
    except Exception:
        pass
    shutil.rmtree(path)
    return None


def make_store(path, n, dim=130, hop=0.016, mean_sec=MSP_MEAN_SEC, seed=0, feature='lld', preset='published',
               model=None, lengths=None, progress=True):
    """Write a synthetic FeatureStore of n utterances with the project's FeatureStoreWriter; return it.

    Rows are slices of a 200k-row pool of Gaussian frames (mean 1, std 2 per dimension) at random offsets,
    so building a multi-GB store costs disk bandwidth, not random-number generation. The content does not
    matter for speed; shapes, lengths and the on-disk layout are those of a real store."""
    from tqdm import tqdm

    from feature_store import FeatureStore, FeatureStoreWriter
    path = Path(path)
    st = existing_store(path, n, dim)
    if st is not None:
        return st
    rng = np.random.default_rng(seed)
    lengths = utt_lengths(n, hop or 0.02, mean_sec, seed) if lengths is None else np.asarray(lengths)
    pool_rows = int(min(200_000, max(lengths.max() * 4, 1000)))
    pool = (1.0 + 2.0 * rng.standard_normal((pool_rows, dim), dtype=np.float32))
    offs = rng.integers(0, pool_rows - lengths.max() + 1, n) if pool_rows > lengths.max() else np.zeros(n, int)
    with FeatureStoreWriter(path, feature, dim, hop, preset, model, flush_every=max(500, n // 20),
                            flush_seconds=1e9) as w:
        for name, o, T in tqdm(zip(utt_names(n), offs, lengths), total=n, desc=f'synthetic store {path.name}',
                               unit='utt', disable=not progress, dynamic_ncols=True, mininterval=2):
            if pool_rows < T:
                w.add(name, np.resize(pool, (T, dim)))
            else:
                w.add(name, pool[o:o + T])
    return FeatureStore(path)


def gb(nbytes):
    return nbytes / 1e9


def work_dir(arg, prefix):
    """--workdir or a fresh temporary folder (caller removes the temporary one)."""
    if arg:
        Path(arg).mkdir(parents=True, exist_ok=True)
        return Path(arg), False
    return Path(tempfile.mkdtemp(prefix=prefix)), True


class SynthCorpus:
    """Just enough of corpus.Corpus for the data paths (labels, splits, word alignments, ratings) without
    writing thousands of WAVs: consensus labels U(1.5, 6.5), `raters` integer ratings around them,
    ~2.5 words per second of audio. names: FileNames; lengths: their frame counts; hop: seconds per frame."""

    def __init__(self, names, lengths, hop, splits=(('Train', 0.7), ('Validation', 0.15), ('Test', 0.15)),
                 raters=5, seed=0):
        import pandas as pd
        rng = np.random.default_rng(seed)
        n = len(names)
        self.root, self.name = Path('synthetic'), 'synthetic'
        self.consensus_path = Path('synthetic/Labels/labels_consensus.csv')
        cut = np.cumsum([0] + [int(round(f * n)) for _, f in splits])
        cut[-1] = n
        split = np.empty(n, object)
        for (s, _), a, b in zip(splits, cut[:-1], cut[1:]):
            split[a:b] = s
        self.ratings_ = {e: np.clip(np.rint(rng.uniform(1.5, 6.5, n)[:, None] + rng.normal(0, 1, (n, raters))), 1, 7)
                         for e in ('EmoAct', 'EmoDom', 'EmoVal')}
        self.labels = pd.DataFrame({'FileName': list(names), 'EmoClass': 'N',
                                    **{c: r.mean(1) for c, r in self.ratings_.items()},
                                    'SpkrID': np.arange(n) // 20, 'Gender': 'Female', 'Split_Set': split})
        sec = np.asarray(lengths) * (hop or 0.02)
        self.n_words = dict(zip(names, np.maximum(1, np.round(sec * 2.5)).astype(int)))
        self.index = {k: i for i, k in enumerate(names)}

    def files(self, split=None):
        if split is None:
            return list(self.labels.FileName)
        return list(self.labels.FileName[self.labels.Split_Set == split])

    def words(self, name):
        k = self.n_words[name]
        return [(0.4 * i, 0.4 * i + 0.3, 'word') for i in range(k)]

    def transcript(self, name):
        return ' '.join(['word'] * self.n_words[name])

    def speaker(self, name):
        return str(self.labels.SpkrID.iat[self.index[name]])

    def consensus(self, name, emo):
        return float(self.labels[f'Emo{emo}'].iat[self.index[name]])

    def rating_lists(self, emo, split=None):
        r = self.ratings_[f'Emo{emo}']
        return {k: r[self.index[k]] for k in self.files(split)}
