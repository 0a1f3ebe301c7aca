"""The optional compiled path (``lstm-bptt[fast]``, numba) and its switch.

Without numba only the switch tests run (and the NumPy path is what every other test checks);
with numba the kernels are checked against the NumPy path, which stays the reference:

* forward outputs, states and every gradient within a few eps of the NumPy path, at the scale
  of each array (the kernels' tanh is not NumPy's; it is within 2 ulp of it);
* the backward of one cache is bitwise the NumPy backward in float64 (same products, same
  order; float32 computes the recurrent GEMM transposed, which is faster there);
* tanh_ within 2 ulp of np.tanh, exact at the special values (+-0, +-inf, NaN, 1e3, 1e4), and
  the time loops reproduce the NumPy path's saturation and NaN pattern at |a| = 1e3, 1e4, inf,
  NaN pre-activations.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstm_bptt import _fast
from lstm_bptt.cells import lstm as lstm_module
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward

pytestmark = pytest.mark.usefixtures("restore_fast_switch")  # tests/conftest.py


def make(T, B, D, H, dtype, seed=0, proj=0):
    rng = np.random.default_rng(seed)
    P = proj or H
    p = {
        "weight_ih": rng.standard_normal((4 * H, D)) * 0.5,
        "weight_hh": rng.standard_normal((4 * H, P)) * 0.5,
        "bias_ih": rng.standard_normal(4 * H) * 0.5,
        "bias_hh": rng.standard_normal(4 * H) * 0.5,
    }
    if proj:
        p["weight_hr"] = rng.standard_normal((P, H)) * 0.5
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0, dh_n = (rng.standard_normal((B, P)).astype(dtype) for _ in range(2))
    c_0, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, P)).astype(dtype)
    return x, h_0, c_0, p, dout, dh_n, dc_n


def run(flag, x, h_0, c_0, p, dout, dh_n, dc_n, **kw):
    """Forward + backward with the compiled path on (True) or off (False): a flat dict."""
    _fast.set_fast_path(flag)
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, **p, **kw)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    return {"out": out, "h_n": h_n, "c_n": c_n, "dx": dx, "dh_0": dh_0, "dc_0": dc_0, **grads}


# --- the switch (no numba needed) -------------------------------------------------------------

class _Tripwire:
    """Stands in for the kernel module: any use of a kernel fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"compiled kernel {name} used although the fast path is off")


class _Recorder:
    def __init__(self):
        self.used = []

    def __getattr__(self, name):
        def kernel(*args):
            self.used.append(name)
            raise _Used

        return kernel


class _Used(Exception):
    pass


@pytest.mark.parametrize("how", ["setting", "env"])
def test_numpy_path_used_when_disabled(monkeypatch, how):
    monkeypatch.setattr(_fast, "_kernels", _Tripwire())
    if how == "setting":
        _fast.set_fast_path(False)
    else:
        monkeypatch.setenv(_fast.ENV_VAR, "0")
    assert not _fast.fast_path_enabled()
    args = make(5, 2, 3, 4, np.float64)
    res = run(False if how == "setting" else None, *args)
    assert np.all(np.isfinite(res["out"]))


def test_kernels_used_when_enabled(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(_fast, "_kernels", recorder)
    x, h_0, c_0, p, dout, *_ = make(3, 2, 3, 4, np.float64)
    with pytest.raises(_Used):
        lstm_forward(x, h_0, c_0, **p)
    _fast.set_fast_path(False)
    _, _, cache = lstm_forward(x, h_0, c_0, **p)
    _fast.set_fast_path(None)
    with pytest.raises(_Used):
        lstm_backward(dout, cache)
    assert recorder.used == ["lstm_layout", "lstm_backward_steps"]  # the first of each


def test_without_numba(monkeypatch):
    monkeypatch.setattr(_fast, "_kernels", False)  # as if numba were not importable
    assert not _fast.fast_path_enabled()
    with pytest.raises(ImportError, match=r'pip install "lstm-bptt\[fast\]"'):
        _fast.set_fast_path(True)
    monkeypatch.setenv(_fast.ENV_VAR, "1")
    with pytest.raises(ImportError, match="LSTM_BPTT_FAST=1"):
        _fast.fast_path_enabled()


def test_switch_rejects_bad_values():
    with pytest.raises(TypeError, match="enabled: expected True, False or None, got int"):
        _fast.set_fast_path(1)
    assert _fast.set_fast_path(False) is None  # returns the previous setting
    assert _fast.set_fast_path(None) is False


# --- the kernels (numba) ----------------------------------------------------------------------

def _kernels():
    pytest.importorskip("numba")
    from lstm_bptt.cells import _kernels

    return _kernels


# |fast - numpy| <= TOL * eps * max(1, max |numpy|), per array. Measured at the benchmark sizes
# (T*B*H up to 1.6e6, benchmarks/README.md): at most 4.2 eps (bias gradients, float32).
TOL = 8


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T, B, D, H, k, proj", [
    (9, 3, 5, 4, None, 0), (1, 1, 2, 3, None, 0), (12, 2, 3, 33, None, 0), (10, 3, 4, 5, 3, 0),
    (7, 2, 3, 6, None, 4), (8, 3, 2, 5, 3, 2)])
