"""Bench 4 -- feature normalisation statistics: streaming norm_para.py vs concatenating all frames.

    python bench/bench_norm.py                                   # base 250 utterances (~6 s each) x 1, 4, 16
    python bench/bench_norm.py --base-utts 9375                  # 16x = 150k utterances (MSP-Podcast v1.11 size;
                                                                 #   ~29 GB store, the concat side needs ~60 GB RAM)
    python bench/bench_norm.py --base-utts 20 --scales 1,2       # smoke size

One synthetic 130-d LLD feature store (16 ms hop) of base x max(scales) utterances is written with the
project's FeatureStoreWriter; scale s uses its first base x s utterances. For each scale each method runs
in a fresh Python subprocess, twice: once timed, once under tracemalloc for the peak of Python/numpy heap
allocations (what grows with the corpus; the store's memmap pages are file cache, not counted). Both are
reported: the heap peak and the resident-set peak (ru_maxrss of the timed child), which also counts the
interpreter and the libraries it loads and every memory-mapped store page read,
so streaming's resident peak grows with the store although its heap does not.
  streaming: norm.feature_stats (what norm_para.py runs) (the project's one-pass, Chan-merged float64 statistics)
  concat:    the way the statistics were first computed: load every utterance (a copy, as from per-file
             storage), np.concatenate all frames (float32), then .mean(0) and .std(0) with float64
             accumulation (float32 accumulation drifts by ~1e-3 std at 1M frames)
Both give the same means/stds (checked). The store is read from the page cache in both cases (it was just
written), so the times compare compute, not disk.
"""
import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import numpy as np  # noqa: E402

METHODS = ['streaming', 'concat']


def run_method(method, store_path, n, trace):
    """Child process body: statistics of the first n utterances; returns a result dict."""
    from feature_store import FeatureStore
    store = FeatureStore(store_path)
    names = store.names[:n]
    if trace:
        import tracemalloc
        tracemalloc.start()
    t0 = time.perf_counter()
    if method == 'streaming':
        from norm import feature_stats
        mean, std, frames, _, _ = feature_stats(store, names, progress=False)
    else:
        feats = [np.array(store.get(k)) for k in names]
        X = np.concatenate(feats)
        del feats
        mean, std, frames = X.mean(0, dtype=np.float64), X.std(0, dtype=np.float64), len(X)
        del X
    sec = time.perf_counter() - t0
    peak = None
    if trace:
        import tracemalloc
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return dict(method=method, n_utts=n, frames=int(frames), seconds=sec, peak_bytes=peak,
                maxrss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                mean=np.asarray(mean, np.float64).tolist(), std=np.asarray(std, np.float64).tolist())


