"""Vanilla (Elman) RNN: the step reference, the fast sequence forward and its BPTT backward.

Dimension letters: T time, B batch, D input features, H hidden units.

Equation (Elman 1990; PyTorch ``torch.nn.RNN`` documentation), with phi = tanh or relu::

    h' = phi(W_ih x + b_ih + W_hh h + b_hh)                                  (1)

Backward, with a the pre-activation of (1) and dh' the gradient arriving at h'::

    da = dh' * phi'(a),   phi'(a) = 1 - h'^2 (tanh)  or  [h' > 0] (relu)    (2)
    dx = da W_ih,   dh = da W_hh,   dW_ih = da^T x,   dW_hh = da^T h,   db_ih = db_hh = sum_b da

``weight_ih`` is (H, D), ``weight_hh`` (H, H), ``bias_ih`` and ``bias_hh`` (H,), as
``nn.RNN``'s ``weight_ih_l0`` etc. relu' at a = 0 is taken as 0, as PyTorch does.

The step pair :func:`rnn_step_forward` / :func:`rnn_step_backward` is the readable reference;
:func:`rnn_forward` / :func:`rnn_backward` compute the same over a whole sequence, fast: one
GEMM for the input projection of all T steps, one recurrent GEMM per step into preallocated
(T + 1, B, H) states, and in the backward the weight gradients as single GEMMs over T*B rows
after the loop. The cache holds only x and h: phi'(a) is recovered from h' = phi(a).

References
----------
Elman (1990), "Finding structure in time", Cognitive Science 14(2).
Werbos (1990), "Backpropagation through time: what it does and how to do it", Proc. IEEE 78(10).
PyTorch ``torch.nn.RNN`` (parameter layout, ``nonlinearity``, default initialisation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _blas, _fast, _memory
from .._checks import as_float_array, check_shape
from .base import Cell, check_checkpoint_every, orthogonal

NONLINEARITIES = ("tanh", "relu")


def check_nonlinearity(nonlinearity) -> str:
    """Return ``nonlinearity`` if it is "tanh" or "relu", else raise ValueError (TypeError for a
    non-string)."""
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def check_weights(num_gates, weight_ih, weight_hh, bias_ih, bias_hh, dtype=None, where=""):
    """Validate one layer's weights for a cell with ``num_gates`` H-blocks (RNN 1, GRU 3).

    Returns (weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype).

    Raises
    ------
    TypeError
        Non-float or mixed dtypes.
    ValueError
        Shapes other than weight_ih (G H, D), weight_hh (G H, H), biases (G H,); only one bias
        given; NaN/inf.
    """
    G = num_gates
    gh = "H" if G == 1 else f"{G}H"
    weight_hh = as_float_array(f"{where}weight_hh", weight_hh, dtype)
    dtype = weight_hh.dtype
    if weight_hh.ndim != 2 or weight_hh.shape[0] != G * weight_hh.shape[1]:
        raise ValueError(f"{where}weight_hh: expected shape ({gh}, H), got {weight_hh.shape}")
    H = weight_hh.shape[1]
    weight_ih = as_float_array(f"{where}weight_ih", weight_ih, dtype)
    if weight_ih.ndim != 2 or weight_ih.shape[0] != G * H:
        raise ValueError(
            f"{where}weight_ih: expected shape ({gh}, D) = ({G * H}, D) to match weight_hh "
            f"(H = {H}), got {weight_ih.shape}"
        )
    D = weight_ih.shape[1]
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{where}bias_ih and bias_hh must both be arrays or both be None")
    if bias_ih is not None:
        bias_ih = as_float_array(f"{where}bias_ih", bias_ih, dtype)
        bias_hh = as_float_array(f"{where}bias_hh", bias_hh, dtype)
        check_shape(f"{where}bias_ih", bias_ih, (G * H,), f"({gh},)")
        check_shape(f"{where}bias_hh", bias_hh, (G * H,), f"({gh},)")
    return weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype


def check_sequence(x, h_0, D, H, dtype):
    """Validate a layer input x (T, B, D) and initial state h_0 (B, H) or None.

    Returns (x, h_0 or None, T, B)."""
    x = as_float_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(f"x: expected a 3-D array (T, B, D) with D = {D}, got shape {x.shape}")
    check_shape("x", x, (None, None, D), "(T, B, D)", "the last axis must equal input_size")
    T, B, _ = x.shape
    if T == 0 or B == 0:
        raise ValueError(f"x: expected T >= 1 and B >= 1, got shape {x.shape}")
    if h_0 is not None:
        h_0 = as_float_array("h_0", h_0, dtype)
        check_shape("h_0", h_0, (B, H), "(B, H)")
    return x, h_0, T, B


def check_grad(name, g, shape, axes, dtype):
    """A gradient arriving at a backward: None, or an array of ``shape`` and ``dtype``."""
    if g is None:
        return None
    g = as_float_array(name, g, dtype)
    check_shape(name, g, shape, axes)
    return g


def _activate(a, nonlinearity, out):
    """phi(a) into ``out`` (may be ``a``): np.tanh (saturates, never overflows) or relu."""
    if nonlinearity == "tanh":
        return np.tanh(a, out=out)
    return np.maximum(a, 0, out=out)


def _derivative(h, nonlinearity):
    """phi'(a) from h = phi(a): 1 - h^2 for tanh, [h > 0] for relu (0 at a = 0, as PyTorch)."""
    if nonlinearity == "tanh":
        return 1 - h * h
    return (h > 0).astype(h.dtype)


