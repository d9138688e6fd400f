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

CHILD = r'''
import hashlib, sys
import numpy as np
import torch
import utils
from dataloader import mscr_collate
from model import LSTMnet
from mscr import build_model, mscr_step
from ranker import pair_logits
from seq2seq import seq2seq_step

THREADS = int(sys.argv[1])
torch.set_num_threads(int(sys.argv[2]))    # what the caller's environment set (a notebook, a launcher)
CPU = torch.device('cpu')


def lstm(out_dim):
    utils.set_seed(0, THREADS)
    g = torch.Generator().manual_seed(1)
    net = LSTMnet(130, 130, out_dim)
    opt, scaler = torch.optim.Adam(net.parameters(), 1e-3), utils.make_scaler(CPU, 'off')
    for _ in range(3):
        x, lengths = torch.randn(2, 130, 130, generator=g), torch.tensor([130, 100])   # -> 22 chunks of 62 frames
        if out_dim == 2:      # ranker: one pair, chunk k of utterance 1 against chunk k of utterance 2
            d = pair_logits(net, x, lengths, 62, CPU)
            loss = torch.nn.functional.cross_entropy(d.flatten(0, 1), torch.ones(22, dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            seq2seq_step(net, opt, scaler, x, lengths, torch.randn(2, 22, generator=g), torch.randn(2, generator=g),
                         62, CPU, 'off')
    return net


def mscr():
    utils.set_seed(0, THREADS)
    net = build_model(dict(audio_dim=16, text_dim=24, hidden=32, heads=4, self_layers=1, co_layers=1, dropout=0.1,
                           max_len=64))
    opt, scaler = torch.optim.Adam(net.parameters(), 1e-3), utils.make_scaler(CPU, 'off')
    rng = np.random.default_rng(0)
    for _ in range(3):
        items = []
        for i in range(4):
            T, N = int(rng.integers(60, 200)), int(rng.integers(3, 9))
            cuts = np.linspace(0, T, N + 1).astype(int)
            items.append(dict(a=rng.normal(size=(T, 16)).astype(np.float32),
                              t=rng.normal(size=(N, 24)).astype(np.float32),
                              spans=[(int(a), int(b - a)) for a, b in zip(cuts[:-1], cuts[1:])],
                              y=rng.normal(size=3).astype(np.float32), idx=i))
        mscr_step(net, opt, scaler, mscr_collate(items), CPU, (0.2, 0.4, 0.6, 0.8, 1.0))
    return net


for net in (lstm(2), lstm(1), mscr()):
    print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in net.state_dict().values())).hexdigest())
print(torch.get_num_threads())
'''


def train(omp_threads, threads_arg=1):
    """SHA-256 of the ranker, Seq2Seq and MSCR weights trained in a fresh process whose environment asks for
    `omp_threads` threads (OMP_NUM_THREADS, MKL_NUM_THREADS and torch.set_num_threads); its torch thread count
    after set_seed(0, threads_arg)."""
    env = {**os.environ, 'OMP_NUM_THREADS': str(omp_threads), 'MKL_NUM_THREADS': str(omp_threads),
           'PYTHONPATH': str(REPO)}
    p = subprocess.run([sys.executable, '-c', CHILD, str(threads_arg), str(omp_threads)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    *digests, n = p.stdout.split()
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
