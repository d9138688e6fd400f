"""The authors' released MSP-Podcast v1.6 models on real speech (Emo-DB), run the way a user runs them.

Needs `../shared` (the release's files in `../shared/pretrained/Chunk-Level-Emotion-Retrieval`, Emo-DB in
`../shared/datasets/emodb`); skipped only when that folder is absent, and then CI fails (tests/conftest.py).
One module-scoped fixture converts the Test speakers (03, 08) with prepare_emodb.py and extracts their LLDs
once; testing.py and generate_ranking_seqence.py read that store, predict.py reads 60 original WAVs.
The numbers asserted here are the README's ("Using the authors' released models on any recording").
"""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch

import extract_features
import predict
import prepare_emodb
import testing
from chunk_emotion_rankers import generate_ranking_seqence
from feature_store import FeatureStore
from model import LSTMnet
from tests.test_method1 import assert_ranks_equal_tournament

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
PUB = SHARED / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'
EMODB = SHARED / 'datasets' / 'emodb'
pytestmark = [pytest.mark.skipif(not SHARED.is_dir(), reason='needs ../shared (released models and Emo-DB)'),
              pytest.mark.usefixtures('one_torch_thread')]

SEQ2SEQ = 'trained_seq2seq_model_v1.6/LSTM_epoch30_batch128_EmoRankerSeq_{}.pth.tar'
RANKER = 'chunk_emotion_rankers/trained_ranker_model_v1.6/LSTM_epoch20_batch128_{}_ranker.pth.tar'
SHAPES = OrderedDict([   # the release: 2-layer LSTM 130 -> 130, fc1 130 -> 130, fc2 130 -> out
    ('lstm.weight_ih_l0', (520, 130)), ('lstm.weight_hh_l0', (520, 130)), ('lstm.bias_ih_l0', (520,)),
    ('lstm.bias_hh_l0', (520,)), ('lstm.weight_ih_l1', (520, 130)), ('lstm.weight_hh_l1', (520, 130)),
    ('lstm.bias_ih_l1', (520,)), ('lstm.bias_hh_l1', (520,)), ('fc1.weight', (130, 130)), ('fc1.bias', (130,)),
    ('fc2.weight', ('out', 130)), ('fc2.bias', ('out',))])
# README: mean predicted arousal anger 6.19 > happiness 6.01 > fear 5.34 > neutral 4.08 > boredom 3.74 > sadness 3.14
README_ORDER = list('WFANLT')
README_TEST_CCC = {'Act': 0.770, 'Dom': 0.520, 'Val': 0.000}   # README: testing.py --pretrained, Emo-DB Test
M, K = 62, 22


def load_release(pattern, emo):
    return torch.load(PUB / pattern.format(emo), map_location='cpu', weights_only=True)


@pytest.mark.parametrize('pattern,out_dim', [(SEQ2SEQ, 1), (RANKER, 2)], ids=['seq2seq', 'ranker'])
@pytest.mark.parametrize('emo', ['Act', 'Dom', 'Val'])
def test_checkpoints_load_strictly(pattern, out_dim, emo):
    sd = load_release(pattern, emo)
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == \
        [(k, tuple(out_dim if d == 'out' else d for d in s)) for k, s in SHAPES.items()]
    net = LSTMnet(out_dim=out_dim)
    net.load_state_dict(sd, strict=True)
    assert all(torch.equal(p, sd[k]) for k, p in net.state_dict().items())
    assert all(torch.isfinite(v).all() for v in sd.values())


def test_normterm_shapes():
    for kind in ('means', 'stds'):
        feat = scipy.io.loadmat(PUB / 'NormTerm' / f'feat_norm_{kind}.mat')['normal_para']
        assert feat.shape == (1, 130) and np.isfinite(feat).all()
        for emo in ('act', 'dom', 'val'):
            lab = scipy.io.loadmat(PUB / 'NormTerm' / f'{emo}_norm_{kind}.mat')['normal_para']
            assert lab.shape == (1, 1) and (1 <= lab[0, 0] <= 7 if kind == 'means' else 0 < lab[0, 0] < 3)


@pytest.fixture(scope='module')
def emodb_test(tmp_path_factory):
    """Emo-DB Test speakers 03 and 08 (107 utterances) in the MSP layout, LLDs extracted once.
    The released models use the published NormTerm, so converting only these speakers gives the Test
    predictions of the full conversion (`prepare_emodb.py ../shared/datasets/emodb data/emodb`)."""
    tmp = tmp_path_factory.mktemp('released')
    root, _ = prepare_emodb.prepare(EMODB, tmp / 'emodb', speakers='03,08', progress=False)
    extract_features.main(['--corpus', str(root), '--out', str(tmp / 'lld'), '--workers', '1'])
    return dict(tmp=tmp, root=root, lld=tmp / 'lld')


