"""Method 1 (docs/chunking.md, docs/method1.md): chunk split, QA preference labels, target curves, CCC, batched ranking vs the
all-pairs tournament, published checkpoint layout, and the six commands end to end on a tiny corpus."""
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

REPO = Path(__file__).resolve().parents[1]

import checkpoints as C  # noqa: E402
import dataloader as D  # noqa: E402
from checkpoints import CheckpointError  # noqa: E402
from model import LSTMnet  # noqa: E402
from preference import (  # noqa: E402
    draw_partners,
    histograms,
    pad_ratings,
    preference_pairs,
    qa_counts_broadcast,
    qa_counts_hist,
    write_pairs,
)
from ranker import rank_sequence_allpairs, rank_sequences  # noqa: E402
from utils import ccc, ccc_loss, chunk_starts, dynamic_chunk_split, generate_chunk_EmoSeq, rank_desc_min  # noqa: E402

PUBLISHED_SHAPES = OrderedDict([   # the authors' v1.6 checkpoints: 2-layer LSTM 130->130, fc1 130->130, fc2 130->out
    ('lstm.weight_ih_l0', (520, 130)), ('lstm.weight_hh_l0', (520, 130)), ('lstm.bias_ih_l0', (520,)),
    ('lstm.bias_hh_l0', (520,)), ('lstm.weight_ih_l1', (520, 130)), ('lstm.weight_hh_l1', (520, 130)),
    ('lstm.bias_ih_l1', (520,)), ('lstm.bias_hh_l1', (520,)), ('fc1.weight', (130, 130)), ('fc1.bias', (130,)),
    ('fc2.weight', ('out', 130)), ('fc2.bias', ('out',))])


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def published_state_dict(out_dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, 0.1 * torch.randn(*[out_dim if d == 'out' else d for d in s], generator=g))
                       for k, s in PUBLISHED_SHAPES.items())


# ------------------------------------------------------------------ chunk split (docs/chunking.md)
def test_chunk_split_exact():
    starts, _ = chunk_starts([62, 104, 146, 30], m=62, K=22)
    assert starts[0].tolist() == [0] * 22                      # T == m: step 0
    assert starts[1].tolist() == list(range(0, 44, 2))         # floor(42 / 21) = 2
    assert starts[2].tolist() == list(range(0, 88, 4))
    assert starts[3].tolist() == [0] * 22                      # shorter than m: padded, never a crash
    x = torch.arange(2 * 104, dtype=torch.float32).view(2, 104, 1)
    x[1, 30:] = 0                                             # a zero-padded batch
    ch = dynamic_chunk_split(x, torch.tensor([104, 30]), 62, 22)
    assert ch.shape == (2, 22, 62, 1)
    assert ch[0, 5, :, 0].tolist() == list(range(10, 72))
    assert ch[1, 0, :30, 0].tolist() == list(range(104, 134)) and (ch[1, :, 30:] == 0).all()
    assert [D.chunk_frames(h) for h in (0.016, 0.01, 0.02)] == [62, 100, 50]


@settings(max_examples=60, deadline=None)
@given(T=st.integers(0, 400), m=st.integers(1, 70), K=st.integers(2, 30))
def test_chunk_starts_property(T, m, K):
    s, _ = chunk_starts([T], m, K)
    s = s[0]
    assert s[0] == 0 and (s.diff() >= 0).all() and len(s) == K
    assert int(s[-1]) + m <= max(T, m)                         # every chunk inside the (padded) utterance


# ------------------------------------------------------------------ QA preference labels (docs/method1.md)
def test_qa_table_exact():
    Ri = np.array([[5, 5, 6, np.nan]])
    Rj = np.array([[[4, 5, np.nan, np.nan], [6, 6, 7, 7]]])
    gt, lt, tot = qa_counts_broadcast(Ri, Rj)
    # vs [4,5]: 5>4 5=5 5>4 5=5 6>4 6>5 -> greater 4/6, lower 0; vs [6,6,7,7]: 5<all, 6<7 twice -> lower 10/12
    assert gt.tolist() == [[4, 0]] and lt.tolist() == [[0, 10]] and tot.tolist() == [[6, 12]]
    R = np.array([[5, 5, 6, np.nan], [4, 5, np.nan, np.nan], [6, 6, 7, 7]])
    H, below = histograms(R)
    g2, l2, t2 = qa_counts_hist(H[[0]], H, below, np.array([[1, 2]]))
    assert g2.tolist() == [[4, 0]] and l2.tolist() == [[0, 10]] and t2.tolist() == [[6, 12]]
    # 3 of 5 comparisons greater (or lower) = 0.6 exactly -> labelled; 2 of 4 each way -> no pair
    i, j, lab = preference_pairs(pad_ratings([[5], [4, 4, 4, 6, 6], [7], [4, 4, 6, 6]]), ratio=1.0, threshold=0.6)
    got = {(int(a), int(b)): int(c) for a, b, c in zip(i, j, lab)}
    assert got[(0, 1)] == 1 and got[(1, 0)] == 0 and got[(1, 2)] == 0 and got[(2, 0)] == 1
    assert (0, 3) not in got and (3, 0) not in got and (0, 0) not in got


