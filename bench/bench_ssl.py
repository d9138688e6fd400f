"""SSL frame stores: bytes per hour of each storage choice, and extraction batched vs one recording at a time.

    python bench/bench_ssl.py                      # tiny random encoders on CPU (what runs here)
    python bench/bench_ssl.py --n-utts 64 --hidden 64 --layers 4

1. Storage (computed from the store layout, and checked against a store this script writes): bytes per hour of
   audio = frames per second (1 / hop) x stored values per frame x bytes per value, for the real upstream sizes
   (base: 768-d, 12 layers; large: 1024-d, 24 layers; 20 ms hop), one layer or all hidden states, float16 or
   float32, and the disk an MSP-Podcast-size corpus (240 h) needs. The check: the data.bin of a tiny float16
   store written by extract_features.py --feature ssl, divided by its hours of audio, equals the formula.
2. Extraction (features.SSLExtractor, tiny random encoders built from transformers config classes, nothing
   downloads): the same seeded recordings (1-6 s) with --batch 8 vs --batch 1, CPU time (user+sys of this process:
   steadier than wall time on a shared machine) and wall time, and the largest difference between the two
   outputs (the bound tests/test_ssl.py asserts). wav2vec2 (layer-norm feature encoder: padded batches with an
   attention mask) and HuBERT (group norm: only recordings of equal length batch together) configurations.
Writes bench/results/ssl.json. Real upstream sizes on a GPU: bench/gpu_ssl_check.py.
"""
import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HOUR = 3600
CORPUS_HOURS = 240          # MSP-Podcast (v1.12 is about 240 h)
UPSTREAMS = {'base (768-d, 12 layers)': (768, 12), 'large (1024-d, 24 layers)': (1024, 24)}


def bytes_per_hour(dim, values_per_frame_layers, dtype_bytes, hop=0.02):
    return HOUR / hop * dim * values_per_frame_layers * dtype_bytes


def storage_table():
    rows = []
    for name, (dim, n_layers) in UPSTREAMS.items():
        for layers, n in (('one layer', 1), (f'all {n_layers + 1} hidden states', n_layers + 1)):
            for dtype, nb in (('float16', 2), ('float32', 4)):
                b = bytes_per_hour(dim, n, nb)
                rows.append({'upstream': name, 'layers': layers, 'dtype': dtype, 'GB_per_hour': round(b / 1e9, 3),
                             f'GB_for_{CORPUS_HOURS}h': round(b * CORPUS_HOURS / 1e9, 1)})
    return rows


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def extraction(kind, folder, sigs, batch_sizes=(8, 1)):
    import features as F
    out, res = {}, {'kind': kind}
    for bs in batch_sizes:
        ext = F.SSLExtractor(folder, 'all', 'cpu', batch=bs)
        ext(sigs[:1])                                      # warm-up
        c0, t0 = cpu_seconds(), time.perf_counter()
        out[bs] = ext(sigs)
        res[f'batch{bs}'] = {'cpu_s': round(cpu_seconds() - c0, 3), 'wall_s': round(time.perf_counter() - t0, 3)}
        res['batching'] = 'attention_mask' if ext.use_mask else 'equal_length'
        res['padding_probe'] = ext.probe_diff
    b, one = batch_sizes
    res['max_abs_diff_batched_vs_one'] = float(max(np.abs(x - y).max() for x, y in zip(out[b], out[one])))
    res['cpu_ratio_one_over_batched'] = round(res[f'batch{one}']['cpu_s'] / max(res[f'batch{b}']['cpu_s'], 1e-9), 2)
    return res


def store_check(folder, tmp):
    """A tiny float16 store through extract_features.py: measured bytes per hour vs the formula."""
    import extract_features
    from feature_store import FeatureStore
    from tests.fixtures import make_tiny_corpus
    root = make_tiny_corpus(Path(tmp) / 'corpus', n=8)
    extract_features.main(['--corpus', str(root), '--feature', 'ssl', '--upstream', str(folder), '--layers', 'all',
                           '--out', str(Path(tmp) / 'store'), '--device', 'cpu'])
    s = FeatureStore(Path(tmp) / 'store')
    hours = s.n_rows * s.hop / HOUR
    measured = (Path(tmp) / 'store' / 'data.bin').stat().st_size / hours
    return {'dim': s.dim, 'hop': s.hop, 'dtype': s.meta['dtype'], 'frames': s.n_rows,
            'bytes_per_hour_measured': round(measured), 'bytes_per_hour_formula': round(HOUR / s.hop * s.dim * 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n-utts', type=int, default=16, help='recordings per extraction run (default 16)')
    p.add_argument('--hidden', type=int, default=32, help='tiny encoder width (default 32)')
    p.add_argument('--layers', type=int, default=2, help='tiny encoder transformer layers (default 2)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--out', default=None, help='folder for ssl.json (default bench/results)')
    args = p.parse_args(argv)
    common.set_threads(args.threads)
    from tests.ssl_fixtures import make_upstream
    info = common.machine('cpu')
    print(common.machine_line(info))
    storage = storage_table()
    for r in storage:
        print(f"{r['upstream']:28s} {r['layers']:22s} {r['dtype']}: {r['GB_per_hour']:7.3f} GB/h, "
              f"{r[f'GB_for_{CORPUS_HOURS}h']:8.1f} GB for {CORPUS_HOURS} h")
    rng = np.random.default_rng(0)
    sigs = [0.1 * rng.standard_normal(int(rng.uniform(1, 6) * 16000)).astype(np.float32) for _ in range(args.n_utts)]
    cfg = dict(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=2,
               intermediate_size=2 * args.hidden, conv_dim=(32,) * 7)
    res = {'machine': info, 'storage': storage, 'corpus_hours': CORPUS_HOURS,
           'audio_seconds': round(sum(len(s) for s in sigs) / 16000, 2), 'n_utts': args.n_utts,
           'tiny_config': cfg, 'extraction': []}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ('wav2vec2', 'hubert'):
            folder = make_upstream(kind, Path(tmp) / kind, **cfg)
            r = extraction(kind, folder, sigs)
            res['extraction'].append(r)
            print(f"{kind}: batch 8 {r['batch8']['cpu_s']} s CPU / batch 1 {r['batch1']['cpu_s']} s CPU "
                  f"({r['batching']}); max |batched - one| {r['max_abs_diff_batched_vs_one']:.2e}")
        res['store_check'] = store_check(Path(tmp) / 'wav2vec2', tmp)
    sc = res['store_check']
    print(f"RESULT storage: large upstream, one layer float16 {storage[4]['GB_per_hour']} GB/h "
          f"({storage[4][f'GB_for_{CORPUS_HOURS}h']} GB for {CORPUS_HOURS} h); tiny store measured "
          f"{sc['bytes_per_hour_measured']} B/h = formula {sc['bytes_per_hour_formula']} B/h; extraction batched vs one "
          f"at a time: " + ', '.join(f"{r['kind']} {r['cpu_ratio_one_over_batched']}x CPU" for r in res['extraction']))
    common.save_results('ssl', res, args.out)
    return res


if __name__ == '__main__':
    main()
