"""Ranker epoch at scale, before and after the parts/once-per-utterance change (issue 28): time per epoch and peak
resident memory at 1k and 10k pairs per epoch, the old code path (ranker.run_epoch of --base, read from git)
beside the current one.

    python bench/bench_ranker_scale.py                       # 1k and 10k pairs, 2 timed training steps each path
    python bench/bench_ranker_scale.py --pairs 200 --steps 1 --eval-old 64 --out /tmp/r.json    # smoke size

Data: the demo corpus's LLD store (all 420 utterances; build it with `bash run_demo.sh` or
make_demo_corpus.py + extract_features.py) and seeded random preference pairs over those utterances (labels
random: this bench times the code, it does not train a ranker). Model: a seed-0 ranker of the published shape
(LSTMnet 130 -> 130 -> 2), Adam lr 1e-4, batch 128 pairs, --threads 1 on both paths.

Every path runs in a fresh process (its peak resident memory is that process's ru_maxrss):
  train  --steps optimiser steps of 128 pairs, timed; an epoch of N pairs is N / 128 such steps
  eval   the validation pass: the current path over all N pairs (each utterance once); the old path over the first
         --eval-old pairs (a forward pass per pair: its time grows linearly with N, so it is extrapolated to N)
  F1     validation macro-F1 of the same (seed-0) weights on the first --eval-old pairs by both paths: identical
         confusion counts where the method is unchanged
Epoch time = N / 128 x step time + validation time (N pairs). The old path's training step at batch 128 holds
~8 GB; the current one runs the batch in parts of --max-chunks chunks.
"""
import argparse
import json
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))


def old_ranker(base):
    """ranker.py as it was at git revision `base`, as a module."""
    src = subprocess.run(['git', 'show', f'{base}:ranker.py'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType('ranker_old')
    mod.__file__ = str(ROOT / 'ranker.py')
    exec(compile(src, f'{base}:ranker.py', 'exec'), mod.__dict__)
    return mod


def worker(a):
    import numpy as np
    import torch

    import cli
    import ranker
    from dataloader import PadCollate, PairDataset, chunk_frames
    from model import LSTMnet
    from utils import make_scaler, set_seed
    corpus = cli.open_corpus(None, None)
    store = cli.open_store(None, corpus)
    names = [n for n in corpus.files('Train') + corpus.files('Validation') + corpus.files('Test') if n in store]
    rng = np.random.default_rng(0)
    a_, b_ = rng.integers(0, len(names), a.pairs), rng.integers(0, len(names), a.pairs)
    keep = a_ != b_
    ds = PairDataset(store, names, a_[keep], b_[keep], rng.integers(0, 2, int(keep.sum())), lambda n, v: v)
    m, cpu = chunk_frames(store.hop), torch.device('cpu')
    collate = PadCollate(m, n_feats=2)
    old = a.path == 'old'
    run_epoch = old_ranker(a.base).run_epoch if old else ranker.run_epoch

    def batches(n_pairs):
        sub = torch.utils.data.Subset(ds, range(min(n_pairs, len(ds))))
        for x, lengths, y, *ids in torch.utils.data.DataLoader(sub, 128, collate_fn=collate):
            yield (x, lengths, y) if old else (x, lengths, y, *ids)

    set_seed(0, 1)
    net = LSTMnet(130, 130, 2)
    out = {'path': a.path, 'pairs': len(ds), 'batch': 128}
    kw = {} if old else {'max_chunks': a.max_chunks}
    _, conf = run_epoch(net, batches(a.eval_old), m, cpu, 'off', show=False, **kw)
    out['f1_first_pairs'] = {'pairs': min(a.eval_old, len(ds)), 'macro_f1': ranker.macro_f1(conf)[0],
                             'confusion': conf.astype(int).tolist()}
    n_eval = a.eval_old if old else len(ds)
    t = time.perf_counter()
    run_epoch(net, batches(n_eval), m, cpu, 'off', show=False, **kw)
    secs = time.perf_counter() - t
    out['eval'] = {'pairs_timed': min(n_eval, len(ds)), 'seconds_timed': secs,
                   'seconds_epoch': secs * len(ds) / min(n_eval, len(ds)), 'extrapolated': old}
    out['peak_rss_mb_eval'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    opt, scaler = torch.optim.Adam(net.parameters(), lr=1e-4), make_scaler(cpu, 'off')
    t = time.perf_counter()
    run_epoch(net, batches(a.steps * 128), m, cpu, 'off', opt, scaler, show=False, **kw)
    step = (time.perf_counter() - t) / a.steps
    out['train'] = {'steps_timed': a.steps, 'seconds_per_step': step, 'seconds_epoch': step * len(ds) / 128}
    out['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out['seconds_per_epoch'] = out['train']['seconds_epoch'] + out['eval']['seconds_epoch']
    print(json.dumps(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pairs', default='1000,10000', help='comma list of pairs per epoch (default %(default)s)')
    ap.add_argument('--steps', type=int, default=2, help='training steps of 128 pairs timed per path (default 2)')
    ap.add_argument('--eval-old', type=int, default=512, help='pairs the old validation path is timed on and both '
                    'paths compare F1 on (default 512)')
    ap.add_argument('--base', default='1aeb29a', help='git revision of the old code path (default: before issue 28)')
    ap.add_argument('--max-chunks', type=int, default=768, help="the current path's --max-chunks (default 768)")
    ap.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'ranker_scale.json'), help='JSON to write')
    ap.add_argument('--worker', default=None, choices=['old', 'new'], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        a.path, a.pairs = a.worker, int(a.pairs)
        return worker(a)
    import common
    info, rows, t0 = common.machine(), [], time.time()
    print(common.machine_line(info))
    for n in [int(v) for v in a.pairs.split(',')]:
        for path in ('old', 'new'):
            p = subprocess.run([sys.executable, __file__, '--worker', path, '--pairs', str(n), '--steps', str(a.steps),
                                '--eval-old', str(a.eval_old), '--base', a.base, '--max-chunks', str(a.max_chunks)],
                               cwd=ROOT, capture_output=True, text=True)
            if p.returncode:
                sys.exit(p.stderr[-3000:])
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        o, c = rows[-2], rows[-1]
        print(f"{n:>6} pairs: epoch {o['seconds_per_epoch']:7.1f} s -> {c['seconds_per_epoch']:7.1f} s "
              f"(x{o['seconds_per_epoch'] / c['seconds_per_epoch']:.2f}); peak RSS {o['peak_rss_mb']:6.0f} MB -> "
              f"{c['peak_rss_mb']:6.0f} MB; train step {o['train']['seconds_per_step']:.1f} s -> "
              f"{c['train']['seconds_per_step']:.1f} s; validation {o['eval']['seconds_epoch']:.1f} s -> "
              f"{c['eval']['seconds_epoch']:.1f} s; F1 on {o['f1_first_pairs']['pairs']} pairs "
              f"{o['f1_first_pairs']['macro_f1']:.4f} / {c['f1_first_pairs']['macro_f1']:.4f} "
              f"(identical: {o['f1_first_pairs']['confusion'] == c['f1_first_pairs']['confusion']})")
    res = {'bench': 'ranker_scale', 'date': time.strftime('%Y-%m-%d %H:%M:%S'),
           'command': 'python bench/bench_ranker_scale.py ' + ' '.join(argv if argv is not None else sys.argv[1:]),
           'machine': info, 'load_avg_1min_end': __import__('os').getloadavg()[0], 'base': a.base,
           'wall_seconds': round(time.time() - t0, 1), 'rows': rows}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + '\n')
    print(f'-> {a.out}')


if __name__ == '__main__':
    main()
