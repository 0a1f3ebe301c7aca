"""GRU and vanilla RNN cells: step reference, fast sequence forward/BPTT, PyTorch parity.

Expected values come from central differences (gradcheck), from scalar re-implementations of
the published equations with ``math``, and from PyTorch ``nn.GRU`` / ``nn.RNN``
(tests/fixtures/gru_torch.npz and rnn_torch.npz, made by scripts/make_gru_rnn_fixtures.py;
torch is not needed here).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from lstm_bptt import GRU, RNN, gradcheck
from lstm_bptt.cells.gru import gru_backward, gru_forward, gru_step_backward, gru_step_forward
from lstm_bptt.cells.rnn import rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# (T, B, D, H): H != D everywhere; T = 1 and B = 1 included
SIZES = [(1, 1, 3, 2), (1, 2, 2, 3), (3, 1, 3, 4), (4, 3, 4, 2)]
KINDS = ["gru", "tanh", "relu"]  # "tanh"/"relu": the RNN with that nonlinearity


def _params(rng, kind, D, H, bias=True, dtype=np.float64, scale=0.5):
    G = 3 if kind == "gru" else 1
    p = {"weight_ih": scale * rng.standard_normal((G * H, D)),
         "weight_hh": scale * rng.standard_normal((G * H, H))}
    if bias:
        p["bias_ih"] = scale * rng.standard_normal(G * H)
        p["bias_hh"] = scale * rng.standard_normal(G * H)
        assert np.all(p["bias_ih"] != p["bias_hh"])
    return {k: v.astype(dtype) for k, v in p.items()}


def _fwd(kind, x, h_0, p, **kw):
    if kind == "gru":
        return gru_forward(x, h_0, **p, **kw)
    return rnn_forward(x, h_0, **p, nonlinearity=kind, **kw)


def _bwd(kind, dout, cache, dh_n=None, **kw):
    return (gru_backward if kind == "gru" else rnn_backward)(dout, cache, dh_n, **kw)


def _step_fwd(kind, x, h, p):
    if kind == "gru":
        return gru_step_forward(x, h, **p)
    return rnn_step_forward(x, h, **p, nonlinearity=kind)


def _step_bwd(kind, dh, cache):
    return (gru_step_backward if kind == "gru" else rnn_step_backward)(dh, cache)


# ---------------------------------------------------------------- scalar references (math)


def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def scalar_gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """Cho et al. (2014) v3 / nn.GRU, entry by entry with Python floats."""
    B, D = x.shape
    H = h.shape[1]
    out = np.zeros((B, H))
    for b in range(B):
        for j in range(H):
            gi = [sum(w_ih[g * H + j, d] * x[b, d] for d in range(D))
                  + (b_ih[g * H + j] if b_ih is not None else 0.0) for g in range(3)]
            gh = [sum(w_hh[g * H + j, k] * h[b, k] for k in range(H))
                  + (b_hh[g * H + j] if b_hh is not None else 0.0) for g in range(3)]
            r = _sig(gi[0] + gh[0])
            z = _sig(gi[1] + gh[1])
            n = math.tanh(gi[2] + r * gh[2])
            out[b, j] = (1 - z) * n + z * h[b, j]
    return out


def scalar_rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    B, D = x.shape
    H = h.shape[1]
    out = np.zeros((B, H))
    for b in range(B):
        for j in range(H):
            a = sum(w_ih[j, d] * x[b, d] for d in range(D))
            a += sum(w_hh[j, k] * h[b, k] for k in range(H))
            if b_ih is not None:
                a += b_ih[j] + b_hh[j]
            out[b, j] = math.tanh(a) if nonlinearity == "tanh" else max(a, 0.0)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_step_matches_scalar_reference(rng, kind, bias):
    B, D, H = 2, 3, 4
    x, h = rng.standard_normal((B, D)), rng.standard_normal((B, H))
    p = _params(rng, kind, D, H, bias)
    got, _ = _step_fwd(kind, x, h, p)
    args = (x, h, p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"))
    want = scalar_gru_step(*args) if kind == "gru" else scalar_rnn_step(*args, kind)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_gru_gate_order_is_r_z_n():
    """D = H = 1, h = 0.5, x = 2: only gate block k has input weight 1."""
    x, h = np.array([[2.0]]), np.array([[0.5]])
    w_hh = np.zeros((3, 1))
    s2, s0 = _sig(2.0), 0.5
    expected = {
        0: (1 - s0) * 0.0 + s0 * 0.5,  # r = s(2) multiplies W_hn h = 0: n = tanh(0) = 0
        1: (1 - s2) * 0.0 + s2 * 0.5,  # update gate z = s(2)
        2: (1 - s0) * math.tanh(2.0) + s0 * 0.5,  # candidate n = tanh(2)
    }
    for k, want in expected.items():
        w_ih = np.zeros((3, 1))
        w_ih[k] = 1.0
        got, _ = gru_step_forward(x, h, w_ih, w_hh)
        assert got[0, 0] == pytest.approx(want, rel=1e-15)


def test_gru_b_hn_is_inside_the_reset_product():
    """n = tanh(W_in x + b_in + r * (W_hn h + b_hn)): with r = s(-2), b_hn counts r-fold."""
    x, h = np.zeros((1, 1)), np.zeros((1, 1))
    w_ih, w_hh = np.zeros((3, 1)), np.zeros((3, 1))
    b_ih = np.array([-2.0, 0.0, 0.0])
    b_hh = np.array([0.0, 0.0, 1.5])  # b_hr, b_hz, b_hn
    got, _ = gru_step_forward(x, h, w_ih, w_hh, b_ih, b_hh)
    assert got[0, 0] == pytest.approx(0.5 * math.tanh(_sig(-2.0) * 1.5), rel=1e-15)


# ---------------------------------------------------------------- step reference gradients


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_step(rng, kind):
    B, D, H = 3, 4, 5
    t = {"x": rng.standard_normal((B, D)), "h_prev": rng.standard_normal((B, H)),
         **_params(rng, kind, D, H)}
    R = rng.standard_normal((B, H))
    p = {k: t[k] for k in NAMES}

    def loss():
        return float(np.sum(_step_fwd(kind, t["x"], t["h_prev"], p)[0] * R))

    _, cache = _step_fwd(kind, t["x"], t["h_prev"], p)
    dx, dh, g = _step_bwd(kind, R, cache)
    report = gradcheck(loss, t, {"x": dx, "h_prev": dh, **g}, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


# ---------------------------------------------------------------- fast sequence vs stepping


@pytest.mark.parametrize("T, B, D, H", SIZES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_sequence_equals_stepping_the_reference(rng, T, B, D, H, kind, bias):
    x, h_0 = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    p = _params(rng, kind, D, H, bias)
    R, Rh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    out, h_n, cache = _fwd(kind, x, h_0, p)
    dx, dh_0, grads = _bwd(kind, R, cache, Rh)

    h, caches = h_0, []
    for t in range(T):
        h, c = _step_fwd(kind, x[t], h, p)
        np.testing.assert_allclose(out[t], h, rtol=1e-12, atol=1e-14)
        caches.append(c)
    np.testing.assert_allclose(h_n, h, rtol=1e-12, atol=1e-14)
    dh = Rh
    want = {k: np.zeros_like(v) for k, v in p.items()}
    dx_ref = np.zeros_like(x)
    for t in reversed(range(T)):
        dx_ref[t], dh, g = _step_bwd(kind, R[t] + dh, caches[t])
        for k in want:
            want[k] += g[k]
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dh_0, dh, rtol=1e-12, atol=1e-13)
    assert set(grads) == set(p)
    for k in p:
        np.testing.assert_allclose(grads[k], want[k], rtol=1e-12, atol=1e-13, err_msg=k)


# ---------------------------------------------------------------- central differences


@pytest.mark.parametrize("T, B, D, H", SIZES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_sequence(rng, T, B, D, H, kind, bias):
    t = {"x": rng.standard_normal((T, B, D)), "h_0": rng.standard_normal((B, H)),
         **_params(rng, kind, D, H, bias)}
    p = {k: t[k] for k in NAMES if k in t}
    R, Rh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    def loss():
        out, h_n, _ = _fwd(kind, t["x"], t["h_0"], p)
        return float(np.sum(out * R) + np.sum(h_n * Rh))

    _, _, cache = _fwd(kind, t["x"], t["h_0"], p)
    dx, dh_0, g = _bwd(kind, R, cache, Rh)
    report = gradcheck(loss, t, {"x": dx, "h_0": dh_0, **g}, tol=1e-7)
    assert report.passed and report.max_rel_error < 1e-7


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_loss_on_final_state_only(rng, kind):
    T, B, D, H = 3, 2, 3, 4
    t = {"x": rng.standard_normal((T, B, D)), "h_0": rng.standard_normal((B, H)),
         **_params(rng, kind, D, H)}
    p = {k: t[k] for k in NAMES}
    Rh = rng.standard_normal((B, H))

    def loss():
        return float(np.sum(_fwd(kind, t["x"], t["h_0"], p)[1] * Rh))

    dx, dh_0, g = _bwd(kind, None, _fwd(kind, t["x"], t["h_0"], p)[2], Rh)
    assert gradcheck(loss, t, {"x": dx, "h_0": dh_0, **g}, tol=1e-7).passed


def test_gradcheck_flags_a_planted_gru_bug(rng):
    """Swapping b_in and b_hn gradients (the classic GRU bias bug) must fail the check."""
    T, B, D, H = 3, 2, 3, 4
    t = {"x": rng.standard_normal((T, B, D)), "h_0": rng.standard_normal((B, H)),
         **_params(rng, "gru", D, H)}
    R = rng.standard_normal((T, B, H))

    def loss():
        return float(np.sum(gru_forward(t["x"], t["h_0"], *(t[k] for k in NAMES))[0] * R))

    _, _, g = gru_backward(R, gru_forward(t["x"], t["h_0"], *(t[k] for k in NAMES))[2])
    bad = {"bias_ih": g["bias_hh"], "bias_hh": g["bias_ih"]}
    report = gradcheck(loss, {k: t[k] for k in bad}, bad, raise_on_fail=False)
    assert not report.passed


# ---------------------------------------------------------------- options, numerics


def test_gru_checkpointing_is_bitwise(rng):
    T, B, D, H = 7, 2, 3, 4
    x, h_0 = rng.standard_normal((T, B, D)), rng.standard_normal((B, H))
    p = _params(rng, "gru", D, H)
    R, Rh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    out, h_n, cache = gru_forward(x, h_0, **p)
    ref = gru_backward(R, cache, Rh)
    for k in (1, 3, 7, 10):
        out_k, h_n_k, cache_k = gru_forward(x, h_0, **p, checkpoint_every=k)
        assert cache_k.gates is None and cache_k.m is None
        np.testing.assert_array_equal(out_k, out)
        np.testing.assert_array_equal(h_n_k, h_n)
        dx, dh_0, g = gru_backward(R, cache_k, Rh)
        np.testing.assert_array_equal(dx, ref[0])
        np.testing.assert_array_equal(dh_0, ref[1])
        for name in p:
            np.testing.assert_array_equal(g[name], ref[2][name])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_overflow_and_dtype_kept(rng, kind, dtype):
    T, B, D, H = 4, 2, 3, 5
    x = (1e3 * np.sign(rng.standard_normal((T, B, D)))).astype(dtype)
    h_0 = np.tanh(rng.standard_normal((B, H))).astype(dtype)  # |h_0| < 1: GRU h stays in (-1, 1)
    p = _params(rng, kind, D, H, dtype=dtype, scale=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, h_n, cache = _fwd(kind, x, h_0, p)
        dx, dh_0, g = _bwd(kind, np.ones_like(out), cache, np.ones_like(h_n))
        hs, _ = _step_fwd(kind, x[0], h_0, p)
    for a in (out, h_n, dx, dh_0, hs, *g.values()):
        assert a.dtype == dtype and np.isfinite(a).all()
    if kind != "relu":
        assert np.abs(out).max() <= 1


def test_need_dx_false_skips_only_dx(rng):
    for kind in KINDS:
        x, h_0 = rng.standard_normal((3, 2, 3)), rng.standard_normal((2, 4))
        p = _params(rng, kind, 3, 4)
        R = rng.standard_normal((3, 2, 4))
        cache = _fwd(kind, x, h_0, p)[2]
        dx, dh, g = _bwd(kind, R, cache)
        dx2, dh2, g2 = _bwd(kind, R, cache, need_dx=False)
        assert dx2 is None and dx is not None
        np.testing.assert_array_equal(dh, dh2)
        for k in g:
            np.testing.assert_array_equal(g[k], g2[k])


def test_cache_and_inputs_not_modified(rng):
    for kind in KINDS:
        x, h_0 = rng.standard_normal((3, 2, 3)), rng.standard_normal((2, 4))
        p = _params(rng, kind, 3, 4)
        R, Rh = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 4))
        copies = [a.copy() for a in (x, h_0, R, Rh, *p.values())]
        out, _, cache = _fwd(kind, x, h_0, p)
        assert not out.flags.writeable
        before = [np.array(a, copy=True) for a in cache if isinstance(a, np.ndarray)]
        first = _bwd(kind, R, cache, Rh)
        second = _bwd(kind, R, cache, Rh)
        after = [a for a in cache if isinstance(a, np.ndarray)]
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(copies, (x, h_0, R, Rh, *p.values()), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(first[0], second[0])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_messages(rng, kind):
    p = _params(rng, kind, 3, 4)
    x = rng.standard_normal((2, 2, 3))
    with pytest.raises(ValueError, match=r"x: expected shape \(T, B, D\)"):
        _fwd(kind, rng.standard_normal((2, 2, 5)), None, p)
    with pytest.raises(ValueError, match="x: expected a 3-D array"):
        _fwd(kind, x[0], None, p)
    with pytest.raises(ValueError, match=r"h_0: expected shape \(B, H\)"):
        _fwd(kind, x, np.zeros((3, 4)), p)
    with pytest.raises(TypeError, match="x: expected dtype float64"):
        _fwd(kind, x.astype(np.float32), None, p)
    with pytest.raises(ValueError, match="weight_hh: expected shape"):
        _fwd(kind, x, None, {**p, "weight_hh": p["weight_hh"][:, :2]})
    with pytest.raises(ValueError, match="both be arrays or both be None"):
        _fwd(kind, x, None, {**p, "bias_hh": None})
    cache = _fwd(kind, x, None, p)[2]
    with pytest.raises(ValueError, match=r"doutput: expected shape \(T, B, H\)"):
        _bwd(kind, np.zeros((2, 2, 5)), cache)
    with pytest.raises(TypeError, match="dh_n: expected dtype float64"):
        _bwd(kind, None, cache, np.zeros((2, 4), np.float32))


def test_bad_nonlinearity(rng):
    p = _params(rng, "tanh", 3, 4)
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu', got 'sigmoid'"):
        rnn_forward(np.zeros((1, 1, 3)), None, **p, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="nonlinearity"):
        rnn_step_forward(np.zeros((1, 3)), np.zeros((1, 4)), **p, nonlinearity=None)


def test_bad_checkpoint_every(rng):
    p = _params(rng, "gru", 3, 4)
    with pytest.raises(ValueError, match="checkpoint_every: expected >= 1, got 0"):
        gru_forward(np.zeros((1, 1, 3)), None, **p, checkpoint_every=0)
    with pytest.raises(TypeError, match="checkpoint_every: expected an int"):
        gru_forward(np.zeros((1, 1, 3)), None, **p, checkpoint_every=2.0)


# ---------------------------------------------------------------- PyTorch parity


def _cases(fname):
    with np.load(FIXTURES / fname) as f:
        data = {k: f[k] for k in f.files}
    names = sorted({k.split("/")[0] for k in data})
    return [(n, {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(n + "/")})
            for n in names]


GRU_CASES = _cases("gru_torch.npz")
RNN_CASES = _cases("rnn_torch.npz")


def _stack(kind, case):
    """Run the fixture through the GRU / RNN layer (PyTorch's names, hx, batch_first)."""
    cfg = json.loads(str(case["config"]))
    params = {k[len("param/"):]: v for k, v in case.items() if k.startswith("param/")}
    common = dict(num_layers=cfg["L"], bias=cfg["bias"], batch_first=cfg["batch_first"],
                  dtype=np.dtype(cfg["dtype"]), rng=0,
                  bidirectional=cfg.get("bidirectional", False))
    if kind == "gru":
        layer = GRU(cfg["D"], cfg["H"], **common)
    else:
        layer = RNN(cfg["D"], cfg["H"], nonlinearity=kind, **common)
    assert list(layer.params) == list(params)  # PyTorch's names, in PyTorch's order
    for k, v in params.items():
        assert layer.params[k].shape == v.shape
        layer.params[k][...] = v
    out, h_n, cache = layer.forward(case["x"], case["h_0"], lengths=case.get("lengths"))
    dx, dh_0, grads = layer.backward(case["R"], cache, case["Rh"])
    return cfg, out, h_n, dx, dh_0, grads, params


def _assert_parity(kind, case):
    cfg, out, h_n, dx, dh_0, grads, params = _stack(kind, case)
    tol = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=2e-5, atol=2e-6)}
    tol = tol[cfg["dtype"]]
    for a in (out, h_n, dx, dh_0, *grads.values()):
        assert a.dtype == np.dtype(cfg["dtype"])
    np.testing.assert_allclose(out, case["output"], **tol)
    np.testing.assert_allclose(h_n, case["h_n"], **tol)
    np.testing.assert_allclose(dx, case["dx"], **tol)
    np.testing.assert_allclose(dh_0, case["dh_0"], **tol)
    assert set(grads) == set(params)
    for k in params:
        np.testing.assert_allclose(grads[k], case[f"grad/{k}"], **tol, err_msg=k)


