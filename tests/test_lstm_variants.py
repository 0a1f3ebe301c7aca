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

from lstm_bptt import GRU, LSTM, RNN, LSTMCell, get_cell, gradcheck, lstm_backward, lstm_forward
from lstm_bptt.cells.lstm_variants import (
    LSTMVariantCell,
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


# ---------------------------------------------------------------- through the layer


def _check_layer_gradients(rng, layer, x, lengths=None, train=False, hx=None, seed=None):
    """Gradient check of a whole layer (every parameter, x, and hx if given), float64.

    With ``train`` the layer's rng is re-seeded before every forward, so the dropout masks
    are the same in every evaluation of the loss."""
    out, h_n, _ = layer.forward(x, hx, lengths=lengths)
    R = rng.standard_normal(out.shape)
    states = layer.unpack_state(h_n)
    Rs = tuple(rng.standard_normal(s.shape) for s in states)

    def run():
        if train:
            layer.rng = np.random.default_rng(seed)
        return layer.forward(x, hx, lengths=lengths, train=train)

    def loss():
        out, h_n, _ = run()
        s = layer.unpack_state(h_n)
        return float(np.sum(out * R) + sum(np.sum(a * r) for a, r in zip(s, Rs, strict=True)))

    _, _, cache = run()
    dx, dhx, grads = layer.backward(R, cache, layer.pack_state(Rs))
    tensors, analytic = {"x": x, **layer.params}, {"x": dx, **grads}
    if hx is not None:
        for k, (s, d) in enumerate(zip(layer.unpack_state(hx), layer.unpack_state(dhx),
                                       strict=True)):
            tensors[f"hx{k}"], analytic[f"hx{k}"] = s, d
    report = gradcheck(loss, tensors, analytic, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7
    return cache, grads


def _randomise(layer, rng):
    for k, v in layer.params.items():
        v[...] = 0.5 * rng.standard_normal(v.shape) + (1.0 if "_ln_" in k else 0.0)
    return layer


def test_layer_parameter_names_and_cells():
    plain = LSTM(3, 4, num_layers=2, rng=0)
    assert type(plain.cell) is LSTMCell
    assert type(LSTM(3, 4, peephole=False, layer_norm=False, rng=0).cell) is LSTMCell
    peep = LSTM(3, 4, num_layers=2, rng=0, peephole=True)
    assert isinstance(peep.cell, LSTMVariantCell) and peep.cell.name == "lstm"
    assert list(peep.params) == [
        f"{n}_l{k}" for k in range(2) for n in (*NAMES, "weight_ci", "weight_cf", "weight_co")]
    ln = LSTM(3, 4, rng=0, layer_norm=True, bias=False)
    assert {k: v.shape for k, v in ln.params.items()} == {
        "weight_ih_l0": (16, 3), "weight_hh_l0": (16, 4), "weight_ln_ih_l0": (16,),
        "weight_ln_hh_l0": (16,), "weight_ln_c_l0": (4,), "bias_ln_c_l0": (4,)}
    np.testing.assert_array_equal(ln.params["weight_ln_ih_l0"], 1)  # Ba et al.: gains 1
    np.testing.assert_array_equal(ln.params["bias_ln_c_l0"], 0)
    # the plain LSTM's draws come first: layer 0's PyTorch parameters are unchanged
    for n in NAMES:
        np.testing.assert_array_equal(peep.params[f"{n}_l0"], plain.params[f"{n}_l0"])
    both = LSTM(3, 4, rng=0, learn_initial_state=True, recurrent_dropout=0.25)
    assert list(both.params)[-2:] == ["initial_h_l0", "initial_c_l0"]
    assert both.cell == get_cell("lstm", **both.cell.options())  # rebuilt from its options


@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_gradcheck_peephole_layer_norm_lengths(rng, bidirectional):
    L = 1 if bidirectional else 2  # (a small check: the readable loop is slow)
    layer = _randomise(LSTM(3, 4, num_layers=L, rng=0, peephole=True, layer_norm=True,
                            bidirectional=bidirectional, batch_first=True), rng)
    x = rng.standard_normal((3, 4, 3))
    hx = tuple(rng.standard_normal((L * (1 + bidirectional), 3, 4)) for _ in range(2))
    _check_layer_gradients(rng, layer, x, lengths=np.array([2, 4, 1]), hx=hx)


def test_layer_gradcheck_variational_dropout(rng):
    layer = _randomise(LSTM(3, 4, num_layers=2, rng=0, recurrent_dropout=0.3,
                            input_dropout=0.2, dropout=0.1), rng)
    x = rng.standard_normal((4, 5, 3))
    cache, _ = _check_layer_gradients(rng, layer, x, train=True, seed=11)
    for lc, D in zip(cache.layers, (3, 4), strict=True):  # one mask per sequence (row)
        assert lc.mask_x.shape == (5, D) and lc.mask_h.shape == (5, 4)
        assert set(np.unique(lc.mask_h)) <= {0.0, 1 / 0.7}


def test_variational_masks_are_one_per_sequence_and_off_in_eval(rng):
    p = 0.4
    layer = LSTM(3, 6, rng=1, recurrent_dropout=p, input_dropout=p)
    plain = LSTM(3, 6, rng=1)
    for k in plain.params:
        plain.params[k][...] = layer.params[k]
    x = rng.standard_normal((5, 400, 3))
    out, (h_n, c_n), cache = layer.forward(x)  # eval: no dropout
    ref, (ref_h, ref_c), _ = plain.forward(x)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    out_t, _, cache_t = layer.forward(x, train=True)
    mx, mh = cache_t.layers[0].mask_x, cache_t.layers[0].mask_h
    assert abs((mh == 0).mean() - p) < 0.05 and abs((mx == 0).mean() - p) < 0.06
    # the same masks at every step: the output is the variant function with fixed masks,
    # whose equations are checked against the scalar reference above
    want, _, _ = lstm_variant_forward(x, None, None, layer.layer_params(0), mask_x=mx,
                                      mask_h=mh)
    np.testing.assert_array_equal(out_t, want)
    assert not np.allclose(out_t, out)


def test_zero_peepholes_with_lengths_equal_the_plain_lstm(rng):
    """The variant's `last` (lengths) against the plain LSTM's (tested against PyTorch)."""
    layer = LSTM(3, 4, num_layers=2, rng=2, peephole=True, bidirectional=True)
    plain = LSTM(3, 4, num_layers=2, rng=2, bidirectional=True)
    for k, v in layer.params.items():
        if k.startswith(("weight_ci", "weight_cf", "weight_co")):
            v[...] = 0
        else:
            v[...] = plain.params[k]
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([5, 2, 3])
    R = rng.standard_normal((5, 3, 8))
    Rs = (rng.standard_normal((4, 3, 4)), rng.standard_normal((4, 3, 4)))
    got = layer.forward(x, lengths=lengths)
    want = plain.forward(x, lengths=lengths)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-14)
    for a, b in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    gd = layer.backward(R, got[2], Rs)
    wd = plain.backward(R, want[2], Rs)
    np.testing.assert_allclose(gd[0], wd[0], rtol=1e-11, atol=1e-13)
    for k, v in wd[2].items():
        np.testing.assert_allclose(gd[2][k], v, rtol=1e-11, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("make", [
    lambda: LSTM(3, 4, num_layers=2, rng=0, learn_initial_state=True),
    lambda: GRU(3, 4, rng=0, learn_initial_state=True, bidirectional=True),
    lambda: RNN(3, 4, rng=0, nonlinearity="relu", learn_initial_state=True),
    lambda: LSTM(3, 4, rng=0, learn_initial_state=True, layer_norm=True),
], ids=["lstm", "gru_bidir", "rnn_relu", "lstm_layer_norm"])
def test_learned_initial_state(rng, make):
    layer = make()
    names = [k for k in layer.params if k.startswith("initial_")]
    assert names and all(np.all(layer.params[k] == 0) for k in names)
    x = rng.standard_normal((3, 2, 3))
    # zero-initialised: the same as starting from zeros without the option
    out0, _, _ = layer.forward(x)
    np.testing.assert_array_equal(out0, layer.forward(x, layer.pack_state(
        tuple(np.zeros_like(s) for s in layer.initial_state(2))))[0])
    _randomise(layer, rng)
    # hx=None starts from the learned state, broadcast over the rows
    hx = layer.pack_state(tuple(np.array(s) for s in layer.initial_state(2)))
    np.testing.assert_array_equal(layer.forward(x)[0], layer.forward(x, hx)[0])
    _check_layer_gradients(rng, layer, x)  # every parameter, the initial states included
    _, grads = _check_layer_gradients(rng, layer, x, hx=hx)  # hx given: the learned state is unused
    for k in names:
        np.testing.assert_array_equal(grads[k], 0)


def test_variant_errors():
    with pytest.raises(ValueError, match="proj_size: the LSTM variants"):
        LSTM(3, 4, proj_size=2, peephole=True)
    with pytest.raises(ValueError, match="recurrent_dropout: expected a probability"):
        LSTM(3, 4, recurrent_dropout=1.0)
    with pytest.raises(TypeError, match="layer_norm: expected True or False"):
        LSTM(3, 4, layer_norm="yes")
    with pytest.raises(ValueError, match="checkpoint_every: not supported"):
        LSTM(3, 4, peephole=True, checkpoint_every=2).forward(np.zeros((3, 1, 3)))
    with pytest.raises(ValueError, match="initial_state: this layer has no learned"):
        LSTM(3, 4).initial_state(2)


def test_models_take_the_variants(rng):
    from lstm_bptt import SequenceClassifier

    m = SequenceClassifier(3, 4, 2, cell="lstm", rng=0,
                           cell_options={"peephole": True, "layer_norm": True,
                                         "recurrent_dropout": 0.2, "learn_initial_state": True})
    assert isinstance(m.recurrent.cell, LSTMVariantCell)
    assert "lstm.weight_co_l0" in m.params and "lstm.initial_c_l0" in m.params
    rebuilt = SequenceClassifier(**m.config())
    assert rebuilt.recurrent.cell == m.recurrent.cell and list(rebuilt.params) == list(m.params)
    x, y = rng.standard_normal((5, 2, 3)), np.array([0, 1])
    loss, grads, _ = m.loss(x, y, train=True)
    assert np.isfinite(loss) and set(grads) == set(m.params)
