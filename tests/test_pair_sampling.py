"""Grouped pair sampling of the ranker (--pair-sampling grouped) and the early stop (--patience)."""
import numpy as np

from dataloader import EpochSubsetSampler, GroupedPairSampler


def _pairs(n_utts=120, ratio=0.2, seed=3):
    rng = np.random.default_rng(seed)
    a, b = [], []
    for i in range(n_utts):
        for j in rng.choice(np.delete(np.arange(n_utts), i), int(ratio * n_utts), replace=False):
            a.append(i)
            b.append(j)
    return np.array(a), np.array(b)


def test_group_size_fits_a_batch_and_the_lstm_pass():
    # 5094 pairs over 280 utterances, batch 128: about 45 utterances hold 128 pairs; 768 chunks fit 34 utterances
    assert GroupedPairSampler.group_size(280, 5094, 128, 0) == 45
    assert GroupedPairSampler.group_size(280, 5094, 128, 768 // 22) == 34
    assert GroupedPairSampler.group_size(10, 5, 128, 34) == 10      # fewer pairs than a batch: all utterances
    assert GroupedPairSampler.group_size(1000, 10**6, 1, 34) == 2


def test_grouped_batches_run_far_fewer_utterances_than_uniform():
    a, b = _pairs()
    B, per_epoch = 64, 512
    group = GroupedPairSampler.group_size(120, len(a), B, 0)
    grouped = list(GroupedPairSampler(a, b, 120, per_epoch, group, seed=1))
    uniform = list(EpochSubsetSampler(len(a), per_epoch, seed=1))
    assert len(grouped) == len(uniform) == per_epoch
    assert len(set(grouped)) == per_epoch                  # no pair twice in an epoch
    distinct = lambda idx: np.mean([len(set(a[idx[s:s + B]]) | set(b[idx[s:s + B]])) for s in range(0, per_epoch, B)])
    assert distinct(grouped) < 0.5 * distinct(uniform)      # each utterance serves several pairs of its step
    # every pair of the epoch lies inside one group: consecutive pairs share their group until the next group starts
    runs = sum(len(set(a[grouped[s:s + B]]) | set(b[grouped[s:s + B]])) <= 2 * group for s in range(0, per_epoch, B))
    assert runs == per_epoch // B


def test_grouped_sampling_is_seeded_per_epoch_and_reaches_every_pair():
    a, b = _pairs(60, 0.3)
    s = GroupedPairSampler(a, b, 60, 100, 12, seed=5)
    first = list(s)
    assert first == list(GroupedPairSampler(a, b, 60, 100, 12, seed=5))      # same seed and epoch: same draw
    assert first != list(GroupedPairSampler(a, b, 60, 100, 12, seed=6))
    seen = set()
    for ep in range(200):
        s.set_epoch(ep)
        seen |= set(s)
    assert seen == set(range(len(a)))                      # no pair is left out for good


def test_grouped_sampling_splits_over_ranks_like_one_process():
    a, b = _pairs(60, 0.3)
    one = list(GroupedPairSampler(a, b, 60, 101, 12, seed=2))
    ranks = [list(GroupedPairSampler(a, b, 60, 101, 12, rank=r, world=2, seed=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 51
    assert sorted(set(ranks[0] + ranks[1])) == sorted(set(one))


def test_grouped_sampling_with_sparse_pairs_draws_more_deals():
    a, b = _pairs(200, 0.01)                               # 2 partners each: few pairs fall inside a group
    s = GroupedPairSampler(a, b, 200, 300, 4, seed=0)
    idx = list(s)
    assert len(idx) == 300 and all(0 <= i < len(a) for i in idx)
