"""Tests for lstm_bptt.experiments.datasets: shipped files (sha256), loader shapes, dtypes,
splits, values.

Reference values: sha256 digests from the data collection's README (/work/shared/data/README.md);
published summary statistics of the series (R's ``summary(AirPassengers)``: min 104, max 622,
mean 280.3; the 1957 yearly sunspot maximum 190.2; scikit-learn's digits class counts); the raw
files parsed independently with the standard library.
"""

import csv
import gzip
import hashlib
import io

import numpy as np
import pytest

from lstm_bptt.experiments.datasets import (
    SHA256,
    data_file,
    load_airline,
    load_digits,
    load_mnist1d,
    load_sunspots,
    make_windows,
    verify_data_files,
)

README_SHA256 = {
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


@pytest.mark.parametrize("relpath", sorted(README_SHA256))
def test_shipped_file_sha256(relpath):
    digest = hashlib.sha256(data_file(relpath).read_bytes()).hexdigest()
    assert digest == README_SHA256[relpath]
    assert SHA256[relpath] == README_SHA256[relpath]


def test_verify_and_unknown_file():
    verify_data_files()  # raises on any mismatch
    assert set(SHA256) == set(README_SHA256)
    with pytest.raises(ValueError, match="unknown data file"):
        data_file("tinyshakespeare/input.txt")  # deliberately not shipped


def test_mnist1d_shapes_and_values():
    data = load_mnist1d()
    assert data.x_train.shape == (40, 4000, 1) and data.x_test.shape == (40, 1000, 1)
    assert data.y_train.shape == (4000,) and data.y_test.shape == (1000,)
    assert data.x_train.dtype == np.float64 and data.y_train.dtype == np.int64
    assert set(np.unique(data.y_train)) == set(range(10))
    with np.load(io.BytesIO(data_file("mnist1d/mnist1d_default_f32.npz").read_bytes())) as raw:
        x, y, x_test = raw["x"], raw["y"], raw["x_test"]
    # time-major: time step t of example n is sample t of the raw signal n
    np.testing.assert_array_equal(data.x_train[:, 17, 0], x[17].astype(np.float64))
    np.testing.assert_array_equal(data.x_test[:, 999, 0], x_test[999].astype(np.float64))
    np.testing.assert_array_equal(data.y_train, y)
    f32 = load_mnist1d(dtype=np.float32)
    assert f32.x_train.dtype == np.float32
    np.testing.assert_array_equal(f32.x_train[:, :, 0].T, x)


def test_digits_rows_as_time_steps():
    data = load_digits()
    assert data.x_train.shape == (8, 1437, 8) and data.x_test.shape == (8, 360, 8)
    assert data.y_train.dtype == np.int64 and data.x_train.dtype == np.float64
    labels = np.concatenate([data.y_train, data.y_test])
    np.testing.assert_array_equal(
        np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    )
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    with data_file("digits/digits.csv.gz").open("rb") as fh:
        rows = list(csv.reader(io.TextIOWrapper(gzip.GzipFile(fileobj=fh), "ascii")))
    first = [int(v) for v in rows[0]]
    # image row r of example 0 is time step r; pixel (r, c) is column 8r + c of the file
    for r in range(8):
        np.testing.assert_array_equal(data.x_train[r, 0], np.array(first[8 * r : 8 * r + 8]) / 16)
    assert data.y_train[0] == first[64]
    last = [int(v) for v in rows[-1]]
    np.testing.assert_array_equal(data.x_test[:, -1, :].ravel(), np.array(last[:64]) / 16)
    small = load_digits(dtype=np.float32, n_test=97)
    assert small.x_train.shape == (8, 1700, 8) and small.x_train.dtype == np.float32
    with pytest.raises(ValueError, match="n_test"):
        load_digits(n_test=0)


def test_airline_series():
    data = load_airline()
    assert data.values.shape == (144,) and data.values.dtype == np.float64
    assert data.time.dtype == np.dtype("datetime64[M]")
    assert str(data.time[0]) == "1949-01" and str(data.time[-1]) == "1960-12"
    np.testing.assert_array_equal(data.values[:4], [112, 118, 132, 129])
    assert data.values.min() == 104 and data.values.max() == 622
    assert data.values.mean() == pytest.approx(280.3, abs=0.05)
    assert data.train.shape == (120,) and data.test.shape == (24,)
    assert str(data.time[data.n_train]) == "1959-01"
    assert load_airline(np.float32).values.dtype == np.float32


def test_sunspots_series():
    data = load_sunspots()
    assert data.values.shape == data.time.shape == (309,)
    assert data.time[0] == 1700 and data.time[-1] == 2008
    np.testing.assert_array_equal(np.diff(data.time), np.ones(308))
    assert data.values[0] == 5.0 and data.values[-1] == pytest.approx(2.9)
    assert data.time[np.argmax(data.values)] == 1957 and data.values.max() == pytest.approx(190.2)
    assert data.time[data.n_train - 1] == 1920 and data.time[data.n_train] == 1921
    assert data.train.shape == (221,) and data.test.shape == (88,)


def test_make_windows_by_hand():
    series = np.arange(6.0)
    inputs, targets = make_windows(series, window=3)
    assert inputs.shape == (3, 3, 1) and targets.shape == (3, 1)
    np.testing.assert_array_equal(inputs[:, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(inputs[:, 2, 0], [2, 3, 4])
    np.testing.assert_array_equal(targets[:, 0], [3, 4, 5])
    inputs, targets = make_windows(series.astype(np.float32), window=2, horizon=3)
    assert inputs.shape == (2, 2, 1) and inputs.dtype == np.float32
    np.testing.assert_array_equal(targets[:, 0], [4, 5])
    with pytest.raises(ValueError, match="too short"):
        make_windows(series, window=6)
    with pytest.raises(ValueError, match="1-D"):
        make_windows(series[None], window=2)