def test_compiled_path_equals_numpy_path(dtype, T, B, D, H, k, proj):
    _kernels()
    args = make(T, B, D, H, dtype, seed=T + H, proj=proj)
    fast = run(True, *args, checkpoint_every=k)
    ref = run(False, *args, checkpoint_every=k)
    assert ("weight_hr" in ref) == bool(proj)
    eps = np.finfo(dtype).eps
    assert fast.keys() == ref.keys()
    for name, want in ref.items():
        got = fast[name]
        assert got.dtype == dtype and got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want))))
        err = float(np.max(np.abs(got.astype(np.float64) - want))) / (eps * scale)
        assert err <= TOL, (name, err)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H, D, P", [(5, 3, 5), (8, 16, 8), (12, 65, 7), (32, 8, 32)])
@pytest.mark.parametrize("bias", [True, False])
def test_layout_kernels_bitwise_equal_the_numpy_code(dtype, H, D, P, bias):
    # lstm_layout and lstm_grads_to_pytorch against the NumPy code they replace, at sizes
    # that are and are not multiples of their 8 x 8 tiles
    kernels = _kernels()
    rng = np.random.default_rng(H * D)
    w_ih, w_hh = (rng.standard_normal(s).astype(dtype) for s in ((4 * H, D), (4 * H, P)))
    b_ih, b_hh = (rng.standard_normal(4 * H).astype(dtype) if bias else None for _ in "ih")
    scale = lstm_module._half_sigmoid_rows(H, dtype)
    got = kernels.lstm_layout(w_ih, w_hh, b_ih, b_hh, lstm_module._row_order(H, True), scale)
    w_ih_i, w_hh_i = lstm_module.to_internal(w_ih, H), lstm_module.to_internal(w_hh, H)
    want = [w_ih_i, w_hh_i, np.multiply(w_ih_i.T, scale, order="C"),
            lstm_module._recurrent_weights(w_hh_i, H)]
    if bias:
        b = lstm_module.to_internal(b_ih + b_hh, H)
        want += [b, b * scale]
    else:
        want += [np.empty(0, dtype)] * 2
    for a, b in zip(got[:6], want, strict=True):
        assert a.dtype == dtype and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
    assert got[6] is True
    N = 37
    da = rng.standard_normal((N, 4 * H)).astype(dtype)
    da[:, 0] = -0.0  # a column of -0.0 sums to +0.0, as in NumPy
    dw_ih_t, dw_hh_t = rng.standard_normal((D, 4 * H)).astype(dtype), \
        rng.standard_normal((P, 4 * H)).astype(dtype)
    gi, gh, db = kernels.lstm_grads_to_pytorch(dw_ih_t, dw_hh_t, da,
                                               lstm_module._row_order(H, False), bias)
    np.testing.assert_array_equal(gi, lstm_module.to_pytorch(dw_ih_t.T, H))
    np.testing.assert_array_equal(gh, lstm_module.to_pytorch(dw_hh_t.T, H))
    want_db = lstm_module.to_pytorch(da.sum(axis=0), H) if bias else np.empty(0, dtype)
    np.testing.assert_array_equal(db, want_db)
    np.testing.assert_array_equal(np.signbit(db), np.signbit(want_db))


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", ["weight_ih", "weight_hh", "bias_ih", "bias_hh"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("proj", [0, 3])
def test_nonfinite_weight_named_on_both_paths(fast, name, bad, proj):
    # with the kernels the weights' NaN/inf test is part of lstm_layout's pass, without them
    # it is NumPy's: the same error either way, with a projection too
    if fast:
        _kernels()
    x, h_0, c_0, p, *_ = make(4, 2, 3, 5, np.float32, proj=proj)
    p[name].reshape(-1)[-1] = bad  # in the last gate block (o): the kernel reorders the rows
    _fast.set_fast_path(fast)
    n_nan, n_inf = (1, 0) if np.isnan(bad) else (0, 1)
    with pytest.raises(ValueError, match=f"^{name}: contains {n_nan} NaN and {n_inf} inf"):
        lstm_forward(x, h_0, c_0, **p)


