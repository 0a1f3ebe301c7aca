"""One LSTM timestep: ``lstm_cell_forward`` and its hand-written ``lstm_cell_backward``.

This is the readable reference implementation, one equation per line, in PyTorch's gate order
(i, f, g, o). The sequence-level code in :mod:`lstm_bptt.lstm` and :mod:`lstm_bptt.bptt` is
the fast version of the same math, and the tests check that stepping this cell by hand equals
the sequence call.

Dimension letters: B batch, D input features, H hidden units.

Equations (PyTorch ``nn.LSTM`` documentation; Hochreiter & Schmidhuber 1997 with the forget
gate of Gers, Schmidhuber & Cummins 2000)::

    i  = sigmoid(W_ii x + b_ii + W_hi h + b_hi)        (1)
    f  = sigmoid(W_if x + b_if + W_hf h + b_hf)        (2)
    g  = tanh   (W_ig x + b_ig + W_hg h + b_hg)        (3)
    o  = sigmoid(W_io x + b_io + W_ho h + b_ho)        (4)
    c' = f * c + i * g                                 (5)
    h' = o * tanh(c')                                  (6)

``weight_ih`` stacks [W_ii; W_if; W_ig; W_io] into (4H, D), ``weight_hh`` stacks the W_h* into
(4H, H), and each bias is (4H,), exactly as ``nn.LSTM``'s ``weight_ih_l0`` etc.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._checks import as_float_array, check_shape
from .activations import sigmoid, tanh


class CellCache(NamedTuple):
    """What :func:`lstm_cell_backward` needs from one forward step.

    Post-activation values are stored, so local derivatives come from them
    (sigmoid' = s (1 - s), tanh' = 1 - t^2). Shapes: x (B, D); h_prev, c_prev, i, f, g, o,
    tanh_c (B, H); weight_ih (4H, D); weight_hh (4H, H). ``has_bias`` records whether the
    step used biases (they get gradients only then).
    """

    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    i: np.ndarray
    f: np.ndarray
    g: np.ndarray
    o: np.ndarray
    tanh_c: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool


def check_lstm_weights(weight_ih, weight_hh, bias_ih, bias_hh, dtype=None, where=""):
    """Validate one layer's LSTM parameters; return them as arrays plus (H, D, dtype).

    Raises
    ------
    TypeError
        Non-float or mixed dtypes.
    ValueError
        Shapes that do not follow weight_ih (4H, D), weight_hh (4H, H), biases (4H,); NaN/inf.
    """
    weight_hh = as_float_array(f"{where}weight_hh", weight_hh, dtype)
    dtype = weight_hh.dtype
    if weight_hh.ndim != 2 or weight_hh.shape[0] != 4 * weight_hh.shape[1]:
        raise ValueError(
            f"{where}weight_hh: expected shape (4H, H), got {weight_hh.shape}"
        )
    H = weight_hh.shape[1]
    weight_ih = as_float_array(f"{where}weight_ih", weight_ih, dtype)
    if weight_ih.ndim != 2 or weight_ih.shape[0] != 4 * H:
        raise ValueError(
            f"{where}weight_ih: expected shape (4H, D) = ({4 * H}, D) to match weight_hh "
            f"(H = {H}), got {weight_ih.shape}"
        )
    D = weight_ih.shape[1]
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{where}bias_ih and bias_hh must both be arrays or both be None")
    if bias_ih is not None:
        bias_ih = as_float_array(f"{where}bias_ih", bias_ih, dtype)
        bias_hh = as_float_array(f"{where}bias_hh", bias_hh, dtype)
        check_shape(f"{where}bias_ih", bias_ih, (4 * H,), "(4H,)")
        check_shape(f"{where}bias_hh", bias_hh, (4 * H,), "(4H,)")
    return weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype


def lstm_cell_forward(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step, equations (1)-(6) of the module docstring.

    Parameters
    ----------
    x : ndarray (B, D), float32 or float64
        Input at this timestep.
    h_prev, c_prev : ndarray (B, H), same dtype
        Hidden and cell state from the previous step.
    weight_ih : ndarray (4H, D); weight_hh : ndarray (4H, H)
        Gate weights stacked in the order i, f, g, o (PyTorch layout).
    bias_ih, bias_hh : ndarray (4H,) or None
        Both biases, or both None for an LSTM without bias.

    Returns
    -------
    h : ndarray (B, H)
    c : ndarray (B, H)
    cache : CellCache
        Everything :func:`lstm_cell_backward` needs; the function stores nothing elsewhere.

    Raises
    ------
    TypeError
        Non-float or mixed float32/float64 arguments.
    ValueError
        Shape mismatches (named in the message) or NaN/inf in any argument.

    References
    ----------
    Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", Neural Computation 9(8);
    Gers, Schmidhuber & Cummins (2000), "Learning to Forget"; PyTorch ``torch.nn.LSTM`` docs.
    """
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_lstm_weights(
        weight_ih, weight_hh, bias_ih, bias_hh
    )
    x = as_float_array("x", x, dtype)
    if x.ndim != 2:
        raise ValueError(f"x: expected shape (B, D) = (B, {D}), got {x.shape}")
    check_shape("x", x, (None, D), "(B, D)")
    B = x.shape[0]
    h_prev = as_float_array("h_prev", h_prev, dtype)
    c_prev = as_float_array("c_prev", c_prev, dtype)
    check_shape("h_prev", h_prev, (B, H), "(B, H)")
    check_shape("c_prev", c_prev, (B, H), "(B, H)")

    a = x @ weight_ih.T + h_prev @ weight_hh.T  # (B, 4H) pre-activations
    if bias_ih is not None:
        a += bias_ih + bias_hh
    i = sigmoid(a[:, 0 * H : 1 * H])  # (1) input gate
    f = sigmoid(a[:, 1 * H : 2 * H])  # (2) forget gate
    g = tanh(a[:, 2 * H : 3 * H])  # (3) cell candidate
    o = sigmoid(a[:, 3 * H : 4 * H])  # (4) output gate
    c = f * c_prev + i * g  # (5)
    tanh_c = tanh(c)
    h = o * tanh_c  # (6)
    cache = CellCache(x, h_prev, c_prev, i, f, g, o, tanh_c, weight_ih, weight_hh,
                      bias_ih is not None)
    return h, c, cache


