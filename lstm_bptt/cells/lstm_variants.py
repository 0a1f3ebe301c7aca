"""LSTM variants PyTorch lacks: peepholes, layer normalisation, variational (recurrent) dropout.

Dimension letters: T time, B batch, D input features, H hidden units.

This is a readable implementation, separate from the fast plain-LSTM path of
:mod:`lstm_bptt.cells.lstm`: one step function and its backward, each equation on its own line,
used both by the one-step reference (:func:`lstm_variant_step_forward`) and, in a time loop, by
the sequence functions (:func:`lstm_variant_forward` / :func:`lstm_variant_backward`). The input
projections of all T steps are still one GEMM, and the weight gradients single GEMMs over T*B
rows after the loop. With every option off it computes the plain LSTM (tested against the fast
path).

Equations, gates in PyTorch's order (i, f, g, o); the options add the bracketed terms::

    x~ = x * m_x                                 [variational dropout, one mask per sequence]
    h~ = h * m_h                                 [variational dropout, one mask per sequence]
    a  = LN(W_ih x~; gamma_ih) + b_ih + LN(W_hh h~; gamma_hh) + b_hh        (1) [LN] else
    a  = W_ih x~ + b_ih + W_hh h~ + b_hh                                    (1')
    i  = sigmoid(a_i [+ w_ci * c])                                          (2) [peephole]
    f  = sigmoid(a_f [+ w_cf * c])                                          (3) [peephole]
    g  = tanh(a_g)                                                          (4)
    c' = f * c + i * g                                                      (5)
    o  = sigmoid(a_o [+ w_co * c'])                                         (6) [peephole]
    h' = o * tanh(LN(c'; gamma_c, beta_c))                                  (7) [LN] else
    h' = o * tanh(c')                                                       (7')

with LN(z; gamma, beta) = (z - mean(z)) / sqrt(var(z) + eps) * gamma + beta over the last axis
(the 4H pre-activation vector as a whole, as in the paper's equations, not gate by gate;
eps = 1e-5 as ``torch.nn.LayerNorm``).

Parameters (suffix names; the layer appends ``_l{k}``):

* always: ``weight_ih`` (4H, D), ``weight_hh`` (4H, H), and with bias ``bias_ih``,
  ``bias_hh`` (4H,), exactly as ``nn.LSTM``;
* ``peephole=True``: ``weight_ci``, ``weight_cf``, ``weight_co`` (H,), the diagonal peephole
  weights w_ci, w_cf, w_co;
* ``layer_norm=True``: ``weight_ln_ih``, ``weight_ln_hh`` (4H,), the gains gamma_ih,
  gamma_hh (initialised to 1), and ``weight_ln_c``, ``bias_ln_c`` (H,), gamma_c and beta_c
  (1 and 0). The paper's shifts beta_1, beta_2 of the two pre-activation LNs are ``bias_hh`` and
  ``bias_ih`` (they add to b and are not separate parameters).

Dropout masks (m_x (B, D), m_h (B, H)) hold 0 or 1 / (1 - p) and are drawn once per sequence by
the caller (the layer, in training mode); the same mask is applied at every time step, which is
what distinguishes variational dropout (Gal & Ghahramani 2016, section 4) from a fresh mask per
step.

References
----------
Gers, Schraudolph & Schmidhuber (2002), "Learning Precise Timing with LSTM Recurrent Networks",
JMLR 3, section 2 (peepholes: i and f see c_{t-1}, o sees c_t).
Ba, Kiros & Hinton (2016), "Layer Normalization", arXiv:1607.06450, section 6.2 / supplementary
(the layer-normalised LSTM).
Gal & Ghahramani (2016), "A Theoretically Grounded Application of Dropout in Recurrent Neural
Networks", NeurIPS, section 4 (variational LSTM: masks on inputs and hidden state, fixed over
time).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._checks import as_float_array, check_bool, check_shape
from ..activations import sigmoid
from ..layers import check_dropout
from .base import add_final_grads, check_last, final_steps
from .lstm import LSTMCell
from .rnn import check_grad, check_sequence, check_weights

LN_EPS = 1e-5


def variant_param_shapes(input_size, hidden_size, bias, *, peephole=False, layer_norm=False):
    """Suffix parameter names and shapes of one layer (see the module docstring)."""
    D, H = input_size, hidden_size
    shapes = {"weight_ih": (4 * H, D), "weight_hh": (4 * H, H)}
    if bias:
        shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
    if peephole:
        shapes.update(weight_ci=(H,), weight_cf=(H,), weight_co=(H,))
    if layer_norm:
        shapes.update(weight_ln_ih=(4 * H,), weight_ln_hh=(4 * H,), weight_ln_c=(H,),
                      bias_ln_c=(H,))
    return shapes


# ----------------------------------------------------------------------------- layer norm


def _ln_forward(z, gain, bias, eps):
    """LN(z; gain, bias) over the last axis; returns (y, (z_hat, rstd)).

    z_hat = (z - mean) * rstd, rstd = 1 / sqrt(var + eps), y = z_hat * gain (+ bias)."""
    mu = z.mean(axis=-1, keepdims=True)
    d = z - mu
    rstd = 1 / np.sqrt((d * d).mean(axis=-1, keepdims=True) + np.array(eps, z.dtype))
    z_hat = d * rstd
    y = z_hat * gain
    if bias is not None:
        y += bias
    return y, (z_hat, rstd)


def _ln_backward(dy, z_hat, rstd, gain):
    """dL/dz of LN from dL/dy (the gain/bias gradients are sums done by the caller)::

        dz_hat = dy * gain
        dz     = rstd * (dz_hat - mean(dz_hat) - z_hat * mean(dz_hat * z_hat))
    """
    dz_hat = dy * gain
    return rstd * (dz_hat - dz_hat.mean(axis=-1, keepdims=True)
                   - z_hat * (dz_hat * z_hat).mean(axis=-1, keepdims=True))


# ----------------------------------------------------------------------------- one step


class StepValues(NamedTuple):
    """Per-step values the backward needs (B rows; None where an option is off).

    hm (B, H): h~ = h * m_h, the recurrent GEMM's input (None without m_h);
    gates (B, 4H): i, f, g, o post-activation; tanh_c (B, H): tanh(LN(c')) or tanh(c');
    ah_hat (B, 4H), ah_rstd (B, 1): LN statistics of W_hh h~; c_hat (B, H), c_rstd (B, 1): LN
    statistics of c'."""

    hm: np.ndarray | None
    gates: np.ndarray
    tanh_c: np.ndarray
    ah_hat: np.ndarray | None
    ah_rstd: np.ndarray | None
    c_hat: np.ndarray | None
    c_rstd: np.ndarray | None


def _input_part(xm, p, layer_norm, eps):
    """The input half of (1): LN(x~ W_ih^T; gamma_ih) + b_ih, rows of any leading shape.

    Returns (ax, (ax_hat, ax_rstd) or None)."""
    ax = xm @ p["weight_ih"].T  # (..., 4H)
    ln = None
    if layer_norm:
        ax, ln = _ln_forward(ax, p["weight_ln_ih"], None, eps)
    if "bias_ih" in p:
        ax = ax + p["bias_ih"]
    return ax, ln


def _step(ax, h_prev, c_prev, p, peephole, layer_norm, mask_h, eps):
    """One step from the input part ax (B, 4H); equations (1)-(7). Returns h', c', values."""
    H = h_prev.shape[1]
    hm = h_prev if mask_h is None else h_prev * mask_h  # h~, variational dropout
    ah = hm @ p["weight_hh"].T  # (B, 4H)
    ln_h = (None, None)
    if layer_norm:
        ah, ln_h = _ln_forward(ah, p["weight_ln_hh"], None, eps)
    a = ax + ah  # (1)
    if "bias_hh" in p:
        a += p["bias_hh"]
    a_i, a_f, a_g, a_o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    if peephole:
        a_i += p["weight_ci"] * c_prev  # (2) peephole from c_{t-1}
        a_f += p["weight_cf"] * c_prev  # (3) peephole from c_{t-1}
    i = sigmoid(a_i)  # (2)
    f = sigmoid(a_f)  # (3)
    g = np.tanh(a_g)  # (4)
    c = f * c_prev + i * g  # (5)
    if peephole:
        a_o += p["weight_co"] * c  # (6) peephole from c_t
    o = sigmoid(a_o)  # (6)
    cn, ln_c = (c, (None, None))
    if layer_norm:
        cn, ln_c = _ln_forward(c, p["weight_ln_c"], p["bias_ln_c"], eps)
    tanh_c = np.tanh(cn)
    h = o * tanh_c  # (7)
    gates = np.concatenate([i, f, g, o], axis=1)
    values = StepValues(None if mask_h is None else hm, gates, tanh_c, *ln_h, *ln_c)
    return h, c, values


def _step_backward(dh, dc, c_prev, c, v: StepValues, p, peephole, layer_norm, mask_h):
    """Backward of :func:`_step`: dh = dL/dh', dc = dL/dc' from later steps.

    Returns da (B, 4H) = dL/da of (1), dah (B, 4H) = dL/d(W_hh h~), dcn (B, H) = dL/dLN(c')
    (None without LN), dh_prev, dc_prev."""
    H = c.shape[1]
    g4 = v.gates
    i, f, g, o = g4[:, :H], g4[:, H : 2 * H], g4[:, 2 * H : 3 * H], g4[:, 3 * H :]
    do = dh * v.tanh_c  # through (7)
    dcn = dh * o * (1 - v.tanh_c**2)  # through (7) to LN(c') (or c')
    dc_t = dc + (_ln_backward(dcn, v.c_hat, v.c_rstd, p["weight_ln_c"]) if layer_norm
                 else dcn)
    da_o = do * o * (1 - o)  # through (6)
    if peephole:
        dc_t = dc_t + da_o * p["weight_co"]  # (6): o sees c_t
    da_i = dc_t * g * i * (1 - i)  # through (5), (2)
    da_f = dc_t * c_prev * f * (1 - f)  # through (5), (3)
    da_g = dc_t * i * (1 - g**2)  # through (5), (4)
    dc_prev = dc_t * f  # through (5)
    if peephole:
        dc_prev += da_i * p["weight_ci"] + da_f * p["weight_cf"]  # (2), (3)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H)
    dah = _ln_backward(da, v.ah_hat, v.ah_rstd, p["weight_ln_hh"]) if layer_norm else da
    dh_prev = dah @ p["weight_hh"]  # (B, 4H) @ (4H, H): dL/dh~
    if mask_h is not None:
        dh_prev *= mask_h
    return da, dah, (dcn if layer_norm else None), dh_prev, dc_prev


def _param_grads(p, xm, ln_x, da, dah, dcn, hm, c_prev, c, v: StepValues, peephole,
                 layer_norm, mask_x, need_dx):
    """Parameter gradients and dx from stacked per-row quantities (N rows = T*B or B).

    Every argument is flattened to (N, .): one GEMM per weight, one sum per vector."""
    H = c.shape[1]
    grads = {}
    dax = _ln_backward(da, *ln_x, p["weight_ln_ih"]) if layer_norm else da  # (N, 4H)
    grads["weight_ih"] = dax.T @ xm  # (4H, N) @ (N, D)
    grads["weight_hh"] = dah.T @ hm  # (4H, N) @ (N, H)
    if "bias_ih" in p:
        grads["bias_ih"] = da.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy()
    if peephole:
        grads["weight_ci"] = (da[:, :H] * c_prev).sum(axis=0)
        grads["weight_cf"] = (da[:, H : 2 * H] * c_prev).sum(axis=0)
        grads["weight_co"] = (da[:, 3 * H :] * c).sum(axis=0)
    if layer_norm:
        grads["weight_ln_ih"] = (da * ln_x[0]).sum(axis=0)
        grads["weight_ln_hh"] = (da * v.ah_hat).sum(axis=0)
        grads["weight_ln_c"] = (dcn * v.c_hat).sum(axis=0)
        grads["bias_ln_c"] = dcn.sum(axis=0)
    dx = None
    if need_dx:
        dx = dax @ p["weight_ih"]  # (N, 4H) @ (4H, D)
        if mask_x is not None:
            dx *= mask_x
    return {k: grads[k] for k in p}, dx


# ----------------------------------------------------------------------------- validation


def check_variant_params(params, peephole, layer_norm, dtype=None):
    """Validate a suffix-keyed parameter dict for the given options; returns (p, H, D, dtype).

    Raises
    ------
    TypeError
        ``params`` not a dict, or arrays of the wrong dtype.
    ValueError
        Missing or unexpected keys, wrong shapes, NaN/inf.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {type(params).__name__}")
    for k in ("weight_ih", "weight_hh"):
        if k not in params:
            raise ValueError(f"params: missing {k!r}; got keys {sorted(params)}")
    w_ih, w_hh, b_ih, b_hh, H, D, dtype = check_weights(
        4, params["weight_ih"], params["weight_hh"], params.get("bias_ih"),
        params.get("bias_hh"), dtype)
    want = variant_param_shapes(D, H, b_ih is not None, peephole=peephole,
                                layer_norm=layer_norm)
    if set(params) != set(want):
        raise ValueError(
            f"params: expected keys {sorted(want)} for peephole={peephole}, "
            f"layer_norm={layer_norm}, got {sorted(params)}")
    p = {"weight_ih": w_ih, "weight_hh": w_hh}
    if b_ih is not None:
        p.update(bias_ih=b_ih, bias_hh=b_hh)
    for k, shape in want.items():
        if k not in p:
            p[k] = as_float_array(k, params[k], dtype)
            check_shape(k, p[k], shape, "(4H,)" if shape[0] == 4 * H else "(H,)")
    return {k: p[k] for k in want}, H, D, dtype


def _check_mask(name, m, shape, dtype):
    if m is None:
        return None
    m = as_float_array(name, m, dtype)
    check_shape(name, m, shape, "(B, D)" if name == "mask_x" else "(B, H)")
    return m


# ----------------------------------------------------------------------------- step reference


class VariantStepCache(NamedTuple):
    """What :func:`lstm_variant_step_backward` needs (see :class:`StepValues`)."""

    xm: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    c: np.ndarray
    ln_x: tuple | None
    values: StepValues
    params: dict
    peephole: bool
    layer_norm: bool
    mask_x: np.ndarray | None
    mask_h: np.ndarray | None
    eps: float

    def _gate(self, k):
        H = self.c.shape[1]
        return self.values.gates[:, k * H : (k + 1) * H]

    i = property(lambda self: self._gate(0), doc="input gate (B, H)")
    f = property(lambda self: self._gate(1), doc="forget gate (B, H)")
    g = property(lambda self: self._gate(2), doc="cell candidate (B, H)")
    o = property(lambda self: self._gate(3), doc="output gate (B, H)")


def lstm_variant_step_forward(x, h_prev, c_prev, params, *, peephole=False, layer_norm=False,
                              mask_x=None, mask_h=None, eps=LN_EPS):
    """One step of the LSTM with the chosen variants, equations (1)-(7) of the module docstring.

    Parameters
    ----------
    x : ndarray (B, D), float32 or float64
    h_prev, c_prev : ndarray (B, H)
    params : dict
        Suffix names of the module docstring for the chosen options.
    peephole, layer_norm : bool
    mask_x : ndarray (B, D) or None; mask_h : ndarray (B, H) or None
        Dropout masks (0 or 1 / (1 - p)).
    eps : float
        Layer-norm epsilon.

    Returns
    -------
    h, c : ndarray (B, H)
    cache : VariantStepCache

    Raises
    ------
    TypeError, ValueError
        As :func:`check_variant_params`; inputs of the wrong shape or dtype.
    """
    p, H, D, dtype = check_variant_params(params, peephole, layer_norm)
    x = as_float_array("x", x, dtype)
    check_shape("x", x, (None, D), "(B, D)")
    B = x.shape[0]
    h_prev = as_float_array("h_prev", h_prev, dtype)
    c_prev = as_float_array("c_prev", c_prev, dtype)
    check_shape("h_prev", h_prev, (B, H), "(B, H)")
    check_shape("c_prev", c_prev, (B, H), "(B, H)")
    mask_x = _check_mask("mask_x", mask_x, (B, D), dtype)
    mask_h = _check_mask("mask_h", mask_h, (B, H), dtype)
    xm = x if mask_x is None else x * mask_x  # x~, variational dropout
    ax, ln_x = _input_part(xm, p, layer_norm, eps)
    h, c, v = _step(ax, h_prev, c_prev, p, peephole, layer_norm, mask_h, eps)
    return h, c, VariantStepCache(xm, h_prev, c_prev, c, ln_x, v, p, peephole, layer_norm,
                                  mask_x, mask_h, eps)


def lstm_variant_step_backward(dh, dc, cache: VariantStepCache):
    """Backward of :func:`lstm_variant_step_forward`.

    Parameters
    ----------
    dh, dc : ndarray (B, H) or None
        dL/dh and dL/dc of this step's outputs (None: zero).
    cache : VariantStepCache

    Returns
    -------
    dx : ndarray (B, D); dh_prev, dc_prev : ndarray (B, H)
    grads : dict keyed like the params.
    """
    xm, h_prev, c_prev, c, ln_x, v, p, peephole, layer_norm, mask_x, mask_h, _ = cache
    dtype = c.dtype
    dh = np.zeros_like(c) if dh is None else check_grad("dh", dh, c.shape, "(B, H)", dtype)
    dc = np.zeros_like(c) if dc is None else check_grad("dc", dc, c.shape, "(B, H)", dtype)
    da, dah, dcn, dh_prev, dc_prev = _step_backward(dh, dc, c_prev, c, v, p, peephole,
                                                    layer_norm, mask_h)
    hm = h_prev if v.hm is None else v.hm
    grads, dx = _param_grads(p, xm, ln_x, da, dah, dcn, hm, c_prev, c, v, peephole,
                             layer_norm, mask_x, True)
    return dx, dh_prev, dc_prev, grads


# ----------------------------------------------------------------------------- sequence


class VariantCache(NamedTuple):
    """Cache of :func:`lstm_variant_forward`: inputs, states (T + 1, B, H), the per-step
    :class:`StepValues` stacked over T (each field (T, B, .) or None), the parameters,
    options and ``last``. Arrays are read-only."""

    x: np.ndarray
    xm: np.ndarray
    h: np.ndarray
    c: np.ndarray
    ln_x: tuple | None
    values: StepValues
    params: dict
    peephole: bool
    layer_norm: bool
    mask_x: np.ndarray | None
    mask_h: np.ndarray | None
    eps: float
    last: np.ndarray | None = None


def lstm_variant_forward(x, h_0, c_0, params, *, peephole=False, layer_norm=False,
                         mask_x=None, mask_h=None, eps=LN_EPS, last=None):
    """Run one LSTM layer with the chosen variants over a sequence, keeping a cache for BPTT.

    Parameters
    ----------
    x : ndarray (T, B, D), float32 or float64
    h_0, c_0 : ndarray (B, H) or None (zeros)
    params : dict
        Suffix names of the module docstring for the chosen options.
    peephole, layer_norm : bool
    mask_x : ndarray (B, D) or None; mask_h : ndarray (B, H) or None
        Variational dropout masks, the same at every step (0 or 1 / (1 - p)).
    eps : float
        Layer-norm epsilon.
    last : (B,) integer array or None
        Row b's final step (see :meth:`lstm_bptt.cells.base.Cell.forward`): (h_n, c_n) of row
        b are its states after step last[b]. None: T - 1 for every row.

    Returns
    -------
    output : ndarray (T, B, H) (read-only view)
    (h_n, c_n) : ndarrays (B, H)
    cache : VariantCache

    Raises
    ------
    TypeError
        Non-float or mixed-precision arguments, ``params`` not a dict.
    ValueError
        Wrong shapes or keys (named in the message), NaN/inf.

    Notes
    -----
    Equations (1)-(7) of the module docstring for t = 1..T; the input half of (1) for all t is
    one (T*B, D) @ (D, 4H) GEMM (and one layer norm over T*B rows) before the loop.
    """
    p, H, D, dtype = check_variant_params(params, peephole, layer_norm)
    x, h_0, T, B = check_sequence(x, h_0, D, H, dtype)
    if c_0 is not None:
        c_0 = as_float_array("c_0", c_0, dtype)
        check_shape("c_0", c_0, (B, H), "(B, H)")
    mask_x = _check_mask("mask_x", mask_x, (B, D), dtype)
    mask_h = _check_mask("mask_h", mask_h, (B, H), dtype)
    last = check_last(last, T, B)
    xm = x if mask_x is None else x * mask_x  # (T, B, D), the same mask at every step
    ax, ln_x = _input_part(xm, p, layer_norm, eps)  # (T, B, 4H): one GEMM
    h = np.empty((T + 1, B, H), dtype)
    c = np.empty((T + 1, B, H), dtype)
    h[0] = 0 if h_0 is None else h_0
    c[0] = 0 if c_0 is None else c_0
    stacked = None
    for t in range(T):
        h[t + 1], c[t + 1], v = _step(ax[t], h[t], c[t], p, peephole, layer_norm, mask_h, eps)
        if stacked is None:  # (T, B, .) arrays, allocated once
            stacked = StepValues(*(None if a is None else np.empty((T, *a.shape), dtype)
                                   for a in v))
        for buf, a in zip(stacked, v, strict=True):
            if buf is not None:
                buf[t] = a
    for a in (h, c, *stacked):
        if a is not None:
            a.flags.writeable = False
    cache = VariantCache(x, xm, h, c, ln_x, stacked, p, peephole, layer_norm, mask_x, mask_h,
                         eps, last)
    if last is None:
        return h[1:], (h[T], c[T]), cache
    rows = np.arange(B)
    return h[1:], (h[last + 1, rows], c[last + 1, rows]), cache


def lstm_variant_backward(doutput, cache: VariantCache, dh_n=None, dc_n=None, *,
                          need_dx: bool = True):
    """BPTT through one variant-LSTM layer: ``for t in reversed(range(T))``.

    Parameters
    ----------
    doutput : ndarray (T, B, H) or None
    cache : VariantCache
    dh_n, dc_n : ndarray (B, H) or None
        Gradients arriving at the final state (for row b after step last[b] if the forward
        was given ``last``).
    need_dx : bool
        False: dx is None (the input GEMM is skipped).

    Returns
    -------
    dx : ndarray (T, B, D) or None
    dh_0, dc_0 : ndarray (B, H)
    grads : dict keyed like the params.

    Raises
    ------
    TypeError, ValueError
        Gradients of the wrong dtype or shape, NaN/inf.
    """
    x, xm, h, c, ln_x, values, p, peephole, layer_norm, mask_x, mask_h, _, last = cache
    T, B, D = x.shape
    H = h.shape[2]
    dtype = h.dtype
    doutput = check_grad("doutput", doutput, (T, B, H), "(T, B, H)", dtype)
    dh_n = check_grad("dh_n", dh_n, (B, H), "(B, H)", dtype)
    dc_n = check_grad("dc_n", dc_n, (B, H), "(B, H)", dtype)
    dh = np.zeros((B, H), dtype)
    dc = np.zeros((B, H), dtype)
    da = np.empty((T, B, 4 * H), dtype)
    dah = np.empty((T, B, 4 * H), dtype) if layer_norm else da
    dcn = np.empty((T, B, H), dtype) if layer_norm else None
    stops = final_steps(last, T)  # {t: rows whose final state is the one after step t}
    for t in reversed(range(T)):
        if t in stops:  # dL/d(final state) of these rows joins the walk here
            dh, dc = add_final_grads((dh, dc), (dh_n, dc_n), stops[t])
        v = StepValues(*(None if a is None else a[t] for a in values))
        dh_t = dh if doutput is None else doutput[t] + dh
        da_t, dah_t, dcn_t, dh, dc = _step_backward(dh_t, dc, c[t], c[t + 1], v, p, peephole,
                                                    layer_norm, mask_h)
        da[t] = da_t
        if layer_norm:
            dah[t], dcn[t] = dah_t, dcn_t

    def rows(a):  # (T, B, .) -> (T*B, .)
        return None if a is None else a.reshape(T * B, a.shape[-1])

    hm = h[:-1] if values.hm is None else values.hm
    flat = StepValues(*(rows(a) for a in values))
    ln_x_flat = None if ln_x is None else tuple(rows(a) for a in ln_x)
    grads, dx = _param_grads(p, rows(xm), ln_x_flat, rows(da), rows(dah), rows(dcn), rows(hm),
                             rows(c[:-1]), rows(c[1:]), flat, peephole, layer_norm,
                             None if mask_x is None else np.broadcast_to(
                                 mask_x, (T, B, D)).reshape(T * B, D),
                             need_dx)
    if dx is not None:
        dx = dx.reshape(T, B, D)
    return dx, dh, dc, grads


# ----------------------------------------------------------------------------- the cell

#: Cell options that select this implementation (with their "off" values).
VARIANT_OPTIONS = {"peephole": False, "layer_norm": False, "recurrent_dropout": 0.0,
                   "input_dropout": 0.0}


class LSTMVariantCell(LSTMCell):
    """The LSTM with peepholes, layer normalisation and/or variational dropout.

    ``get_cell("lstm", peephole=True)`` (and so ``LSTM(..., peephole=True)``) builds this cell;
    with every option off the plain :class:`~lstm_bptt.cells.lstm.LSTMCell` is used instead
    (its fast path). Same name ("lstm"), state ``(h, c)``, gate order and init options
    (``forget_bias``, ``input_bias``, ``recurrent_init``) as the plain LSTM.

    Parameters
    ----------
    peephole : bool
        Diagonal peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` (H,) (Gers et al.
        2002), initialised U(-1/sqrt(H), 1/sqrt(H)) like every other weight.
    layer_norm : bool
        Layer normalisation of both pre-activation terms and of the cell state (Ba et al.
        2016): gains ``weight_ln_ih``, ``weight_ln_hh`` (4H,) and ``weight_ln_c`` (H,),
        initialised to 1, and shift ``bias_ln_c`` (H,), initialised to 0.
    recurrent_dropout : float in [0, 1)
        Variational dropout on h_{t-1} before W_hh: one mask per sequence (per row), the same
        at every step (Gal & Ghahramani 2016). Active only in training (``train=True``).
    input_dropout : float in [0, 1)
        The same on the layer's input x before W_ih.

    ``checkpoint_every`` is not supported (ValueError), nor ``proj_size`` > 0. ``last`` (the
    layer's ``lengths``) is. The equations are in the module docstring.

    Raises
    ------
    TypeError
        Options of the wrong type.
    ValueError
        Dropout outside [0, 1).
    """

    #: The forward draws dropout masks: the layer passes ``rng`` and ``train``.
    stochastic = True
    supports_last = True

    def __init__(self, proj_size=0, peephole=False, layer_norm=False, recurrent_dropout=0.0,
                 input_dropout=0.0):
        super().__init__(proj_size)
        if self.proj_size:
            raise ValueError(
                f"proj_size: the LSTM variants (peephole, layer_norm, recurrent_dropout, "
                f"input_dropout) have no projection; got proj_size={proj_size}")
        self.peephole = check_bool("peephole", peephole)
        self.layer_norm = check_bool("layer_norm", layer_norm)
        self.recurrent_dropout = check_dropout(recurrent_dropout, "recurrent_dropout")
        self.input_dropout = check_dropout(input_dropout, "input_dropout")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={getattr(self, k)!r}" for k, off in VARIANT_OPTIONS.items()
                         if getattr(self, k) != off)
        return f"LSTMVariantCell({opts})"

    def _opts(self):
        return {"peephole": self.peephole, "layer_norm": self.layer_norm}

    def param_shapes(self, input_size, hidden_size, bias):
        return variant_param_shapes(input_size, hidden_size, bias, **self._opts())

    def init_params(self, input_size, hidden_size, bias, dtype, rng, **init):
        # the plain LSTM's init (PyTorch's uniform for everything in param_shapes order, so the
        # PyTorch-named parameters come first and are drawn as for LSTMCell, and the peephole
        # weights are U(-1/sqrt(H), 1/sqrt(H)) too), then the layer-norm gains 1 and shift 0
        params = super().init_params(input_size, hidden_size, bias, dtype, rng, **init)
        for name, v in params.items():
            if name.startswith("weight_ln"):
                v[...] = 1
            elif name == "bias_ln_c":
                v[...] = 0
        return params

    def step_forward(self, x, state, params):
        h, c, cache = lstm_variant_step_forward(x, state[0], state[1], params, **self._opts())
        return (h, c), cache

    def step_backward(self, dstate, step_cache):
        dx, dh, dc, grads = lstm_variant_step_backward(dstate[0], dstate[1], step_cache)
        return dx, (dh, dc), grads

    def _masks(self, B, D, H, dtype, rng, train):
        masks = []
        for p, shape in ((self.input_dropout, (B, D)), (self.recurrent_dropout, (B, H))):
            if not train or p == 0.0:
                masks.append(None)
                continue
            if rng is None:
                raise ValueError("rng: needed to draw the variational dropout masks in training")
            keep = 1.0 - p
            masks.append((rng.random(shape) < keep).astype(dtype) / np.dtype(dtype).type(keep))
        return masks

    def forward(self, x, state0, params, *, checkpoint_every=None, last=None, rng=None,
                train=False):
        """One layer over the sequence; in training (``train``) the dropout masks are drawn
        from ``rng`` once for the whole sequence (one mask per row)."""
        if checkpoint_every is not None:
            raise ValueError(
                f"checkpoint_every: not supported by {self!r} (only by the plain LSTM), got "
                f"{checkpoint_every}")
        h_0, c_0 = (None, None) if state0 is None else state0
        w_hh = params["weight_hh"]
        x = np.asarray(x)
        mask_x, mask_h = self._masks(x.shape[1], x.shape[-1], w_hh.shape[1], w_hh.dtype, rng,
                                     train) if x.ndim == 3 else (None, None)
        output, state_n, cache = lstm_variant_forward(x, h_0, c_0, params, mask_x=mask_x,
                                                      mask_h=mask_h, last=last, **self._opts())
        return output, state_n, cache

    def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
        dh_n, dc_n = (None, None) if dstate_n is None else dstate_n
        dx, dh_0, dc_0, grads = lstm_variant_backward(doutput, cache, dh_n, dc_n,
                                                      need_dx=need_dx)
        return dx, (dh_0, dc_0), grads

    def per_step(self, cache):
        """``h``, ``c`` (T, B, H) and the gates ``i``, ``f``, ``g``, ``o`` (post-activation)."""
        H = cache.h.shape[2]
        g = cache.values.gates
        return {"h": cache.h[1:], "c": cache.c[1:], "i": g[:, :, :H], "f": g[:, :, H : 2 * H],
                "g": g[:, :, 2 * H : 3 * H], "o": g[:, :, 3 * H :]}
