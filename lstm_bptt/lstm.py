"""Sequence-level LSTM forward: all timesteps of one layer, storing a cache for BPTT.

The math is equations (1)-(6) of :mod:`lstm_bptt.cell`; this module is the fast version:

* the input projection of all T steps is one GEMM, (T*B, D) @ (D, 4H), with both biases added
  once; per step only h @ W_hh^T is computed, into a preallocated buffer;
* the four gates live in one (B, 4H) block. Internally the rows are reordered from PyTorch's
  (i, f, g, o) to (o, i, f, g) so that the three sigmoid gates are one contiguous slice in the
  forward, and the three gates driven by dc (i, f, g) are one contiguous slice in the backward;
  parameters and gradients stay in PyTorch's layout at the API;
* every per-step result is written into arrays of shape (T, B, .) allocated once per call.

Nothing is stored on any object: the returned :class:`LSTMCache` holds everything the backward
pass (:func:`lstm_bptt.bptt.lstm_backward`) needs, so forward may be called any number of times.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit

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

    Fields (T time, B batch, D input features, H hidden units):

    x : (T, B, D)
        The layer input (not copied: do not modify it in place before the backward).
    h : (T + 1, B, H)
        Hidden states, ``h[0]`` = h_0, ``h[1:]`` = the layer output.
    c : (T + 1, B, H)
        Cell states, ``c[0]`` = c_0.
    gates : (T, B, 4H)
        Post-activation gates in the internal order (o, i, f, g).
    tanh_c : (T, B, H)
        tanh(c_t) for t = 1..T.
    weight_ih : (4H, D), weight_hh : (4H, H)
        The weights in the internal gate order.
    has_bias : bool
        Whether biases were used (their gradients are returned only then).

    The arrays are marked read-only: the output handed to the user is a view of ``h`` and
    writing into it would silently corrupt the gradients.
    """

    x: np.ndarray
    h: np.ndarray
    c: np.ndarray
    gates: np.ndarray
    tanh_c: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool


def lstm_forward(x, h_0, c_0, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
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
        Non-float, integer or mixed-precision arguments.
    ValueError
        Wrong rank or shapes (named in the message), or NaN/inf in any argument.

    Notes
    -----
    Equations (1)-(6) of :mod:`lstm_bptt.cell`, applied for t = 1..T with the pre-activations
    ``a_t = x_t W_ih^T + (b_ih + b_hh) + h_{t-1} W_hh^T``; the first two terms for all t are
    computed by one GEMM before the time loop.

    References
    ----------
    Hochreiter & Schmidhuber (1997); Gers et al. (2000); PyTorch ``torch.nn.LSTM``.
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
    w_ih = to_internal(weight_ih, H)
    w_hh_t = np.ascontiguousarray(to_internal(weight_hh, H).T)  # (H, 4H)

    h = np.empty((T + 1, B, H), dtype)
    c = np.empty((T + 1, B, H), dtype)
    for name, s0, buf in (("h_0", h_0, h), ("c_0", c_0, c)):
        if s0 is None:
            buf[0] = 0
        else:
            s0 = as_float_array(name, s0, dtype)
            check_shape(name, s0, (B, H), "(B, H)")
            buf[0] = s0

    gates = np.empty((T, B, 4 * H), dtype)
    np.matmul(x.reshape(T * B, D), w_ih.T, out=gates.reshape(T * B, 4 * H))  # (T*B, 4H)
    if bias_ih is not None:
        gates += to_internal(bias_ih + bias_hh, H)
    tanh_c = np.empty((T, B, H), dtype)
    rec = np.empty((B, 4 * H), dtype)  # h_{t-1} W_hh^T
    ig = np.empty((B, H), dtype)  # i * g
    H3 = 3 * H
    for t in range(T):
        a = gates[t]  # (B, 4H), pre-activations, activated in place
        np.matmul(h[t], w_hh_t, out=rec)
        a += rec
        expit(a[:, :H3], out=a[:, :H3])  # o, i, f: (4), (1), (2)
        np.tanh(a[:, H3:], out=a[:, H3:])  # g: (3)
        np.multiply(a[:, 2 * H : H3], c[t], out=c[t + 1])  # f * c
        np.multiply(a[:, H:2 * H], a[:, H3:], out=ig)  # i * g
        c[t + 1] += ig  # (5)
        np.tanh(c[t + 1], out=tanh_c[t])
        np.multiply(a[:, :H], tanh_c[t], out=h[t + 1])  # (6)

    for arr in (h, c, gates, tanh_c):
        arr.flags.writeable = False
    cache = LSTMCache(x, h, c, gates, tanh_c, w_ih, np.ascontiguousarray(w_hh_t.T),
                      bias_ih is not None)
    return h[1:], (h[T], c[T]), cache
