"""Modules with parameters: the multi-layer ``LSTM``, ``Linear``, ``Embedding`` and ``Dropout``.

Each module keeps its parameters in ``.params`` (a dict of arrays, names as in PyTorch) and
exposes a pure ``forward(...) -> (output, ..., cache)`` and a ``backward(dout, cache) -> (...,
grads)`` whose ``grads`` dict is keyed exactly like ``params``. Nothing is stored on ``self``
during forward, so forward may be called any number of times before a backward (as a gradient
check does).
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import numpy as np

from ._checks import (
    as_float_array,
    as_rng,
    check_dtype_arg,
    check_int_array,
    check_positive_int,
    check_shape,
)
from .bptt import lstm_backward
from .lstm import LSTMCache, lstm_forward


def _orthogonal(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    """A random (n, n) orthogonal matrix (QR of a Gaussian matrix, signs fixed so the
    distribution is Haar; Saxe, McClelland & Ganguli 2014; Mezzadri 2007)."""
    a = rng.standard_normal((n, n))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.astype(dtype)


class LSTMStackCache(NamedTuple):
    """Cache of :meth:`LSTM.forward`: one :class:`~lstm_bptt.lstm.LSTMCache` per layer,
    the dropout masks between layers (None where no dropout) and the input layout."""

    layers: list
    dropout_masks: list
    batch_first: bool


class LSTM:
    """Multi-layer LSTM with PyTorch ``nn.LSTM`` parameter names, shapes and gate order.

    Parameters
    ----------
    input_size : int
        D, features of the input.
    hidden_size : int
        H, hidden units per layer.
    num_layers : int
        L, stacked layers; layer l > 0 reads the output of layer l - 1.
    bias : bool
        Use ``bias_ih_l*`` and ``bias_hh_l*``.
    batch_first : bool
        Input and output are (B, T, .) instead of (T, B, .). States h_0, c_0, h_n, c_n are
        (L, B, H) either way, as in PyTorch.
    dtype : float32 or float64
        Parameter dtype; inputs must have the same dtype and outputs keep it.
    rng : numpy Generator, int seed or None
        Source of all randomness (initialisation and dropout).
    dropout : float
        Dropout probability on the outputs of every layer except the last (as ``nn.LSTM``);
        active only when ``forward(..., train=True)``. With ``num_layers == 1`` it has no
        effect, and a UserWarning says so (as PyTorch does).
    forget_bias : float or None
        If given, the forget-gate block of ``bias_ih_l*`` is set to this value and that of
        ``bias_hh_l*`` to 0, so the effective forget bias is exactly ``forget_bias``
        (Gers et al. 2000; Jozefowicz, Zaremba & Sutskever 2015 recommend 1.0; long-lag tasks
        need 3 to 5). Must be finite, and requires ``bias=True``.
    recurrent_init : {"uniform", "orthogonal"}
        "uniform" is PyTorch's default U(-1/sqrt(H), 1/sqrt(H)) for every parameter;
        "orthogonal" replaces each (H, H) gate block of ``weight_hh_l*`` by an independent random
        orthogonal matrix (Saxe et al. 2014).
    checkpoint_every : int or None
        Recomputation for long sequences (Chen et al. 2016): keep only h and every k-th cell
        state in the cache and recompute each k-step segment during the backward; gradients
        are bitwise those of the full cache (see :func:`lstm_bptt.lstm.lstm_forward`).

    Attributes
    ----------
    params : dict
        ``weight_ih_l{k}`` (4H, D or H), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` and
        ``bias_hh_l{k}`` (4H,), gates stacked i, f, g, o.

    Raises
    ------
    TypeError
        Non-integer sizes, non-float dtype, ``dropout`` or ``forget_bias`` not a real number.
    ValueError
        Non-positive sizes, dropout outside [0, 1), ``forget_bias`` NaN or inf or given with
        ``bias=False``, unknown ``recurrent_init``.

    Warns
    -----
    UserWarning
        ``dropout > 0`` with ``num_layers == 1``.

    References
    ----------
    PyTorch ``torch.nn.LSTM`` (parameter layout and default initialisation).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dtype=np.float64,
        rng=None,
        dropout: float = 0.0,
        forget_bias: float | None = None,
        recurrent_init: str = "uniform",
        checkpoint_every: int | None = None,
    ):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = check_dtype_arg(dtype)
        self.dropout = check_dropout(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={self.dropout} and "
                "num_layers=1",
                UserWarning,
                stacklevel=2,
            )
        if forget_bias is not None:
            if not _is_real(forget_bias):
                raise TypeError(f"forget_bias: expected a float or None, got {forget_bias!r}")
            if not math.isfinite(forget_bias):
                raise ValueError(f"forget_bias: expected a finite float, got {forget_bias}")
            if not self.bias:
                raise ValueError(
                    f"forget_bias: given ({forget_bias}) but bias=False, so there is no bias to "
                    "set; use bias=True or forget_bias=None"
                )
        if recurrent_init not in ("uniform", "orthogonal"):
            raise ValueError(
                f"recurrent_init: expected 'uniform' or 'orthogonal', got {recurrent_init!r}"
            )
        self.rng = as_rng(rng)
        self.checkpoint_every = checkpoint_every
        H = self.hidden_size
        k = 1.0 / math.sqrt(H)
        self.params: dict[str, np.ndarray] = {}
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else H
            shapes = {"weight_ih": (4 * H, d_in), "weight_hh": (4 * H, H)}
            if self.bias:
                shapes.update(bias_ih=(4 * H,), bias_hh=(4 * H,))
            for name, shape in shapes.items():
                self.params[f"{name}_l{layer}"] = self.rng.uniform(-k, k, shape).astype(self.dtype)
            if recurrent_init == "orthogonal":
                w = self.params[f"weight_hh_l{layer}"]
                for gate in range(4):
                    w[gate * H : (gate + 1) * H] = _orthogonal(self.rng, H, self.dtype)
            if self.bias and forget_bias is not None:
                self.params[f"bias_ih_l{layer}"][H : 2 * H] = forget_bias
                self.params[f"bias_hh_l{layer}"][H : 2 * H] = 0.0

    def __repr__(self) -> str:
        return (
            f"LSTM({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bias={self.bias}, batch_first={self.batch_first}, dtype={self.dtype.name})"
        )

    def _layer_params(self, layer: int):
        p = self.params
        return (
            p[f"weight_ih_l{layer}"],
            p[f"weight_hh_l{layer}"],
            p.get(f"bias_ih_l{layer}"),
            p.get(f"bias_hh_l{layer}"),
        )

    def _check_state(self, name: str, s, B: int) -> np.ndarray:
        s = as_float_array(name, s, self.dtype)
        L, H = self.num_layers, self.hidden_size
        hint = ""
        if s.ndim == 3 and s.shape[0] == B and s.shape[1] == L and L != B:
            hint = "states are (num_layers, B, H) even when batch_first=True, as in PyTorch"
        elif s.ndim == 3 and s.shape[0] == L and s.shape[2] == H and s.shape[1] != B:
            hint = (
                f"the batch size of the input is {B}"
                + ("; did you mean batch_first=True?" if not self.batch_first else "")
            )
        check_shape(name, s, (L, B, H), "(num_layers, B, H)", hint)
        return s

    def forward(self, x, hx=None, *, train: bool = False):
        """Run all layers over the sequence.

        Parameters
        ----------
        x : ndarray (T, B, D), or (B, T, D) if ``batch_first``; dtype = ``self.dtype``
        hx : tuple (h_0, c_0) of ndarrays (L, B, H), or None for zeros
        train : bool
            Apply inter-layer dropout (if ``dropout > 0``), drawing masks from ``self.rng``.

        Returns
        -------
        output : ndarray (T, B, H), or (B, T, H) if ``batch_first``
            Hidden states of the last layer at every step.
        (h_n, c_n) : tuple of ndarrays (L, B, H)
            Final states of every layer.
        cache : LSTMStackCache
            For :meth:`backward`.

        Raises
        ------
        TypeError
            Wrong dtype (e.g. float32 input to a float64 model, or integer token ids: use an
            Embedding first).
        ValueError
            Wrong rank or sizes, with a hint when the batch_first layout looks swapped.
        """
        D = self.input_size
        x = as_float_array("x", x, self.dtype)
        layout = "(B, T, D)" if self.batch_first else "(T, B, D)"
        if x.ndim != 3:
            raise ValueError(
                f"x: expected a 3-D array {layout} with D = input_size = {D}, got shape {x.shape}"
            )
        if x.shape[2] != D:
            raise ValueError(
                f"x: expected shape {layout} with D = input_size = {D}, got {x.shape}"
            )
        if self.batch_first:
            x = x.transpose(1, 0, 2)  # (T, B, D)
        T, B, _ = x.shape
        L = self.num_layers
        if hx is None:
            h_0 = c_0 = None
        else:
            if not (isinstance(hx, tuple | list) and len(hx) == 2):
                raise TypeError("hx: expected a tuple (h_0, c_0) or None")
            h_0 = self._check_state("h_0", hx[0], B)
            c_0 = self._check_state("c_0", hx[1], B)
        caches, masks, h_n, c_n = [], [], [], []
        inp = x
        for layer in range(L):
            out, (h, c), cache = lstm_forward(
                inp,
                None if h_0 is None else h_0[layer],
                None if c_0 is None else c_0[layer],
                *self._layer_params(layer),
                checkpoint_every=self.checkpoint_every,
            )
            caches.append(cache)
            h_n.append(h)
            c_n.append(c)
            mask = None
            if layer < L - 1:
                # between layers only, as nn.LSTM (Zaremba, Sutskever & Vinyals 2014)
                out, mask = dropout_forward(out, self.dropout, self.rng, train)
            masks.append(mask)
            inp = out
        output = inp.transpose(1, 0, 2) if self.batch_first else inp
        return output, (np.stack(h_n), np.stack(c_n)), LSTMStackCache(caches, masks,
                                                                      self.batch_first)

    def _check_cache(self, cache) -> None:
        """Refuse a cache that :meth:`forward` of this model cannot have produced."""
        if not isinstance(cache, LSTMStackCache):
            raise TypeError(
                f"cache: expected the LSTMStackCache returned by LSTM.forward, got "
                f"{type(cache).__name__}"
            )
        L = len(cache.layers)
        if L != self.num_layers or len(cache.dropout_masks) != L:
            raise ValueError(
                f"cache: comes from a model with {L} layer(s), this model has num_layers = "
                f"{self.num_layers}"
            )
        for layer, lc in enumerate(cache.layers):
            d_in = self.input_size if layer == 0 else self.hidden_size
            what = "input_size" if layer == 0 else "hidden_size"
            x, h = np.asarray(lc.x), np.asarray(lc.h)
            if x.ndim != 3 or x.shape[2] != d_in:
                raise ValueError(
                    f"cache: layer {layer} input has {x.shape[-1]} features, this model expects "
                    f"{d_in} ({what})"
                )
            if h.ndim != 3 or h.shape[2] != self.hidden_size:
                raise ValueError(
                    f"cache: layer {layer} has hidden size {h.shape[-1]}, this model has "
                    f"hidden_size = {self.hidden_size}"
                )
            if x.dtype != self.dtype:
                raise ValueError(f"cache: layer {layer} is {x.dtype}, this model is {self.dtype}")
            if bool(lc.has_bias) != self.bias:
                raise ValueError(
                    f"cache: layer {layer} has bias={bool(lc.has_bias)}, this model has "
                    f"bias={self.bias}"
                )

    def backward(self, doutput, cache: LSTMStackCache, dhx=None, *, need_dx: bool = True):
        """Backpropagation through time through all layers.

        Parameters
        ----------
        doutput : ndarray (T, B, H), or (B, T, H) if ``batch_first``; or None for zero
            dL/d output.
        cache : LSTMStackCache
            From :meth:`forward`; not modified.
        dhx : tuple (dh_n, dc_n) of ndarrays (L, B, H), or None
            Gradient arriving at the final states (from a later chunk or a head on h_n).
        need_dx : bool
            Compute the gradient of the input (False: ``dx`` is None and the first layer's
            input GEMM is skipped, e.g. for one-hot inputs).

        Returns
        -------
        dx : ndarray shaped like the input x, or None if not ``need_dx``
        (dh_0, dc_0) : tuple of ndarrays (L, B, H)
        grads : dict keyed exactly like ``params``

        Raises
        ------
        TypeError
            ``cache`` is not an :class:`LSTMStackCache`; gradients of the wrong dtype.
        ValueError
            ``cache`` comes from a model with another number of layers, input or hidden size
            or dtype; gradients of the wrong shape.
        """
        self._check_cache(cache)
        layers: list[LSTMCache] = cache.layers
        L = len(layers)
        T, B, _ = layers[0].x.shape
        H = self.hidden_size
        if doutput is not None:
            doutput = as_float_array("doutput", doutput, self.dtype)
            want = (B, T, H) if cache.batch_first else (T, B, H)
            check_shape("doutput", doutput, want,
                        "(B, T, H)" if cache.batch_first else "(T, B, H)")
            if cache.batch_first:
                doutput = doutput.transpose(1, 0, 2)
        dh_n = dc_n = None
        if dhx is not None:
            dh_n = self._check_state("dh_n", dhx[0], B)
            dc_n = self._check_state("dc_n", dhx[1], B)
        grads: dict[str, np.ndarray] = {}
        dh_0 = np.empty((L, B, H), self.dtype)
        dc_0 = np.empty((L, B, H), self.dtype)
        dout = doutput
        for layer in reversed(range(L)):
            if cache.dropout_masks[layer] is not None and dout is not None:
                dout = dout * cache.dropout_masks[layer]
            dx, dh, dc, g = lstm_backward(
                dout, layers[layer],
                None if dh_n is None else dh_n[layer],
                None if dc_n is None else dc_n[layer],
                need_dx=need_dx or layer > 0,
            )
            dh_0[layer] = dh
            dc_0[layer] = dc
            for k, v in g.items():
                grads[f"{k}_l{layer}"] = v
            dout = dx
        if cache.batch_first and dout is not None:
            dout = dout.transpose(1, 0, 2)
        return dout, (dh_0, dc_0), {k: grads[k] for k in self.params}


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_dropout(dropout, name: str = "dropout") -> float:
    """Return ``dropout`` as a float in [0, 1), or raise TypeError (not a real number, e.g.
    None or the string '0.1') or ValueError (outside [0, 1), NaN)."""
    if not _is_real(dropout):
        raise TypeError(f"{name}: expected a float in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {dropout}")
    return float(dropout)


class Linear:
    """Affine map y = x W^T + b over the last axis (PyTorch ``nn.Linear`` layout).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis before (D) and after (V) the map.
    bias : bool
    dtype : float32 or float64
    rng : Generator, seed or None
        Initialisation U(-1/sqrt(in_features), 1/sqrt(in_features)) as in PyTorch.

    Attributes
    ----------
    params : dict
        ``weight`` (out_features, in_features), ``bias`` (out_features,).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float64, rng=None):
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.dtype = check_dtype_arg(dtype)
        rng = as_rng(rng)
        k = 1.0 / math.sqrt(self.in_features)
        self.params = {
            "weight": rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self.dtype)
        }
        if bias:
            self.params["bias"] = rng.uniform(-k, k, (self.out_features,)).astype(self.dtype)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self.params})"

    def forward(self, x):
        """y = x W^T + b.

        Parameters
        ----------
        x : ndarray (..., D), e.g. (T, B, D) or (B, D); dtype = ``self.dtype``

        Returns
        -------
        y : ndarray (..., V)
        cache : the input x (not copied)

        Raises
        ------
        TypeError, ValueError
            Wrong dtype, last axis != in_features, NaN/inf.
        """
        x = as_float_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape (..., {self.in_features}) (last axis = in_features), "
                f"got {x.shape}"
            )
        y = x @ self.params["weight"].T  # (..., V)
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, dy, cache):
        """Gradients of y = x W^T + b.

        Parameters
        ----------
        dy : ndarray (..., V)
        cache : from :meth:`forward`

        Returns
        -------
        dx : ndarray (..., D)
        grads : dict with ``weight`` (V, D) = sum over rows of dy^T x, ``bias`` (V,) = sum dy
        """
        x = cache
        dy = as_float_array("dy", dy, self.dtype)
        check_shape("dy", dy, x.shape[:-1] + (self.out_features,), "(..., V)")
        dy2 = dy.reshape(-1, self.out_features)  # (N, V)
        x2 = x.reshape(-1, self.in_features)  # (N, D)
        grads = {"weight": dy2.T @ x2}  # (V, D)
        if "bias" in self.params:
            grads["bias"] = dy2.sum(axis=0)
        dx = dy @ self.params["weight"]  # (..., D)
        return dx, grads


class Embedding:
    """Lookup table from integer ids to vectors (PyTorch ``nn.Embedding``; init N(0, 1)).

    Parameters
    ----------
    num_embeddings : int
        V, vocabulary size.
    embedding_dim : int
        D, vector size.
    dtype, rng : as for :class:`Linear`.

    Attributes
    ----------
    params : dict
        ``weight`` (V, D).
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=np.float64, rng=None):
        self.num_embeddings = check_positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.dtype = check_dtype_arg(dtype)
        rng = as_rng(rng)
        self.params = {
            "weight": rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(
                self.dtype
            )
        }

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"

    def forward(self, ids):
        """Look up rows of the table.

        Parameters
        ----------
        ids : integer ndarray, any shape (e.g. (T, B)), values in [0, V)

        Returns
        -------
        out : ndarray ids.shape + (D,)
        cache : the ids

        Raises
        ------
        TypeError
            ``ids`` not integer (e.g. floats or one-hot vectors).
        ValueError
            An id outside [0, V) (an unknown token for this vocabulary).
        """
        ids = check_int_array("ids", ids, 0, self.num_embeddings)
        return self.params["weight"][ids], ids

    def backward(self, dout, cache):
        """Scatter-add dout into the rows that were looked up.

        Parameters
        ----------
        dout : ndarray ids.shape + (D,)
        cache : from :meth:`forward`

        Returns
        -------
        grads : dict with ``weight`` (V, D); rows never looked up get zero.
        """
        ids = cache
        dout = as_float_array("dout", dout, self.dtype)
        check_shape("dout", dout, ids.shape + (self.embedding_dim,), "ids.shape + (D,)")
        dw = np.zeros_like(self.params["weight"])
        np.add.at(dw, ids.reshape(-1), dout.reshape(-1, self.embedding_dim))
        return {"weight": dw}


def dropout_forward(x, p: float, rng, train: bool = True):
    """Inverted dropout (Srivastava et al. 2014): zero each entry with probability p and scale
    the rest by 1 / (1 - p), so evaluation needs no rescaling.

    Parameters
    ----------
    x : float ndarray, any shape
    p : float in [0, 1)
    rng : Generator or seed
    train : bool
        If False (or p == 0), return x unchanged and a None mask.

    Returns
    -------
    y : ndarray, like x
    mask : ndarray like x (entries 0 or 1/(1-p)) or None; the cache for :func:`dropout_backward`.

    Raises
    ------
    TypeError
        ``x`` not a float32/float64 array (the 1/(1-p) scale cannot be represented in an
        integer mask).
    ValueError
        p outside [0, 1).
    """
    x = as_float_array("x", x, finite=False)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected a probability in [0, 1), got {p}")
    if not train or p == 0.0:
        return x, None
    rng = as_rng(rng)
    keep = 1.0 - p
    mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
    return x * mask, mask


def dropout_backward(dy, mask):
    """Backward of :func:`dropout_forward`: dx = dy * mask (dy unchanged if mask is None)."""
    return dy if mask is None else dy * mask
