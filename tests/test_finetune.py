"""Issue 9: --init-from / --freeze lstm, normalisation scopes (speaker), testing.py on an authors'-layout folder.
The folder is built here with published shapes and random weights; it is not the release, so it is passed as
own models described by its NormTerm (--checkpoint/--init-from DIR --norm DIR/NormTerm)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

import checkpoints as C  # noqa: E402
import cli  # noqa: E402
import norm as N  # noqa: E402
from corpus import Corpus  # noqa: E402
from errors import ToolkitError  # noqa: E402
from feature_store import FeatureStore, FeatureStoreWriter  # noqa: E402
from tests.test_method1 import published_state_dict  # noqa: E402
from utils import EMOS, ccc_loss, load_norm, pad_batch, save_norm  # noqa: E402

RANKERS = 'chunk_emotion_rankers/trained_ranker_model_v1.6'


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='module')
def setup(tiny_corpus, tmp_path_factory):
    """Features of the tiny corpus + an authors'-layout folder (NormTerm, 3 Seq2Seq, 3 rankers)."""
    import extract_features
    tmp = tmp_path_factory.mktemp('ft')
    feats = tmp / 'lld'
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(feats), '--workers', '1'])
    corpus, store = Corpus(tiny_corpus), FeatureStore(feats)
    pub = tmp / 'Chunk-Level-Emotion-Retrieval'
    mean, std = N.norm_stats(store, corpus.files('Train'))
    save_norm(pub / 'NormTerm', {'feat': (mean, std), **N.label_stats(corpus)})
    for i, e in enumerate(EMOS):
        (pub / 'trained_seq2seq_model_v1.6').mkdir(parents=True, exist_ok=True)
        (pub / RANKERS).mkdir(parents=True, exist_ok=True)
        torch.save(published_state_dict(1, i), pub / 'trained_seq2seq_model_v1.6' / C.seq2seq_name(30, 128, e))
        torch.save(published_state_dict(2, 10 + i), pub / RANKERS / C.ranker_name(20, 128, e))
    common = ['--corpus', str(tiny_corpus), '--features', str(feats), '--workers', '0', '--device', 'cpu']
    from chunk_emotion_rankers import generate_ranking_seqence
    generate_ranking_seqence.main(['-emo', 'Act', '-set', 'Train', *own(pub), '--out', str(tmp / 'rs'), *common])
    return {'tmp': tmp, 'feats': feats, 'pub': pub, 'corpus': corpus, 'store': store, 'common': common}


def own(pub, flag='--checkpoint'):
    return [flag, str(pub), '--norm', str(pub / 'NormTerm')]


def train_set_loss(model, s, args):
    """Seq2Seq loss of `model` on the whole Train set, eval mode (deterministic)."""
    import seq2seq
    norm = load_norm(s['pub'] / 'NormTerm')
    fnorm, lnorm = N.FeatNorm(*norm['feat'], 'train'), norm['Act']
    train, _, _ = seq2seq.seq2seq_datasets(args, 'Act', s['corpus'], s['store'], fnorm, lnorm)
    items = [train[i] for i in range(len(train))]
    x, lengths = pad_batch([it[0] for it in items], min_len=62)
    curve, mu = torch.tensor(np.stack([it[1] for it in items])), torch.tensor([it[2] for it in items])
    with torch.no_grad():
        pred = seq2seq.chunk_predictions(model.eval(), x, lengths, 62, torch.device('cpu'))
    return float(0.5 * ccc_loss(pred.mean(1), mu) + 0.5 * ccc_loss(pred, curve))