def qa_reference(a, b, thr=0.6):
    a, b = np.asarray(a), np.asarray(b)
    d = a[:, None] - b[None, :]
    p = np.array([(d > 0).mean(), (d < 0).mean(), (d == 0).mean()])
    return None if p.max() < thr or p.argmax() == 2 else int(p.argmax() == 0)


def test_preference_pairs_match_reference_and_are_seeded():
    rng = np.random.default_rng(3)
    lists = [rng.integers(1, 8, rng.integers(1, 7)).astype(float) for _ in range(60)]
    R = pad_ratings(lists)
    out = preference_pairs(R, ratio=0.2, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(out, preference_pairs(R, ratio=0.2, seed=7)))
    assert not np.array_equal(out[1], preference_pairs(R, ratio=0.2, seed=8)[1])
    assert all(np.array_equal(a, b) for a, b in zip(out, preference_pairs(R, 0.2, 0.6, 7, 'broadcast')))
    i, j, lab = out
    assert (i != j).all()
    assert {(a, b): c for a, b, c in zip(i, j, lab)} == \
        {(a, b): qa_reference(lists[a], lists[b]) for a, b in zip(i, j)}
    assert np.bincount(i, minlength=60).max() <= 12


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from([1.0, 2.0, 2.5, 4.0, 7.0]), min_size=1, max_size=6), min_size=2, max_size=25),
       st.integers(0, 10))
def test_kernels_give_identical_pairs_property(lists, seed):
    R = pad_ratings(lists)
    a = preference_pairs(R, 0.5, 0.6, seed, 'broadcast')
    for method in ('hist', 'table'):
        assert all(np.array_equal(x, y) for x, y in zip(a, preference_pairs(R, 0.5, 0.6, seed, method)))
    assert {(int(i), int(j)): int(c) for i, j, c in zip(*a)} == \
        {(int(i), int(j)): qa_reference(lists[i], lists[j]) for i, j in zip(*a[:2])}


@pytest.mark.parametrize('N,P', [(13, 3), (9, 6)])          # sparse path (draws + repeats replaced), dense path
def test_draw_partners_uniform_subsets(N, P):
    """Every row: P distinct partners, never itself; over many rows every P-subset of the others is equally likely
    (chi-square on all C(N-1, P) subsets), and rows are independent (no fixed partner pattern)."""
    from math import comb

    from scipy.stats import chisquare
    rows = np.full(20000, 4)
    part = draw_partners(np.random.default_rng(0), rows, N, P)
    assert part.shape == (20000, P) and part.min() >= 0 and part.max() < N and not (part == 4).any()
    srt = np.sort(part, 1)
    assert (np.diff(srt, axis=1) > 0).all()
    _, counts = np.unique(srt, axis=0, return_counts=True)
    assert len(counts) == comb(N - 1, P)
    assert chisquare(counts).pvalue > 1e-3
    rows = np.arange(N)
    a, b = draw_partners(np.random.default_rng(5), rows, N, P), draw_partners(np.random.default_rng(5), rows, N, P)
    assert np.array_equal(a, b) and not (a == rows[:, None]).any()


def test_pairs_do_not_depend_on_threads(monkeypatch):
    """Each block of rows has its own random stream spawned from the seed: 1 or 2 threads, the same pairs."""
    import preference as G
    rng = np.random.default_rng(1)
    R = np.clip(np.rint(rng.uniform(1.5, 6.5, 400)[:, None] + rng.normal(0, 1, (400, 5))), 1, 7)
    monkeypatch.setattr(G, 'BLOCK_ELEMS', 400)                 # 10 blocks of 10 rows (40 partners each)
    one, two = preference_pairs(R, 0.1, 0.6, 3, threads=1), preference_pairs(R, 0.1, 0.6, 3, threads=2)
    assert len(one[0]) > 5000 and all(np.array_equal(x, y) for x, y in zip(one, two))
    assert np.all(np.diff(one[0]) >= 0) and np.bincount(one[0], minlength=400).max() <= 40   # grouped by i


