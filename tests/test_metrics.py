"""metrics.py: bootstrap intervals of CCC / Pearson r / arousal AUC, checked against explicit resamples and
for coverage on synthetic data whose population CCC is known."""
import time

import numpy as np
import pytest

import metrics as M
from errors import ToolkitError
from utils import ccc

# clustered synthetic data: label y = u_s + e, prediction x = y + b_s + f with speaker effects u_s ~ N(0, 1),
# a per-speaker bias b_s ~ N(0, 0.5) and noise e ~ N(0, 1), f ~ N(0, 0.25): var y = 2, var x = 2.75,
# cov = 2, equal means -> population CCC = 2 * 2 / (2 + 2.75) = 0.8421
TRUE_CCC = 4 / 4.75


def clustered(rng, n_spk=30, per=20, bias_sd=0.5 ** 0.5):
    spk = np.repeat(np.arange(n_spk), per)
    y = rng.normal(0, 1, n_spk)[spk] + rng.normal(0, 1, len(spk))
    x = y + rng.normal(0, bias_sd, n_spk)[spk] + rng.normal(0, 0.5, len(spk))
    return x, y, spk


def test_resamples_equal_explicit_resampled_data():
    """Every bootstrap statistic equals the plain metric on the resample written out (np.repeat)."""
    rng = np.random.default_rng(3)
    x, y, spk = clustered(rng, n_spk=8, per=6)
    cats = rng.choice(['A', 'H', 'F', 'S', 'Bored', 'N'], len(x))
    counts = M.cluster_counts(8, n_boot=5, seed=11)
    codes = np.unique(spk, return_inverse=True)[1]
    x, y = x + 3, y + 4                     # a mean offset must not matter
    for b in range(5):
        rep = counts[b][codes].astype(int)
        xs, ys = np.repeat(x, rep), np.repeat(y, rep)
        c, r = M._moments(x - y.mean(), y - y.mean(), codes, counts[b:b + 1])
        assert c[0] == pytest.approx(ccc(xs, ys), abs=1e-10)
        assert r[0] == pytest.approx(np.corrcoef(xs, ys)[0, 1], abs=1e-10)
        cs = np.array([M.canonical_category(v) for v in np.repeat(cats, rep)])
        keep = np.isin(cs, M.HIGH_AROUSAL + M.LOW_AROUSAL)
        ck = np.array([M.canonical_category(v) for v in cats])
        k0 = np.isin(ck, M.HIGH_AROUSAL + M.LOW_AROUSAL)
        a = M._weighted_auc(x[k0], np.isin(ck[k0], M.HIGH_AROUSAL), counts[b:b + 1][:, codes[k0]])[0]
        assert a == pytest.approx(brute_auc(xs[keep], np.isin(cs[keep], M.HIGH_AROUSAL)), abs=1e-12)


def brute_auc(s, pos):
    p, n = s[pos], s[~pos]
    return ((p[:, None] > n[None]).sum() + 0.5 * (p[:, None] == n[None]).sum()) / (len(p) * len(n))


def test_auc_ties_and_definition():
    s = np.array([1, 2, 3, 3, 5, 0.5])
    pos = np.array([0, 0, 1, 0, 1, 1], bool)
    assert M.auc(s, pos) == pytest.approx(brute_auc(s, pos))
    assert M.auc([1, 2], [True, True]) != M.auc([1, 2], [True, True])          # NaN: one class empty
    r = M.evaluate([6, 6.5, 2, 3, 4], [6, 6, 2, 3, 4], speakers=list('aabbc'),
                   categories=['Angry', 'H', 'Sad', 'boredom', 'Neutral'])
    assert r['auc_arousal']['value'] == 1.0 and r['auc_arousal']['n_high'] == 2 and r['auc_arousal']['n_low'] == 2
    assert r['category_means']['anger'] == {'n': 1, 'label': 6.0, 'pred': 6.0}
    assert set(r['category_means']) == {'anger', 'happiness', 'sadness', 'boredom', 'neutral'}


