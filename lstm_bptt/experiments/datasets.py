"""Loaders for the small real sequence datasets shipped with lstm-bptt.

The files live in the top-level ``datasets/`` folder of the repository (see its README.md for
provenance, licences and sha256). ``pyproject.toml`` installs that folder as the resource-only
subpackage ``lstm_bptt._datasets``; the loaders locate it with :mod:`importlib.resources`, so they
work after ``pip install .`` and ``pip install -e .``, and fall back to ``<repo>/datasets`` when run
from an uninstalled source checkout.

Layout convention (the same as the rest of the library): sequence inputs are **time-major**,
``(T, N, D)`` = (time, example, feature), so a minibatch is ``x[:, idx, :]`` of shape ``(T, B, D)``.
Class labels are ``(N,)`` int64. Time series are returned whole as ``(N,)`` arrays together with
a fixed, documented train/test cut; :func:`make_windows` turns a series into time-major
forecasting windows.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.resources
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._checks import check_dtype_arg, check_int

__all__ = [
    "SHA256",
    "SequenceClassificationData",
    "TimeSeriesData",
    "data_file",
    "load_airline",
    "load_digits",
    "load_mnist1d",
    "load_sunspots",
    "make_windows",
    "verify_data_files",
]

#: sha256 of every shipped file, keyed by its path relative to ``datasets/``.
SHA256 = {
    "mnist1d/mnist1d_default_f32.npz": (
        "b0baa62c2b9b038f713818f22fe116488e2aa8296c36e9a4db21f0c8edc6d10f"
    ),
    "digits/digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "airline/airline_passengers_1949_1960.csv": (
        "eda0181c2450975f5ad68556dcf14367541b22553f0c628b9747334cfdc6c96c"
    ),
    "sunspots/sunspots_yearly_1700_2008.csv": (
        "f67889b1d9002cd5227f0e0ef54e35b419cdd85a31279adef6f73fb41e5c0a9b"
    ),
}

_RESOURCE_PACKAGE = "lstm_bptt._datasets"


class SequenceClassificationData(NamedTuple):
    """A sequence-classification dataset with a fixed train/test split.

    Attributes
    ----------
    x_train : np.ndarray, shape (T, N_train, D)
        Time-major input sequences.
    y_train : np.ndarray, shape (N_train,), int64
        Class labels in ``0 .. C-1``.
    x_test : np.ndarray, shape (T, N_test, D)
    y_test : np.ndarray, shape (N_test,), int64
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class TimeSeriesData(NamedTuple):
    """A univariate time series with a fixed chronological train/test cut.

    Attributes
    ----------
    time : np.ndarray, shape (N,)
        Time stamps (``datetime64[M]`` months or int64 years; see the loader).
    values : np.ndarray, shape (N,)
        Observations, in the loader's documented unit.
    n_train : int
        ``values[:n_train]`` is the training part, ``values[n_train:]`` the test part.
    """

    time: np.ndarray
    values: np.ndarray
    n_train: int

    @property
    def train(self) -> np.ndarray:
        """Training part ``values[:n_train]``, shape (n_train,)."""
        return self.values[: self.n_train]

    @property
    def test(self) -> np.ndarray:
        """Test part ``values[n_train:]``, shape (N - n_train,)."""
        return self.values[self.n_train :]


def _data_root():
    """Return the directory (a Traversable) holding the shipped data files."""
    try:
        return importlib.resources.files(_RESOURCE_PACKAGE)
    except ModuleNotFoundError:
        # Uninstalled source checkout: the package was imported from the repo itself.
        path = Path(__file__).resolve().parents[2] / "datasets"
        if path.is_dir():
            return path
        raise FileNotFoundError(
            f"cannot find the shipped datasets: package {_RESOURCE_PACKAGE!r} is not installed "
            f"and {path} does not exist; reinstall lstm-bptt with `pip install .`"
        ) from None


def data_file(relpath: str):
    """Locate a shipped data file.

    Parameters
    ----------
    relpath : str
        Path relative to the ``datasets/`` folder, one of the keys of :data:`SHA256`
        (e.g. ``"digits/digits.csv.gz"``).

    Returns
    -------
    importlib.resources.abc.Traversable
        Supports ``open("rb")`` and ``read_bytes()``; a :class:`pathlib.Path` for normal installs.

    Raises
    ------
    ValueError
        If ``relpath`` is not a shipped file.
    FileNotFoundError
        If the file is missing from the installation.
    """
    if relpath not in SHA256:
        raise ValueError(f"unknown data file {relpath!r}; expected one of {sorted(SHA256)}")
    node = _data_root()
    for part in relpath.split("/"):
        node = node / part
    if not node.is_file():
        raise FileNotFoundError(
            f"shipped data file {relpath!r} is missing from the installation (looked at {node}); "
            "reinstall lstm-bptt"
        )
    return node


