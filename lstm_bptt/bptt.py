"""Backpropagation through time for one LSTM layer, written by hand.

:func:`lstm_backward` consumes only the :class:`~lstm_bptt.lstm.LSTMCache` of
:func:`~lstm_bptt.lstm.lstm_forward`. It walks ``for t in reversed(range(T))`` carrying
``dh`` and ``dc`` (the gradient arriving from step t + 1), as in Werbos (1990), "Backpropagation
through time: what it does and how to do it", and Graves (2012), "Supervised Sequence Labelling
with Recurrent Neural Networks", section 4.6 (equations for the LSTM backward pass).

Speed: every factor that does not depend on the carried gradient (sigma' = s (1 - s),
tanh' = 1 - t^2 and the products with the other gates) is computed for all T at once before
the loop; per step there are a handful of elementwise products into preallocated arrays and one
GEMM (dgates_t @ W_hh). The weight gradients, bias gradients and dx are single GEMMs or
reductions over all T*B rows after the loop.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_shape
from .lstm import LSTMCache, to_pytorch


def lstm_backward(doutput, cache: LSTMCache, dh_n=None, dc_n=None):
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

    Returns
    -------
    dx : ndarray (T, B, D)
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
    x, h, c, gates, tanh_c, w_ih, w_hh, has_bias = cache
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

    o = gates[:, :, 0:H]
    i = gates[:, :, H : 2 * H]
    f = gates[:, :, 2 * H : 3 * H]
    g = gates[:, :, 3 * H :]
    # Local factors for all steps at once (see Notes).
    p_o = tanh_c * o * (1 - o)  # (T, B, H): da_o = dh_t * p_o
    a_c = o * (1 - tanh_c * tanh_c)  # (T, B, H): dc_t = dc + dh_t * a_c
    p_ifg = np.empty((T, B, 3, H), dtype)  # da_{i,f,g} = dc_t * p_ifg
    np.multiply(g * i, 1 - i, out=p_ifg[:, :, 0])
    np.multiply(c[:-1] * f, 1 - f, out=p_ifg[:, :, 1])
    np.multiply(i, 1 - g * g, out=p_ifg[:, :, 2])

    dgates = np.empty((T, B, 4 * H), dtype)  # dL/d pre-activations, internal order
    dgates_ifg = dgates[:, :, H:].reshape(T, B, 3, H)  # a view: the dc-driven gates
    dh_t = np.empty((B, H), dtype)
    tmp = np.empty((B, H), dtype)
    for t in reversed(range(T)):
        if doutput is not None:
            np.add(doutput[t], dh, out=dh_t)  # output gradient plus carried dh
        else:
            dh_t[...] = dh
        np.multiply(dh_t, p_o[t], out=dgates[t, :, :H])  # da_o
        np.multiply(dh_t, a_c[t], out=tmp)
        dc += tmp  # dc_t
        np.multiply(dc[:, None, :], p_ifg[t], out=dgates_ifg[t])  # da_i, da_f, da_g
        dc *= f[t]  # dc_{t-1}
        np.matmul(dgates[t], w_hh, out=dh)  # dh_{t-1}

    da = dgates.reshape(T * B, 4 * H)  # (T*B, 4H)
    dx = (da @ w_ih).reshape(T, B, D)  # (T*B, 4H) @ (4H, D)
    grads = {
        "weight_ih": to_pytorch(da.T @ x.reshape(T * B, D), H),  # (4H, D)
        "weight_hh": to_pytorch(da.T @ h[:-1].reshape(T * B, H), H),  # (4H, H)
    }
    if has_bias:
        db = to_pytorch(da.sum(axis=0), H)  # (4H,)
        grads["bias_ih"] = db
        grads["bias_hh"] = db.copy()
    return dx, dh, dc, grads
