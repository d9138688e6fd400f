"""Feature extraction (openSMILE LLDs on real speech, tiny wav2vec2/text models), feature store, CLI."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import features as F
from errors import ToolkitError
from feature_store import FeatureStore, FeatureStoreWriter, StoreError

DATASETS = Path(__file__).resolve().parents[2] / 'shared' / 'datasets'
EMODB = DATASETS / 'emodb' / 'wav'
REPO = Path(__file__).resolve().parents[1]
needs_emodb = pytest.mark.skipif(not EMODB.is_dir(), reason='Emo-DB not available (../shared/datasets/emodb)')


def emodb_files(k=3):
    return sorted(EMODB.glob('*.wav'))[::97][:k]


# ----------------------------------------------------------------------------- LLDs
@pytest.fixture(scope='module')
def lld():
    return F.LLDExtractor()


@needs_emodb
def test_lld_published_on_emodb(lld):
    from audio import load_audio
    for f in emodb_files():
        x = load_audio(f, 16000)  # 22.05 kHz -> 16 kHz
        y = lld(x)
        assert y.dtype == np.float32 and y.shape[1] == 130 and np.isfinite(y).all()
        assert 60 <= len(y) / (len(x) / 16000) <= 63.5  # 16 ms hop: ~62 frames per second
        assert y[:, :65].std(0).max() > 0  # real, varying features
    assert lld.feature_names[0] == 'F0final_sma' and lld.feature_names[65] == 'F0final_sma_de'
    np.testing.assert_array_equal(F.extract_lld(f), y)


@needs_emodb
def test_lld_single_pass_equals_two_levels_trimmed(lld):
    """The config's lld_lld_de level == Smile(lld) ++ Smile(lld_de), trimmed to the shorter."""
    import opensmile

    from audio import load_audio
    a, b = opensmile.Smile(lld.config, 'lld'), opensmile.Smile(lld.config, 'lld_de')
    for x in [load_audio(emodb_files(1)[0]), np.random.default_rng(0).standard_normal(3001).astype(np.float32) * .1]:
        ya, yb = a(x, 16000)[0].T, b(x, 16000)[0].T
        n = min(len(ya), len(yb))
        np.testing.assert_array_equal(lld(x), np.concatenate([ya[:n], yb[:n]], 1).astype(np.float32))


def test_lld_config_is_built_not_vendored(lld):
    import opensmile
    conf = Path(lld.config)
    core = (conf.parent / 'IS13_ComParE_core.lld.conf.inc').read_text()
    assert core.count('frameSize = 0.032') == 2 and core.count('frameStep = 0.016') == 2
    assert '0.060' not in core.split('[is13_frame60:cFramer]')[1].split('[')[0]
    pkg = Path(opensmile.__file__).parent / 'core' / 'config' / 'is09-13' / 'IS13_ComParE_core.lld.conf.inc'
    assert 'frameSize = 0.060' in pkg.read_text()  # the installed package is untouched
    assert REPO not in conf.parents  # built in a cache dir, nothing vendored into the repo
    assert F.lld_config() == lld.config  # cached


@needs_emodb
def test_lld_compare_2016_hop():
    from audio import load_audio
    x = load_audio(emodb_files(1)[0])
    for hop, fps in [(None, 100), (0.02, 50)]:
        ext = F.LLDExtractor('ComParE_2016', hop)
        y = ext(x)
        assert y.shape[1] == 130 and np.isfinite(y).all()
        assert abs(len(y) / (len(x) / 16000) - fps) < 3, (hop, len(y))
    assert ext.hop == 0.02
    core = (Path(ext.config).parent / 'ComParE_2016_core.lld.conf.inc').read_text()
    assert core.count('frameSize = 0.060') == 1 and core.count('frameStep = 0.02') == 2


