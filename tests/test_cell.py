"""lstm_cell_forward / lstm_cell_backward: one timestep.

References for expected values: a scalar re-implementation of equations (1)-(6) with ``math``
(PyTorch nn.LSTM documentation), hand-computed saturated values, and central differences.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import lstm_params

from lstm_bptt import gradcheck, lstm_cell_backward, lstm_cell_forward
from lstm_bptt.activations import sigmoid, tanh

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def reference_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """Equations (1)-(6) entry by entry with Python floats (no NumPy vector math)."""
    B, D = x.shape
    H = h.shape[1]
    h_new = np.zeros((B, H))
    c_new = np.zeros((B, H))
    for b in range(B):
        for j in range(H):
            pre = []
            for gate in range(4):  # i, f, g, o
                r = gate * H + j
                a = sum(w_ih[r, d] * x[b, d] for d in range(D))
                a += sum(w_hh[r, k] * h[b, k] for k in range(H))
                if b_ih is not None:
                    a += b_ih[r] + b_hh[r]
                pre.append(a)
            i, f, g, o = _sig(pre[0]), _sig(pre[1]), math.tanh(pre[2]), _sig(pre[3])
            c_new[b, j] = f * c[b, j] + i * g
            h_new[b, j] = o * math.tanh(c_new[b, j])
    return h_new, c_new


@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_scalar_reference(rng, bias):
    B, D, H = 2, 3, 4
    x = rng.standard_normal((B, D))
    h = rng.standard_normal((B, H))
    c = rng.standard_normal((B, H))
    params = lstm_params(rng, D, H, bias=bias)
    h1, c1, _ = lstm_cell_forward(x, h, c, *params)
    h_ref, c_ref = reference_cell(x, h, c, *params)
    np.testing.assert_allclose(h1, h_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(c1, c_ref, rtol=1e-13, atol=1e-15)


def test_gate_order_is_i_f_g_o():
    # D = H = 1, no recurrence; only the gate block k has weight 1, so its pre-activation is x.
    x = np.array([[2.0]])
    h = np.zeros((1, 1))
    c = np.array([[0.5]])
    w_hh = np.zeros((4, 1))
    s2 = 1 / (1 + math.exp(-2.0))
    s0 = 0.5
    expected_c = {
        0: s0 * 0.5 + s2 * 0.0,  # input gate i = s(2), g = tanh(0) = 0
        1: s2 * 0.5 + s0 * 0.0,  # forget gate
        2: s0 * 0.5 + s0 * math.tanh(2.0),  # candidate g
        3: s0 * 0.5 + s0 * 0.0,  # output gate (c unaffected)
    }
    for k, c_exp in expected_c.items():
        w_ih = np.zeros((4, 1))
        w_ih[k] = 1.0
        h1, c1, _ = lstm_cell_forward(x, h, c, w_ih, w_hh)
        assert c1[0, 0] == pytest.approx(c_exp, rel=1e-15)
        o = s2 if k == 3 else s0
        assert h1[0, 0] == pytest.approx(o * math.tanh(c_exp), rel=1e-15)


@pytest.mark.parametrize(
    "B, D, H", [(1, 3, 2), (2, 2, 3), (3, 4, 5), (1, 1, 1)], ids=lambda v: str(v)
)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_cell(rng, B, D, H, bias):
    x = rng.standard_normal((B, D))
    h_prev = rng.standard_normal((B, H))
    c_prev = rng.standard_normal((B, H))
    params = lstm_params(rng, D, H, bias=bias)
    Rh = rng.standard_normal((B, H))
    Rc = rng.standard_normal((B, H))
    tensors = {"x": x, "h_prev": h_prev, "c_prev": c_prev}
    tensors.update({k: v for k, v in zip(PARAM_NAMES, params, strict=True) if v is not None})

    def loss():
        h, c, _ = lstm_cell_forward(x, h_prev, c_prev, *params)
        return np.sum(h * Rh) + np.sum(c * Rc)

    _, _, cache = lstm_cell_forward(x, h_prev, c_prev, *params)
    dx, dh_prev, dc_prev, grads = lstm_cell_backward(Rh, Rc, cache)
    assert set(grads) == ({*PARAM_NAMES} if bias else {"weight_ih", "weight_hh"})
    analytic = {"x": dx, "h_prev": dh_prev, "c_prev": dc_prev, **grads}
    report = gradcheck(loss, tensors, analytic, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


def test_none_upstream_gradients_mean_zero(rng):
    B, D, H = 2, 3, 4
    params = lstm_params(rng, D, H)
    args = rng.standard_normal((B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, _, cache = lstm_cell_forward(*args, *params)
    dh = rng.standard_normal((B, H))
    zeros = np.zeros((B, H))
    out_none = lstm_cell_backward(dh, None, cache)
    out_zero = lstm_cell_backward(dh, zeros, cache)
    for a, b in zip(out_none[:3], out_zero[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    dx, dh_prev, dc_prev, grads = lstm_cell_backward(None, None, cache)
    assert not dx.any() and not dh_prev.any() and not dc_prev.any()
    assert all(not g.any() for g in grads.values())


def test_backward_does_not_mutate_inputs(rng):
    B, D, H = 2, 3, 4
    params = lstm_params(rng, D, H)
    x, h, c = rng.standard_normal((B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, _, cache = lstm_cell_forward(x, h, c, *params)
    before = [np.copy(f) for f in cache[:-1]]
    dh, dc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dh0, dc0 = dh.copy(), dc.copy()
    lstm_cell_backward(dh, dc, cache)
    np.testing.assert_array_equal(dh, dh0)
    np.testing.assert_array_equal(dc, dc0)
    for a, b in zip(before, cache[:-1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_forward_is_pure(rng):
    """Two forwards, then the backward of the first cache gives the first forward's grads."""
    B, D, H = 2, 3, 4
    p1 = lstm_params(rng, D, H)
    p2 = lstm_params(rng, D, H)
    a1 = [rng.standard_normal(s) for s in ((B, D), (B, H), (B, H))]
    a2 = [rng.standard_normal(s) for s in ((B, D), (B, H), (B, H))]
    dh, dc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, _, cache1 = lstm_cell_forward(*a1, *p1)
    ref = lstm_cell_backward(dh, dc, cache1)
    _, _, cache1 = lstm_cell_forward(*a1, *p1)
    lstm_cell_forward(*a2, *p2)
    got = lstm_cell_backward(dh, dc, cache1)
    for a, b in zip(ref[:3], got[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    for k in ref[3]:
        np.testing.assert_array_equal(ref[3][k], got[3][k])


@pytest.mark.parametrize("mag", [1e3, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_saturate_without_warnings(mag, dtype):
    x = np.array([-mag, -1.0, 0.0, 1.0, mag], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sigmoid(x)
        t = tanh(x)
    assert s.dtype == dtype and t.dtype == dtype
    np.testing.assert_array_equal(s[[0, 2, 4]], np.array([0.0, 0.5, 1.0], dtype))
    np.testing.assert_array_equal(t[[0, 2, 4]], np.array([-1.0, 0.0, 1.0], dtype))
    assert s[3] == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-6)
    assert t[1] == pytest.approx(-math.tanh(1.0), rel=1e-6)


@pytest.mark.parametrize("mag", [1e3, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_saturated_inputs(mag, dtype):
    # All weights +1: every pre-activation is +-mag, gates saturate exactly to 0/1 and +-1.
    B, D, H = 2, 2, 3
    w_ih = np.ones((4 * H, D), dtype)
    w_hh = np.zeros((4 * H, H), dtype)
    x = np.full((B, D), mag / D, dtype)
    x[1] *= -1
    h = np.zeros((B, H), dtype)
    c = np.full((B, H), 0.25, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h1, c1, cache = lstm_cell_forward(x, h, c, w_ih, w_hh)
        dx, dh_prev, dc_prev, grads = lstm_cell_backward(np.ones_like(h), np.ones_like(c), cache)
    # row 0: i = f = o = 1, g = 1 -> c = 1.25, h = tanh(1.25); row 1: all gates 0 / g = -1
    np.testing.assert_allclose(c1[0], 1.25, rtol=1e-7)
    np.testing.assert_allclose(h1[0], math.tanh(1.25), rtol=1e-6)
    np.testing.assert_array_equal(c1[1], 0.0)
    np.testing.assert_array_equal(h1[1], 0.0)
    for a in (h1, c1, dx, dh_prev, dc_prev, *grads.values()):
        assert np.isfinite(a).all()
    # saturated gates pass no gradient to the pre-activations: dx = 0 exactly
    np.testing.assert_array_equal(dx, 0.0)


def test_float32_in_float32_out(rng):
    B, D, H = 2, 3, 4
    params = lstm_params(rng, D, H, dtype=np.float32)
    args = [rng.standard_normal(s).astype(np.float32) for s in ((B, D), (B, H), (B, H))]
    h, c, cache = lstm_cell_forward(*args, *params)
    dx, dh_prev, dc_prev, grads = lstm_cell_backward(
        np.ones((B, H), np.float32), np.ones((B, H), np.float32), cache
    )
    arrays = [h, c, dx, dh_prev, dc_prev, *grads.values()]
    arrays += [f for f in cache if isinstance(f, np.ndarray)]
    assert all(a.dtype == np.float32 for a in arrays)
    # and the float32 result agrees with the float64 one to float32 precision
    h64, c64, _ = lstm_cell_forward(*(a.astype(np.float64) for a in (*args, *params)))
    np.testing.assert_allclose(h, h64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c64, rtol=1e-5, atol=1e-6)
