"""SSL speech encoders as frame features (docs/ssl.md): tiny random encoders built from transformers config classes
(tests/ssl_fixtures.py, nothing downloads); stored features equal the model's own hidden states."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import features as F
from errors import ToolkitError
from feature_store import FeatureStore, StoreError
from tests.ssl_fixtures import make_upstream

pytestmark = pytest.mark.usefixtures('one_torch_thread')
BOUND = 1e-4    # batched vs one at a time vs the model's own hidden states (measured: < 4e-6, bench_ssl.py)


@pytest.fixture(scope='module')
def upstreams(tmp_path_factory):
    d = tmp_path_factory.mktemp('up')
    return {k: make_upstream(k, d / k) for k in ('wav2vec2', 'hubert', 'wavlm', 'data2vec-audio')}


@pytest.fixture(scope='module')
def small_corpus(tmp_path_factory):
    from tests.fixtures import make_tiny_corpus
    return make_tiny_corpus(tmp_path_factory.mktemp('sc') / 'corpus', n=8)


def own_hidden(ext, signal):
    """The model's own hidden states of one unpadded recording, the stored layers concatenated."""
    x = torch.from_numpy(ext.prepare(signal))[None]
    with torch.no_grad():
        hs = ext.model(x, output_hidden_states=True).hidden_states
    return torch.cat([hs[k] for k in ext.layers], -1)[0].numpy()


@pytest.mark.parametrize('kind', ['wav2vec2', 'hubert', 'wavlm', 'data2vec-audio'])
def test_batched_equals_own_hidden_states(upstreams, kind):
    ext = F.SSLExtractor(upstreams[kind], 'all', 'cpu', batch=4)
    assert ext.layers == [0, 1, 2] and ext.dim == 48 and ext.hop == 0.02
    # masks where they make padding invisible (measured at load), equal-length batches otherwise
    assert ext.use_mask == (kind in ('wav2vec2', 'wavlm'))
    rng = np.random.default_rng(1)
    sigs = [0.1 * rng.standard_normal(int(s * 16000)).astype(np.float32) for s in (0.5, 1.3, 1.0, 1.0)]
    out = ext(sigs)
    for s, y in zip(sigs, out):
        ref = own_hidden(ext, s)
        assert y.shape == ref.shape == (ext.n_frames(len(s)), 48)
        assert np.abs(y - ref).max() < BOUND
    one = F.SSLExtractor(upstreams[kind], '1', 'cpu', batch=1)
    assert one.layers == [1] and one.dim == 16
    for s, y in zip(sigs, one(sigs)):
        np.testing.assert_allclose(y, own_hidden(ext, s)[:, 16:32], atol=BOUND)


def test_layers_and_identity(upstreams, tmp_path):
    assert F.parse_layers('last', 12) == [12] and F.parse_layers('-1,6', 12) == [6, 12]
    assert F.parse_layers('all', 2) == [0, 1, 2]
    with pytest.raises(ToolkitError, match='out of range'):
        F.parse_layers('13', 12)
    with pytest.raises(ToolkitError, match='layer numbers'):
        F.parse_layers('top', 12)
    a, b = F.upstream_identity(upstreams['wav2vec2']), F.upstream_identity(upstreams['hubert'])
    assert a['sha256'] != b['sha256'] and a['weights_sha256'] and a['name'] == 'wav2vec2'
    # a copy of the same weights under another name has the same identity
    import shutil
    shutil.copytree(upstreams['wav2vec2'], tmp_path / 'renamed')
    assert F.upstream_identity(tmp_path / 'renamed')['sha256'] == a['sha256']


