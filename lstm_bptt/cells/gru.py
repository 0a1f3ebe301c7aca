"""GRU: the step reference, the fast sequence forward and its BPTT backward.

Dimension letters: T time, B batch, D input features, H hidden units.

Equations (Cho et al. 2014, arXiv:1406.1078 v3, eqs. 5-8, in the form of PyTorch's
``torch.nn.GRU``, where the reset gate multiplies the recurrent term *after* its bias)::

    r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)              (1) reset gate
    z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)              (2) update gate
    m  = W_hn h + b_hn                                       (3) recurrent part of n
    n  = tanh(W_in x + b_in + r * m)                         (4) candidate
    h' = (1 - z) * n + z * h                                 (5)

Backward, with a_r, a_z, a_n the pre-activations and dh' the gradient arriving at h'::

    dn   = dh' * (1 - z)                 da_n = dn * (1 - n^2)           (5), (4)
    dz   = dh' * (h - n)                 da_z = dz * z (1 - z)           (5), (2)
    dm   = da_n * r                      dr   = da_n * m                 (4)
    da_r = dr * r (1 - r)                                                (1)
    dh   = dh' * z + [da_r, da_z, dm] W_hh                               (5), (1)-(3)
    dx   = [da_r, da_z, da_n] W_ih
    dW_ih = [da_r, da_z, da_n]^T x       db_ih = sum_b [da_r, da_z, da_n]
    dW_hh = [da_r, da_z, dm]^T h         db_hh = sum_b [da_r, da_z, dm]

so b_ih and b_hh get the same gradient in the r and z blocks and different ones in the n block
(b_in is outside r *, b_hn inside). ``weight_ih`` stacks [W_ir; W_iz; W_in] into (3H, D),
``weight_hh`` [W_hr; W_hz; W_hn] into (3H, H), biases (3H,), exactly ``nn.GRU``'s
``weight_ih_l0`` etc.

The step pair :func:`gru_step_forward` / :func:`gru_step_backward` is the readable reference.
:func:`gru_forward` / :func:`gru_backward` compute the same over a whole sequence, fast: one
GEMM for the input projections of all T steps, one recurrent GEMM per step into preallocated
(T, B, .) arrays, sigmoid(a) = (1 + tanh(a / 2)) / 2 (no overflow for any finite input; the
halving is folded into scaled copies of the r and z rows, exact as a power of 2), and in the
backward the weight gradients as single GEMMs over T*B rows after the loop.

References
----------
Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio (2014), "Learning Phrase
Representations using RNN Encoder-Decoder for Statistical Machine Translation",
arXiv:1406.1078v3, section 2.3. PyTorch ``torch.nn.GRU`` documentation (gate order r, z, n and
the placement of b_hn). Chen et al. (2016), "Training deep nets with sublinear memory cost"
(recomputation, ``checkpoint_every``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _blas, _fast, _memory
from .._checks import as_float_array, check_shape
from ..activations import sigmoid
from .base import Cell, check_checkpoint_every, orthogonal, read_only, segments
from .rnn import check_grad, check_recurrent_init, check_sequence, check_weights

# ----------------------------------------------------------------------------- step reference


class GRUStepCache(NamedTuple):
    """What :func:`gru_step_backward` needs: x (B, D), h_prev (B, H), the gates r, z, n
    (B, H, post-activation), m = W_hn h_prev + b_hn (B, H), the weights and whether biases
    were used."""

    x: np.ndarray
    h_prev: np.ndarray
    r: np.ndarray
    z: np.ndarray
    n: np.ndarray
    m: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool


def gru_step_forward(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One GRU step, equations (1)-(5) of the module docstring.

    Parameters
    ----------
    x : ndarray (B, D), float32 or float64
    h_prev : ndarray (B, H), same dtype
    weight_ih : ndarray (3H, D); weight_hh : ndarray (3H, H)
        Gate weights stacked r, z, n (PyTorch layout).
    bias_ih, bias_hh : ndarray (3H,) or None (both or neither)

    Returns
    -------
    h : ndarray (B, H)
    cache : GRUStepCache

    Raises
    ------
    TypeError
        Non-float or mixed-precision arguments.
    ValueError
        Shape mismatches (named in the message) or NaN/inf.
    """
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_weights(
        3, weight_ih, weight_hh, bias_ih, bias_hh)
    x = as_float_array("x", x, dtype)
    check_shape("x", x, (None, D), "(B, D)")
    h_prev = as_float_array("h_prev", h_prev, dtype)
    check_shape("h_prev", h_prev, (x.shape[0], H), "(B, H)")

    gi = x @ weight_ih.T  # (B, 3H) input parts
    gh = h_prev @ weight_hh.T  # (B, 3H) recurrent parts
    if bias_ih is not None:
        gi += bias_ih
        gh += bias_hh
    r = sigmoid(gi[:, :H] + gh[:, :H])  # (1)
    z = sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])  # (2)
    m = gh[:, 2 * H :]  # (3)
    n = np.tanh(gi[:, 2 * H :] + r * m)  # (4)
    h = (1 - z) * n + z * h_prev  # (5)
    return h, GRUStepCache(x, h_prev, r, z, n, m, weight_ih, weight_hh, bias_ih is not None)