# ----------------------------------------------------------------------------- step reference


class RNNStepCache(NamedTuple):
    """What :func:`rnn_step_backward` needs: x (B, D), h_prev (B, H), h (B, H) = phi(a),
    the weights, ``nonlinearity`` and whether biases were used."""

    x: np.ndarray
    h_prev: np.ndarray
    h: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool
    nonlinearity: str


def rnn_step_forward(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
                     nonlinearity="tanh"):
    """One Elman RNN step, equation (1) of the module docstring.

    Parameters
    ----------
    x : ndarray (B, D), float32 or float64
    h_prev : ndarray (B, H), same dtype
    weight_ih : ndarray (H, D); weight_hh : ndarray (H, H)
    bias_ih, bias_hh : ndarray (H,) or None (both or neither)
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    h : ndarray (B, H)
    cache : RNNStepCache

    Raises
    ------
    TypeError
        Non-float or mixed-precision arguments.
    ValueError
        Shape mismatches, NaN/inf, unknown nonlinearity.
    """
    nonlinearity = check_nonlinearity(nonlinearity)
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_weights(
        1, weight_ih, weight_hh, bias_ih, bias_hh)
    x = as_float_array("x", x, dtype)
    check_shape("x", x, (None, D), "(B, D)")
    h_prev = as_float_array("h_prev", h_prev, dtype)
    check_shape("h_prev", h_prev, (x.shape[0], H), "(B, H)")

    a = x @ weight_ih.T + h_prev @ weight_hh.T  # (B, H) pre-activation
    if bias_ih is not None:
        a += bias_ih + bias_hh
    h = _activate(a, nonlinearity, None)  # (1)
    return h, RNNStepCache(x, h_prev, h, weight_ih, weight_hh, bias_ih is not None, nonlinearity)


def rnn_step_backward(dh, cache: RNNStepCache):
    """Backward of one RNN step, equation (2) of the module docstring.

    Parameters
    ----------
    dh : ndarray (B, H)
        dL/dh for this step's output.
    cache : RNNStepCache
        From :func:`rnn_step_forward`; not modified.

    Returns
    -------
    dx : ndarray (B, D)
    dh_prev : ndarray (B, H)
    grads : dict
        ``weight_ih`` (H, D), ``weight_hh`` (H, H) and, with biases, ``bias_ih``, ``bias_hh``
        (H,).
    """
    x, h_prev, h, weight_ih, weight_hh, has_bias, nonlinearity = cache
    dh = as_float_array("dh", dh, h.dtype)
    check_shape("dh", dh, h.shape, "(B, H)")
    da = dh * _derivative(h, nonlinearity)  # (2) through phi
    dx = da @ weight_ih  # (B, D)
    dh_prev = da @ weight_hh  # (B, H)
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev}
    if has_bias:
        grads["bias_ih"] = da.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy()
    return dx, dh_prev, grads


