"""Numerical gradient checking by central differences.

A hand-written backward pass is only as good as its check. This module is what the tests, the
``lstm-bptt gradcheck`` command and users with their own backward pass all use:

* :func:`numerical_gradient` - central differences, one entry at a time, leaving the array
  exactly (bit for bit) as it found it;
* :func:`rel_error` - the elementwise relative error |a - b| / max(|a| + |b|, floor);
* :func:`scaled_rel_errors` - the same with the tensor's RMS magnitude as the floor;
* :func:`gradcheck` - compares an analytic gradient dict with numerical gradients for every
  tensor and returns a per-tensor report (max relative error, index of the worst entry),
  raising :class:`GradcheckError` above a tolerance.

Work in float64: with eps around 1e-5 the central difference has truncation error O(eps^2) and
rounding error O(1e-16 / eps), so agreement to about 1e-7 relative or better is expected of a
correct backward pass (CS231n, "Gradient checks"; Goodfellow, Bengio & Courville 2016, 11.5).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ._checks import is_real


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with central differences.

    ``report`` holds the full :class:`GradcheckReport`.
    """

    def __init__(self, message: str, report: GradcheckReport):
        super().__init__(message)
        self.report = report


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6):
    """Gradient of a scalar function by central differences, entry by entry.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``. ``x`` is perturbed in place, so ``f`` may ignore its argument and
        read the same array from elsewhere (e.g. a model's ``params``).
    x : ndarray of float, any shape
        The point at which to differentiate. Modified during the call and restored exactly
        (the original value of each entry is put back, not recomputed by subtraction).
    eps : float
        Step size h of the central difference.

    Returns
    -------
    grad : ndarray, same shape as ``x``, float64
        (f(x + h e_k) - f(x - h e_k)) / (2 h) for every entry k.

    Raises
    ------
    TypeError
        ``x`` is not a floating-point ndarray (an integer array cannot be perturbed).
    ValueError
        ``eps`` is not positive, ``x`` is read-only, or ``f`` returned a non-finite value.
    """
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"x: expected a float ndarray, got {getattr(x, 'dtype', type(x))}")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive step, got {eps}")
    if not x.flags.writeable:
        raise ValueError(
            "x: is read-only (e.g. an output or cache array of lstm_forward); pass a writable "
            "copy and make f read that copy"
        )
    grad = np.zeros(x.shape, np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx].copy()
        try:
            x[idx] = old + eps
            fp = float(f(x))
            x[idx] = old - eps
            fm = float(f(x))
        finally:
            x[idx] = old
        if not (np.isfinite(fp) and np.isfinite(fm)):
            raise ValueError(f"f returned a non-finite value at index {idx}: {fp}, {fm}")
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def rel_error(a, b, floor: float = 1e-8) -> float:
    """Maximum elementwise relative error max_k |a_k - b_k| / max(|a_k| + |b_k|, floor).

    ``floor`` keeps entries where both gradients are (numerically) zero from dividing by zero.
    Returns 0.0 for empty arrays.

    Raises
    ------
    ValueError
        The shapes differ.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(_rel_errors(a, b, floor)))


def _rel_errors(a, b, floor):
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), floor)


def scaled_rel_errors(a, b) -> np.ndarray:
    """Elementwise relative errors with the tensor's RMS magnitude as the denominator floor.

    ``e_k = |a_k - b_k| / max(|a_k| + |b_k|, rms(a) + rms(b))``, rms(v) = sqrt(mean(v^2)).

    Central differences carry an absolute rounding error of roughly 1e-16 |f| / eps (about
    1e-10 for eps = 1e-6 and a loss of order 10). An entry whose true gradient is 1e-6 would show
    a "relative error" of 1e-4 under the plain definition although nothing is wrong, so entries
    smaller than the tensor's typical magnitude are measured against that magnitude instead.
    A real bug (a sign flip, a transposed weight, a missing term) still gives errors of order
    1e-3 to 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.sqrt(np.mean(a * a)) + np.sqrt(np.mean(b * b)) if a.size else 0.0
    return np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), max(scale, 1e-300))


