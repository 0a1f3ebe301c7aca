"""Sequence-level LSTM forward: all timesteps of one layer, storing a cache for BPTT.

The math is equations (1)-(6) of :mod:`lstm_bptt.cell`; this module is the fast version:

* the input projection of all T steps is one GEMM, (T*B, D) @ (D, 4H), with both biases added
  once; per step only h @ W_hh^T is computed, into a preallocated buffer;
* the four gates live in one (B, 4H) block. Internally the rows are reordered from PyTorch's
  (i, f, g, o) to (o, i, f, g) so that the three sigmoid gates are one contiguous slice in the
  forward, and the three gates driven by dc (i, f, g) are one contiguous slice in the backward;
  parameters and gradients stay in PyTorch's layout at the API;
* every per-step result is written into arrays of shape (T, B, .) allocated once per call;
* one ``np.tanh`` activates all four gates: sigma(a) = (1 + tanh(a / 2)) / 2, with the halving
  folded into scaled copies of the o, i, f rows of the weights and bias (exact: a power of 2).
  On AVX-512 machines NumPy's tanh is vectorised (SVML) and ~10x cheaper per element than
  :func:`scipy.special.expit`; it saturates at +-1, so no overflow for any finite input;
* optional recomputation (``checkpoint_every=k``): only h and every k-th c are kept, and the
  backward recomputes each segment's forward with the very same operations, so the gradients
  are bitwise those of the stored cache.

Nothing is stored on any object: the returned :class:`LSTMCache` holds everything the backward
pass (:func:`lstm_bptt.bptt.lstm_backward`) needs, so forward may be called any number of times.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, check_shape
from .cell import check_lstm_weights

# Internal gate order (o, i, f, g) as indices into PyTorch's (i, f, g, o) blocks, and back.
TO_INTERNAL = np.array([3, 0, 1, 2])
TO_PYTORCH = np.argsort(TO_INTERNAL)


def to_internal(w: np.ndarray, H: int) -> np.ndarray:
    """Reorder the gate blocks of a (4H, ...) array from (i, f, g, o) to (o, i, f, g) (a copy)."""
    return w.reshape(4, H, *w.shape[1:])[TO_INTERNAL].reshape(w.shape)


def to_pytorch(w: np.ndarray, H: int) -> np.ndarray:
    """Inverse of :func:`to_internal`: (o, i, f, g) blocks back to PyTorch's (i, f, g, o)."""
    return w.reshape(4, H, *w.shape[1:])[TO_PYTORCH].reshape(w.shape)


class LSTMCache(NamedTuple):
    """Everything the BPTT backward of one layer needs; produced by :func:`lstm_forward`.

    Fields (T time, B batch, D input features, H hidden units, k = ``checkpoint_every``):

    x : (T, B, D)
        The layer input (not copied: do not modify it in place before the backward).
    h : (T + 1, B, H)
        Hidden states, ``h[0]`` = h_0, ``h[1:]`` = the layer output.
    c : (T + 1, B, H), or (ceil(T / k) + 1, B, H) with checkpointing
        Cell states, ``c[0]`` = c_0; with checkpointing c at t = 0, k, 2k, ... and c_T last.
    gates : (T, B, 4H) or None
        Post-activation gates in the internal order (o, i, f, g); None with checkpointing.
    tanh_c : (T, B, H) or None
        tanh(c_t) for t = 1..T; None with checkpointing.
    weight_ih : (4H, D), weight_hh : (4H, H)
        The weights in the internal gate order.
    has_bias : bool
        Whether biases were used (their gradients are returned only then).
    bias : (4H,) or None
        b_ih + b_hh in the internal order (needed to recompute a segment), None without bias.
    checkpoint_every : int or None
        k, or None when everything is stored.

    The arrays are marked read-only: the output handed to the user is a view of ``h`` and
    writing into it would silently corrupt the gradients.
    """

    x: np.ndarray
    h: np.ndarray
    c: np.ndarray
    gates: np.ndarray | None
    tanh_c: np.ndarray | None
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool
    bias: np.ndarray | None = None
    checkpoint_every: int | None = None


def _half_sigmoid_rows(H: int, dtype) -> np.ndarray:
    """(4H,) row scales: 1/2 for the sigmoid gates o, i, f, 1 for g (internal order)."""
    scale = np.ones(4 * H, dtype)
    scale[: 3 * H] = 0.5
    return scale


