"""The shortcuts of the per-call fast paths, checked where they could go wrong.

* one-hot input with a bias, checkpointing and per-row final steps: the gather and the bias
  are done by the time loop on the compiled path (left out of the projection), by the
  projection on the NumPy path; checkpointed gradients, ``state_at`` and ``per_step`` must be
  bitwise those of the uncheckpointed forward, and the gradients match central differences;
* the finite check (one dot product first): finite float32 values whose squares overflow
  pass without a warning, NaN and inf anywhere (0-d, empty, strided) are found;
* the BLAS-thread policy: with several BLAS threads, layers whose per-step GEMM is large run
  the NumPy time loops (forward, backward, recomputation), with the same numbers;
* a kept cache of a one-hot forward survives later forwards (recycled memory).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import fast_paths as _paths

from lstm_bptt import _fast, gradcheck
from lstm_bptt._checks import as_float_array
from lstm_bptt.cells import LSTMCell
from lstm_bptt.cells import lstm as lstm_module
from lstm_bptt.cells.gru import gru_backward, gru_forward
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward
from lstm_bptt.cells.rnn import rnn_backward, rnn_forward

pytestmark = pytest.mark.usefixtures("restore_fast_switch")  # tests/conftest.py


def _one_hot(T, B, D, dtype, rng):
    x = np.zeros((T, B, D), dtype)
    np.put_along_axis(x, rng.integers(0, D, (T, B))[..., None], 1, axis=-1)
    return x


def _lstm_args(T, B, D, H, dtype, seed, proj=0, bias=True):
    rng = np.random.default_rng(seed)
    P = proj or H
    p = {"weight_ih": rng.standard_normal((4 * H, D)) * 0.5,
         "weight_hh": rng.standard_normal((4 * H, P)) * 0.5,
         "bias_ih": rng.standard_normal(4 * H) * 0.5 if bias else None,
         "bias_hh": rng.standard_normal(4 * H) * 0.5 if bias else None}
    if proj:
        p["weight_hr"] = rng.standard_normal((P, H)) * 0.5
    p = {k: None if v is None else v.astype(dtype) for k, v in p.items()}
    x = _one_hot(T, B, D, dtype, rng)
    h_0, dh_n = (rng.standard_normal((B, P)).astype(dtype) for _ in range(2))
    c_0, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dout = rng.standard_normal((T, B, P)).astype(dtype)
    last = rng.integers(0, T, B)
    return x, h_0, c_0, p, dout, dh_n, dc_n, last


def _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, **kw):
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, **p, **kw)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    res = {"out": out, "h_n": h_n, "c_n": c_n, "dx": dx, "dh_0": dh_0, "dc_0": dc_0, **grads}
    return {k: np.array(v) for k, v in res.items()}, cache


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, proj, bias", [(1, 0, True), (4, 2, True), (5, 0, False),
                                           (65, 0, True)])
def test_one_hot_checkpointed_with_last_is_bitwise_the_full_forward(flag, dtype, B, proj,
                                                                     bias):
    """Checkpointing recomputes the forward with the bias added where the forward added it
    (time loop or projection) and the projection gathered; every gradient, dx and the
    recomputed states are then bitwise those of the cache that kept everything."""
    T, D, H = 5, 6, 3
    args = _lstm_args(T, B, D, H, dtype, seed=B, proj=proj, bias=bias)
    x, h_0, c_0, p, dout, dh_n, dc_n, last = args
    _fast.set_fast_path(flag)
    full, full_cache = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last)
    assert full_cache.ids is not None  # the one-hot input was recognised
    cell = LSTMCell()
    full_steps = cell.per_step(full_cache)
    for k in (1, 2, T, T + 2):
        ck, ck_cache = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last,
                                checkpoint_every=k)
        for name in full:
            np.testing.assert_array_equal(ck[name], full[name], err_msg=f"{name}, k={k}")
        for name, v in cell.per_step(ck_cache).items():
            np.testing.assert_array_equal(v, full_steps[name], err_msg=f"per_step {name}")
        for t in range(T + 1):
            for a, b in zip(cell.state_at(ck_cache, t), cell.state_at(full_cache, t),
                            strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"state_at({t}), k={k}")
        again = lstm_backward(dout, ck_cache, dh_n, dc_n)[3]  # the same cache, twice
        for name, g in again.items():
            np.testing.assert_array_equal(g, full[name], err_msg=f"second backward {name}")


@pytest.mark.parametrize("flag", _paths())
@pytest.mark.parametrize("k", [None, 2])
def test_one_hot_with_bias_and_last_matches_central_differences(flag, k):
    T, B, D, H = 4, 3, 5, 3
    x, h_0, c_0, p, dout, dh_n, dc_n, last = _lstm_args(T, B, D, H, np.float64, seed=7,
                                                         proj=2)
    _fast.set_fast_path(flag)

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, **p, last=last, checkpoint_every=k)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))

    res, _ = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last, checkpoint_every=k)
    tensors = {**p, "h_0": h_0, "c_0": c_0}
    report = gradcheck(loss, tensors, {name: res[name] for name in p} | {"h_0": res["dh_0"],
                                                                          "c_0": res["dc_0"]})
    assert report.passed and report.max_rel_error < 1e-7


def test_one_hot_compiled_path_equals_the_numpy_path():
    """The gather and the bias inside the kernel's time loop vs the NumPy projection."""
    pytest.importorskip("numba")
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        for B, k in ((1, None), (4, None), (63, 2), (64, None), (65, 3)):
            args = _lstm_args(4, B, 6, 3, dtype, seed=B)
            x, h_0, c_0, p, dout, dh_n, dc_n, last = args
            res = {}
            for flag in (True, False):
                _fast.set_fast_path(flag)
                res[flag] = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last,
                                     checkpoint_every=k)[0]
            for name in res[False]:
                np.testing.assert_allclose(res[True][name], res[False][name], rtol=tol,
                                           atol=tol, err_msg=f"{name}, {dtype}, B={B}")