@pytest.mark.parametrize('freeze', [None, 'lstm'])
def test_init_from_published_folder(setup, freeze):
    import training
    s = setup
    out = s['tmp'] / f'run_{freeze}'
    argv = ['-emo', 'Act', '-ep', '4', '-batch', '12', '--lr', '1e-3', *own(s['pub'], '--init-from'),
            '--rankseq', str(s['tmp'] / 'rs'), '--out', str(out), *s['common']] + (['--freeze', freeze] if freeze else [])
    ckpt, = training.main(argv)
    init = published_state_dict(1, 0)
    got = torch.load(ckpt, weights_only=True)
    assert list(got) == list(init)                                         # published names, plain state_dict
    meta = json.loads(C.sibling(ckpt, '.meta.json').read_text())
    assert meta['init_from']['path'].endswith('trained_seq2seq_model_v1.6/LSTM_epoch30_batch128_EmoRankerSeq_Act.pth.tar')
    assert meta['feature_norm']['source'].endswith('NormTerm') and meta['label_norm']['source'].endswith('NormTerm')
    assert meta['feature_norm']['scope'] == meta['label_norm']['scope'] == 'train'   # not the release's NormTerm
    assert meta['settings']['freeze'] == freeze
    assert meta['features']['preset'] == 'published' and meta['features']['hop'] == 0.016
    lstm_same = all(torch.equal(got[k], init[k]) for k in init if k.startswith('lstm.'))
    assert lstm_same == (freeze == 'lstm')                                 # frozen: bit-identical LSTM
    assert not torch.equal(got['fc2.weight'], init['fc2.weight'])          # the head always moves
    # the weights moved in the right direction: the training-set loss fell
    from model import LSTMnet
    m0, m1 = LSTMnet(out_dim=1), LSTMnet(out_dim=1)
    m0.load_state_dict(init)
    m1.load_state_dict(got)
    args = training.build_parser().parse_args(argv)
    before, after = train_set_loss(m0, s, args), train_set_loss(m1, s, args)
    assert after < before - 0.01, (before, after)


def test_ranker_init_from_and_freeze(setup):
    from chunk_emotion_rankers import generate_preference_labels, training_ranker
    s = setup
    generate_preference_labels.main(['-emo', 'Dom', '-set', 'Train,Validation', '--corpus', s['common'][1],
                                     '--out', str(s['tmp'] / 'pairs'), '--ratio', '1.0'])
    ckpt, = training_ranker.main(['-emo', 'Dom', '-ep', '1', '-batch', '4', '--pairs-per-epoch', '8', '--freeze', 'lstm',
                                  *own(s['pub'], '--init-from'), '--pairs', str(s['tmp'] / 'pairs'),
                                  '--out', str(s['tmp'] / 'rk'), *s['common']])
    got, init = torch.load(ckpt, weights_only=True), published_state_dict(2, 11)
    assert all(torch.equal(got[k], init[k]) for k in init if k.startswith('lstm.'))
    assert not torch.equal(got['fc1.weight'], init['fc1.weight'])
    meta = json.loads(C.sibling(ckpt, '.meta.json').read_text())
    assert meta['init_from']['path'].endswith('LSTM_epoch20_batch128_Dom_ranker.pth.tar')
    assert meta['feature_norm']['source'].endswith('NormTerm') and meta['label_norm'] is None


def offset_corpus(root, speakers):
    """Label file only (no audio needed): 3 utterances per speaker."""
    rows = [{'FileName': f'MSP-PODCAST_{k:04d}_{u:04d}.wav', 'EmoClass': 'N', 'EmoAct': 4.0, 'EmoVal': 4.0, 'EmoDom': 4.0,
             'SpkrID': spk, 'Gender': 'Female', 'Split_Set': 'Train'} for k, spk in enumerate(speakers) for u in range(3)]
    (root / 'Labels').mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / 'Labels' / 'labels_consensus.csv', index=False)
    return Corpus(root)


def test_speaker_norm_removes_constant_speaker_offsets(tmp_path):
    corpus = offset_corpus(tmp_path / 'c', [11, 12, 13])
    rng = np.random.default_rng(0)
    base = [rng.normal(0, 1, (int(rng.integers(40, 90)), 130)).astype(np.float32) for _ in range(3)]
    offsets = {11: 0.0, 12: 5.0, 13: -2.5 + rng.normal(0, 3, 130)}          # constant per speaker (per dimension)
    with FeatureStoreWriter(tmp_path / 'f', 'lld', 130, 0.016, 'published') as w:
        for name in corpus.files():
            spk, u = int(corpus.speaker(name)), int(name[-8:-4])
            w.add(name, base[u] + np.float32(offsets[spk]))
    store = FeatureStore(tmp_path / 'f')
    spk = N.data_norm('speaker', store, corpus)
    glob = N.data_norm('corpus', store, corpus)
    by_u = {}
    for name in corpus.files():
        by_u.setdefault(int(name[-8:-4]), []).append((spk(name, store.get(name)), glob(name, store.get(name))))
    for outs in by_u.values():
        for s_, g_ in outs[1:]:
            np.testing.assert_allclose(s_, outs[0][0], atol=1e-4)          # identical across speakers
            assert np.abs(g_ - outs[0][1]).max() > 0.5                    # not with corpus statistics


