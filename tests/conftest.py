"""Shared pytest fixtures and the skip guard.

`tiny_corpus` is built once per session: treat it as read-only.

Skip guard: tests that need `../shared` (Emo-DB, EmoBank, the authors' released models) skip when that
folder is absent. When it is present, a skipped test means a broken fixture or a missing dependency, so
every skip except "no CUDA" ones fails the run. The summary prints how many tests ran and were skipped.
"""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

# a short OpenMP spin (docs/reproducibility.md, "A busy machine"): two xdist workers share 2 cores; same bytes
os.environ.setdefault('GOMP_SPINCOUNT', '10000')
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
DATASETS = SHARED / 'datasets'
# hardware the machine lacks; everything else must run. Matched on the reason's own words: paths in a reason
# (a checkout under /home/gpu-box/...) and words that merely contain the letters (gpu_check) do not count.
ALLOWED_SKIP = re.compile(r'(?<![\w./\\-])(?:cuda|gpus?)(?![\w./\\-])', re.I)
PATH_TOKEN = re.compile(r'\S*[/\\]\S*')
_skips = []
_t0 = [0.0]          # the session's start (pytest_sessionstart)
SUITE_JSON = REPO / 'runs' / 'tests' / 'suite.json'   # untracked: the wall time of the last full run, for the README


@pytest.fixture(scope='session')
def tiny_corpus(tmp_path_factory):
    """A 24-utterance MSP-layout corpus (EmoDetail labels, rising loudness). Do not modify it."""
    from tests.fixtures import make_tiny_corpus
    return make_tiny_corpus(tmp_path_factory.mktemp('tiny') / 'corpus')


EMODB_MINI_SPEAKERS = ['09', '10', '12']
EMODB_MINI_FOLDS = {'fold1': {'09': 'Test', '10': 'Validation', '12': 'Train'},
                    'fold2': {'10': 'Test', '12': 'Validation', '09': 'Train'}}


@pytest.fixture(scope='session')
def emodb_mini(tmp_path_factory):
    """Emo-DB speakers 09, 10, 12 converted by prepare_emodb.py, cut to 2 utterances per category and speaker
    (35: speaker 12 has one fear utterance), a Labels/folds.csv with two folds, and its LLD store. Skips without
    ../shared. Do not modify it."""
    if not (DATASETS / 'emodb' / 'wav').is_dir():
        pytest.skip('../shared/datasets/emodb absent')
    import pandas as pd

    import extract_features
    import prepare_emodb
    tmp = tmp_path_factory.mktemp('crossval')
    root, _ = prepare_emodb.prepare(DATASETS / 'emodb', tmp / 'emodb3', test='09', dev='10',
                                    speakers=','.join(EMODB_MINI_SPEAKERS), progress=False)
    lab_path = root / 'Labels' / 'labels_consensus.csv'
    lab = pd.read_csv(lab_path, dtype={'SpkrID': str})
    letter = lab.FileName.str[5]
    lab = lab[letter.isin(list('WFALTN'))].groupby([lab.SpkrID.str.zfill(2), letter]).head(2)
    lab.to_csv(lab_path, index=False)
    spk = lab.FileName.str[:2]
    folds = lab[['FileName', 'SpkrID']].assign(**{f: spk.map(parts) for f, parts in EMODB_MINI_FOLDS.items()})
    folds.to_csv(root / 'Labels' / 'folds.csv', index=False)
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--workers', '1'])
    return dict(tmp=tmp, root=root, lld=tmp / 'lld', labels=lab, spk=spk)


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for the module, restored afterwards: on a shared 2-core machine intra-op threads mostly
    wait for each other (a tiny LSTM call takes 30 ms with 2 threads under load, 0.4 ms with 1)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _reason(report):
    lr = report.longrepr
    text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return text.split('Skipped: ', 1)[1] if 'Skipped: ' in text else text


def allowed_skip(reason):
    """True when a skip reason itself says CUDA or a GPU is what is missing (path-like tokens removed first)."""
    return bool(ALLOWED_SKIP.search(PATH_TOKEN.sub(' ', str(reason))))


def pytest_sessionstart(session):
    _t0[0] = time.time()


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, 'wasxfail'):
        _skips.append((report.nodeid, _reason(report)))


def forbidden_skips():
    """Skips that must not happen on this machine: all but CUDA/GPU ones when ../shared is present."""
    return [(n, r) for n, r in _skips if SHARED.is_dir() and not allowed_skip(r)]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if forbidden_skips() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    n = {k: len(stats.get(k, [])) for k in ('passed', 'failed', 'error', 'xfailed', 'xpassed')}
    terminalreporter.write_line(
        f"tests run: {n['passed'] + n['failed'] + n['xfailed'] + n['xpassed']} ({n['passed']} passed, {n['failed']} "
        f"failed, {n['xfailed']} xfailed), errors: {n['error']}, skipped: {len(_skips)}; "
        f"../shared {'present' if SHARED.is_dir() else 'absent'}")
    for nodeid, reason in _skips:
        terminalreporter.write_line(f'  skipped {nodeid}: {reason}')
    _write_suite_json(terminalreporter, n)
    bad = forbidden_skips()
    if bad:
        terminalreporter.write_line(f'error: {len(bad)} test(s) skipped although ../shared is present (only CUDA '
                                    f'skips are allowed): fix the fixture or install what the reason names',
                                    red=True, bold=True)


def _write_suite_json(terminalreporter, n):
    """runs/tests/suite.json: wall time, counts, workers, load and the 15 slowest tests of this run (a run of the
    whole suite, the README's test command, is what the README's suite time comes from)."""
    config = terminalreporter.config
    if hasattr(config, 'workerinput'):
        return
    per_test = {}
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, 'when', None) in ('setup', 'call', 'teardown'):
                per_test[r.nodeid] = per_test.get(r.nodeid, 0.0) + r.duration
    slow = sorted(per_test.items(), key=lambda kv: -kv[1])[:15]
    try:
        rev = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = None
    rec = {'command': 'python -m pytest -q', 'args': list(config.invocation_params.args),
           'wall_seconds': round(time.time() - _t0[0], 1), 'workers': getattr(config.option, 'numprocesses', None),
           'tests': len(per_test), **n, 'skipped': len(_skips), 'shared_present': SHARED.is_dir(),
           'cores': os.cpu_count(), 'load_avg_1min': round(os.getloadavg()[0], 2), 'toolkit_revision': rev,
           'slowest': [{'test': k, 'seconds': round(v, 2)} for k, v in slow]}
    try:
        SUITE_JSON.parent.mkdir(parents=True, exist_ok=True)
        SUITE_JSON.write_text(json.dumps(rec, indent=1) + '\n')
        terminalreporter.write_line(f'suite time {rec["wall_seconds"]:.0f} s -> {SUITE_JSON.relative_to(REPO)}')
    except OSError as e:
        terminalreporter.write_line(f'note: {SUITE_JSON} not written ({e})')