@pytest.mark.parametrize("fast", [True, False])
def test_two_nonfinite_weights_name_the_same_array_on_both_paths(fast):
    if fast:
        _kernels()
    x, h_0, c_0, p, *_ = make(4, 2, 3, 5, np.float64)
    p["weight_ih"][0, 0] = p["weight_hh"][0, 0] = np.nan
    _fast.set_fast_path(fast)
    with pytest.raises(ValueError, match="^weight_hh: contains 1 NaN"):  # checked first
        lstm_forward(x, h_0, c_0, **p)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_doutput", [True, False])
def test_backward_bitwise_equal_for_one_cache(dtype, with_doutput):
    _kernels()
    x, h_0, c_0, p, dout, dh_n, dc_n = make(8, 3, 4, 5, dtype, seed=3)
    _fast.set_fast_path(False)
    _, _, cache = lstm_forward(x, h_0, c_0, **p)
    dout = dout if with_doutput else None
    ref = lstm_backward(dout, cache, dh_n, dc_n)
    _fast.set_fast_path(True)
    got = lstm_backward(dout, cache, dh_n, dc_n)
    if dtype == np.float32:  # the recurrent GEMM runs transposed there: equal to a few eps
        for name, a, b in [("dx", got[0], ref[0]), ("dh_0", got[1], ref[1]),
                           ("dc_0", got[2], ref[2]), *((k, got[3][k], ref[3][k]) for k in ref[3])]:
            scale = max(1.0, float(np.max(np.abs(b))))
            assert np.max(np.abs(a - b)) <= TOL * np.finfo(dtype).eps * scale, name
        return
    for a, b in zip(got[:3], ref[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ref[3]:
        np.testing.assert_array_equal(got[3][name], ref[3][name], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_within_2_ulp_and_exact_at_special_values(dtype):
    kernels = _kernels()
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * s for s in (1e-3, 0.3, 1, 3, 10)]
                       + [np.linspace(-25, 25, 20001)]).astype(dtype)
    got = np.empty_like(x)
    kernels.tanh_array(x, got)
    want = np.tanh(x)
    ulp = np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(want))
    assert np.max(ulp[want != 0]) <= 2
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 1e3, -1e3, 1e4, -1e4,
                        np.inf, -np.inf, np.nan], dtype)
    got = np.empty_like(special)
    kernels.tanh_array(special, got)
    want = np.array([0.0, -0.0, 1e-30, -1e-30, np.tanh(special[4]), -np.tanh(special[4]),
                     1, -1, 1, -1, 1, -1, np.nan], dtype)
    np.testing.assert_array_equal(got, want)  # NaN == NaN here
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturation_and_nan_like_numpy_path(dtype):
    """The time loops on extreme pre-activations: same saturated values, same NaN pattern."""
    _kernels()
    T, B, H = 3, 2, 4
    rng = np.random.default_rng(1)
    pre = rng.standard_normal((T, B, 4 * H)).astype(dtype)
    pre[0, 0, :6] = [1e3, -1e3, 1e4, -1e4, np.inf, -np.inf]
    pre[1, 1, H + 1] = np.nan  # one gate of one unit of one row
    w_hh_t = (rng.standard_normal((H, 4 * H)) * 0.1).astype(dtype)
    results = []
    for flag in (False, True):
        _fast.set_fast_path(flag)
        gates = pre.copy()
        h = np.zeros((T + 1, B, H), dtype)
        c = np.zeros((T + 1, B, H), dtype)
        tanh_c = np.empty((T, B, H), dtype)
        with np.errstate(all="raise"):  # no overflow or invalid-value warnings
            lstm_module._run_steps(gates, h, c, tanh_c, w_hh_t)
        results.append((gates, h, c, tanh_c))
    for got, want in zip(results[1], results[0], strict=True):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * np.finfo(dtype).eps)
    assert np.isnan(results[0][1][2:, 1]).any()  # the NaN row did propagate


