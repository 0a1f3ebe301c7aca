"""Validation at public entry points.

Every public function checks its arguments here so that a bad call fails at once with a message
naming what was expected and what came ("expected (T, B, 8), got (5, 8, 3)"), never with a NumPy
broadcasting traceback from deep inside the math.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def describe(x) -> str:
    """Short description of an argument for error messages: shape and dtype, or its type."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def as_float_array(name: str, x, dtype=None, *, finite: bool = True) -> np.ndarray:
    """Return ``x`` as a float32/float64 ndarray, or raise a clear error.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    x : array_like
        The value to check. Lists are converted; integer, boolean, complex and object arrays are
        refused rather than silently cast, since a user passing token ids where a float tensor is
        expected has made a mistake we should name.
    dtype : numpy dtype, optional
        If given, ``x`` must already have this dtype (no silent promotion or demotion).
    finite : bool
        If True, NaN or inf anywhere in ``x`` raises ValueError.

    Raises
    ------
    TypeError
        ``x`` is not numeric floating point, or its dtype differs from ``dtype``.
    ValueError
        ``x`` contains NaN or inf (when ``finite``).
    """
    if not isinstance(x, np.ndarray):
        if x is None:
            raise TypeError(f"{name}: expected a float32 or float64 array, got None")
        try:
            x = np.asarray(x)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise TypeError(f"{name}: expected a float array, got {type(x).__name__}") from exc
        if x.dtype.kind in "iub":
            raise TypeError(
                f"{name}: expected a float32 or float64 array, got {x.dtype} values "
                f"(pass e.g. np.asarray(..., dtype=np.float64))"
            )
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name}: expected dtype {np.dtype(dtype)} to match the other arguments, got {x.dtype}"
            " (mixed float32/float64 arguments are not promoted silently)"
        )
    if finite:
        check_finite(name, x)
    return x


def check_finite(name: str, x: np.ndarray) -> None:
    """Raise ValueError, counting them, if the float array ``x`` holds NaN or inf."""
    if not _all_finite(x):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(f"{name}: contains {n_nan} NaN and {n_inf} inf values")


def _all_finite(x: np.ndarray) -> bool:
    """Whether x has no NaN or inf. One BLAS dot first (x . x is NaN or inf when an element
    is, ~2x cheaper than ``np.isfinite(x).all()``, which allocates a boolean array); only when
    that sum is not finite (a NaN or inf, or finite values whose squares overflow) does the
    exact test decide."""
    return math.isfinite(np.vdot(x, x)) or bool(np.isfinite(x).all())


def as_input_array(name: str, x, dtype, *, finite: bool = True,
                   stacklevel: int = 3) -> np.ndarray:
    """An input at a module's or model's entry point, in the module's dtype.

    The one dtype rule of the library: a module (``LSTM``, ``Linear``, a model) computes in the
    dtype it was built with, end to end. Its float inputs follow it: an array of the other
    precision is converted with a ``UserWarning`` saying so (e.g. a PyTorch user's float32
    batch into a float64 ``LSTM``); lists and scalars are converted silently. The functions
    of the math (``lstm_forward``, the step references, the losses) never convert: there
    mixed precision is a ``TypeError``, as in :func:`as_float_array`.

    ``stacklevel`` is the warning's, counted from this function: 3 points at the line that
    called the public method that called this one.

    Raises
    ------
    TypeError
        Integer, boolean or other non-float values (see :func:`as_float_array`).
    ValueError
        NaN or inf (when ``finite``).
    """
    want = np.dtype(dtype)
    if isinstance(x, np.ndarray):
        if x.dtype in FLOAT_DTYPES and x.dtype != want:
            warnings.warn(
                f"{name}: {x.dtype} input converted to the module's {want} (build it with "
                f"dtype=np.{x.dtype} to compute in {x.dtype})", UserWarning, stacklevel=stacklevel)
            x = x.astype(want)
    elif x is not None:
        arr = np.asarray(x)
        if arr.dtype.kind == "f":
            x = arr.astype(want)
    return as_float_array(name, x, want, finite=finite)


def check_shape(name: str, x: np.ndarray, expected: tuple, axes: str, hint: str = "") -> None:
    """Raise ValueError unless ``x.shape`` matches ``expected`` (None matches any length).

    ``axes`` names the axes for the message, e.g. ``"(T, B, D)"``; ``hint`` is appended.
    """
    ok = x.shape == expected or (x.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, x.shape, strict=False)
    ))
    if not ok:
        want = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ")"
        if len(expected) == 1:
            want = want[:-1] + ",)"
        msg = f"{name}: expected shape {axes} = {want}, got {x.shape}"
        raise ValueError(msg + (f"; {hint}" if hint else ""))


def check_int_array(name: str, x, low: int | None = None, high: int | None = None) -> np.ndarray:
    """Return ``x`` as an integer ndarray with values in ``[low, high)``, or raise.

    Raises
    ------
    TypeError
        ``x`` is not of an integer dtype (floats holding whole numbers are refused too).
    ValueError
        A value lies outside ``[low, high)``; the message gives the offending value.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {x.dtype}")
    if x.size and low is not None and x.min() < low:
        raise ValueError(f"{name}: expected values >= {low}, got {x.min()}")
    if x.size and high is not None and x.max() >= high:
        raise ValueError(
            f"{name}: expected values < {high} (the vocabulary size), got {x.max()}"
        )
    return x


def check_positive_int(name: str, value) -> int:
    """Return ``value`` as int if it is a positive integer, else raise ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def as_rng(rng) -> np.random.Generator:
    """Normalise ``rng`` (None, int seed or Generator) to a ``numpy.random.Generator``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, numbers.Integral):
        return np.random.default_rng(rng)
    raise TypeError(f"rng: expected None, an int seed or a numpy.random.Generator, got {rng!r}")


def check_dtype_arg(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def check_nonneg_int(name: str, value) -> int:
    """Return ``value`` as int if it is an integer >= 0 (bool refused), else raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {value}")
    return int(value)


def is_real(v) -> bool:
    """True for a real number (int, float, NumPy scalar) that is not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_dropout(dropout, name: str = "dropout") -> float:
    """Return ``dropout`` as a float in [0, 1), or raise TypeError (not a real number, e.g.
    None or the string '0.1') or ValueError (outside [0, 1), NaN)."""
    if not is_real(dropout):
        raise TypeError(f"{name}: expected a float in [0, 1), got {dropout!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1), got {dropout}")
    return float(dropout)


def check_int(name: str, value, low: int | None = None) -> int:
    """Return ``value`` as int if it is an integer (bool refused) >= ``low``, else raise.

    TypeError "name: expected an int, got str '3'"; ValueError "name: expected an int >= 1,
    got 0".
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """Return ``value`` as bool if it is a bool (or NumPy bool); a str such as ``"false"`` or
    a number is refused rather than taken for its truth value."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_real(name: str, value, *, low=None, high=None, low_open=False,
               high_open=False) -> float:
    """Return ``value`` as a finite float within the given bounds, else raise.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``. bool and str are
    refused (TypeError); NaN, inf and out-of-range values raise ValueError naming the range.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    v = float(value)
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
    want = "a finite number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (
        f" {hi}" if hi else "")
    if not np.isfinite(v):
        raise ValueError(f"{name}: expected {want}, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name}: expected {want}, got {v}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name}: expected {want}, got {v}")
    return v


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices`` (strings), else raise naming them."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected one of {list(choices)}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value