def test_write_pairs_csv(tmp_path):
    write_pairs(tmp_path / 'p.csv', ['a.wav', 'b,c.wav'], np.array([0, 1]), np.array([1, 0]), np.array([1, 0]))
    df = pd.read_csv(tmp_path / 'p.csv')
    assert list(df.columns) == ['Sentence1', 'Sentence2', 'PreferLabel']
    assert df.values.tolist() == [['a.wav', 'b,c.wav', 1], ['b,c.wav', 'a.wav', 0]]


# ------------------------------------------------------------------ target curves and CCC
def test_target_curve_hand_examples():
    np.testing.assert_allclose(generate_chunk_EmoSeq(3.0, 0.5, [2, 1, 1, 3]), [2.5, 3.5, 3.5, 2.5])
    s = np.sqrt(2 / 3)      # ranks 1,2,3: trend 0,-1,-2 (smoothing keeps it), mean -1, std sqrt(2/3)
    np.testing.assert_allclose(generate_chunk_EmoSeq(4.0, 1.0, [1, 2, 3]), [4 + 1 / s, 4, 4 - 1 / s])
    # ranks 1,3,2,4,5: trend 0,-1,0,-1,-2; 3-point means -1/3, -2/3, -1 inside, raw ends kept -> rescaled
    x = np.array([0, -1 / 3, -2 / 3, -1, -2])
    np.testing.assert_allclose(generate_chunk_EmoSeq(3.0, 0.8, [1, 3, 2, 4, 5]), 3 + (x - x.mean()) * 0.8 / x.std())
    assert np.all(generate_chunk_EmoSeq(4.2, 1.3, [1] * 22) == 4.2)              # flat ranks
    assert np.all(generate_chunk_EmoSeq(4.2, 0.0, list(range(1, 23))) == 4.2)    # zero annotator std
    mono = generate_chunk_EmoSeq(4.0, 1.0, list(range(22, 0, -1)))               # rising emotion
    assert np.all(np.diff(mono) > 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 22), min_size=22, max_size=22), st.floats(1, 7), st.floats(0.01, 3))
def test_target_curve_property(ranks, mu, sd):
    c = generate_chunk_EmoSeq(mu, sd, ranks)
    assert c.shape == (22,)
    assert abs(c.mean() - mu) < 1e-9
    assert abs(c.std() - sd) < 1e-9 or np.all(c == mu)


def test_ccc_exact():
    x = np.array([1.0, 2.0, 3.0])
    assert ccc(x, x) == pytest.approx(1.0)
    assert ccc(x, x + 1) == pytest.approx(4 / 7)          # 2(2/3) / (2/3 + 2/3 + 1)
    assert ccc(x - 2, 2 - x) == pytest.approx(-1.0)
    assert ccc(x, -x) == pytest.approx(-(4 / 3) / (4 / 3 + 16))   # mean offset 4 enters squared
    # population moments: var 1.25 and 1.5, cov 1.25, offset 0.5 -> 2.5 / 3 (sample moments would give 0.851)
    assert ccc([1, 2, 3, 4], [2, 2, 3, 5]) == pytest.approx(2.5 / 3)
    assert ccc([2, 2, 2], [2, 2, 2]) == 0.0 and ccc([[1, 2], [3, 4]], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert float(ccc_loss(torch.tensor(x), torch.tensor(x + 1))) == pytest.approx(3 / 7)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=22))
def test_ranks_min_method_property(scores):
    s = np.array(scores, dtype=float)
    r = rank_desc_min(s)
    assert np.array_equal(r, rankdata(-s, method='min'))
    assert r.min() == 1 and r.max() <= len(s)
    if len(set(scores)) == len(scores):
        assert sorted(r.tolist()) == list(range(1, len(s) + 1))   # no ties: a permutation


# ------------------------------------------------------------------ batched ranking == tournament
def test_batched_ranking_equals_all_pairs_tournament():
    torch.manual_seed(0)      # small random model (the identity does not depend on the size): fast tournament
    model = LSTMnet(input_dim=16, hidden=16, out_dim=2).double().eval()
    m, K = 6, 22
    lengths = torch.tensor([180, 25, 4, 6 + 21 * 3])    # normal, step-0 (identical chunks), shorter than m, step 3
    x = torch.randn(4, 180, 16, dtype=torch.float64)
    x[torch.arange(180)[None, :] >= lengths[:, None]] = 0
    chunks = dynamic_chunk_split(x, lengths, m, K)
    batched = rank_sequences(model, chunks, lengths, m)
    for b in range(4):
        assert batched[b].tolist() == rank_sequence_allpairs(model, chunks[b]).tolist()
    assert batched[1].tolist() == [1] * 22 and batched[2].tolist() == [1] * 22
    assert sorted(batched[0].tolist()) == list(range(1, 23))


