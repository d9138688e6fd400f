"""Training in parts (--max-chunks): the same loss and gradients on the same batch, memory bounded by the part.

seq2seq_step's CCC loss couples the whole batch, so its parts are run twice (utils.backward_in_parts): these
tests compare its gradients with one graph over the batch built from the same per-part dropout masks (dropout
0.5 on, so masks that did not match would show), and with one pass when the batch fits. The ranker's CE is a
mean over pairs: the parts' accumulated gradients equal one pass over the batch (dropout off: the masks are drawn
per part). Evaluation runs each utterance once and gives the logits of a forward pass per pair.
"""
import numpy as np
import torch

import ranker
from dataloader import K_CHUNKS, PadCollate, PairDataset
from model import LSTMnet
from seq2seq import chunk_predictions, seq2seq_step
from utils import ccc_loss, make_scaler, micro_slices

CPU = torch.device('cpu')
M, D = 8, 5


def batch(B, seed):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(M, 4 * M, (B,), generator=g)
    x = torch.randn(B, int(lengths.max()), D, generator=g)
    for i, n in enumerate(lengths):
        x[i, n:] = 0
    return x, lengths


def grads(net):
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def test_micro_slices_cover_in_order():
    assert micro_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert micro_slices(3, 0) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_seq2seq_parts_give_the_gradients_of_one_graph_with_the_same_masks():
    B, per = 12, 5
    x, lengths = batch(B, 0)
    g = torch.Generator().manual_seed(1)
    curve, mu = torch.randn(B, K_CHUNKS, generator=g), torch.randn(B, generator=g)
    torch.manual_seed(0)
    net = LSTMnet(D, 6, 1, dropout=0.5)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    torch.manual_seed(7)
    loss = seq2seq_step(net, opt, make_scaler(CPU, 'off'), x, lengths, curve, mu, M, CPU, 'off', per * K_CHUNKS)
    got, rng_after = grads(net), torch.get_rng_state()

    ref = LSTMnet(D, 6, 1, dropout=0.5)
    ref.load_state_dict(state)
    ref.train()
    torch.manual_seed(7)      # the reference: one graph, each part's rows drawing masks in the same order
    pred = torch.cat([chunk_predictions(ref, x[s], lengths[s], M, CPU) for s in micro_slices(B, per)])
    ref_loss = 0.5 * ccc_loss(pred.mean(1), mu) + 0.5 * ccc_loss(pred, curve)
    ref_loss.backward()
    assert abs(loss - float(ref_loss.detach())) < 1e-6
    assert torch.allclose(got, grads(ref), rtol=1e-4, atol=1e-6)
    assert torch.equal(rng_after, torch.get_rng_state())      # the random stream goes on as after one pass
    assert got.abs().sum() > 0


def test_seq2seq_one_part_when_the_batch_fits():
    B = 6
    x, lengths = batch(B, 2)
    curve, mu = torch.randn(B, K_CHUNKS), torch.randn(B)
    out = []
    for max_chunks in (B * K_CHUNKS, 1000 * K_CHUNKS):
        torch.manual_seed(0)
        net = LSTMnet(D, 6, 1, dropout=0.5)
        seq2seq_step(net, torch.optim.SGD(net.parameters(), lr=0.0), make_scaler(CPU, 'off'), x, lengths, curve, mu,
                     M, CPU, 'off', max_chunks)
        out.append(grads(net))
    assert torch.equal(out[0], out[1])


def test_ranker_parts_accumulate_the_gradients_of_the_whole_batch():
    B = 10
    x, lengths = batch(2 * B, 3)
    y = torch.arange(B) % 2
    res = []
    for max_chunks in (2 * K_CHUNKS * 3, 2 * K_CHUNKS * B, 0):   # 4 parts of <= 3 pairs, one part, the old pass
        torch.manual_seed(0)
        net = LSTMnet(D, 6, 2, dropout=0.0)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        ce, conf = ranker.run_epoch(net, [(x, lengths, y)], M, CPU, 'off', opt, make_scaler(CPU, 'off'), show=False,
                                    max_chunks=max_chunks)
        res.append((ce, conf, grads(net)))
    for r in res[1:]:
        assert abs(res[0][0] - r[0]) < 1e-6 and (res[0][1] == r[1]).all() and r[1].sum() == B * K_CHUNKS
        assert torch.allclose(res[0][2], r[2], rtol=1e-4, atol=1e-7)


