"""Backpropagation through time for one LSTM layer, written by hand.

:func:`lstm_backward` consumes only the :class:`~lstm_bptt.lstm.LSTMCache` of
:func:`~lstm_bptt.lstm.lstm_forward`. It walks ``for t in reversed(range(T))`` carrying
``dh`` and ``dc`` (the gradient arriving from step t + 1), as in Werbos (1990), "Backpropagation
through time: what it does and how to do it", and Graves (2012), "Supervised Sequence Labelling
with Recurrent Neural Networks", section 4.6 (equations for the LSTM backward pass).

Speed: every factor that does not depend on the carried gradient (sigma' = s (1 - s),
tanh' = 1 - t^2 and the products with the other gates) is computed for all T at once before
the loop and laid out so that each step is four NumPy calls plus one GEMM (see
:func:`_backward_steps`). The weight gradients, bias gradients and dx are single GEMMs or
reductions over all T*B rows after the loop.
"""

from __future__ import annotations

import threading

import numpy as np

from ._checks import as_float_array, check_shape
from .lstm import LSTMCache, _projection, recompute_segment, segments, to_pytorch

_WORKSPACE = threading.local()


def _workspace(shape: tuple, dtype) -> np.ndarray:
    """Scratch for the backward's per-step rows, reused across calls (one per thread).

    It is the largest temporary of the backward (6H numbers per token: 157 MB for T = 50,
    B = 128, H = 512 in float64). Allocating it afresh every call costs page faults: for that
    size ~0.3 s of system time per call, 15 % of the step. Nothing returned by
    :func:`lstm_backward` aliases it. :func:`release_workspace` frees it.
    """
    n = int(np.prod(shape))
    buf = getattr(_WORKSPACE, "buf", None)
    if buf is None or buf.dtype != dtype or buf.size < n:
        buf = _WORKSPACE.buf = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def release_workspace() -> None:
    """Free this thread's backward scratch buffer (it is re-created on the next backward)."""
    _WORKSPACE.buf = None


def lstm_backward(doutput, cache: LSTMCache, dh_n=None, dc_n=None, *, need_dx: bool = True):
    """Gradients of a scalar loss through one LSTM layer over the whole sequence (full BPTT).

    Parameters
    ----------
    doutput : ndarray (T, B, H) or None
        dL/d output_t for every step (None means the loss does not depend on the outputs,
        only on ``dh_n``/``dc_n``).
    cache : LSTMCache
        From :func:`lstm_bptt.lstm.lstm_forward`; not modified.
    dh_n, dc_n : ndarray (B, H) or None
        dL/dh_T and dL/dc_T arriving from later (e.g. the next chunk of a longer sequence, or
        a head that reads the final state). None means zero.
    need_dx : bool
        Compute dx. False skips one (T*B, 4H) @ (4H, D) GEMM when the input needs no gradient
        (e.g. one-hot characters); ``dx`` is then None.

    Returns
    -------
    dx : ndarray (T, B, D), or None if not ``need_dx``
    dh_0, dc_0 : ndarray (B, H)
    grads : dict
        ``weight_ih`` (4H, D), ``weight_hh`` (4H, H) and, if the forward used biases,
        ``bias_ih`` and ``bias_hh`` (4H,), in PyTorch's gate order i, f, g, o.

    Raises
    ------
    TypeError
        A gradient of another dtype than the forward.
    ValueError
        Gradients of the wrong shape, or containing NaN/inf.

    Notes
    -----
    With internal gates (o, i, f, g), at step t (1-based, h_t = output_t)::

        dh_t  = doutput_t + dh                     (dh carried from step t + 1)
        da_o  = dh_t * tanh(c_t) * o (1 - o)
        dc_t  = dc + dh_t * o * (1 - tanh(c_t)^2)   (dc carried from step t + 1)
        da_i  = dc_t * g * i (1 - i)
        da_f  = dc_t * c_{t-1} * f (1 - f)
        da_g  = dc_t * i * (1 - g^2)
        dc    = dc_t * f                            (carried to step t - 1)
        dh    = da_t @ W_hh                         (carried to step t - 1)

    and after the loop dW_ih = sum_t da_t^T x_t, dW_hh = sum_t da_t^T h_{t-1},
    db = sum_{t,b} da_t, dx_t = da_t @ W_ih.
    """
    x, h, c, gates, tanh_c, w_ih, w_hh, has_bias, bias, k = cache
    T, B, D = x.shape
    H = h.shape[2]
    dtype = h.dtype
    if doutput is not None:
        doutput = as_float_array("doutput", doutput, dtype)
        check_shape("doutput", doutput, (T, B, H), "(T, B, H)")
    dh = np.zeros((B, H), dtype)
    dc = np.zeros((B, H), dtype)
    for name, given, buf in (("dh_n", dh_n, dh), ("dc_n", dc_n, dc)):
        if given is not None:
            given = as_float_array(name, given, dtype)
            check_shape(name, given, (B, H), "(B, H)")
            buf[...] = given

    # Per step and row: [u | da_o | da_i | da_f | da_g | dc_prev], u = dh_t * dtanh/dc scratch
    work = _workspace((T, B, 6 * H), dtype)
    pre = None if k is None else _projection(x, w_ih, bias, H)  # recomputation input
    segs = segments(T, k)
    for s in reversed(range(len(segs))):
        t0, t1 = segs[s]
        if k is None:
            g_s, c_s, tc_s = gates, c, tanh_c
        else:
            g_s, c_s, tc_s = recompute_segment(cache, pre, s)
        dh, dc = _backward_steps(g_s, c_s, tc_s, w_hh, work[t0:t1],
                                 None if doutput is None else doutput[t0:t1], dh, dc)
    del pre
    dc = dc.copy()  # a view into `work`

    da = work[:, :, H : 5 * H].reshape(T * B, 4 * H)  # (T*B, 4H), row stride 6H
    dx = (da @ w_ih).reshape(T, B, D) if need_dx else None  # (T*B, 4H) @ (4H, D)
    # (x^T da)^T rather than da^T x: the same numbers, but OpenBLAS runs this layout about 15%
    # faster in float64 for these tall (T*B rows) products (benchmarks/README.md).
    grads = {
        "weight_ih": to_pytorch((x.reshape(T * B, D).T @ da).T, H),  # (4H, D)
        "weight_hh": to_pytorch((h[:-1].reshape(T * B, H).T @ da).T, H),  # (4H, H)
    }
    if has_bias:
        db = to_pytorch(da.sum(axis=0), H)  # (4H,)
        grads["bias_ih"] = db
        grads["bias_hh"] = db.copy()
    return dx, dh, dc, grads


