"""Sequence LSTM: lstm_forward / lstm_backward (BPTT) and the multi-layer LSTM class.

Expected values come from central differences (gradcheck), from stepping the one-step cell by
hand, and from PyTorch nn.LSTM (tests/fixtures/lstm_torch.npz, made by
scripts/make_lstm_fixtures.py; torch is not needed here).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import lstm_params, randomize_params

from lstm_bptt import (
    LSTM,
    LSTMCell,
    gradcheck,
    lstm_backward,
    lstm_forward,
)

FIXTURES = Path(__file__).parent / "fixtures" / "lstm_torch.npz"
PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# (T, B, D, H): H != D everywhere; T = 1 and B = 1 included
SIZES = [(1, 1, 3, 2), (1, 2, 2, 3), (3, 1, 3, 4), (4, 3, 4, 2)]


def _seq_inputs(rng, T, B, D, H, dtype=np.float64):
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    c_0 = rng.standard_normal((B, H)).astype(dtype)
    return x, h_0, c_0


# ---------------------------------------------------------------- gradient checks: one layer


@pytest.mark.parametrize("T, B, D, H", SIZES, ids=lambda v: str(v))
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_lstm_forward_backward(rng, T, B, D, H, bias):
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H, bias=bias)
    R = rng.standard_normal((T, B, H))
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, *params)
        return np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = lstm_backward(R, cache, dh_n=Rh, dc_n=Rc)
    tensors = {"x": x, "h_0": h_0, "c_0": c_0}
    tensors.update({k: v for k, v in zip(PARAM_NAMES, params, strict=True) if v is not None})
    assert set(grads) == set(tensors) - {"x", "h_0", "c_0"}
    report = gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads}, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


def test_gradcheck_loss_on_final_state_only(rng):
    """doutput=None: the loss reads only h_n and c_n (e.g. a classifier head)."""
    T, B, D, H = 3, 2, 3, 4
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H)
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():
        _, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, *params)
        return np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = lstm_backward(None, cache, dh_n=Rh, dc_n=Rc)
    tensors = {"x": x, "h_0": h_0, "c_0": c_0, **dict(zip(PARAM_NAMES, params, strict=True))}
    report = gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads})
    assert report.passed


# ------------------------------------------------------------- step-by-step = whole sequence


@pytest.mark.parametrize("bias", [True, False])
def test_stepping_the_cell_equals_the_sequence(rng, bias):
    T, B, D, H = 5, 3, 4, 2
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H, bias=bias)
    R = rng.standard_normal((T, B, H))
    Rh, Rc = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = lstm_backward(R, cache, dh_n=Rh, dc_n=Rc)

    # the library's readable reference: lstm_step_forward/backward stepped over the sequence
    cell = LSTMCell()
    p = dict(zip(PARAM_NAMES, params, strict=True))
    out_ref, (h, c), caches = cell.reference_forward(x, (h_0, c_0), p)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_n, h, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c_n, c, rtol=1e-12, atol=1e-13)
    assert all(type(cc).__name__ == "CellCache" for cc in caches)  # really the step reference

    dx_ref, (dh, dc), g_ref = cell.reference_backward(R, caches, (Rh, Rc))
    assert set(g_ref) == set(grads)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dh_0, dh, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dc_0, dc, rtol=1e-12, atol=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], g_ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_chunked_sequence_equals_whole(rng):
    """Two chunks chained through (h_n, c_n) forward and (dh_0, dc_0) -> (dh_n, dc_n) backward."""
    T, B, D, H = 6, 2, 3, 4
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H)
    R = rng.standard_normal((T, B, H))
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = lstm_backward(R, cache)

    out1, (h1, c1), cache1 = lstm_forward(x[:2], h_0, c_0, *params)
    out2, (h2, c2), cache2 = lstm_forward(x[2:], h1, c1, *params)
    np.testing.assert_allclose(np.concatenate([out1, out2]), out, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h2, h_n, rtol=1e-12, atol=1e-13)
    dx2, dh1, dc1, g2 = lstm_backward(R[2:], cache2)
    dx1, dh0, dc0, g1 = lstm_backward(R[:2], cache1, dh_n=dh1, dc_n=dc1)
    np.testing.assert_allclose(np.concatenate([dx1, dx2]), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dh0, dh_0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dc0, dc_0, rtol=1e-12, atol=1e-12)
    for k in grads:
        np.testing.assert_allclose(g1[k] + g2[k], grads[k], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ multi-layer LSTM class


def _model(rng, D, H, **kw):
    model = LSTM(D, H, rng=rng, **kw)
    randomize_params(model, rng)
    return model


@pytest.mark.parametrize("batch_first", [False, True])
def test_two_layers_equal_chained_lstm_forward(rng, batch_first):
    T, B, D, H, L = 4, 3, 3, 5, 2
    model = _model(rng, D, H, num_layers=L, batch_first=batch_first)
    x = rng.standard_normal((T, B, D))
    h_0, c_0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    R = rng.standard_normal((T, B, H))
    Rh, Rc = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))

    xin = x.transpose(1, 0, 2) if batch_first else x
    Rin = R.transpose(1, 0, 2) if batch_first else R
    out, (h_n, c_n), cache = model.forward(xin, (h_0, c_0))
    dxin, (dh_0, dc_0), grads = model.backward(Rin, cache, (Rh, Rc))

    p = model.params
    lp = [tuple(p[f"{n}_l{k}"] for n in PARAM_NAMES) for k in range(L)]
    out0, (h0n, c0n), cache0 = lstm_forward(x, h_0[0], c_0[0], *lp[0])
    out1, (h1n, c1n), cache1 = lstm_forward(out0, h_0[1], c_0[1], *lp[1])
    out_ref = out1.transpose(1, 0, 2) if batch_first else out1
    np.testing.assert_allclose(out, out_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h_n, np.stack([h0n, h1n]), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c_n, np.stack([c0n, c1n]), rtol=1e-13, atol=1e-14)

    dx1, dh1, dc1, g1 = lstm_backward(R, cache1, Rh[1], Rc[1])
    dx0, dh0, dc0, g0 = lstm_backward(dx1, cache0, Rh[0], Rc[0])
    dx_ref = dx0.transpose(1, 0, 2) if batch_first else dx0
    np.testing.assert_allclose(dxin, dx_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh_0, np.stack([dh0, dh1]), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dc_0, np.stack([dc0, dc1]), rtol=1e-12, atol=1e-13)
    assert list(grads) == list(model.params)
    for k, g in ((0, g0), (1, g1)):
        for n in PARAM_NAMES:
            np.testing.assert_allclose(grads[f"{n}_l{k}"], g[n], rtol=1e-12, atol=1e-13)


def _gradcheck_model(model, x, h_0, c_0, R, Rh, Rc, *, train=False, reseed=None):
    """Gradcheck an LSTM over its params, x, h_0 and c_0.

    ``reseed``: if given, ``model.rng`` is reset to ``default_rng(reseed)`` before every forward,
    so that dropout draws the same masks each time (the only way to reuse masks with the
    current API: ``forward`` draws them from ``self.rng``).
    """

    def fwd():
        if reseed is not None:
            model.rng = np.random.default_rng(reseed)
        return model.forward(x, (h_0, c_0), train=train)

    def loss():
        out, (h_n, c_n), _ = fwd()
        return np.sum(out * R) + np.sum(h_n * Rh) + np.sum(c_n * Rc)

    _, _, cache = fwd()
    dx, (dh_0, dc_0), grads = model.backward(R, cache, (Rh, Rc))
    tensors = {"x": x, "h_0": h_0, "c_0": c_0, **model.params}
    report = gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads}, tol=1e-7)
    return report, cache


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("T, B", [(1, 1), (3, 2)])
def test_gradcheck_lstm_class(rng, batch_first, bias, T, B):
    D, H, L = 3, 2, 2
    model = _model(rng, D, H, num_layers=L, batch_first=batch_first, bias=bias)
    xshape = (B, T, D) if batch_first else (T, B, D)
    x = rng.standard_normal(xshape)
    h_0, c_0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    R = rng.standard_normal(xshape[:2] + (H,))
    Rh, Rc = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    report, _ = _gradcheck_model(model, x, h_0, c_0, R, Rh, Rc)
    assert report.passed
    assert {r.name for r in report.rows} == {"x", "h_0", "c_0", *model.params}
    assert len(model.params) == (4 if bias else 2) * L


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("L", [2, 3])
def test_gradcheck_lstm_class_with_dropout(rng, batch_first, L):
    T, B, D, H = 3, 2, 3, 4
    model = _model(rng, D, H, num_layers=L, batch_first=batch_first, dropout=0.4)
    xshape = (B, T, D) if batch_first else (T, B, D)
    x = rng.standard_normal(xshape)
    h_0, c_0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    R = rng.standard_normal(xshape[:2] + (H,))
    Rh, Rc = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    report, cache = _gradcheck_model(model, x, h_0, c_0, R, Rh, Rc, train=True, reseed=5)
    assert report.passed
    # the masks really drop something (and rescale the rest by 1 / (1 - p)) between layers only
    masks = cache.dropout_masks
    assert masks[-1] is None
    for m in masks[:-1]:
        assert m.shape == (T, B, H)
        assert (m == 0).any() and (m != 0).any()
        np.testing.assert_allclose(m[m != 0], 1 / 0.6, rtol=1e-15)


def test_dropout_only_in_train_mode(rng):
    T, B, D, H = 3, 2, 3, 4
    model = _model(rng, D, H, num_layers=2, dropout=0.5)
    plain = _model(np.random.default_rng(0), D, H, num_layers=2)
    plain.params = model.params
    x = rng.standard_normal((T, B, D))
    out_eval, _, cache = model.forward(x)
    out_plain, _, _ = plain.forward(x)
    np.testing.assert_array_equal(out_eval, out_plain)
    assert all(m is None for m in cache.dropout_masks)
    out_train, _, _ = model.forward(x, train=True)
    assert not np.allclose(out_train, out_eval)


# --------------------------------------------------------------------- PyTorch parity


def _torch_case(name):
    data = np.load(FIXTURES)
    cfg = json.loads(str(data[f"{name}/config"]))
    case = {k.removeprefix(f"{name}/"): data[k] for k in data.files if k.startswith(f"{name}/")}
    return cfg, case


@pytest.mark.parametrize(
    "name, tol", [("f64", 1e-12), ("f64_batch_first", 1e-12), ("f32", 1e-5)]
)
def test_matches_pytorch(name, tol):
    cfg, case = _torch_case(name)
    dtype = np.dtype(cfg["dtype"])
    model = LSTM(cfg["D"], cfg["H"], num_layers=cfg["L"], batch_first=cfg["batch_first"],
                 dtype=dtype, rng=0)
    assert set(model.params) == {k.removeprefix("param/") for k in case if k.startswith("param/")}
    for k in model.params:
        assert model.params[k].shape == case[f"param/{k}"].shape
        model.params[k] = case[f"param/{k}"]
    for k in range(cfg["L"]):  # the fixture's two biases differ, so a bias mix-up would show
        assert not np.allclose(case[f"param/bias_ih_l{k}"], case[f"param/bias_hh_l{k}"])
    x, h_0, c_0 = case["x"], case["h_0"], case["c_0"]
    assert x.dtype == dtype
    out, (h_n, c_n), cache = model.forward(x, (h_0, c_0))
    dx, (dh_0, dc_0), grads = model.backward(case["R"], cache, (case["Rh"], case["Rc"]))

    def close(got, want, what):
        assert got.dtype == dtype, what
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)

    close(out, case["output"], "output")
    close(h_n, case["h_n"], "h_n")
    close(c_n, case["c_n"], "c_n")
    close(dx, case["dx"], "dx")
    close(dh_0, case["dh_0"], "dh_0")
    close(dc_0, case["dc_0"], "dc_0")
    for k in model.params:
        close(grads[k], case[f"grad/{k}"], k)


# ------------------------------------------------------------------------ numerics, dtype


@pytest.mark.parametrize("mag", [1e3, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_inputs_no_warnings_no_nan(rng, mag, dtype):
    T, B, D, H = 3, 2, 3, 4
    x = (mag * np.sign(rng.standard_normal((T, B, D)))).astype(dtype)
    params = lstm_params(rng, D, H, dtype=dtype, scale=1.0)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    c_0 = rng.standard_normal((B, H)).astype(dtype)
    model = LSTM(D, H, num_layers=2, dtype=dtype, rng=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, *params)
        res = lstm_backward(np.ones_like(out), cache, np.ones_like(h_n), np.ones_like(c_n))
        mout, (mh, mc), mcache = model.forward(x)
        mres = model.backward(np.ones_like(mout), mcache)
    arrays = [out, h_n, c_n, *res[:3], *res[3].values(), mout, mh, mc, mres[0], *mres[1],
              *mres[2].values()]
    assert all(np.isfinite(a).all() for a in arrays)
    assert np.all(np.abs(out) <= 1)


def test_float32_everywhere(rng):
    T, B, D, H, L = 3, 2, 3, 4, 2
    f32 = np.float32
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H, f32)
    params = lstm_params(rng, D, H, dtype=f32)
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, *params)
    dx, dh_0, dc_0, grads = lstm_backward(np.ones_like(out), cache, np.ones_like(h_n),
                                          np.ones_like(c_n))
    arrays = [out, h_n, c_n, dx, dh_0, dc_0, *grads.values()]
    arrays += [a for a in cache if isinstance(a, np.ndarray)]
    assert all(a.dtype == f32 for a in arrays)

    for batch_first in (False, True):
        model = LSTM(D, H, num_layers=L, dtype=f32, rng=0, dropout=0.3, batch_first=batch_first)
        xs = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(f32)
        hx = tuple(rng.standard_normal((L, B, H)).astype(f32) for _ in range(2))
        out, (h_n, c_n), mcache = model.forward(xs, hx, train=True)
        dx, (dh_0, dc_0), grads = model.backward(np.ones_like(out), mcache,
                                                 (np.ones_like(h_n), np.ones_like(c_n)))
        arrays = [out, h_n, c_n, dx, dh_0, dc_0, *grads.values(), *model.params.values()]
        arrays += [m for m in mcache.dropout_masks if m is not None]
        for lc in mcache.layers:
            arrays += [a for a in lc if isinstance(a, np.ndarray)]
        assert all(a.dtype == f32 for a in arrays)


def test_float32_agrees_with_float64(rng):
    T, B, D, H = 4, 2, 3, 5
    x, h_0, c_0 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H)
    R = rng.standard_normal((T, B, H))
    out64, _, cache64 = lstm_forward(x, h_0, c_0, *params)
    g64 = lstm_backward(R, cache64)
    to32 = [a.astype(np.float32) for a in (x, h_0, c_0, *params)]
    out32, _, cache32 = lstm_forward(*to32)
    g32 = lstm_backward(R.astype(np.float32), cache32)
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-6)
    for a, b in zip(g32[:3], g64[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for k in g64[3]:
        np.testing.assert_allclose(g32[3][k], g64[3][k], rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_uniform_bounds(dtype):
    D, H, L = 7, 16, 3
    model = LSTM(D, H, num_layers=L, dtype=dtype, rng=3)
    k = 1 / math.sqrt(H)
    expected = {}
    for layer in range(L):
        d_in = D if layer == 0 else H
        expected.update({f"weight_ih_l{layer}": (4 * H, d_in), f"weight_hh_l{layer}": (4 * H, H),
                         f"bias_ih_l{layer}": (4 * H,), f"bias_hh_l{layer}": (4 * H,)})
    assert {n: p.shape for n, p in model.params.items()} == expected
    allp = np.concatenate([p.ravel() for p in model.params.values()])
    assert all(p.dtype == dtype for p in model.params.values())
    assert np.all(np.abs(allp) <= k)
    # U(-k, k): mean 0 and variance k^2 / 3 (n = 2624 draws, so 5 % of k is > 4 sigma)
    assert abs(allp.mean()) < 0.05 * k
    assert allp.var() == pytest.approx(k * k / 3, rel=0.1)
    assert allp.max() > 0.95 * k and allp.min() < -0.95 * k


def test_forget_bias_sets_effective_bias_exactly():
    D, H, L = 3, 4, 2
    model = LSTM(D, H, num_layers=L, rng=0, forget_bias=1.0)
    for layer in range(L):
        b = model.params[f"bias_ih_l{layer}"] + model.params[f"bias_hh_l{layer}"]
        np.testing.assert_array_equal(b[H : 2 * H], 1.0)
        assert np.all(b[:H] != 1.0)  # the other gates keep their random init
    # and it is the forget gate: with zero weights and c_0 = 1, i = o = 0.5, g = 0 -> c = s(1)
    for name, p in model.params.items():
        if name.startswith("weight"):
            p[...] = 0
        elif name.startswith("bias"):
            keep = np.zeros_like(p)
            keep[H : 2 * H] = p[H : 2 * H]
            p[...] = keep
    _, (_, c_n), _ = model.forward(np.zeros((1, 1, D)), (np.zeros((L, 1, H)), np.ones((L, 1, H))))
    np.testing.assert_allclose(c_n, 1 / (1 + math.exp(-1.0)), rtol=1e-15)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_orthogonal_recurrent_blocks(dtype, tol):
    H = 6
    model = LSTM(3, H, num_layers=2, dtype=dtype, rng=11, recurrent_init="orthogonal")
    for layer in range(2):
        w = model.params[f"weight_hh_l{layer}"]
        assert w.dtype == dtype
        blocks = w.reshape(4, H, H)
        for blk in blocks:
            np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=tol)
            np.testing.assert_allclose(blk @ blk.T, np.eye(H), atol=tol)
        assert not np.allclose(blocks[0], blocks[1])  # independent draws
    # weight_ih keeps the uniform init
    assert np.all(np.abs(model.params["weight_ih_l0"]) <= 1 / math.sqrt(H))


def test_same_seed_same_params_and_global_rng_untouched():
    state = np.random.get_state()
    a = LSTM(3, 4, num_layers=2, rng=42, recurrent_init="orthogonal")
    b = LSTM(3, 4, num_layers=2, rng=np.random.default_rng(42), recurrent_init="orthogonal")
    c = LSTM(3, 4, num_layers=2, rng=43, recurrent_init="orthogonal")
    LSTM(3, 4, num_layers=2, rng=None, dropout=0.5).forward(np.ones((2, 1, 3)), train=True)
    after = np.random.get_state()
    assert state[0] == after[0] and state[2:] == after[2:]
    np.testing.assert_array_equal(state[1], after[1])
    assert list(a.params) == list(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["weight_ih_l0"], c.params["weight_ih_l0"])


def test_same_seed_same_dropout_masks():
    x = np.ones((3, 2, 3))
    outs = []
    for _ in range(2):
        m = LSTM(3, 4, num_layers=2, rng=7, dropout=0.5)
        outs.append(m.forward(x, train=True)[2].dropout_masks[0])
    np.testing.assert_array_equal(outs[0], outs[1])


# ----------------------------------------------------------------------------- purity


def test_lstm_forward_is_pure(rng):
    T, B, D, H = 3, 2, 3, 4
    a1 = _seq_inputs(rng, T, B, D, H)
    a2 = _seq_inputs(rng, T, B, D, H)
    params = lstm_params(rng, D, H)
    R = rng.standard_normal((T, B, H))
    _, _, cache1 = lstm_forward(*a1, *params)
    ref = lstm_backward(R, cache1)
    _, _, cache1 = lstm_forward(*a1, *params)
    lstm_forward(*a2, *params)
    got = lstm_backward(R, cache1)
    for a, b in zip(ref[:3], got[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    for k in ref[3]:
        np.testing.assert_array_equal(ref[3][k], got[3][k])


def test_lstm_class_forward_is_pure(rng):
    T, B, D, H, L = 3, 2, 3, 4, 2
    model = _model(rng, D, H, num_layers=L, dropout=0.3)
    x1, x2 = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, D))
    R = rng.standard_normal((T, B, H))
    Rh = rng.standard_normal((L, B, H))
    saved_rng = copy.deepcopy(model.rng)
    _, _, cache1 = model.forward(x1, train=True)
    ref = model.backward(R, cache1, (Rh, Rh))
    model.rng = saved_rng
    _, _, cache1 = model.forward(x1, train=True)
    model.forward(x2, train=True)
    model.forward(x1, train=False)
    got = model.backward(R, cache1, (Rh, Rh))
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_array_equal(ref[1][0], got[1][0])
    np.testing.assert_array_equal(ref[1][1], got[1][1])
    for k in model.params:
        np.testing.assert_array_equal(ref[2][k], got[2][k])


def test_backward_does_not_mutate_upstream_or_cache(rng):
    T, B, D, H, L = 3, 2, 3, 4, 2
    model = _model(rng, D, H, num_layers=L, dropout=0.3)
    _, _, cache = model.forward(rng.standard_normal((T, B, D)), train=True)
    R = rng.standard_normal((T, B, H))
    Rh, Rc = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    copies = [a.copy() for a in (R, Rh, Rc)]
    snap = [[np.copy(a) for a in lc if isinstance(a, np.ndarray)] for lc in cache.layers]
    params = {k: v.copy() for k, v in model.params.items()}
    model.backward(R, cache, (Rh, Rc))
    for a, b in zip((R, Rh, Rc), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    for lc, s in zip(cache.layers, snap, strict=True):
        for a, b in zip([a for a in lc if isinstance(a, np.ndarray)], s, strict=True):
            np.testing.assert_array_equal(a, b)
    for k in params:
        np.testing.assert_array_equal(model.params[k], params[k])


def test_need_dx_false_skips_dx_and_leaves_every_other_gradient_bitwise_equal():
    from lstm_bptt import LSTM

    rng = np.random.default_rng(3)
    m = LSTM(4, 5, num_layers=2, rng=0)
    x, R = rng.normal(size=(6, 3, 4)), rng.normal(size=(6, 3, 5))
    _, _, cache = m.forward(x)
    dx, (dh, dc), g = m.backward(R, cache)
    dx2, (dh2, dc2), g2 = m.backward(R, cache, need_dx=False)
    assert dx is not None and dx2 is None
    assert np.array_equal(dh, dh2) and np.array_equal(dc, dc2)
    assert all(np.array_equal(g[k], g2[k]) for k in g)