# ----------------------------------------------------------------------------- fast sequence


class RNNCache(NamedTuple):
    """Everything :func:`rnn_backward` needs; produced by :func:`rnn_forward`.

    x : (T, B, D)
        The layer input (not copied: do not modify it in place before the backward).
    h : (T + 1, B, H)
        ``h[0]`` = h_0, ``h[1:]`` = the output; read-only (phi'(a_t) is derived from it).
    weight_ih : (H, D), weight_hh : (H, H)
    has_bias : bool
    nonlinearity : "tanh" or "relu"
    """

    x: np.ndarray
    h: np.ndarray
    weight_ih: np.ndarray
    weight_hh: np.ndarray
    has_bias: bool
    nonlinearity: str


def rnn_forward(x, h_0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                nonlinearity="tanh"):
    """Run one RNN layer over a whole sequence, keeping the cache for BPTT.

    Parameters
    ----------
    x : ndarray (T, B, D), float32 or float64
    h_0 : ndarray (B, H) or None (zeros)
    weight_ih : ndarray (H, D); weight_hh : ndarray (H, H)
    bias_ih, bias_hh : ndarray (H,) or None (both or neither)
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    output : ndarray (T, B, H)
        h_1 .. h_T (a read-only view into the cache).
    h_n : ndarray (B, H)
        h_T (read-only view).
    cache : RNNCache

    Raises
    ------
    TypeError
        Non-float or mixed-precision arguments.
    ValueError
        Wrong rank or shapes (named in the message), NaN/inf, unknown nonlinearity.

    Notes
    -----
    Equation (1) of the module docstring for t = 1..T; x_t W_ih^T + b_ih + b_hh for all t is
    one (T*B, D) @ (D, H) GEMM before the loop.
    """
    nonlinearity = check_nonlinearity(nonlinearity)
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_weights(
        1, weight_ih, weight_hh, bias_ih, bias_hh)
    x, h_0, T, B = check_sequence(x, h_0, D, H, dtype)
    h = _memory.empty((T + 1, B, H), dtype)
    h[0] = 0 if h_0 is None else h_0
    # all pre-activations without the recurrent term: one GEMM, written into h[1:]
    a = h[1:]
    np.matmul(x.reshape(T * B, D), weight_ih.T, out=a.reshape(T * B, H))
    if bias_ih is not None:
        a += bias_ih + bias_hh
    w_hh_t = np.ascontiguousarray(weight_hh.T)  # (H, H)
    kernels = _fast.kernels(B * H * H)  # the compiled loop (optional extra), or NumPy
    blocks = _blas.step_blocks(w_hh_t, B)  # the per-step GEMM by column blocks, or None
    if kernels is not None:
        kernels.rnn_forward_steps(h, w_hh_t, nonlinearity == "relu",
                                  *_blas.step_plan(B, w_hh_t, blocks))
    else:
        rec = np.empty((B, H), dtype)
        recurrent = _blas.StepProduct(w_hh_t, B, blocks)
        Hs = list(h)  # per-step views made once
        for t in range(T):
            recurrent(Hs[t], rec)  # h_{t-1} W_hh^T
            Hs[t + 1] += rec
            _activate(Hs[t + 1], nonlinearity, Hs[t + 1])  # (1)
    h.flags.writeable = False
    return h[1:], h[T], RNNCache(x, h, weight_ih, weight_hh, bias_ih is not None, nonlinearity)