def gru_step_backward(dh, cache: GRUStepCache):
    """Backward of one GRU step, the backward equations of the module docstring.

    Parameters
    ----------
    dh : ndarray (B, H)
        dL/dh for this step's output.
    cache : GRUStepCache
        From :func:`gru_step_forward`; not modified.

    Returns
    -------
    dx : ndarray (B, D)
    dh_prev : ndarray (B, H)
    grads : dict
        ``weight_ih`` (3H, D), ``weight_hh`` (3H, H) and, with biases, ``bias_ih``, ``bias_hh``
        (3H,), gates r, z, n.
    """
    x, h_prev, r, z, n, m, weight_ih, weight_hh, has_bias = cache
    dh = as_float_array("dh", dh, h_prev.dtype)
    check_shape("dh", dh, h_prev.shape, "(B, H)")
    dn = dh * (1 - z)  # through (5)
    dz = dh * (h_prev - n)  # through (5)
    da_n = dn * (1 - n**2)  # through (4)
    dm = da_n * r  # through (4) to the recurrent part
    dr = da_n * m  # through (4) to the reset gate
    da_r = dr * r * (1 - r)  # through (1)
    da_z = dz * z * (1 - z)  # through (2)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H) input-side pre-activations
    dgh = np.concatenate([da_r, da_z, dm], axis=1)  # (B, 3H) recurrent-side
    dx = dgi @ weight_ih  # (B, D)
    dh_prev = dh * z + dgh @ weight_hh  # through (5) directly and through (1)-(3)
    grads = {"weight_ih": dgi.T @ x, "weight_hh": dgh.T @ h_prev}
    if has_bias:
        grads["bias_ih"] = dgi.sum(axis=0)
        grads["bias_hh"] = dgh.sum(axis=0)
    return dx, dh_prev, grads


# ----------------------------------------------------------------------------- fast sequence


class GRUCache(NamedTuple):
    """Everything :func:`gru_backward` needs; produced by :func:`gru_forward`.

    Fields (k = ``checkpoint_every``):

    x : (T, B, D)
        The layer input (not copied: do not modify it in place before the backward).
    h : (T + 1, B, H)
        ``h[0]`` = h_0, ``h[1:]`` = the output.
    gates : (T, B, 3H) or None
        Post-activation r, z, n (PyTorch order); None with checkpointing.
    m : (T, B, H) or None
        W_hn h_{t-1} + b_hn; None with checkpointing.
    weight_ih : (3H, D), weight_hh : (3H, H)
    bias_ih, bias_hh : (3H,) or None
    checkpoint_every : int or None
        With k, the gates are recomputed in the backward, segment by segment, from the stored
        h by the very same operations (bitwise equal gradients).

    The arrays are read-only: the output is a view of ``h``.
    """

    x: np.ndarray
    h: np.ndarray
    gates: np.ndarray | None
    m: np.ndarray | None
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray | None
    bias_hh: np.ndarray | None
    checkpoint_every: int | None = None