def test_coverage_known_ccc_and_speaker_vs_utterance():
    """On clustered data the speaker (cluster) interval covers the population CCC about 95 % of the time; the
    utterance interval, which treats the utterances as independent, is much narrower and misses it often."""
    rng = np.random.default_rng(0)
    hit = {'speakers': 0, 'utterances': 0}
    width = {'speakers': [], 'utterances': []}
    reps = 100
    for i in range(reps):
        x, y, spk = clustered(rng)
        for res in hit:
            ci = M.evaluate(x, y, spk, resample=res, n_boot=300, seed=i)['ccc']['ci']
            hit[res] += ci[0] <= TRUE_CCC <= ci[1]
            width[res].append(ci[1] - ci[0])
    cov = {k: v / reps for k, v in hit.items()}
    assert 0.85 <= cov['speakers'] <= 0.995, cov              # measured 0.90 (percentile interval, 30 clusters)
    assert cov['utterances'] <= cov['speakers'] - 0.2, cov     # measured 0.56
    assert np.mean(width['speakers']) > 2 * np.mean(width['utterances'])   # measured 2.6x


def test_coverage_independent_utterances():
    """Without clusters (one utterance per speaker) both units are the same draw and cover ~95 %."""
    rng = np.random.default_rng(1)
    hit = 0
    for i in range(100):
        y = rng.normal(0, 1, 150)
        x = 0.8 * y + rng.normal(0, 0.6, 150) + 0.1          # CCC = 2*.8 / (1 + 1 + .01) = 0.796
        lo, hi = M.evaluate(x, y, resample='utterances', n_boot=300, seed=i)['ccc']['ci']
        hit += lo <= 1.6 / 2.01 <= hi
    assert 0.86 <= hit / 100 <= 0.995


def test_seed_determinism_and_errors():
    rng = np.random.default_rng(5)
    x, y, spk = clustered(rng, n_spk=10, per=5)
    a, b = M.evaluate(x, y, spk, seed=7), M.evaluate(x, y, spk, seed=7)
    assert a == b
    assert M.evaluate(x, y, spk, seed=8)['ccc']['ci'] != a['ccc']['ci']
    assert a['bootstrap']['n_clusters'] == 10 and a['n_speakers'] == 10
    assert M.evaluate(x, y, spk, resample='utterances')['bootstrap']['n_clusters'] == 50
    with pytest.raises(ToolkitError, match='speaker'):
        M.evaluate(x, y, None)
    with pytest.raises(ToolkitError, match='no speaker ID'):
        M.evaluate(x, y, [None] + list(spk[1:]))
    with pytest.raises(ToolkitError, match='NaN'):
        M.evaluate(np.r_[np.nan, x[1:]], y, spk)
    with pytest.raises(ToolkitError, match='resampling'):
        M.evaluate(x, y, spk, resample='folds')


def test_fast_on_10k_utterances():
    rng = np.random.default_rng(2)
    x, y, spk = clustered(rng, n_spk=100, per=100)
    t = time.perf_counter()
    r = M.evaluate(x, y, spk, n_boot=1000)
    assert time.perf_counter() - t < 1.0
    assert r['ccc']['ci'][0] < r['ccc']['value'] < r['ccc']['ci'][1]
    assert 'speakers' in M.describe_bootstrap(r['bootstrap']) and '1000 resamples of the 100' in \
        M.describe_bootstrap(r['bootstrap'])


def test_categories_and_bootstrap_unit(tiny_corpus):
    from corpus import Corpus
    assert [M.canonical_category(c) for c in ['A', 'Angry', 'ang', 'H', 'exc', 'F', 'S', 'Bored', 'calm', 'xxx']] \
        == ['anger', 'anger', 'anger', 'happiness', 'happiness', 'fear', 'sadness', 'boredom', 'calm', 'no agreement']
    assert M.canonical_category(float('nan')) is None and M.canonical_category('Kummer') == 'kummer'
    c = Corpus(tiny_corpus)
    names = c.files()[:5]
    # no Category column in this corpus: EmoClass letters, read through the same table
    assert M.corpus_categories(c, names) == [M.canonical_category(x) for x in c.labels.EmoClass[:5]]
    assert M.bootstrap_unit('speakers', M.corpus_speakers(c, names)) == ('speakers', '')
    unit, note = M.bootstrap_unit('speakers', ['1', None])
    assert unit == 'utterances' and 'no speaker ID' in note


