"""The LSTM cell: parameter layout and initialisation, the readable step reference (forward and
backward side by side), the fast sequence forward with its cache, and its BPTT backward.

Everything about the LSTM's math is in this one module, in four parts:

1. The readable step reference :func:`lstm_step_forward` / :func:`lstm_step_backward` (also
   known by their old names ``lstm_cell_forward`` / ``lstm_cell_backward``): one time step, one
   equation per line, in PyTorch's gate order (i, f, g, o). :meth:`LSTMCell.reference_forward`
   and :meth:`LSTMCell.reference_backward` step them over a sequence: BPTT in its plain form,
   ``for t in reversed(range(T))`` (written once for all cells in
   :mod:`lstm_bptt.cells.base`).
2. The fast sequence forward :func:`lstm_forward`: the same equations for all T steps of one
   layer, one GEMM for all input projections, a cache for the backward.
3. The fast BPTT backward :func:`lstm_backward` over that cache.
4. :class:`LSTMCell`, the cell contract of :mod:`lstm_bptt.cells.base` (what the layer
   :class:`lstm_bptt.recurrent.LSTM` calls): parameter shapes, initialisation options, and
   the fast path behind the common interface.

The tests check the fast path (2, 3) against the step reference (1) to 1e-12 in float64, the
reference against central differences, and both against PyTorch ``nn.LSTM``.

Dimension letters: T time, B batch, D input features, H hidden units.

Equations (PyTorch ``nn.LSTM`` documentation; Hochreiter & Schmidhuber 1997 with the forget
gate of Gers, Schmidhuber & Cummins 2000), with a_* the pre-activations
``a = x W_ih^T + b_ih + h W_hh^T + b_hh`` split into four H-blocks, and their backward
(Graves 2012, section 4.6), given dh' = dL/dh' and dc' = dL/dc' from later::

    forward                                     backward
    i  = sigmoid(a_i)                   (1)     da_i = di * i (1 - i)
    f  = sigmoid(a_f)                   (2)     da_f = df * f (1 - f)
    g  = tanh   (a_g)                   (3)     da_g = dg * (1 - g^2)
    o  = sigmoid(a_o)                   (4)     da_o = do * o (1 - o)
    c' = f * c + i * g                  (5)     di = dc'_t g,  df = dc'_t c,  dg = dc'_t i,
                                                dc = dc'_t f
    h' = o * tanh(c')                   (6)     do = dh' tanh(c'),
                                                dc'_t = dc' + dh' o (1 - tanh(c')^2)

and, through the affine map, dx = da W_ih, dh = da W_hh, dW_ih = da^T x, dW_hh = da^T h,
db_ih = db_hh = sum_b da. ``weight_ih`` stacks [W_ii; W_if; W_ig; W_io] into (4H, D),
``weight_hh`` stacks the W_h* into (4H, H), and each bias is (4H,), exactly as ``nn.LSTM``'s
``weight_ih_l0`` etc.

With a projection (LSTMP, ``proj_size`` P > 0; Sak, Senior & Beaufays 2014, "Long Short-Term
Memory Recurrent Neural Network Architectures for Large Scale Acoustic Modeling", Interspeech:
their m_t = o_t * h(c_t), r_t = W_rm m_t, with r_t the recurrent input; PyTorch's ``proj_size``
also makes r_t the output), (6) becomes m' = o * tanh(c') and the hidden state, output and
recurrent input is its projection::

    h' = W_hr m'                        (7)     dm' = dh' W_hr,  dW_hr = dh'^T m'

with ``weight_hr`` (P, H), h of size P and ``weight_hh`` (4H, P); c stays of size H.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from typing import NamedTuple

import numpy as np

from .. import _blas, _fast, _memory
from .._checks import as_float_array, check_shape
from ..activations import sigmoid, tanh
from .base import (
    NOT_GIVEN,
    Cell,
    add_final_grads,
    backward_pieces,
    check_checkpoint_every,
    check_last,
    check_sequence_input,
    final_steps,
    input_projection,
    layer_weight_grads,
    one_hot_ids,
    orthogonal,
    read_only,
    segments,
)

__all__ = [
    "LSTMCell",
    "lstm_step_forward",
    "lstm_step_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_forward",
    "lstm_backward",
    "LSTMCache",
    "CellCache",
    "check_lstm_weights",
    "release_workspace",
]


# =============================================================================================
# 1. The readable step reference: one time step, forward and backward side by side
# =============================================================================================

class CellCache(NamedTuple):
    """What :func:`lstm_step_backward` needs from one forward step.

    Post-activation values are stored, so local derivatives come from them
    (sigmoid' = s (1 - s), tanh' = 1 - t^2). Shapes: x (B, D); h_prev, c_prev, i, f, g, o,
    tanh_c (B, H); weight_ih (4H, D); weight_hh (4H, H). ``has_bias`` records whether the
    step used biases (they get gradients only then). With a projection h_prev is (B, P),
    weight_hh (4H, P), ``weight_hr`` (P, H) and ``m`` = o * tanh_c (B, H); otherwise both None.
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
    weight_hr: np.ndarray | None = None
    m: np.ndarray | None = None