def rnn_backward(doutput, cache: RNNCache, dh_n=None, *, need_dx: bool = True):
    """Gradients of a scalar loss through one RNN layer over the whole sequence (full BPTT).

    Parameters
    ----------
    doutput : ndarray (T, B, H) or None
        dL/d output_t (None: the loss reads only h_n).
    cache : RNNCache
        From :func:`rnn_forward`; not modified.
    dh_n : ndarray (B, H) or None
        dL/dh_T from later (next chunk, a head on the final state); None means zero.
    need_dx : bool
        False skips the (T*B, H) @ (H, D) GEMM of the input gradient; ``dx`` is then None.

    Returns
    -------
    dx : ndarray (T, B, D) or None
    dh_0 : ndarray (B, H)
    grads : dict
        ``weight_ih`` (H, D), ``weight_hh`` (H, H) and, with biases, ``bias_ih``, ``bias_hh``.

    Raises
    ------
    TypeError
        A gradient of another dtype than the forward.
    ValueError
        Gradients of the wrong shape, or containing NaN/inf.

    Notes
    -----
    ``for t in reversed(range(T))``, carrying dh from step t + 1::

        da_t = (doutput_t + dh) * phi'(a_t)          (2)
        dh   = da_t W_hh                              (to step t - 1)

    then dW_ih = sum_t da_t^T x_t, dW_hh = sum_t da_t^T h_{t-1}, db = sum_{t,b} da_t,
    dx_t = da_t W_ih, each one GEMM or reduction over T*B rows.
    """
    x, h, w_ih, w_hh, has_bias, nonlinearity = cache
    T, B, D = x.shape
    H = h.shape[2]
    dtype = h.dtype
    doutput = check_grad("doutput", doutput, (T, B, H), "(T, B, H)", dtype)
    dh_n = check_grad("dh_n", dh_n, (B, H), "(B, H)", dtype)
    dh = np.zeros((B, H), dtype) if dh_n is None else dh_n.copy()
    kernels = _fast.kernels(B * H * H)  # the compiled loop (optional extra), or NumPy
    w_hh_c = np.ascontiguousarray(w_hh)
    blocks = _blas.step_blocks(w_hh_c, B)  # dh = da_t W_hh by column blocks, or None
    if kernels is not None:
        da, dh = kernels.rnn_backward_steps(h, w_hh_c, doutput, dh, nonlinearity == "relu",
                                            *_blas.step_plan(B, w_hh_c, blocks))
    else:
        da = _derivative(h[1:], nonlinearity)  # (T, B, H) phi'(a_t); becomes da_t below
        DA = list(da)
        douts = None if doutput is None else list(doutput)
        recurrent = _blas.StepProduct(w_hh_c, B, blocks)
        dh_bufs = (np.empty((B, H), dtype), np.empty((B, H), dtype))  # dh_{t-1}, alternately
        for t in reversed(range(T)):
            if douts is not None:
                dh += douts[t]  # dh_t: output gradient plus the carried one
            DA[t] *= dh  # (2)
            dh = recurrent(DA[t], dh_bufs[t % 2])  # dh_{t-1}, (B, H) @ (H, H)
    da2 = da.reshape(T * B, H)
    dx = None
    if need_dx:  # (T*B, H) @ (H, D)
        dx = _blas.matmul_rows(da2, w_ih, np.empty((T * B, D), dtype)).reshape(T, B, D)
    grads = {
        "weight_ih": da2.T @ x.reshape(T * B, D),  # (H, T*B) @ (T*B, D)
        "weight_hh": da2.T @ h[:-1].reshape(T * B, H),  # (H, T*B) @ (T*B, H)
    }
    if has_bias:
        grads["bias_ih"] = da2.sum(axis=0)
        grads["bias_hh"] = grads["bias_ih"].copy()
    return dx, dh, grads


# ----------------------------------------------------------------------------- the cell


