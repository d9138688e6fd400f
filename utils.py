"""Shared maths and plumbing: CCC, chunk split, emotion curves, NormTerm files, devices, atomic files."""
import contextlib
import csv
import gc
import io
import json
import os
import random
import socket
import sys
import tempfile
import time
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
    """Read a NormTerm folder (ours or the authors' release) -> {key: (mean, std)} as flat float arrays.
    Checked: means and stds of equal length (one value for a label), every value finite, no negative std (a
    std below EPS_STD becomes EPS_STD, as norm_para.py writes it); with a record (normterm.json, written by
    norm_para.py) the files must be the ones it describes and the feature statistics of its dimension."""
    import scipy.io
    norm_dir = Path(norm_dir)
    rec = read_norm_record(norm_dir)
    again = "write the folder again with norm_para.py"
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
                raise ToolkitError(f"{path}: not a NormTerm file ({type(e).__name__}: {e}); {again}") from None
            bad = np.flatnonzero(~np.isfinite(vals[-1]))
            if len(bad):
                raise ToolkitError(f"{path}: {len(bad)} of {len(vals[-1])} values are not finite (NaN/inf, e.g. "
                                   f"dimension{'s' if len(bad) > 1 else ''} {bad[:5].tolist()}): such statistics would "
                                   f"silently zero those features; {again}")
        mean, std = vals
        want = (rec or {}).get("features", {}).get("dim") if key == "feat" else 1
        if len(mean) != len(std) or len(mean) == 0 or (want and len(mean) != want):
            raise ToolkitError(f"{norm_dir}: {_NORM_FILES[key]}_norm_means/stds hold {len(mean)} and {len(std)} values"
                               f"{f', expected {want}' if want else ''}; {again}")
        if (std < 0).any():
            raise ToolkitError(f"{norm_dir}/{_NORM_FILES[key]}_norm_stds.mat: negative standard deviations; {again}")
        std = np.where(std < EPS_STD, EPS_STD, std)
        out[key] = (mean if key == "feat" else float(mean[0]), std if key == "feat" else float(std[0]))
    return out


NORM_RECORD = "normterm.json"     # the record norm_para.py writes beside the .mat files the published code reads


