"""The folder one device call carries for bench/gpu_check.sh: .gpu_carry/ (ignored by git).

    python bench/gpu_carry.py prepare     # here, with ../shared and the package index (gpu_check.sh --prepare)
    python bench/gpu_carry.py verify      # first step of every check run, on the device and in the rehearsal
    python bench/gpu_carry.py block DIR   # rehearsal only: stubs that make the packages the device lacks fail

The lent GPU machine reaches no package index and has its own Python 3.12, PyTorch and transformers
(bench/device_packages.txt lists what it holds). What the toolkit needs beyond that travels here:

  whl/          wheels (CPython 3.12, manylinux x86-64) of the runtime packages the machine lacks --
                openSMILE, soundfile, soxr, espeakng-loader -- and of every dependency of theirs it lacks,
                at the versions installed here (the ones the toolkit is tested with)
  pretrained/   the authors' released models (NormTerm, rankers, Seq2Seq v1.6) from ../shared/pretrained
  manifest.json every file with its size and SHA-256, the wheels' target, the bytes the call carries

The MiniLM text-model package (88 MB) does not travel: the check builds a tiny tokenizer on the spot. The
demo corpus is synthesised on the device (eSpeak NG comes with the espeakng-loader wheel).
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / '.gpu_carry'
RELEASE = Path('pretrained') / 'Chunk-Level-Emotion-Retrieval'
RELEASE_PARTS = ('LICENSE', 'NormTerm', 'chunk_emotion_rankers', 'trained_seq2seq_model_v1.6')
NEEDED = ('opensmile', 'soundfile', 'soxr', 'espeakng-loader')    # runtime packages of the toolkit (requirements.txt)
PY, PLATFORMS = '3.12', ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64',
                         'manylinux2014_x86_64', 'manylinux1_x86_64')
LIMIT_MIB = 64            # what one device call may carry, the working tree included


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def device_packages():
    lines = (REPO / 'bench' / 'device_packages.txt').read_text().splitlines()
    return {norm(x) for x in lines if x.strip() and not x.startswith('#')}


def requirements(dist_name):
    """[(name, marker)] of an installed distribution's Requires-Dist, extras left out."""
    from packaging.requirements import Requirement
    out = []
    for r in md.distribution(dist_name).requires or []:
        req = Requirement(r)
        if req.marker is None or 'extra' not in str(req.marker):
            out.append(req)
    return out


def device_env():
    return {'python_version': PY, 'python_full_version': PY + '.3', 'sys_platform': 'linux',
            'platform_system': 'Linux', 'platform_machine': 'x86_64', 'implementation_name': 'cpython',
            'platform_python_implementation': 'CPython', 'os_name': 'posix', 'extra': ''}


def closure():
    """{distribution: version} of NEEDED and their dependencies that the device lacks (installed versions)."""
    have, todo, out = device_packages(), list(NEEDED), {}
    while todo:
        name = norm(todo.pop())
        if name in out or name in have:
            continue
        out[name] = md.version(name)
        todo += [r.name for r in requirements(name) if r.marker is None or r.marker.evaluate(device_env())]
    return dict(sorted(out.items()))


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def tree_bytes():
    """Bytes of what a call sends besides the carried folder: tracked and untracked-not-ignored files."""
    files = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b'\0')
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def prepare(args):
    shared = Path(args.shared)
    if not (shared / RELEASE / 'NormTerm').is_dir():
        raise SystemExit(f'error: {shared / RELEASE} holds no release (NormTerm/ missing); pass --shared DIR')
    if CARRY.exists():
        shutil.rmtree(CARRY)
    (CARRY / 'whl').mkdir(parents=True)
    pins = closure()
    cmd = [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:', '--python-version', PY,
           '--implementation', 'cp', *[x for p in PLATFORMS for x in ('--platform', p)], '-d', str(CARRY / 'whl'),
           *[f'{k}=={v}' for k, v in pins.items()]]
    print('pip download (CPython 3.12, manylinux x86-64):', ' '.join(f'{k}=={v}' for k, v in pins.items()), flush=True)
    subprocess.run(cmd, check=True)
    (CARRY / RELEASE).mkdir(parents=True)
    for part in RELEASE_PARTS:
        src, dst = shared / RELEASE / part, CARRY / RELEASE / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    files = sorted(p for p in CARRY.rglob('*') if p.is_file())
    carried = sum(p.stat().st_size for p in files)
    tree = tree_bytes()
    manifest = {'made_by': 'bash bench/gpu_check.sh --prepare', 'wheels_for': f'CPython {PY}, ' + ', '.join(PLATFORMS),
                'packages': pins, 'release_from': '../shared/' + str(RELEASE),
                'files': {str(p.relative_to(CARRY)): {'bytes': p.stat().st_size, 'sha256': sha256(p)} for p in files},
                'carried_bytes': carried, 'tree_bytes': tree, 'total_mib': round((carried + tree) / 2 ** 20, 1),
                'limit_mib': LIMIT_MIB}
    (CARRY / 'manifest.json').write_text(json.dumps(manifest, indent=1) + '\n')
    print(f'{CARRY.name}/: {len(files)} files, {carried / 2 ** 20:.1f} MiB; with the working tree '
          f'({tree / 2 ** 20:.1f} MiB) {manifest["total_mib"]} MiB of the {LIMIT_MIB} MiB a call carries')
    if carried + tree > (LIMIT_MIB - 2) * 2 ** 20:
        raise SystemExit(f'error: {manifest["total_mib"]} MiB is too close to the {LIMIT_MIB} MiB a call carries')
    verify(args)