def child(method, store_path, n, trace):
    cmd = [sys.executable, __file__, '--worker', method, '--store', str(store_path), '--worker-n', str(n)]
    if trace:
        cmd.append('--trace')
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f'error: {method} child failed ({" ".join(cmd)}):\n{out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--base-utts', type=int, default=250, help='utterances at scale 1 (default 250 ~ 25 min of speech)')
    p.add_argument('--scales', default='1,4,16', help='comma-separated multiples of --base-utts (default 1,4,16)')
    p.add_argument('--mean-sec', type=float, default=6.0, help='mean utterance duration in seconds (default 6)')
    p.add_argument('--dim', type=int, default=130, help='feature dimensions (default 130, the LLDs)')
    p.add_argument('--hop', type=float, default=0.016, help='frame hop in seconds (default 0.016, the published preset)')
    p.add_argument('--workdir', default=None, help='folder for the synthetic store, kept and reused by a rerun '
                   '(default: a temporary folder, removed)')
    p.add_argument('--seed', type=int, default=0, help='seed of the synthetic store')
    p.add_argument('--out', default=None, help='folder for the JSON and PNG (default bench/results and images/)')
    p.add_argument('--no-plot', action='store_true', help='do not write images/bench_norm.png')
    p.add_argument('--worker', choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument('--store', help=argparse.SUPPRESS)
    p.add_argument('--worker-n', type=int, help=argparse.SUPPRESS)
    p.add_argument('--trace', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_method(args.worker, args.store, args.worker_n, args.trace)))
        return

    scales = sorted({int(s) for s in args.scales.split(',') if s.strip()})
    if not scales or scales[0] < 1:
        raise SystemExit(f'error: --scales {args.scales!r}: give positive integers, e.g. 1,4,16')
    info = common.machine('cpu')
    print(common.machine_line(info))
    wd, tmp = common.work_dir(args.workdir, 'bench_norm_')
    try:
        n_max = args.base_utts * scales[-1]
        t0 = time.perf_counter()
        store = common.make_store(wd / 'lld', n_max, args.dim, args.hop, args.mean_sec, args.seed)
        lens = np.array([store.index[k][1] for k in store.names])
        print(f'synthetic store: {n_max:,} utterances, {lens.sum():,} frames ({common.gb(lens.sum() * args.dim * 4):.2f} GB)'
              f' built in {time.perf_counter() - t0:.1f} s')
        rows = []
        for s in scales:
            n = args.base_utts * s
            row = dict(scale=s, n_utts=n, frames=int(lens[:n].sum()), gb=common.gb(lens[:n].sum() * args.dim * 4))
            for m in METHODS:
                timed, traced = child(m, store.path, n, False), child(m, store.path, n, True)
                row[m] = dict(seconds=timed['seconds'], peak_mb=traced['peak_bytes'] / 1e6,
                              maxrss_mb=timed['maxrss_bytes'] / 1e6, mean=timed['mean'], std=timed['std'])
            a, b = row['streaming'], row['concat']
            std = np.maximum(np.asarray(b['std']), 1e-8)
            err = float(max(np.max(np.abs(np.subtract(a['mean'], b['mean'])) / std),
                            np.max(np.abs(np.subtract(a['std'], b['std'])) / std)))
            row['max_rel_diff'] = err
            row['agree'] = err < 1e-4
            for m in METHODS:
                del row[m]['mean'], row[m]['std']
            rows.append(row)
            print(f'{s:>3}x {n:>7,} utt {row["gb"]:6.2f} GB | streaming {a["seconds"]:7.2f} s heap {a["peak_mb"]:8.1f} MB'
                  f' RSS {a["maxrss_mb"]:7.0f} MB | concat {b["seconds"]:7.2f} s heap {b["peak_mb"]:8.1f} MB RSS '
                  f'{b["maxrss_mb"]:7.0f} MB | stats agree: {row["agree"]} (max diff {err:.1e} std)')
        last = rows[-1]
        mem_ratio = last['concat']['peak_mb'] / max(last['streaming']['peak_mb'], 1e-9)
        rss_ratio = last['concat']['maxrss_mb'] / max(last['streaming']['maxrss_mb'], 1e-9)
        t_ratio = last['concat']['seconds'] / last['streaming']['seconds']
        growth = last['streaming']['peak_mb'] / max(rows[0]['streaming']['peak_mb'], 1e-9)
        ok = all(r['agree'] for r in rows)
        print(f'RESULT norm: at {last["scale"]}x ({last["n_utts"]:,} utt, {last["gb"]:.2f} GB) streaming peak '
              f'{last["streaming"]["peak_mb"]:.1f} MB vs concat {last["concat"]["peak_mb"]:,.0f} MB '
              f'({mem_ratio:,.0f}x less heap; streaming heap x{growth:.2f} from {scales[0]}x to {scales[-1]}x), '
              f'resident {last["streaming"]["maxrss_mb"]:,.0f} MB vs {last["concat"]["maxrss_mb"]:,.0f} MB '
              f'({rss_ratio:.1f}x), '
              f'time {last["streaming"]["seconds"]:.2f} s vs {last["concat"]["seconds"]:.2f} s '
              f'(concat/streaming {t_ratio:.2f}); stats agree: {ok}')
        res = dict(machine=info, base_utts=args.base_utts, scales=scales, dim=args.dim, hop=args.hop,
                   mean_sec=args.mean_sec, rows=rows, memory_ratio_at_max=mem_ratio, rss_ratio_at_max=rss_ratio,
                   time_ratio_at_max=t_ratio,
                   streaming_peak_growth=growth, agree=ok)
        common.save_results('norm', res, args.out)
        if not args.no_plot:
            plt = common.plt_agg()
            fig, axs = plt.subplots(1, 2, figsize=(9, 3.3))
            x = [r['gb'] for r in rows]
            for m, c in (('streaming', 'tab:green'), ('concat', 'tab:gray')):
                axs[0].plot(x, [r[m]['peak_mb'] for r in rows], 'o-', color=c, label=f'{m} heap')
                axs[0].plot(x, [r[m]['maxrss_mb'] for r in rows], 's--', color=c, label=f'{m} resident')
                axs[1].plot(x, [r[m]['seconds'] for r in rows], 'o-', color=c, label=m)
            axs[0].set_ylabel('peak MB (heap: tracemalloc; resident: ru_maxrss)')
            axs[0].set_yscale('log')
            axs[1].set_ylabel('seconds')
            for ax in axs:
                ax.set_xlabel('feature store size (GB float32)')
                ax.grid(alpha=0.3)
                ax.legend()
            fig.suptitle(f'NormTerm statistics, {", ".join(f"{s}x" for s in scales)} x {args.base_utts} utterances',
                         fontsize=9)
            fig.tight_layout()
            common.save_png(fig, 'norm', args.out and Path(args.out))
        if not ok:
            raise SystemExit('error: streaming and concatenated statistics differ')
        return res
    finally:
        if tmp:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == '__main__':
    main()