@torch.no_grad()
def tournament(net, chunks):
    """All-pairs tournament in float32: chunk i wins the ordered pair (i, j) when argmax(f(c_i) - f(c_j)) == 1
    (a tie goes to class 0: argmax takes the first maximum); ranks = 'min' ranks of the win counts.
    f(c) is one batch-1 pass per chunk: exactly the value each of the 462 pair passes computes for that chunk."""
    f = torch.cat([net(chunks[k:k + 1]) for k in range(len(chunks))])     # (K, 2)
    win = (f[:, None, :] - f[None, :, :]).argmax(-1) == 1                  # d_ij = f(c_i) - f(c_j)
    win.fill_diagonal_(False)
    return win, rankdata(-win.sum(1).numpy(), method='min').astype(int)


def assert_ranks_equal_tournament(net, chunks, ranks, tol=1e-5):
    """Float32-aware equality of a rank sequence with the tournament. The batched scores g = f1 - f0 come from a
    batched forward whose values may differ from batch-1 passes by rounding (<= 5e-7 measured on the released
    rankers): every pair whose scores differ by more than `tol` must be decided as g orders it, and the ranks
    must equal the tournament's exactly unless some pair is within `tol` (then False: a near-tie, counted by
    the caller). Exact ties (identical chunks) give d = 0 -> class 0 both ways -> equal wins -> equal ranks."""
    with torch.no_grad():
        out = net(chunks)
    g = (out[:, 1] - out[:, 0]).double()
    win, want = tournament(net, chunks)
    clear = (g[:, None] - g[None, :]).abs() > tol
    assert torch.equal(win[clear], (g[:, None] > g[None, :])[clear])
    if clear.sum() == len(g) * (len(g) - 1):                 # no near-tie off the diagonal
        assert list(ranks) == want.tolist()
        return True
    return False


def test_batched_ranking_equals_tournament_published_shape():
    """The released rankers' shape in float32: 130-d input, 2-layer LSTM 130, 22 chunks of 62 frames; utterances
    with step 5, step 0 (identical chunks: all ranks 1), shorter than a chunk, and a long one."""
    torch.manual_seed(1)
    net = LSTMnet(out_dim=2).eval()
    m, K = 62, 22
    lengths = torch.tensor([m + 21 * 5, 70, 40, 400])
    x = torch.randn(4, 400, 130)
    x[torch.arange(400)[None, :] >= lengths[:, None]] = 0
    chunks = dynamic_chunk_split(x, lengths, m, K)
    assert chunks.dtype == torch.float32 and chunks.shape == (4, K, m, 130)
    batched = rank_sequences(net, chunks, lengths, m)
    assert all(assert_ranks_equal_tournament(net, chunks[b], batched[b].tolist()) or b in (1, 2) for b in range(4))
    assert batched[1].tolist() == [1] * K and batched[2].tolist() == [1] * K
    assert tournament(net, chunks[1])[1].tolist() == [1] * K
    assert sorted(batched[3].tolist()) == list(range(1, K + 1))
    assert batched[0].tolist() == rank_sequence_allpairs(net, chunks[0]).tolist()     # the script's own 462 passes


# ------------------------------------------------------------------ published checkpoint layout
def test_published_layout_state_dict_loads(tmp_path):
    pub = tmp_path / 'Chunk-Level-Emotion-Retrieval'
    (pub / 'trained_seq2seq_model_v1.6').mkdir(parents=True)
    (pub / 'chunk_emotion_rankers' / 'trained_ranker_model_v1.6').mkdir(parents=True)
    torch.save(published_state_dict(1), pub / 'trained_seq2seq_model_v1.6' / 'LSTM_epoch30_batch128_EmoRankerSeq_Val.pth.tar')
    torch.save(published_state_dict(2), pub / 'chunk_emotion_rankers' / 'trained_ranker_model_v1.6' /
               'LSTM_epoch20_batch128_Val_ranker.pth.tar')
    s2s = C.find(pub, 'seq2seq', 'Val', 30, 128)
    rk = C.find(pub, 'ranker', 'Val', 7, 3)         # other -ep/-batch: the v1.6 name is found
    m = C.load_lstm(s2s, 'seq2seq')
    assert torch.equal(m.fc2.weight, published_state_dict(1)['fc2.weight'])
    assert C.load_lstm(rk, 'ranker').fc2.out_features == 2
    with pytest.raises(CheckpointError, match='not a ranker checkpoint'):
        C.load_lstm(s2s, 'ranker')
    with pytest.raises(CheckpointError, match='no seq2seq checkpoint for Act'):
        C.find(pub, 'seq2seq', 'Act', 30, 128)