def test_speaker_norm_without_speaker_ids_is_a_clear_error(tmp_path):
    corpus = offset_corpus(tmp_path / 'c', ['Unknown', 'Unknown'])
    with FeatureStoreWriter(tmp_path / 'f', 'lld', 130, 0.016, 'published') as w:
        for name in corpus.files():
            w.add(name, np.ones((70, 130), np.float32))
    with pytest.raises(ToolkitError, match='no speaker IDs'):
        N.data_norm('speaker', FeatureStore(tmp_path / 'f'), corpus)


def test_testing_pretrained_prints_ccc_table_and_writes_predictions(setup, capsys):
    import testing
    from model import LSTMnet
    from utils import dynamic_chunk_split, load_norm, normalize_feats
    s = setup
    res = s['tmp'] / 'res'
    rows = testing.main(['-emo', 'all', *own(s['pub']), '-set', 'all', '--out', str(res), *s['common']])
    out = capsys.readouterr().out
    assert 'CCC' in out and all(f'{e:5s} Test' in out for e in EMOS)
    assert {(r['Attr'], r['Split']) for r in rows} == {(e, sp) for e in EMOS for sp in ('Train', 'Validation', 'Test')}
    df = pd.read_csv(res / 'Val_Test_predictions.csv')
    assert len(df) == 6 and list(df.columns[:3]) == ['FileName', 'Label', 'Pred'] and df.shape[1] == 3 + 22
    np.testing.assert_allclose(df.filter(like='Chunk').mean(1), df['Pred'], atol=1e-4)   # utterance = chunk mean
    # the released-model pipeline (docs/pretrained.md) by hand for one (short, padded) utterance
    name = min(df['FileName'], key=lambda n: len(s['store'].get(n)))
    norm = load_norm(s['pub'] / 'NormTerm')
    x = torch.tensor(normalize_feats(s['store'].get(name), *norm['feat']))[None]
    model = LSTMnet(out_dim=1)
    model.load_state_dict(published_state_dict(1, 2))
    with torch.no_grad():
        z = model.eval()(dynamic_chunk_split(x, torch.tensor([x.shape[1]]), 62, 22)[0]).mean()
    assert float(df.set_index('FileName').loc[name, 'Pred']) == pytest.approx(float(z) * norm['Val'][1] + norm['Val'][0], abs=1e-4)
    assert pd.read_csv(res / 'metrics.csv').shape[0] == 9


def test_pretrained_needs_the_published_preset(setup, tmp_path):
    import testing
    s = setup
    other = tmp_path / 'lld_compare'
    shutil.copytree(s['feats'], other)
    meta = json.loads((other / 'meta.json').read_text())
    meta.update(preset='ComParE_2016', hop=0.01)
    (other / 'meta.json').write_text(json.dumps(meta))
    common = [a if a != str(s['feats']) else str(other) for a in s['common']]
    with pytest.raises(ToolkitError, match="trained on 'published' LLDs.*'ComParE_2016'"):
        testing.main(['-emo', 'Act', *own(s['pub']), *common])


def test_resume_continues_exactly(setup):
    """An interrupted run continued with --resume ends with the same weights and log as one straight run."""
    import training
    s = setup
    base = ['-emo', 'Act', '-batch', '6', '--rankseq', str(s['tmp'] / 'rs'), *own(s['pub'], '--init-from'), *s['common']]
    a, b = s['tmp'] / 'resumed' / 'r_{emo}.pth.tar', s['tmp'] / 'straight' / 'r_{emo}.pth.tar'
    training.main(['-ep', '1', '--checkpoint', str(a), *base])
    training.main(['-ep', '2', '--checkpoint', str(a), '--resume', *base])
    training.main(['-ep', '2', '--checkpoint', str(b), *base])
    sa = torch.load(a.parent / 'r_Act.resume.pt', weights_only=False)
    sb = torch.load(b.parent / 'r_Act.resume.pt', weights_only=False)
    assert sa['epoch'] == sb['epoch'] == 1
    assert all(torch.equal(sa['model'][k], sb['model'][k]) for k in sb['model'])
    la, lb = (pd.read_csv(p.parent / 'r_Act.log.csv') for p in (a, b))
    pd.testing.assert_frame_equal(la, lb)


def test_missing_features_say_which_command_to_run(tiny_corpus, tmp_path):
    with pytest.raises(ToolkitError, match=r'python extract_features.py --corpus .* --feature lld --out .*nothing'):
        cli.open_store(tmp_path / 'nothing', Corpus(tiny_corpus))


