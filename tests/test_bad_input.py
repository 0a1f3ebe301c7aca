"""Bad input raises the documented error type with a message naming expected vs got.

Each case would otherwise surface as a NumPy broadcasting error (or silently wrong numbers)
from deep inside the math.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import lstm_params

from lstm_bptt import (
    LSTM,
    Embedding,
    Linear,
    dropout_forward,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    mse_loss,
    softmax_cross_entropy,
)

T, B, D, H, L = 5, 2, 3, 4, 3  # all different, so no shape mix-up is ambiguous


@pytest.fixture
def params(rng):
    return lstm_params(rng, D, H)


# ------------------------------------------------------------------------------- cell


def test_cell_bad_input(rng, params):
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    with pytest.raises(ValueError, match=r"x: expected shape \(B, D\) = \(B, 3\), got \(3,\)"):
        lstm_cell_forward(x[0], h, h, *params)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, D\) .*got \(2, 4\)"):
        lstm_cell_forward(np.zeros((B, D + 1)), h, h, *params)
    with pytest.raises(ValueError, match=r"h_prev: expected shape \(B, H\) = \(2, 4\), got \(4,\)"):
        lstm_cell_forward(x, h[0], h, *params)
    with pytest.raises(ValueError, match=r"c_prev: expected shape \(B, H\) = \(2, 4\), got \(2, 3"):
        lstm_cell_forward(x, h, h[:, :3], *params)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        lstm_cell_forward(x.astype(np.int64), h, h, *params)
    with pytest.raises(TypeError, match="h_prev: expected dtype float64 .* got float32"):
        lstm_cell_forward(x, h.astype(np.float32), h, *params)
    with pytest.raises(ValueError, match="x: contains 1 NaN and 0 inf"):
        x[0, 0] = np.nan
        lstm_cell_forward(x, h, h, *params)
    _, _, cache = lstm_cell_forward(rng.standard_normal((B, D)), h, h, *params)
    with pytest.raises(ValueError, match=r"dh: expected shape \(B, H\) = \(2, 4\), got \(4, 2\)"):
        lstm_cell_backward(np.zeros((H, B)), None, cache)


def test_bad_weights(rng, params):
    w_ih, w_hh, b_ih, b_hh = params
    x, h = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    with pytest.raises(ValueError, match=r"weight_hh: expected shape \(4H, H\), got \(4, 16\)"):
        lstm_forward(x, h, h, w_ih, w_hh.T, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"weight_ih: expected shape \(4H, D\) = \(16, D\).*"
                                         r"got \(3, 16\)"):
        lstm_forward(x, h, h, w_ih.T, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"bias_hh: expected shape \(4H,\) = \(16,\), got \(4,\)"):
        lstm_forward(x, h, h, w_ih, w_hh, b_ih, b_hh[:4])
    with pytest.raises(ValueError, match="bias_ih and bias_hh must both be arrays or both be None"):
        lstm_forward(x, h, h, w_ih, w_hh, b_ih, None)
    with pytest.raises(TypeError, match="weight_ih: expected dtype float64 .* got float32"):
        lstm_forward(x, h, h, w_ih.astype(np.float32), w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match="bias_ih: contains 0 NaN and 1 inf"):
        b_bad = b_ih.copy()
        b_bad[3] = np.inf
        lstm_forward(x, h, h, w_ih, w_hh, b_bad, b_hh)


# ---------------------------------------------------------------------- sequence layer


def test_lstm_forward_bad_input(rng, params):
    x, h = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    with pytest.raises(ValueError, match=r"x: expected a 3-D array \(T, B, D\).*got shape \(2, 3"):
        lstm_forward(x[0], h, h, *params)
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, D\) = \(\?, \?, 3\), "
                                         r"got \(5, 2, 2\)"):
        lstm_forward(x[..., :2], h, h, *params)
    with pytest.raises(ValueError, match=r"h_0: expected shape \(B, H\) = \(2, 4\), got \(1, 2, 4"):
        lstm_forward(x, h[None], h, *params)
    with pytest.raises(ValueError, match=r"c_0: expected shape \(B, H\) = \(2, 4\), got \(3, 4\)"):
        lstm_forward(x, h, np.zeros((3, H)), *params)
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int"):
        lstm_forward(x.astype(int), h, h, *params)
    with pytest.raises(TypeError, match="x: expected dtype float64 .* got float32"):
        lstm_forward(x.astype(np.float32), h, h, *params)
    with pytest.raises(ValueError, match=r"x: contains 0 NaN and 1 inf"):
        x_bad = x.copy()
        x_bad[2, 1, 0] = -np.inf
        lstm_forward(x_bad, h, h, *params)
    with pytest.raises(ValueError, match=r"expected T >= 1 and B >= 1, got shape \(0, 2, 3\)"):
        lstm_forward(x[:0], h, h, *params)


def test_lstm_backward_bad_input(rng, params):
    x, h = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    _, _, cache = lstm_forward(x, h, h, *params)
    with pytest.raises(ValueError, match=r"doutput: expected shape \(T, B, H\) = \(5, 2, 4\), "
                                         r"got \(2, 5, 4\)"):
        lstm_backward(np.zeros((B, T, H)), cache)
    with pytest.raises(TypeError, match="doutput: expected dtype float64 .* got float32"):
        lstm_backward(np.zeros((T, B, H), np.float32), cache)
    with pytest.raises(ValueError, match=r"dc_n: expected shape \(B, H\) = \(2, 4\), got \(4, 2\)"):
        lstm_backward(None, cache, None, np.zeros((H, B)))
    with pytest.raises(ValueError, match="doutput: contains 40 NaN"):
        lstm_backward(np.full((T, B, H), np.nan), cache)


# ------------------------------------------------------------------------- LSTM class


@pytest.fixture
def model():
    return LSTM(D, H, num_layers=L, rng=0)


def test_lstm_class_bad_x(rng, model):
    x = rng.standard_normal((T, B, D))
    with pytest.raises(ValueError, match=r"expected a 3-D array \(T, B, D\) with D = input_size "
                                         r"= 3, got shape \(5, 2\)"):
        model.forward(x[..., 0])
    with pytest.raises(ValueError, match=r"expected shape \(T, B, D\) with D = input_size = 3, "
                                         r"got \(5, 2, 4\)"):
        model.forward(np.zeros((T, B, D + 1)))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int"):
        model.forward(np.zeros((T, B), dtype=np.int64))  # token ids: needs an Embedding first
    # a module converts another float precision to its own, saying so (the one dtype rule)
    with pytest.warns(UserWarning, match="x: float32 input converted to the module's float64"):
        out32 = model.forward(x.astype(np.float32))[0]
    assert out32.dtype == np.float64
    np.testing.assert_array_equal(out32, model.forward(x.astype(np.float32).astype(np.float64))[0])
    with pytest.raises(ValueError, match="x: contains 1 NaN and 0 inf"):
        x[0, 0, 0] = np.nan
        model.forward(x)
    bf = LSTM(D, H, num_layers=L, rng=0, batch_first=True)
    with pytest.raises(ValueError, match=r"expected a 3-D array \(B, T, D\)"):
        bf.forward(np.zeros((T, D)))


def test_lstm_class_bad_states(rng, model):
    x = rng.standard_normal((T, B, D))
    good = np.zeros((L, B, H))
    with pytest.raises(ValueError, match=r"h_0: expected shape \(num_layers, B, H\) = \(3, 2, 4\), "
                                         r"got \(2, 4\)"):
        model.forward(x, (np.zeros((B, H)), good))
    with pytest.raises(ValueError, match=r"c_0: expected shape \(num_layers, B, H\) = \(3, 2, 4\), "
                                         r"got \(1, 2, 4\)"):
        model.forward(x, (good, np.zeros((1, B, H))))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h_0, c_0\) or None"):
        model.forward(x, good)
    with pytest.warns(UserWarning, match="c_0: float32 input converted to the module's float64"):
        model.forward(x, (good, good.astype(np.float32)))


def test_lstm_class_batch_first_mixups(rng, model):
    bf = LSTM(D, H, num_layers=L, rng=0, batch_first=True)
    # batch_first model, states given batch-first too: states stay (num_layers, B, H)
    with pytest.raises(ValueError, match=r"h_0: expected shape \(num_layers, B, H\) = \(3, 2, 4\), "
                                         r"got \(2, 3, 4\).*batch_first=True"):
        bf.forward(rng.standard_normal((B, T, D)), (np.zeros((B, L, H)), np.zeros((L, B, H))))
    # batch-first data fed to a time-major model: the state's B disagrees with x's axis 1
    with pytest.raises(ValueError, match=r"h_0: expected shape \(num_layers, B, H\) = \(3, 5, 4\), "
                                         r"got \(3, 2, 4\).*did you mean batch_first=True\?"):
        model.forward(rng.standard_normal((B, T, D)), (np.zeros((L, B, H)), np.zeros((L, B, H))))
    # a state of a third batch size is no layout mix-up: no batch_first suggestion
    with pytest.raises(ValueError, match=r"the batch size of the input is 2$"):
        model.forward(rng.standard_normal((T, B, D)), (np.zeros((L, 7, H)), np.zeros((L, 7, H))))


def test_lstm_class_bad_backward(rng, model):
    _, _, cache = model.forward(rng.standard_normal((T, B, D)))
    with pytest.raises(ValueError, match=r"doutput: expected shape \(T, B, H\) = \(5, 2, 4\), "
                                         r"got \(2, 5, 4\)"):
        model.backward(np.zeros((B, T, H)), cache)
    # the layer's rule, as for x in forward: the other precision converted with a warning,
    # integers refused
    with pytest.warns(UserWarning, match="doutput: float32 input converted to the module's "
                                         "float64"):
        model.backward(np.zeros((T, B, H), np.float32), cache)
    with pytest.raises(TypeError, match="doutput: expected dtype float32 or float64, got int64"):
        model.backward(np.zeros((T, B, H), np.int64), cache)
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(num_layers, B, H\) = "
                                         r"\(3, 2, 4\), got \(2, 4\)"):
        model.backward(None, cache, (np.zeros((B, H)), np.zeros((L, B, H))))
    bf = LSTM(D, H, num_layers=L, rng=0, batch_first=True)
    _, _, cache = bf.forward(rng.standard_normal((B, T, D)))
    with pytest.raises(ValueError, match=r"doutput: expected shape \(B, T, H\) = \(2, 5, 4\), "
                                         r"got \(5, 2, 4\)"):
        bf.backward(np.zeros((T, B, H)), cache)


@pytest.mark.parametrize(
    "kwargs, exc, msg",
    [
        ({"input_size": 0}, ValueError, "input_size: expected a positive int, got 0"),
        ({"hidden_size": 2.0}, TypeError, "hidden_size: expected a positive int, got 2.0"),
        ({"num_layers": -1}, ValueError, "num_layers: expected a positive int, got -1"),
        ({"dropout": 1.0}, ValueError, r"dropout: expected a probability in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, ValueError, r"dropout: expected a probability in \[0, 1\)"),
        ({"dropout": None}, TypeError, r"dropout: expected a float in \[0, 1\), got None"),
        ({"dropout": "0.1"}, TypeError, r"dropout: expected a float in \[0, 1\), got '0.1'"),
        ({"dropout": float("nan")}, ValueError, r"dropout: expected a probability"),
        ({"forget_bias": float("nan")}, ValueError, "forget_bias: expected a finite float"),
        ({"forget_bias": float("inf")}, ValueError, "forget_bias: expected a finite float"),
        ({"forget_bias": "1"}, TypeError, "forget_bias: expected a float or None, got '1'"),
        ({"forget_bias": 1.0, "bias": False}, ValueError, "forget_bias: given .* bias=False"),
        ({"recurrent_init": "xavier"}, ValueError, "expected 'uniform' or 'orthogonal', got 'x"),
        ({"dtype": np.int32}, TypeError, "dtype: expected float32 or float64, got int32"),
        ({"rng": "seed"}, TypeError, "rng: expected None, an int seed or a numpy.random.Gen"),
    ],
)
def test_lstm_constructor(kwargs, exc, msg):
    # two layers: dropout with one layer would (rightly) warn
    args = {"input_size": D, "hidden_size": H, "num_layers": 2, **kwargs}
    with pytest.raises(exc, match=msg):
        LSTM(**args)


@pytest.mark.parametrize(
    "other, msg",
    [
        ({"num_layers": 2}, r"cache: comes from a layer with num_layers = 2, this layer has "
                            r"num_layers = 1"),
        ({"hidden_size": H + 1}, r"cache: comes from a layer with hidden_size = 5, this layer "
                                 r"has hidden_size = 4"),
        ({"input_size": D + 1}, r"cache: comes from a layer with input_size = 4, this layer has "
                                r"input_size = 3"),
        ({"bias": False}, r"cache: comes from a layer with bias = False, this layer has "
                          r"bias = True"),
        ({"dtype": np.float32}, "cache: comes from a layer with dtype = float32, this layer "
                                "has dtype = float64"),
    ],
    ids=["layers", "hidden", "input", "bias", "dtype"],
)
def test_lstm_backward_refuses_a_cache_from_another_model(rng, other, msg):
    model = LSTM(D, H, rng=0)
    kw = {"input_size": D, "hidden_size": H, "rng": 1, **other}
    other_model = LSTM(**kw)
    dtype = other_model.dtype
    x = rng.standard_normal((T, B, other_model.input_size)).astype(dtype)
    out, _, cache = other_model.forward(x)
    with pytest.raises(ValueError, match=msg):
        model.backward(None, cache)


def test_lstm_backward_refuses_a_cache_of_another_kind(rng):
    model = LSTM(D, H, rng=0)
    _, _, cache = lstm_forward(rng.standard_normal((T, B, D)), None, None,
                               *lstm_params(rng, D, H))
    with pytest.raises(TypeError, match="cache: expected the RecurrentCache .* got LSTMCache"):
        model.backward(None, cache)


# ---------------------------------------------------------------------- other layers


def test_linear_bad_input(rng):
    lin = Linear(D, 6, rng=0)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\) \(last axis = "
                                         r"in_features\), got \(5, 2, 4\)"):
        lin.forward(np.zeros((T, B, D + 1)))
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int"):
        lin.forward(np.zeros((B, D), int))
    with pytest.warns(UserWarning, match="x: float32 input converted to the module's float64"):
        assert lin.forward(np.zeros((B, D), np.float32))[0].dtype == np.float64
    _, cache = lin.forward(rng.standard_normal((T, B, D)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(\.\.\., V\) = \(5, 2, 6\), "
                                         r"got \(5, 2, 5\)"):
        lin.backward(np.zeros((T, B, 5)), cache)
    with pytest.raises(ValueError, match="in_features: expected a positive int, got 0"):
        Linear(0, 3)


def test_embedding_bad_input():
    emb = Embedding(6, D, rng=0)
    with pytest.raises(ValueError,
                       match=r"ids: expected values < 6 \(the vocabulary size\), got 6"):
        emb.forward(np.array([[1, 6], [0, 2]]))
    with pytest.raises(ValueError, match="ids: expected values >= 0, got -1"):
        emb.forward(np.array([-1, 2]))
    with pytest.raises(TypeError, match="ids: expected an integer array, got dtype float64"):
        emb.forward(np.array([1.0, 2.0]))
    _, cache = emb.forward(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"dout: expected shape ids.shape \+ \(D,\) = "
                                         r"\(1, 2, 3\), got \(1, 2, 4\)"):
        emb.backward(np.zeros((1, 2, 4)), cache)


def test_dropout_bad_input():
    with pytest.raises(TypeError, match="x: expected dtype float32 or float64, got int64"):
        dropout_forward(np.ones(3, np.int64), 0.5, rng=0)
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\), got 1.0"):
        dropout_forward(np.ones(3), 1.0, rng=0)


# ----------------------------------------------------------------------------- losses


def test_cross_entropy_bad_input(rng):
    logits = rng.standard_normal((T, B, 5))
    targets = rng.integers(0, 5, (T, B))
    with pytest.raises(ValueError, match=r"targets: expected values < 5 \(the vocabulary size\), "
                                         r"got 5"):
        softmax_cross_entropy(logits, np.full((T, B), 5))
    with pytest.raises(ValueError, match="targets: expected values >= 0, got -2"):
        softmax_cross_entropy(logits, np.full((T, B), -2))
    with pytest.raises(TypeError, match="targets: expected an integer array, got dtype float64"):
        softmax_cross_entropy(logits, targets.astype(float))
    with pytest.raises(ValueError, match=r"targets: expected shape \(5, 2\) .*got \(2, 5\)"):
        softmax_cross_entropy(logits, targets.T)
    with pytest.raises(TypeError, match="logits: expected dtype float32 or float64, got int"):
        softmax_cross_entropy(logits.astype(int), targets)
    with pytest.raises(ValueError, match="logits: contains 1 NaN"):
        bad = logits.copy()
        bad[0, 0, 0] = np.nan
        softmax_cross_entropy(bad, targets)
    with pytest.raises(ValueError, match=r"mask: expected shape \(5, 2\) .*got \(2, 5\)"):
        softmax_cross_entropy(logits, targets, np.ones((B, T), bool))
    with pytest.raises(ValueError, match="every position is masked out"):
        softmax_cross_entropy(logits, targets, np.zeros((T, B), bool))
    with pytest.raises(ValueError, match="mask: expected only 0/1 .* got 0.5"):
        softmax_cross_entropy(logits, targets, np.full((T, B), 0.5))
    with pytest.raises(ValueError, match=r"logits: expected a non-empty .* got shape \(0, 5\)"):
        softmax_cross_entropy(np.zeros((0, 5)), np.zeros(0, int))


def test_mse_bad_input():
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 3\) \(that of pred\), "
                                         r"got \(3, 2\)"):
        mse_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="target: expected dtype float64 .* got float32"):
        mse_loss(np.zeros((2, 3)), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3\) \(that of pred, or "
                                         r"pred.shape\[:-1\] = \(2,\)\), got \(3,\)"):
        mse_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(3, bool))
    with pytest.raises(ValueError, match="every position is masked out"):
        mse_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"pred: expected a non-empty array, got shape \(0, 3\)"):
        mse_loss(np.zeros((0, 3)), np.zeros((0, 3)))