def _sigmoid_scale(H, dtype):
    """(3H,) row scales: 1/2 for the sigmoid gates r, z, 1 for n."""
    s = np.ones(3 * H, dtype)
    s[: 2 * H] = 0.5
    return s


def _projection(x, w_ih, b_ih, b_hh, H):
    """(T, B, 3H) input pre-activations for all steps in one GEMM, r and z rows halved.

    r, z rows hold (x W_i^T + b_i + b_h) / 2; the n rows hold x W_in^T + b_in (b_hn belongs
    inside r * (.), equation (4), and is added per step)."""
    T, B, D = x.shape
    scale = _sigmoid_scale(H, x.dtype)
    pre = _memory.empty((T, B, 3 * H), x.dtype)
    np.matmul(x.reshape(T * B, D), (w_ih * scale[:, None]).T, out=pre.reshape(T * B, 3 * H))
    if b_ih is not None:
        b = b_ih.copy()
        b[: 2 * H] += b_hh[: 2 * H]
        pre += b * scale
    return pre


def _run_steps(gates, h, m, w_hh_t, b_hn):
    """The time loop of the forward, in place, over n = len(gates) steps.

    gates : (n, B, 3H): :func:`_projection` rows on entry, post-activation r, z, n on exit.
    h : (n + 1, B, H): row 0 holds h_0, rows 1..n are written.
    m : (n, B, H): written, W_hn h_{t-1} + b_hn.
    w_hh_t : (H, 3H) = (W_hh * scale)^T; b_hn : (H,) or None.

    Forward and the recomputation of the checkpointed backward both call this, so a
    recomputed segment is bitwise equal to the original. With the compiled path on
    (:mod:`lstm_bptt._fast`) the loop is the kernel ``gru_forward_steps``.
    """
    kernels = _fast.kernels(gates.shape[1] * w_hh_t.size)
    blocks = _blas.step_blocks(w_hh_t, gates.shape[1])  # the per-step GEMM by column blocks
    if kernels is not None:
        return kernels.gru_forward_steps(gates, h, m, w_hh_t, b_hn,
                                         *_blas.step_plan(gates.shape[1], w_hh_t, blocks))
    n, B, H3 = gates.shape
    H = H3 // 3
    dtype = gates.dtype
    rec = np.empty((B, H3), dtype)  # h_{t-1} (W_hh * scale)^T
    recurrent = _blas.StepProduct(w_hh_t, B, blocks)
    half = np.array(0.5, dtype)  # 0-d: no per-call type resolution of a Python float
    RZ, N = list(gates[:, :, : 2 * H]), list(gates[:, :, 2 * H :])
    R, Z = list(gates[:, :, :H]), list(gates[:, :, H : 2 * H])
    M, Hs = list(m), list(h)
    rec_rz, rec_n = rec[:, : 2 * H], rec[:, 2 * H :]
    for t in range(n):
        recurrent(Hs[t], rec)
        rz = RZ[t]
        rz += rec_rz
        np.tanh(rz, out=rz)
        np.multiply(rz, half, out=rz)
        np.add(rz, half, out=rz)  # sigma(a) = (1 + tanh(a / 2)) / 2: (1), (2)
        if b_hn is None:
            M[t][...] = rec_n
        else:
            np.add(rec_n, b_hn, out=M[t])  # (3)
        np.multiply(R[t], M[t], out=rec_n)  # r * m (rec_n is free now)
        N[t] += rec_n
        np.tanh(N[t], out=N[t])  # (4)
        np.subtract(Hs[t], N[t], out=Hs[t + 1])
        Hs[t + 1] *= Z[t]
        Hs[t + 1] += N[t]  # (5): h' = n + z (h - n)