class RNNCell(Cell):
    """The Elman RNN behind the common cell interface (PyTorch ``nn.RNN`` layout).

    Stateless; state tuple ``(h,)`` with h (B, H). Parameters ``weight_ih`` (H, D),
    ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H,).

    Parameters
    ----------
    nonlinearity : {"tanh", "relu"}
        phi of equation (1), as ``nn.RNN(nonlinearity=...)``.

    Init options (keyword arguments of :meth:`init_params` and of the layer
    :class:`lstm_bptt.recurrent.RNN`):

    recurrent_init : {"uniform", "orthogonal", "identity"}
        "uniform" is PyTorch's U(-1/sqrt(H), 1/sqrt(H)); "orthogonal" makes ``weight_hh`` a
        random orthogonal matrix (Saxe et al. 2014); "identity" sets ``weight_hh`` = I and
        ``bias_hh`` = 0, ``bias_ih`` = 0 (the IRNN of Le, Jaitly & Hinton 2015, for relu).

    ``checkpoint_every`` is accepted and has no effect: the cache already holds only x and h.

    Raises
    ------
    TypeError, ValueError
        ``nonlinearity`` not "tanh" or "relu".
    """

    name = "rnn"
    state_names = ("h",)
    num_gates = 1
    gate_names = ()
    init_option_names = ("recurrent_init",)

    def __init__(self, nonlinearity: str = "tanh"):
        self.nonlinearity = check_nonlinearity(nonlinearity)

    def check_init_options(self, bias, recurrent_init="uniform", **unknown):
        super().check_init_options(bias, **unknown)
        return {"recurrent_init": check_recurrent_init(
            recurrent_init, ("uniform", "orthogonal", "identity"))}

    def init_params(self, input_size, hidden_size, bias, dtype, rng, **init):
        opts = self.check_init_options(bias, **init)
        params = self.uniform_params(input_size, hidden_size, bias, dtype, rng)
        if opts["recurrent_init"] == "orthogonal":
            params["weight_hh"][...] = orthogonal(rng, hidden_size, dtype)
        elif opts["recurrent_init"] == "identity":
            params["weight_hh"][...] = np.eye(hidden_size, dtype=dtype)
            if bias:
                params["bias_ih"][...] = 0
                params["bias_hh"][...] = 0
        return params

    def step_forward(self, x, state, params):
        h, cache = rnn_step_forward(x, state[0], params["weight_ih"], params["weight_hh"],
                                    params.get("bias_ih"), params.get("bias_hh"),
                                    self.nonlinearity)
        return (h,), cache

    def step_backward(self, dstate, step_cache):
        dh = dstate[0]
        dx, dh_prev, grads = rnn_step_backward(
            np.zeros_like(step_cache.h) if dh is None else dh, step_cache)
        return dx, (dh_prev,), grads

    def forward(self, x, state0, params, *, checkpoint_every=None):
        check_checkpoint_every(checkpoint_every)  # validated, no effect (see the class doc)
        h_0 = None if state0 is None else state0[0]
        output, h_n, cache = rnn_forward(x, h_0, params["weight_ih"], params["weight_hh"],
                                         params.get("bias_ih"), params.get("bias_hh"),
                                         nonlinearity=self.nonlinearity)
        return output, (h_n,), cache

    def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
        dh_n = None if dstate_n is None else dstate_n[0]
        dx, dh_0, grads = rnn_backward(doutput, cache, dh_n, need_dx=need_dx)
        return dx, (dh_0,), grads

    def per_step(self, cache):
        """``{"h": (T, B, H)}``: the RNN has no gates."""
        return {"h": cache.h[1:]}


def check_recurrent_init(value, allowed):
    """``recurrent_init`` must be one of ``allowed`` (ValueError, TypeError for a non-str)."""
    if not isinstance(value, str):
        raise TypeError(f"recurrent_init: expected one of {list(allowed)}, got {value!r}")
    if value not in allowed:
        raise ValueError(f"recurrent_init: expected one of {list(allowed)}, got {value!r}")
    return value
