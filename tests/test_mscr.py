"""MSCR (method 2): the model against an independent reference written from the method description (and a
state_dict in the published layout loaded strictly), chunking/cropping/pooling against per-chunk
references, normalisation, masks, and end-to-end runs through training.py / testing.py on a tiny generated
corpus (real WAVs -> openSMILE LLDs, transcripts -> offline MiniLM tokens, TextGrids)."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from errors import ToolkitError
from model import (
    MSCR_SCALES,
    TransformerENC_CoAtten,
    audio_chunk_features,
    dynamic_chunks,
    multiscale_crop,
    pyramid_pool,
)

pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ============================================================================ reference model (plain tensor ops)
def published_keys(n_self=3, n_co=2):
    """Parameter names and shapes of the published TransformerENC_CoAtten, from its description."""
    def layer(p, d, ff):
        return {f'{p}.self_attn.in_proj_weight': (3 * d, d), f'{p}.self_attn.in_proj_bias': (3 * d,),
                f'{p}.self_attn.out_proj.weight': (d, d), f'{p}.self_attn.out_proj.bias': (d,),
                f'{p}.linear1.weight': (ff, d), f'{p}.linear2.weight': (d, ff), f'{p}.norm1.weight': (d,),
                f'{p}.norm1.bias': (d,), f'{p}.norm2.weight': (d,), f'{p}.norm2.bias': (d,)}

    def shapes(Da, Dt, d):
        out = {'proj_sph.weight': (d, Da), 'proj_txt.weight': (d, Dt)}
        for k in range(1, n_self + 1):
            out.update(layer(f'trans.l{k}_sph_sph', d, 2 * d), **layer(f'trans.l{k}_txt_txt', d, 2 * d))
        for k in range(n_self + 1, n_self + n_co + 1):
            out.update(layer(f'trans.l{k}_sph_txt', d, 2 * d), **layer(f'trans.l{k}_txt_sph', d, 2 * d))
        for e in ('act', 'dom', 'val'):
            out.update({f'top_layer_{e}.0.weight': (d, 2 * d), f'top_layer_{e}.0.bias': (d,),
                        f'top_layer_{e}.2.weight': (1, d), f'top_layer_{e}.2.bias': (1,)})
        return out
    return shapes


def random_state_dict(Da, Dt, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shp in published_keys()(Da, Dt, d).items():
        scale = 1.0 if 'norm' in k and k.endswith('weight') else 0.3
        base = 1.0 if 'norm' in k and k.endswith('weight') else 0.0
        sd[k] = base + scale * torch.randn(shp, generator=g, dtype=torch.float64) / (math.sqrt(shp[-1]) if
                                                                                       len(shp) > 1 else 1)
    return sd


def ref_mha(q, kv, pad, W, b, Wo, bo, heads):
    L, d = q.shape
    Q, K, V = q @ W[:d].T + b[:d], kv @ W[d:2 * d].T + b[d:2 * d], kv @ W[2 * d:].T + b[2 * d:]
    hd = d // heads
    out = []
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        s = Q[:, sl] @ K[:, sl].T / math.sqrt(hd)
        s = s.masked_fill(pad[None, :], float('-inf'))
        out.append(torch.softmax(s, -1) @ V[:, sl])
    return torch.cat(out, -1) @ Wo.T + bo


def ref_ln(x, w, b):
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def ref_layer(sd, p, x, pad, y, heads):
    """The layer as described: a = MHA(q = y, k = v = x), zero a at x's pads, h = LN1(x + a), zero h at the
    pads, out = LN2(h + W2 GELU(W1 h)); eval mode (no dropout)."""
    keep = (~pad).double()[:, None]
    a = ref_mha(y, x, pad, sd[f'{p}.self_attn.in_proj_weight'], sd[f'{p}.self_attn.in_proj_bias'],
                sd[f'{p}.self_attn.out_proj.weight'], sd[f'{p}.self_attn.out_proj.bias'], heads) * keep
    h = ref_ln(x + a, sd[f'{p}.norm1.weight'], sd[f'{p}.norm1.bias']) * keep
    f = torch.nn.functional.gelu(h @ sd[f'{p}.linear1.weight'].T) @ sd[f'{p}.linear2.weight'].T
    return ref_ln(h + f, sd[f'{p}.norm2.weight'], sd[f'{p}.norm2.bias'])


def ref_pe(L, d):
    pe = torch.zeros(L, d, dtype=torch.float64)
    for pos in range(L):
        for i in range(0, d, 2):
            ang = pos / 10000 ** (i / d)
            pe[pos, i], pe[pos, i + 1] = math.sin(ang), math.cos(ang)
    return pe


def ref_forward(sd, audio, text, heads, max_len=128):
    """One utterance: audio (Ca, Da) chunks, text (Ct, Dt) tokens (either may have 0 rows) -> (3,).
    Global token of ones first; both streams padded with zeros to max_len; masks True at padding."""
    seqs, pads = [], []
    for x in (audio, text):
        x = torch.cat([torch.ones(1, x.shape[1], dtype=torch.float64), x.double()])
        pads.append(torch.arange(max_len) >= len(x))
        seqs.append(torch.cat([x, torch.zeros(max_len - len(x), x.shape[1], dtype=torch.float64)]))
    d = sd['proj_sph.weight'].shape[0]
    pe = ref_pe(max_len, d)
    s, t = seqs[0] @ sd['proj_sph.weight'].T + pe, seqs[1] @ sd['proj_txt.weight'].T + pe
    ps, pt = pads
    for k in (1, 2, 3):
        s, t = ref_layer(sd, f'trans.l{k}_sph_sph', s, ps, s, heads), ref_layer(sd, f'trans.l{k}_txt_txt', t, pt, t, heads)
    for k in (4, 5):
        s, t = ref_layer(sd, f'trans.l{k}_sph_txt', s, ps, t, heads), ref_layer(sd, f'trans.l{k}_txt_sph', t, pt, s, heads)
    z = torch.cat([s[0], t[0]])
    return torch.stack([(torch.relu(z @ sd[f'top_layer_{e}.0.weight'].T + sd[f'top_layer_{e}.0.bias'])
                         @ sd[f'top_layer_{e}.2.weight'].T + sd[f'top_layer_{e}.2.bias'])[0]
                        for e in ('act', 'dom', 'val')])


def test_published_state_dict_loads_strictly_and_matches_reference():
    Da, Dt, d, heads = 14, 6, 16, 4
    sd = random_state_dict(Da, Dt, d)
    model = TransformerENC_CoAtten(Da, Dt, d=d, heads=heads)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    assert set(model.state_dict()) == set(sd)
    model.eval()
    g = torch.Generator().manual_seed(1)
    la, lt = [5, 1, 9, 0, 3], [2, 7, 0, 4, 11]           # unequal audio/text lengths; 0 = modality missing
    B = len(la)
    audio, text = torch.randn(B, max(la), Da, generator=g), torch.randn(B, max(lt), Dt, generator=g)
    a_pad = torch.arange(max(la))[None] >= torch.tensor(la)[:, None]
    t_pad = torch.arange(max(lt))[None] >= torch.tensor(lt)[:, None]
    audio[a_pad], text[t_pad] = 5.0, -5.0                # garbage at padded positions must not matter
    with torch.no_grad():
        got = model(audio, a_pad, text, t_pad)
    for b in range(B):
        want = ref_forward(sd, audio[b, :la[b]], text[b, :lt[b]], heads)
        torch.testing.assert_close(got[b].double(), want, atol=1e-5, rtol=0)
    # the published hyper-parameters: d = 256, 4 heads, FF 2d, 3 self + 2 co-attention layers, no biases
    big = TransformerENC_CoAtten(7 * 1024, 768)
    assert {k: tuple(v.shape) for k, v in big.state_dict().items()} == published_keys()(7 * 1024, 768, 256)
    assert big.trans.l1_sph_sph.self_attn.dropout == 0.0 and big.PE.dropout.p == 0.1
    assert big.trans.l4_sph_txt.dropout.p == 0.3


def test_coattention_wiring_residual_is_the_attended_stream():
    """Changing only the text changes the audio stream's output through the queries; with a single co-
    attention layer and no text-side influence on the audio residual, zeroing the text query weights
    leaves the audio stream a function of the audio alone."""
    torch.manual_seed(0)
    m = TransformerENC_CoAtten(8, 6, d=16, heads=2, n_self=0, n_co=1).eval()
    with torch.no_grad():
        m.trans.l1_sph_txt.self_attn.in_proj_weight[:16] = 0     # queries (from the text) -> uniform attention
        m.trans.l1_sph_txt.self_attn.in_proj_bias[:16] = 0
        a = torch.randn(1, 4, 8)
        pad_a, pad_t = torch.zeros(1, 4, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool)
        outs = []
        for seed in (1, 2):
            t = torch.randn(1, 3, 6, generator=torch.Generator().manual_seed(seed))
            xs = m.PE(m.proj_sph(torch.cat([torch.ones(1, 1, 8), a], 1)))
            xt = m.PE(m.proj_txt(torch.cat([torch.ones(1, 1, 6), t, torch.zeros(1, 1, 6)], 1)))
            ps = torch.cat([torch.zeros(1, 1, dtype=torch.bool), pad_a], 1)
            pt = torch.cat([torch.zeros(1, 1, dtype=torch.bool), pad_t, torch.ones(1, 1, dtype=torch.bool)], 1)
            outs.append(m.trans(xs, xt, ps, pt)[0])
        torch.testing.assert_close(outs[0], outs[1])          # audio stream: residual audio, K/V audio


# ============================================================================ chunks, crops, pooling
def ref_chunks(T, C, m):
    """Dynamic split by the definition: C windows of m frames starting at k·floor((T' - m)/(C - 1)),
    T' = max(T, m); the valid frames of a window are those before T."""
    s = (max(T, m) - m) // (C - 1)
    return [(k * s, min(m, T)) for k in range(C)]


def ref_crop(L, scales, us, up):
    """Published crop: n = int(f·L) frames, half = n // 2, centre uniform in [half, L - half)."""
    f = scales[min(int(us * len(scales)), len(scales) - 1)]
    if f == 1.0:
        return 0, L
    half = int(f * L) // 2
    Lc = max(2 * half, 1)
    return min(int(math.floor(up * max(L - Lc, 1))), L - Lc), Lc


def ref_pool(x, keep=None, min_frames=5):
    """Pyramid pooling of one chunk x (L, D) by the definition (remainder in the last half/quarter);
    keep: frames present (missing ones are left out, a part without frames takes the whole mean)."""
    L, D = x.shape
    keep = np.ones(L, bool) if keep is None else keep
    if keep.sum() == 0:
        return np.zeros(7 * D)
    whole = x[keep].mean(0)
    if keep.sum() < min_frames:
        return np.tile(whole, 7)
    out = [whole]
    for q in (2, 4):
        w = L // q
        for j in range(q):
            a, b = j * w, (L if j == q - 1 else (j + 1) * w)
            out.append(x[a:b][keep[a:b]].mean(0) if keep[a:b].any() else whole)
    return np.concatenate(out)


CASES = [(3, 2), (4, 5), (40, 3), (50, 2), (51, 4), (173, 30), (120, 9), (77, 2)]   # (T frames, C words)


def _batch(seed=0, D=4, m=50):
    rng = np.random.default_rng(seed)
    T = torch.tensor([t for t, _ in CASES])
    C = torch.tensor([c for _, c in CASES])
    x = torch.zeros(len(CASES), int(T.max()) + 7, D)
    for b, t in enumerate(T):
        x[b, :t] = torch.from_numpy(rng.normal(size=(int(t), D)).astype(np.float32))
    return x, T, C, m


def test_dynamic_chunks_follow_definition():
    x, T, C, m = _batch()
    start, length = dynamic_chunks(T, C, m)
    for b, (t, c) in enumerate(CASES):
        assert [(int(s), int(n)) for s, n in zip(start[b, :c], length[b, :c])] == ref_chunks(t, c, m)
        assert (length[b, c:] == 0).all()


@pytest.mark.parametrize('crop', [False, True])
def test_pyramid_pool_and_crop_match_reference(crop):
    x, T, C, m = _batch(1)
    start, length = dynamic_chunks(T, C, m)
    g = torch.Generator().manual_seed(3)
    us = torch.rand(start.shape, generator=g, dtype=torch.float64)
    up = torch.rand(start.shape, generator=g, dtype=torch.float64)
    if crop:
        off, length = multiscale_crop(length, MSCR_SCALES, us, up)
        start = start + off
    got = pyramid_pool(x, start, length).numpy()
    xn = x.numpy().astype(np.float64)
    n_short = n_odd4 = 0
    for b, (t, c) in enumerate(CASES):
        for k, (s, L) in enumerate(ref_chunks(t, c, m)):
            if crop:
                o, L = ref_crop(L, MSCR_SCALES, float(us[b, k]), float(up[b, k]))
                s += o
            n_short += L < 5
            n_odd4 += L % 4 != 0 and L >= 5
            np.testing.assert_allclose(got[b, k], ref_pool(xn[b, s:s + L]), atol=1e-5, err_msg=f'{b} {k}')
        assert np.all(got[b, c:] == 0)
    assert n_short > 0 and n_odd4 > 0               # short chunks and remainder quarters were exercised


def test_pyramid_pool_with_missing_frames_matches_reference():
    x, T, C, m = _batch(2)
    start, length = dynamic_chunks(T, C, m)
    keep = torch.rand(x.shape[:2], generator=torch.Generator().manual_seed(0)) > 0.6
    got = pyramid_pool(x, start, length, keep).numpy()
    _, pad = audio_chunk_features(x, start, length, None, keep)
    xn, kn = x.numpy().astype(np.float64), keep.numpy()
    for b, (t, c) in enumerate(CASES):
        for k, (s, L) in enumerate(ref_chunks(t, c, m)):
            np.testing.assert_allclose(got[b, k], ref_pool(xn[b, s:s + L], kn[b, s:s + L]), atol=1e-5)
            assert bool(pad[b, k]) == (kn[b, s:s + L].sum() == 0)


def test_multiscale_crop_lengths_are_the_published_even_ones():
    L = torch.full((20000,), 62)
    off, Lc = multiscale_crop(L, generator=torch.Generator().manual_seed(0))
    vals, counts = np.unique(Lc.numpy(), return_counts=True)
    assert vals.tolist() == [12, 24, 36, 48, 62]         # 2·floor(f·62/2); 1.0 keeps the chunk whole
    assert np.all(np.abs(counts / len(L) - 0.2) < 0.02)  # fractions drawn uniformly
    assert (off >= 0).all() and (off + Lc <= L).all()
    sel = Lc == 12
    assert int(off[sel].min()) == 0 and int(off[sel].max()) == 62 - 12 - 1   # published centre range
    _, Lc50 = multiscale_crop(torch.full((2000,), 50), generator=torch.Generator().manual_seed(1))
    assert sorted(set(Lc50.tolist())) == [10, 20, 30, 40, 50]
    off1, Lc1 = multiscale_crop(torch.tensor([62, 3, 1, 0]), (1.0,))      # --scales 1.0: chunks whole
    assert off1.tolist() == [0, 0, 0, 0] and Lc1.tolist() == [62, 3, 1, 0]
    _, Lc_small = multiscale_crop(torch.tensor([2, 1]), (0.2,))            # never empty
    assert Lc_small.tolist() == [1, 1]


def test_word_spans_follow_the_textgrid_times():
    from dataloader import word_spans
    times = [(0.10, 0.35), (0.35, 0.36), (0.5, 1.2), (1.9, 5.0)]
    spans = word_spans(times, 0.016, 100, cap=127)
    assert spans.tolist() == [[6, 16], [22, 1], [31, 44], [99, 1]]   # round(t/hop); >= 1 frame; clipped to T
    merged = word_spans(times, 0.016, 100, cap=2)                     # too many words: consecutive groups
    assert merged.tolist() == [[6, 16], [31, 69]]


def test_missing_masks_are_seeded_nested_and_exact():
    from dataloader import mscr_missing_masks
    prev = None
    for p in (0.0, 0.25, 0.5, 1.0):
        mk = mscr_missing_masks(40, 8, 10, dict(audio=p, text=p, mode='frames'), 0, 3)
        assert (~mk['frame_keep']).sum() == math.floor(p * 40 + 0.5)
        assert (~mk['token_keep']).sum() == math.floor(p * 10 + 0.5)
        assert mk['chunk_keep'].all()
        if prev is not None:
            assert np.all(mk['frame_keep'] <= prev['frame_keep'])
        prev = mk
    mk = mscr_missing_masks(40, 8, 10, dict(audio=0.5, text=0.0, mode='chunks'), 0, 3)
    assert (~mk['chunk_keep']).sum() == 4 and mk['frame_keep'].all() and mk['token_keep'].all()
    assert mscr_missing_masks(40, 8, 10, dict(audio=1, text=0, mode='modality'), 0, 3)['audio_on'] is False
    on = [mscr_missing_masks(5, 2, 3, dict(audio=0.3, text=0.0, mode='modality'), 1, i)['audio_on'] for i in range(400)]
    assert 0.2 < 1 - np.mean(on) < 0.4


def test_iteration_batches_resume_where_they_stopped():
    from mscr import IterationBatches
    full = list(IterationBatches(10, 4, 7, seed=3))
    assert len(full) == 7 and all(len(b) == 4 for b in full)
    assert sorted(full[0] + full[1]) == sorted(set(full[0] + full[1]))      # no repeat inside an epoch
    assert list(IterationBatches(10, 4, 7, seed=3, start=5)) == full[5:]
    r0, r1 = IterationBatches(10, 4, 7, 3, rank=0, world=2), IterationBatches(10, 4, 7, 3, rank=1, world=2)
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in full]


# ============================================================================ end to end
@pytest.fixture(scope='module')
def stores(tiny_corpus, tmp_path_factory):
    import extract_features
    out = tmp_path_factory.mktemp('mscr')
    for feat in ('lld', 'text'):
        extract_features.main(['--corpus', str(tiny_corpus), '--feature', feat, '--out', str(out / feat),
                               '--workers', '1', '--device', 'cpu'])
    return tiny_corpus, out


def _flags(corpus, out, *extra):
    return ['--model', 'mscr', '--corpus', str(corpus), '--audio-feature', 'lld', '--audio-store', str(out / 'lld'),
            '--text-store', str(out / 'text'), '--workers', '0', '--save-dir', str(out / 'runs'), *extra]


def test_utterance_level_normalisation_as_published(stores):
    from corpus import Corpus
    from dataloader import MSCRDataset
    from feature_store import FeatureStore
    from norm import mscr_norm
    root, out = stores
    corpus, audio, text = Corpus(root), FeatureStore(out / 'lld'), FeatureStore(out / 'text')
    names = corpus.files('Train')
    norm = mscr_norm(corpus, audio, text, names)
    for store, key in ((audio, 'audio'), (text, 'text')):
        U = np.stack([np.nanmean(np.asarray(store.get(n), np.float64), 0) for n in names])
        np.testing.assert_allclose(norm[key][0], U.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm[key][1], np.maximum(U.std(0), 1e-8), rtol=1e-7, atol=1e-9)
    y = corpus.labels.set_index('FileName').loc[names, 'EmoAct'].to_numpy(float)
    assert norm['Act'] == pytest.approx((y.mean(), y.std()))
    ds = MSCRDataset(corpus, 'Train', audio, text, norm, verbose=False)
    it = ds[0]
    raw_t = np.asarray(text.get(ds.names[0]), np.float64)
    want = np.clip((raw_t - norm['text'][0]) / norm['text'][1], -3, 3)
    np.testing.assert_allclose(it['t'], want, atol=1e-4)             # text is normalised too
    assert np.abs(it['a']).max() <= 3
    frame = mscr_norm(corpus, audio, text, names, 'frame')
    assert not np.allclose(frame['audio'][1], norm['audio'][1])


def test_words_chunking_uses_each_words_frames(stores):
    from corpus import Corpus
    from dataloader import MSCRDataset, mscr_collate
    from feature_store import FeatureStore
    from norm import mscr_norm
    root, out = stores
    corpus, audio, text = Corpus(root), FeatureStore(out / 'lld'), FeatureStore(out / 'text')
    norm = mscr_norm(corpus, audio, text, corpus.files('Train'))
    dyn = MSCRDataset(corpus, 'Train', audio, text, norm, verbose=False)
    wrd = MSCRDataset(corpus, 'Train', audio, text, norm, verbose=False, chunking='words')
    n = wrd.names[0]
    words = corpus.words(n)
    sp = wrd[0]['spans']
    assert len(sp) == len(words) and sp[0, 0] == round(words[0][0] / audio.hop)
    assert sp[-1].sum() == min(round(words[-1][1] / audio.hop), audio.lengths()[n])
    assert (dyn[0]['spans'][:, 1] == min(dyn.m, audio.lengths()[n])).all()   # one-second windows
    b = mscr_collate([wrd[i] for i in range(3)])
    assert b['start'].shape == b['length'].shape and (b['length'] >= 0).all()
    with pytest.warns(UserWarning, match='more than 3'):
        capped = MSCRDataset(corpus, 'Train', audio, text, norm, max_len=4, verbose=False, chunking='words')
    assert max(len(capped[i]['spans']) for i in range(len(capped))) <= 3


def test_words_chunking_skips_an_utterance_without_textgrid(stores, tmp_path):
    """A transcript alone gives a word count, not word times: --chunking words skips it (dynamic keeps it)."""
    import shutil

    from corpus import Corpus
    from dataloader import MSCRDataset
    from feature_store import FeatureStore
    from norm import mscr_norm
    root, out = stores
    copy = tmp_path / 'corpus'
    shutil.copytree(root, copy)
    corpus, audio = Corpus(copy), FeatureStore(out / 'lld')
    text_dir = tmp_path / 'text'                     # a private copy: the word-time cache lives next to the store
    shutil.copytree(out / 'text', text_dir)
    text = FeatureStore(text_dir)
    victim = corpus.files('Train')[0]
    corpus.textgrid_path(victim).unlink()
    assert (copy / 'Transcripts' / victim.replace('.wav', '.txt')).exists()
    norm = mscr_norm(corpus, audio, text, corpus.files('Train'))
    wrd = MSCRDataset(corpus, 'Train', audio, text, norm, verbose=False, chunking='words')
    assert victim not in wrd.names and (victim, 'no word times (TextGrid) for --chunking words') in wrd.skipped
    dyn = MSCRDataset(corpus, 'Train', audio, text, norm, verbose=False)
    assert victim in dyn.names


def test_train_test_sweep_end_to_end(stores, tmp_path):
    import mscr
    import testing
    import training
    root, out = stores
    fl = lambda *e: _flags(root, out, '--hidden', '32', *e)   # noqa: E731
    ck = training.main(fl('--iters', '40', '--val-every', '20', '--scales', '1.0', '-batch', '16'))
    assert ck.name == 'MSCR_iter40_batch16_lld_scales1.pth.tar' and ck.exists()
    last = ck.with_name('MSCR_iter40_batch16_lld_scales1.last.pth.tar')
    assert last.exists()
    log = pd.read_csv(str(ck)[:-8] + '.log.csv')
    assert log['iteration'].tolist() == [20, 40] and log['train_loss'].iloc[-1] < log['train_loss'].iloc[0]
    model, meta = mscr.load_mscr(ck)
    assert meta['mscr_norm'] == 'utterance' and len(meta['text_mean']) == meta['config']['text_dim']
    tfl = _flags(root, out, '--iters', '40', '-batch', '16', '--scales', '1.0', '--out', str(tmp_path))
    s = testing.main(tfl)
    assert all(np.isfinite(s[e]) for e in ('Act', 'Dom', 'Val')) and s['release_splits'] == 'Test1'
    rec = json.loads((tmp_path / 'MSCR_iter40_batch16_lld_scales1_Test_scores.json').read_text())
    assert rec['release_splits'] == ['Test1'] and rec['ccc_Act'] == pytest.approx(s['Act'])
    # the intervals of method 1 (metrics.evaluate_on, the same flags): printed, in the JSON and the metrics CSV
    met = pd.read_csv(tmp_path / 'MSCR_iter40_batch16_lld_scales1_Test_metrics.csv').set_index('Attr')
    for e in ('Act', 'Dom', 'Val'):
        row = next(m for m in rec['metrics'] if m['Attr'] == e)
        assert row['CCC'] == pytest.approx(s[e]) and row['CCC_lo'] <= row['CCC'] <= row['CCC_hi']
        assert row['r_lo'] <= row['Pearson_r'] <= row['r_hi'] and met.loc[e, 'CCC_hi'] == pytest.approx(row['CCC_hi'])
    assert met.bootstrap.str.contains('1000 resamples of the 2 speakers').all() and (met.N == 6).all()
    s2 = testing.main(tfl + ['--missing-audio', '1', '--missing-mode', 'modality'])
    assert s2 != s
    df = testing.main(tfl + ['--sweep', '--sweep-fracs', '0,0.5,1', '--missing-mode', 'frames,chunks,modality'])
    assert len(df) == 3 * 3 * 3 and np.isfinite(df[['ccc_Act', 'ccc_Dom', 'ccc_Val']].to_numpy()).all()
    both_gone = df[(df.missing == 'both') & (df.fraction == 1) & (df['mode'] == 'modality')]
    assert np.allclose(both_gone[['ccc_Act', 'ccc_Dom', 'ccc_Val']], 0, atol=1e-6)   # constant output
    assert (tmp_path / 'MSCR_iter40_batch16_lld_scales1_Test_sweep_chunks.png').stat().st_size > 1000
    from corpus import Corpus
    from feature_store import FeatureStore
    name = Corpus(root).files('Test')[0]
    a, t = FeatureStore(out / 'lld').get(name), FeatureStore(out / 'text').get(name)
    full = mscr.predict_utterance(model, meta, a, t, len(Corpus(root).words(name)))
    text_only = mscr.predict_utterance(model, meta, None, t, None)
    assert all(np.isfinite(p[e]) for p in (full, text_only) for e in ('Act', 'Dom', 'Val')) and full != text_only
    wk = training.main(fl('--iters', '4', '--val-every', '2', '--chunking', 'words', '-batch', '16'))
    assert wk.name.endswith('_words.pth.tar') and mscr.load_mscr(wk)[1]['chunking'] == 'words'


def test_resume_continues_exactly(stores):
    import training
    root, out = stores
    fl = lambda name, it, *e: _flags(root, out, '--hidden', '16', '-batch', '8', '--iters', str(it),  # noqa: E731
                                     '--val-every', '3', '--name', name, *e)
    training.main(fl('straight', 9))
    training.main(fl('resumed', 6))
    training.main(fl('resumed', 9, '--resume'))
    a = pd.read_csv(out / 'runs' / 'straight.log.csv')
    b = pd.read_csv(out / 'runs' / 'resumed.log.csv')
    pd.testing.assert_frame_equal(a, b)


def test_resume_refuses_changed_settings_and_corrupt_weights_are_refused(stores):
    import mscr
    import training
    from checkpoints import CheckpointError
    root, out = stores
    fl = lambda *e: _flags(root, out, '--hidden', '16', '-batch', '8', '--iters', '3', '--val-every', '3',  # noqa: E731
                           '--name', 'guard', *e)
    ckpt = training.main(fl())
    with pytest.raises(CheckpointError, match=r'lr: was None, now 0\.01'):
        training.main(fl('--lr', '0.01', '--resume'))
    model, meta = mscr.load_mscr(ckpt)                     # intact: loads, and its record names the weights
    assert meta['kind'] == 'mscr' and len(meta['weights_sha256']) == 64 and not meta['corpus'].startswith('/')
    data = bytearray(Path(ckpt).read_bytes())
    data[len(data) // 2] ^= 0xFF                           # one flipped byte in the middle of the weights
    Path(ckpt).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='checksum mismatch'):
        mscr.load_mscr(ckpt)


def test_flags_of_the_other_model_are_errors(stores):
    import testing
    import training
    root, out = stores
    for argv in (_flags(root, out, '-emo', 'Act'), _flags(root, out, '--rankseq', 'x'),
                 _flags(root, out, '--norm', 'NormTerm'), _flags(root, out, '--out', 'x')):
        with pytest.raises(ToolkitError, match='not used by --model mscr'):
            training.main(argv)
    with pytest.raises(ToolkitError, match='MSCR flag'):
        training.main(['-emo', 'Act', '--chunking', 'words'])
    with pytest.raises(ToolkitError, match='MSCR flag'):
        testing.main(['-emo', 'Act', '--sweep'])
    with pytest.raises(SystemExit):          # training-only MSCR flags are not testing flags
        testing.main(_flags(root, out, '--hidden', '32'))
