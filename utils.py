"""Shared maths and plumbing: CCC, chunk split, emotion curves, NormTerm files, devices, atomic files."""
import contextlib
import csv
import io
import os
import random
import tempfile
from pathlib import Path

import numpy as np


def _pin_cpu_kernels():
    """Make CPU results the same on every x86 CPU with AVX2 (docs/reproducibility.md): MKL (conditional
    numerical reproducibility), oneDNN (the LSTM) and ATen's own vector kernels otherwise pick their code
    path by the CPU model, and each path rounds differently (an Intel and an AMD CPU, or an AVX-512 one,
    give other weights from the same run). All three read their variable at first use, so this works
    after `import torch` too, as long as no tensor was computed. A variable already set is left alone."""
    try:
        with open('/proc/cpuinfo') as f:
            avx2 = ' avx2 ' in f.read(1 << 16).replace('\n', ' ') + ' '
    except OSError:
        avx2 = False
    if avx2:
        for key, val in (('MKL_CBWR', 'AVX2'), ('ONEDNN_MAX_CPU_ISA', 'AVX2'), ('ATEN_CPU_CAPABILITY', 'avx2')):
            os.environ.setdefault(key, val)
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')   # deterministic cuBLAS (read at CUDA init)


_pin_cpu_kernels()
import torch  # noqa: E402

from errors import ToolkitError  # noqa: E402

EMOS = ["Act", "Dom", "Val"]
EMO_COL = {"Act": "EmoAct", "Dom": "EmoDom", "Val": "EmoVal"}
EPS_STD = 1e-8


def parse_emos(emo):
    """'-emo all' -> ['Act', 'Dom', 'Val']; 'Act' -> ['Act']; case-insensitive."""
    if emo.lower() == "all":
        return list(EMOS)
    out = []
    for e in emo.split(","):
        match = [x for x in EMOS if x.lower() == e.strip().lower()]
        if not match:
            raise ToolkitError(f"unknown attribute '{e}'; use Act, Dom, Val or all")
        out.append(match[0])
    return out


# ---------------------------------------------------------------- CCC (docs/metrics.md)
def ccc(x, y):
    """Concordance correlation coefficient with population moments (numpy)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def ccc_loss(pred, target):
    """1 - CCC over all elements of the batch (torch, differentiable)."""
    pred, target = pred.float().reshape(-1), target.float().reshape(-1)
    mp, mt = pred.mean(), target.mean()
    cov = ((pred - mp) * (target - mt)).mean()
    denom = pred.var(unbiased=False) + target.var(unbiased=False) + (mp - mt) ** 2
    return 1 - 2 * cov / (denom + 1e-12)


# ---------------------------------------------------------------- chunking (docs/chunking.md)
def chunk_starts(lengths, m, K):
    """Start frames of the dynamic chunk split.

    lengths: (B,) frame counts; K: int or (B,) chunk counts (>= 2). Utterances shorter than
    m are treated as m frames long (they are zero-padded). Returns (starts (B, Kmax) long,
    valid (B, Kmax) bool); starts of invalid chunks are 0.
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    K = torch.as_tensor(K, dtype=torch.long).expand_as(lengths).clamp(min=2)
    T = lengths.clamp(min=m)
    step = torch.div(T - m, K - 1, rounding_mode="floor")
    k = torch.arange(int(K.max()) if len(K) else 2)
    valid = k[None, :] < K[:, None]
    starts = torch.where(valid, k[None, :] * step[:, None], torch.zeros((), dtype=torch.long))
    return starts, valid


def dynamic_chunk_split(x, lengths, m, K):
    """Cut a zero-padded batch x (B, T, D) into chunks (B, K, m, D) with one gather.

    K is a fixed int (method 1). Frames past an utterance's length are zeros: an utterance shorter
    than m frames is zero-padded (docs/chunking.md, "Short utterances").
    """
    B, T, D = x.shape
    if m > T:
        x = torch.nn.functional.pad(x, (0, 0, 0, m - T))
    starts, _ = chunk_starts(lengths, m, K)
    idx = starts.to(x.device)[:, :, None] + torch.arange(m, device=x.device)  # (B, K, m)
    out = torch.gather(x, 1, idx.reshape(B, -1, 1).expand(-1, -1, D))
    return out.reshape(B, idx.shape[1], m, D)


