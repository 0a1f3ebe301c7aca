"""Tests of the performance features of lstm_forward / lstm_backward.

* recomputation (``checkpoint_every=k``) returns bitwise the gradients of the stored cache, keeps
  a smaller cache, and equals the one-step reference cell;
* the fast activation path (one tanh for all gates) saturates without warnings.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lstm_bptt.cells.lstm import lstm_backward, lstm_cell_forward, lstm_forward
from lstm_bptt.gradcheck import gradcheck


def make(T, B, D, H, dtype, seed):
    rng = np.random.default_rng(seed)
    p = {
        "weight_ih": rng.standard_normal((4 * H, D)) * 0.5,
        "weight_hh": rng.standard_normal((4 * H, H)) * 0.5,
        "bias_ih": rng.standard_normal(4 * H) * 0.5,
        "bias_hh": rng.standard_normal(4 * H) * 0.5,
    }
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype)
    c_0 = rng.standard_normal((B, H)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    dc_n = rng.standard_normal((B, H)).astype(dtype)
    return x, h_0, c_0, p, dout, dh_n, dc_n


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T, k", [(7, 1), (7, 2), (7, 3), (7, 7), (7, 50), (1, 1), (12, 4)])
def test_checkpoint_gradients_bitwise_equal(dtype, T, k):
    x, h_0, c_0, p, dout, dh_n, dc_n = make(T, 3, 5, 4, dtype, seed=T * 10 + k)
    out, (h_n, c_n), cache = lstm_forward(x, h_0, c_0, **p)
    ref = lstm_backward(dout, cache, dh_n, dc_n)
    out_k, (h_nk, c_nk), cache_k = lstm_forward(x, h_0, c_0, **p, checkpoint_every=k)
    got = lstm_backward(dout, cache_k, dh_n, dc_n)
    # forward outputs and every gradient identical to the last bit
    np.testing.assert_array_equal(out_k, out)
    np.testing.assert_array_equal(h_nk, h_n)
    np.testing.assert_array_equal(c_nk, c_n)
    for a, b in zip(got[:3], ref[:3], strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    assert got[3].keys() == ref[3].keys()
    for name in ref[3]:
        np.testing.assert_array_equal(got[3][name], ref[3][name], err_msg=name)


def test_checkpoint_without_bias_and_without_doutput():
    x, h_0, c_0, p, _, dh_n, dc_n = make(9, 2, 3, 5, np.float64, seed=1)
    _, _, cache = lstm_forward(x, h_0, c_0, p["weight_ih"], p["weight_hh"])
    ref = lstm_backward(None, cache, dh_n, dc_n)
    _, _, cache_k = lstm_forward(x, h_0, c_0, p["weight_ih"], p["weight_hh"], checkpoint_every=4)
    got = lstm_backward(None, cache_k, dh_n, dc_n)
    assert set(got[3]) == {"weight_ih", "weight_hh"}
    for a, b in zip(got[:3], ref[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    for name in ref[3]:
        np.testing.assert_array_equal(got[3][name], ref[3][name])


def test_checkpoint_cache_is_smaller_and_backward_leaves_it_alone():
    T, B, D, H, k = 40, 2, 3, 8, 8
    x, h_0, c_0, p, dout, _, _ = make(T, B, D, H, np.float64, seed=2)
    _, _, full = lstm_forward(x, h_0, c_0, **p)
    _, _, ckpt = lstm_forward(x, h_0, c_0, **p, checkpoint_every=k)
    assert full.gates.shape == (T, B, 4 * H) and full.c.shape == (T + 1, B, H)
    assert ckpt.gates is None and ckpt.tanh_c is None
    assert ckpt.c.shape == (T // k + 1, B, H)  # c at t = 0, 8, ..., 40
    np.testing.assert_array_equal(ckpt.c, full.c[::k])
    h_before, c_before = ckpt.h.copy(), ckpt.c.copy()
    lstm_backward(dout, ckpt)
    np.testing.assert_array_equal(ckpt.h, h_before)
    np.testing.assert_array_equal(ckpt.c, c_before)


@pytest.mark.parametrize("k", [None, 2])
def test_forward_equals_stepping_the_reference_cell(k):
    x, h, c, p, _, _, _ = make(6, 3, 5, 4, np.float64, seed=3)
    out, (h_n, c_n), _ = lstm_forward(x, h, c, **p, checkpoint_every=k)
    outs = []
    for t in range(6):
        h, c, _ = lstm_cell_forward(x[t], h, c, **p)
        outs.append(h)
    np.testing.assert_allclose(out, np.stack(outs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n, c, rtol=1e-12, atol=1e-14)


def test_checkpointed_backward_passes_gradcheck():
    x, h_0, c_0, p, dout, dh_n, dc_n = make(5, 2, 3, 4, np.float64, seed=4)
    tensors = {"x": x, "h_0": h_0, "c_0": c_0, **p}

    def loss():
        out, (h_n, c_n), _ = lstm_forward(x, h_0, c_0, **p, checkpoint_every=2)
        return float(np.sum(out * dout) + np.sum(h_n * dh_n) + np.sum(c_n * dc_n))

    _, _, cache = lstm_forward(x, h_0, c_0, **p, checkpoint_every=2)
    dx, dh_0, dc_0, grads = lstm_backward(dout, cache, dh_n, dc_n)
    report = gradcheck(loss, tensors, {"x": dx, "h_0": dh_0, "c_0": dc_0, **grads}, tol=1e-7)
    assert report.passed


@pytest.mark.parametrize("bad, err", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                      (True, TypeError), ("4", TypeError)])
def test_checkpoint_every_bad_values(bad, err):
    x, h_0, c_0, p, _, _, _ = make(4, 1, 2, 3, np.float64, seed=5)
    with pytest.raises(err, match="checkpoint_every"):
        lstm_forward(x, h_0, c_0, **p, checkpoint_every=bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mag", [1e3, 1e4])
def test_saturated_gates_exact_and_silent(dtype, mag):
    # all pre-activations = +-mag: sigmoid gates are exactly 0 or 1 and g exactly +-1
    H = 3
    p = {"weight_ih": np.zeros((4 * H, 1), dtype), "weight_hh": np.zeros((4 * H, H), dtype),
         "bias_ih": np.zeros(4 * H, dtype), "bias_hh": np.zeros(4 * H, dtype)}
    p["bias_ih"][:] = mag  # i = f = o = 1, g = 1
    p["bias_ih"][H : 2 * H] = -mag  # f = 0
    x = np.zeros((2, 1, 1), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, (h_n, c_n), cache = lstm_forward(x, None, np.full((1, H), 5, dtype), **p)
        dx, dh_0, dc_0, grads = lstm_backward(np.ones((2, 1, H), dtype), cache)
    np.testing.assert_array_equal(c_n, 1.0)  # c = 0 * c + 1 * 1
    np.testing.assert_array_equal(h_n, np.tanh(dtype(1)))
    assert all(np.isfinite(v).all() for v in (dx, dh_0, dc_0, *grads.values()))
    np.testing.assert_array_equal(dc_0, 0.0)  # f = 0 cuts the path to c_0


def test_lstm_module_checkpoint_every_gives_bitwise_equal_gradients():
    import numpy as np

    from lstm_bptt import LSTM

    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 3, 4))
    R = rng.normal(size=(11, 3, 5))
    full = LSTM(4, 5, num_layers=2, rng=1)
    ckpt = LSTM(4, 5, num_layers=2, rng=1, checkpoint_every=3)
    _, _, c1 = full.forward(x)
    _, _, c2 = ckpt.forward(x)
    assert c2.layers[0].gates is None  # the activations were not kept
    dx1, (dh1, dc1), g1 = full.backward(R, c1)
    dx2, (dh2, dc2), g2 = ckpt.backward(R, c2)
    assert np.array_equal(dx1, dx2) and np.array_equal(dh1, dh2) and np.array_equal(dc1, dc2)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)


def test_backward_results_do_not_alias_the_reused_workspace():
    import numpy as np

    from lstm_bptt import lstm_backward, lstm_forward
    from lstm_bptt.cells.lstm import release_workspace

    rng = np.random.default_rng(0)
    w = {"weight_ih": rng.normal(size=(12, 4)), "weight_hh": rng.normal(size=(12, 3)),
         "bias_ih": rng.normal(size=12), "bias_hh": rng.normal(size=12)}
    x1, x2 = rng.normal(size=(5, 2, 4)), rng.normal(size=(5, 2, 4))
    R1, R2 = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 3))
    first = lstm_backward(R1, lstm_forward(x1, None, None, **w)[2])
    kept = [np.copy(a) for a in first[:3]] + [{k: v.copy() for k, v in first[3].items()}]
    lstm_backward(R2, lstm_forward(x2, None, None, **w)[2])  # reuses the same scratch
    for a, b in zip(first[:3], kept[:3], strict=True):
        assert np.array_equal(a, b)
    assert all(np.array_equal(first[3][k], kept[3][k]) for k in kept[3])
    release_workspace()
    again = lstm_backward(R1, lstm_forward(x1, None, None, **w)[2])
    assert np.array_equal(again[0], kept[0])


@pytest.mark.parametrize("D", [3, 17])
def test_weight_gradients_in_one_gemm_equal_the_two_gemms(monkeypatch, D):
    """``layer_weight_grads`` takes both weight gradients from one GEMM over [x | h_{t-1}] for
    large layers: forced on for a small one, the gradients are those of the two GEMMs (which
    gradcheck and the PyTorch fixtures test) to float64 rounding, and the rest is bitwise the
    same; a later call's gradients do not change the earlier ones (pooled buffer)."""
    from lstm_bptt.cells import base

    x, h_0, c_0, p, dout, dh_n, dc_n = make(6, 5, D, 7, np.float64, seed=3)
    cache = lstm_forward(x, h_0, c_0, **p)[2]
    monkeypatch.setattr(base, "FUSED_GRAD_MACS", 1 << 62)
    two = lstm_backward(dout, cache, dh_n, dc_n)
    monkeypatch.setattr(base, "FUSED_GRAD_MACS", 0)
    one = lstm_backward(dout, cache, dh_n, dc_n)
    for a, b in zip(one[:3], two[:3], strict=True):
        assert np.array_equal(a, b)
    for key in ("weight_ih", "weight_hh"):
        assert one[3][key].shape == two[3][key].shape
        np.testing.assert_allclose(one[3][key], two[3][key], rtol=1e-13, atol=1e-14)
    kept = {k: v.copy() for k, v in one[3].items()}
    x2 = make(6, 5, D, 7, np.float64, seed=4)[0]
    lstm_backward(dout, lstm_forward(x2, h_0, c_0, **p)[2], dh_n, dc_n)
    assert all(np.array_equal(one[3][k], kept[k]) for k in kept)