def lstm_cell_backward(dh, dc, cache: CellCache):
    """Backward of one LSTM step: gradients of a scalar loss through equations (1)-(6).

    Parameters
    ----------
    dh : ndarray (B, H) or None
        dL/dh for this step's hidden output (None means zero).
    dc : ndarray (B, H) or None
        dL/dc arriving from the next step's cell (None means zero).
    cache : CellCache
        From :func:`lstm_cell_forward`. Not modified.

    Returns
    -------
    dx : ndarray (B, D)
    dh_prev, dc_prev : ndarray (B, H)
    grads : dict
        Keys ``weight_ih`` (4H, D), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh`` (4H,)
        (the bias keys only when the forward used biases). Same dtype as the cache.

    Raises
    ------
    ValueError
        ``dh``/``dc`` of the wrong shape, or NaN/inf in them.

    Notes
    -----
    With a_* the pre-activations and dc_t = dc + dh * o * (1 - tanh(c)^2)::

        do = dh * tanh(c)              da_o = do * o (1 - o)
        di = dc_t * g                  da_i = di * i (1 - i)
        df = dc_t * c_prev             da_f = df * f (1 - f)
        dg = dc_t * i                  da_g = dg * (1 - g^2)
        dc_prev = dc_t * f
        dx = da @ W_ih,  dh_prev = da @ W_hh,  dW_ih = da^T x,  dW_hh = da^T h_prev,
        db_ih = db_hh = sum_b da
    """
    x, h_prev, c_prev, i, f, g, o, tanh_c, weight_ih, weight_hh, has_bias = cache
    B, H = h_prev.shape
    dtype = h_prev.dtype
    if dh is None:
        dh = np.zeros((B, H), dtype)
    if dc is None:
        dc = np.zeros((B, H), dtype)
    dh = as_float_array("dh", dh, dtype)
    dc = as_float_array("dc", dc, dtype)
    check_shape("dh", dh, (B, H), "(B, H)")
    check_shape("dc", dc, (B, H), "(B, H)")

    do = dh * tanh_c  # through (6) to the output gate
    dc_t = dc + dh * o * (1 - tanh_c**2)  # through (6) to c, plus the carried dc
    di = dc_t * g  # through (5)
    df = dc_t * c_prev  # through (5)
    dg = dc_t * i  # through (5)
    dc_prev = dc_t * f  # through (5) to the previous cell
    da = np.concatenate(
        [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
    )  # (B, 4H), through the nonlinearities (1)-(4)
    dx = da @ weight_ih  # (B, D)
    dh_prev = da @ weight_hh  # (B, H)
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev}
    if has_bias:
        db = da.sum(axis=0)
        grads["bias_ih"] = db
        grads["bias_hh"] = db.copy()
    return dx, dh_prev, dc_prev, grads