def gru_forward(x, h_0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                checkpoint_every=None):
    """Run one GRU layer over a whole sequence, keeping the cache for BPTT.

    Parameters
    ----------
    x : ndarray (T, B, D), float32 or float64
    h_0 : ndarray (B, H) or None (zeros)
    weight_ih : ndarray (3H, D); weight_hh : ndarray (3H, H)
        Gates stacked r, z, n (PyTorch layout).
    bias_ih, bias_hh : ndarray (3H,) or None (both or neither)
    checkpoint_every : int or None
        If k, keep only h (H numbers per token instead of 5H) and recompute the gates of each
        k-step segment in the backward; gradients are bitwise the same.

    Returns
    -------
    output : ndarray (T, B, H)
        h_1 .. h_T (read-only view into the cache).
    h_n : ndarray (B, H)
    cache : GRUCache

    Raises
    ------
    TypeError
        Non-float or mixed-precision arguments; non-integer ``checkpoint_every``.
    ValueError
        Wrong rank or shapes (named in the message), NaN/inf, ``checkpoint_every < 1``.

    Notes
    -----
    Equations (1)-(5) of the module docstring for t = 1..T.
    """
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_weights(
        3, weight_ih, weight_hh, bias_ih, bias_hh)
    x, h_0, T, B = check_sequence(x, h_0, D, H, dtype)
    k = check_checkpoint_every(checkpoint_every)
    h = _memory.empty((T + 1, B, H), dtype)
    h[0] = 0 if h_0 is None else h_0
    gates = _projection(x, weight_ih, bias_ih, bias_hh, H)  # activated in place
    w_hh_t = np.ascontiguousarray((weight_hh * _sigmoid_scale(H, dtype)[:, None]).T)  # (H, 3H)
    b_hn = None if bias_hh is None else bias_hh[2 * H :]
    if k is None:
        m = _memory.empty((T, B, H), dtype)
        _run_steps(gates, h, m, w_hh_t, b_hn)
    else:
        m_seg = np.empty((min(k, T), B, H), dtype)
        for t0, t1 in segments(T, k):
            _run_steps(gates[t0:t1], h[t0 : t1 + 1], m_seg[: t1 - t0], w_hh_t, b_hn)
        gates = m = None
    read_only(h, gates, m)
    cache = GRUCache(x, h, gates, m, weight_ih, weight_hh, bias_ih, bias_hh, k)
    return h[1:], h[T], cache


