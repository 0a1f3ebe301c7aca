"""softmax_cross_entropy and mse_loss: hand-computed values, central differences, stability."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lstm_bptt import gradcheck, mse_loss, softmax_cross_entropy

# ------------------------------------------------------------------ softmax cross-entropy


def test_cross_entropy_by_hand():
    # uniform logits over V = 4: loss = ln 4 nats at every position
    loss, d = softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 3), int))
    assert loss == pytest.approx(math.log(4), rel=1e-15)
    # gradient (softmax - onehot) / N with N = 6
    expected = np.full((2, 3, 4), 0.25 / 6)
    expected[..., 0] -= 1 / 6
    np.testing.assert_allclose(d, expected, rtol=1e-14)

    # one position, logits (0, ln 3): p = (1/4, 3/4), target 1 -> -ln(3/4)
    loss, d = softmax_cross_entropy(np.array([[0.0, math.log(3)]]), np.array([1]))
    assert loss == pytest.approx(-math.log(0.75), rel=1e-14)
    np.testing.assert_allclose(d, [[0.25, -0.25]], rtol=1e-14)


def test_cross_entropy_mask_by_hand():
    logits = np.array([[0.0, math.log(3)], [5.0, -7.0], [0.0, 0.0]])
    targets = np.array([1, 1, 0])
    mask = np.array([True, False, True])
    loss, d = softmax_cross_entropy(logits, targets, mask)
    # mean over the 2 unmasked rows: (-ln 0.75 + ln 2) / 2
    assert loss == pytest.approx((-math.log(0.75) + math.log(2)) / 2, rel=1e-14)
    np.testing.assert_array_equal(d[1], 0.0)
    np.testing.assert_allclose(d[0], [0.125, -0.125], rtol=1e-14)
    np.testing.assert_allclose(d[2], [-0.25, 0.25], rtol=1e-14)
    # a 0/1 integer mask means the same
    loss01, d01 = softmax_cross_entropy(logits, targets, mask.astype(int))
    assert loss01 == loss
    np.testing.assert_array_equal(d01, d)


@pytest.mark.parametrize("shape", [(3, 2, 5), (1, 1, 5), (4, 5)], ids=str)
@pytest.mark.parametrize("masked", [False, True])
def test_gradcheck_cross_entropy(rng, shape, masked):
    logits = 2 * rng.standard_normal(shape)
    targets = rng.integers(0, shape[-1], shape[:-1])
    mask = None
    if masked:
        mask = rng.random(shape[:-1]) < 0.6
        mask.ravel()[0] = True
    loss_value, dlogits = softmax_cross_entropy(logits, targets, mask)

    def loss():
        return softmax_cross_entropy(logits, targets, mask)[0]

    assert gradcheck(loss, {"logits": logits}, {"logits": dlogits}, tol=1e-7).passed
    # the loss is the mean of -log p over unmasked positions, computed independently here
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
    m = np.ones(shape[:-1], bool) if mask is None else mask
    assert loss_value == pytest.approx(nll[m].mean(), rel=1e-12)


@pytest.mark.parametrize("mag", [1e3, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_large_logits(mag, dtype):
    logits = np.array([[mag, 0.0, -mag], [0.0, mag, mag]], dtype)
    targets = np.array([0, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, d = softmax_cross_entropy(logits, targets)
    assert d.dtype == dtype
    # row 0: p(target) = 1 -> 0; row 1: two tied maxima -> ln 2; mean ln 2 / 2
    assert loss == pytest.approx(math.log(2) / 2, rel=1e-6)
    np.testing.assert_allclose(d, [[0, 0, 0], [0, 0.25, -0.25]], atol=1e-7)  # (p - onehot) / 2


def test_cross_entropy_float32_keeps_dtype(rng):
    logits = rng.standard_normal((3, 2, 4)).astype(np.float32)
    loss, d = softmax_cross_entropy(logits, rng.integers(0, 4, (3, 2)))
    assert isinstance(loss, float) and d.dtype == np.float32
    loss64, d64 = softmax_cross_entropy(logits.astype(np.float64), rng.integers(0, 4, (3, 2)))
    assert np.isfinite(loss64) and d64.dtype == np.float64


# ------------------------------------------------------------------------------------ MSE


def test_mse_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 5.0]])
    target = np.array([[1.0, 0.0], [0.0, 5.0]])
    loss, d = mse_loss(pred, target)
    assert loss == pytest.approx((0 + 4 + 9 + 0) / 4)
    np.testing.assert_allclose(d, [[0, 1.0], [1.5, 0]])  # 2 (p - t) / 4
    # entry mask: only (0, 1) and (1, 0) count -> (4 + 9) / 2
    loss, d = mse_loss(pred, target, np.array([[False, True], [True, False]]))
    assert loss == pytest.approx(6.5)
    np.testing.assert_allclose(d, [[0, 2.0], [3.0, 0]])
    # row mask of shape pred.shape[:-1]: only row 1 counts -> (9 + 0) / 2
    loss, d = mse_loss(pred, target, np.array([False, True]))
    assert loss == pytest.approx(4.5)
    np.testing.assert_allclose(d, [[0, 0], [3.0, 0]])


@pytest.mark.parametrize("shape", [(3, 2, 4), (1, 1, 1), (5, 3)], ids=str)
@pytest.mark.parametrize("mask_kind", [None, "entries", "rows"])
def test_gradcheck_mse(rng, shape, mask_kind):
    pred = rng.standard_normal(shape)
    target = rng.standard_normal(shape)
    mask = None
    if mask_kind is not None:
        mshape = shape if mask_kind == "entries" else shape[:-1]
        mask = rng.random(mshape) < 0.6
        mask.ravel()[0] = True
    _, dpred = mse_loss(pred, target, mask)

    def loss():
        return mse_loss(pred, target, mask)[0]

    report = gradcheck(loss, {"pred": pred}, {"pred": dpred}, tol=1e-7)
    assert report.passed


@pytest.mark.parametrize("mag", [1e3, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_large_values_and_dtype(mag, dtype):
    pred = np.array([mag, -mag], dtype)
    target = np.zeros(2, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, d = mse_loss(pred, target)
        loss_m, d_m = mse_loss(pred, target, np.array([True, False]))
    assert d.dtype == dtype and d_m.dtype == dtype
    assert loss == pytest.approx(mag * mag, rel=1e-6)
    assert loss_m == pytest.approx(mag * mag, rel=1e-6)
    np.testing.assert_allclose(d, [mag, -mag], rtol=1e-6)
    np.testing.assert_allclose(d_m, [2 * mag, 0], rtol=1e-6)


def test_losses_do_not_mutate_inputs(rng):
    logits = rng.standard_normal((3, 4))
    targets = rng.integers(0, 4, 3)
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    snaps = [a.copy() for a in (logits, targets, pred, target)]
    softmax_cross_entropy(logits, targets)
    mse_loss(pred, target, np.array([True, False, True]))
    for a, b in zip((logits, targets, pred, target), snaps, strict=True):
        np.testing.assert_array_equal(a, b)
