"""The skip guard of tests/conftest.py: with ../shared present only skips whose reason itself names CUDA or a
GPU are allowed; a path in the reason (a checkout under a folder called "gpu") lets nothing through."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.reports import TestReport

from tests import conftest


@pytest.mark.parametrize('reason, ok', [
    ('CUDA is present on this machine', True),
    ('needs CUDA', True),
    ('no GPU on this machine', True),
    ('needs 2 GPUs', True),
    ('needs ../shared (released models and Emo-DB)', False),
    ('/home/gpu/wt/shared/pretrained is absent', False),
    ('Emo-DB not available (/mnt/gpu-box/shared/datasets/emodb)', False),
    (r'C:\gpu\shared absent', False),
    ('bench/gpu_check.py output missing', False),
    ('gpu_check failed', False),
    ('cudart64 library missing', False),
])
def test_allowed_skip_reads_the_reason_words_not_paths(reason, ok):
    assert conftest.allowed_skip(reason) is ok


def test_reason_is_the_message_without_location():
    rep = TestReport('t.py::x', ('/x/gpu/t.py', 3, 'x'), {}, 'skipped',
                     ('/x/gpu/t.py', 3, 'Skipped: shared absent'), 'call')
    assert conftest._reason(rep) == 'shared absent'
    rep.longrepr = '/x/gpu/t.py:3: Skipped: shared absent'
    assert conftest._reason(rep) == 'shared absent'


@pytest.mark.parametrize('workers', [[], ['-n', '2']], ids=['one-process', 'xdist'])
def test_checkout_under_a_gpu_folder_still_fails_a_forbidden_skip(tmp_path, workers):
    """A real pytest run of a copy of the guard in <tmp>/gpu/repo with <tmp>/gpu/shared present: the skip whose
    reason holds a path with 'gpu' in it fails the run, the CUDA skip does not; also with the suite's 2 xdist
    workers (pytest.ini), where the skips reach the guard from the workers."""
    root = tmp_path / 'gpu'
    (root / 'shared').mkdir(parents=True)
    tests = root / 'repo' / 'tests'
    tests.mkdir(parents=True)
    (root / 'repo' / 'pytest.ini').write_text('[pytest]\n')
    shutil.copy(Path(conftest.__file__), tests / 'conftest.py')
    (tests / '__init__.py').write_text('')
    (tests / 'test_x.py').write_text(
        'import pytest\nfrom pathlib import Path\n'
        'def test_data():\n    pytest.skip(f"{Path(__file__).parents[2] / \'shared\' / \'emodb\'} is absent")\n'
        '@pytest.mark.skipif(True, reason="CUDA is present on this machine")\ndef test_cpu_only():\n    pass\n')
    r = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *workers, str(tests)],
                       cwd=root / 'repo', capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'error: 1 test(s) skipped although ../shared is present' in r.stdout
    assert '/gpu/shared/emodb is absent' in r.stdout   # the reason really held the path
