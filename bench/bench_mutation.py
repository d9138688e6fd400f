"""Mutation testing with mutmut: does the suite fail when a bug is planted in the code that turns data into numbers?

    pip install mutmut==3.8.1                           # a requirement of this bench only (not of the toolkit or CI)
    nice python bench/bench_mutation.py                 # every group below, one after the other
    nice python bench/bench_mutation.py --groups audio  # one group; --functions all: every function of its files
    python bench/bench_mutation.py --groups metrics --workdir /tmp/mut   # continue a run (reruns what changed)

Groups (module: the functions mutated, the tests run against them):
  metrics       metrics.py: CCC / AUC / speaker-bootstrap interval / paired difference (the text formatting
                functions markdown_tables, fmt_ci, describe_bootstrap, add_bootstrap_args are left out)
  corpora       corpora/: the functions that turn source values into labels, folds and skip decisions
  check_corpus  check_corpus.py: rating, split and fold checks (printing and the argparse main left out)
  audio         audio.py: the input checks of predict.py (levels, clipping, band limit, silent channel,
                truncated WAV, no speech) and the measurements behind them

mutmut (https://github.com/boxed/mutmut) writes every mutant of the chosen functions (an operator, a constant,
a comparison, an argument dropped, ...) and runs, for each, the tests of its group that reach that function
(real-data and whole-pipeline tests left out, see TESTS). A mutant the tests fail on is killed; one they pass
on survived. Each group works in its own scratch copy of the tracked files (`--workdir`/<group>, kept so a
second call only reruns what changed; ../shared is linked in so the tests that read it run) and
bench/results/mutation.json gets, per module, the mutants checked, killed, survived (each named) and the
equivalent ones (listed in EQUIVALENT with why they behave like the original on every input the code can get;
not counted), and the kill rate = killed / (checked - equivalent). Slow on a busy 2-core machine (5-10 mutants a
minute): not part of the suite or CI.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / 'bench' / 'results' / 'mutation.json'
# group -> files mutated, functions (mutmut names module.x_name; None = every function), tests, pytest -k filter
GROUPS = {
    'metrics': {
        'paths': ['metrics.py'],
        'functions': ['metrics.x_' + f for f in (
            'canonical_category', 'pearson', 'auc', '_groups', 'cluster_counts', '_moments', '_weighted_auc',
            '_interval', '_stat', 'evaluate', 'category_means', 'corpus_categories', 'corpus_speakers',
            'bootstrap_unit', '_ccc_rows', 'paired_difference')],
        'tests': ['tests/test_metrics.py', 'tests/test_metrics_units.py', 'tests/test_compare.py'],
        'filter': 'not real and not pipeline'},
    'corpora': {
        'paths': ['corpora/'],
        'functions': ['corpora.crema_d.x_vote', 'corpora.crema_d.x_responses', 'corpora.crema_d.x_tabulated',
                      'corpora.msp_improv.x__values', 'corpora.msp_improv.x__out_of_scale',
                      'corpora.msp_improv.x_parse_evaluation', 'corpora.iemocap.x__scaled',
                      'corpora.iemocap.x_parse_attributes', 'corpora.common.x_pad_avd',
                      'corpora.common.x_five_to_seven', 'corpora.common.x_rotation_folds',
                      'corpora.common.x_sex_balanced_groups', 'corpora.common.x_session_folds',
                      'corpora.ravdess.x_groups_of', 'corpora.common.x_digital_silence',
                      'corpora.common.x_audio_seconds'],
        'tests': ['tests/test_corpora_units.py', 'tests/test_prepare_corpus.py', 'tests/test_accounting.py'],
        'filter': 'not real and not pipeline'},
    'check_corpus': {
        'paths': ['check_corpus.py'],
        'functions': ['check_corpus.x_' + f for f in (
            'probe', '_check_ratings', '_file_jobs', '_probe_files', '_label_range', '_split_summary',
            '_check_folds', '_spk_key', 'check')],
        'tests': ['tests/test_corpus.py', 'tests/test_folds.py'],
        'filter': 'check_corpus and not help'},
    'audio': {
        'paths': ['audio.py'],
        'functions': ['audio.x_' + f for f in (
            'wav_claimed_seconds', 'channel_levels_db', 'mix_active', 'active_speech_level', 'high_band_db',
            'measure', 'measure_notes', 'voiced_seconds', 'speech_note', 'note_kind')],
        'tests': ['tests/test_warnings.py'],
        'filter': 'not smoke'},
}
# survivors that behave exactly like the original on every input the code can get (mutant name -> why)
NUMERIC = 'every caller passes numeric arrays (floats from the label and prediction tables); np.asarray without ' \
          'the float64 dtype gives the same values for them'
EQUIVALENT = {
    'metrics.x_paired_difference__mutmut_178': 'min(p, 2.0) for min(p, 1.0): p = (1 + count) / (1 + n_perm) with '
                                               'count <= n_perm is never above 1, so the bound never binds',
    'check_corpus.x__probe_files__mutmut_20': "the progress bar's unit label 'FILE' for 'file': display text on "
                                              "stderr only, no value of the report depends on it",
    'metrics.x__ccc_rows__mutmut_10': 'mean((P + mp)(y - my)) = mean((P - mp)(y - my)) because mean(y - my) = 0: the '
                                      'same covariance (to rounding)',
    'metrics.x__ccc_rows__mutmut_22': 'drops divide="ignore": 2 cov / den divides only where den = 0, and there cov = 0 '
                                      '(0/0 is "invalid", still ignored), so no division-by-zero can occur',
    'metrics.x__weighted_auc__mutmut_45': "np.searchsorted(s, s) with side 'left' spelled out or left to its default "
                                          "('left'): the same call",
    'metrics.x__weighted_auc__mutmut_74': 'divide=None: den = 0 only when one class has no weight, and then num = 0 '
                                          'too, so only the ignored "invalid" 0/0 occurs',
    'metrics.x_cluster_counts__mutmut_4': 'int32 instead of int64 indices matters only from 2^31 draws '
                                          '(n_boot x clusters), i.e. 16 GB of counts, beyond any test or run here',
    'metrics.x_cluster_counts__mutmut_25': 'the row offsets as int64 added in place to the int32 draws: the same '
                                           'values (same-kind cast) below 2^31 draws',
    'metrics.x_evaluate__mutmut_10': NUMERIC, 'metrics.x_paired_difference__mutmut_5': NUMERIC,
    'metrics.x_pearson__mutmut_9': NUMERIC,
    'audio.x_active_speech_level__mutmut_2': 'reshape(None) instead of reshape(-1): every caller passes a 1-D '
                                             'mono signal, for which both leave it as it is',
    'audio.x_high_band_db__mutmut_5': 'the spectrum computed in the input dtype (float32 from measure) instead of '
                                      'float64: the same dB value to far below the 0.1-dB display',
    'audio.x_high_band_db__mutmut_58': 'f >= 301 instead of 300: the 32-ms frames put FFT bins every 31.25 Hz at '
                                       '16, 22.05, 44.1 and 48 kHz, none between 300 and 301 Hz',
    'corpora.msp_improv.x_parse_evaluation__mutmut_12': "encoding 'UTF-8' instead of 'utf-8': Python's codec "
                                                         "names are case-insensitive",
    'metrics.x_evaluate__mutmut_107': 'pd.Series of str/None values gets dtype object with or without dtype=object',
}
COUNTED_KILLED = ('killed', 'timeout')    # a mutant that hangs the tests is caught too


def config_text(g):
    """setup.cfg [mutmut] of a group's scratch copy: mutate its files, copy the rest the tests import."""
    own = {p.rstrip('/') for p in g['paths']}
    also = sorted(p.name for p in ROOT.glob('*.py') if p.name not in own)
    also += [d for d in ('corpora/', 'chunk_emotion_rankers/', 'bench/') if d.rstrip('/') not in own]
    lines = ['[mutmut]', 'source_paths =', *[f'    {p}' for p in g['paths']],
             'also_copy =', *[f'    {a}' for a in also + ['pytest.ini', 'ruff.toml']],
             'pytest_add_cli_args_test_selection =', *[f'    {t}' for t in g['tests']],
             'pytest_add_cli_args =', '    -k', f'    {g["filter"]}', '    -p', '    no:cacheprovider',
             '    -x', '    -q', 'process_isolation = forkserver', 'mutate_only_covered_lines = true']
    return '\n'.join(lines) + '\n'