def _projection(x, w_ih, bias, H):
    """Pre-activations without the recurrent term, all steps at once, sigmoid rows halved.

    Returns ``pre`` (T, B, 4H) = (x_t W_ih^T + b) * scale, and the halved recurrent weights are
    made by :func:`_recurrent_weights`. One GEMM, (T*B, D) @ (D, 4H).
    """
    T, B, D = x.shape
    scale = _half_sigmoid_rows(H, x.dtype)
    pre = np.empty((T, B, 4 * H), x.dtype)
    np.matmul(x.reshape(T * B, D), (w_ih * scale[:, None]).T, out=pre.reshape(T * B, 4 * H))
    if bias is not None:
        pre += bias * scale
    return pre


def _recurrent_weights(w_hh, H):
    """(H, 4H) = (W_hh * scale)^T, contiguous, for h_{t-1} @ W_hh^T with the sigmoid rows halved."""
    return np.ascontiguousarray((w_hh * _half_sigmoid_rows(H, w_hh.dtype)[:, None]).T)


def _run_steps(gates, h, c, tanh_c, w_hh_t):
    """The time loop of the forward, in place: n = len(gates) steps.

    gates : (n, B, 4H), pre-activations without the recurrent term on entry (sigmoid rows
        halved), post-activations (o, i, f, g) on exit.
    h, c : (n + 1, B, H); row 0 holds the initial state, rows 1..n are written.
    tanh_c : (n, B, H), written.

    The forward and the recomputation of the checkpointed backward both call this, so a
    recomputed segment is bitwise equal to the original.
    """
    n, B, H4 = gates.shape
    H = H4 // 4
    rec = np.empty((B, H4), gates.dtype)  # h_{t-1} W_hh^T
    ig = np.empty((B, H), gates.dtype)  # i * g
    # A 0-d array of the gates' dtype: a Python float operand costs a type resolution per
    # call (1.1 vs 0.56 us per float32 call at B = 1, where the loop is call-overhead bound).
    half = np.array(0.5, gates.dtype)
    # Per-step views made in C up front (list(arr)): cheaper than indexing inside the loop,
    # which matters when B * H is small and each step is a few microseconds.
    A, S, C, TC, Hs = list(gates), list(gates[:, :, : 3 * H]), list(c), list(tanh_c), list(h)
    o_l, i_l, f_l, g_l = (list(gates[:, :, k * H : (k + 1) * H]) for k in range(4))
    for t in range(n):
        a = A[t]  # (B, 4H)
        np.dot(Hs[t], w_hh_t, out=rec)
        a += rec
        np.tanh(a, out=a)  # g: (3); o, i, f: tanh(a / 2)
        s = S[t]
        np.multiply(s, half, out=s)
        np.add(s, half, out=s)  # sigma(a) = (1 + tanh(a / 2)) / 2: (4), (1), (2)
        np.multiply(f_l[t], C[t], out=C[t + 1])  # f * c
        np.multiply(i_l[t], g_l[t], out=ig)  # i * g
        C[t + 1] += ig  # (5)
        np.tanh(C[t + 1], out=TC[t])
        np.multiply(o_l[t], TC[t], out=Hs[t + 1])  # (6)


def segments(T: int, k: int | None):
    """Start/stop pairs of the checkpoint segments: [(0, k), (k, 2k), ..., (., T)]."""
    k = T if k is None else k
    return [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]


def recompute_segment(cache: LSTMCache, pre: np.ndarray, seg: int):
    """Recompute gates, c and tanh(c) of checkpoint segment ``seg`` (for the backward).

    Parameters
    ----------
    cache : LSTMCache with ``checkpoint_every`` set
    pre : (T, B, 4H)
        :func:`_projection` of the whole input (recomputed once per backward); the segment's
        rows are activated in place and returned as its gates.
    seg : int
        Segment index into :func:`segments`.

    Returns
    -------
    gates : (n, B, 4H), c : (n + 1, B, H) (c[0] = the checkpoint), tanh_c : (n, B, H)
    """
    T, B, _ = cache.x.shape
    H = cache.h.shape[2]
    t0, t1 = segments(T, cache.checkpoint_every)[seg]
    n = t1 - t0
    h = np.empty((n + 1, B, H), pre.dtype)  # scratch: the cache is not written
    c = np.empty((n + 1, B, H), pre.dtype)
    tanh_c = np.empty((n, B, H), pre.dtype)
    h[0] = cache.h[t0]
    c[0] = cache.c[seg]
    gates = pre[t0:t1]
    _run_steps(gates, h, c, tanh_c, _recurrent_weights(cache.weight_hh, H))
    return gates, c, tanh_c