def gru_backward(doutput, cache: GRUCache, dh_n=None, *, need_dx: bool = True):
    """Gradients of a scalar loss through one GRU layer over the whole sequence (full BPTT).

    Parameters
    ----------
    doutput : ndarray (T, B, H) or None
        dL/d output_t (None: the loss reads only h_n).
    cache : GRUCache
        From :func:`gru_forward`; not modified.
    dh_n : ndarray (B, H) or None
        dL/dh_T from later (next chunk, a head on the final state); None means zero.
    need_dx : bool
        False skips the (T*B, 3H) @ (3H, D) GEMM of the input gradient; ``dx`` is then None.

    Returns
    -------
    dx : ndarray (T, B, D) or None
    dh_0 : ndarray (B, H)
    grads : dict
        ``weight_ih`` (3H, D), ``weight_hh`` (3H, H) and, with biases, ``bias_ih``, ``bias_hh``
        (3H,), gates r, z, n.

    Raises
    ------
    TypeError
        A gradient of another dtype than the forward.
    ValueError
        Gradients of the wrong shape, or containing NaN/inf.

    Notes
    -----
    ``for t in reversed(range(T))``, carrying dh from step t + 1, the backward equations of the
    module docstring with dh' = doutput_t + dh. The factors that do not depend on the carried
    gradient are computed for all steps of a segment before its loop::

        P_n = (1 - z)(1 - n^2)      da_n = dh' * P_n
        P_z = (h - n) z (1 - z)     da_z = dh' * P_z
        P_r = m r (1 - r)           da_r = da_n * P_r,   dm = da_n * r

    Per row the work buffer holds [da_n | da_r | da_z | dm], so that [da_n, da_r, da_z] (the
    input side, blocks reordered n, r, z) and [da_r, da_z, dm] (the recurrent side, r, z, n)
    are both contiguous slices: dW_ih, dW_hh, the biases and dx are single GEMMs or sums over
    T*B rows after the loop.
    """
    x, h, gates, m, w_ih, w_hh, b_ih, b_hh, k = cache
    T, B, D = x.shape
    H = h.shape[2]
    dtype = h.dtype
    doutput = check_grad("doutput", doutput, (T, B, H), "(T, B, H)", dtype)
    dh_n = check_grad("dh_n", dh_n, (B, H), "(B, H)", dtype)
    dh = np.zeros((B, H), dtype) if dh_n is None else dh_n.copy()
    work = np.empty((T, B, 4 * H), dtype)  # per row [da_n | da_r | da_z | dm]
    if k is not None:
        pre = _projection(x, w_ih, b_ih, b_hh, H)
        w_hh_t = np.ascontiguousarray((w_hh * _sigmoid_scale(H, dtype)[:, None]).T)
        b_hn = None if b_hh is None else b_hh[2 * H :]
        m_seg = np.empty((min(k, T), B, H), dtype)
        h_seg = np.empty((min(k, T) + 1, B, H), dtype)  # scratch: the cache is not written
    for t0, t1 in reversed(segments(T, k)):
        if k is None:
            g_s, m_s = gates, m
        else:
            h_seg[0] = h[t0]
            g_s, m_s = pre[t0:t1], m_seg[: t1 - t0]
            _run_steps(g_s, h_seg[: t1 - t0 + 1], m_s, w_hh_t, b_hn)
        dh = _backward_steps(g_s, m_s, h[t0 : t1 + 1], w_hh, work[t0:t1],
                             None if doutput is None else doutput[t0:t1], dh)

    # (T*B, 3H) views with row stride 4H: input side (n, r, z), recurrent side (r, z, n)
    dgi = work[:, :, : 3 * H].reshape(T * B, 3 * H)
    dgh = work[:, :, H:].reshape(T * B, 3 * H)
    nrz = np.r_[np.arange(2 * H, 3 * H), np.arange(2 * H)]  # W_ih rows in the order n, r, z
    dx = None
    if need_dx:  # (T*B, 3H) @ (3H, D)
        dx = _blas.matmul_rows(dgi, w_ih[nrz], np.empty((T * B, D), dtype)).reshape(T, B, D)
    rzn = np.r_[np.arange(H, 3 * H), np.arange(H)]  # back to r, z, n
    grads = {
        "weight_ih": (dgi.T @ x.reshape(T * B, D))[rzn],  # (3H, T*B) @ (T*B, D)
        "weight_hh": dgh.T @ h[:-1].reshape(T * B, H),  # (3H, T*B) @ (T*B, H)
    }
    if b_ih is not None:
        grads["bias_ih"] = dgi.sum(axis=0)[rzn]
        grads["bias_hh"] = dgh.sum(axis=0)
    return dx, dh, grads


