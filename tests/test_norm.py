"""norm_para.py: streaming statistics equal numpy's, memory does not grow with corpus size, NormTerm files."""
import tracemalloc

import numpy as np
import pytest
import scipy.io

import norm
import norm_para
from feature_store import FeatureStore, FeatureStoreWriter


def test_running_stats_equal_numpy():
    rng = np.random.default_rng(0)
    xs = [(1e4 + rng.standard_normal((int(rng.integers(0, 300)), 7)) * rng.uniform(1e-3, 10, 7)).astype(np.float32)
          for _ in range(60)]
    rs = norm.RunningStats(7)
    for x in xs:
        rs.update(x, block=64)  # also exercises the in-utterance blocks
    cat = np.concatenate(xs).astype(np.float64)
    np.testing.assert_allclose(rs.mean, cat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rs.std, cat.std(0), rtol=1e-6, atol=1e-6)  # population std (ddof=0)
    xs[3][2, 1] = np.nan  # non-finite values are left out per dimension
    rs = norm.RunningStats(7)
    for x in xs:
        rs.update(x)
    cat = np.concatenate(xs).astype(np.float64)
    np.testing.assert_allclose(rs.mean, np.nanmean(cat, 0), rtol=1e-6)
    np.testing.assert_allclose(rs.std, np.nanstd(cat, 0), rtol=1e-6)


def _store(path, names, dim=130, seed=0, T=(20, 200)):
    rng = np.random.default_rng(seed)
    arrs = {}
    with FeatureStoreWriter(path, 'lld', dim, 0.016, 'published', flush_every=1000) as w:
        for n in names:
            a = rng.standard_normal((int(rng.integers(*T)), dim)).astype(np.float32) * 3 + 5
            a[:, 0] = 2.0  # a constant dimension
            w.add(n, a)
            arrs[n] = a
    return arrs


def test_norm_para_cli(tiny_corpus, tmp_path, capsys):
    from corpus import Corpus
    from utils import load_norm
    c = Corpus(tiny_corpus)
    train = c.files('Train')
    arrs = _store(tmp_path / 'lld', c.files()[:-1])  # the last utterance is "missing" from the store
    norm_para.main(['--corpus', str(tiny_corpus), '--features', str(tmp_path / 'lld'), '--out', str(tmp_path / 'NT')])
    out = capsys.readouterr().out
    assert f'Train (release Train): {len([n for n in train if n in arrs])} utterances' in out
    cat = np.concatenate([arrs[n] for n in train if n in arrs]).astype(np.float64)
    for kind, ref in (('means', cat.mean(0)), ('stds', np.maximum(cat.std(0), 1e-8))):
        m = scipy.io.loadmat(tmp_path / 'NT' / f'feat_norm_{kind}.mat')['normal_para']
        assert m.shape == (1, 130)  # the published layout
        np.testing.assert_allclose(m[0], ref, rtol=1e-6, atol=1e-6)
    assert scipy.io.loadmat(tmp_path / 'NT' / 'feat_norm_stds.mat')['normal_para'][0, 0] == 1e-8  # constant dim
    norm = load_norm(tmp_path / 'NT')
    for e, col in (('Act', 'EmoAct'), ('Dom', 'EmoDom'), ('Val', 'EmoVal')):
        v = c.labels.set_index('FileName').loc[train, col].to_numpy(float)
        assert norm[e][0] == pytest.approx(v.mean(), abs=1e-9) and norm[e][1] == pytest.approx(np.std(v), abs=1e-9)
        assert scipy.io.loadmat(tmp_path / 'NT' / f'{e.lower()}_norm_means.mat')['normal_para'].shape == (1, 1)


def test_norm_para_on_extracted_lld(tiny_corpus, tmp_path):
    import extract_features
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(tmp_path / 'lld'), '--workers', '2',
                           '--split', 'Train'])
    norm_para.main(['--corpus', str(tiny_corpus), '--features', str(tmp_path / 'lld'), '--out', str(tmp_path / 'NT')])
    s = FeatureStore(tmp_path / 'lld')
    cat = np.concatenate([s.get(n) for n in s.names]).astype(np.float64)
    m = scipy.io.loadmat(tmp_path / 'NT' / 'feat_norm_means.mat')['normal_para'][0]
    sd = scipy.io.loadmat(tmp_path / 'NT' / 'feat_norm_stds.mat')['normal_para'][0]
    np.testing.assert_allclose(m, cat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sd, np.maximum(cat.std(0), 1e-8), rtol=1e-6, atol=1e-6)


def test_memory_does_not_grow_with_utterances(tmp_path):
    names = [f'u{i:04d}.wav' for i in range(600)]
    _store(tmp_path / 's', names, T=(150, 250))  # ~600 x 200 x 130 x 4 B = 62 MB on disk
    s = FeatureStore(tmp_path / 's')
    peaks = []
    for k in (60, 600):
        tracemalloc.start()
        mean, std, frames, used, _ = norm.feature_stats(s, names[:k], progress=False)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert len(used) == k
    # 10x the utterances (62 MB of features) may add only per-name bookkeeping, not frames
    assert peaks[1] < 1.3 * peaks[0] + 200_000, peaks
    assert peaks[1] < 2_000_000, peaks
