"""bench/gpu_carry.py: what the device call carries (closure of the missing packages, the manifest check)."""
import json
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'bench'))
import gpu_carry as G  # noqa: E402


def test_the_closure_holds_the_missing_packages_and_their_missing_dependencies_only():
    pins = G.closure()
    have = G.device_packages()
    assert {'opensmile', 'soundfile', 'soxr', 'espeakng-loader', 'audinterface', 'cffi'} <= set(pins)
    assert not set(pins) & have                       # nothing the device already holds
    assert {'numpy', 'pandas', 'torch', 'transformers'} <= have


def fake_wheel(folder, name, requires):
    w = folder / f'{name}-1.0-py3-none-any.whl'
    with zipfile.ZipFile(w, 'w') as z:
        z.writestr(f'{name}-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\nName: ' + name + '\nVersion: 1.0\n'
                   + ''.join(f'Requires-Dist: {r}\n' for r in requires))
    return w


def make_carry(tmp_path, requires):
    carry = tmp_path / '.gpu_carry'
    (carry / 'whl').mkdir(parents=True)
    files = [fake_wheel(carry / 'whl', 'alpha', requires), fake_wheel(carry / 'whl', 'beta', [])]
    man = {'files': {str(f.relative_to(carry)): {'bytes': f.stat().st_size, 'sha256': G.sha256(f)} for f in files}}
    (carry / 'manifest.json').write_text(json.dumps(man))
    return carry


def test_verify_accepts_dependencies_on_the_device_or_carried(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(G, 'CARRY', make_carry(tmp_path, ['numpy>=1', 'beta', 'pywin32; sys_platform == "win32"',
                                                          'pytest; extra == "test"']))
    G.verify(None)
    assert '2 wheels, every dependency on the device or carried' in capsys.readouterr().out


def test_verify_names_a_dependency_that_would_be_missing_on_the_device(tmp_path, monkeypatch):
    monkeypatch.setattr(G, 'CARRY', make_carry(tmp_path, ['numpy', 'notonthedevice>=2']))
    with pytest.raises(SystemExit, match='notonthedevice'):
        G.verify(None)


def test_verify_refuses_a_changed_carried_file(tmp_path, monkeypatch):
    carry = make_carry(tmp_path, [])
    monkeypatch.setattr(G, 'CARRY', carry)
    fake_wheel(carry / 'whl', 'beta', ['numpy'])        # rewritten after the manifest
    with pytest.raises(SystemExit, match='missing or changed'):
        G.verify(None)
