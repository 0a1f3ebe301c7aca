"""Shared helpers for the core tests: random LSTM parameters with every entry non-zero."""

from __future__ import annotations

import io

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


def lstm_params(rng, D, H, dtype=np.float64, bias=True, scale=0.5):
    """Random (weight_ih (4H, D), weight_hh (4H, H), bias_ih, bias_hh (4H,)) for one layer.

    The two biases are drawn independently (so they differ everywhere) and are non-zero, so a
    backward pass that mixes them up or drops one cannot pass a check.
    """
    w_ih = (scale * rng.standard_normal((4 * H, D))).astype(dtype)
    w_hh = (scale * rng.standard_normal((4 * H, H))).astype(dtype)
    if not bias:
        return w_ih, w_hh, None, None
    b_ih = (scale * rng.standard_normal(4 * H)).astype(dtype)
    b_hh = (scale * rng.standard_normal(4 * H)).astype(dtype)
    assert np.all(b_ih != b_hh) and np.all(b_ih != 0) and np.all(b_hh != 0)
    return w_ih, w_hh, b_ih, b_hh


def randomize_params(model, rng, scale=0.5):
    """Overwrite every parameter of a layer in place with N(0, scale^2) values (non-zero)."""
    for p in model.params.values():
        p[...] = scale * rng.standard_normal(p.shape)


def npz_round_trip(tree: dict) -> dict:
    """Flatten a nested state dict into an .npz (no pickle) and read it back, like a checkpoint."""
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            key = f"{prefix}/{k}" if prefix else k
            if isinstance(v, dict):
                walk(key, v)
            else:
                assert isinstance(v, (np.ndarray, bool, int, float, str)), (key, v)
                flat[key] = np.asarray(v)

    walk("", tree)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    buf.seek(0)
    out: dict = {}
    with np.load(buf, allow_pickle=False) as f:
        for key in f.files:
            node = out
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = f[key]
    return out
