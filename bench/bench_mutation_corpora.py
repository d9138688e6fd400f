"""Mutation testing of the corpus converters (corpora/) with mutmut: does the suite fail when a bug is planted?

    pip install mutmut==3.8.1                       # not a dependency of the toolkit or its tests
    python bench/bench_mutation_corpora.py                           # the label-logic functions (FUNCTIONS)
    python bench/bench_mutation_corpora.py --functions all           # all of corpora/ (3600 mutants: hours)
    python bench/bench_mutation_corpora.py --workdir /tmp/mut        # continue a run; rerun only what changed

mutmut (https://github.com/boxed/mutmut) writes every mutant of the chosen functions (an operator, a constant,
a comparison, an argument dropped, ...) and runs, for each, the tests that reach that function
(tests/test_corpora_units.py, tests/test_prepare_corpus.py, tests/test_accounting.py; the real-data and pipeline
tests are left out). A mutant the tests fail on is killed; one they pass on survived. The work happens in a
scratch copy of the tracked files (`--workdir`, kept so that a second call only reruns what changed) and
bench/results/mutation_corpora.json gets, per module, the mutants checked, killed, survived (each named, with
the reason when it is listed in EQUIVALENT as behaving like the original) and the kill rate. Slow on a busy
2-core machine (about 9 mutants a minute): not part of the suite.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ['tests/test_corpora_units.py', 'tests/test_prepare_corpus.py', 'tests/test_accounting.py']
# the functions that turn source values into labels, folds and skip decisions (mutmut names: module.x_function)
FUNCTIONS = ['corpora.crema_d.x_vote', 'corpora.msp_improv.x__values', 'corpora.msp_improv.x__out_of_scale',
             'corpora.iemocap.x__scaled', 'corpora.iemocap.x_parse_attributes', 'corpora.common.x_pad_avd',
             'corpora.common.x_five_to_seven', 'corpora.common.x_rotation_folds',
             'corpora.common.x_sex_balanced_groups', 'corpora.common.x_session_folds', 'corpora.ravdess.x_groups_of',
             'corpora.common.x_digital_silence', 'corpora.common.x_audio_seconds']
# survivors that behave exactly like the original on every input the converters can pass (name -> why)
EQUIVALENT = {}


def config_text():
    """setup.cfg [mutmut] of the scratch copy: mutate corpora/, copy the top-level modules the tests import."""
    also = sorted(p.name for p in ROOT.glob('*.py')) + ['chunk_emotion_rankers/', 'pytest.ini', 'ruff.toml']
    lines = ['[mutmut]', 'source_paths = corpora/', 'also_copy =', *[f'    {a}' for a in also],
             'pytest_add_cli_args_test_selection =', *[f'    {t}' for t in TESTS],
             'pytest_add_cli_args =', '    -k', '    not real and not pipeline', '    -p', '    no:cacheprovider',
             '    -x', '    -q', 'process_isolation = forkserver', 'mutate_only_covered_lines = true']
    return '\n'.join(lines) + '\n'


def scratch_copy(work):
    """Copy the tracked files of the working tree into `work` (kept: mutmut's results live in work/mutants)."""
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src, dst = ROOT / f, work / f
        if src.is_file() and not (dst.is_file() and dst.read_bytes() == src.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    cfg = work / 'setup.cfg'
    if not cfg.is_file() or cfg.read_text() != config_text():
        cfg.write_text(config_text())


def results(work):
    """{mutant name: status} from `mutmut results --all true`."""
    out = subprocess.run(['mutmut', 'results', '--all', 'true'], cwd=work, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(': ')
        if sep and name.startswith('corpora.'):
            res[name] = status
    return res


def summary(res, functions):
    chosen = {n: s for n, s in res.items() if functions == ['all'] or any(n.startswith(f + '__mutmut_')
                                                                          for f in functions)}
    mods = {}
    for name, status in sorted(chosen.items()):
        mod = name.split('.x')[0] if '.x_' in name else name.rsplit('.', 1)[0]
        m = mods.setdefault(mod, {'checked': 0, 'killed': 0, 'survived': [], 'equivalent': {}, 'other': {}})
        if status == 'not checked':
            continue
        m['checked'] += 1
        if status == 'killed':
            m['killed'] += 1
        elif status == 'survived' and name in EQUIVALENT:
            m['equivalent'][name] = EQUIVALENT[name]
        elif status == 'survived':
            m['survived'].append(name)
        else:
            m['other'][name] = status
    for m in mods.values():
        real = m['checked'] - len(m['equivalent'])
        m['kill_rate'] = round(m['killed'] / real, 4) if real else None
    return mods


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--functions', nargs='+', default=FUNCTIONS, help='mutmut function names (module.x_name) or all')
    p.add_argument('--workdir', default='/tmp/mutmut_corpora', help='scratch copy (kept between calls)')
    p.add_argument('--max-children', type=int, default=2)
    p.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'mutation_corpora.json'))
    a = p.parse_args(argv)
    if shutil.which('mutmut') is None:
        sys.exit('mutmut is not installed: pip install mutmut==3.8.1 (only this bench needs it)')
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scratch_copy(work)
    globs = [] if a.functions == ['all'] else [f + '*' for f in a.functions]
    t0, c0 = time.time(), os.times()
    run = subprocess.run(['mutmut', 'run', '--max-children', str(a.max_children), *globs], cwd=work,
                         capture_output=True, text=True)
    c1 = os.times()
    if run.returncode:
        sys.exit(f'mutmut run failed ({run.returncode}): {run.stderr[-2000:] or run.stdout[-2000:]}')
    mods = summary(results(work), a.functions)
    total = {k: sum(m[k] for m in mods.values()) for k in ('checked', 'killed')}
    total['equivalent'] = sum(len(m['equivalent']) for m in mods.values())
    total['survived'] = sum(len(m['survived']) for m in mods.values())
    real = total['checked'] - total['equivalent']
    total['kill_rate'] = round(total['killed'] / real, 4) if real else None
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
    rec = {'bench': 'bench/bench_mutation_corpora.py', 'tool': 'mutmut ' + subprocess.run(
               ['mutmut', '--version'], capture_output=True, text=True).stdout.strip().split()[-1],
           'code_revision': head.stdout.strip(), 'functions': a.functions, 'tests': TESTS,
           'test_filter': 'not real and not pipeline', 'modules': mods, 'total': total,
           'wall_seconds_this_call': round(time.time() - t0, 1),
           'child_cpu_seconds_this_call': round(c1.children_user + c1.children_system - c0.children_user
                                                - c0.children_system, 1),
           'machine': f'{platform.machine()}, {os.cpu_count()} cores',
           'note': 'kill_rate = killed / (checked - equivalent); a call that continues a workdir reruns only '
                   'mutants whose code or tests changed, so its times cover that part'}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1) + '\n')
    print(json.dumps(total), '->', a.out)
    for mod, m in mods.items():
        print(f'{mod}: {m["killed"]}/{m["checked"]} killed, survived: {", ".join(m["survived"]) or "-"}')


if __name__ == '__main__':
    main()