def pad_batch(arrays, min_len=0):
    """List of (T_i, D) arrays -> zero-padded float tensor (B, max(T, min_len), D), lengths (B,)."""
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    T = max(int(lengths.max()) if len(arrays) else 0, min_len)
    out = torch.zeros(len(arrays), T, arrays[0].shape[1])
    for i, a in enumerate(arrays):
        out[i, : len(a)] = torch.as_tensor(a)
    return out, lengths


# ---------------------------------------------------------------- ranks and curves (docs/method1.md)
def rank_desc_min(scores):
    """'min'-method descending ranks (1 = highest score), over the last axis; numpy or torch."""
    s = torch.as_tensor(scores)
    ranks = 1 + (s.unsqueeze(-2) > s.unsqueeze(-1)).sum(-1)
    return ranks.numpy() if isinstance(scores, np.ndarray) else ranks


def generate_chunk_EmoSeq(mu, std, rank_seq):
    """Target emotion curve from a chunk rank sequence (docs/method1.md, "Target curves").

    Trend walk over the ranks (rank up = less emotional = -1), 3-point moving average with the
    raw end values restored, rescaled to mean `mu` and population std `std`.
    """
    ranks = np.asarray(rank_seq, dtype=np.float64)
    steps = -np.sign(np.diff(ranks))
    trend = np.concatenate([[0.0], np.cumsum(steps)])
    if len(trend) >= 3:
        smooth = np.convolve(trend, np.ones(3) / 3, mode="valid")
        trend = np.concatenate([[trend[0]], smooth, [trend[-1]]])
    sx = trend.std()
    if std == 0 or sx == 0 or not np.isfinite(std):
        return np.full(len(ranks), float(mu))
    return mu + (trend - trend.mean()) * std / sx


# ---------------------------------------------------------------- NormTerm files (docs/features.md)
_NORM_FILES = {"feat": "feat", "Act": "act", "Dom": "dom", "Val": "val"}
# scipy writes the creation time into the 116-byte text header of a MAT 5 file; a fixed header keeps
# the files byte-identical for the same statistics
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by the SER toolkit (norm.py)".ljust(116, b" ")


def mat_bytes(array):
    """The bytes of a MAT 5 file holding `array` as 'normal_para', with a fixed header (deterministic)."""
    import scipy.io
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"normal_para": np.asarray(array, dtype=np.float64)})
    return MAT_HEADER + buf.getvalue()[116:]


def save_norm(out_dir, stats):
    """stats: {'feat'|'Act'|'Dom'|'Val': (mean, std)} -> NormTerm/<x>_norm_{means,stds}.mat."""
    out_dir = ensure_dir(out_dir)
    for key, (mean, std) in stats.items():
        std = np.where(np.asarray(std, dtype=np.float64) < EPS_STD, EPS_STD, std)
        for kind, arr in (("means", mean), ("stds", std)):
            path = out_dir / f"{_NORM_FILES[key]}_norm_{kind}.mat"
            atomic_write(path, mat_bytes(np.asarray(arr, dtype=np.float64).reshape(1, -1)))  # (1, D) as released


def load_norm(norm_dir, need=("feat", "Act", "Dom", "Val")):
    """Read a NormTerm folder (ours or the authors' release) -> {key: (mean, std)} as flat float arrays."""
    import scipy.io
    norm_dir = Path(norm_dir)
    out = {}
    for key in need:
        vals = []
        for kind in ("means", "stds"):
            path = norm_dir / f"{_NORM_FILES[key]}_norm_{kind}.mat"
            if not path.exists():
                raise ToolkitError(f"{path} is missing; run norm_para.py (or pass the folder that holds the "
                                   f"authors' NormTerm)")
            try:
                vals.append(np.asarray(scipy.io.loadmat(str(path))["normal_para"], dtype=np.float64).ravel())
            except (ValueError, KeyError, OSError, TypeError) as e:
                raise ToolkitError(f"{path}: not a NormTerm file ({type(e).__name__}: {e}); write the folder again "
                                   f"with norm_para.py") from None
        mean, std = vals
        std = np.where(std < EPS_STD, EPS_STD, std)
        out[key] = (mean if key == "feat" else float(mean[0]), std if key == "feat" else float(std[0]))
    return out


