"""LSTM variants: peepholes, layer normalisation, variational dropout masks.

Expected values come from a scalar re-implementation of the published equations with ``math``
(Gers et al. 2002; Ba et al. 2016; Gal & Ghahramani 2016), from the plain LSTM (the variants
switched off, or peephole weights zero), and from central differences.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from conftest import lstm_params

from lstm_bptt import gradcheck, lstm_backward, lstm_forward
from lstm_bptt.cells.lstm_variants import (
    lstm_variant_backward,
    lstm_variant_forward,
    lstm_variant_step_backward,
    lstm_variant_step_forward,
    variant_param_shapes,
)

NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
OPTIONS = [(False, False), (True, False), (False, True), (True, True)]  # (peephole, layer_norm)


def _params(rng, D, H, peephole, layer_norm, bias=True, dtype=np.float64, scale=0.5):
    p = {}
    for k, shape in variant_param_shapes(D, H, bias, peephole=peephole,
                                         layer_norm=layer_norm).items():
        v = scale * rng.standard_normal(shape)
        if k.startswith("weight_ln"):
            v += 1.0  # gains around 1, all different
        p[k] = v.astype(dtype)
    return p


def _masks(rng, B, D, H, p=0.4, dtype=np.float64):
    """Dropout masks (0 or 1 / (1 - p)): row b drops feature b % D and unit (b + 1) % H.

    Exactly one dropped feature per row: with a single kept feature LN(W_ih x~) would not
    depend on it (LN is scale invariant) and its gradient would be pure rounding noise."""
    mx = np.full((B, D), 1 / (1 - p))
    mh = np.full((B, H), 1 / (1 - p))
    for b in range(B):
        mx[b, b % D] = 0.0
        mh[b, (b + 1) % H] = 0.0
    return mx.astype(dtype), mh.astype(dtype)


# ---------------------------------------------------------------- scalar reference


def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def _ln(v, gain, bias, eps=1e-5):
    mu = sum(v) / len(v)
    var = sum((e - mu) ** 2 for e in v) / len(v)
    return [(e - mu) / math.sqrt(var + eps) * gain[k] + (bias[k] if bias is not None else 0.0)
            for k, e in enumerate(v)]


def scalar_step(x, h, c, p, peephole, layer_norm, mx=None, mh=None):
    """Equations of Gers et al. (2002) and Ba et al. (2016), Python floats, row by row."""
    B, D = x.shape
    H = h.shape[1]
    h_new, c_new = np.zeros((B, H)), np.zeros((B, H))
    for b in range(B):
        xb = [x[b, d] * (mx[b, d] if mx is not None else 1.0) for d in range(D)]
        hb = [h[b, k] * (mh[b, k] if mh is not None else 1.0) for k in range(H)]
        ax = [sum(p["weight_ih"][r, d] * xb[d] for d in range(D)) for r in range(4 * H)]
        ah = [sum(p["weight_hh"][r, k] * hb[k] for k in range(H)) for r in range(4 * H)]
        if layer_norm:
            ax, ah = _ln(ax, p["weight_ln_ih"], None), _ln(ah, p["weight_ln_hh"], None)
        a = [ax[r] + ah[r] + p["bias_ih"][r] + p["bias_hh"][r] for r in range(4 * H)]
        cs = []
        for j in range(H):
            pi = p["weight_ci"][j] * c[b, j] if peephole else 0.0
            pf = p["weight_cf"][j] * c[b, j] if peephole else 0.0
            i, f, g = _sig(a[j] + pi), _sig(a[H + j] + pf), math.tanh(a[2 * H + j])
            cs.append(f * c[b, j] + i * g)
        cn = _ln(cs, p["weight_ln_c"], p["bias_ln_c"]) if layer_norm else cs
        for j in range(H):
            po = p["weight_co"][j] * cs[j] if peephole else 0.0
            o = _sig(a[3 * H + j] + po)
            c_new[b, j] = cs[j]
            h_new[b, j] = o * math.tanh(cn[j])
    return h_new, c_new


@pytest.mark.parametrize("peephole, layer_norm", OPTIONS)
@pytest.mark.parametrize("masked", [False, True])
def test_sequence_matches_scalar_reference(rng, peephole, layer_norm, masked):
    T, B, D, H = 3, 2, 3, 4
    x, h_0, c_0 = (rng.standard_normal(s) for s in ((T, B, D), (B, H), (B, H)))
    p = _params(rng, D, H, peephole, layer_norm)
    mx, mh = _masks(rng, B, D, H) if masked else (None, None)
    out, (h_n, c_n), _ = lstm_variant_forward(x, h_0, c_0, p, peephole=peephole,
                                              layer_norm=layer_norm, mask_x=mx, mask_h=mh)
    h, c = h_0, c_0
    for t in range(T):  # the same masks at every step: variational dropout
        h, c = scalar_step(x[t], h, c, p, peephole, layer_norm, mx, mh)
        np.testing.assert_allclose(out[t], h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h_n, h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n, c, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- reduces to the plain LSTM


@pytest.mark.parametrize("bias", [True, False])
def test_options_off_equal_the_plain_lstm(rng, bias):
    T, B, D, H = 4, 3, 3, 5
    x, h_0, c_0 = (rng.standard_normal(s) for s in ((T, B, D), (B, H), (B, H)))
    w = lstm_params(rng, D, H, bias=bias)
    p = {k: v for k, v in zip(NAMES, w, strict=True) if v is not None}
    R, Rh, Rc = (rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H)))
    out, (h_n, c_n), cache = lstm_variant_forward(x, h_0, c_0, p)
    ref_out, (ref_h, ref_c), ref_cache = lstm_forward(x, h_0, c_0, *w)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n, ref_c, rtol=1e-12, atol=1e-14)
    got = lstm_variant_backward(R, cache, Rh, Rc)
    want = lstm_backward(R, ref_cache, Rh, Rc)
    for a, b in zip(got[:3], want[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    assert set(got[3]) == set(want[3])
    for k in want[3]:
        np.testing.assert_allclose(got[3][k], want[3][k], rtol=1e-12, atol=1e-13, err_msg=k)


def test_zero_peepholes_and_unit_masks_equal_the_plain_lstm(rng):
    T, B, D, H = 3, 2, 4, 3
    x, h_0, c_0 = (rng.standard_normal(s) for s in ((T, B, D), (B, H), (B, H)))
    p = _params(rng, D, H, True, False)
    for k in ("weight_ci", "weight_cf", "weight_co"):
        p[k][...] = 0
    w = [p[k] for k in NAMES]
    out, (_, c_n), _ = lstm_variant_forward(x, h_0, c_0, p, peephole=True,
                                            mask_x=np.ones((B, D)), mask_h=np.ones((B, H)))
    ref_out, (_, ref_c), _ = lstm_forward(x, h_0, c_0, *w)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n, ref_c, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("peephole, layer_norm", OPTIONS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("T, B, D, H", [(1, 1, 4, 3), (4, 3, 3, 5)], ids=str)
def test_gradcheck_sequence(rng, peephole, layer_norm, masked, T, B, D, H):
    t = {"x": rng.standard_normal((T, B, D)), "h_0": rng.standard_normal((B, H)),
         "c_0": rng.standard_normal((B, H)), **_params(rng, D, H, peephole, layer_norm)}
    p = {k: v for k, v in t.items() if k not in ("x", "h_0", "c_0")}
    mx, mh = _masks(rng, B, D, H) if masked else (None, None)
    kw = dict(peephole=peephole, layer_norm=layer_norm, mask_x=mx, mask_h=mh)
    R, Rh, Rc = (rng.standard_normal(s) for s in ((T, B, H), (B, H), (B, H)))

    def loss():
        out, (h_n, c_n), _ = lstm_variant_forward(t["x"], t["h_0"], t["c_0"], p, **kw)
        return float(np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc))

    cache = lstm_variant_forward(t["x"], t["h_0"], t["c_0"], p, **kw)[2]
    dx, dh_0, dc_0, g = lstm_variant_backward(R, cache, Rh, Rc)
    assert set(g) == set(p)
    report = gradcheck(loss, t, {"x": dx, "h_0": dh_0, "c_0": dc_0, **g}, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


@pytest.mark.parametrize("peephole, layer_norm", OPTIONS[1:])
def test_gradcheck_step_without_bias(rng, peephole, layer_norm):
    B, D, H = 3, 4, 3
    t = {"x": rng.standard_normal((B, D)), "h_prev": rng.standard_normal((B, H)),
         "c_prev": rng.standard_normal((B, H)),
         **_params(rng, D, H, peephole, layer_norm, bias=False)}
    p = {k: v for k, v in t.items() if k not in ("x", "h_prev", "c_prev")}
    mx, mh = _masks(rng, B, D, H)
    kw = dict(peephole=peephole, layer_norm=layer_norm, mask_x=mx, mask_h=mh)
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():
        h, c, _ = lstm_variant_step_forward(t["x"], t["h_prev"], t["c_prev"], p, **kw)
        return float(np.sum(h * Rh) + np.sum(c * Rc))

    cache = lstm_variant_step_forward(t["x"], t["h_prev"], t["c_prev"], p, **kw)[2]
    dx, dh, dc, g = lstm_variant_step_backward(Rh, Rc, cache)
    report = gradcheck(loss, t, {"x": dx, "h_prev": dh, "c_prev": dc, **g}, tol=1e-7)
    assert report.passed


def test_sequence_equals_stepping_the_reference(rng):
    T, B, D, H = 4, 2, 3, 5
    x, h_0, c_0 = (rng.standard_normal(s) for s in ((T, B, D), (B, H), (B, H)))
    p = _params(rng, D, H, True, True)
    mx, mh = _masks(rng, B, D, H)
    kw = dict(peephole=True, layer_norm=True, mask_x=mx, mask_h=mh)
    R = rng.standard_normal((T, B, H))
    out, (h_n, c_n), cache = lstm_variant_forward(x, h_0, c_0, p, **kw)
    dx, dh_0, dc_0, grads = lstm_variant_backward(R, cache)
    h, c, caches = h_0, c_0, []
    for t in range(T):
        h, c, sc = lstm_variant_step_forward(x[t], h, c, p, **kw)
        np.testing.assert_allclose(out[t], h, rtol=1e-12, atol=1e-14)
        caches.append(sc)
    dh, dc = np.zeros((B, H)), np.zeros((B, H))
    want = {k: np.zeros_like(v) for k, v in p.items()}
    for t in reversed(range(T)):
        dxt, dh, dc, g = lstm_variant_step_backward(R[t] + dh, dc, caches[t])
        np.testing.assert_allclose(dx[t], dxt, rtol=1e-12, atol=1e-13)
        for k in want:
            want[k] += g[k]
    np.testing.assert_allclose(dh_0, dh, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dc_0, dc, rtol=1e-12, atol=1e-13)
    for k in want:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-11, atol=1e-13, err_msg=k)


# ---------------------------------------------------------------- numerics, errors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_and_dtype_kept(rng, dtype):
    T, B, D, H = 3, 2, 3, 4
    x = (1e3 * np.sign(rng.standard_normal((T, B, D)))).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    c_0 = (1e3 * rng.standard_normal((B, H))).astype(dtype)
    p = _params(rng, D, H, True, True, dtype=dtype, scale=3.0)
    mx, mh = _masks(rng, B, D, H, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, (h_n, c_n), cache = lstm_variant_forward(x, h_0, c_0, p, peephole=True,
                                                      layer_norm=True, mask_x=mx, mask_h=mh)
        dx, dh_0, dc_0, g = lstm_variant_backward(np.ones_like(out), cache)
    for a in (out, h_n, c_n, dx, dh_0, dc_0, *g.values()):
        assert a.dtype == dtype and np.isfinite(a).all()


def test_bad_params_and_masks(rng):
    p = _params(rng, 3, 4, True, False)
    x = np.zeros((2, 2, 3))
    with pytest.raises(ValueError, match="params: expected keys"):
        lstm_variant_forward(x, None, None, p)  # peephole weights given, peephole=False
    with pytest.raises(ValueError, match=r"weight_ci: expected shape \(H,\)"):
        lstm_variant_forward(x, None, None, {**p, "weight_ci": np.zeros(5)}, peephole=True)
    with pytest.raises(ValueError, match=r"mask_h: expected shape \(B, H\)"):
        lstm_variant_forward(x, None, None, p, peephole=True, mask_h=np.ones((2, 3)))
    with pytest.raises(TypeError, match="params: expected a dict"):
        lstm_variant_forward(x, None, None, list(p.values()))