def test_switching_the_path_off_between_forward_and_backward():
    """A cache made by the compiled path (gather and bias in the time loop, ids kept) is
    backpropagated by the NumPy path (and its recomputation) to the same gradients."""
    pytest.importorskip("numba")
    x, h_0, c_0, p, dout, dh_n, dc_n, last = _lstm_args(5, 4, 6, 3, np.float64, seed=3)
    for k in (None, 2):
        _fast.set_fast_path(True)
        _, _, cache = lstm_forward(x, h_0, c_0, **p, last=last, checkpoint_every=k)
        on = lstm_backward(dout, cache, dh_n, dc_n)[3]
        _fast.set_fast_path(False)
        off = lstm_backward(dout, cache, dh_n, dc_n)[3]
        for name in on:
            np.testing.assert_allclose(off[name], on[name], rtol=1e-12, atol=1e-12,
                                       err_msg=f"{name}, k={k}")


@pytest.mark.parametrize("flag", _paths())
def test_a_kept_one_hot_cache_survives_later_forwards(flag):
    """Arrays large enough for the recycled pool; the gathered projection of the second
    forward must not land in the first cache's memory."""
    _fast.set_fast_path(flag)
    T, B, D, H = 16, 32, 8, 32  # gates: 16 * 32 * 128 * 8 bytes, pooled
    x, h_0, c_0, p, dout, dh_n, dc_n, _ = _lstm_args(T, B, D, H, np.float64, seed=1)
    first, cache = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n)
    for seed in (2, 3):
        x2 = _one_hot(T, B, D, np.float64, np.random.default_rng(seed))
        lstm_forward(x2, h_0, c_0, **p)  # its cache dropped: the pool hands its memory out
        lstm_forward(x2, h_0, c_0, **p)
    again = lstm_backward(dout, cache, dh_n, dc_n)
    np.testing.assert_array_equal(cache.h[1:], first["out"])
    for name, g in again[3].items():
        np.testing.assert_array_equal(g, first[name], err_msg=name)


def test_cached_gate_tables_are_read_only():
    """The lru_cached row order and sigmoid row scales are shared by every call."""
    for arr in (lstm_module._row_order(3, True), lstm_module._row_order(3, False),
                lstm_module._half_sigmoid_rows(3, np.dtype(np.float32))):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0


# --- the finite check -------------------------------------------------------------------------

def test_finite_float32_values_whose_squares_overflow_pass_quietly():
    big = np.float32(1e20)  # finite; big * big overflows float32 (and the dot product)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for x in (np.full(7, big), np.array(big), np.full((3, 4), big)[:, ::2],
                  np.array([np.finfo(np.float32).max, -0.0, 1e-45], np.float32),
                  np.array([np.finfo(np.float64).max, 5e-324])):
            assert as_float_array("w", x) is x
        for x in (np.zeros((0, 3)), np.zeros(0, np.float32)):
            assert as_float_array("w", x) is x


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_are_found_everywhere(bad, dtype):
    cases = [np.array(bad, dtype), np.array([1e20, bad], dtype)]
    strided = np.ones((4, 6), dtype)
    strided[2, 4] = bad
    cases += [strided[:, ::2], strided.T, np.asfortranarray(strided)[::-1]]
    for x in cases:
        with pytest.raises(ValueError, match=r"^w: contains"):
            as_float_array("w", x)