def normalize_feats(x, mean, std):
    """z-normalise, NaN -> 0, clip to [-3, 3] (float32; numpy or torch)."""
    if isinstance(x, torch.Tensor):
        z = (x - torch.as_tensor(mean, dtype=x.dtype, device=x.device)) / torch.as_tensor(std, dtype=x.dtype, device=x.device)
        return torch.nan_to_num(z, nan=0.0, posinf=3.0, neginf=-3.0).clamp_(-3, 3)
    z = (np.asarray(x, dtype=np.float32) - mean.astype(np.float32)) / std.astype(np.float32)
    return np.clip(np.nan_to_num(z, nan=0.0, posinf=3.0, neginf=-3.0), -3, 3).astype(np.float32)


# ---------------------------------------------------------------- devices, seeds, DDP
def get_device(name=None):
    """'cuda', 'cpu', 'cuda:1' or None (auto: CUDA when available, else CPU)."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ToolkitError(f"--device {name} requested but CUDA is not available on this machine; "
                         f"use --device cpu (or leave --device out to pick automatically)")
    return dev


def amp_context(device, amp):
    """Mixed precision on CUDA ('fp16' / 'bf16'); nothing on CPU or with 'off'."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_scaler(device, amp):
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")


TRAIN_THREADS = 1   # CPU intra-op threads of training and model runs (--threads; docs/reproducibility.md)


def set_seed(seed, threads=TRAIN_THREADS):
    """Seed every generator and make the run reproducible: deterministic algorithms (cuDNN, cuBLAS; a
    warning where an op has no deterministic version) and, on CPU, a fixed number of intra-op threads:
    oneDNN's LSTM and ATen's reductions split their sums by the thread count (1, 2 and 4 threads give the
    same weights here, 8 or 16 do not), so the weights depend on the machine's core count unless it is
    fixed. threads=0 keeps torch's default (all cores: faster on an idle many-core machine, but the
    weights then depend on the core count)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def ddp_setup(device_arg=None):
    """Initialise torch.distributed when launched by torchrun; returns (rank, world, device, is_main)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, get_device(device_arg), True
    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available() and device_arg != "cpu":
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return rank, world, device, rank == 0


def ddp_cleanup():
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model):
    """The plain module under a DistributedDataParallel wrapper."""
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------- files
class OutputError(ToolkitError):
    """An output location that cannot be written (raised before work is lost where possible)."""


def ensure_dir(path, flag="--out"):
    """Create folder `path` (and parents) or stop with a message naming it and the flag to change."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot create output folder {path}: a file with that name (or a "
                          f"parent of it) exists; pass another {flag}") from None
    except PermissionError:
        raise OutputError(f"no permission to create {path}; pass another {flag}") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"output folder {path} is not writable; pass another {flag}")
    return path


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path, data):
    """Write `data` (bytes, str, or a callable taking a binary file) to `path` atomically: a temporary file
    in the same folder, fsynced, then renamed over `path`; readers never see a half-written file."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    write = data if callable(data) else (lambda f: f.write(data))
    path = Path(path)
    ensure_dir(path.parent, flag=f"output path (for {path.name})")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path):
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path, text):
    atomic_write(path, text)


class CSVLogger:
    """Append-only per-epoch log; the header is written once, rows are flushed immediately."""

    def __init__(self, path, fields, resume=False):
        self.path, self.fields = Path(path), list(fields)
        ensure_dir(self.path.parent)
        if not (resume and self.path.exists()):
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)

    def log(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


def plot_curves(csv_path, png_path, x="epoch", title=None):
    """Plot every numeric column of a training log against `x` into a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    df = pd.read_csv(csv_path)
    if df.empty:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col in df.columns:
        if col != x and pd.api.types.is_numeric_dtype(df[col]) and "loss" in col:
            ax.plot(df[x], df[col], marker="o", ms=3, label=col)
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    atomic_write(png_path, lambda f: fig.savefig(f, dpi=110, format="png", metadata={"Software": None}))
    plt.close(fig)
