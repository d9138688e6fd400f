"""MSCR (method 2): pooling/cropping vs a per-chunk reference, masks, and an end-to-end run on a tiny
generated corpus (real WAVs -> openSMILE LLDs, transcripts -> offline MiniLM tokens, TextGrids)."""
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model import MSCR_SCALES, TransformerENC_CoAtten, audio_chunk_features, multiscale_crop, pyramid_pool, word_chunks

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny models run faster on one thread (and the CPU is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- plain references
def ref_chunks(T, C, m):
    """SPEC §3 literally: K = C windows of m frames starting at k·floor((T' - m)/(C - 1)), T' = max(T, m);
    the valid frames of a window are those before T."""
    s = (max(T, m) - m) // (C - 1)
    return [(k * s, min(m, T)) for k in range(C)]


def ref_crop(L, scales, us, up):
    f = scales[min(int(us * len(scales)), len(scales) - 1)]
    Lc = min(max(int(math.floor(f * L + 0.5)), 1), L)
    return min(int(math.floor(up * (L - Lc + 1))), L - Lc), Lc


def ref_pool(x, keep=None, min_frames=5):
    """Pyramid pooling of one chunk x (L, D) by the definition; keep: frames present (missing ones are
    left out of every mean, a part without frames takes the whole mean)."""
    L, D = x.shape
    keep = np.ones(L, bool) if keep is None else keep
    if keep.sum() == 0:
        return np.zeros(7 * D)
    whole = x[keep].mean(0)
    if keep.sum() < min_frames:
        return np.tile(whole, 7)
    out = [whole]
    for q in (2, 4):
        for j in range(q):
            a, b = j * L // q, (j + 1) * L // q
            out.append(x[a:b][keep[a:b]].mean(0) if keep[a:b].any() else whole)
    return np.concatenate(out)


CASES = [(3, 2), (4, 5), (40, 3), (50, 2), (51, 4), (173, 30), (120, 9), (77, 2)]   # (T frames, C words)


def _batch(seed=0, D=4, m=50):
    rng = np.random.default_rng(seed)
    T = torch.tensor([t for t, _ in CASES])
    C = torch.tensor([c for _, c in CASES])
    x = torch.zeros(len(CASES), int(T.max()) + 7, D)      # zero padding past each length
    for b, t in enumerate(T):
        x[b, :t] = torch.from_numpy(rng.normal(size=(int(t), D)).astype(np.float32))
    return x, T, C, m


def test_word_chunks_follow_spec():
    x, T, C, m = _batch()
    start, length = word_chunks(T, C, m)
    assert start.shape == (len(CASES), int(C.max()))
    for b, (t, c) in enumerate(CASES):
        ref = ref_chunks(t, c, m)
        assert [(int(s), int(n)) for s, n in zip(start[b, :c], length[b, :c])] == ref
        assert (length[b, c:] == 0).all()          # padded chunk positions


@pytest.mark.parametrize('crop', [False, True])
def test_pyramid_pool_and_crop_match_reference(crop):
    x, T, C, m = _batch(1)
    start, length = word_chunks(T, C, m)
    g = torch.Generator().manual_seed(3)
    us, up = torch.rand(start.shape, generator=g, dtype=torch.float64), torch.rand(start.shape, generator=g, dtype=torch.float64)
    if crop:
        off, length = multiscale_crop(length, MSCR_SCALES, us, up)
        start = start + off
    got = pyramid_pool(x, start, length).numpy()
    xn = x.numpy().astype(np.float64)
    n_short = 0
    for b, (t, c) in enumerate(CASES):
        for k, (s, L) in enumerate(ref_chunks(t, c, m)):
            if crop:
                o, L = ref_crop(L, MSCR_SCALES, float(us[b, k]), float(up[b, k]))
                s += o
            n_short += L < 5
            np.testing.assert_allclose(got[b, k], ref_pool(xn[b, s:s + L]), atol=1e-5, err_msg=f'{b} {k}')
        assert np.all(got[b, c:] == 0)
    assert n_short > 0                              # chunks with < 5 frames were exercised


def test_pyramid_pool_with_missing_frames_matches_reference():
    x, T, C, m = _batch(2)
    start, length = word_chunks(T, C, m)
    keep = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(0)) > 0.6
    got = pyramid_pool(x, start, length, keep).numpy()
    _, pad = audio_chunk_features(x, T, C, m, None, keep)
    xn, kn = x.numpy().astype(np.float64), keep.numpy()
    for b, (t, c) in enumerate(CASES):
        for k, (s, L) in enumerate(ref_chunks(t, c, m)):
            np.testing.assert_allclose(got[b, k], ref_pool(xn[b, s:s + L], kn[b, s:s + L]), atol=1e-5)
            assert bool(pad[b, k]) == (kn[b, s:s + L].sum() == 0)