def loop_interval(x, y, spk, counts, stat):
    """The printed interval written out with loops: every resample built by repeating the drawn speakers'
    utterances, its statistic computed plainly, Fisher z (atanh), then z +- t(k-1) x SD x sqrt(k / (k-1))."""
    uniq = sorted(set(spk))
    k = len(uniq)
    z = []
    for row in counts:
        take = [i for j, s in enumerate(uniq) for _ in range(int(row[j])) for i in range(len(spk)) if spk[i] == s]
        z.append(np.arctanh(stat(x[take], y[take])))
    half = 2.7764451051977987 * np.std(z, ddof=1) * np.sqrt(k / (k - 1))     # t_4(0.975), k = 5
    z0 = np.arctanh(stat(x, y))
    return [np.tanh(z0 - half), np.tanh(z0 + half)]


def test_interval_definition_against_a_loop():
    """5 speakers (>= MIN_SPEAKERS): the printed CCC and r intervals equal the loop implementation on the same
    resamples; the percentile interval (what was printed before) is narrower and differs."""
    rng = np.random.default_rng(11)
    x, y, spk = clustered(rng, n_spk=5, per=7)
    assert M.MIN_SPEAKERS <= 5 and M.t_quantile(0.95, 4) == pytest.approx(2.7764451051977987, abs=1e-12)
    r = M.evaluate(x, y, spk, n_boot=200, seed=4)
    counts = M.cluster_counts(5, 200, 4)
    assert r['ccc']['ci'] == pytest.approx(loop_interval(x, y, list(spk), counts, ccc), abs=1e-10)
    assert r['pearson_r']['ci'] == pytest.approx(loop_interval(x, y, list(spk), counts,
                                                               lambda a, b: np.corrcoef(a, b)[0, 1]), abs=1e-10)
    assert r['bootstrap']['method'] == 'z-t' and not r['bootstrap']['withheld']
    p = M.evaluate(x, y, spk, n_boot=200, seed=4, method='percentile')['ccc']['ci']
    assert p[1] - p[0] < r['ccc']['ci'][1] - r['ccc']['ci'][0]
    assert 'Fisher z +- t(4)' in M.describe_bootstrap(r['bootstrap'])


def test_interval_withheld_below_the_measured_speaker_count():
    """Below MIN_SPEAKERS test speakers no interval is printed, with the reason; MIN_SPEAKERS is the count
    bench/bench_coverage.py measured (its JSON)."""
    import json
    from pathlib import Path
    cov = json.loads((Path(__file__).resolve().parents[1] / M.COVERAGE_JSON).read_text())
    assert cov['min_speakers_measured'] == M.MIN_SPEAKERS == cov['min_speakers_in_metrics']
    rng = np.random.default_rng(6)
    k = M.MIN_SPEAKERS
    x, y, spk = clustered(rng, n_spk=k, per=10)
    cats = rng.choice(['A', 'S'], len(x))
    few = spk < k - 1                                          # k - 1 speakers
    r = M.evaluate(x[few], y[few], spk[few], cats[few])
    for key in ('ccc', 'pearson_r', 'auc_arousal'):
        assert r[key]['ci'] == [None, None] and np.isfinite(r[key]['value'])
    why = r['bootstrap']['withheld']
    assert why.startswith(f'{k - 1} test speaker') and f'90 % coverage from {k} speakers on (bench/results/coverage.json)' \
        in why
    assert M.describe_bootstrap(r['bootstrap']) == '95 % CI withheld: ' + why
    assert M.fmt_ci(r['ccc']).endswith('[CI withheld]')
    d = M.paired_difference(x[few], y[few] + 0.1, y[few], spk[few], n_perm=20)
    assert d['diff']['ci'] == [None, None] and d['bootstrap']['withheld'] == why
    ok = M.evaluate(x, y, spk, cats)                         # k speakers: printed
    assert all(np.isfinite(ok[key]['ci']).all() for key in ('ccc', 'pearson_r', 'auc_arousal'))
    assert ok['ccc']['ci'][0] < ok['ccc']['value'] < ok['ccc']['ci'][1]
    # utterances resampled: an interval from 2 utterances on, said to assume independent utterances
    u = M.evaluate(x[few], y[few], resample='utterances')
    assert np.isfinite(u['ccc']['ci']).all() and 'assumes independent utterances' in M.describe_bootstrap(u['bootstrap'])
