"""Smoke tests of bench/: every benchmark runs at a tiny size, prints its RESULT comparison line, writes its
JSON, and its built-in correctness checks hold; the bookkeeping (counts, ratios, verdicts) is checked against
the measured numbers it is derived from. No timing assertions."""
import importlib
import inspect
import json
import sys

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The benches set torch's thread count (--threads); give the rest of the session its own back."""
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _run(capsys, tmp_path, module, argv, name):
    mod = importlib.import_module(f'bench.{module}')
    res = mod.main(argv + ['--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert f'RESULT {name}:' in out, out
    assert 'machine:' in out and 'torch' in out
    saved = json.loads((tmp_path / f'{name}.json').read_text())
    assert saved['bench'] == name and saved['machine']['cores'] >= 1
    return res, out, saved


def test_bench_ranking(capsys, tmp_path):
    res, out, _ = _run(capsys, tmp_path, 'bench_ranking',
                       ['--n-utts', '12', '--naive-utts', '2', '--batch', '8', '--workers', '1'], 'ranking')
    assert res['ranks_compared'] == 2 and res['ranks_identical'] == 2
    assert res['extrapolated'] and 'extrapolated' in out


def test_bench_preference(capsys, tmp_path):
    res, out, saved = _run(capsys, tmp_path, 'bench_preference',
                           ['--n-utts', '600', '--published-utts', '3', '--plain-utts', '20', '--check-utts', '200'],
                           'preference')
    chk = res['check']
    assert chk['identical'] and chk['published_identical'] and chk['plain_identical']
    assert chk['drawn_pairs'] == 200 * 20 and 0 < chk['fast_pairs'] == chk['published_pairs'] == chk['plain_pairs']
    assert res['partners'] == 60 and res['fast']['pairs'] == res['fast_1thread']['pairs'] > 0
    for side, n in (('published', 3), ('plain', 20)):
        r = res[side]
        assert r['extrapolated'] and r['utts_measured'] == n
        assert r['seconds'] == pytest.approx(r['seconds_measured'] * 600 / n)     # linear extrapolation
        assert 0.5 < r['kept_fraction'] < 0.95                                    # same QA rule as the fast side
    assert res['speedup_vs_published'] == pytest.approx(res['published']['seconds'] / res['fast']['seconds'])
    assert res['speedup_vs_plain'] == pytest.approx(res['plain']['seconds'] / res['fast']['seconds'])
    assert saved['speedup_vs_plain'] == pytest.approx(res['speedup_vs_plain']) and 'extrapolated' in out


def test_published_operations_decide_as_the_plain_loop_and_draw_as_published():
    """The published QA table + max/argmax decides every pair as the plain double loop; the published draw is
    the legacy generator's choice among all N (the utterance itself included; a self-pair gets no label)."""
    from bench import bench_preference as B
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = rng.integers(1, 8, rng.integers(1, 6)).astype(float), rng.integers(1, 8, rng.integers(1, 6)).astype(float)
        assert B.qa_published(list(a), list(b), 0.6) == B.qa_plain(list(a), list(b), 0.6)
    assert B.qa_plain([5.0, 5.0, 6.0], [4.0, 5.0], 0.6) == 1 and B.qa_plain([4.0], [4.0, 4.0], 0.6) is None
    assert np.allclose(B.qa_table_published([5.0, 6.0], [5.0, 4.0]), [3 / 4, 0, 1 / 4])
    R = [1.0, 4.0, 7.0, 7.0, 2.0, 5.0]
    pairs, labels = B.published_loop([[r] for r in R], range(6), 0.5, 0.6, 3)      # 3 partners each
    rs = np.random.RandomState(3)
    draws = [rs.choice(6, 3, replace=False) for _ in range(6)]
    assert any(i in d for i, d in enumerate(draws))                                  # a self-draw happens here
    want = [(i, int(j), int(R[i] > R[j])) for i, d in enumerate(draws) for j in d if R[i] != R[j]]
    got = [(int(a[-11:-4]), int(b[-11:-4]), lab) for (a, b), lab in zip(pairs, labels)]
    assert got == want and len(got) < 6 * 3


def test_bench_pipeline(capsys, tmp_path):
    from bench.bench_pipeline import verdict
    res, _, _ = _run(capsys, tmp_path, 'bench_pipeline',
                     ['--s2s-utts', '8', '--s2s-batch', '4', '--mscr-batch', '4', '--mscr-iters', '2',
                      '--mscr-audio-dim', '64', '--mscr-text-dim', '32', '--model-reps', '1', '--workers', '1'],
                     'pipeline')
    s, m = res['seq2seq'], res['mscr']
    assert s['loader']['utts'] == s['loader_model']['utts'] == 8           # one epoch of the 8 Train utterances
    assert s['model']['utts'] == 4 and m['model']['utts'] == 4              # --model-reps 1 x batch 4
    assert m['loader']['utts'] == m['loader_model']['utts'] == 2 * 4        # 2 iterations x batch 4
    assert 0 <= s['loader_model']['loss'] <= 2                               # 1 - CCC terms, averaged
    assert m['loader_model']['iters_per_s'] == pytest.approx(2 / m['loader_model']['seconds'])
    for r in (s, m):
        for part in ('loader', 'model', 'loader_model'):
            assert r[part]['utt_per_s'] == pytest.approx(r[part]['utts'] / r[part]['seconds'])
        assert r['verdict'] == verdict(r)
    rate = lambda lo, mo: {'loader': {'utt_per_s': lo}, 'model': {'utt_per_s': mo}, 'loader_model': {'utt_per_s': 1}}
    assert [verdict(rate(10, 4)), verdict(rate(4, 10)), verdict(rate(10, 6))] == ['model-bound', 'loader-bound', 'balanced']


def test_bench_norm(capsys, tmp_path):
    res, out, _ = _run(capsys, tmp_path, 'bench_norm', ['--base-utts', '6', '--scales', '1,2', '--mean-sec', '2'], 'norm')
    assert res['agree'] and [r['scale'] for r in res['rows']] == [1, 2]
    assert all(r['max_rel_diff'] < 1e-4 for r in res['rows'])
    for r in res['rows']:
        assert r['frames'] > 0 and r['n_utts'] == 6 * r['scale']
        for m in ('streaming', 'concat'):
            assert 0 < r[m]['peak_mb'] < r[m]['maxrss_mb']      # heap is part of the resident set
    last = res['rows'][-1]
    assert res['memory_ratio_at_max'] == pytest.approx(last['concat']['peak_mb'] / last['streaming']['peak_mb'])
    assert res['rss_ratio_at_max'] == pytest.approx(last['concat']['maxrss_mb'] / last['streaming']['maxrss_mb'])
    assert 'less heap' in out and 'resident' in out


def test_bench_scale(capsys, tmp_path):
    res, out, _ = _run(capsys, tmp_path, 'bench_scale',
                       ['--n-utts', '10', '--batch', '4', '--naive-utts', '1', '--workers', '0', '--mean-sec', '3'],
                       'scale')
    assert res['extrapolated'] and 'extrapolated from 10' in out
    assert res['tournament']['ranks_identical'] == 1
    assert res['seq2seq']['utts_stepped'] == 8


HELP = [('bench.bench_ranking', ['--out', '--naive-utts']), ('bench.bench_preference', ['--published-utts', '--plain-utts']),
        ('bench.bench_pipeline', ['--out']), ('bench.bench_norm', ['--base-utts']), ('bench.bench_scale', ['--out']),
        ('bench.bench_convert', ['--repeats', '--ravdess', 'files/s']),
        ('make_demo_corpus', ['--']), ('prepare_emodb', ['4 + 3x', 'erkennung']), ('make_spliced_set', ['--']),
        ('evaluate_retrieval', ['--'])]


@pytest.mark.parametrize('module,words', HELP, ids=[m for m, _ in HELP])
def test_help(module, words, capsys, monkeypatch):
    """--help smoke check (not counted as coverage): exits 0, prints usage with the named flags, runs nothing."""
    mod = importlib.import_module(module)
    monkeypatch.setattr(sys, 'argv', [f'{module}.py', '--help'])
    with pytest.raises(SystemExit) as e:
        mod.main(['--help']) if inspect.signature(mod.main).parameters else mod.main()
    out = capsys.readouterr().out
    assert e.value.code in (0, None) and 'usage' in out and 'RESULT' not in out
    assert all(w in out for w in words)


def test_demo_summary_reads_what_the_demo_wrote(tmp_path):
    """run_demo.sh's summary: step times from the logged start times, each step's peak memory (the largest of
    its commands), the CCCs of testing.py's metrics.csv,
    each ranker's validation macro-F1 from its record, the retrieval JSON as written."""
    from pathlib import Path

    from bench import demo_summary
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / 't.tsv').write_text('0\t1/9 corpus\n12\t2/9 lld\n40\tend\n')
    (tmp_path / 'm.csv').write_text('Attr,Split,N,CCC,Pearson_r,feature_norm\nAct,Test,70,0.25,0.5,train\n')
    (tmp_path / 'r.json').write_text(json.dumps({'testing_Act.json': {'pair_acc_macro': 0.7}}))
    (tmp_path / 'rss.tsv').write_text('2048\t1/9 corpus\n4096\t1/9 corpus\n1024\t2/9 lld\n')   # KB per command
    demo_summary.main(['--times', str(tmp_path / 't.tsv'), '--metrics', str(tmp_path / 'm.csv'), '--rss', str(tmp_path / 'rss.tsv'),
                       '--rankers', str(repo / 'chunk_emotion_rankers' / 'trained_ranker_model'),
                       '--retrieval', str(tmp_path / 'r.json'), '--settings', 'EMO=all SHIP=0',
                       '--out', str(tmp_path / 'demo.json')])
    d = json.loads((tmp_path / 'demo.json').read_text())
    assert d['steps'] == [{'step': '1/9 corpus', 'seconds': 12, 'peak_rss_mb': 4},
                          {'step': '2/9 lld', 'seconds': 28, 'peak_rss_mb': 1}]
    assert d['peak_rss_mb'] == 4
    assert d['total_seconds'] == 40 and d['settings'] == {'EMO': 'all', 'SHIP': '0'}
    assert d['seq2seq_ccc'] == [{'Attr': 'Act', 'Split': 'Test', 'N': 70, 'CCC': 0.25, 'Pearson_r': 0.5}]
    rec = json.loads((repo / 'chunk_emotion_rankers' / 'trained_ranker_model' /
                      'LSTM_epoch20_batch128_Act_ranker.meta.json').read_text())
    assert d['ranker_val_macro_f1']['Act'] == rec['result']['val_macro_f1']
    assert d['retrieval'] == {'testing_Act.json': {'pair_acc_macro': 0.7}}


def test_bench_coverage(capsys, tmp_path):
    """Tiny size: every cell present, the toolkit's evaluate/paired_difference agree with the bench's own
    interval computation (checked inside the bench), coverages are shares of the replications."""
    res, out, saved = _run(capsys, tmp_path, 'bench_coverage', ['--reps', '3', '--n-boot', '60', '--n-boot-utt', '40',
                                                                '--auc-boot', '40'], 'coverage')
    cells = saved['cells']
    assert len(cells) == 2 * (7 * 2 + 2) and saved['reps'] == 3
    for c in cells:
        for stat in ('ccc', 'r', 'diff'):
            for v in c[stat].values():
                assert abs(v['coverage'] * 3 - round(v['coverage'] * 3)) < 0.01 and v['reps'] == 3
    sp2 = next(c for c in cells if c['model'] == 'test' and c.get('speakers') == 2 and c['unit'] == 'speakers')
    assert sp2['ccc']['z-t']['mean_width'] > sp2['ccc']['percentile']['mean_width']     # t(1) vs quantiles
    assert saved['min_speakers_in_metrics'] == res['min_speakers_in_metrics']


def test_bench_pair_sampling(capsys, tmp_path):
    """Grouped sampling counts fewer utterance runs than uniform on QA labels; the counts are those of pair_parts."""
    mod = importlib.import_module('bench.bench_pair_sampling')
    rows, path = mod.main(['--utts', '150', '--pairs-per-epoch', '256', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'RESULT    150 utterances' in out and 'machine:' in out
    row, = rows
    u, g = row['uniform'], row['grouped']
    assert u['steps'] == g['steps'] == 2 and row['pairs_per_epoch'] == 256
    assert g['chunk_runs'] < u['chunk_runs'] and row['work_ratio'] == u['chunk_runs'] / g['chunk_runs']
    assert 2 * 22 * row['group'] >= g['chunk_runs'] / g['steps'] / 2      # a step: about a group or two
    assert json.loads(path.read_text())['rows'][0]['grouped']['chunk_runs'] == g['chunk_runs']