def test_init_from_model_is_never_overwritten(setup):
    """Fine-tuning into the file it starts from would replace the release/own model: refused before training."""
    import training
    s = setup
    seq = s['pub'] / 'trained_seq2seq_model_v1.6' / C.seq2seq_name(30, 128, 'Act')
    before = seq.read_bytes()
    with pytest.raises(ToolkitError, match='--checkpoint .* is the --init-from model'):
        training.main(['-emo', 'Act', '-ep', '1', '-batch', '12', *own(s['pub'], '--init-from'), '--checkpoint',
                       str(seq), '--rankseq', str(s['tmp'] / 'rs'), *s['common']])
    assert seq.read_bytes() == before


def test_patience_stops_early_and_keeps_the_model_of_the_full_run(setup):
    """--patience N: the epochs run are the full run's first epochs (same log rows), the run stops N epochs after
    the best one, and the saved model is the full run's whenever the full run's best epoch lies before the stop."""
    import training
    s = setup
    base = ['-emo', 'Act', '-batch', '12', '--lr', '3e-2', '--rankseq', str(s['tmp'] / 'rs'), *own(s['pub'], '--norm')[2:],
            *s['common']]
    full, = training.main(['-ep', '4', '--out', str(s['tmp'] / 'pat_full'), *base])
    short, = training.main(['-ep', '4', '--patience', '1', '--out', str(s['tmp'] / 'pat_2'), *base])
    lf = pd.read_csv(C.sibling(full, '.log.csv'))
    ls = pd.read_csv(C.sibling(short, '.log.csv'))
    best = lambda df, upto: int(df.epoch[df.val_loss[:upto].idxmin()])
    stop = next((e for e in range(len(lf)) if e - best(lf, e + 1) >= 1), len(lf) - 1)
    assert stop < 3, 'the full run never went an epoch without improving: pick another --lr'
    assert len(ls) == stop + 1                                       # stopped right after the patience ran out
    pd.testing.assert_frame_equal(ls, lf.iloc[:stop + 1])            # the same epochs as the full run
    meta = json.loads(C.sibling(short, '.meta.json').read_text())
    assert meta['settings']['patience'] == 1 and meta['finished'] is True
    assert meta['result']['best_epoch'] == best(lf, stop + 1)
    same = all(torch.equal(a, b) for a, b in zip(torch.load(short, weights_only=True).values(),
                                                 torch.load(full, weights_only=True).values()))
    assert same == (best(lf, len(lf)) <= stop)


def test_ranker_grouped_pair_sampling_trains_and_is_recorded(setup):
    from chunk_emotion_rankers import generate_preference_labels, training_ranker
    s = setup
    generate_preference_labels.main(['-emo', 'Val', '-set', 'Train,Validation', '--corpus', s['common'][1],
                                     '--out', str(s['tmp'] / 'pairs_g'), '--ratio', '1.0'])
    run = lambda how, out: training_ranker.main(['-emo', 'Val', '-ep', '2', '-batch', '8', '--pairs-per-epoch', '16',
                                                 '--pair-sampling', how, '--max-chunks', str(6 * 22), '--pairs',
                                                 str(s['tmp'] / 'pairs_g'), '--out', str(s['tmp'] / out),
                                                 *own(s['pub'], '--norm')[2:], *s['common']])[0]
    g, u = run('grouped', 'rk_g'), run('uniform', 'rk_u')
    mg, mu = (json.loads(C.sibling(c, '.meta.json').read_text()) for c in (g, u))
    assert mg['settings']['pair_sampling'] == 'grouped' and 'pair_sampling' not in mu['settings']
    assert not torch.equal(torch.load(g, weights_only=True)['fc2.weight'], torch.load(u, weights_only=True)['fc2.weight'])


def test_ranker_resume_with_another_pair_sampling_refused(setup):
    """A uniform run resumed with --pair-sampling grouped would mix two draws under one record: refused, naming it."""
    from chunk_emotion_rankers import generate_preference_labels, training_ranker
    from errors import ToolkitError
    s = setup
    generate_preference_labels.main(['-emo', 'Val', '-set', 'Train,Validation', '--corpus', s['common'][1],
                                     '--out', str(s['tmp'] / 'pairs_r'), '--ratio', '1.0'])
    base = ['-emo', 'Val', '-batch', '8', '--pairs-per-epoch', '16', '--pairs', str(s['tmp'] / 'pairs_r'),
            '--checkpoint', str(s['tmp'] / 'rk_r' / 'r.pth.tar'), *own(s['pub'], '--norm')[2:], *s['common']]
    training_ranker.main(['-ep', '1', *base])
    with pytest.raises(ToolkitError, match="pair_sampling: was 'uniform', now 'grouped'"):
        training_ranker.main(['-ep', '2', '--resume', '--pair-sampling', 'grouped', *base])
