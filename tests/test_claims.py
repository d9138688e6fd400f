"""bench/check_claims.py: every number it recomputes from the committed JSONs in bench/results is written in the
README/docs as the JSON gives it (a sentence edited away from its JSON, or a JSON rerun without the text, fails)."""
import importlib.util
from pathlib import Path


def test_claims_match_their_json(capsys):
    path = Path(__file__).resolve().parents[1] / 'bench' / 'check_claims.py'
    spec = importlib.util.spec_from_file_location('check_claims', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main() == 0, [line for line in capsys.readouterr().out.splitlines() if line.startswith('MISSING')]