# ------------------------------------------------------------------ the six commands, end to end
def run(args, cwd=REPO):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1'}
    p = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, f'{args}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}'
    return p.stdout


@pytest.fixture(scope='module')
def features(tiny_corpus, tmp_path_factory):
    import extract_features
    out = tmp_path_factory.mktemp('m1') / 'lld'
    extract_features.main(['--corpus', str(tiny_corpus), '--out', str(out), '--workers', '1'])
    return out


def test_six_commands_end_to_end(tiny_corpus, features, tmp_path):
    """The published workflow on CPU; the ranker is trained on rising-loudness speech, so its ranking
    sequences put late chunks above early ones."""
    c = ['--corpus', tiny_corpus, '--features', features, '--workers', '0', '--device', 'cpu']
    pairs, rk, rs, s2s, res = (tmp_path / d for d in ('pairs', 'rk', 'rs', 's2s', 'res'))
    out = run(['chunk_emotion_rankers/generate_preference_labels.py', '-emo', 'Act', '--corpus', tiny_corpus,
               '--out', pairs, '--ratio', '1.0'])
    assert {p.name for p in pairs.iterdir()} == {'training_Act.csv', 'validation_Act.csv', 'testing_Act.csv'}
    assert 'Act Train: 12 utterances' in out
    # run from inside the folder, as the seed README does
    run(['training_ranker.py', '-ep', '1', '-batch', '8', '-emo', 'Act', *c, '--pairs', pairs, '--out', rk,
         '--lr', '1e-3', '--pairs-per-epoch', '32'], cwd=REPO / 'chunk_emotion_rankers')
    ck = rk / 'LSTM_epoch1_batch8_Act_ranker.pth.tar'
    assert ck.exists() and (rk / 'LSTM_epoch1_batch8_Act_ranker.loss.png').exists()
    meta = json.loads((rk / 'LSTM_epoch1_batch8_Act_ranker.meta.json').read_text())
    assert meta['features']['preset'] == 'published' and meta['features']['hop'] == 0.016 and meta['chunks']['m'] == 62
    out = run(['chunk_emotion_rankers/testing_ranker.py', '-ep', '1', '-batch', '8', '-emo', 'Act', *c,
               '--pairs', pairs, '--checkpoint', rk, '--max-pairs', '8'])
    assert 'macro-F1' in out
    run(['chunk_emotion_rankers/generate_ranking_seqence.py', '-ep', '1', '-batch', '8', '-emo', 'Act', '-set', 'all',
         *c, '--checkpoint', rk, '--out', rs])
    seqs = json.loads((rs / 'training_Act.json').read_text())
    assert len(seqs) == 12 and all(len(v['ChunkRankSeq']) == 22 for v in seqs.values())
    R = np.array([v['ChunkRankSeq'] for s in ('training', 'validation', 'testing')
                  for v in json.loads((rs / f'{s}_Act.json').read_text()).values() if len(set(v['ChunkRankSeq'])) > 1])
    assert R[:, -6:].mean() + 3 < R[:, :6].mean(), (R[:, :6].mean(), R[:, -6:].mean())   # late chunks rank higher
    run(['training.py', '-ep', '2', '-batch', '6', '-emo', 'Act', *c, '--rankseq', rs, '--out', s2s])
    assert (s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.pth.tar').exists()
    log = pd.read_csv(s2s / 'LSTM_epoch2_batch6_EmoRankerSeq_Act.log.csv')
    assert len(log) == 2 and np.isfinite(log['train_loss']).all()
    out = run(['testing.py', '-ep', '2', '-batch', '6', '-emo', 'Act', *c, '--checkpoint', s2s, '--out', res])
    assert 'CCC' in out and 'Act   Test' in out
    pred = pd.read_csv(res / 'Act_Test_predictions.csv')
    assert len(pred) == 6 and [f'Chunk{k:02d}' for k in (1, 22)] == [pred.columns[3], pred.columns[-1]]