def test_multiscale_crop_distribution():
    L = torch.full((20000,), 62)
    off, Lc = multiscale_crop(L, generator=torch.Generator().manual_seed(0))
    want = {int(math.floor(f * 62 + 0.5)) for f in MSCR_SCALES}          # {12, 25, 37, 50, 62}
    vals, counts = np.unique(Lc.numpy(), return_counts=True)
    assert set(vals.tolist()) == want
    assert np.all(np.abs(counts / len(L) - 0.2) < 0.02)                  # fractions drawn uniformly
    assert (off >= 0).all() and (off + Lc <= L).all()                     # crop stays inside the chunk
    sel = Lc == 12
    assert int(off[sel].min()) == 0 and int(off[sel].max()) == 50         # every position reachable
    off1, Lc1 = multiscale_crop(torch.tensor([62, 3, 1, 0]), (1.0,))      # --scales 1.0: chunks whole
    assert off1.tolist() == [0, 0, 0, 0] and Lc1.tolist() == [62, 3, 1, 0]
    a = multiscale_crop(L[:50], generator=torch.Generator().manual_seed(5))
    b = multiscale_crop(L[:50], generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))                    # seeded


# ----------------------------------------------------------------------------- model and masks
def _model(Da=4, Dt=6, **kw):
    torch.manual_seed(0)
    return TransformerENC_CoAtten(7 * Da, Dt, d=32, heads=4, ff=64, **kw).eval()


def test_padding_does_not_change_outputs():
    x, T, C, m = _batch(4)
    B = len(CASES)
    Nt = torch.tensor([5, 1, 9, 3, 12, 2, 7, 4])
    t = torch.randn(B, 12, 6)
    t_pad = torch.arange(12)[None] >= Nt[:, None]
    model = _model()
    with torch.no_grad():
        pooled, a_pad = audio_chunk_features(x, T, C, m)
        y = model(pooled, a_pad, t, t_pad)
        x2, t2 = x.clone(), t.clone()
        for b in range(B):
            x2[b, T[b]:] = 1e3                      # padded frames
        t2[t_pad] = -50.0                           # padded tokens
        pooled2, a_pad2 = audio_chunk_features(x2, T, C, m)
        assert torch.equal(a_pad, a_pad2)
        pooled2[a_pad2] = 7.0                       # padded chunk positions
        y2 = model(pooled2, a_pad2, t2, t_pad)
        torch.testing.assert_close(y, y2, atol=1e-5, rtol=1e-5)
        for b in (0, 5):                            # one utterance alone == inside the padded batch
            p1, ap1 = audio_chunk_features(x[b:b + 1, :T[b]], T[b:b + 1], C[b:b + 1], m)
            y1 = model(p1, ap1, t[b:b + 1, :Nt[b]], t_pad[b:b + 1, :Nt[b]])
            torch.testing.assert_close(y1[0], y[b], atol=1e-5, rtol=1e-5)
        keep = torch.rand(x.shape[:2]) > 0.5        # missing frames do not leak either
        pk, apk = audio_chunk_features(x, T, C, m, None, keep)
        x3 = x.clone()
        x3[~keep] = 99.0
        pk3, _ = audio_chunk_features(x3, T, C, m, None, keep)
        torch.testing.assert_close(pk[~apk], pk3[~apk])