def verify_data_files() -> None:
    """Check every shipped file against its recorded sha256.

    Raises
    ------
    ValueError
        Naming the first file whose digest differs, with expected and actual digests.
    """
    for relpath, expected in SHA256.items():
        actual = hashlib.sha256(data_file(relpath).read_bytes()).hexdigest()
        if actual != expected:
            raise ValueError(f"{relpath}: sha256 expected {expected}, got {actual}")


def load_mnist1d(dtype=np.float64) -> SequenceClassificationData:
    """Load MNIST-1D (default split) as scalar sequences of 40 steps.

    Each example is a 1-D signal of 40 samples derived from one of ten digit templates by random
    padding, shear, translation, correlated noise and i.i.d. noise; a recurrent model reads it one
    sample per time step, as the GRU baseline of the paper does.

    Parameters
    ----------
    dtype : {np.float32, np.float64}, default np.float64
        Dtype of the inputs (the file stores float32; float64 is an exact upcast).

    Returns
    -------
    SequenceClassificationData
        ``x_train`` (40, 4000, 1), ``y_train`` (4000,) int64, ``x_test`` (40, 1000, 1),
        ``y_test`` (1000,) int64; T = 40 time steps, D = 1, 10 classes. The split is the
        dataset's own: the file's ``x``/``y`` are train, ``x_test``/``y_test`` test.

    Notes
    -----
    Published test accuracies on this split (Greydanus 2020, Table/Fig. "benchmarks"):
    logistic regression 32 %, MLP 68 %, GRU 91 %, CNN 94 %; human ~96 %.

    References
    ----------
    S. Greydanus, "Scaling down Deep Learning", arXiv:2011.14439, 2020.
    Data: generated with PyPI ``mnist1d`` 0.0.2.post1 ``make_dataset(get_dataset_args())``,
    Apache-2.0; see datasets/README.md.
    """
    dt = check_dtype_arg(dtype)
    raw = data_file("mnist1d/mnist1d_default_f32.npz").read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as f:
        x, y, x_test, y_test = f["x"], f["y"], f["x_test"], f["y_test"]
    # (N, T) -> (T, N, 1): one scalar per time step.
    return SequenceClassificationData(
        x_train=np.ascontiguousarray(x.T[:, :, None], dtype=dt),
        y_train=y.astype(np.int64),
        x_test=np.ascontiguousarray(x_test.T[:, :, None], dtype=dt),
        y_test=y_test.astype(np.int64),
    )