def test_kernels_are_compiled_with_the_disk_cache():
    kernels = _kernels()
    from numba.core.caching import FunctionCache

    for name in ("lstm_forward_steps", "lstm_backward_steps", "tanh_array"):
        assert isinstance(getattr(kernels, name)._cache, FunctionCache), name


# --- one-hot inputs: row gather and scatter-add -----------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("flag", [False, True])
def test_one_hot_input_gather_and_scatter(dtype, flag):
    from lstm_bptt.cells.base import input_projection, input_weight_grad, one_hot_ids

    if flag:
        _kernels()
    _fast.set_fast_path(flag)
    rng = np.random.default_rng(5)
    N, D, G = 40, 7, 12
    ids = rng.integers(0, D, N)
    x2 = np.zeros((N, D), dtype)
    x2[np.arange(N), ids] = 1
    w_t = rng.standard_normal((D, G)).astype(dtype)
    da = rng.standard_normal((N, G)).astype(dtype)
    np.testing.assert_array_equal(one_hot_ids(x2), ids)
    out = np.empty((N, G), dtype)
    input_projection(x2, w_t, out)
    np.testing.assert_array_equal(out, w_t[ids])  # 1 * w + 0 * ... is exactly w
    want = np.zeros((D, G))
    for n in range(N):  # x^T da, summed by hand in float64
        want[ids[n]] += da[n]
    got = input_weight_grad(x2, da)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=0, atol=16 * np.finfo(dtype).eps)
    dense = x2.copy()
    dense[3, 0] = 0.5  # one row not one-hot: the dense GEMM
    assert one_hot_ids(dense) is None
    input_projection(dense, w_t, out)
    np.testing.assert_allclose(out, dense @ w_t, rtol=1e-6)
    bias = rng.standard_normal(G).astype(dtype)  # with a bias: the same sums, bitwise
    input_projection(x2, w_t, out, bias)
    np.testing.assert_array_equal(out, w_t[ids] + bias)
    input_projection(dense, w_t, out, bias)
    np.testing.assert_array_equal(out, (dense @ w_t) + bias)
    assert one_hot_ids(2 * x2) is None and one_hot_ids(x2[:, ::-1] + x2) is None