@dataclass
class TensorCheck:
    """One row of a gradcheck report.

    ``max_rel_error`` is the largest :func:`scaled_rel_errors` entry, at ``worst_index``, where
    the gradients were ``analytic`` and ``numerical``; ``max_abs_error`` is max_k |a_k - n_k|
    (NaN when not computed, for rows built by older code).
    """

    name: str
    shape: tuple
    max_rel_error: float
    worst_index: tuple
    analytic: float
    numerical: float
    passed: bool
    max_abs_error: float = math.nan


@dataclass
class GradcheckReport:
    """Per-tensor results of :func:`gradcheck`; ``passed`` is True when every row passed."""

    rows: list
    tol: float
    atol: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every tensor passed."""
        return all(r.passed for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        """The largest max relative error over all tensors."""
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def __getitem__(self, name: str) -> TensorCheck:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def format(self) -> str:
        """The report as a plain-text table."""
        lines = [f"{'tensor':<24} {'shape':<14} {'max rel err':>11} {'max abs err':>11}  "
                 f"{'worst at':<12} result"]
        for r in self.rows:
            lines.append(
                f"{r.name:<24} {str(r.shape):<14} {r.max_rel_error:>11.2e} "
                f"{r.max_abs_error:>11.2e}  {str(r.worst_index):<12} "
                f"{'pass' if r.passed else 'FAIL'}"
            )
        return "\n".join(lines)


def gradcheck(
    loss_fn: Callable[[], float],
    tensors: Mapping[str, np.ndarray],
    analytic: Mapping[str, np.ndarray],
    *,
    eps: float = 1e-5,
    tol: float = 1e-7,
    atol: float = 0.0,
    raise_on_fail: bool = True,
) -> GradcheckReport:
    """Compare analytic gradients with central differences for every tensor.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn() -> float``: the scalar loss, recomputed from the current contents of the
        arrays in ``tensors`` (which are perturbed in place and restored exactly).
    tensors : mapping name -> float ndarray
        Parameters and inputs to check. Use float64: in float32 the central difference
        carries a rounding error of about 1e-7 |loss| / eps, so even a correct backward pass
        shows relative errors of 1e-3 to 1e-1 (a UserWarning is issued).
    analytic : mapping name -> ndarray
        The gradients from the backward pass under test, same keys and shapes.
    eps : float
        Central-difference step. 1e-5 balances truncation error O(eps^2) against rounding error
        O(1e-16 |loss| / eps) for mean-reduced losses whose gradients are small (about 1e-4);
        measured on the models here it gives relative errors of 1e-9 to 1e-8 where 1e-6 gives
        1e-7 to 5e-7.
    tol : float
        Maximum accepted elementwise relative error, as defined by :func:`scaled_rel_errors`
        (each entry relative to its own magnitude, or to the tensor's RMS magnitude when
        smaller). Must be positive and finite.
    atol : float
        Absolute tolerance: a tensor also passes when max_k |a_k - n_k| <= ``atol``, for
        gradients so small that their relative error is all rounding noise. 0 (default)
        disables it.
    raise_on_fail : bool
        Raise :class:`GradcheckError` if any tensor fails (after checking all of them).

    Returns
    -------
    GradcheckReport
        One :class:`TensorCheck` per tensor, in the order of ``tensors``.

    Raises
    ------
    TypeError
        A tensor is not a floating-point ndarray (e.g. a list, or integer ids), or ``tol``,
        ``eps`` or ``atol`` is not a real number.
    ValueError
        ``tol`` or ``eps`` not positive and finite, ``atol`` negative or non-finite, a tensor
        has no analytic gradient, or the shapes differ.
    GradcheckError
        Some tensor's max relative error exceeds ``tol`` and its max absolute error exceeds
        ``atol`` (only if ``raise_on_fail``).

    Warns
    -----
    UserWarning
        Some tensor is not float64.

    Notes
    -----
    Tensor k passes iff max_j e_j <= tol or max_j |a_j - n_j| <= atol, with e the
    :func:`scaled_rel_errors` of the analytic gradient a and the central difference
    n_j = (L(x + eps e_j) - L(x - eps e_j)) / (2 eps).
    """
    _check_positive_finite("tol", tol)
    _check_positive_finite("eps", eps)
    if not is_real(atol):
        raise TypeError(f"atol: expected a real number, got {type(atol).__name__}")
    if not (math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol: expected a finite number >= 0, got {atol!r}")
    for name, x in tensors.items():
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            got = f"{x.dtype} ndarray" if isinstance(x, np.ndarray) else type(x).__name__
            raise TypeError(f"tensors[{name!r}]: expected a float ndarray, got {got}")
    low_precision = [f"{name} ({x.dtype})" for name, x in tensors.items() if x.dtype != np.float64]
    if low_precision:
        warnings.warn(
            f"gradcheck: {', '.join(low_precision)} not float64; central differences need "
            "float64 (in float32 even a correct gradient shows relative errors of 1e-3 to 1e-1); "
            "build the model with dtype=np.float64",
            UserWarning,
            stacklevel=2,
        )
    if not callable(loss_fn):
        raise TypeError(f"loss_fn: expected a callable () -> float, got {type(loss_fn).__name__}")
    # Central differences assume L is a function of the tensors alone. A forward that draws
    # fresh dropout masks (or reads any other changing state) gives another value at the same
    # point, and every tensor would "FAIL" with a correct backward: detect it and say so.
    first, second = loss_fn(), loss_fn()
    for v in (first, second):
        if isinstance(v, bool) or not isinstance(v, numbers.Real | np.floating | np.ndarray):
            raise TypeError(f"loss_fn: expected it to return a float, got {type(v).__name__}")
    if float(first) != float(second):
        raise ValueError(
            f"loss_fn: the loss is not deterministic (two evaluations at the same point gave "
            f"{float(first)!r} and {float(second)!r}): fix the dropout masks (e.g. reset the "
            "rng before each call) or use eval mode (train=False)")
    rows = []
    for name, x in tensors.items():
        if name not in analytic:
            raise ValueError(f"no analytic gradient for {name!r}; got keys {sorted(analytic)}")
        a = np.asarray(analytic[name], dtype=np.float64)
        if a.shape != x.shape:
            raise ValueError(f"gradient of {name!r}: expected shape {x.shape}, got {a.shape}")
        n = numerical_gradient(lambda _x: loss_fn(), x, eps)
        errs = scaled_rel_errors(a, n)
        k = np.unravel_index(int(np.argmax(errs)), errs.shape) if errs.size else ()
        worst = float(errs[k]) if errs.size else 0.0
        abs_err = float(np.max(np.abs(a - n))) if a.size else 0.0
        rows.append(
            TensorCheck(name, tuple(x.shape), worst, tuple(int(j) for j in k),
                        float(a[k]) if a.size else 0.0, float(n[k]) if n.size else 0.0,
                        worst <= tol or abs_err <= atol, abs_err)
        )
    report = GradcheckReport(rows, tol, atol)
    if raise_on_fail and not report.passed:
        bad = [r for r in rows if not r.passed]
        msg = "; ".join(
            f"{r.name}: max rel error {r.max_rel_error:.2e} > {tol:g} at {r.worst_index} "
            f"(analytic {r.analytic:.6g}, numerical {r.numerical:.6g}; "
            f"max abs error {r.max_abs_error:.2e})"
            for r in bad
        )
        if low_precision:
            msg += (
                f". Note: {', '.join(low_precision)} not float64, and central differences "
                "need float64: build the model with dtype=np.float64 (and float64 inputs)"
            )
        raise GradcheckError("gradient check failed: " + msg, report)
    return report


def _check_positive_finite(name: str, v) -> None:
    if not is_real(v):
        raise TypeError(f"{name}: expected a positive finite number, got {type(v).__name__}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {v!r}")