def lstm_forward(x, h_0, c_0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                 checkpoint_every=None):
    """Run one LSTM layer over a whole sequence and keep the cache for BPTT.

    Parameters
    ----------
    x : ndarray (T, B, D), float32 or float64
        Input sequence, time-major.
    h_0, c_0 : ndarray (B, H) or None
        Initial hidden and cell state (None means zeros).
    weight_ih : ndarray (4H, D); weight_hh : ndarray (4H, H)
        Gate weights stacked in PyTorch's order i, f, g, o.
    bias_ih, bias_hh : ndarray (4H,) or None
        Both biases, or both None.
    checkpoint_every : int or None
        If k, keep only h and the cell state every k steps (cache ~H instead of ~7H numbers
        per token); the backward then recomputes each k-step segment's forward (about one
        more forward pass of work) and returns bitwise the same gradients. None keeps all.

    Returns
    -------
    output : ndarray (T, B, H)
        h_1 .. h_T (read-only view into the cache).
    (h_n, c_n) : tuple of ndarray (B, H)
        Final hidden and cell state (read-only views).
    cache : LSTMCache
        Input of :func:`lstm_bptt.bptt.lstm_backward`.

    Raises
    ------
    TypeError
        Non-float, integer or mixed-precision arguments; a non-integer ``checkpoint_every``.
    ValueError
        Wrong rank or shapes (named in the message), NaN/inf in any argument, or
        ``checkpoint_every < 1``.

    Notes
    -----
    Equations (1)-(6) of :mod:`lstm_bptt.cell`, applied for t = 1..T with the pre-activations
    ``a_t = x_t W_ih^T + (b_ih + b_hh) + h_{t-1} W_hh^T``; the first two terms for all t are
    computed by one GEMM before the time loop. The sigmoid gates are computed as
    sigma(a) = (1 + tanh(a / 2)) / 2 (identical function; one tanh call covers all gates).

    References
    ----------
    Hochreiter & Schmidhuber (1997); Gers et al. (2000); PyTorch ``torch.nn.LSTM``;
    Chen et al. (2016), "Training deep nets with sublinear memory cost" (recomputation).
    """
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_lstm_weights(
        weight_ih, weight_hh, bias_ih, bias_hh
    )
    x = as_float_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array (T, B, D) with D = {D}, got shape {x.shape}")
    T, B, _ = x.shape
    check_shape("x", x, (None, None, D), "(T, B, D)", "the last axis must equal input_size")
    if T == 0 or B == 0:
        raise ValueError(f"x: expected T >= 1 and B >= 1, got shape {x.shape}")
    if checkpoint_every is not None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every,
                                                                numbers.Integral):
            raise TypeError(f"checkpoint_every: expected an int or None, "
                            f"got {type(checkpoint_every).__name__}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: expected >= 1, got {checkpoint_every}")
        checkpoint_every = int(checkpoint_every)
    w_ih = to_internal(weight_ih, H)
    w_hh = to_internal(weight_hh, H)
    bias = None if bias_ih is None else to_internal(bias_ih + bias_hh, H)

    h = np.empty((T + 1, B, H), dtype)
    state0 = []
    for name, s0, buf in (("h_0", h_0, h[0]), ("c_0", c_0, np.empty((B, H), dtype))):
        if s0 is None:
            buf[...] = 0
        else:
            s0 = as_float_array(name, s0, dtype)
            check_shape(name, s0, (B, H), "(B, H)")
            buf[...] = s0
        state0.append(buf)

    gates = _projection(x, w_ih, bias, H)  # (T, B, 4H), activated in place by _run_steps
    w_hh_t = _recurrent_weights(w_hh, H)  # (H, 4H)
    if checkpoint_every is None:
        c = np.empty((T + 1, B, H), dtype)
        c[0] = state0[1]
        tanh_c = np.empty((T, B, H), dtype)
        _run_steps(gates, h, c, tanh_c, w_hh_t)
        c_n = c[T]
    else:
        segs = segments(T, checkpoint_every)
        c = np.empty((len(segs) + 1, B, H), dtype)  # c at t = 0, k, 2k, ..., T
        c[0] = state0[1]
        k = checkpoint_every
        c_seg = np.empty((min(k, T) + 1, B, H), dtype)
        tanh_seg = np.empty((min(k, T), B, H), dtype)
        for s, (t0, t1) in enumerate(segs):
            n = t1 - t0
            c_seg[0] = c[s]
            _run_steps(gates[t0:t1], h[t0 : t1 + 1], c_seg[: n + 1], tanh_seg[:n], w_hh_t)
            c[s + 1] = c_seg[n]
        gates = tanh_c = None
        c_n = c[-1]

    for arr in (h, c, gates, tanh_c):
        if arr is not None:
            arr.flags.writeable = False
    cache = LSTMCache(x, h, c, gates, tanh_c, w_ih, w_hh, bias_ih is not None, bias,
                      checkpoint_every)
    return h[1:], (h[T], c_n), cache