def check_lstm_weights(weight_ih, weight_hh, bias_ih, bias_hh, dtype=None, where="",
                       weight_hr=None, finite=True):
    """Validate one layer's LSTM parameters; return them as arrays plus (H, D, dtype).

    ``weight_hr`` (P, H), if given, is checked too (then weight_hh must be (4H, P)); convert
    it with ``as_float_array`` yourself (it is not returned, so the return value is the same
    with and without a projection). ``finite=False`` leaves out the NaN/inf test of the four
    arrays (for a caller that makes it in a pass of its own; ``weight_hr`` is always tested).

    Raises
    ------
    TypeError
        Non-float or mixed dtypes.
    ValueError
        Shapes that do not follow weight_ih (4H, D), weight_hh (4H, H) (or (4H, P) with
        weight_hr (P, H)), biases (4H,); NaN/inf.
    """
    weight_hh = as_float_array(f"{where}weight_hh", weight_hh, dtype, finite=finite)
    dtype = weight_hh.dtype
    if weight_hr is None:
        if weight_hh.ndim != 2 or weight_hh.shape[0] != 4 * weight_hh.shape[1]:
            raise ValueError(
                f"{where}weight_hh: expected shape (4H, H), got {weight_hh.shape}"
            )
        H = weight_hh.shape[1]
    else:
        weight_hr = as_float_array(f"{where}weight_hr", weight_hr, dtype)
        if weight_hr.ndim != 2:
            raise ValueError(f"{where}weight_hr: expected shape (P, H), got {weight_hr.shape}")
        P, H = weight_hr.shape
        check_shape(f"{where}weight_hh", weight_hh, (4 * H, P), "(4H, P)",
                    f"weight_hr is (P, H) = {weight_hr.shape}")
    weight_ih = as_float_array(f"{where}weight_ih", weight_ih, dtype, finite=finite)
    if weight_ih.ndim != 2 or weight_ih.shape[0] != 4 * H:
        raise ValueError(
            f"{where}weight_ih: expected shape (4H, D) = ({4 * H}, D) to match weight_hh "
            f"(H = {H}), got {weight_ih.shape}"
        )
    D = weight_ih.shape[1]
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{where}bias_ih and bias_hh must both be arrays or both be None")
    if bias_ih is not None:
        bias_ih = as_float_array(f"{where}bias_ih", bias_ih, dtype, finite=finite)
        bias_hh = as_float_array(f"{where}bias_hh", bias_hh, dtype, finite=finite)
        check_shape(f"{where}bias_ih", bias_ih, (4 * H,), "(4H,)")
        check_shape(f"{where}bias_hh", bias_hh, (4 * H,), "(4H,)")
    return weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype


def lstm_step_forward(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
                      weight_hr=None):
    """One LSTM step, equations (1)-(6) of the module docstring (and (7) with a projection).

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
    weight_hr : ndarray (P, H) or None
        Projection (LSTMP): then h_prev and h are (B, P) and weight_hh is (4H, P).

    Returns
    -------
    h : ndarray (B, H), or (B, P) with a projection
    c : ndarray (B, H)
    cache : CellCache
        Everything :func:`lstm_step_backward` needs; the function stores nothing elsewhere.

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
        weight_ih, weight_hh, bias_ih, bias_hh, weight_hr=weight_hr
    )
    if weight_hr is not None:
        weight_hr = as_float_array("weight_hr", weight_hr, dtype)
    P = weight_hh.shape[1]  # H, or the projection size
    x = as_float_array("x", x, dtype)
    if x.ndim != 2:
        raise ValueError(f"x: expected shape (B, D) = (B, {D}), got {x.shape}")
    check_shape("x", x, (None, D), "(B, D)")
    B = x.shape[0]
    h_prev = as_float_array("h_prev", h_prev, dtype)
    c_prev = as_float_array("c_prev", c_prev, dtype)
    check_shape("h_prev", h_prev, (B, P), "(B, P)" if weight_hr is not None else "(B, H)")
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
    m = None
    if weight_hr is not None:
        m = h
        h = m @ weight_hr.T  # (7) projection, (B, P)
    cache = CellCache(x, h_prev, c_prev, i, f, g, o, tanh_c, weight_ih, weight_hh,
                      bias_ih is not None, weight_hr, m)
    return h, c, cache


def lstm_step_backward(dh, dc, cache: CellCache):
    """Backward of one LSTM step: gradients of a scalar loss through equations (1)-(6).

    Parameters
    ----------
    dh : ndarray (B, H) or None
        dL/dh for this step's hidden output (None means zero); (B, P) with a projection.
    dc : ndarray (B, H) or None
        dL/dc arriving from the next step's cell (None means zero).
    cache : CellCache
        From :func:`lstm_step_forward`. Not modified.

    Returns
    -------
    dx : ndarray (B, D)
    dh_prev, dc_prev : ndarray (B, H) (dh_prev (B, P) with a projection)
    grads : dict
        Keys ``weight_ih`` (4H, D), ``weight_hh`` (4H, H), ``bias_ih`` and ``bias_hh`` (4H,)
        (the bias keys only when the forward used biases), ``weight_hr`` (P, H) with a
        projection. Same dtype as the cache.

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

    and with a projection first dm = dh @ W_hr, dW_hr = dh^T m, then the above with dm for dh.
    """
    x, h_prev, c_prev, i, f, g, o, tanh_c, weight_ih, weight_hh, has_bias, weight_hr, m = cache
    B, H = c_prev.shape
    P = h_prev.shape[1]
    dtype = h_prev.dtype
    if dh is None:
        dh = np.zeros((B, P), dtype)
    if dc is None:
        dc = np.zeros((B, H), dtype)
    dh = as_float_array("dh", dh, dtype)
    dc = as_float_array("dc", dc, dtype)
    check_shape("dh", dh, (B, P), "(B, P)" if weight_hr is not None else "(B, H)")
    check_shape("dc", dc, (B, H), "(B, H)")

    dm = dh  # dL/d(o * tanh(c)): the output itself without a projection
    if weight_hr is not None:
        dm = dh @ weight_hr  # through (7), (B, H)
    do = dm * tanh_c  # through (6) to the output gate
    dc_t = dc + dm * o * (1 - tanh_c**2)  # through (6) to c, plus the carried dc
    di = dc_t * g  # through (5)
    df = dc_t * c_prev  # through (5)
    dg = dc_t * i  # through (5)
    dc_prev = dc_t * f  # through (5) to the previous cell
    da = np.concatenate(
        [di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)], axis=1
    )  # (B, 4H), through the nonlinearities (1)-(4)
    dx = da @ weight_ih  # (B, D)
    dh_prev = da @ weight_hh  # (B, H), or (B, P) with a projection
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev}
    if has_bias:
        db = da.sum(axis=0)
        grads["bias_ih"] = db
        grads["bias_hh"] = db.copy()
    if weight_hr is not None:
        grads["weight_hr"] = dh.T @ m  # (P, H), through (7)
    return dx, dh_prev, dc_prev, grads


#: The names these functions had before the cells/ package (still exported).
lstm_cell_forward = lstm_step_forward
lstm_cell_backward = lstm_step_backward



# =============================================================================================
# 2. The fast sequence forward
# =============================================================================================
#
# Sequence-level LSTM forward: all timesteps of one layer, storing a cache for BPTT.
#
# The math is equations (1)-(6) of part 1; this part is the fast version:
#
# * the input projection of all T steps is one GEMM, (T*B, D) @ (D, 4H), with both biases added
#   once; per step only h @ W_hh^T is computed, into a preallocated buffer;
# * the four gates live in one (B, 4H) block. Internally the rows are reordered from PyTorch's
#   (i, f, g, o) to (o, i, f, g) so that the three sigmoid gates are one contiguous slice in the
#   forward, and the three gates driven by dc (i, f, g) are one contiguous slice in the backward;
#   parameters and gradients stay in PyTorch's layout at the API;
# * every per-step result is written into arrays of shape (T, B, .) allocated once per call;
# * one ``np.tanh`` activates all four gates: sigma(a) = (1 + tanh(a / 2)) / 2, with the halving
#   folded into scaled copies of the o, i, f rows of the weights and bias (exact: a power of 2).
#   On AVX-512 machines NumPy's tanh is vectorised (SVML) and ~10x cheaper per element than
#   :func:`scipy.special.expit`; it saturates at +-1, so no overflow for any finite input;
# * optional recomputation (``checkpoint_every=k``): only h and every k-th c are kept, and the
#   backward recomputes each segment's forward with the very same operations, so the gradients
#   are bitwise those of the stored cache.
#
# Nothing is stored on any object: the returned :class:`LSTMCache` holds everything the backward
# pass (:func:`lstm_backward`) needs, so forward may be called any number of times.

# Internal gate order (o, i, f, g) as indices into PyTorch's (i, f, g, o) blocks, and back.
TO_INTERNAL = np.array([3, 0, 1, 2])
TO_PYTORCH = np.argsort(TO_INTERNAL)


@functools.lru_cache(maxsize=64)
def _row_order(H: int, to_internal: bool) -> np.ndarray:
    """(4H,) row indices that reorder the gate blocks (one ``np.take``: cheaper than a
    reshape + block index + reshape, which costs two copies for a transposed array)."""
    blocks = TO_INTERNAL if to_internal else TO_PYTORCH
    order = (blocks[:, None] * H + np.arange(H)).reshape(4 * H)
    order.flags.writeable = False
    return order


def to_internal(w: np.ndarray, H: int) -> np.ndarray:
    """Reorder the gate blocks of a (4H, ...) array from (i, f, g, o) to (o, i, f, g) (a copy)."""
    return w.take(_row_order(H, True), axis=0)


def to_pytorch(w: np.ndarray, H: int) -> np.ndarray:
    """Inverse of :func:`to_internal`: (o, i, f, g) blocks back to PyTorch's (i, f, g, o)."""
    return w.take(_row_order(H, False), axis=0)