def test_char_model_one_hot_equals_dense_path():
    """The one-hot LSTM layer gives the numbers of the dense GEMM path (forward bitwise)."""
    rng = np.random.default_rng(2)
    T, B, V, H = 6, 3, 9, 5
    ids = rng.integers(0, V, (T, B))
    x = np.zeros((T, B, V))
    np.put_along_axis(x, ids[..., None], 1, axis=-1)
    x_dense = x.copy()
    x_dense[0, 0, (ids[0, 0] + 1) % V] = 1e-300  # no longer one-hot, numerically the same
    *_, p, dout, dh_n, dc_n = make(T, B, V, H, np.float64, seed=4)
    out, _, cache = lstm_forward(x, None, None, **p)
    out_d, _, cache_d = lstm_forward(x_dense, None, None, **p)
    np.testing.assert_array_equal(out, out_d)
    g = lstm_backward(dout, cache, dh_n, dc_n)[3]
    g_d = lstm_backward(dout, cache_d, dh_n, dc_n)[3]
    for name in g:
        np.testing.assert_allclose(g[name], g_d[name], rtol=1e-13, atol=1e-13, err_msg=name)
    np.testing.assert_array_equal(cache.ids, ids.reshape(-1))  # found once, kept for dW_ih
    assert cache_d.ids is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gather_left_to_the_time_loop_equals_the_gathered_projection(dtype):
    """With the compiled path a one-hot input's projection is gathered by the kernel, row by
    row inside the time loop (lstm._projection(gather_in_steps=True)); the result is bitwise
    the pre-gathered projection through the same kernel, and the NumPy loop given the same
    table gathers it itself (the fallback when the path was switched off in between)."""
    _kernels()
    rng = np.random.default_rng(3)
    T, B, V, H = 5, 4, 7, 6
    ids = rng.integers(0, V, (T, B))
    x = np.zeros((T, B, V), dtype)
    np.put_along_axis(x, ids[..., None], 1, axis=-1)
    w_ih = rng.standard_normal((4 * H, V)).astype(dtype)
    bias = rng.standard_normal(4 * H).astype(dtype)
    w_hh_t = (rng.standard_normal((H, 4 * H)) * 0.3).astype(dtype)
    results = {}
    for name, flag, in_steps in (("kernel, gathered first", True, False),
                                 ("kernel, gather in loop", True, True),
                                 ("numpy, gather in loop", False, True)):
        _fast.set_fast_path(flag)
        pre, found, table = lstm_module._projection(x, w_ih, bias, H, None, in_steps)
        np.testing.assert_array_equal(found, ids.reshape(-1))
        assert (table is not None) == in_steps
        h = np.zeros((T + 1, B, H), dtype)
        c = np.zeros((T + 1, B, H), dtype)
        tanh_c = np.empty((T, B, H), dtype)
        lstm_module._run_steps(pre, h, c, tanh_c, w_hh_t, None, None, found, table)
        results[name] = (pre.copy(), h.copy(), c.copy())
    for a, b in zip(results["kernel, gathered first"], results["kernel, gather in loop"],
                    strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(results["kernel, gathered first"], results["numpy, gather in loop"],
                    strict=True):  # NumPy's tanh vs the kernels' (2 ulp)
        np.testing.assert_allclose(a, b, rtol=0, atol=8 * np.finfo(dtype).eps)


# --- GRU and RNN kernels ----------------------------------------------------------------------

def _gru_rnn_run(flag, cell, x, h_0, p, dout, dh_n, **kw):
    from lstm_bptt.cells.gru import gru_backward, gru_forward
    from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

    fwd, bwd = (gru_forward, gru_backward) if cell == "gru" else (rnn_forward, rnn_backward)
    _fast.set_fast_path(flag)
    out, h_n, cache = fwd(x, h_0, **p, **kw)
    dx, dh_0, grads = bwd(dout, cache, dh_n)
    return cache, {"out": out, "h_n": h_n, "dx": dx, "dh_0": dh_0, **grads}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cell, kw", [("gru", {}), ("gru", {"checkpoint_every": 3}),
                                      ("rnn", {"nonlinearity": "tanh"}),
                                      ("rnn", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("with_doutput", [True, False])
def test_gru_rnn_compiled_path_equals_numpy_path(dtype, cell, kw, with_doutput):
    _kernels()
    rng = np.random.default_rng(7)
    T, B, D, H = 8, 3, 4, 5
    G = 3 * H if cell == "gru" else H
    p = {"weight_ih": rng.standard_normal((G, D)), "weight_hh": rng.standard_normal((G, H)),
         "bias_ih": rng.standard_normal(G), "bias_hh": rng.standard_normal(G)}
    p = {k: (0.5 * v).astype(dtype) for k, v in p.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0, dh_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, H)).astype(dtype) if with_doutput else None
    _, fast = _gru_rnn_run(True, cell, x, h_0, p, dout, dh_n, **kw)
    cache, ref = _gru_rnn_run(False, cell, x, h_0, p, dout, dh_n, **kw)
    eps = np.finfo(dtype).eps
    for name, want in ref.items():
        got = fast[name]
        assert got.dtype == dtype and got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want))))
        err = float(np.max(np.abs(got.astype(np.float64) - want))) / (eps * scale)
        assert err <= TOL, (name, err)
    if "checkpoint_every" in kw:
        return  # that backward recomputes the forward, with the kernels' tanh
    # the backward of one cache: bitwise the NumPy backward
    from lstm_bptt.cells.gru import gru_backward
    from lstm_bptt.cells.rnn import rnn_backward

    bwd = gru_backward if cell == "gru" else rnn_backward
    _fast.set_fast_path(True)
    got = bwd(dout, cache, dh_n)
    _fast.set_fast_path(False)
    want = bwd(dout, cache, dh_n)
    for a, b in zip(got[:2], want[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in want[2]:
        np.testing.assert_array_equal(got[2][name], want[2][name], err_msg=name)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_kernel_saturation_and_nan(nonlinearity):
    from lstm_bptt.cells.rnn import rnn_forward

    _kernels()
    T, B, D, H = 3, 2, 2, 4
    rng = np.random.default_rng(3)
    p = {"weight_ih": np.eye(H, D) * 1e4, "weight_hh": rng.standard_normal((H, H)) * 0.1}
    x = rng.standard_normal((T, B, D))
    x[1, 0, 0] = 1e3
    outs = []
    for flag in (False, True):
        _fast.set_fast_path(flag)
        with np.errstate(all="raise"):
            outs.append(rnn_forward(x, None, **p, nonlinearity=nonlinearity)[0])
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=8 * np.finfo(float).eps * 1e4)


# --- the kernels' BLAS on one thread ------------------------------------------------------------

def test_kernel_calls_run_their_blas_on_one_thread_and_restore_it():
    """OneBlasThread sets the kernels' BLAS to one thread around each call (the per-step GEMMs
    paid the thread pool's wake-up on every step: 33-54 ms vs 15 ms at charlm size, 2 threads)
    and restores the caller's setting, also when the kernel raises."""
    threads = [4]
    calls = []

    def get():
        return threads[0]

    def set_(n):
        calls.append(n)
        threads[0] = n

    class Module:
        F32 = np.float32

        @staticmethod
        def kernel(a, b):
            calls.append(("kernel", threads[0]))
            if b is None:
                raise ValueError("boom")
            return a + b

    k = _fast.OneBlasThread(Module, get, set_)
    assert k.kernel(1, 2) == 3
    assert calls == [1, ("kernel", 1), 4] and threads[0] == 4
    with pytest.raises(ValueError, match="boom"):
        k.kernel(1, None)
    assert threads[0] == 4
    calls.clear()
    threads[0] = 1  # already one thread: nothing is set
    assert k.kernel(2, 2) == 4 and calls == [("kernel", 1)]
    assert k.F32 is np.float32  # non-functions pass through
    assert _fast.OneBlasThread(Module).kernel(1, 1) == 2  # BLAS not found: called as it is


def test_kernels_blas_thread_control_is_found_with_numba():
    kernels = _kernels()
    wrapped = _fast._load()
    assert wrapped is not kernels and wrapped.lstm_forward_steps.__name__ == "lstm_forward_steps"
    get, set_ = _fast._kernel_blas_threads()
    if get is None:
        pytest.skip("SciPy's BLAS is not its bundled OpenBLAS")
    before = get()
    try:
        set_(2)
        assert get() == 2
    finally:
        set_(before)


def test_large_per_step_gemms_use_the_numpy_path_when_blas_has_threads():
    """With several BLAS threads a per-step GEMM of >= PARALLEL_STEP_MACS multiply-adds runs
    faster on the NumPy path (all threads) than in a kernel (one thread): kernels() says None
    there, and only there; with one BLAS thread the kernels are always used."""
    _kernels()  # skips without numba
    kernels = _fast._load()
    get, set_ = _fast._kernel_blas_threads()
    if get is None:
        pytest.skip("SciPy's BLAS is not its bundled OpenBLAS")
    big = _fast.PARALLEL_STEP_MACS
    before = get()
    try:
        set_(2)
        assert kernels.blas_threads() == 2
        assert _fast.kernels(big) is None
        assert _fast.kernels(big - 1) is kernels and _fast.kernels() is kernels
        set_(1)
        assert _fast.kernels(big) is kernels
    finally:
        set_(before)


def test_the_lstm_layer_takes_the_numpy_path_for_a_large_step_with_blas_threads(monkeypatch):
    """lstm_forward / lstm_backward pass their per-step GEMM size (B * P * 4H) to kernels()."""
    from lstm_bptt.cells import lstm as L

    seen = []
    real = _fast.kernels

    def spy(step_macs=0):
        seen.append(step_macs)
        return real(step_macs)

    monkeypatch.setattr(_fast, "kernels", spy)
    rng = np.random.default_rng(0)
    T, B, D, H = 3, 5, 4, 6
    w = {"weight_ih": rng.standard_normal((4 * H, D)), "weight_hh": rng.standard_normal((4 * H, H)),
         "bias_ih": None, "bias_hh": None}
    out, _, cache = L.lstm_forward(rng.standard_normal((T, B, D)), None, None, **w)
    L.lstm_backward(np.ones_like(out), cache)
    assert B * 4 * H * H in seen and max(seen) == B * 4 * H * H