def sha256_file(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_norm_record(out_dir, record):
    """NormTerm/normterm.json: `record` (what produced the statistics) + the SHA-256 of every .mat file."""
    files = {p.name: sha256_file(p) for p in sorted(Path(out_dir).glob("*_norm_*.mat"))}
    atomic_write_text(Path(out_dir) / NORM_RECORD, json.dumps({**record, "files": files}, indent=1) + "\n")


def read_norm_record(norm_dir):
    """The record of a NormTerm folder (dict), or None for a folder without one (the authors' release, or one
    written before records existed). A record whose files do not match the folder stops with its name."""
    p = Path(norm_dir) / NORM_RECORD
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{p}: unreadable NormTerm record ({e}); write the folder again with norm_para.py") from None
    if not isinstance(rec, dict) or rec.get("kind") != "normterm" or not isinstance(rec.get("files"), dict) \
            or not isinstance(rec.get("features"), dict):
        raise ToolkitError(f"{p}: not a NormTerm record of this toolkit (kind, features and files expected); write "
                           f"the folder again with norm_para.py")
    changed = [n for n, sha in rec["files"].items() if not (Path(norm_dir) / n).is_file()
               or sha256_file(Path(norm_dir) / n) != sha]
    if changed:
        raise ToolkitError(f"{norm_dir}: {changed} differ from what its record {NORM_RECORD} describes (changed or "
                           f"replaced after norm_para.py wrote them); write the folder again with norm_para.py")
    return rec


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
    """The --amp precision of a forward pass (docs/reproducibility.md, "Precision"): 'fp16' is autocast to
    float16 on CUDA only (ignored on the CPU), with the GradScaler of make_scaler; 'bf16' is autocast to
    bfloat16 on CUDA and on the CPU, no scaler (bfloat16 has float32's range); 'off' is float32. Under bf16
    the LSTMs run outside autocast in float32 (lstm_forward)."""
    if device.type not in ("cuda", "cpu") or amp == "off" or (amp == "fp16" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_scaler(device, amp):
    """GradScaler, enabled exactly when float16 autocast runs (CUDA, --amp fp16)."""
    return torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")


def lstm_forward(lstm, x):
    """nn.LSTM `lstm` on x under the --amp policy. Under float16 autocast (CUDA, --amp fp16) cuDNN's half
    kernels run, with the GradScaler. Under bfloat16 autocast the LSTM runs outside autocast in float32:
    CUDA autocast runs cuDNN's RNN in float16 whatever dtype it was given (a silent fp16 without a scaler,
    where gradients of 1e-5..1e-6 underflow), and oneDNN's bf16 LSTM needs AVX512-BF16 on the CPU."""
    dev = x.device.type
    if dev in ("cuda", "cpu") and torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == torch.bfloat16:
        with torch.autocast(dev, enabled=False):
            return lstm(x.float())
    return lstm(x)


MAX_CHUNKS = 768    # chunks through an LSTM at once in training (--max-chunks): about 1.5 MB of memory each


def micro_slices(n, per):
    """Row slices of at most `per` rows covering range(n) in order."""
    per = max(1, int(per))
    return [slice(i, min(i + per, n)) for i in range(0, n, per)]


def _rng_state(device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def backward_in_parts(net, forward, n, per, loss_of, device):
    """loss_of(forward(slice(0, n))).backward() with at most `per` rows through `forward` at a time (memory does
    not grow with the batch): when n > per, the rows' outputs are first computed part by part without a graph
    (the random state saved before each part), the loss's gradient with respect to them is taken, and each part
    is run again from its saved random state (the same dropout masks) and back-propagated with its share of that
    gradient. The same loss on the same batch, one extra forward pass; under DDP the gradients are averaged once,
    with the last part. -> the loss (a 0-dim tensor)."""
    parts = micro_slices(n, per)
    if len(parts) == 1:
        loss = loss_of(forward(parts[0]))
        loss.backward()
        return loss
    states, outs = [], []
    with torch.no_grad():
        for s in parts:
            states.append(_rng_state(device))
            outs.append(forward(s))
    out = torch.cat(outs).detach().requires_grad_()
    loss = loss_of(out)
    loss.backward()
    for k, (s, st) in enumerate(zip(parts, states)):
        _set_rng_state(st, device)
        last = k == len(parts) - 1
        with contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync():
            forward(s).backward(out.grad[s])
    return loss


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


DDP_TIMEOUT_MIN = 120   # how long a collective waits (NCCL's default, 10 minutes, is shorter than a long validation)


def ddp_setup(device_arg=None):
    """Initialise torch.distributed when launched by torchrun; returns (rank, world, device, is_main).

    Device of each process: --device cpu runs on the CPU over gloo; --device cuda or cuda:N runs on GPU
    N + LOCAL_RANK over NCCL (a clear error when CUDA is missing or that GPU does not exist: never a silent
    CPU run); no --device picks CUDA when available, else the CPU. DDP_BACKEND=gloo in the environment runs
    the collectives over gloo instead, and the processes then share the GPUs (GPU (N + LOCAL_RANK) mod the
    GPU count): NCCL refuses two processes on one GPU, gloo takes them (bench/gpu_check.sh runs 2 processes
    on 1 GPU so). Collectives wait up to DDP_TIMEOUT_MIN minutes: MSCR validates on rank 0 while the other
    ranks wait at a barrier. Ranks > 0 write nothing to stdout, so progress and notes appear once (errors
    still reach stderr from every rank)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, get_device(device_arg), True
    import datetime

    import torch.distributed as dist
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    gloo = os.environ.get("DDP_BACKEND", "").lower() == "gloo"
    device = get_device(device_arg)
    if device.type == "cuda":
        n_gpu, index = torch.cuda.device_count(), (device.index or 0) + local
        if gloo:
            index %= n_gpu
        elif index >= n_gpu:
            raise ToolkitError(f"--device {device_arg or 'cuda'} under torchrun: local rank {local} would use GPU {index}, "
                               f"but this machine has {n_gpu}; start at most {max(n_gpu - (device.index or 0), 0)} "
                               f"processes (--nproc_per_node), or set DDP_BACKEND=gloo to share GPUs")
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
    elif device.type != "cpu":
        raise ToolkitError(f"--device {device_arg}: torchrun runs on cpu or cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" and not gloo else "gloo",
                                timeout=datetime.timedelta(minutes=DDP_TIMEOUT_MIN))
    if rank != 0:
        sys.stdout = open(os.devnull, "w")
    return rank, world, device, rank == 0


def seed_rank(seed, rank):
    """Per-rank random streams for dropout under DDP: rank r > 0 reseeds torch with seed + r once its model is
    built (DDP copies rank 0's weights anyway); rank 0 keeps the stream a single process has. Without it
    every rank would draw the same dropout masks."""
    if rank > 0:
        torch.manual_seed(seed + rank)


def ddp_cleanup():
    """Leave torch.distributed in order; call it in the `finally` of a training script's main.

    After a normal run every rank first waits at a barrier for the others: without it the rank that finishes
    first (rank 1, while rank 0 still saves and plots) tears its end of the process group down and exits while
    its peer may still be completing the last collective with it. Then garbage (a DDP wrapper in a reference
    cycle holds the group in its C++ reducer) is collected while the interpreter is fully alive, and the group
    is destroyed, so no gloo object is left to be torn down during interpreter shutdown, where a gloo thread
    still joinable aborts the process ("terminate called without an active exception", seen once on a loaded
    machine in the 2-process test). When an exception is propagating there is no barrier: the other ranks may
    be gone, and torchrun stops them."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    if sys.stdout is not sys.__stdout__ and getattr(sys.stdout, "name", None) == os.devnull:
        sys.stdout.close()          # a rank > 0's silenced stdout (ddp_setup)
        sys.stdout = sys.__stdout__
    if sys.exc_info()[0] is None:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def gather_batch(*tensors):
    """The global batch under DDP: each tensor concatenated over the ranks along dim 0 (in rank order), with
    gradients flowing back to every rank's own rows (torch.distributed.nn.functional.all_gather; shards of
    different sizes are padded for the exchange and trimmed). A loss over the whole batch, such as the CCC,
    computed on the result is the loss of the global batch on every rank, and DDP's averaging of the ranks'
    gradients then gives the gradients of one process on that batch: each rank's own rows receive the sum of
    the N identical losses' gradients (all_gather's backward), and DDP divides by N. -> a tuple; the tensors
    as they are in one process."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    import warnings

    from torch.distributed.nn.functional import all_gather
    n = torch.tensor([tensors[0].shape[0]], device=tensors[0].device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(k) for k in sizes]
    out = []
    for t in tensors:
        pad = max(sizes) - t.shape[0]
        with warnings.catch_warnings():   # torch 2.13 deprecates it for a private API; public, autograd-aware
            warnings.simplefilter('ignore', FutureWarning)
            parts = all_gather(torch.cat([t, t.new_zeros((pad, *t.shape[1:]))]) if pad else t.contiguous())
        out.append(torch.cat([p[:k] for p, k in zip(parts, sizes)]))
    return tuple(out)


def rng_state(device):
    """This process's random generators: Python, NumPy, torch's CPU one and the CUDA one of `device` only."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state):
    """Restore rng_state() in this process (the CUDA state, if any, into the current CUDA device)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def rank_rng_states(device):
    """[rng_state of rank 0, of rank 1, ...]: every rank calls it (a collective under DDP)."""
    import torch.distributed as dist
    state = rng_state(device)
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, state)
    return parts


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
        block = next((q for q in [path, *path.parents] if q.exists() and not q.is_dir()), None)
        raise OutputError(f"cannot create output folder {path}: {block or 'a file on its path'} is a file, not a "
                          f"folder; pass another {flag}") from None
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


class LockError(OutputError):
    """An output that another running command is writing."""


def _proc_start(pid):
    """Start time of process `pid` (clock ticks since boot, Linux /proc), None when unknown or not running."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid, start=None):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    now = _proc_start(pid)
    return start is None or now is None or now == start   # another process that reuses the pid: not the owner


class RunLock:
    """`<path>`: a lock file (JSON: pid, host, process start, command, time) held while one run writes its
    outputs. A second run stops with a message naming the holder; a lock whose process has died (killed,
    power loss) is stale and taken over with a note. Release with `release()` (or use it as a context)."""

    _held = set()        # lock files this process holds (a leftover file with our own pid is stale)

    def __init__(self, path, what="this output"):
        self.path, self.what, self.held = Path(path), what, False

    def acquire(self):
        ensure_dir(self.path.parent, flag=f"output path (for {self.path.name})")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid()),
                "command": " ".join(sys.argv)[:300], "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
            except FileExistsError:
                fd = None
            if fd is None:
                self._take_over_if_stale(info)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(info) + "\n")
            self.held = True
            RunLock._held.add(str(self.path.resolve()))
            return self
        raise LockError(f"{self.path}: cannot take the lock of {self.what}")

    def _take_over_if_stale(self, me):
        try:
            other = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            other = None
        if other is None:       # being written this instant, or garbage left by a crash
            if time.time() - self.path.stat().st_mtime < 10:
                time.sleep(0.5)
                return
            stale = True
        elif other.get("host") != me["host"]:
            stale = False       # another machine (shared disk): its process cannot be checked from here
        elif other.get("pid") == me["pid"]:
            stale = str(self.path.resolve()) not in RunLock._held
        else:
            stale = not _pid_alive(other.get("pid", -1), other.get("start"))
        if not stale:
            raise LockError(f"{self.what} is being written by another run (pid {other.get('pid')} on "
                            f"{other.get('host')}, since {other.get('time')}: {other.get('command')!r}); wait for "
                            f"it to finish or pass another --out/--checkpoint. If no such run is active, delete "
                            f"{self.path}")
        print(f"note: {self.path.name}: taking over the lock of a run that ended without releasing it "
              f"(pid {other.get('pid') if other else '?'}, {other.get('time') if other else 'unreadable lock'})",
              file=sys.stderr)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def release(self):
        if self.held:
            self.held = False
            RunLock._held.discard(str(self.path.resolve()))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


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
