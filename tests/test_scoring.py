"""The scoring functions every reported number goes through: MSCR's per-attribute CCC on de-normalised
predictions (mscr.scores), its multi-task training loss (mscr.mtl_loss) and the rankers' macro-F1
(ranker.macro_f1), each checked against an independent formula on small inputs where a plausible bug
(scores on z-space predictions, a loss over two attributes, recall instead of F1) gives another number."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, recall_score

import mscr
from ranker import macro_f1

NORM = {'Act': (4.2, 1.3), 'Dom': (3.9, 0.8), 'Val': (2.7, 1.7)}   # label mean and std per attribute


def lin_ccc(x, y):
    """Lin's CCC written as 2 r sx sy / (sx^2 + sy^2 + (mx - my)^2), population moments."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    r = np.corrcoef(x, y)[0, 1]
    return 2 * r * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _z_batch(n=40, seed=3):
    """z-space labels and predictions with a different fit (and a bias) per attribute."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 3))
    pred = np.stack([0.9 * y[:, 0] + 0.2 * rng.standard_normal(n),
                     0.4 * y[:, 1] + 0.7 * rng.standard_normal(n) + 0.3,
                     -0.2 * y[:, 2] + rng.standard_normal(n) * 0.5 - 0.4], axis=1)
    return pred, y


def test_scores_are_ccc_of_denormalised_predictions_against_raw_labels():
    pred, y = _z_batch()
    s = mscr.scores(pred, y, NORM)
    for k, e in enumerate(mscr.EMOS):
        mu, sd = NORM[e]
        raw_label = y[:, k] * sd + mu                      # what the corpus's consensus label is
        assert s[e] == pytest.approx(lin_ccc(pred[:, k] * sd + mu, raw_label), abs=1e-12)
        # a prediction left in z-space lies ~mu away from the labels: CCC collapses, so the check above bites
        assert abs(lin_ccc(pred[:, k], raw_label) - s[e]) > 0.05
    assert s['loss'] == pytest.approx(np.mean([1 - s[e] for e in mscr.EMOS]), abs=1e-12)
    assert len({round(s[e], 6) for e in mscr.EMOS}) == 3


def test_mtl_loss_is_the_mean_over_all_three_attributes():
    pred, y = _z_batch(seed=5)
    P = torch.tensor(pred, dtype=torch.float32, requires_grad=True)
    loss = mscr.mtl_loss(P, torch.tensor(y, dtype=torch.float32))
    want = np.mean([1 - lin_ccc(pred[:, k], y[:, k]) for k in range(3)])
    assert loss.item() == pytest.approx(want, abs=1e-5)
    for k in range(3):   # leaving out any one attribute gives another value
        two = np.mean([1 - lin_ccc(pred[:, j], y[:, j]) for j in range(3) if j != k])
        assert abs(two - want) > 1e-3
    loss.backward()
    assert all(P.grad[:, k].abs().sum() > 0 for k in range(3))   # every attribute is trained


@pytest.mark.parametrize('conf', [[[9, 1], [5, 5]], [[30, 2], [11, 7]], [[3, 6], [1, 12]]])
def test_macro_f1_matches_sklearn_and_is_not_recall(conf):
    conf = np.array(conf)
    true = np.repeat([0, 0, 1, 1], conf.ravel())
    pred = np.repeat([0, 1, 0, 1], conf.ravel())
    f1, acc = macro_f1(conf)
    assert f1 == pytest.approx(f1_score(true, pred, average='macro'), abs=1e-12)
    assert acc == pytest.approx(np.mean(true == pred), abs=1e-12)
    assert abs(f1 - recall_score(true, pred, average='macro')) > 0.005


def test_macro_f1_of_a_class_never_predicted_is_zero():
    f1, acc = macro_f1([[10, 0], [4, 0]])
    assert f1 == pytest.approx(f1_score([0] * 10 + [1] * 4, [0] * 14, average='macro', zero_division=0))
    assert acc == pytest.approx(10 / 14)