class LSTMCache(NamedTuple):
    """Everything the BPTT backward of one layer needs; produced by :func:`lstm_forward`.

    Fields (T time, B batch, D input features, H hidden units, k = ``checkpoint_every``):

    x : (T, B, D)
        The layer input (not copied: do not modify it in place before the backward).
    h : (T + 1, B, H), or (T + 1, B, P) with a projection
        Hidden states, ``h[0]`` = h_0, ``h[1:]`` = the layer output.
    c : (T + 1, B, H), or (ceil(T / k) + 1, B, H) with checkpointing
        Cell states, ``c[0]`` = c_0; with checkpointing c at t = 0, k, 2k, ... and c_T last.
    gates : (T, B, 4H) or None
        Post-activation gates in the internal order (o, i, f, g); None with checkpointing.
    tanh_c : (T, B, H) or None
        tanh(c_t) for t = 1..T; None with checkpointing.
    weight_ih : (4H, D), weight_hh : (4H, H) or (4H, P)
        The weights in the internal gate order.
    has_bias : bool
        Whether biases were used (their gradients are returned only then).
    bias : (4H,) or None
        b_ih + b_hh in the internal order (needed to recompute a segment), None without bias.
    checkpoint_every : int or None
        k, or None when everything is stored.
    weight_hr : (P, H) or None
        The projection (LSTMP), None without.
    last : (B,) intp or None
        Each row's final step (its h_n, c_n are the states after it), None for T - 1 for all.
    ids : (T*B,) intp or None
        The input's ids when x is one-hot (found by the forward; the backward's dW_ih is then
        a scatter-add), else None.

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
    weight_hr: np.ndarray | None = None
    last: np.ndarray | None = None
    ids: np.ndarray | None = None


@functools.lru_cache(maxsize=64)
def _half_sigmoid_rows(H: int, dtype) -> np.ndarray:
    """(4H,) row scales: 1/2 for the sigmoid gates o, i, f, 1 for g (internal order);
    read-only, made once per (H, dtype)."""
    scale = np.ones(4 * H, dtype)
    scale[: 3 * H] = 0.5
    scale.flags.writeable = False
    return scale


def _projection(x, w_ih, bias, H, step_bias=None, gather_in_steps=False, w_t=None):
    """Pre-activations without the recurrent term, all steps at once, sigmoid rows halved.

    ``pre`` (T, B, 4H) = (x_t W_ih^T + b) * scale (the halved recurrent weights are made by
    :func:`_recurrent_weights`): one GEMM, (T*B, D) @ (D, 4H), or a row gather when x is
    one-hot (:func:`lstm_bptt.cells.base.input_projection`). With ``step_bias`` (the
    :func:`_step_bias` of ``bias``) the bias is left out: the time loop adds it, as the first
    addition of each step, so the sums and their rounding are the same, without one pass
    over the (T, B, 4H) array.

    Returns ``(pre, ids, table)``: ids (T*B,) when x is one-hot, else None. With
    ``gather_in_steps`` and a one-hot x the gather is left to the time loop: ``pre`` is then
    uninitialised and ``table`` (D, 4H) holds the rows to gather (bias included), else None.
    ``w_t`` (D, 4H): (w_ih * scale)^T when the caller has it (the kernels' ``lstm_layout``).
    """
    T, B, D = x.shape
    scale = _half_sigmoid_rows(H, x.dtype)
    pre = _memory.empty((T, B, 4 * H), x.dtype)
    if w_t is None:
        w_t = np.multiply(w_ih.T, scale, order="C")  # (D, 4H)
    add = None if bias is None or step_bias is not None else bias * scale
    x2 = x.reshape(T * B, D)
    ids = one_hot_ids(x2)
    if gather_in_steps and ids is not None:  # the kernel copies row ids[t, b] at its step
        return pre, ids, (w_t if add is None else w_t + add)
    input_projection(x2, w_t, pre.reshape(T * B, 4 * H), add, ids)
    return pre, ids, None


def _step_bias(bias, H, kernels):
    """(b_ih + b_hh) * scale for the compiled time loop to add (None: the projection adds it,
    on the NumPy path or without bias). :func:`_run_steps` decides its path again, from the
    same arguments; were the two to differ, the results would still be right (the NumPy loop
    adds a step bias it is given)."""
    if kernels is None or bias is None:
        return None
    return bias * _half_sigmoid_rows(H, bias.dtype)


def _recurrent_weights(w_hh, H):
    """(H, 4H) = (W_hh * scale)^T, contiguous, for h_{t-1} @ W_hh^T with the sigmoid rows halved."""
    return np.multiply(w_hh.T, _half_sigmoid_rows(H, w_hh.dtype), order="C")  # one pass


def _run_steps(gates, h, c, tanh_c, w_hh_t, w_hr_t=None, step_bias=None, ids=None,
               table=None, kernels=NOT_GIVEN, blocks=NOT_GIVEN):
    """The time loop of the forward, in place: n = len(gates) steps.

    gates : (n, B, 4H), pre-activations without the recurrent term on entry (sigmoid rows
        halved), post-activations (o, i, f, g) on exit.
    h, c : (n + 1, B, H) (h (n + 1, B, P) with a projection); row 0 holds the initial
        state, rows 1..n are written.
    tanh_c : (n, B, H), written.
    w_hh_t : (P or H, 4H); w_hr_t : (H, P) = W_hr^T, or None without a projection.
    step_bias : (4H,) or None: added to each step's gates first (see :func:`_projection`).
    ids, table : (n*B,) ids and the (D, 4H) table when the input projection is a gather left
        to this loop (``gates`` is then written from ``table[ids]`` first), else None.
    kernels : the caller's :func:`lstm_bptt._fast.kernels` for this step size, or not given.
    blocks : :func:`lstm_bptt._blas.step_blocks` of w_hh_t (None: one GEMM per step), or not
        given (then made here).

    The forward and the recomputation of the checkpointed backward both call this, so a
    recomputed segment is bitwise equal to the original. With the compiled path on
    (:mod:`lstm_bptt._fast`) the loop is the kernel ``lstm_forward_steps``.
    """
    if kernels is NOT_GIVEN:
        kernels = _fast.kernels(gates.shape[1] * w_hh_t.size)
    if blocks is NOT_GIVEN:
        blocks = _blas.step_blocks(w_hh_t, gates.shape[1])
    if kernels is not None:
        return kernels.lstm_forward_steps(gates, h, c, tanh_c, w_hh_t, w_hr_t, step_bias,
                                          None if table is None else ids, table,
                                          *_blas.step_plan(gates.shape[1], w_hh_t, blocks))
    # made for the kernels, which were switched off since: the same sums here
    if table is not None:
        np.take(table, ids, axis=0, out=gates.reshape(-1, gates.shape[2]))
    if step_bias is not None:
        gates += step_bias
    n, B, H4 = gates.shape
    H = H4 // 4
    rec = np.empty((B, H4), gates.dtype)  # h_{t-1} W_hh^T
    recurrent = _blas.StepProduct(w_hh_t, B, blocks)
    m = None if w_hr_t is None else np.empty((B, H), gates.dtype)  # o * tanh(c), projected
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
        recurrent(Hs[t], rec)
        a += rec
        np.tanh(a, out=a)  # g: (3); o, i, f: tanh(a / 2)
        s = S[t]
        np.multiply(s, half, out=s)
        np.add(s, half, out=s)  # sigma(a) = (1 + tanh(a / 2)) / 2: (4), (1), (2)
        np.multiply(f_l[t], C[t], out=C[t + 1])  # f * c
        np.multiply(i_l[t], g_l[t], out=ig)  # i * g
        C[t + 1] += ig  # (5)
        np.tanh(C[t + 1], out=TC[t])
        if m is None:
            np.multiply(o_l[t], TC[t], out=Hs[t + 1])  # (6)
        else:
            np.multiply(o_l[t], TC[t], out=m)  # (6)
            np.dot(m, w_hr_t, out=Hs[t + 1])  # (7) h = W_hr m


def recompute_segment(cache: LSTMCache, pre: np.ndarray, seg: int, step_bias=None):
    """Recompute gates, c and tanh(c) of checkpoint segment ``seg`` (for the backward).

    Parameters
    ----------
    cache : LSTMCache with ``checkpoint_every`` set
    pre : (T, B, 4H)
        :func:`_projection` of the whole input (recomputed once per backward); the segment's
        rows are activated in place and returned as its gates.
    seg : int
        Segment index into :func:`segments`.
    step_bias : as for :func:`_run_steps` (``pre`` made with the same ``step_bias``).

    Returns
    -------
    gates : (n, B, 4H), c : (n + 1, B, H) (c[0] = the checkpoint), tanh_c : (n, B, H)
    """
    T, B, _ = cache.x.shape
    H = cache.weight_hh.shape[0] // 4
    t0, t1 = segments(T, cache.checkpoint_every)[seg]
    n = t1 - t0
    h = np.empty((n + 1, B, cache.h.shape[2]), pre.dtype)  # scratch: the cache is not written
    c = np.empty((n + 1, B, H), pre.dtype)
    tanh_c = np.empty((n, B, H), pre.dtype)
    h[0] = cache.h[t0]
    c[0] = cache.c[seg]
    gates = pre[t0:t1]
    _run_steps(gates, h, c, tanh_c, _recurrent_weights(cache.weight_hh, H),
               _projection_weights(cache.weight_hr), step_bias)
    return gates, c, tanh_c


def _projection_weights(w_hr):
    """(H, P) = W_hr^T, contiguous, or None without a projection."""
    return None if w_hr is None else np.ascontiguousarray(w_hr.T)


def lstm_forward(x, h_0, c_0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
                 checkpoint_every=None, weight_hr=None, last=None):
    """Run one LSTM layer over a whole sequence and keep the cache for BPTT.

    Parameters
    ----------
    x : ndarray (T, B, D), float32 or float64
        Input sequence, time-major.
    h_0, c_0 : ndarray (B, H) or None
        Initial hidden and cell state (None means zeros); h_0 is (B, P) with a projection.
    weight_ih : ndarray (4H, D); weight_hh : ndarray (4H, H), or (4H, P) with a projection
        Gate weights stacked in PyTorch's order i, f, g, o.
    bias_ih, bias_hh : ndarray (4H,) or None
        Both biases, or both None.
    checkpoint_every : int or None
        If k, keep only h and the cell state every k steps (cache ~H instead of ~7H numbers
        per token); the backward then recomputes each k-step segment's forward (about one
        more forward pass of work) and returns bitwise the same gradients. None keeps all.
    weight_hr : ndarray (P, H) or None
        Projection (LSTMP, equation (7)): the output and recurrent state is h = W_hr m (P).
    last : integer ndarray (B,) or None
        Row b's final step, in [0, T) (None: T - 1 for every row): its (h_n, c_n) are the
        states after step last[b], and :func:`lstm_backward` injects dh_n, dc_n there (see
        :meth:`lstm_bptt.cells.base.Cell.forward`; how the layer implements ``lengths``).

    Returns
    -------
    output : ndarray (T, B, H) or (T, B, P)
        h_1 .. h_T (read-only view into the cache).
    (h_n, c_n) : tuple of ndarray (B, H) (h_n (B, P) with a projection)
        Final hidden and cell state (read-only views without ``last``).
    cache : LSTMCache
        Input of :func:`lstm_backward`.

    Raises
    ------
    TypeError
        Non-float, integer or mixed-precision arguments; a non-integer ``checkpoint_every``.
    ValueError
        Wrong rank or shapes (named in the message), NaN/inf in any argument, or
        ``checkpoint_every < 1``.

    Notes
    -----
    Equations (1)-(6) of the module docstring, applied for t = 1..T with the pre-activations
    ``a_t = x_t W_ih^T + (b_ih + b_hh) + h_{t-1} W_hh^T``; the first two terms for all t are
    computed by one GEMM before the time loop. The sigmoid gates are computed as
    sigma(a) = (1 + tanh(a / 2)) / 2 (identical function; one tanh call covers all gates).

    References
    ----------
    Hochreiter & Schmidhuber (1997); Gers et al. (2000); PyTorch ``torch.nn.LSTM``;
    Chen et al. (2016), "Training deep nets with sublinear memory cost" (recomputation).
    """
    weight_ih, weight_hh, bias_ih, bias_hh, H, D, dtype = check_lstm_weights(
        weight_ih, weight_hh, bias_ih, bias_hh, weight_hr=weight_hr, finite=False
    )  # their NaN/inf test is below, in lstm_layout's pass with the kernels
    if weight_hr is not None:
        weight_hr = as_float_array("weight_hr", weight_hr, dtype)
    P = weight_hh.shape[1]  # H, or the projection size
    x = check_sequence_input(x, D, dtype)
    T, B, _ = x.shape
    checkpoint_every = check_checkpoint_every(checkpoint_every)
    last = check_last(last, T, B)
    kernels = _fast.kernels(B * weight_hh.size)  # the compiled loops (optional extra), or None
    if kernels is None:  # the NaN/inf test: check_lstm_weights again, now with it
        check_lstm_weights(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr=weight_hr)
        w_ih = to_internal(weight_ih, H)
        w_hh = to_internal(weight_hh, H)
        bias = None if bias_ih is None else to_internal(bias_ih + bias_hh, H)
        w_t = w_hh_t = step_bias = None  # made below
    else:  # the same arrays (bitwise) in one call: at small sizes the calls cost the time
        w_ih, w_hh, w_t, w_hh_t, bias, step_bias, finite = kernels.lstm_layout(
            weight_ih, weight_hh, bias_ih, bias_hh, _row_order(H, True),
            _half_sigmoid_rows(H, dtype))
        if not finite:  # raise the error of check_lstm_weights, naming the array
            check_lstm_weights(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr=weight_hr)
        if bias_ih is None:
            bias = step_bias = None

    h = _memory.empty((T + 1, B, P), dtype)
    state0 = []
    for name, s0, buf in (("h_0", h_0, h[0]), ("c_0", c_0, np.empty((B, H), dtype))):
        if s0 is None:
            buf[...] = 0
        else:
            s0 = as_float_array(name, s0, dtype)
            check_shape(name, s0, buf.shape, "(B, P)" if P != H and name == "h_0" else
                        "(B, H)")
            buf[...] = s0
        state0.append(buf)

    # (T, B, 4H), activated in place by _run_steps (which gathers it first if table is set)
    gates, ids, table = _projection(x, w_ih, bias, H, step_bias,
                                    kernels is not None and checkpoint_every is None, w_t)
    if w_hh_t is None:
        w_hh_t = _recurrent_weights(w_hh, H)  # (P, 4H)
    w_hr_t = _projection_weights(weight_hr)  # (H, P) or None
    blocks = _blas.step_blocks(w_hh_t, B)  # the per-step GEMM by column blocks, or None
    rows = None if last is None else np.arange(B)
    if checkpoint_every is None:
        c = _memory.empty((T + 1, B, H), dtype)
        c[0] = state0[1]
        tanh_c = _memory.empty((T, B, H), dtype)
        _run_steps(gates, h, c, tanh_c, w_hh_t, w_hr_t, step_bias, ids, table, kernels,
                   blocks)
        c_n = c[T] if last is None else c[last + 1, rows]
    else:
        segs = segments(T, checkpoint_every)
        c = np.empty((len(segs) + 1, B, H), dtype)  # c at t = 0, k, 2k, ..., T
        c[0] = state0[1]
        k = checkpoint_every
        c_seg = np.empty((min(k, T) + 1, B, H), dtype)
        tanh_seg = np.empty((min(k, T), B, H), dtype)
        c_n = c[-1] if last is None else np.empty((B, H), dtype)
        for s, (t0, t1) in enumerate(segs):
            n = t1 - t0
            c_seg[0] = c[s]
            _run_steps(gates[t0:t1], h[t0 : t1 + 1], c_seg[: n + 1], tanh_seg[:n], w_hh_t,
                       w_hr_t, step_bias, blocks=blocks)
            c[s + 1] = c_seg[n]
            if last is not None:  # the rows whose final step is in this segment
                ends = np.flatnonzero((last >= t0) & (last < t1))
                c_n[ends] = c_seg[last[ends] - t0 + 1, ends]
        gates = tanh_c = None

    read_only(h, c, gates, tanh_c)
    cache = LSTMCache(x, h, c, gates, tanh_c, w_ih, w_hh, bias_ih is not None, bias,
                      checkpoint_every, weight_hr, last, ids)
    h_n = h[T] if last is None else h[last + 1, rows]
    return h[1:], (h_n, c_n), cache



# =============================================================================================
# 3. The fast BPTT backward
# =============================================================================================
#
# Backpropagation through time for one LSTM layer, written by hand.
#
# :func:`lstm_backward` consumes only the :class:`LSTMCache` of
# :func:`lstm_forward`. It walks ``for t in reversed(range(T))`` carrying
# ``dh`` and ``dc`` (the gradient arriving from step t + 1), as in Werbos (1990), "Backpropagation
# through time: what it does and how to do it", and Graves (2012), "Supervised Sequence Labelling
# with Recurrent Neural Networks", section 4.6 (equations for the LSTM backward pass).
#
# Speed: every factor that does not depend on the carried gradient (sigma' = s (1 - s),
# tanh' = 1 - t^2 and the products with the other gates) is computed for all T at once before
# the loop and laid out so that each step is four NumPy calls plus one GEMM (see
# :func:`_backward_steps`). The weight gradients, bias gradients and dx are single GEMMs or
# reductions over all T*B rows after the loop.

_WORKSPACE = threading.local()


def _workspace(shape: tuple, dtype) -> np.ndarray:
    """Scratch for the backward's per-step rows, reused across calls (one per thread).

    It is the largest temporary of the backward (6H numbers per token: 157 MB for T = 50,
    B = 128, H = 512 in float64). Allocating it afresh every call costs page faults: for that
    size ~0.3 s of system time per call, 15 % of the step. Nothing returned by
    :func:`lstm_backward` aliases it. :func:`release_workspace` frees it.
    """
    n = math.prod(shape)
    buf = getattr(_WORKSPACE, "buf", None)
    if buf is None or buf.dtype != dtype or buf.size < n:
        buf = _WORKSPACE.buf = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def release_workspace() -> None:
    """Free this thread's backward scratch buffer (it is re-created on the next backward) and
    its pool of recycled cache buffers (:mod:`lstm_bptt._memory`)."""
    _WORKSPACE.buf = None
    _memory.release()


def lstm_backward(doutput, cache: LSTMCache, dh_n=None, dc_n=None, *, need_dx: bool = True):
    """Gradients of a scalar loss through one LSTM layer over the whole sequence (full BPTT).

    Parameters
    ----------
    doutput : ndarray (T, B, H) (or (T, B, P) with a projection) or None
        dL/d output_t for every step (None means the loss does not depend on the outputs,
        only on ``dh_n``/``dc_n``).
    cache : LSTMCache
        From :func:`lstm_forward`; not modified.
    dh_n, dc_n : ndarray (B, H) or None (dh_n (B, P) with a projection)
        dL/dh_n and dL/dc_n arriving from later (e.g. the next chunk of a longer sequence, or
        a head that reads the final state). None means zero. They enter at step T - 1, or,
        if the forward had ``last``, at step last[b] for row b.
    need_dx : bool
        Compute dx. False skips one (T*B, 4H) @ (4H, D) GEMM when the input needs no gradient
        (e.g. one-hot characters); ``dx`` is then None.

    Returns
    -------
    dx : ndarray (T, B, D), or None if not ``need_dx``
    dh_0, dc_0 : ndarray (B, H) (dh_0 (B, P) with a projection)
    grads : dict
        ``weight_ih`` (4H, D), ``weight_hh`` (4H, H) and, if the forward used biases,
        ``bias_ih`` and ``bias_hh`` (4H,), in PyTorch's gate order i, f, g, o; ``weight_hr``
        (P, H) with a projection.

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
    x, h, c, gates, tanh_c, w_ih, w_hh, has_bias, bias, k, w_hr, last, ids = cache
    T, B, D = x.shape
    H = w_hh.shape[0] // 4
    P = h.shape[2]  # H, or the projection size
    dtype = h.dtype
    if doutput is not None:
        doutput = as_float_array("doutput", doutput, dtype)
        check_shape("doutput", doutput, (T, B, P), "(T, B, H)")
    dstate_n = []
    for name, given, size in (("dh_n", dh_n, P), ("dc_n", dc_n, H)):
        if given is not None:
            given = as_float_array(name, given, dtype)
            check_shape(name, given, (B, size), "(B, H)")
        dstate_n.append(given)
    stops = final_steps(last, T)  # {t: rows whose dh_n, dc_n enter after step t}
    dh, dc = np.zeros((B, P), dtype), np.zeros((B, H), dtype)

    kernels = _fast.kernels(B * w_hh.size)  # the compiled loop (optional extra), or NumPy
    if kernels is None:
        # Per step and row: [u | da_o | da_i | da_f | da_g | dc_prev], u = dh_t * dtanh/dc
        work = _workspace((T, B, 6 * H), dtype)
        da = work[:, :, H : 5 * H]  # (T, B, 4H), row stride 6H
    else:
        da = _workspace((T, B, 4 * H), dtype)
    dhs = None if w_hr is None else np.empty((T, B, P), dtype)  # dL/dh_t, for dW_hr
    m = None if w_hr is None else np.empty((T, B, H), dtype)  # o * tanh(c_t), for dW_hr
    step_bias = None if k is None else _step_bias(bias, H, kernels)
    pre = None if k is None else _projection(x, w_ih, bias, H, step_bias)[0]  # recomputed
    segs = segments(T, k)
    # contiguous for the kernel (a strided array would compile a slower specialisation)
    w_hr_c = None if w_hr is None else np.ascontiguousarray(w_hr)
    blocks = _blas.step_blocks(w_hh, B)  # dh = da_t W_hh by column blocks, or None
    for s in reversed(range(len(segs))):
        t0, t1 = segs[s]
        if k is None:
            g_s, c_s, tc_s = gates[t0:t1], c[t0 : t1 + 1], tanh_c[t0:t1]
        else:
            g_s, c_s, tc_s = recompute_segment(cache, pre, s, step_bias)
        if m is not None:
            np.multiply(g_s[:, :, :H], tc_s, out=m[t0:t1])  # (6), the same op as the forward
        # split where rows end: there their dh_n, dc_n join the carried gradient
        for a, b, rows in backward_pieces(t0, t1, stops):
            dh, dc = add_final_grads((dh, dc), dstate_n, rows)
            i, j = a - t0, b - t0
            dout = None if doutput is None else doutput[a:b]
            dhs_ab = None if dhs is None else dhs[a:b]
            if kernels is None:
                dh, dc = _backward_steps(g_s[i:j], c_s[i : j + 1], tc_s[i:j], w_hh, work[a:b],
                                         dout, dh, dc, w_hr, dhs_ab, blocks)
            else:
                dh, dc = kernels.lstm_backward_steps(g_s[i:j], c_s[i : j + 1], tc_s[i:j], w_hh,
                                                     da[a:b], dout, dh, dc, w_hr_c, dhs_ab,
                                                     *_blas.step_plan(B, w_hh, blocks))
    del pre
    if kernels is None:
        dc = dc.copy()  # a view into `work`

    da = da.reshape(T * B, 4 * H)  # (T*B, 4H)
    dx = None
    if need_dx:  # (T*B, 4H) @ (4H, D)
        dx = _memory.empty((T, B, D), dtype)
        _blas.matmul_rows(da, w_ih, dx.reshape(T * B, D))
    # (x^T da)^T rather than da^T x: the same numbers, but OpenBLAS runs this layout about 15%
    # faster in float64 for these tall (T*B rows) products (benchmarks/README.md).
    # the forward looked at x: ids is None when x is not one-hot
    dw_ih, dw_hh = layer_weight_grads(x.reshape(T * B, D), h[:-1].reshape(T * B, P), da, ids)
    if kernels is None:
        grads = {"weight_ih": to_pytorch(dw_ih.T, H), "weight_hh": to_pytorch(dw_hh.T, H)}
        db = to_pytorch(da.sum(axis=0), H) if has_bias else None  # (4H,)
    else:  # the same arrays (bitwise) in one call
        dw_ih, dw_hh, db = kernels.lstm_grads_to_pytorch(dw_ih, dw_hh, da, _row_order(H, False),
                                                         has_bias)
        grads = {"weight_ih": dw_ih, "weight_hh": dw_hh}
    if has_bias:
        grads["bias_ih"] = db
        grads["bias_hh"] = db.copy()
    if w_hr is not None:
        grads["weight_hr"] = (m.reshape(T * B, H).T @ dhs.reshape(T * B, P)).T  # (P, H), (7)
    return dx, dh, dc, grads


