"""bench/compare_builds.py: byte-for-byte comparison of two builds (what backs the reproducibility claims)."""
import json

from bench import compare_builds


def test_compare_builds_reports_identical_and_different(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    for d in (a, b):
        (d / 'sub').mkdir(parents=True)
        (d / 'w.pth.tar').write_bytes(b'same weights')
        (d / 'w.meta.json').write_text(json.dumps({'path': str(d)}))   # records name their own paths: not compared
    (a / 'sub' / 'seq.json').write_text('{"x": [1, 2]}')
    (b / 'sub' / 'seq.json').write_text('{"x": [2, 1]}')
    (b / 'extra.mat').write_bytes(b'only in the second build')
    out = tmp_path / 'res.json'
    assert compare_builds.main(['--pair', str(a), str(b), '--out', str(out)]) == 1
    res = json.loads(out.read_text())
    files = {f['second'].split('/b/')[1]: f for f in res['pairs'][0]['files']}
    assert set(files) == {'w.pth.tar', 'sub/seq.json', 'extra.mat'}
    assert files['w.pth.tar']['identical'] and not files['sub/seq.json']['identical']
    assert files['extra.mat']['missing_in_first'] and (res['identical'], res['different']) == (1, 2)
    (b / 'sub' / 'seq.json').write_text('{"x": [1, 2]}')
    (b / 'extra.mat').unlink()
    assert compare_builds.main(['--pair', str(a), str(b)]) == 0
    assert compare_builds.main(['--pair', str(a / 'w.pth.tar'), str(b / 'w.pth.tar')]) == 0