@pytest.mark.parametrize("name, case", GRU_CASES, ids=[n for n, _ in GRU_CASES])
def test_gru_matches_pytorch(name, case):
    _assert_parity("gru", case)


@pytest.mark.parametrize("name, case", RNN_CASES, ids=[n for n, _ in RNN_CASES])
def test_rnn_matches_pytorch(name, case):
    cfg = json.loads(str(case["config"]))
    _assert_parity(cfg["nonlinearity"], case)


# ---------------------------------------------------------------- the layers


def test_gru_per_step_gate_order_is_public():
    """r, z, n read off the public weight blocks: biases a_r = 1, a_z = 2, a_n = 3 at h = 0."""
    D, H, B = 2, 3, 1
    layer = GRU(D, H, rng=0)
    for v in layer.params.values():
        v[...] = 0.0
    layer.params["bias_ih_l0"][:] = np.repeat([1.0, 2.0, 3.0], H)
    _, h_n, cache = layer.forward(np.zeros((1, B, D)))
    v = layer.per_step(cache)
    assert set(v) == {"h", "r", "z", "n"}
    np.testing.assert_allclose(v["r"], _sig(1.0), rtol=1e-15)
    np.testing.assert_allclose(v["z"], _sig(2.0), rtol=1e-15)
    np.testing.assert_allclose(v["n"], math.tanh(3.0), rtol=1e-15)
    np.testing.assert_allclose(h_n, (1 - _sig(2.0)) * math.tanh(3.0), rtol=1e-15)