def fixed_files():
    """60 original WAVs: the last file (by name) of each speaker for anger, happiness, fear, neutral, boredom,
    sadness."""
    last = {}
    for f in sorted((EMODB / 'wav').glob('*.wav')):
        if f.stem[5] in README_ORDER:
            last[(f.stem[:2], f.stem[5])] = f
    return sorted(last.values())


def auc(pos, neg):
    """Probability that a random positive scores above a random negative (ties count 1/2)."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_predict_arousal_on_emodb(tmp_path):
    files = fixed_files()
    assert len(files) == 60
    rc = predict.main([str(f) for f in files] + ['--pretrained', str(PUB), '--out', str(tmp_path / 'p.csv'),
                                                 '--device', 'cpu', '--batch', '30'])
    assert rc == 0
    df = pd.read_csv(tmp_path / 'p.csv', keep_default_na=False)
    assert len(df) == 60 and (df.error == '').all()
    cat = df.file.map(lambda f: Path(f).stem[5])
    act = df.Act.astype(float)
    assert auc(act[cat.isin(list('WFA'))], act[cat.isin(list('LT'))]) >= 0.95
    means = act.groupby(cat).mean()[README_ORDER]
    assert (np.diff(means.values) < 0).all(), means.round(2).to_dict()
    assert np.isfinite(act).all() and act.between(0, 8).all()   # de-normalised, not clipped to 1..7


def test_testing_reproduces_readme_ccc(emodb_test):
    out = emodb_test['tmp'] / 'testing'
    testing.main(['-emo', 'all', '--pretrained', str(PUB), '--corpus', str(emodb_test['root']),
                  '--features', str(emodb_test['lld']), '-set', 'Test', '--out', str(out), '--device', 'cpu'])
    met = pd.read_csv(out / 'metrics.csv').set_index('Attr')
    assert (met.N == 107).all()
    for emo, want in README_TEST_CCC.items():
        assert abs(met.loc[emo, 'CCC'] - want) <= 5e-4, (emo, met.loc[emo, 'CCC'])
    # 95 % intervals from resampling the two test speakers (metrics.py), around the point values
    assert (met.CCC_lo <= met.CCC).all() and (met.CCC_hi >= met.CCC).all() and (met.r_lo <= met.r_hi).all()
    assert met.bootstrap.str.contains('1000 resamples of the 2 speakers').all()


# ---------------------------------------------------------------- ranking sequences == the tournament
def published_chunks(x, mean, std):
    """The published input pipeline, written out: z-norm with the NormTerm, NaN -> 0, clip to [-3, 3],
    pad to 62 frames, 22 chunks starting k * floor((T - 62) / 21)."""
    x = np.clip(np.nan_to_num((x - mean) / std, nan=0.0), -3, 3)
    if len(x) < M:
        x = np.concatenate([x, np.zeros((M - len(x), x.shape[1]))])
    step = (len(x) - M) // (K - 1)
    return torch.tensor(np.stack([x[k * step:k * step + M] for k in range(K)]), dtype=torch.float32)


def test_ranking_sequences_equal_tournament(emodb_test):
    out = emodb_test['tmp'] / 'rankseq'
    generate_ranking_seqence.main(['-emo', 'Act', '-set', 'Test', '--pretrained', str(PUB),
                                   '--corpus', str(emodb_test['root']), '--features', str(emodb_test['lld']),
                                   '--out', str(out), '--device', 'cpu', '--workers', '0'])
    seqs = pd.read_json(out / 'testing_Act.json', orient='index').ChunkRankSeq
    assert len(seqs) == 107
    net = LSTMnet(out_dim=2)
    net.load_state_dict(load_release(RANKER, 'Act'), strict=True)
    net.eval()
    mean, std = (scipy.io.loadmat(PUB / 'NormTerm' / f'feat_norm_{k}.mat')['normal_para'] for k in ('means', 'stds'))
    store = FeatureStore(emodb_test['lld'])
    names = sorted(seqs.index)[::2]                            # 54 utterances of both speakers
    exact = [assert_ranks_equal_tournament(net, published_chunks(store.get(n), mean, std), seqs[n]) for n in names]
    assert len(names) >= 50 and sum(exact) >= len(names) - 2, f'{len(names) - sum(exact)} utterances with near-ties'
    assert all(sorted(seqs[n]) != [1] * K for n in names)       # real 2-s speech: chunks differ, ranks vary
