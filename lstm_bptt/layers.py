"""Modules with parameters: ``Linear`` and ``Embedding``; inverted dropout.

Each module keeps its parameters in ``.params`` (a dict of arrays, names as in PyTorch) and
exposes a pure ``forward(...) -> (output, ..., cache)`` and a ``backward(dout, cache) -> (...,
grads)`` whose ``grads`` dict is keyed exactly like ``params``. Nothing is stored on ``self``
during forward, so forward may be called any number of times before a backward (as a gradient
check does).
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import (
    as_float_array,
    as_input_array,
    as_rng,
    check_bool,
    check_dropout,
    check_dtype_arg,
    check_int_array,
    check_positive_int,
    check_shape,
    describe,
)
from .export import StateDictMixin


class Linear(StateDictMixin):
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

    def __call__(self, x):
        """``linear(x)`` is :meth:`forward`: returns ``(y, cache)``."""
        return self.forward(x)

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
        x = as_input_array("x", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape (..., {self.in_features}) (last axis = in_features), "
                f"got {x.shape}"
            )
        # one GEMM over all rows: NumPy runs (T, B, D) @ (D, V) with a transposed operand as
        # T separate products, ~1.8x slower at (64, 32, 256) @ (256, 103); same numbers
        y = (x.reshape(-1, self.in_features) @ self.params["weight"].T).reshape(
            *x.shape[:-1], self.out_features)  # (..., V)
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, dy, cache):
        """Gradients of y = x W^T + b.

        Parameters
        ----------
        dy : ndarray (..., V); the other float precision is converted to ``self.dtype`` with a
            ``UserWarning``, as ``x`` in :meth:`forward`
        cache : from :meth:`forward`

        Returns
        -------
        dx : ndarray (..., D)
        grads : dict with ``weight`` (V, D) = sum over rows of dy^T x, ``bias`` (V,) = sum dy

        Raises
        ------
        TypeError
            ``cache`` not from :meth:`forward`; ``dy`` not a float array.
        ValueError
            ``dy`` of the wrong shape, or holding NaN or inf.
        """
        x = cache
        if not isinstance(x, np.ndarray) or x.shape[-1:] != (self.in_features,):
            raise TypeError(f"cache: expected the cache returned by this layer's forward (an "
                            f"(..., {self.in_features}) array), got {describe(x)}")
        dy = as_input_array("dy", dy, self.dtype)
        check_shape("dy", dy, x.shape[:-1] + (self.out_features,), "(..., V)")
        dy2 = dy.reshape(-1, self.out_features)  # (N, V)
        x2 = x.reshape(-1, self.in_features)  # (N, D)
        grads = {"weight": dy2.T @ x2}  # (V, D)
        if "bias" in self.params:
            grads["bias"] = dy2.sum(axis=0)
        dx = dy @ self.params["weight"]  # (..., D)
        return dx, grads


class Embedding(StateDictMixin):
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

    def __call__(self, ids):
        """``embedding(ids)`` is :meth:`forward`: returns ``(out, cache)``."""
        return self.forward(ids)

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
        dout : ndarray ids.shape + (D,); the other float precision is converted to
            ``self.dtype`` with a ``UserWarning``
        cache : from :meth:`forward`

        Returns
        -------
        grads : dict with ``weight`` (V, D); rows never looked up get zero.

        Raises
        ------
        TypeError
            ``cache`` not from :meth:`forward`; ``dout`` not a float array.
        ValueError
            ``dout`` of the wrong shape, or holding NaN or inf.
        """
        ids = cache
        if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu":
            raise TypeError("cache: expected the cache returned by this layer's forward (the "
                            f"integer ids), got {describe(ids)}")
        dout = as_input_array("dout", dout, self.dtype)
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
    p = check_dropout(p, "p")
    if not check_bool("train", train) or p == 0.0:
        return x, None
    rng = as_rng(rng)
    keep = 1.0 - p
    mask = (rng.random(x.shape) < keep).astype(x.dtype) / x.dtype.type(keep)
    return x * mask, mask


def dropout_backward(dy, mask):
    """Backward of :func:`dropout_forward`: dx = dy * mask (dy unchanged if mask is None)."""
    return dy if mask is None else dy * mask


def __getattr__(name):
    """``layers.LSTM``, ``layers.LSTMStackCache``: old paths of :mod:`lstm_bptt.recurrent` names."""
    if name in ("LSTM", "LSTMStackCache"):
        from . import recurrent

        return getattr(recurrent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