def test_cli_ssl_store(small_corpus, upstreams, tmp_path):
    import extract_features
    up = upstreams['wavlm']
    base = ['--corpus', str(small_corpus), '--feature', 'ssl', '--upstream', str(up), '--device', 'cpu']
    extract_features.main(base + ['--layers', '1,2', '--out', str(tmp_path / 'b4'), '--batch', '4',
                                  '--dtype', 'float32'])
    extract_features.main(base + ['--layers', '1,2', '--out', str(tmp_path / 'b1'), '--batch', '1',
                                  '--dtype', 'float32'])
    extract_features.main(base + ['--layers', '1,2', '--out', str(tmp_path / 'h')])     # default float16
    s4, s1, h = (FeatureStore(tmp_path / d) for d in ('b4', 'b1', 'h'))
    meta = json.loads((tmp_path / 'h' / 'meta.json').read_text())
    assert meta['feature'] == 'ssl' and meta['layers'] == [1, 2] and meta['dim'] == 32 and meta['hop'] == 0.02
    assert meta['dtype'] == 'float16' and meta['upstream'] == 'wavlm' and len(meta['upstream_sha256']) == 64
    assert meta['upstream_files'] and meta['model_type'] == 'wavlm' and meta['batching'] == 'attention_mask'
    assert (tmp_path / 'h' / 'data.bin').stat().st_size * 2 == (tmp_path / 'b4' / 'data.bin').stat().st_size
    ext = F.SSLExtractor(up, '1,2', 'cpu')
    assert len(s4) == 8
    for n in s4.names:
        ref = own_hidden(ext, sf.read(str(small_corpus / 'Audios' / n), dtype='float32')[0])
        np.testing.assert_allclose(s4.get(n), ref, atol=BOUND)
        np.testing.assert_allclose(s1.get(n), s4.get(n), atol=BOUND)
        assert h.get(n).dtype == np.float16
        np.testing.assert_allclose(h.get(n).astype(np.float32), ref, atol=2e-3 * max(1, np.abs(ref).max()))
    # resuming into a store of another upstream or layer set is refused
    with pytest.raises(StoreError, match='does not match'):
        extract_features.main(base + ['--layers', '2', '--out', str(tmp_path / 'h')])
    with pytest.raises(StoreError, match='upstream_sha256'):
        extract_features.main(['--corpus', str(small_corpus), '--feature', 'ssl', '--upstream',
                               str(upstreams['wav2vec2']), '--layers', '1,2', '--out', str(tmp_path / 'h')])
    with pytest.raises(ToolkitError, match='needs --upstream'):
        extract_features.main(['--corpus', str(small_corpus), '--feature', 'ssl', '--out', str(tmp_path / 'x')])


# ------------------------------------------------------------------ method 1 on an SSL store
@pytest.fixture(scope='module')
def ssl_stores(tiny_corpus, upstreams, tmp_path_factory):
    """Two float16 stores of the tiny corpus: WavLM all 3 hidden states, and wav2vec2 (another upstream)."""
    import extract_features
    d = tmp_path_factory.mktemp('sslstores')
    for name, up, layers in (('wavlm', 'wavlm', 'all'), ('w2v', 'wav2vec2', 'all')):
        extract_features.main(['--corpus', str(tiny_corpus), '--feature', 'ssl', '--upstream', str(upstreams[up]),
                               '--layers', layers, '--out', str(d / name), '--device', 'cpu', '--batch', '8'])
    return d