@pytest.mark.parametrize("flag", _paths())
def test_lstm_input_nan_is_named_and_huge_float32_weights_are_accepted(flag):
    _fast.set_fast_path(flag)
    x, h_0, c_0, p, *_ = _lstm_args(3, 2, 4, 3, np.float32, seed=0)
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x: contains 1 NaN"):
        lstm_forward(bad, h_0, c_0, **p)
    p = dict(p)
    p["weight_ih"] = p["weight_ih"].copy()
    p["weight_ih"][0, 0] = 1e20  # finite; its square overflows float32
    out = lstm_forward(x, h_0, c_0, **p)[0]
    assert np.isfinite(out).all()


# --- several BLAS threads: large per-step GEMMs on the NumPy path ----------------------------

def _layers(dtype):
    """(name, run) for an LSTM with one-hot input and bias (with and without checkpointing),
    a GRU and an RNN; run() -> dict of results."""
    rng = np.random.default_rng(4)
    T, B, D, H = 4, 5, 6, 3
    lstm_args = _lstm_args(T, B, D, H, dtype, seed=4)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)

    def weights(G):
        return [rng.standard_normal(s).astype(dtype) * 0.5
                for s in ((G * H, D), (G * H, H), (G * H,), (G * H,))]

    w_gru, w_rnn = weights(3), weights(1)

    def lstm(k):
        x1, h1, c1, p, d1, dh, dc, last = lstm_args
        return lambda: _fwd_bwd(x1, h1, c1, p, d1, dh, dc, last=last, checkpoint_every=k)[0]

    def gru():
        out, h_n, cache = gru_forward(x, h_0, *w_gru, checkpoint_every=2)
        dx, dh_0, grads = gru_backward(dout, cache)
        return {"out": out, "dx": dx, "dh_0": dh_0, **grads}

    def rnn():
        out, h_n, cache = rnn_forward(x, h_0, *w_rnn)
        dx, dh_0, grads = rnn_backward(dout, cache)
        return {"out": out, "dx": dx, "dh_0": dh_0, **grads}

    return [("lstm", lstm(None)), ("lstm checkpointed", lstm(2)), ("gru", gru), ("rnn", rnn)]


TIME_LOOPS = ("lstm_forward_steps", "lstm_backward_steps", "gru_forward_steps",
              "gru_backward_steps", "rnn_forward_steps", "rnn_backward_steps")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_steps_with_blas_threads_run_the_numpy_time_loops(monkeypatch, dtype):
    """Every time loop (forward, backward, recomputation) of a layer whose per-step GEMM is
    over the threshold takes the NumPy path when BLAS has threads: the results are bitwise
    those with the compiled path off (dW_ih of the one-hot input aside: a scatter-add)."""
    pytest.importorskip("numba")
    kernels = _fast._load()
    layers = _layers(dtype)
    _fast.set_fast_path(False)
    want = {name: run() for name, run in layers}
    _fast.set_fast_path(True)
    monkeypatch.setattr(_fast, "PARALLEL_STEP_MACS", 1)  # every layer is "large"
    monkeypatch.setattr(kernels, "blas_threads", lambda: 2)

    def refuse(*args):
        raise AssertionError("a compiled time loop ran for a large step with BLAS threads")

    for name in TIME_LOOPS:
        monkeypatch.setattr(kernels, name, refuse, raising=False)
    for name, run in layers:
        got = run()
        for key, v in got.items():
            if name.startswith("lstm") and key == "weight_ih":
                np.testing.assert_allclose(v, want[name][key], rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(v, want[name][key], err_msg=f"{name} {key}")


def test_large_lstm_step_same_numbers_with_two_blas_threads():
    """The real switch: SciPy's OpenBLAS (the kernels' BLAS) at 2 threads, a layer with
    B * P * 4H = PARALLEL_STEP_MACS, one-hot input with bias, checkpointed and not."""
    pytest.importorskip("numba")
    get, set_ = _fast._kernel_blas_threads()
    if get is None:
        pytest.skip("SciPy's BLAS is not its bundled OpenBLAS")
    T, B, D, H = 2, 32, 5, 256
    assert B * H * 4 * H == _fast.PARALLEL_STEP_MACS
    args = _lstm_args(T, B, D, H, np.float64, seed=0)
    x, h_0, c_0, p, dout, dh_n, dc_n, last = args
    _fast.set_fast_path(True)
    before = get()
    try:
        for k in (None, 1):
            set_(1)
            one = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last, checkpoint_every=k)[0]
            set_(2)
            two = _fwd_bwd(x, h_0, c_0, p, dout, dh_n, dc_n, last=last, checkpoint_every=k)[0]
            for name in one:
                np.testing.assert_allclose(two[name], one[name], rtol=1e-11, atol=1e-11,
                                           err_msg=f"{name}, k={k}")
    finally:
        set_(before)