class Store:
    """A feature store of random utterances (the interface PairDataset reads)."""

    def __init__(self, n):
        self.x = {f'u{i}': batch(1, 10 + i)[0][0].numpy() for i in range(n)}

    def get(self, name):
        return self.x[name]


def test_ranker_evaluation_runs_each_utterance_once_with_the_same_logits():
    store, rng = Store(6), np.random.default_rng(0)
    a, b = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    lab = (a > b).astype(int)
    ds = PairDataset(store, sorted(store.x), a, b, lab, lambda n, v: v)
    loader = torch.utils.data.DataLoader(ds, 16, collate_fn=PadCollate(M, n_feats=2))
    torch.manual_seed(0)
    net = LSTMnet(D, 6, 2, dropout=0.5)
    calls = []
    net.register_forward_hook(lambda mod, inp, out: calls.append(len(inp[0])))
    ce, conf = ranker.run_epoch(net, loader, M, CPU, 'off', show=False)
    assert sum(calls) == len(set(a) | set(b)) * K_CHUNKS       # each utterance once in the whole pass
    calls.clear()
    no_ids = [(x, lengths, y) for x, lengths, y, *_ in loader]    # the per-pair forward passes
    ce2, conf2 = ranker.run_epoch(net, no_ids, M, CPU, 'off', show=False)
    assert sum(calls) == 2 * 40 * K_CHUNKS
    assert abs(ce - ce2) < 1e-6 and (conf == conf2).all() and conf.sum() == 40 * K_CHUNKS


def test_ranker_training_parts_run_shared_utterances_once_with_the_gradients_of_the_batch():
    store, rng = Store(8), np.random.default_rng(1)
    a, b = rng.integers(0, 8, 12), rng.integers(0, 8, 12)
    ds = PairDataset(store, sorted(store.x), a, b, (a > b).astype(int), lambda n, v: v)
    full = next(iter(torch.utils.data.DataLoader(ds, 12, collate_fn=PadCollate(M, n_feats=2))))
    res = []
    for data, max_chunks in (([full], 3 * K_CHUNKS), ([full[:3]], 100 * K_CHUNKS), ([full], 100 * K_CHUNKS)):
        torch.manual_seed(0)
        net = LSTMnet(D, 6, 2, dropout=0.0)
        calls = []
        net.register_forward_hook(lambda mod, inp, out, calls=calls: calls.append(len(inp[0]) // K_CHUNKS))
        ce, conf = ranker.run_epoch(net, data, M, CPU, 'off', torch.optim.SGD(net.parameters(), lr=0.0),
                                    make_scaler(CPU, 'off'), show=False, max_chunks=max_chunks)
        res.append((ce, conf, grads(net), calls))
    assert max(res[0][3]) <= 3 and len(res[0][3]) > 1               # parts of at most 3 utterances
    assert res[1][3] == [24] and res[2][3] == [len(set(a) | set(b))]  # per pair vs each utterance once
    for ce, conf, g, _ in res[:2]:
        assert abs(ce - res[2][0]) < 1e-6 and (conf == res[2][1]).all()
        assert torch.allclose(g, res[2][2], rtol=1e-4, atol=1e-7)


def test_pair_parts_keep_every_pair_once():
    first, second = [0, 1, 5, 2, 5, 7], [1, 2, 6, 3, 0, 8]
    parts = ranker.pair_parts(first, second, 3)
    seen = []
    for rows, (i1, i2, pairs) in parts:
        assert len(rows) <= 3 and len(set(rows.tolist())) == len(rows)
        batch_utt = first + second                      # batch row -> utterance index
        for p, r1, r2 in zip(pairs.tolist(), i1.tolist(), i2.tolist()):
            assert (batch_utt[rows[r1]], batch_utt[rows[r2]]) == (first[p], second[p])
        seen += pairs.tolist()
    assert sorted(seen) == list(range(6))
