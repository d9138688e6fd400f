"""Smoke tests of bench/: every benchmark runs at a tiny size, prints its RESULT comparison line, writes its
JSON (and PNG) and its built-in correctness checks hold. No timing assertions."""
import json

import pytest


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The benches set torch's thread count (--threads); give the rest of the session its own back."""
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(capsys, tmp_path, module, argv, name):
    mod = __import__(module)
    res = mod.main(argv + ['--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert f'RESULT {name}:' in out, out
    assert 'machine:' in out and 'torch' in out
    saved = json.loads((tmp_path / f'{name}.json').read_text())
    assert saved['bench'] == name and saved['machine']['cores'] >= 1
    return res, out


def test_bench_ranking(capsys, tmp_path):
    res, out = _run(capsys, tmp_path, 'bench_ranking',
                    ['--n-utts', '12', '--naive-utts', '2', '--batch', '8', '--workers', '1'], 'ranking')
    assert res['ranks_compared'] == 2 and res['ranks_identical'] == 2
    assert res['extrapolated'] and 'extrapolated' in out
    assert res['batched']['utt_per_s'] > 0 and res['allpairs']['utt_per_s'] > 0
    assert (tmp_path / 'bench_ranking.png').stat().st_size > 0


def test_bench_preference(capsys, tmp_path):
    res, out = _run(capsys, tmp_path, 'bench_preference',
                    ['--n-utts', '600', '--loop-utts', '20', '--check-utts', '200'], 'preference')
    assert res['check']['identical'] and res['check']['fast_pairs'] > 0
    assert res['loop']['extrapolated'] and 'extrapolated' in out
    assert res['fast']['pairs'] > 0 and res['partners'] == 60


def test_bench_pipeline(capsys, tmp_path):
    res, out = _run(capsys, tmp_path, 'bench_pipeline',
                    ['--s2s-utts', '8', '--s2s-batch', '4', '--mscr-batch', '4', '--mscr-iters', '2',
                     '--mscr-audio-dim', '64', '--mscr-text-dim', '32', '--model-reps', '1', '--workers', '1'],
                    'pipeline')
    for k in ('seq2seq', 'mscr'):
        for part in ('loader', 'model', 'loader_model'):
            assert res[k][part]['utt_per_s'] > 0, (k, part)
        assert res[k]['verdict'] in ('model-bound', 'loader-bound', 'balanced')
    assert res['seq2seq']['loader_model']['utts'] == 8


def test_bench_norm(capsys, tmp_path):
    res, out = _run(capsys, tmp_path, 'bench_norm', ['--base-utts', '6', '--scales', '1,2', '--mean-sec', '2'], 'norm')
    assert res['agree'] and [r['scale'] for r in res['rows']] == [1, 2]
    assert all(r['concat']['peak_mb'] > 0 and r['streaming']['peak_mb'] > 0 for r in res['rows'])


def test_bench_scale(capsys, tmp_path):
    res, out = _run(capsys, tmp_path, 'bench_scale',
                    ['--n-utts', '10', '--batch', '4', '--naive-utts', '1', '--workers', '0', '--mean-sec', '3'],
                    'scale')
    assert res['extrapolated'] and 'extrapolated from 10' in out
    assert res['tournament']['ranks_identical'] == 1
    assert res['seq2seq']['utts_stepped'] == 8 and res['ranking']['seconds_at_target'] > 0


@pytest.mark.parametrize('script', ['bench_ranking', 'bench_preference', 'bench_pipeline', 'bench_norm', 'bench_scale'])
def test_bench_help(capsys, script):
    with pytest.raises(SystemExit) as e:
        __import__(script).main(['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert 'usage' in out and '--out' in out and 'RESULT' not in out