def test_single_modality_fallback():
    model = _model()
    a, t = torch.randn(3, 5, 28), torch.randn(3, 4, 6)
    no_a, no_t = torch.ones(3, 5, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    some_a, some_t = torch.zeros(3, 5, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool)
    with torch.no_grad():
        y_audio_only = model(a, some_a, t, no_t)
        y_text_only = model(a, no_a, t, some_t)
        y_none = model(a, no_a, t, no_t)
        assert torch.isfinite(torch.stack([y_audio_only, y_text_only, y_none])).all()
        # an absent modality is exactly its global token: all-padded == empty sequence
        torch.testing.assert_close(model(a[:, :0], no_a[:, :0], t, some_t), y_text_only)
        torch.testing.assert_close(model(a, some_a, t[:, :0], no_t[:, :0]), y_audio_only)
        assert torch.allclose(y_none[0], y_none[1])   # nothing left: the same prediction for everyone


def test_published_configuration():
    m = TransformerENC_CoAtten(7 * 1024, 768)
    assert m.proj_a.bias is None and m.proj_t.bias is None and m.proj_a.weight.shape == (256, 7 * 1024)
    assert len(m.self_a) == len(m.self_t) == 3 and len(m.co_a) == len(m.co_t) == 2
    layer = m.self_a[0]
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 512 and not layer.norm_first
    assert [tuple(h[0].weight.shape) + tuple(h[2].weight.shape) for h in m.heads] == [(256, 512, 1, 256)] * 3
    with pytest.raises(ValueError, match='max_len'):
        m(torch.zeros(1, 128, 7 * 1024), torch.zeros(1, 128, dtype=torch.bool),
          torch.zeros(1, 2, 768), torch.zeros(1, 2, dtype=torch.bool))


def test_missing_masks_are_seeded_nested_and_exact():
    from dataloader import mscr_missing_masks
    prev = None
    for p in (0.0, 0.25, 0.5, 1.0):
        mk = mscr_missing_masks(40, 8, 10, dict(audio=p, text=p, mode='frames'), 0, 3)
        half_up = lambda n, p=p: math.floor(p * n + 0.5)
        assert (~mk['frame_keep']).sum() == half_up(40) and (~mk['token_keep']).sum() == half_up(10)
        assert mk['chunk_keep'].all()
        if prev is not None:
            assert np.all(mk['frame_keep'] <= prev['frame_keep'])      # nested
        prev = mk
    mk = mscr_missing_masks(40, 8, 10, dict(audio=0.5, text=0.0, mode='chunks'), 0, 3)
    assert (~mk['chunk_keep']).sum() == 4 and mk['frame_keep'].all() and mk['token_keep'].all()
    assert mscr_missing_masks(40, 8, 10, dict(audio=1, text=0, mode='modality'), 0, 3)['audio_on'] is False
    on = [mscr_missing_masks(5, 2, 3, dict(audio=0.3, text=0.0, mode='modality'), 1, i)['audio_on'] for i in range(400)]
    assert 0.2 < 1 - np.mean(on) < 0.4
    a = mscr_missing_masks(40, 8, 10, dict(audio=0.3, text=0.3, mode='frames'), 0, 3)
    b = mscr_missing_masks(40, 8, 10, dict(audio=0.3, text=0.3, mode='frames'), 0, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def stores(tiny_corpus, tmp_path_factory):
    """LLD audio store, MiniLM text store and the NormTerm of the audio store for the tiny corpus."""
    import extract_features
    import norm_para
    out = tmp_path_factory.mktemp('mscr')
    for feat in ('lld', 'text'):
        extract_features.main(['--corpus', str(tiny_corpus), '--feature', feat, '--out', str(out / feat),
                               '--workers', '1', '--device', 'cpu'])
    norm_para.main(['--corpus', str(tiny_corpus), '--features', str(out / 'lld'), '--out', str(out / 'NormTerm')])
    return tiny_corpus, out


def _flags(corpus, out, *extra):
    return ['--corpus', str(corpus), '--audio-feature', 'lld', '--audio-store', str(out / 'lld'),
            '--text-store', str(out / 'text'), '--workers', '0', '--save-dir', str(out / 'runs'),
            '--hidden', '64', '--ff', '128', *extra]


def test_dataset_caps_long_sequences_with_a_warning(stores):
    from corpus import Corpus
    from dataloader import MSCRDataset, mscr_collate
    from feature_store import FeatureStore
    from utils import load_norm
    root, out = stores
    audio, text = FeatureStore(out / 'lld'), FeatureStore(out / 'text')
    with pytest.warns(UserWarning, match='more than 3'):
        ds = MSCRDataset(Corpus(root), 'Train', audio, text, load_norm(out / 'NormTerm'), max_len=4, verbose=False)
    assert ds.report['capped_words'] > 0 and ds.report['capped_tokens'] > 0
    b = mscr_collate([ds[i] for i in range(len(ds))])
    assert int(b['C'].max()) <= 3 and b['t'].shape[1] <= 3 and b['a'].shape[2] == 130
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        full = MSCRDataset(Corpus(root), 'Train', audio, text, load_norm(out / 'NormTerm'), verbose=False)
    words = [len(Corpus(root).words(n)) for n in full.names]
    assert [c for _, c, _ in full.items] == [max(w, 2) for w in words]  # one chunk per aligned word


def test_train_test_sweep_end_to_end(stores):
    import mscr
    root, out = stores
    fl = lambda *e: _flags(root, out, '--norm', str(out / 'NormTerm'), *e)
    ckpts = {}
    for scales in ('0.2,0.4,0.6,0.8,1.0', '1.0'):
        ckpts[scales] = mscr.main(['train', *fl('--iters', '200', '--val-every', '50', '--scales', scales)])
        assert ckpts[scales].exists()
        log = pd.read_csv(str(ckpts[scales])[:-8] + '.log.csv')
        assert log['iteration'].tolist() == [50, 100, 150, 200]
        assert log['train_loss'].iloc[-1] < log['train_loss'].iloc[0]       # it learns
        assert Path(str(ckpts[scales])[:-8] + '.loss.png').stat().st_size > 1000
    assert ckpts['1.0'].name == 'MSCR_iter200_batch128_lld_scales1.pth.tar'
    s = mscr.main(['test', *fl('--iters', '200', '--checkpoint', str(ckpts['1.0']))])
    assert all(np.isfinite(s[e]) for e in ('Act', 'Dom', 'Val'))
    s2 = mscr.main(['test', *fl('--checkpoint', str(ckpts['1.0']), '--missing-audio', '1', '--missing-mode', 'modality')])
    assert s2 != s
    from corpus import Corpus
    from feature_store import FeatureStore
    model, meta = mscr.load_mscr(ckpts['1.0'])
    name = Corpus(root).files('Test')[0]
    a, t = FeatureStore(out / 'lld').get(name), FeatureStore(out / 'text').get(name)
    full = mscr.predict_utterance(model, meta, a, t, len(Corpus(root).words(name)))
    text_only = mscr.predict_utterance(model, meta, None, t, None)
    audio_only = mscr.predict_utterance(model, meta, a, None, None)
    assert all(np.isfinite(p[e]) for p in (full, text_only, audio_only) for e in ('Act', 'Dom', 'Val'))
    assert full != text_only and full != audio_only
    for ck in ckpts.values():
        df = mscr.main(['test', *fl('--checkpoint', str(ck), '--sweep', '--sweep-fracs', '0,0.5,1',
                                    '--missing-mode', 'frames,chunks,modality')])
        assert len(df) == 3 * 3 * 3 and np.isfinite(df[['ccc_Act', 'ccc_Dom', 'ccc_Val']].to_numpy()).all()
        both_gone = df[(df.missing == 'both') & (df.fraction == 1)]
        assert np.allclose(both_gone[['ccc_Act', 'ccc_Dom', 'ccc_Val']], 0, atol=1e-6)   # constant output
        stem = ck.name[:-8]
        assert (out / 'runs' / f'{stem}_Test_sweep.csv').exists()
        for mode in ('frames', 'chunks', 'modality'):
            assert (out / 'runs' / f'{stem}_Test_sweep_{mode}.png').stat().st_size > 1000


def test_resume_continues_exactly(stores):
    import mscr
    root, out = stores
    fl = lambda name, it, *e: _flags(root, out, '--iters', str(it), '--val-every', '10', '--name', name, *e)
    mscr.main(['train', *fl('straight', 30)])
    mscr.main(['train', *fl('resumed', 20)])
    mscr.main(['train', *fl('resumed', 30, '--resume')])
    a = pd.read_csv(out / 'runs' / 'straight.log.csv').drop(columns='seconds')
    b = pd.read_csv(out / 'runs' / 'resumed.log.csv').drop(columns='seconds')
    pd.testing.assert_frame_equal(a, b)
    meta = pd.read_json(out / 'runs' / 'resumed.meta.json', typ='series')
    assert meta['feature_norm'].startswith('Train statistics')      # no --norm: computed at start


def test_training_script_dispatches_to_mscr(stores):
    root, out = stores
    if not (REPO / 'training.py').exists() or 'mscr' not in (REPO / 'training.py').read_text():
        pytest.skip('training.py with --model mscr is not there yet')
    flags = _flags(root, out, '--iters', '4', '--val-every', '2', '--name', 'cli', '--scales', '1.0')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, 'training.py', '--model', 'mscr', *flags], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, 'testing.py', '--model', 'mscr', *flags, '--missing-text', '0.5',
                        '--missing-mode', 'tokens'], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Act CCC' in r.stdout
