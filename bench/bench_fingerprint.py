"""Bench -- content fingerprints (identity.py): hashing N files the first time vs a rerun from the hash cache.

    python bench/bench_fingerprint.py                          # 100k files of 2 KiB (default)
    python bench/bench_fingerprint.py --n 2000 --kib 1         # smoke size

N small files are written into a temporary folder; each measurement runs in a fresh Python process (so the
cache is read from disk, as in a rerun of a command):
  stat_only: os.stat of every file (the floor any change detection pays)
  first:     identity.file_hashes with an empty cache (reads and hashes every byte, fills the cache)
  cached:    the same call again (files unchanged: a stat per file and a look-up)
  one_edit:  one file rewritten, then the call again (only that file is hashed)
and the digest of the cached and first passes must be equal. CPU time (user + sys of the child) is reported
next to wall time: on a shared machine CPU time is the steadier number.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import identity
folder, mode = sys.argv[2], sys.argv[3]
paths = sorted(os.path.join(folder, n) for n in os.listdir(folder))
t0 = time.perf_counter()
if mode == 'stat_only':
    for p in paths:
        os.stat(p)
    d = None
else:
    h = identity.file_hashes(paths)
    d = identity.digest(sorted([os.path.basename(p), *h[p]] for p in paths))
print(json.dumps({'seconds': time.perf_counter() - t0, 'digest': d}))
'''


def child(folder, mode, cache):
    env = {**os.environ, 'SER_HASH_CACHE': str(cache)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, '-c', CHILD, str(REPO), str(folder), mode], env=env, check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = json.loads(out.strip().splitlines()[-1])
    return {'seconds_in_call': round(res['seconds'], 3), 'wall_process': round(wall, 3),
            'cpu_process': round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 3), 'digest': res['digest']}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=100_000, help='number of files (default 100000)')
    p.add_argument('--kib', type=int, default=2, help='size of each file in KiB (default 2)')
    p.add_argument('--workdir', default=None, help='folder for the files (default: a temporary one, removed)')
    p.add_argument('--out', default=None, help='folder of fingerprint.json (default bench/results)')
    a = p.parse_args(argv)
    work, temp = common.work_dir(a.workdir, 'bench_fp_')
    try:
        files, cache = work / 'files', work / 'hashes.sqlite'
        files.mkdir(exist_ok=True)
        block = os.urandom(a.kib * 1024)
        t0 = time.perf_counter()
        for i in range(a.n):
            (files / f'utt_{i:06d}.wav').write_bytes(i.to_bytes(4, 'little') + block[4:])
        write_s = time.perf_counter() - t0
        if cache.exists():
            cache.unlink()
        res = {'stat_only': child(files, 'stat_only', cache), 'first': child(files, 'hash', cache),
               'cached': child(files, 'hash', cache)}
        (files / 'utt_000000.wav').write_bytes(b'edited' + block)
        res['one_edit'] = child(files, 'hash', cache)
        assert res['first']['digest'] == res['cached']['digest'], 'cached digest differs from the first pass'
        assert res['one_edit']['digest'] != res['cached']['digest'], 'an edited file did not change the digest'
        ratio = res['first']['seconds_in_call'] / max(res['cached']['seconds_in_call'], 1e-9)
        out = {'machine': common.machine(), 'n_files': a.n, 'bytes_per_file': a.kib * 1024,
               'seconds_writing_files': round(write_s, 2), 'cache_bytes': cache.stat().st_size, **res,
               'first_over_cached': round(ratio, 1),
               'note': 'seconds_in_call: identity.file_hashes (or the stat loop) alone; wall/cpu_process: the whole '
                       'child process incl. Python start-up and imports; the files are in the page cache'}
        for k in ('stat_only', 'first', 'cached', 'one_edit'):
            r = res[k]
            print(f'{k:10s} {r["seconds_in_call"]:8.2f} s in the call, process {r["wall_process"]:.2f} s wall, '
                  f'{r["cpu_process"]:.2f} s CPU')
        print(common.machine_line(out['machine']))
        print(f'RESULT fingerprint: {a.n} files, first {res["first"]["seconds_in_call"]:.2f} s, cached '
              f'{res["cached"]["seconds_in_call"]:.2f} s ({ratio:.1f}x less), stat alone '
              f'{res["stat_only"]["seconds_in_call"]:.2f} s')
        common.save_results('fingerprint', out, a.out)
        return out
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
