"""Compare two builds of the same artefacts byte for byte (SHA-256) and write the result as JSON.

    python bench/compare_builds.py --pair /clone1/NormTerm /clone2/runs/v/NormTerm \
        --pair /clone1/trained_mscr_model /clone2/runs/v/mscr --out bench/results/rebuild_check.json

Each --pair FIRST SECOND names two files, or two folders: in a folder pair every artefact of SECOND
(normalisation .mat files, model weights .pth.tar, preference-label .csv files and ranking-sequence
.json files; not the provenance records .meta.json, which name their own paths, nor logs and plots, which
hold wall times) is compared with the file of the same name in FIRST. SECOND may hold fewer files than FIRST
(a partial second run); a file of SECOND missing from FIRST is reported as such. Exit code 1 when any
compared pair differs. The JSON lists every file with both hashes, and the git revision of each folder's
clone, so a reader can see what was built twice and by which code.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils import sha256_file  # noqa: E402

ARTEFACTS = ('.mat', '.pth.tar', '.csv', '.json')


def is_artefact(p):
    n = p.name
    return (n.endswith(ARTEFACTS) and not n.endswith(('.meta.json', '.log.csv', '.resume.pt'))
            and n not in ('skipped.csv', 'normterm.json'))


def revision(path):
    """git revision of the clone holding path (None outside a git checkout)."""
    d = path if path.is_dir() else path.parent
    try:
        out = subprocess.run(['git', '-C', str(d), 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return out.stdout.strip() or None


def compare_pair(first, second):
    if not first.exists() or not second.exists():
        missing = first if not first.exists() else second
        raise SystemExit(f'error: {missing} does not exist; pass two existing files or folders to --pair')
    if second.is_dir():
        names = sorted(p.relative_to(second) for p in second.rglob('*') if p.is_file() and is_artefact(p))
        pairs = [(first / n, second / n) for n in names]
    else:
        pairs = [(first, second)]
    rows = []
    for a, b in pairs:
        hb = sha256_file(b)
        ha = sha256_file(a) if a.exists() else None
        rows.append({'first': str(a), 'second': str(b), 'sha256_first': ha, 'sha256_second': hb,
                     'identical': ha == hb, 'missing_in_first': ha is None, 'bytes': b.stat().st_size})
    return {'first': str(first), 'second': str(second), 'revision_first': revision(first),
            'revision_second': revision(second), 'files': rows,
            'identical': sum(r['identical'] for r in rows), 'different': sum(not r['identical'] for r in rows)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--pair', nargs=2, action='append', required=True, metavar=('FIRST', 'SECOND'),
                   help='two files, or two folders whose artefacts are compared by name (repeat for more pairs)')
    p.add_argument('--note', default='', help='free text stored in the JSON (e.g. how each build was run)')
    p.add_argument('--out', help='JSON to write (default: print only)')
    args = p.parse_args(argv)
    res = [compare_pair(Path(a), Path(b)) for a, b in args.pair]
    for r in res:
        print(f'{r["second"]} vs {r["first"]}: {r["identical"]} identical, {r["different"]} different')
        for f in r['files']:
            if not f['identical']:
                print(f'  DIFFERENT: {f["second"]}' + (' (not in the first build)' if f['missing_in_first'] else ''))
    n_same, n_diff = sum(r['identical'] for r in res), sum(r['different'] for r in res)
    print(f'{n_same} of {n_same + n_diff} files identical')
    if args.out:
        out = {'bench': 'compare_builds', 'date': time.strftime('%Y-%m-%d %H:%M:%S'),
               'command': 'python bench/compare_builds.py ' + ' '.join(
                   f'--pair {a} {b}' for a, b in args.pair) + (f' --out {args.out}' if args.out else ''),
               'note': args.note, 'identical': n_same, 'different': n_diff, 'pairs': res}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out + '.tmp')
        tmp.write_text(json.dumps(out, indent=1) + '\n')
        tmp.replace(args.out)
        print(f'wrote {args.out}')
    return 1 if n_diff else 0


if __name__ == '__main__':
    sys.exit(main())