def test_layers_follow_pytorch_signatures():
    rnn = RNN(3, 4, 2, "relu", rng=0)
    assert rnn.cell.nonlinearity == "relu" and rnn.num_layers == 2
    assert repr(rnn) == ("RNN(3, 4, num_layers=2, bias=True, batch_first=False, "
                         "dtype=float64, nonlinearity='relu')")
    assert repr(GRU(3, 4)).startswith("GRU(3, 4, num_layers=1")
    gru = GRU(3, 4, num_layers=2, bias=False, rng=0)
    assert {k: v.shape for k, v in gru.params.items()} == {
        "weight_ih_l0": (12, 3), "weight_hh_l0": (12, 4),
        "weight_ih_l1": (12, 4), "weight_hh_l1": (12, 4)}
    assert RNN(3, 4, rng=0).params["bias_hh_l0"].shape == (4,)


def test_hx_is_one_array(rng):
    gru = GRU(3, 4, num_layers=2, rng=0)
    x = rng.standard_normal((5, 2, 3))
    out, h_n, cache = gru.forward(x)
    assert isinstance(h_n, np.ndarray) and h_n.shape == (2, 2, 4)
    np.testing.assert_array_equal(h_n[-1], out[-1])
    dx, dh_0, _ = gru.backward(None, cache, np.ones((2, 2, 4)))
    assert isinstance(dh_0, np.ndarray) and dh_0.shape == (2, 2, 4)
    with pytest.raises(TypeError, match="hx: expected an array h_0 or None, got a tuple"):
        gru.forward(x, (np.zeros((2, 2, 4)),))
    with pytest.raises(ValueError, match=r"h_0: expected shape \(num_layers, B, H\)"):
        gru.forward(x, np.zeros((1, 2, 4)))


def test_init_options():
    H = 5
    gru = GRU(3, H, rng=0, recurrent_init="orthogonal")
    w = gru.params["weight_hh_l0"]
    for g in range(3):
        np.testing.assert_allclose(w[g * H:(g + 1) * H] @ w[g * H:(g + 1) * H].T, np.eye(H),
                                   atol=1e-12)
    irnn = RNN(3, H, nonlinearity="relu", rng=0, recurrent_init="identity")
    np.testing.assert_array_equal(irnn.params["weight_hh_l0"], np.eye(H))
    np.testing.assert_array_equal(irnn.params["bias_ih_l0"], 0)
    np.testing.assert_array_equal(irnn.params["bias_hh_l0"], 0)
    with pytest.raises(ValueError, match="recurrent_init: expected one of"):
        GRU(3, H, recurrent_init="identity")
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu'"):
        RNN(3, H, nonlinearity="sigmoid")