def _backward_steps(gates, c, tanh_c, w_hh, work, doutput, dh, dc):
    """BPTT over n consecutive steps (one checkpoint segment, or the whole sequence).

    Parameters
    ----------
    gates : (n, B, 4H) post-activations (o, i, f, g); c : (n + 1, B, H); tanh_c : (n, B, H)
    w_hh : (4H, H), internal order
    work : (n, B, 6H), written: per row [u, da_o, da_i, da_f, da_g, dc_{t-1}]
    doutput : (n, B, H) or None
    dh, dc : (B, H), carried in from step n (not modified)

    Returns
    -------
    dh, dc : (B, H), carried out to the step before the segment (dc is a view into ``work``).

    Notes
    -----
    With Q = [o (1 - tanh_c^2), tanh_c o (1 - o)] and P = [g i (1 - i), c_prev f (1 - f),
    i (1 - g^2), f] precomputed for a chunk of steps, one step is::

        dh_t = doutput_t + dh
        [u, da_o] = dh_t * Q_t
        u += dc                                  (u is now dc_t)
        [da_i, da_f, da_g, dc] = dc_t * P_t      (dc is now dc_{t-1})
        dh = da_t @ W_hh                         (dh_{t-1})
    """
    n, B, H4 = gates.shape
    H = H4 // 4
    dtype = gates.dtype
    o, i, f, g = (gates[:, :, k * H : (k + 1) * H] for k in range(4))
    # The factors are computed for a chunk of steps at a time, small enough to stay in cache
    # (about 2^14 numbers per (B, H) plane); elementwise IEEE ops do not depend on the chunking.
    m = max(1, min(n, 2**14 // (B * H)))
    Q = np.empty((m, B, 2, H), dtype)
    P = np.empty((m, B, 4, H), dtype)
    tmp = np.empty((m, B, H), dtype)
    # per-step views made in C up front (cheaper than indexing inside the loop)
    w2 = list(work[:, :, : 2 * H].reshape(n, B, 2, H))  # [u, da_o]
    w4 = list(work[:, :, 2 * H :].reshape(n, B, 4, H))  # [da_i, da_f, da_g, dc_{t-1}]
    u = list(work[:, :, :H])
    u3 = list(work[:, :, None, :H])  # u as (B, 1, H), broadcast against P
    dcs = list(work[:, :, 5 * H :])
    da = list(work[:, :, H : 5 * H])
    Ql, Pl = list(Q), list(P)
    douts = None if doutput is None else list(doutput)
    dh_t = np.empty((B, H), dtype)
    dh_t3 = dh_t[:, None, :]
    dh_bufs = (np.empty((B, H), dtype), np.empty((B, H), dtype))  # dh_{t-1}, alternating
    j = 0
    for s1 in range(n, 0, -m):
        s0 = max(0, s1 - m)
        r = s1 - s0
        q0, q1, p0, p1, p2, tm = Q[:r, :, 0], Q[:r, :, 1], P[:r, :, 0], P[:r, :, 1], \
            P[:r, :, 2], tmp[:r]
        oc, ic, fc, gc, tcc = o[s0:s1], i[s0:s1], f[s0:s1], g[s0:s1], tanh_c[s0:s1]
        np.multiply(tcc, tcc, out=tm)
        np.subtract(1, tm, out=tm)
        np.multiply(tm, oc, out=q0)  # dc_t / dh_t = o (1 - tanh_c^2), through (6)
        np.subtract(1, oc, out=tm)
        np.multiply(tcc, oc, out=q1)
        q1 *= tm  # da_o / dh_t = tanh_c o (1 - o)
        np.subtract(1, ic, out=tm)
        np.multiply(gc, ic, out=p0)
        p0 *= tm  # da_i / dc_t = g i (1 - i)
        np.subtract(1, fc, out=tm)
        np.multiply(c[s0:s1], fc, out=p1)
        p1 *= tm  # da_f / dc_t = c_prev f (1 - f)
        np.multiply(gc, gc, out=tm)
        np.subtract(1, tm, out=tm)
        np.multiply(ic, tm, out=p2)  # da_g / dc_t = i (1 - g^2)
        P[:r, :, 3] = fc  # dc_{t-1} / dc_t = f
        for t in reversed(range(s0, s1)):
            if douts is not None:
                np.add(douts[t], dh, out=dh_t)  # output gradient plus carried dh
            else:
                dh_t[...] = dh
            np.multiply(dh_t3, Ql[t - s0], out=w2[t])  # u, da_o
            u[t] += dc  # dc_t
            np.multiply(u3[t], Pl[t - s0], out=w4[t])  # da_i, da_f, da_g, dc_{t-1}
            dc = dcs[t]
            dh = dh_bufs[j % 2]
            j += 1
            np.dot(da[t], w_hh, out=dh)  # dh_{t-1}
    return dh, dc