def load_digits(dtype=np.float64, n_test: int = 360) -> SequenceClassificationData:
    """Load the 8x8 handwritten digits, read row by row as 8 steps of 8 features.

    Parameters
    ----------
    dtype : {np.float32, np.float64}, default np.float64
        Dtype of the inputs.
    n_test : int, default 360
        Number of examples (the last ones in file order) held out for testing; the first
        ``1797 - n_test`` are for training. 360 is about 20 %.

    Returns
    -------
    SequenceClassificationData
        ``x_train`` (8, 1797 - n_test, 8), ``x_test`` (8, n_test, 8) with pixel intensities
        scaled from 0..16 to [0, 1] (divided by 16); time step t is image row t (top to bottom)
        and feature j is column j. ``y_*`` int64 in 0..9.

    Raises
    ------
    ValueError
        If ``n_test`` is not in 1..1796.

    Notes
    -----
    The split is contiguous and deterministic (no shuffling). The file is in the order of the
    UCI distribution, so nearby examples may share a writer.

    References
    ----------
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning
    Repository, 1998 (the 1,797-example test part; CC BY 4.0), as shipped by scikit-learn
    (``sklearn/datasets/data/digits.csv.gz``); see datasets/README.md.
    """
    dt = check_dtype_arg(dtype)
    with data_file("digits/digits.csv.gz").open("rb") as fh, gzip.open(fh, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    n = table.shape[0]
    n_test = check_int("n_test", n_test, low=1)
    if n_test >= n:
        raise ValueError(f"n_test: expected an int in 1..{n - 1}, got {n_test}")
    # (N, 64) row-major pixels -> (N, row, col) -> (row = T, N, col = D)
    images = (table[:, :64].reshape(n, 8, 8) / 16.0).transpose(1, 0, 2)
    labels = table[:, 64]
    cut = n - int(n_test)
    return SequenceClassificationData(
        x_train=np.ascontiguousarray(images[:, :cut], dtype=dt),
        y_train=labels[:cut].copy(),
        x_test=np.ascontiguousarray(images[:, cut:], dtype=dt),
        y_test=labels[cut:].copy(),
    )


def _read_csv_columns(relpath: str) -> tuple[list[str], list[str]]:
    with data_file(relpath).open("rb") as fh:
        rows = list(csv.reader(io.TextIOWrapper(fh, encoding="utf-8")))
    body = [r for r in rows[1:] if r]
    return [r[0] for r in body], [r[1] for r in body]


def load_airline(dtype=np.float64) -> TimeSeriesData:
    """Load the monthly international airline passengers series, 1949-01 .. 1960-12.

    Parameters
    ----------
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    TimeSeriesData
        ``time`` (144,) ``datetime64[M]``; ``values`` (144,) passengers in thousands per month;
        ``n_train = 120``: train 1949-01 .. 1958-12, test the last two years 1959-01 .. 1960-12.

    Notes
    -----
    The series has a trend and a multiplicative yearly seasonality; forecasters usually model
    ``log(values)``. The 120/24 cut is this project's choice (two full seasonal cycles held out).

    References
    ----------
    G. E. P. Box, G. M. Jenkins and G. C. Reinsel, *Time Series Analysis: Forecasting and
    Control*, Series G. Values as embedded in PyPI ``pmdarima`` (``datasets/airpassengers.py``);
    see datasets/README.md.
    """
    dt = check_dtype_arg(dtype)
    months, values = _read_csv_columns("airline/airline_passengers_1949_1960.csv")
    return TimeSeriesData(
        time=np.array(months, dtype="datetime64[M]"),
        values=np.array(values, dtype=np.float64).astype(dt),
        n_train=120,
    )


def load_sunspots(dtype=np.float64) -> TimeSeriesData:
    """Load the yearly mean sunspot numbers, 1700 .. 2008.

    Parameters
    ----------
    dtype : {np.float32, np.float64}, default np.float64

    Returns
    -------
    TimeSeriesData
        ``time`` (309,) int64 years; ``values`` (309,) yearly mean sunspot number
        (dimensionless); ``n_train = 221``: train 1700 .. 1920, test 1921 .. 2008.

    Notes
    -----
    The cut at 1920/1921 is the classic one of Weigend, Huberman & Rumelhart (1990), who trained
    on 1700-1920 and tested on 1921-1955 and 1956-1979; here everything after 1920 is test.

    References
    ----------
    NOAA National Geophysical Data Center, yearly sunspot numbers, as distributed with
    statsmodels 0.15.0 (``datasets/sunspots/sunspots.csv``, public domain); see
    datasets/README.md. A. S. Weigend, B. A. Huberman and D. E. Rumelhart, "Predicting the
    future: a connectionist approach", Int. J. Neural Systems 1(3):193-209, 1990.
    """
    dt = check_dtype_arg(dtype)
    years, values = _read_csv_columns("sunspots/sunspots_yearly_1700_2008.csv")
    return TimeSeriesData(
        time=np.array([int(y) for y in years], dtype=np.int64),
        values=np.array(values, dtype=np.float64).astype(dt),
        n_train=221,
    )


def make_windows(
    series: np.ndarray, window: int, horizon: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a series into time-major sliding windows for one-value-ahead forecasting.

    Parameters
    ----------
    series : np.ndarray, shape (N,)
        Floating-point series; its dtype is kept.
    window : int
        Number of past values fed to the model (T).
    horizon : int, default 1
        How far ahead the target lies: the target of window ``i`` is
        ``series[i + window - 1 + horizon]``.

    Returns
    -------
    inputs : np.ndarray, shape (window, M, 1)
        ``inputs[t, i, 0] = series[i + t]``, with ``M = N - window - horizon + 1`` windows.
    targets : np.ndarray, shape (M, 1)

    Raises
    ------
    ValueError
        If ``series`` is not 1-D, ``window < 1``, ``horizon < 1`` or the series is too short for
        one window.
    """
    series = np.asarray(series)
    if series.ndim != 1:
        raise ValueError(f"series: expected a 1-D array (N,), got shape {series.shape}")
    window = check_int("window", window, low=1)
    horizon = check_int("horizon", horizon, low=1)
    m = series.shape[0] - window - horizon + 1
    if m < 1:
        raise ValueError(
            f"series of length {series.shape[0]} is too short for window={window}, "
            f"horizon={horizon} (needs at least {window + horizon})"
        )
    idx = np.arange(window)[:, None] + np.arange(m)[None, :]  # (window, M)
    inputs = series[idx][:, :, None]
    targets = series[window - 1 + horizon : window - 1 + horizon + m][:, None]
    return inputs, targets