def test_method1_on_ssl_store(tiny_corpus, ssl_stores, upstreams, tmp_path):
    """Preference labels -> ranker (learnt layer sum) -> ranking sequences -> Seq2Seq -> testing on a WavLM store;
    50 frames per one-second chunk from the 20 ms hop; records name the upstream; another upstream is refused."""
    store = ssl_stores / 'wavlm'
    import pandas as pd

    import testing
    import training
    from chunk_emotion_rankers import generate_preference_labels, generate_ranking_seqence, training_ranker
    run = lambda main, args: main([str(a) for a in args])   # noqa: E731  (in-process: no import per step)
    c = ['--corpus', tiny_corpus, '--features', store, '--workers', '0', '--device', 'cpu']
    pairs, rk, rs, s2s, res = (tmp_path / d for d in ('pairs', 'rk', 'rs', 's2s', 'res'))
    run(generate_preference_labels.main, ['-emo', 'Act', '--corpus', tiny_corpus, '--out', pairs, '--ratio', '1.0'])
    run(training_ranker.main, ['-ep', '1', '-batch', '8', '-emo', 'Act', *c, '--pairs', pairs, '--out', rk,
                               '--lr', '1e-3', '--pairs-per-epoch', '32', '--layer-sum'])
    meta = json.loads((rk / 'LSTM_epoch1_batch8_Act_ranker.meta.json').read_text())
    f = meta['features']
    assert f['kind'] == 'ssl' and f['upstream'] == 'wavlm' and f['layers'] == [0, 1, 2] and f['hop'] == 0.02
    assert len(f['upstream_sha256']) == 64 and meta['chunks']['m'] == 50
    assert meta['network'] == {'input_dim': 48, 'hidden': 130, 'layer_sum': 3}
    w = meta['layer_weights']
    assert len(w) == 3 and abs(sum(w) - 1) < 1e-6 and w != [1 / 3] * 3          # learnt, saved
    assert (rk / 'LSTM_epoch1_batch8_Act_ranker.layers.png').stat().st_size > 1000  # plotted
    run(generate_ranking_seqence.main, ['-ep', '1', '-batch', '8', '-emo', 'Act', '-set', 'all', *c,
                                        '--checkpoint', rk, '--out', rs])
    seqs = json.loads((rs / 'training_Act.json').read_text())
    assert len(seqs) == 12 and all(len(v['ChunkRankSeq']) == 22 for v in seqs.values())
    run(training.main, ['-ep', '2', '-batch', '6', '-emo', 'Act', *c, '--rankseq', rs, '--out', s2s])
    log = pd.read_csv(s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.log.csv')
    assert len(log) == 2 and np.isfinite(log['train_loss']).all()
    rec = json.loads((s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.meta.json').read_text())
    assert rec['features']['upstream'] == 'wavlm' and rec['network']['input_dim'] == 48 and rec['chunks']['m'] == 50
    run(testing.main, ['-ep', '2', '-batch', '6', '-emo', 'Act', *c, '--checkpoint', s2s, '--out', res])
    test = pd.read_csv(res / 'Act_Test_predictions.csv')
    assert len(test) == 6
    # predict.py on the audio files: the upstream's frames (checked by SHA-256) give testing.py's predictions
    import predict
    wavs = [tiny_corpus / 'Audios' / n for n in test.FileName[:3]]
    run(predict.main, [*wavs, '--checkpoint', s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.pth.tar', '-emo', 'Act',
                       '--upstream', upstreams['wavlm'], '--no-clip', '--device', 'cpu', '--out', tmp_path / 'p.csv'])
    got = pd.read_csv(tmp_path / 'p.csv')
    np.testing.assert_allclose(got.Act.to_numpy(), test.Pred[:3].to_numpy(), atol=2e-3)
    with pytest.raises(ToolkitError, match='another upstream'):
        run(predict.main, [wavs[0], '--checkpoint', s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.pth.tar', '-emo',
                           'Act', '--upstream', upstreams['hubert'], '--device', 'cpu', '--out', tmp_path / 'q.csv'])
    # a model on a store of another upstream (same dims, layers and hop) is refused, naming both
    bad = ['--corpus', tiny_corpus, '--features', ssl_stores / 'w2v', '--workers', '0', '--device', 'cpu']
    # NormTerm per store: statistics of the WavLM store are refused for the wav2vec2 store (same dims and hop)
    import norm_para
    from norm import NormError
    run(norm_para.main, ['--corpus', tiny_corpus, '--features', store, '--out', tmp_path / 'nt'])
    assert json.loads((tmp_path / 'nt' / 'normterm.json').read_text())['features']['upstream'] == 'wavlm'
    with pytest.raises(NormError, match='compute the NormTerm of this store'):
        run(training.main, ['-ep', '1', '-batch', '6', '-emo', 'Act', *bad, '--rankseq', rs, '--out', tmp_path / 's2',
                            '--norm', tmp_path / 'nt'])
    from identity import IdentityError
    with pytest.raises(IdentityError, match="other settings.*upstream: model 'wavlm', store 'wav2vec2'.*extract the features"):
        run(testing.main, ['-ep', '2', '-batch', '6', '-emo', 'Act', *bad, '--checkpoint', s2s, '--out', tmp_path / 'x'])


# ------------------------------------------------------------------ the SSL baseline
@pytest.fixture(scope='module')
def tone_corpus(tmp_path_factory):
    """The tiny corpus with 1 s tones whose pitch follows the arousal label: something a random encoder can see."""
    import pandas as pd

    from tests.fixtures import make_tiny_corpus
    root = make_tiny_corpus(tmp_path_factory.mktemp('tone') / 'corpus', n=24)
    lab = pd.read_csv(root / 'Labels' / 'labels_consensus.csv')
    t = np.arange(16000) / 16000
    for n, a in zip(lab.FileName, lab.EmoAct):
        sf.write(root / 'Audios' / n, (0.3 * np.sin(2 * np.pi * (100 + 250 * (a - 1)) * t)).astype(np.float32), 16000)
    return root


def test_baseline_trains_tests_and_refuses_other_upstream(tone_corpus, upstreams, tmp_path):
    import pandas as pd

    import testing
    import training
    from checkpoints import CheckpointError
    ck = tmp_path / 'bl' / 'm.pth.tar'
    base = ['--model', 'ssl', '--corpus', str(tone_corpus), '--device', 'cpu', '--workers', '0']
    training.main(base + ['--upstream', str(upstreams['wav2vec2']), '-emo', 'Act', '-ep', '6', '-batch', '12',
                          '--finetune', 'top:1', '--pooling', 'attentive', '--lr', '1e-2', '--checkpoint', str(ck)])
    log = pd.read_csv(tmp_path / 'bl' / 'm.log.csv')
    assert len(log) == 6 and log.train_loss.iloc[-2:].mean() < log.train_loss.iloc[0] - 0.05, log
    rec = json.loads((tmp_path / 'bl' / 'm.meta.json').read_text())
    assert rec['kind'] == 'ssl_baseline' and rec['features']['upstream'] == 'wav2vec2' and rec['attributes'] == ['Act']
    assert rec['network']['finetune'] == 'top:1' and len(rec['features']['upstream_sha256']) == 64
    sd = torch.load(ck, weights_only=True)          # only the trainable part is saved
    assert any(k.startswith('encoder.encoder.layers.1.') for k in sd) and not any('layers.0.' in k for k in sd)
    assert not any('feature_extractor' in k for k in sd) and any(k.startswith('pool.') for k in sd)
    rows = testing.main(base + ['--checkpoint', str(ck), '--upstream', str(upstreams['wav2vec2']), '-set', 'Test',
                                '--out', str(tmp_path / 'res')])
    pred = pd.read_csv(tmp_path / 'res' / 'Act_Test_predictions.csv')
    assert len(pred) == rows[0]['N'] == 6 and np.isfinite(pred.Pred).all() and pred.Pred.std() > 0
    with pytest.raises(CheckpointError, match='another upstream'):
        testing.main(base + ['--checkpoint', str(ck), '--upstream', str(upstreams['hubert']), '--out', str(tmp_path / 'x')])
    with pytest.raises(ToolkitError, match='N must be'):
        training.main(base + ['--upstream', str(upstreams['wav2vec2']), '--finetune', 'top:9', '--checkpoint',
                              str(tmp_path / 'y.pth.tar')])


def test_crossval_ssl_baseline_and_compare(tone_corpus, upstreams, tmp_path):
    """crossval.py --model ssl on two speaker-disjoint folds, then compare.py pools the folds' Test predictions."""
    import pandas as pd

    import compare
    import crossval
    lab = pd.read_csv(tone_corpus / 'Labels' / 'labels_consensus.csv', dtype={'SpkrID': str})
    spk = sorted(lab.SpkrID.unique())
    half = len(spk) // 2
    part = {1: ({s: 'Test' for s in spk[:2]} | {s: 'Validation' for s in spk[2:half]}),
            2: ({s: 'Test' for s in spk[half:half + 2]} | {s: 'Validation' for s in spk[half + 2:]})}
    folds = lab[['FileName', 'SpkrID']].assign(**{f'fold{k}': lab.SpkrID.map(lambda s, k=k: part[k].get(s, 'Train'))
                                                  for k in (1, 2)})
    root = tmp_path / 'corpus'
    import shutil
    shutil.copytree(tone_corpus, root)
    folds.to_csv(root / 'Labels' / 'folds.csv', index=False)
    out = tmp_path / 'cv'
    rec = crossval.main(['--corpus', root, '--model', 'ssl', '--upstream', upstreams['wav2vec2'], '-emo', 'Act',
                         '-ep', 1, '-batch', 12, '--device', 'cpu', '--bootstrap-n', 200, '--out', out,
                         '--ssl-args', '--finetune frozen --lr 1e-3'])
    n_test = int((folds.fold1 == 'Test').sum() + (folds.fold2 == 'Test').sum())
    assert rec['pooled']['Act']['n'] == n_test and rec['settings']['model'] == 'ssl'
    df = compare.main([str(out), str(out), '--corpus', str(root), '--out', str(tmp_path / 'c.csv'),
                       '--permutations', '200'])
    row = df.iloc[0]
    assert row['N'] == n_test and row.Diff_A_minus_B == 0 and row.p_value == 1.0