def test_lld_bad_inputs(lld):
    with pytest.raises(ValueError, match='fixed 0.016'):
        F.resolve_hop('published', 0.01)
    with pytest.raises(ValueError, match='unknown LLD preset'):
        F.resolve_hop('IS09')
    with pytest.raises(ValueError, match='too short'):
        lld(np.zeros(300, np.float32))
    sq = np.sign(np.sin(np.arange(8000) * 2 * np.pi * 200 / 16000)).astype(np.float32)
    y = lld(sq)  # full-scale +1.0 must not wrap around to -32768 in openSMILE's int16 conversion
    assert y.shape[1] == 130 and np.isfinite(y).all()
    np.testing.assert_array_equal(y, lld(np.where(sq > 0, 32767 / 32768, sq).astype(np.float32)))


# ----------------------------------------------------------------------------- tiny neural models
@pytest.fixture(scope='module')
def tiny_w2v(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         conv_dim=(16,) * 7, num_conv_pos_embedding_groups=4, feat_extract_norm='layer',
                         do_stable_layer_norm=True, vocab_size=10)
    d = tmp_path_factory.mktemp('w2v')
    Wav2Vec2Model(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope='module')
def tiny_bert(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(F.default_text_model(), local_files_only=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=128)
    d = tmp_path_factory.mktemp('bert')
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_wav2vec2_batched_and_windowed(tiny_w2v):
    ext = F.Wav2Vec2Extractor(tiny_w2v, 'cpu', batch=4, max_seconds=2.0, context_seconds=0.4)
    assert ext.hop == 0.02 and ext.dim == 32 and ext.use_mask
    rng = np.random.default_rng(0)
    sigs = [rng.standard_normal(int(s * 16000)).astype(np.float32) * .1 for s in (0.5, 1.3, 5.0, 1.0)]
    out = ext(sigs)
    for s, y in zip(sigs, out):
        assert y.dtype == np.float32 and y.shape == (ext.n_frames(len(s)), 32) and np.isfinite(y).all()
        assert abs(len(y) - len(s) / 320) <= 1  # 50 frames per second
    for i in (0, 1, 3):  # padding in a batch does not change an utterance's frames
        np.testing.assert_allclose(out[i], ext._run([ext.prepare(sigs[i])])[0], atol=1e-4)
    # the 5 s file ran in 2 s windows (of the whole file's normalised signal): each window's kept frames equal
    # that window run alone
    pieces = ext._pieces(ext.prepare(sigs[2]))
    assert len(pieces) > 1
    t = 0
    for start, piece, a, z in pieces:
        h = ext._run([piece])[0][a:z]
        assert start // 320 + a == t  # contiguous, no gap or overlap
        np.testing.assert_allclose(out[2][t:t + len(h)], h, atol=1e-5)
        t += len(h)
    assert t == len(out[2])
    with pytest.raises(ValueError, match='too short'):
        ext([np.zeros(100, np.float32)])


def test_text_encoder_tiny(tiny_bert):
    enc = F.TextEncoder(tiny_bert, 'cpu', batch=2)
    texts = ['Hello world.', 'A rather longer sentence about the show tomorrow.', 'Ok']
    out = enc(texts)
    for t, y in zip(texts, out):
        n = len(enc.tokenizer(t)['input_ids'])  # special tokens kept
        assert y.shape == (n, 32) and y.dtype == np.float32 and np.isfinite(y).all()
    np.testing.assert_allclose(out[1], enc([texts[1]])[0], atol=1e-5)  # padding-invariant


def test_text_encoder_offline_minilm_default():
    enc = F.TextEncoder(device='cpu')
    assert Path(enc.name).is_dir() and enc.dim == 384
    out = enc(['I really think we should talk about this.', 'Great show!'])
    assert [y.shape[1] for y in out] == [384, 384] and out[0].shape[0] > out[1].shape[0] >= 4
    assert all(np.isfinite(y).all() for y in out)


def test_missing_hub_model_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(RuntimeError, match='snapshot_download') as e:
        F.TextEncoder('ser-toolkit-test/no-such-model', 'cpu')
    assert '--model models/no-such-model' in str(e.value)


# ----------------------------------------------------------------------------- feature store
def _arrays(n, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return {f'utt_{i:03d}.wav': rng.standard_normal((int(rng.integers(0, 40)), dim)).astype(np.float32)
            for i in range(n)}


def test_store_roundtrip(tmp_path):
    arrs = _arrays(30)
    with FeatureStoreWriter(tmp_path / 's', 'lld', 5, 0.016, 'published', flush_every=7) as w:
        for k, a in arrs.items():
            w.add(k, a)
        assert w.done('utt_000.wav') and not w.done('other.wav')
        with pytest.raises(ValueError, match='already'):
            w.add('utt_000.wav', arrs['utt_000.wav'])
        with pytest.raises(ValueError, match='expected'):
            w.add('x.wav', np.zeros((3, 4)))
    s = FeatureStore(tmp_path / 's')
    assert len(s) == 30 and s.dim == 5 and s.hop == 0.016 and s.names == list(arrs) and s.meta['complete']
    assert s.lengths() == {k: len(a) for k, a in arrs.items()}
    for k, a in arrs.items():
        np.testing.assert_array_equal(s.get(k), a)
    s2 = pickle.loads(pickle.dumps(s))  # DataLoader workers
    np.testing.assert_array_equal(s2.get('utt_005.wav'), arrs['utt_005.wav'])
    with pytest.raises(KeyError, match='skipped.csv'):
        s.get('nope.wav')
    with pytest.raises(StoreError, match='preset'):
        FeatureStoreWriter(tmp_path / 's', 'lld', 5, 0.01, 'ComParE_2016')


CRASH = """
import os, sys, numpy as np
sys.path.insert(0, {repo!r})
from feature_store import FeatureStoreWriter
w = FeatureStoreWriter({out!r}, 'lld', 5, 0.016, 'published', flush_every=4)
rng = np.random.default_rng(0)
for i in range(10):
    w.add(f'utt_{{i:03d}}.wav', rng.standard_normal((int(rng.integers(0, 40)), 5)).astype(np.float32))
w.f.write(b'\\x01' * 37)   # a half-written row, then the process dies without closing
w.f.flush()
os._exit(1)
"""


def test_store_resume_after_crash(tmp_path):
    out = tmp_path / 's'
    r = subprocess.run([sys.executable, '-c', CRASH.format(repo=str(REPO), out=str(out))])
    assert r.returncode == 1
    with pytest.raises(StoreError, match='incomplete'):
        FeatureStore(out)
    part = FeatureStore(out, allow_incomplete=True)
    assert len(part) == 8  # flushed at 4 and 8; utterances 8, 9 and the junk tail are not indexed
    arrs = _arrays(10)
    with FeatureStoreWriter(out, 'lld', 5, 0.016, 'published', flush_every=4) as w:
        assert w.resumed == 8 and os.path.getsize(out / 'data.bin') == w.n_rows * 5 * 4
        for k, a in arrs.items():
            if not w.done(k):
                w.add(k, a)
    s = FeatureStore(out)
    assert len(s) == 10 and os.path.getsize(out / 'data.bin') == s.n_rows * 5 * 4
    for k, a in arrs.items():
        np.testing.assert_array_equal(s.get(k), a)


def test_store_missing_and_interrupted(tmp_path):
    with pytest.raises(StoreError, match='extract_features.py'):
        FeatureStore(tmp_path / 'none')
    try:
        with FeatureStoreWriter(tmp_path / 's', 'text', 3, None, model='m') as w:
            w.add('a.wav', np.ones((2, 3)))
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert json.loads((tmp_path / 's' / 'meta.json').read_text())['complete'] is False
    with pytest.raises(StoreError, match='incomplete'):
        FeatureStore(tmp_path / 's')
    assert len(FeatureStore(tmp_path / 's', allow_incomplete=True)) == 1


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    """A tiny corpus with one corrupt WAV, one empty WAV and one missing transcript."""
    from tests.fixtures import make_tiny_corpus
    root = make_tiny_corpus(tmp_path_factory.mktemp('c') / 'corpus', n=12)
    wavs = sorted((root / 'Audios').glob('*.wav'))
    wavs[3].write_bytes(b'RIFF not really a wav')
    sf.write(wavs[5], np.zeros(0, np.float32), 16000)
    (root / 'Transcripts' / (wavs[7].stem + '.txt')).unlink()
    return root, [w.name for w in wavs]


def test_cli_lld_end_to_end(corpus, tmp_path, capsys):
    import extract_features
    root, names = corpus
    out = tmp_path / 'lld'
    extract_features.main(['--corpus', str(root), '--out', str(out), '--workers', '2'])
    text = capsys.readouterr().out
    assert f'{names[3]}: AudioError' in text and f'{names[5]}: AudioError' in text
    assert 'real-time factor' in text
    s = FeatureStore(out)
    assert len(s) == 10 and names[3] not in s and s.hop == 0.016 and s.meta['preset'] == 'published'
    for n in s.names:
        dur = sf.info(str(root / 'Audios' / n)).duration
        assert abs(len(s.get(n)) - dur * 62.5) <= 3 and np.isfinite(s.get(n)).all()
    skipped = (out / 'skipped.csv').read_text()
    assert names[3] in skipped and names[5] in skipped
    extract_features.main(['--corpus', str(root), '--out', str(out), '--workers', '1'])  # resume
    assert '10 already in' in capsys.readouterr().out
    with pytest.raises(ToolkitError, match='fixed 0.016'):
        extract_features.main(['--corpus', str(root), '--out', str(tmp_path / 'x'), '--hop', '0.01'])
    with pytest.raises(ToolkitError, match='does not match'):  # other preset into the same store
        extract_features.main(['--corpus', str(root), '--out', str(out), '--preset', 'ComParE_2016'])


def test_cli_wav2vec2_and_text(corpus, tiny_w2v, tiny_bert, tmp_path, capsys):
    import extract_features
    root, names = corpus
    extract_features.main(['--corpus', str(root), '--feature', 'wav2vec2', '--model', str(tiny_w2v),
                           '--out', str(tmp_path / 'w2v'), '--device', 'cpu', '--batch', '4'])
    s = FeatureStore(tmp_path / 'w2v')
    assert len(s) == 10 and s.dim == 32 and s.hop == 0.02 and names[5] not in s
    for n in s.names:
        assert abs(len(s.get(n)) - sf.info(str(root / 'Audios' / n)).duration * 50) <= 1
    extract_features.main(['--corpus', str(root), '--feature', 'text', '--model', str(tiny_bert),
                           '--out', str(tmp_path / 'text'), '--device', 'cpu'])
    text = capsys.readouterr().out
    assert f'{names[7]}: missing or empty transcript' in text
    s = FeatureStore(tmp_path / 'text')
    assert len(s) == 11 and s.hop is None and s.dim == 32 and min(s.lengths().values()) >= 3


def test_import_mat(tmp_path, capsys):
    import scipy.io

    import extract_features
    src = tmp_path / 'mat'
    src.mkdir()
    rng = np.random.default_rng(0)
    arrs = {}
    for i in range(4):
        T = 20 + i
        arrs[f'MSP-PODCAST_0001_{i:04d}.wav'] = a = rng.standard_normal((T, 130)).astype(np.float32)
        scipy.io.savemat(src / f'MSP-PODCAST_0001_{i:04d}.mat',
                         {'Audio_data': np.c_[np.arange(T) * 0.016 + 0.016, a.astype(np.float64)]})
    scipy.io.savemat(src / 'broken.mat', {'something_else': np.zeros(3)})
    extract_features.main(['--import-mat', str(src), '--out', str(tmp_path / 'store')])
    assert "broken.mat: ValueError: no 'Audio_data'" in capsys.readouterr().out
    s = FeatureStore(tmp_path / 'store')
    assert s.hop == 0.016 and s.dim == 130 and sorted(s.names) == sorted(arrs)
    for k, a in arrs.items():
        np.testing.assert_array_equal(s.get(k), a)
