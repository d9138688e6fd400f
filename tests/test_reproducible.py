"""Training is bit-reproducible on CPU whatever the thread settings (docs/reproducibility.md).

The toolkit's own training steps (ranker cross-entropy on pair logits, the Seq2Seq CCC step, the MSCR step
with multi-scale crops) train three small models in a fresh process, once with OMP_NUM_THREADS=1 and once
with OMP_NUM_THREADS=MKL_NUM_THREADS=8, and the SHA-256 of the weights' bytes must agree. utils.set_seed
fixes the intra-op threads (default 1) and utils pins the CPU kernel paths; with set_seed(0, threads=0)
(torch's default threads) the 8-thread LSTM runs round differently on the development machine
(docs/reproducibility.md).
"""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from bench.bench_threads import PROBE  # noqa: E402  (the probe that bench_threads.py runs per setting)


def train(omp_threads, threads_arg=1):
    """SHA-256 of the ranker, Seq2Seq and MSCR weights trained in a fresh process whose environment asks for
    `omp_threads` threads (OMP_NUM_THREADS, MKL_NUM_THREADS and torch.set_num_threads); its torch thread count
    after set_seed(0, threads_arg)."""
    env = {**os.environ, 'OMP_NUM_THREADS': str(omp_threads), 'MKL_NUM_THREADS': str(omp_threads),
           'PYTHONPATH': str(REPO)}
    p = subprocess.run([sys.executable, '-c', PROBE, str(threads_arg), str(omp_threads), '0'], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    *digests, n, _ = p.stdout.split()
    return digests, int(n)


def test_training_bytes_do_not_depend_on_threads():
    one, n1 = train(1)
    eight, n8 = train(8)
    assert n1 == n8 == 1          # set_seed fixed the intra-op threads whatever the environment said
    assert len(one) == 3 and one == eight, (one, eight)   # ranker, Seq2Seq, MSCR: the same bytes


def test_cpu_kernel_paths_are_pinned():
    """On an AVX2 CPU utils pins the MKL, oneDNN and ATen code paths (each other path rounds differently),
    unless the user set the variable."""
    import torch

    import utils  # noqa: F401
    with open('/proc/cpuinfo') as f:
        avx2 = ' avx2 ' in f.read(1 << 16).replace('\n', ' ')
    if avx2:
        assert all(k in os.environ for k in ('MKL_CBWR', 'ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY'))
        if os.environ['ATEN_CPU_CAPABILITY'] == 'avx2':
            assert torch.backends.cpu.get_cpu_capability() == 'AVX2'
