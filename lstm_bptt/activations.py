"""Numerically stable activations used by the LSTM.

``sigmoid`` is :func:`scipy.special.expit`, which neither overflows nor warns for any finite
input (|x| = 1000 or 1e4 gives exactly 0.0 or 1.0). ``tanh`` is :func:`numpy.tanh`, which
saturates to +-1 without overflow. Both keep float32 as float32.

The derivatives are written from the post-activation values, as the backward pass stores
those: sigmoid'(x) = s (1 - s), tanh'(x) = 1 - t^2.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid 1 / (1 + exp(-x)), elementwise, without overflow.

    Parameters
    ----------
    x : ndarray of float32 or float64, any shape
    out : ndarray, optional
        Where to write the result (may be ``x`` itself).

    Returns
    -------
    ndarray, same shape and dtype as ``x``.
    """
    return expit(x, out=out) if out is not None else expit(x)


def tanh(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Hyperbolic tangent, elementwise, saturating to +-1 without overflow.

    Parameters
    ----------
    x : ndarray of float32 or float64, any shape
    out : ndarray, optional

    Returns
    -------
    ndarray, same shape and dtype as ``x``.
    """
    return np.tanh(x, out=out) if out is not None else np.tanh(x)
