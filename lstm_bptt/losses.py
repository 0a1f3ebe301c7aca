"""Losses as forward/backward in one call: each returns ``(loss, dinput)``.

Reductions are means, and cross-entropy is in nats (natural log); divide by ln 2 for bits.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from ._checks import as_float_array, check_int_array


def _check_mask(mask, shape, what="that of targets"):
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype.kind not in "buif":
        raise TypeError(f"mask: expected a boolean or 0/1 array, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"mask: expected shape {shape} ({what}), got {mask.shape}")
    if mask.dtype.kind != "b" and not np.isin(mask, (0, 1)).all():
        # a weight mask (0.5, ...) would silently count as True: refuse it
        bad = mask[~np.isin(mask, (0, 1))].ravel()[0]
        raise ValueError(f"mask: expected only 0/1 (or True/False) values, got {bad}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask: every position is masked out; the mean loss is undefined")
    return mask


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean softmax cross-entropy over unmasked positions, in nats, and its gradient.

    Parameters
    ----------
    logits : float ndarray (..., V), e.g. (T, B, V) or (B, V)
        Unnormalised scores.
    targets : integer ndarray (...), e.g. (T, B); values in [0, V)
    mask : bool or 0/1 ndarray (...), optional
        Positions that count (True/1). Masked-out positions contribute neither loss nor
        gradient. None means all count.

    Returns
    -------
    loss : float
        ``-(1/N) sum_{unmasked n} log softmax(logits_n)[targets_n]``, N = number of unmasked
        positions; nats (divide by ln 2 for bits; exp(loss) is the perplexity).
    dlogits : ndarray like logits
        ``(softmax(logits_n) - onehot(targets_n)) / N`` at unmasked n, 0 elsewhere.

    Raises
    ------
    TypeError
        Float targets, integer logits.
    ValueError
        Shape mismatch, empty logits, target ids outside [0, V) (a token not in the
        vocabulary), NaN/inf logits, mask values other than 0/1, all positions masked.

    Notes
    -----
    log-softmax is computed with the log-sum-exp shift (:func:`scipy.special.log_softmax`), so
    logits of any magnitude are safe.
    """
    logits = as_float_array("logits", logits)
    if logits.ndim < 1:
        raise ValueError("logits: expected shape (..., V), got a scalar")
    V = logits.shape[-1]
    if V == 0 or logits.size == 0:
        raise ValueError(
            f"logits: expected a non-empty array (..., V) with V >= 1, got shape {logits.shape}"
        )
    targets = check_int_array("targets", targets, 0, V)
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"targets: expected shape {logits.shape[:-1]} (logits shape without the last "
            f"axis V = {V}), got {targets.shape}"
        )
    mask = _check_mask(mask, targets.shape)
    logp = log_softmax(logits, axis=-1)  # (..., V)
    nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (...)
    dlogits = np.exp(logp)  # softmax
    np.put_along_axis(
        dlogits, targets[..., None],
        np.take_along_axis(dlogits, targets[..., None], axis=-1) - 1, axis=-1,
    )
    if mask is None:
        n = nll.size
        loss = float(nll.sum(dtype=np.float64) / n)
    else:
        n = int(mask.sum())
        loss = float(nll[mask].sum(dtype=np.float64) / n)
        dlogits[~mask] = 0
    dlogits /= logits.dtype.type(n)
    return loss, dlogits


def mse_loss(pred, target, mask=None):
    """Mean squared error and its gradient.

    Parameters
    ----------
    pred : float ndarray, any shape (e.g. (T, B, K) or (B, K))
    target : float ndarray, same shape and dtype
    mask : bool ndarray, same shape as ``pred`` or as ``pred.shape[:-1]``, optional
        Positions that count.

    Returns
    -------
    loss : float
        ``(1/N) sum (pred - target)^2`` over the N unmasked entries.
    dpred : ndarray like pred
        ``2 (pred - target) / N`` at unmasked entries, 0 elsewhere.

    Raises
    ------
    TypeError, ValueError
        Dtype or shape mismatch, empty input, NaN/inf, mask values other than 0/1, all
        entries masked.
    """
    pred = as_float_array("pred", pred)
    target = as_float_array("target", target, pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"target: expected shape {pred.shape} (that of pred), got {target.shape}")
    if pred.size == 0:
        raise ValueError(f"pred: expected a non-empty array, got shape {pred.shape}")
    # in float64: a float32 difference of large values (3e38 - -3e38) would overflow to inf
    diff = pred.astype(np.float64) - target
    if mask is None:
        n = diff.size
    else:
        m = np.asarray(mask)
        if m.shape == pred.shape[:-1]:
            m = np.broadcast_to(m[..., None], pred.shape)
        m = _check_mask(m, pred.shape, f"that of pred, or pred.shape[:-1] = {pred.shape[:-1]}")
        diff = np.where(m, diff, 0)
        n = int(m.sum())
    with np.errstate(over="ignore"):
        loss = float(np.sum(diff * diff) / n)
        dpred = (diff * (2.0 / n)).astype(pred.dtype)
    if not (np.isfinite(loss) and np.isfinite(dpred).all()):
        raise ValueError(f"pred: the squared error of these values overflows float64/"
                         f"{pred.dtype} (largest |pred - target| = {np.abs(diff).max():.3g}); "
                         "rescale the targets")
    return loss, dpred


def softmax_probs(logits, temperature: float = 1.0):
    """Softmax over the last axis with a temperature, (..., V) -> (..., V) probabilities."""
    logits = as_float_array("logits", logits)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.floating):
        raise TypeError(f"temperature: expected a number > 0, got {temperature!r}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature: expected a finite number > 0, got {temperature}")
    # shift first so that the largest scaled logit is 0: a tiny temperature then sends the
    # others to -inf (probability 0, the greedy limit) instead of overflowing into NaN
    shifted = logits - logits.max(axis=-1, keepdims=True)
    with np.errstate(over="ignore"):
        scaled = shifted / np.float64(temperature)
    return softmax(scaled.astype(logits.dtype, copy=False), axis=-1)
