"""Do the trained weights depend on the thread count or the CPU kernel path? (docs/reproducibility.md)

    python bench/bench_threads.py                    # -> bench/results/threads.json
    python bench/bench_threads.py --threads 1,2,4    # fewer settings

Each setting trains the toolkit's three kinds of model in a fresh process with its own training steps (the
ranker's pair cross-entropy, the Seq2Seq CCC step, the MSCR step with multi-scale crops; small models, 3 Adam
steps each, the probe of tests/test_reproducible.py) and prints the SHA-256 of the weights:
  --threads N for each N of --threads        (utils.set_seed fixes torch's intra-op threads to N)
  --threads 0                                (torch's default: one thread per core; nothing fixed)
  --threads 1 with one CPU kernel path variable set otherwise than utils pins it (ONEDNN_MAX_CPU_ISA=SSE41,
  ATEN_CPU_CAPABILITY=default, MKL_CBWR=COMPATIBLE): each names a code path the CPU also has
Settings whose three hashes equal those of --threads 1 give the same weight bytes. Optional --time-ranker
also times one demo-size ranker step (128 pairs x 2 utterances x 22 chunks of 62 frames) per thread count.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / 'bench'):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

PROBE = r'''
import hashlib, sys, time
import numpy as np
import torch
import utils
from dataloader import mscr_collate
from model import LSTMnet
from mscr import build_model, mscr_step
from ranker import pair_logits
from seq2seq import seq2seq_step

THREADS, ENV_THREADS, TIME_PAIRS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(ENV_THREADS)    # what the caller's environment set (a notebook, a launcher)
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


def ranker_step_seconds(pairs):
    """One ranker training step at the demo's size: `pairs` pairs, 2 x 22 chunks of 62 frames each."""
    utils.set_seed(0, THREADS)
    net = LSTMnet(130, 130, 2)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    x, lengths = torch.randn(2 * pairs, 400, 130), torch.full((2 * pairs,), 400)
    t0 = time.perf_counter()
    d = pair_logits(net, x, lengths, 62, CPU)
    loss = torch.nn.functional.cross_entropy(d.flatten(0, 1), torch.ones(d.shape[0] * 22, dtype=torch.long))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


for net in (lstm(2), lstm(1), mscr()):
    print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in net.state_dict().values())).hexdigest())
print(torch.get_num_threads())
print(ranker_step_seconds(TIME_PAIRS) if TIME_PAIRS else 'nan')
'''
MODELS = ('ranker', 'seq2seq', 'mscr')
KERNEL_VARIANTS = {'ONEDNN_MAX_CPU_ISA': 'SSE41', 'ATEN_CPU_CAPABILITY': 'default', 'MKL_CBWR': 'COMPATIBLE'}


def probe(threads, env_threads=1, extra_env=None, time_pairs=0):
    """Train the three probe models in a fresh process -> ({model: sha256}, torch threads used, step seconds)."""
    env = {**os.environ, 'OMP_NUM_THREADS': str(env_threads), 'MKL_NUM_THREADS': str(env_threads),
           'PYTHONPATH': str(ROOT), **(extra_env or {})}
    p = subprocess.run([sys.executable, '-c', PROBE, str(threads), str(env_threads), str(time_pairs)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=1800)
    if p.returncode:
        raise RuntimeError(p.stderr[-3000:])
    *digests, n, secs = p.stdout.split()
    return dict(zip(MODELS, digests)), int(n), float(secs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', default='1,2,4,8', help='comma list of --threads values (0 is added: no pin)')
    ap.add_argument('--no-kernel-variants', action='store_true', help='skip the kernel-path variable settings')
    ap.add_argument('--time-ranker', type=int, default=0, metavar='PAIRS',
                    help='also time one ranker step of PAIRS pairs per thread count (the demo uses 128)')
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'threads.json'), help='JSON to write')
    args = ap.parse_args(argv)
    import common  # noqa: E402  (bench/common.py: the machine description)

    import utils  # noqa: E402,F401  (sets the CPU kernel-path pins that the probes inherit)
    t0 = time.time()
    counts = [int(t) for t in args.threads.split(',')]
    rows = []
    for t in counts + [0]:
        h, n, secs = probe(t, env_threads=t or os.cpu_count(), time_pairs=args.time_ranker if t else 0)
        rows.append({'setting': f'--threads {t}' if t else '--threads 0 (torch default)', 'torch_threads': n,
                     'sha256': h, 'ranker_step_seconds': None if secs != secs else round(secs, 2)})
        print(rows[-1]['setting'], n, 'threads', {k: v[:12] for k, v in h.items()},
              f'{secs:.2f} s per ranker step' if secs == secs else '')
    if not args.no_kernel_variants:
        for k, v in KERNEL_VARIANTS.items():
            h, n, _ = probe(1, extra_env={k: v})
            rows.append({'setting': f'--threads 1, {k}={v}', 'torch_threads': n, 'sha256': h,
                         'ranker_step_seconds': None})
            print(rows[-1]['setting'], {k2: v2[:12] for k2, v2 in h.items()})
    ref = rows[0]['sha256']
    for r in rows:
        r['same_as_threads_1'] = {m: r['sha256'][m] == ref[m] for m in MODELS}
    out = {'bench': 'threads', 'date': time.strftime('%Y-%m-%d %H:%M:%S'),
           'command': 'python bench/bench_threads.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
           'machine': common.machine(), 'pins': {k: os.environ.get(k) for k in KERNEL_VARIANTS},
           'wall_seconds': round(time.time() - t0, 1), 'rows': rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out + '.tmp')
    tmp.write_text(json.dumps(out, indent=1) + '\n')
    tmp.replace(args.out)
    print('same weights as --threads 1:', ', '.join(f'{r["setting"]}: {all(r["same_as_threads_1"].values())}'
                                                    for r in rows[1:]))
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