def _backward_steps(gates, m, h, w_hh, work, doutput, dh):
    """BPTT over n consecutive steps (one segment, or the whole sequence).

    gates : (n, B, 3H) r, z, n; m : (n, B, H); h : (n + 1, B, H) (h[0] = the state before);
    w_hh : (3H, H); work : (n, B, 4H), written [da_n | da_r | da_z | dm] per row;
    doutput : (n, B, H) or None; dh : (B, H) carried in from step n (not modified).
    Returns dh carried out to the step before the segment. With the compiled path on, the
    loop is the kernel ``gru_backward_steps``.
    """
    kernels = _fast.kernels(gates.shape[1] * w_hh.size)
    w_hh = np.ascontiguousarray(w_hh)
    blocks = _blas.step_blocks(w_hh, gates.shape[1])  # dh = [...] W_hh by column blocks
    if kernels is not None:
        return kernels.gru_backward_steps(gates, m, h, w_hh, work, doutput, dh,
                                          *_blas.step_plan(gates.shape[1], w_hh, blocks))
    n, B, H3 = gates.shape
    H = H3 // 3
    dtype = gates.dtype
    r, z, nn = gates[:, :, :H], gates[:, :, H : 2 * H], gates[:, :, 2 * H :]
    one = np.array(1, dtype)
    # Factors [P_n, P_r, P_z, r] laid out like a work row ([da_n | da_r | da_z | dm]), so each
    # step writes two strided (B, 2, H) blocks of it; computed for a chunk of m steps at a
    # time, small enough to stay in cache (about 2^14 numbers per (B, H) plane, as the LSTM).
    m_ = max(1, min(n, 2**14 // (B * H)))
    P = np.empty((m_, B, 4, H), dtype)
    tmp = np.empty((m_, B, H), dtype)
    W4 = list(work.reshape(n, B, 4, H))
    Zl = list(z)
    dgh = list(work[:, :, H:])  # [da_r, da_z, dm], (B, 3H)
    douts = None if doutput is None else list(doutput)
    dh_t = np.empty((B, H), dtype)
    dh_t3 = dh_t[:, None, :]
    dz = np.empty((B, H), dtype)
    recurrent = _blas.StepProduct(w_hh, B, blocks)
    dh_bufs = (np.empty((B, H), dtype), np.empty((B, H), dtype))  # dh_{t-1}, alternately
    j = 0
    for s1 in range(n, 0, -m_):
        s0 = max(0, s1 - m_)
        q = s1 - s0
        rc, zc, nc, tm = r[s0:s1], z[s0:s1], nn[s0:s1], tmp[:q]
        np.multiply(nc, nc, out=P[:q, :, 0])
        np.subtract(one, P[:q, :, 0], out=P[:q, :, 0])
        np.subtract(one, zc, out=tm)
        P[:q, :, 0] *= tm  # P_n = (1 - z)(1 - n^2)
        tm *= zc  # z (1 - z)
        np.subtract(h[s0:s1], nc, out=P[:q, :, 2])
        P[:q, :, 2] *= tm  # P_z = (h - n) (z (1 - z))
        np.subtract(one, rc, out=tm)
        tm *= rc  # r (1 - r)
        np.multiply(m[s0:s1], tm, out=P[:q, :, 1])  # P_r = m (r (1 - r))
        P[:q, :, 3] = rc  # dm = da_n * r
        Pl = list(P[:q])
        for t in reversed(range(s0, s1)):
            if douts is not None:
                np.add(douts[t], dh, out=dh_t)  # dh': output gradient plus the carried one
            else:
                dh_t[...] = dh
            w4, pt = W4[t], Pl[t - s0]
            np.multiply(dh_t3, pt[:, 0::2], out=w4[:, 0::2])  # da_n, da_z: (5), (4), (2)
            np.multiply(w4[:, 0:1], pt[:, 1::2], out=w4[:, 1::2])  # da_r, dm: (4), (1)
            dh = recurrent(dgh[t], dh_bufs[j % 2])  # (B, 3H) @ (3H, H): through (1)-(3)
            j += 1
            np.multiply(dh_t, Zl[t], out=dz)
            dh += dz  # through (5) directly
    return dh


# ----------------------------------------------------------------------------- the cell


class GRUCell(Cell):
    """The GRU behind the common cell interface (PyTorch ``nn.GRU`` layout, gates r, z, n).

    Stateless; state tuple ``(h,)`` with h (B, H). Parameters ``weight_ih`` (3H, D),
    ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh`` (3H,), blocks r, z, n.

    Init options (keyword arguments of :meth:`init_params` and of the layer
    :class:`lstm_bptt.recurrent.GRU`):

    recurrent_init : {"uniform", "orthogonal"}
        "uniform" is PyTorch's U(-1/sqrt(H), 1/sqrt(H)); "orthogonal" replaces each (H, H)
        block of ``weight_hh`` by an independent random orthogonal matrix (Saxe et al. 2014).

    ``per_step`` returns ``h``, ``r``, ``z``, ``n`` (T, B, H) (recomputed when the forward
    used ``checkpoint_every``).
    """

    name = "gru"
    state_names = ("h",)
    num_gates = 3
    gate_names = ("r", "z", "n")
    init_option_names = ("recurrent_init",)

    def check_init_options(self, bias, recurrent_init="uniform", **unknown):
        super().check_init_options(bias, **unknown)
        return {"recurrent_init": check_recurrent_init(recurrent_init,
                                                       ("uniform", "orthogonal"))}

    def init_params(self, input_size, hidden_size, bias, dtype, rng, **init):
        opts = self.check_init_options(bias, **init)
        H = hidden_size
        params = self.uniform_params(input_size, hidden_size, bias, dtype, rng)
        if opts["recurrent_init"] == "orthogonal":
            for gate in range(3):
                params["weight_hh"][gate * H : (gate + 1) * H] = orthogonal(rng, H, dtype)
        return params

    def step_forward(self, x, state, params):
        h, cache = gru_step_forward(x, state[0], params["weight_ih"], params["weight_hh"],
                                    params.get("bias_ih"), params.get("bias_hh"))
        return (h,), cache

    def step_backward(self, dstate, step_cache):
        dh = dstate[0]
        dx, dh_prev, grads = gru_step_backward(
            np.zeros_like(step_cache.h_prev) if dh is None else dh, step_cache)
        return dx, (dh_prev,), grads

    def forward(self, x, state0, params, *, checkpoint_every=None):
        h_0 = None if state0 is None else state0[0]
        output, h_n, cache = gru_forward(x, h_0, params["weight_ih"], params["weight_hh"],
                                         params.get("bias_ih"), params.get("bias_hh"),
                                         checkpoint_every=checkpoint_every)
        return output, (h_n,), cache

    def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
        dh_n = None if dstate_n is None else dstate_n[0]
        dx, dh_0, grads = gru_backward(doutput, cache, dh_n, need_dx=need_dx)
        return dx, (dh_0,), grads

    def per_step(self, cache):
        """``h``, ``r``, ``z``, ``n``, each (T, B, H), post-activation, PyTorch's order."""
        gates = cache.gates
        if gates is None:  # checkpointed: recompute every segment from the stored h
            gates = _recompute_gates(cache)
        H = cache.h.shape[2]
        return {"h": cache.h[1:], "r": gates[:, :, :H], "z": gates[:, :, H : 2 * H],
                "n": gates[:, :, 2 * H :]}


def _recompute_gates(cache):
    """(T, B, 3H) gates of a checkpointed cache, by the forward's own operations (bitwise)."""
    x, h, _, _, w_ih, w_hh, b_ih, b_hh, k = cache
    T, B, _ = x.shape
    H = h.shape[2]
    gates = _projection(x, w_ih, b_ih, b_hh, H)
    w_hh_t = np.ascontiguousarray((w_hh * _sigmoid_scale(H, x.dtype)[:, None]).T)
    b_hn = None if b_hh is None else b_hh[2 * H :]
    m = np.empty((T, B, H), x.dtype)
    h_seg = np.empty((min(k, T) + 1, B, H), x.dtype)
    for t0, t1 in segments(T, k):
        h_seg[0] = h[t0]
        _run_steps(gates[t0:t1], h_seg[: t1 - t0 + 1], m[t0:t1], w_hh_t, b_hn)
    return gates
