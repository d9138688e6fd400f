"""compare.py and metrics.paired_difference: against a plain independent implementation on random data, a
planted difference found, identical systems not, refusal when the utterance sets differ."""
import numpy as np
import pandas as pd
import pytest
import scipy.stats

import compare
import metrics as M
from errors import ToolkitError


def naive_ccc(x, y):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    vx = sum((v - mx) ** 2 for v in x) / len(x)
    vy = sum((v - my) ** 2 for v in y) / len(y)
    c = sum((u - mx) * (v - my) for u, v in zip(x, y)) / len(x)
    return 2 * c / (vx + vy + (mx - my) ** 2)


def naive_paired(a, b, y, spk, n, seed):
    """Loop over resamples with their own generator: draw speakers with replacement, score both systems; swap the
    systems on random speakers for the permutation test."""
    rng = np.random.RandomState(seed)
    uniq = sorted(set(spk))
    idx = {s: [i for i, t in enumerate(spk) if t == s] for s in uniq}
    diffs = []
    for _ in range(n):
        take = [i for s in rng.choice(uniq, len(uniq)) for i in idx[s]]
        diffs.append(naive_ccc(a[take], y[take]) - naive_ccc(b[take], y[take]))
    d = naive_ccc(a, y) - naive_ccc(b, y)
    hits = 0
    for _ in range(n):
        swap = {s: rng.rand() < 0.5 for s in uniq}
        pa = np.array([b[i] if swap[spk[i]] else a[i] for i in range(len(y))])
        pb = np.array([a[i] if swap[spk[i]] else b[i] for i in range(len(y))])
        hits += abs(naive_ccc(pa, y) - naive_ccc(pb, y)) >= abs(d) - 1e-12
    k = len(uniq)            # the printed interval: d +- t(k-1) x SD of the resampled differences x sqrt(k/(k-1))
    half = scipy.stats.t.ppf(0.975, k - 1) * np.std(diffs, ddof=1) * np.sqrt(k / (k - 1))
    return d, [d - half, d + half], (1 + hits) / (1 + n)


def data(seed, n_spk=12, per=10, shift=0.0):
    rng = np.random.default_rng(seed)
    spk = np.repeat([f's{k}' for k in range(n_spk)], per)
    y = rng.normal(size=len(spk)) + np.repeat(rng.normal(size=n_spk), per)
    a = y + rng.normal(scale=0.8, size=len(y))
    b = y + rng.normal(scale=0.8, size=len(y)) + shift * rng.normal(size=len(y))
    return a, b, y, spk


def test_agrees_with_independent_implementation():
    a, b, y, spk = data(0, n_spk=8, per=8)
    r = M.paired_difference(a, b, y, spk, n_boot=1500, n_perm=1500)
    d, ci, p = naive_paired(a, b, y, list(spk), 1500, 7)
    assert r['diff']['value'] == pytest.approx(d, abs=1e-12)
    assert r['a']['value'] == pytest.approx(naive_ccc(a, y), abs=1e-12)
    assert np.allclose(r['diff']['ci'], ci, atol=0.03), (r['diff']['ci'], ci)      # Monte Carlo error only
    assert abs(r['p_value'] - p) < 0.05, (r['p_value'], p)


def test_planted_difference_found_identical_not():
    a, b, y, spk = data(3, shift=1.5)                 # B much noisier than A
    r = M.paired_difference(a, b, y, spk, n_perm=2000)
    assert r['diff']['value'] > 0.2 and r['diff']['ci'][0] > 0 and r['p_value'] < 0.01
    same = M.paired_difference(a, a.copy(), y, spk, n_perm=500)
    assert same['diff']['value'] == 0 and same['diff']['ci'] == [0, 0] and same['p_value'] == 1.0
    a2, b2, y2, spk2 = data(4)                        # equally good systems: no difference found (seeded)
    assert M.paired_difference(a2, b2, y2, spk2, n_perm=2000)['p_value'] > 0.05


def test_cli_folders_and_refusal(tmp_path):
    a, b, y, spk = data(5, shift=1.5)
    names = [f'u{i:03d}.wav' for i in range(len(y))]
    for side, p in (('A', a), ('B', b)):
        for fold in (1, 2):                            # two folds pooled by file name
            sel = slice(0, 60) if fold == 1 else slice(60, None)
            d = tmp_path / side / f'fold{fold}'
            d.mkdir(parents=True)
            pd.DataFrame({'FileName': names[sel], 'Label': y[sel], 'Pred': p[sel], 'SpkrID': spk[sel]}).to_csv(
                d / 'Act_Test_predictions.csv', index=False)
    df = compare.main([str(tmp_path / 'A'), str(tmp_path / 'B'), '--out', str(tmp_path / 'c.csv'),
                       '--permutations', '500'])
    r = M.paired_difference(a, b, y, spk, n_perm=500)
    row = df.iloc[0]
    assert row.Table == 'Act_Test' and row.N == 120 and row.Diff_A_minus_B == pytest.approx(r['diff']['value'])
    assert row.p_value == pytest.approx(r['p_value']) and 'speakers' in row.interval
    pd.read_csv(tmp_path / 'A' / 'fold2' / 'Act_Test_predictions.csv').iloc[:-1].to_csv(
        tmp_path / 'A' / 'fold2' / 'Act_Test_predictions.csv', index=False)
    with pytest.raises(ToolkitError, match='utterance sets differ'):
        compare.main([str(tmp_path / 'A'), str(tmp_path / 'B'), '--out', str(tmp_path / 'c.csv')])
