"""Linear, Embedding, dropout and LSTM constructor options: hand-computed values, central
differences, dtypes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import randomize_params

from lstm_bptt import LSTM, Embedding, Linear, dropout_backward, dropout_forward, gradcheck

# ---------------------------------------------------------------------------------- Linear


def test_linear_by_hand():
    lin = Linear(2, 3, rng=0)
    lin.params["weight"][...] = [[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]]
    lin.params["bias"][...] = [0.5, 0.0, -1.0]
    y, cache = lin.forward(np.array([[1.0, 1.0], [2.0, -2.0]]))
    np.testing.assert_array_equal(y, [[3.5, -1.0, 2.5], [-1.5, 2.0, 4.0]])
    dx, grads = lin.backward(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), cache)
    # dx = dy W; dW = dy^T x; db = sum dy
    np.testing.assert_array_equal(dx, [[1.0, 2.0], [3.0, -0.5]])
    np.testing.assert_array_equal(grads["weight"], [[1.0, 1.0], [2.0, -2.0], [2.0, -2.0]])
    np.testing.assert_array_equal(grads["bias"], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("shape", [(3, 2, 4), (1, 1, 4), (2, 4), (1, 4)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_linear(rng, shape, bias):
    D, V = shape[-1], 3
    lin = Linear(D, V, bias=bias, rng=rng)
    randomize_params(lin, rng)
    x = rng.standard_normal(shape)
    R = rng.standard_normal(shape[:-1] + (V,))

    def loss():
        return float(np.sum(lin.forward(x)[0] * R))

    dx, grads = lin.backward(R, lin.forward(x)[1])
    assert list(grads) == list(lin.params)
    report = gradcheck(loss, {"x": x, **lin.params}, {"x": dx, **grads}, tol=1e-7)
    assert report.passed


def test_linear_init_and_float32(rng):
    lin = Linear(16, 50, rng=1, dtype=np.float32)
    k = 1 / math.sqrt(16)
    for p in lin.params.values():
        assert p.dtype == np.float32
        assert np.all(np.abs(p) <= k)
    assert lin.params["weight"].shape == (50, 16) and lin.params["bias"].shape == (50,)
    assert np.abs(lin.params["weight"]).max() > 0.9 * k
    x = rng.standard_normal((3, 2, 16)).astype(np.float32)
    y, cache = lin.forward(x)
    dx, grads = lin.backward(np.ones_like(y), cache)
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    a, b = Linear(4, 3, rng=9), Linear(4, 3, rng=9)
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])


def test_linear_forward_is_pure(rng):
    lin = Linear(4, 3, rng=rng)
    x1, x2 = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    dy = rng.standard_normal((2, 3))
    ref = lin.backward(dy, lin.forward(x1)[1])
    c1 = lin.forward(x1)[1]
    lin.forward(x2)
    got = lin.backward(dy, c1)
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_array_equal(ref[1]["weight"], got[1]["weight"])


# ------------------------------------------------------------------------------- Embedding


def test_embedding_forward_backward_by_hand():
    emb = Embedding(4, 2, rng=0)
    emb.params["weight"][...] = [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]
    ids = np.array([[1, 3], [1, 1]])
    out, cache = emb.forward(ids)
    np.testing.assert_array_equal(out, [[[2, 3], [6, 7]], [[2, 3], [2, 3]]])
    dout = np.arange(8.0).reshape(2, 2, 2)
    grads = emb.backward(dout, cache)
    # id 1 appears three times: rows (0, 1) + (4, 5) + (6, 7); id 3 once; ids 0 and 2 never
    np.testing.assert_array_equal(grads["weight"], [[0, 0], [10, 13], [0, 0], [2, 3]])


@pytest.mark.parametrize("ids_shape", [(4, 3), (1, 1), (5,)], ids=str)
def test_gradcheck_embedding_with_repeated_ids(rng, ids_shape):
    V, D = 5, 3
    emb = Embedding(V, D, rng=rng)
    ids = rng.integers(0, 3, ids_shape)  # only 3 of 5 ids: repeats and unused rows
    if ids.size > 1:
        ids.ravel()[:2] = 2  # at least one id repeated
    R = rng.standard_normal(ids_shape + (D,))

    def loss():
        return float(np.sum(emb.forward(ids)[0] * R))

    grads = emb.backward(R, emb.forward(ids)[1])
    report = gradcheck(loss, emb.params, grads, tol=1e-7)
    assert report.passed
    unused = np.setdiff1d(np.arange(V), ids)
    assert not grads["weight"][unused].any()


def test_embedding_float32_and_seed():
    emb = Embedding(6, 3, dtype=np.float32, rng=2)
    out, cache = emb.forward(np.array([[0, 5]]))
    assert out.dtype == np.float32
    assert emb.backward(np.ones((1, 2, 3), np.float32), cache)["weight"].dtype == np.float32
    np.testing.assert_array_equal(Embedding(6, 3, rng=2).params["weight"],
                                  Embedding(6, 3, rng=2).params["weight"])


# --------------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_values_and_rate(dtype):
    p = 0.3
    x = np.ones((200, 50), dtype)
    y, mask = dropout_forward(x, p, rng=0, train=True)
    assert y.dtype == mask.dtype == dtype
    kept = mask != 0
    np.testing.assert_allclose(mask[kept], 1 / (1 - p), rtol=1e-7)
    np.testing.assert_array_equal(y, x * mask)
    # 10 000 Bernoulli(0.7) draws: sd of the kept fraction is 0.0046
    assert kept.mean() == pytest.approx(0.7, abs=0.02)
    # inverted dropout keeps the mean: E[y] = x
    assert y.mean() == pytest.approx(1.0, abs=0.03)


def test_dropout_eval_and_p0_are_identity(rng):
    x = rng.standard_normal((3, 4))
    y, mask = dropout_forward(x, 0.5, rng, train=False)
    assert y is x and mask is None
    y, mask = dropout_forward(x, 0.0, rng, train=True)
    assert y is x and mask is None
    dy = rng.standard_normal((3, 4))
    assert dropout_backward(dy, None) is dy


def test_dropout_seeded_and_backward(rng):
    x = rng.standard_normal((4, 5))
    y1, m1 = dropout_forward(x, 0.5, rng=3)
    y2, m2 = dropout_forward(x, 0.5, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    R = rng.standard_normal((4, 5))

    def loss():
        return float(np.sum(x * m1 * R))  # the same mask every call

    dx = dropout_backward(R, m1)
    np.testing.assert_array_equal(dx, R * m1)
    assert gradcheck(loss, {"x": x}, {"x": dx}).passed


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_bad_p(p):
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\)"):
        dropout_forward(np.ones(3), p, rng=0)


# ------------------------------------------------------------------ LSTM dropout warning


def test_lstm_dropout_with_one_layer_warns_like_pytorch():
    """nn.LSTM applies dropout between layers only, so with one layer it does nothing."""
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        model = LSTM(3, 4, num_layers=1, dropout=0.2, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 1, 3))
    # and it really is a no-op: train and eval outputs agree
    np.testing.assert_array_equal(model.forward(x, train=True)[0], model.forward(x)[0])


@pytest.mark.parametrize("num_layers, dropout", [(2, 0.2), (1, 0.0)])
def test_lstm_dropout_that_acts_does_not_warn(num_layers, dropout):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = LSTM(3, 4, num_layers=num_layers, dropout=dropout, rng=0)
    assert model.dropout == dropout


def test_lstm_forget_bias_sets_the_effective_forget_bias():
    """b_ih[H:2H] = forget_bias and b_hh[H:2H] = 0 in every layer (PyTorch gate order i, f, g, o),
    so b_ih + b_hh = forget_bias exactly."""
    H = 4
    model = LSTM(3, H, num_layers=2, forget_bias=2.5, rng=0)
    for layer in range(2):
        np.testing.assert_array_equal(model.params[f"bias_ih_l{layer}"][H : 2 * H], 2.5)
        np.testing.assert_array_equal(model.params[f"bias_hh_l{layer}"][H : 2 * H], 0.0)
