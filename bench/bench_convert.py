"""Bench 6 -- corpus converter throughput: `prepare_corpus.py` on the real RAVDESS and Emo-DB copies (files/s).

    python bench/bench_convert.py                                   # ../shared/datasets/{ravdess,emodb}, 3 repeats
    python bench/bench_convert.py --ravdess DIR --emodb DIR --repeats 1 --out /tmp/b

Each corpus is converted `--repeats` times into a fresh temporary folder (the converter's own code path:
corpora.<name>.convert, as `prepare_corpus.py NAME SRC OUT` runs it, without the printing); the JSON keeps
every wall time and the median files/s. RAVDESS links its audio (symlinks: header reads, label and fold
writing); Emo-DB resamples every file to 16 kHz, aligns the syllable files to words and writes TextGrids, so
the two rates measure different work. The source files are read from the page cache after the first repeat.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DATASETS = ROOT.parent / 'shared' / 'datasets'


def bench_one(name, src, repeats):
    from corpora import get
    conv = get(name)
    times, n, skipped = [], None, None
    for _ in range(repeats):
        tmp = Path(tempfile.mkdtemp(prefix=f'bench_convert_{name}_'))
        try:
            t0 = time.perf_counter()
            out, rep = conv.convert(src, tmp / name, progress=False)
            times.append(time.perf_counter() - t0)
            n = sum(1 for _ in (out / 'Audios').iterdir())
            skipped = len(rep.skipped)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median(times)
    return {'corpus': name, 'source': str(Path(src).resolve().relative_to(ROOT.parent)) if Path(src).resolve()
            .is_relative_to(ROOT.parent) else Path(src).name, 'files': n, 'skipped': skipped, 'repeats': repeats,
            'seconds': [round(t, 3) for t in times], 'median_seconds': round(med, 3),
            'files_per_second': round(n / med, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ravdess', default=str(DATASETS / 'ravdess'), help='RAVDESS folder with Actor_NN/ (default '
                   '../shared/datasets/ravdess; skipped when absent)')
    p.add_argument('--emodb', default=str(DATASETS / 'emodb'), help='Emo-DB root with wav/ (default '
                   '../shared/datasets/emodb; skipped when absent)')
    p.add_argument('--repeats', type=int, default=3, help='conversions per corpus (median reported; default 3)')
    p.add_argument('--out', default=None, help='folder for convert.json (default bench/results)')
    a = p.parse_args(argv)
    info = common.machine()
    print(common.machine_line(info))
    rows = []
    for name, src in (('ravdess', a.ravdess), ('emodb', a.emodb)):
        if not Path(src).is_dir():
            print(f'{name}: {src} absent, skipped')
            continue
        r = bench_one(name, src, a.repeats)
        rows.append(r)
        print(f"{name}: {r['files']} files in {r['median_seconds']} s (median of {a.repeats}) -> "
              f"{r['files_per_second']} files/s")
    if not rows:
        raise SystemExit('error: neither corpus found; pass --ravdess / --emodb')
    common.save_results('convert', {'machine': info, 'results': rows}, a.out)
    print('RESULT ' + '; '.join(f"{r['corpus']} {r['files_per_second']} files/s ({r['files']} files)" for r in rows))
    return rows


if __name__ == '__main__':
    main()