def scratch_copy(work, g):
    """Copy the tracked files of the working tree into `work` (kept: mutmut's results live in work/mutants);
    link ../shared beside it so the tests that read the shared corpora run as in the repository."""
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src, dst = ROOT / f, work / f
        if src.is_file() and not (dst.is_file() and dst.read_bytes() == src.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    cfg = work / 'setup.cfg'
    if not cfg.is_file() or cfg.read_text() != config_text(g):
        cfg.write_text(config_text(g))
    shared = ROOT.parent / 'shared'
    if shared.is_dir() and not (work / 'shared').exists():
        (work / 'shared').symlink_to(shared)


def results(work, prefixes):
    """{mutant name: status} from `mutmut results --all true`."""
    out = subprocess.run(['mutmut', 'results', '--all', 'true'], cwd=work, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(': ')
        if sep and name.startswith(prefixes):
            res[name] = status
    return res


def module_of(name):
    return name.split('.x')[0]


def summary(res, functions, only=None):
    chosen = {n: s for n, s in res.items()
              if (functions is None or any(n.startswith(f + '__mutmut_') for f in functions))
              and (only is None or n in only)}
    mods = {}
    for name, status in sorted(chosen.items()):
        m = mods.setdefault(module_of(name), {'checked': 0, 'killed': 0, 'survived': [], 'equivalent': {},
                                              'other': {}})
        if status == 'not checked':
            continue
        m['checked'] += 1
        if status in COUNTED_KILLED:
            m['killed'] += 1
        elif status == 'survived' and name in EQUIVALENT:
            m['equivalent'][name] = EQUIVALENT[name]
        elif status in ('survived', 'no tests'):
            m['survived'].append(name)
        else:
            m['other'][name] = status
    for m in mods.values():
        real = m['checked'] - len(m['equivalent'])
        m['kill_rate'] = round(m['killed'] / real, 4) if real else None
    return mods


def sample_names(work, functions, n, seed, max_children):
    """A seeded random sample of `n` mutant names of `functions`: mutmut writes every mutant (and collects
    which tests reach which function) on a run that matches no mutant, then the names are read back."""
    subprocess.run(['mutmut', 'run', '--max-children', str(max_children), 'no_such_function__mutmut_0'], cwd=work,
                   capture_output=True, text=True)
    names = sorted(k for meta in (work / 'mutants').rglob('*.meta')
                   for k in json.loads(meta.read_text())['exit_code_by_key']
                   if functions is None or k.split('__mutmut_')[0] in functions)
    if not names:
        sys.exit(f'{work}: mutmut wrote no mutants of the chosen functions')
    rng = random.Random(seed)
    return sorted(rng.sample(names, min(n, len(names))))


def run_group(name, g, workdir, max_children, all_functions, sample=0, seed=0, previous=None):
    work = Path(workdir) / name
    work.mkdir(parents=True, exist_ok=True)
    scratch_copy(work, g)
    functions = None if all_functions else g['functions']
    globs = [] if functions is None else [f + '__mutmut_*' for f in functions]
    t0, c0 = time.time(), os.times()
    to_run = None
    if previous is not None:          # --rerun-survivors: the same mutants as before, only the survivors rerun
        sample = bool(previous.get('sampled_mutants'))
        globs = previous['sampled_mutants'] if sample else globs
        to_run = [n for m in previous['modules'].values() for n in m['survived'] + list(m['equivalent'])]
    elif sample:
        globs = sample_names(work, functions, sample, seed, max_children)
    before = {m: json.loads(m.read_text())['exit_code_by_key'] for m in (work / 'mutants').rglob('*.meta')} \
        if to_run else {}
    run = subprocess.run(['mutmut', 'run', '--max-children', str(max_children), *(to_run or globs)], cwd=work,
                         capture_output=True, text=True)
    for meta, old in before.items():   # a changed test list makes mutmut forget every verdict: keep the kills
        d = json.loads(meta.read_text())
        d['exit_code_by_key'].update({k: v for k, v in old.items() if d['exit_code_by_key'].get(k) is None
                                      and v not in (None, 0, 5, 33) and k not in to_run})
        meta.write_text(json.dumps(d, indent=4))
    c1 = os.times()
    if run.returncode:
        sys.exit(f'{name}: mutmut run failed ({run.returncode}): {run.stderr[-2000:] or run.stdout[-2000:]}')
    prefixes = tuple(p.rstrip('/').removesuffix('.py').replace('/', '.') + '.' for p in g['paths'])
    mods = summary(results(work, prefixes), functions, set(globs) if sample else None)
    total = {k: sum(m[k] for m in mods.values()) for k in ('checked', 'killed')}
    total['equivalent'] = sum(len(m['equivalent']) for m in mods.values())
    total['survived'] = sum(len(m['survived']) for m in mods.values())
    real = total['checked'] - total['equivalent']
    total['kill_rate'] = round(total['killed'] / real, 4) if real else None
    scope = 'every function of the files' if functions is None else \
        f'{len(functions)} functions holding the logic (see functions)'
    if sample:
        scope += f'; a seeded random sample of {len(globs)} of their mutants'
    first = None if previous is None else previous.get('first_pass') or previous['total']
    return {'first_pass': first, 'paths': g['paths'], 'functions': functions or 'all', 'tests': g['tests'], 'test_filter': g['filter'],
            'scope': scope, 'sampled_mutants': globs if sample else None,
            'modules': mods, 'total': total, 'wall_seconds_this_call': round(time.time() - t0, 1),
            'child_cpu_seconds_this_call': round(c1.children_user + c1.children_system - c0.children_user
                                                 - c0.children_system, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--groups', nargs='+', default=list(GROUPS), choices=list(GROUPS),
                   help='groups to run, one after the other (default: all)')
    p.add_argument('--functions', choices=['logic', 'all'], default='logic',
                   help='logic: the functions listed per group (default); all: every function of its files (hours)')
    p.add_argument('--workdir', default='/tmp/mutmut', help='scratch copies, one folder per group (kept between calls)')
    p.add_argument('--sample', type=int, default=0,
                   help='test a seeded random sample of this many mutants per group (default 0: every mutant)')
    p.add_argument('--seed', type=int, default=0, help='seed of --sample (default 0)')
    p.add_argument('--rerun-survivors', action='store_true',
                   help='rerun only the survivors (and listed equivalents) of the last run of each group in --out, '
                        'after tests were added; the kill rate stays over the same mutants')
    p.add_argument('--max-children', type=int, default=2, help='mutants tested in parallel (default 2)')
    p.add_argument('--out', default=str(OUT), help='JSON to write; groups not run keep their earlier entry')
    a = p.parse_args(argv)
    if a.max_children < 1 or a.sample < 0:
        p.error('--max-children must be >= 1 and --sample >= 0')
    if shutil.which('mutmut') is None:
        sys.exit('mutmut is not installed: pip install mutmut==3.8.1 (only this bench needs it)')
    out = Path(a.out)
    rec = json.loads(out.read_text()) if out.is_file() else {}
    head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True)
    version = importlib.metadata.version('mutmut')
    rec.update({'bench': 'bench/bench_mutation.py', 'tool': f'mutmut {version}',
                'machine': f'{platform.machine()}, {os.cpu_count()} cores',
                'note': 'kill_rate = (killed + timeout) / (checked - equivalent); a "no tests" mutant counts as '
                        'survived; first_pass: the counts before tests were added for the survivors; '
                        '--rerun-survivors reruns only the survivors and keeps the earlier kills (tests were only '
                        'added), so its times cover that part'})
    groups = rec.setdefault('groups', {})
    for name in a.groups:
        print(f'{name}: running mutmut ...', flush=True)
        prev = groups.get(name) if a.rerun_survivors else None
        if a.rerun_survivors and prev is None:
            sys.exit(f'--rerun-survivors: {out} has no earlier run of {name}')
        groups[name] = run_group(name, GROUPS[name], a.workdir, a.max_children, a.functions == 'all',
                                 a.sample, a.seed, prev)
        groups[name]['code_revision'] = head.stdout.strip()
        rec['kill_rate'] = {m: v['kill_rate'] for g in groups.values() for m, v in g['modules'].items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=1) + '\n')
        t = groups[name]['total']
        print(f'{name}: {t["killed"]}/{t["checked"] - t["equivalent"]} killed ({t["kill_rate"]}), '
              f'{t["equivalent"]} equivalent -> {out}', flush=True)
        for mod, m in groups[name]['modules'].items():
            print(f'  {mod}: {m["killed"]}/{m["checked"]} killed, survived: {", ".join(m["survived"]) or "-"}')


if __name__ == '__main__':
    main()