def verify(args):
    """Every manifest file present with its checksum; every wheel's dependency either on the device or carried."""
    import zipfile

    from packaging.requirements import Requirement
    mf = CARRY / 'manifest.json'
    if not mf.is_file():
        raise SystemExit(f'error: no {mf.relative_to(REPO)}: run `bash bench/gpu_check.sh --prepare` first (here, '
                         'with ../shared and the package index), then carry .gpu_carry in the device call')
    man = json.loads(mf.read_text())
    bad = [f for f, v in man['files'].items() if not (CARRY / f).is_file() or sha256(CARRY / f) != v['sha256']]
    if bad:
        raise SystemExit(f'error: {len(bad)} carried files missing or changed, e.g. {bad[:3]}; run --prepare again')
    wheels = sorted((CARRY / 'whl').glob('*.whl'))
    carried = {norm(w.name.split('-')[0]) for w in wheels}
    have, missing = device_packages(), []
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            meta = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
        for line in meta.splitlines():
            if line.startswith('Requires-Dist:'):
                r = Requirement(line.split(':', 1)[1].strip())
                if r.marker is not None and not r.marker.evaluate(device_env()):
                    continue
                if norm(r.name) not in have | carried:
                    missing.append(f'{w.name}: {r}')
    if missing:
        raise SystemExit('error: dependencies neither on the device nor carried:\n  ' + '\n  '.join(missing))
    print(f'{CARRY.name}: {len(man["files"])} files verified; {len(wheels)} wheels, every dependency on the device '
          f'or carried; release {RELEASE}', flush=True)


def block(args):
    """Rehearsal: a stub package for every module installed here that the device lacks, nothing carries and no
    allowed package needs, so that importing it fails here as it would there (DIR goes first on PYTHONPATH)."""
    allowed = device_packages() | {norm(w.name.split('-')[0]) for w in (CARRY / 'whl').glob('*.whl')}
    # what the installed versions of allowed packages need is theirs, not the toolkit's (transformers here may
    # need a package the device's own transformers does not): not blocked
    installed = {norm(d.metadata['Name']) for d in md.distributions()}
    todo = [d for d in allowed if d in installed]
    while todo:
        for r in requirements(todo.pop()):
            if norm(r.name) in installed and norm(r.name) not in allowed:
                allowed.add(norm(r.name))
                todo.append(norm(r.name))
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for mod, dists in md.packages_distributions().items():
        if mod.isidentifier() and all(norm(d) not in allowed for d in dists):
            (out / mod).mkdir(exist_ok=True)
            (out / mod / '__init__.py').write_text(
                f'raise ImportError("{mod} ({", ".join(dists)}) is not on the lent GPU machine and not carried in '
                f'.gpu_carry (bench/gpu_carry.py)")\n')
            n += 1
    print(f'rehearsal: {n} modules installed here but absent on the device are blocked ({out})', flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', choices=['prepare', 'verify', 'block'])
    p.add_argument('dir', nargs='?', help='block: the folder of the stubs')
    p.add_argument('--shared', default=str(REPO.parent / 'shared'), help='the folder holding pretrained/ (default ../shared)')
    args = p.parse_args()
    {'prepare': prepare, 'verify': verify, 'block': block}[args.what](args)


if __name__ == '__main__':
    main()
