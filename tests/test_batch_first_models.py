"""Models and MinibatchSource with batch_first=True give exactly the time-major results on the
transposed data, and a batch in the wrong layout is named as such."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt.models import CharLM, SequenceClassifier, SequenceRegressor
from lstm_bptt.train import MinibatchSource

T, B, D, H = 5, 3, 4, 6


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("many_to_one", [False, True])
def test_regressor_batch_first_equals_time_major(many_to_one):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(T, B, D))
    y = rng.normal(size=(B, 2)) if many_to_one else rng.normal(size=(T, B, 2))
    lengths = np.array([5, 2, 4])
    tm = SequenceRegressor(D, H, 2, many_to_one=many_to_one, rng=1)
    bf = SequenceRegressor(D, H, 2, many_to_one=many_to_one, rng=1, batch_first=True)
    pred_tm = tm.predict(x, lengths)
    pred_bf = bf.predict(x.transpose(1, 0, 2), lengths)
    np.testing.assert_array_equal(pred_bf, pred_tm if many_to_one else pred_tm.transpose(1, 0, 2))
    y_bf = y if many_to_one else y.transpose(1, 0, 2)
    loss_tm, g_tm, _ = tm.loss(x, y, lengths=lengths, train=False)
    loss_bf, g_bf, _ = bf.loss(x.transpose(1, 0, 2), y_bf, lengths=lengths, train=False)
    assert loss_bf == loss_tm
    _same(g_bf, g_tm)


def test_regressor_batch_first_mask_is_batch_first():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(T, B, D)), rng.normal(size=(T, B, 1))
    mask = rng.random((T, B)) < 0.6
    mask[0] = True
    tm = SequenceRegressor(D, H, rng=2)
    bf = SequenceRegressor(D, H, rng=2, batch_first=True)
    a = tm.loss(x, y, mask=mask, train=False)
    b = bf.loss(x.transpose(1, 0, 2), y.transpose(1, 0, 2), mask=mask.T, train=False)
    assert a[0] == b[0]
    _same(a[1], b[1])


def test_classifier_batch_first_equals_time_major_and_trains_from_a_batch_first_source():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(T, 8, D))
    y = (x[0, :, 0] > 0).astype(int)
    tm = SequenceClassifier(D, H, 2, rng=3)
    bf = SequenceClassifier(D, H, 2, rng=3, batch_first=True)
    np.testing.assert_array_equal(bf.predict(x.transpose(1, 0, 2)), tm.predict(x))
    src_tm = MinibatchSource(x, y, 3, seed=4)
    src_bf = MinibatchSource(x.transpose(1, 0, 2), y, 3, seed=4, batch_first=True)
    assert src_bf.num_batches == src_tm.num_batches == 3
    for step in range(4):
        a, b = src_tm.get(step), src_bf.get(step)
        np.testing.assert_array_equal(b.inputs, a.inputs.transpose(1, 0, 2))
        np.testing.assert_array_equal(b.targets, a.targets)
        la, ga, _ = tm.loss(a.inputs, a.targets, train=False)
        lb, gb, _ = bf.loss(b.inputs, b.targets, train=False)
        assert la == lb
        _same(ga, gb)


def test_charlm_batch_first_equals_time_major_and_samples():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 7, size=(T + 1, B))
    tm = CharLM(7, H, dtype=np.float64, rng=6)
    bf = CharLM(7, H, dtype=np.float64, rng=6, batch_first=True)
    mask = np.ones((T, B), bool)
    mask[:2] = False
    a = tm.loss(ids[:-1], ids[1:], mask=mask, train=False, state_at=3)
    b = bf.loss(ids[:-1].T, ids[1:].T, mask=mask.T, train=False, state_at=3)
    assert a[0] == b[0]
    _same(a[1], b[1])
    for s_a, s_b in zip(a[2], b[2], strict=True):
        np.testing.assert_array_equal(s_a, s_b)
    np.testing.assert_array_equal(bf.forward(ids.T)[0], tm.forward(ids)[0].transpose(1, 0, 2))
    np.testing.assert_array_equal(bf.sample(10, [1, 2], rng=0), tm.sample(10, [1, 2], rng=0))
    assert bf.config()["batch_first"] is True


def test_batch_first_data_in_a_time_major_model_is_named():
    rng = np.random.default_rng(7)
    x_bf = rng.normal(size=(12, T, D))  # (N, T, D): 12 sequences, batch-first
    y = rng.integers(0, 2, size=12)
    model = SequenceClassifier(D, H, 2, rng=0)
    with pytest.raises(ValueError, match=r"targets: expected 5 rows, the batch size B of inputs "
                                         r"\(T, B, D\) = \(12, 5, 4\) \(axis 1\), got shape "
                                         r"\(12,\); the inputs look batch-first \(B, T, D\): "
                                         r"pass batch_first=True"):
        model.loss(x_bf, y)
    with pytest.raises(ValueError, match="lengths: expected 5 rows.*look batch-first"):
        model.predict(x_bf, lengths=np.full(12, T))
    reg = SequenceRegressor(D, H, many_to_one=True, rng=0, batch_first=True)
    with pytest.raises(ValueError, match=r"look time-major \(T, B, D\): pass batch_first=False"):
        reg.loss(rng.normal(size=(T, 12, D)), rng.normal(size=(12, 1)))
