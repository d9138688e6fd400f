"""metrics.py piece by piece, on inputs small enough to check by hand: the category spellings, Pearson r of
low-variance data, the interval and standard error of a handful of resamples, the error messages, the keys a
report reads, and the permutation count of the paired test (written to fail on the planted bugs a mutation
run finds; bench/bench_mutation.py)."""
import numpy as np
import pytest

import metrics as M
from errors import ToolkitError


def test_category_spellings_and_pearson_of_small_values():
    assert [M.canonical_category(c) for c in ('A', ' Ang ', 'Wut', 'xxx', 'Zebra', '  ', '', None, float('nan'))] == \
        ['anger', 'anger', 'anger', 'no agreement', 'zebra', None, None, None, None]
    x, y = [0.1, 0.2, 0.4, 0.3], [0.12, 0.31, 0.35, 0.3]          # both standard deviations far below 1
    assert M.pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12) and 0.5 < M.pearson(x, y) < 1
    assert np.isnan(M.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])) and np.isnan(M.pearson([1.0], [2.0]))


def test_interval_and_standard_error_of_few_resamples():
    nan2 = M._interval(0.5, np.array([np.nan, 0.2, np.inf]), 0.95, 'z-t', 5, 'fisher')   # one finite resample
    assert all(np.isnan(nan2))
    assert all(np.isnan(M._interval(0.5, np.array([0.1, 0.3]), 0.95, 'z-t', 1, 'fisher')))   # one cluster
    lo, hi = M._interval(50.0, np.arange(101.0), 0.9, 'percentile', 10, 'raw')
    assert (lo, hi) == pytest.approx((5.0, 95.0))
    # z-t by hand: Fisher z of the value +- t_{k-1}(0.975) x SD(z of the resamples) x sqrt(k / (k - 1))
    s = np.array([0.2, 0.4, 0.5, 0.7])
    half = 3.182446305284263 * np.std(np.arctanh(s), ddof=1) * np.sqrt(4 / 3)
    assert M._interval(0.5, s, 0.95, 'z-t', 4, 'fisher') == pytest.approx(
        [np.tanh(np.arctanh(0.5) - half), np.tanh(np.arctanh(0.5) + half)], abs=1e-9)
    # AUC: on atanh(2 AUC - 1); a difference: on the raw scale
    a = M._interval(0.75, np.array([0.6, 0.7, 0.8, 0.9]), 0.95, 'z-t', 4, 'auc')
    zs = np.arctanh(2 * np.array([0.6, 0.7, 0.8, 0.9]) - 1)
    h = 3.182446305284263 * np.std(zs, ddof=1) * np.sqrt(4 / 3)
    assert a == pytest.approx([(np.tanh(np.arctanh(0.5) - h) + 1) / 2, (np.tanh(np.arctanh(0.5) + h) + 1) / 2])
    d = M._interval(0.1, np.array([0.0, 0.1, 0.2, 0.3]), 0.95, 'z-t', 4, 'raw')
    h = 3.182446305284263 * np.std([0.0, 0.1, 0.2, 0.3], ddof=1) * np.sqrt(4 / 3)
    assert d == pytest.approx([0.1 - h, 0.1 + h])
    b = M.interval_record('speakers', 4)
    st = M._stat(0.5, np.array([1.0, 2.0, 3.0, 4.0]), b)
    assert st['value'] == 0.5 and st['se'] == pytest.approx(1.2909944, abs=1e-6)     # sample SD (ddof 1)
    assert np.isnan(M._stat(0.5, np.array([1.0, np.nan]), b)['se'])
    assert M._stat(0.5, np.array([0.2, 0.4]), M.interval_record('speakers', 1))['ci'] == [None, None]   # withheld


def test_errors_name_the_choices():
    with pytest.raises(ToolkitError, match=r"unknown bootstrap resampling 'clusters'; use speakers or utterances"):
        M.evaluate([1.0, 2.0], [1.0, 2.0], resample='clusters')
    with pytest.raises(ToolkitError, match=r"speaker bootstrap needs the speaker of every utterance \(the label "
                                           r"file's SpkrID\); use --bootstrap utterances"):
        M.evaluate([1.0, 2.0], [1.0, 2.0])