def _backward_steps(gates, c, tanh_c, w_hh, work, doutput, dh, dc, w_hr=None, dhs=None,
                    blocks=None):
    """BPTT over n consecutive steps (one checkpoint segment, or the whole sequence).

    Parameters
    ----------
    gates : (n, B, 4H) post-activations (o, i, f, g); c : (n + 1, B, H); tanh_c : (n, B, H)
    w_hh : (4H, H), internal order ((4H, P) with a projection)
    work : (n, B, 6H), written: per row [u, da_o, da_i, da_f, da_g, dc_{t-1}]
    doutput : (n, B, H) or None ((n, B, P) with a projection)
    dh, dc : (B, H), carried in from step n (not modified); dh (B, P) with a projection
    w_hr : (P, H) or None, the projection; dhs : (n, B, P), written with dL/dh_t when given
    blocks : :func:`lstm_bptt._blas.step_blocks` of w_hh (da_t W_hh by column blocks) or None

    Returns
    -------
    dh, dc : (B, H), carried out to the step before the segment (dc is a view into ``work``).

    Notes
    -----
    With Q = [o (1 - tanh_c^2), tanh_c o (1 - o)] and P = [g i (1 - i), c_prev f (1 - f),
    i (1 - g^2), f] precomputed for a chunk of steps, one step is::

        dh_t = doutput_t + dh
        [u, da_o] = dh_t * Q_t                   (with a projection: dh_t @ W_hr * Q_t)
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
    n_out = w_hh.shape[1]  # P with a projection, else H
    dh_t = np.empty((B, H), dtype)  # dL/dm_t, m = o * tanh(c) (= h_t without projection)
    dh_t3 = dh_t[:, None, :]
    dh_bufs = (np.empty((B, n_out), dtype), np.empty((B, n_out), dtype))  # dh_{t-1}
    recurrent = _blas.StepProduct(w_hh, B, blocks)
    dhs_l = None if w_hr is None else list(dhs)
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
            if dhs_l is None:
                if douts is not None:
                    np.add(douts[t], dh, out=dh_t)  # output gradient plus carried dh
                else:
                    dh_t[...] = dh
            else:
                if douts is not None:
                    np.add(douts[t], dh, out=dhs_l[t])  # dL/dh_t, h_t = W_hr m_t
                else:
                    dhs_l[t][...] = dh
                np.dot(dhs_l[t], w_hr, out=dh_t)  # dL/dm_t = dL/dh_t W_hr, through (7)
            np.multiply(dh_t3, Ql[t - s0], out=w2[t])  # u, da_o
            u[t] += dc  # dc_t
            np.multiply(u3[t], Pl[t - s0], out=w4[t])  # da_i, da_f, da_g, dc_{t-1}
            dc = dcs[t]
            dh = dh_bufs[j % 2]
            j += 1
            recurrent(da[t], dh)  # dh_{t-1} = da_t W_hh
    return dh, dc


# =============================================================================================
# 4. The cell contract (lstm_bptt.cells.base.Cell): what the Recurrent layer calls
# =============================================================================================


class LSTMCell(Cell):
    """The LSTM behind the common cell interface (PyTorch ``nn.LSTM`` layout, gates i, f, g, o).

    Stateless: it holds no parameters (the layer passes them in as a dict keyed ``weight_ih``,
    ``weight_hh``, ``bias_ih``, ``bias_hh``, and ``weight_hr`` with a projection). State tuple
    ``(h, c)``, both (B, H), or h (B, P) with a projection.

    Parameters
    ----------
    proj_size : int
        P > 0 adds the projection of LSTMP (Sak, Senior & Beaufays 2014; PyTorch's
        ``proj_size``): ``weight_hr`` (P, H), h = W_hr (o * tanh(c)) of size P is the output
        and the recurrent input (``weight_hh`` (4H, P)); c stays of size H. 0 (default): none.
        The layer requires P < H, as PyTorch.

    Init options (keyword arguments of :meth:`init_params`, and of the layer
    :class:`lstm_bptt.recurrent.LSTM`):

    forget_bias : float or None
        Forget-gate block of ``bias_ih`` set to this value and that of ``bias_hh`` to 0, so
        the effective forget bias is exactly ``forget_bias`` (Gers et al. 2000; Jozefowicz,
        Zaremba & Sutskever 2015 recommend 1.0; long-lag tasks need 3 to 5). Needs biases.
    input_bias : float or None
        The same for the input gate (Hochreiter & Schmidhuber 1997 use negative input-gate
        biases so that memory cells start closed). Needs biases.
    recurrent_init : {"uniform", "orthogonal"}
        "uniform" is PyTorch's U(-1/sqrt(H), 1/sqrt(H)); "orthogonal" replaces each (H, H)
        gate block of ``weight_hh`` by an independent random orthogonal matrix (Saxe et al.
        2014), drawn after the uniform draws.
    """

    name = "lstm"
    state_names = ("h", "c")
    num_gates = 4
    gate_names = ("i", "f", "g", "o")
    init_option_names = ("forget_bias", "input_bias", "recurrent_init")
    supports_last = True

    def __init__(self, proj_size: int = 0):
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size: expected an int >= 0, got {proj_size!r}")
        if proj_size < 0:
            raise ValueError(f"proj_size: expected an int >= 0, got {proj_size}")
        self.proj_size = int(proj_size)

    def __repr__(self) -> str:
        return f"LSTMCell(proj_size={self.proj_size})" if self.proj_size else "LSTMCell()"

    def param_shapes(self, input_size, hidden_size, bias):
        """PyTorch's order: ``weight_ih`` (4H, D), ``weight_hh`` (4H, H or P), ``bias_ih``,
        ``bias_hh`` (4H,), then ``weight_hr`` (P, H) with a projection."""
        H, P = hidden_size, self.proj_size
        shapes = {"weight_ih": (4 * H, input_size), "weight_hh": (4 * H, P or H)}
        if bias:
            shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
        if P:
            shapes["weight_hr"] = (P, H)
        return shapes

    def state_sizes(self, hidden_size):
        """(H, H), or (P, H) with a projection."""
        return (self.proj_size or hidden_size, hidden_size)

    def check_init_options(self, bias, forget_bias=None, input_bias=None,
                           recurrent_init="uniform", **unknown):
        super().check_init_options(bias, **unknown)
        for name, value in (("forget_bias", forget_bias), ("input_bias", input_bias)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name}: expected a float or None, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite float, got {value}")
            if not bias:
                raise ValueError(
                    f"{name}: given ({value}) but bias=False, so there is no bias to set; use "
                    f"bias=True or {name}=None"
                )
        if recurrent_init not in ("uniform", "orthogonal"):
            raise ValueError(
                f"recurrent_init: expected 'uniform' or 'orthogonal', got {recurrent_init!r}"
            )
        if recurrent_init == "orthogonal" and self.proj_size:
            raise ValueError("recurrent_init: 'orthogonal' needs square (H, H) blocks of "
                             "weight_hh, with proj_size they are (H, P); use 'uniform'")
        return {"forget_bias": forget_bias, "input_bias": input_bias,
                "recurrent_init": recurrent_init}

    def init_params(self, input_size, hidden_size, bias, dtype, rng, **init):
        opts = self.check_init_options(bias, **init)
        H = hidden_size
        params = self.uniform_params(input_size, hidden_size, bias, dtype, rng)
        if opts["recurrent_init"] == "orthogonal":
            for gate in range(4):
                params["weight_hh"][gate * H : (gate + 1) * H] = orthogonal(rng, H, dtype)
        for option, gate in (("forget_bias", 1), ("input_bias", 0)):  # blocks i, f, g, o
            if opts[option] is not None:
                params["bias_ih"][gate * H : (gate + 1) * H] = opts[option]
                params["bias_hh"][gate * H : (gate + 1) * H] = 0.0
        return params

    # --- the step reference
    def step_forward(self, x, state, params):
        h, c, cache = lstm_step_forward(x, state[0], state[1], params["weight_ih"],
                                        params["weight_hh"], params.get("bias_ih"),
                                        params.get("bias_hh"), params.get("weight_hr"))
        return (h, c), cache

    def step_backward(self, dstate, step_cache):
        dx, dh_prev, dc_prev, grads = lstm_step_backward(dstate[0], dstate[1], step_cache)
        return dx, (dh_prev, dc_prev), grads

    # --- the fast sequence path
    def forward(self, x, state0, params, *, checkpoint_every=None, last=None):
        h_0, c_0 = (None, None) if state0 is None else state0
        output, (h_n, c_n), cache = lstm_forward(
            x, h_0, c_0, params["weight_ih"], params["weight_hh"], params.get("bias_ih"),
            params.get("bias_hh"), checkpoint_every=checkpoint_every,
            weight_hr=params.get("weight_hr"), last=last)
        return output, (h_n, c_n), cache

    def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
        dh_n, dc_n = (None, None) if dstate_n is None else dstate_n
        dx, dh_0, dc_0, grads = lstm_backward(doutput, cache, dh_n, dc_n, need_dx=need_dx)
        return dx, (dh_0, dc_0), grads

    def state_at(self, cache, t):
        """(h_t, c_t) after step ``t`` (0 <= t <= T), as read-only views or fresh arrays.

        With recomputation (``checkpoint_every``) c_t is stored only at segment boundaries;
        otherwise its segment's forward is recomputed (the same operations: bitwise equal).
        """
        T = cache.x.shape[0]
        k = cache.checkpoint_every
        if k is None or t == T or t % k == 0:
            c_t = cache.c[t if k is None else (len(cache.c) - 1 if t == T else t // k)]
        else:
            s = t // k
            H = cache.weight_hh.shape[0] // 4
            pre = _projection(cache.x, cache.weight_ih, cache.bias, H)[0]
            _, c_seg, _ = recompute_segment(cache, pre, s)
            c_t = c_seg[t - s * k]
        return cache.h[t], c_t

    def per_step(self, cache):
        """``h``, ``c`` (T, B, H) for steps 1..T and the gates ``i``, ``f``, ``g``, ``o``
        (post-activation, PyTorch's order; recomputed when the cache was checkpointed)."""
        H = cache.weight_hh.shape[0] // 4
        gates, c = cache.gates, cache.c
        if gates is None:  # checkpointed: recompute every segment
            T, B = self.cache_dims(cache)
            pre = _projection(cache.x, cache.weight_ih, cache.bias, H)[0]
            c = np.empty((T + 1, B, H), pre.dtype)
            c[0] = cache.c[0]
            for s, (t0, t1) in enumerate(segments(T, cache.checkpoint_every)):
                _, c_seg, _ = recompute_segment(cache, pre, s)  # activates pre[t0:t1] in place
                c[t0 + 1 : t1 + 1] = c_seg[1:]
            gates = pre
        o, i, f, g = (gates[:, :, k * H : (k + 1) * H] for k in range(4))  # internal order
        return {"h": cache.h[1:], "c": c[1:], "i": i, "f": f, "g": g, "o": o}