def test_report_keys():
    x, y = [1.0, 2.0, 3.5, 3.0], [1.5, 2.0, 3.0, 3.5]
    r = M.evaluate(x, y, speakers=['a', 'a', 'b', 'c'], n_boot=50)
    assert 'auc_arousal' in r and r['auc_arousal'] is None and r['category_means'] == {}
    r = M.evaluate(x, y, speakers=['a', 'a', 'b', 'c'], categories=['sad', 'A', 'H', 'bored'], n_boot=50)
    assert r['auc_arousal']['high'] == ['anger', 'happiness', 'fear'] and r['auc_arousal']['low'] == \
        ['boredom', 'sadness'] and (r['auc_arousal']['n_high'], r['auc_arousal']['n_low']) == (2, 2)
    p = M.paired_difference(x, [1.2, 2.5, 3.0, 2.0], y, ['a', 'a', 'b', 'c'], n_boot=50, n_perm=20, seed=3)
    assert p['bootstrap']['method'] == 'z-t' and p['bootstrap']['paired'] is True and p['bootstrap']['n_clusters'] == 3
    assert p['permutation'] == {'n_perm': 20, 'unit': 'speakers', 'seed': 3}


def test_paired_permutations_are_exactly_n_perm():
    """p = (1 + #|d_perm| >= |d|) / (1 + n_perm) over the first n_perm permutations of the seeded stream (drawn in
    blocks of 100): the count grows by at most 50 from 200 to 250 permutations and again from 250 to 300, and
    the 50 permutations from 250 to 300 are new ones (a last block drawn whole would count them at 250 already)."""
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 60)
    a = y + rng.normal(0, 1, 60)
    b = a + rng.normal(0, 1e-4, 60)
    spk = np.repeat(np.arange(12), 5)
    k = {n: round(M.paired_difference(a, b, y, spk, n_boot=20, n_perm=n)['p_value'] * (1 + n)) - 1
         for n in (200, 250, 300)}
    assert 0 <= k[250] - k[200] <= 50 and 0 < k[300] - k[250] <= 50, k


def test_degenerate_cases_give_nan_without_runtime_warnings():
    """Constant predictions, one-class AUC and resamples of one constant speaker: NaN or 0 as documented, and no
    numpy RuntimeWarning on the console (each division is guarded)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert np.isnan(M.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
        assert np.isnan(M.auc([0.1, 0.5, 0.9], [True, True, True]))
        x = np.array([2.0, 2.0, 2.0, 5.0, 5.0, 5.0])               # each speaker's predictions constant
        r = M.evaluate(x, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], speakers=list('aaabbb'), n_boot=200)
        assert r['pearson_r']['value'] == pytest.approx(np.corrcoef(x, [1, 2, 3, 4, 5, 6])[0, 1])
        assert np.isfinite(r['ccc']['ci']).all()


def test_arousal_auc_scores_come_from_auc_scores_when_given():
    """evaluate(..., auc_scores=s) ranks high- against low-arousal categories by s, not by the predictions."""
    x, y = [1.0, 2.0, 3.5, 3.0, 2.5, 1.5], [1.5, 2.0, 3.0, 3.5, 2.0, 1.0]
    cats, spk = ['sad', 'A', 'H', 'bored', 'A', 'sad'], list('aabbcc')
    s = [0.9, 0.1, 0.2, 0.8, 0.3, 0.4]                      # every low-arousal utterance above every high one
    assert M.evaluate(x, y, speakers=spk, categories=cats, n_boot=50, auc_scores=s)['auc_arousal']['value'] == 0.0
    assert M.evaluate(x, y, speakers=spk, categories=cats, n_boot=50)['auc_arousal']['value'] == pytest.approx(7 / 9)
