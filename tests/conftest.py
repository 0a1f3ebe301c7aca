"""Shared helpers for the core tests: random LSTM parameters with every entry non-zero."""

from __future__ import annotations

import io

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture
def restore_fast_switch(monkeypatch):
    """For the compiled-path tests: no LSTM_BPTT_FAST from the caller's environment, and the
    switch (``lstm_bptt.set_fast_path``) put back after the test."""
    from lstm_bptt import _fast

    monkeypatch.delenv(_fast.ENV_VAR, raising=False)
    previous = _fast._setting
    yield
    _fast._setting = previous


def fast_paths():
    """The fast-path settings to test: False (NumPy) always, True only with numba."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return [False]
    return [False, True]


@pytest.fixture
def limit(monkeypatch):
    """For the column-block tests (``lstm_bptt._blas``): ``limit(macs)`` sets the small-kernel
    limit that ``step_chunk`` sees, so blocks are cut at small sizes on any machine and BLAS;
    NumPy's BLAS is counted as one thread, so the NumPy path uses the blocks too."""
    from lstm_bptt import _blas

    monkeypatch.setattr(_blas, "numpy_blas_threads", lambda: 1)

    def set_limit(macs):
        monkeypatch.setattr(_blas, "small_gemm_macs", lambda: macs)

    return set_limit


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


def toy_rnn_cell():
    """A one-state cell written in the tests from the contract alone (lstm_bptt.cells.base):
    an Elman tanh RNN whose fast path is simply the base class's plain reference loop. It
    shows that models, the Trainer and checkpoints work with a state of arity 1 without
    knowing the cell (the library's own GRU/RNN cells are tested in their own files)."""
    from lstm_bptt.cells.base import Cell

    class _Toy(Cell):
        name = "toy"
        state_names = ("h",)
        num_gates = 1

        def step_forward(self, x, state, p):
            a = x @ p["weight_ih"].T + state[0] @ p["weight_hh"].T  # Elman (1990)
            if "bias_ih" in p:
                a = a + p["bias_ih"] + p["bias_hh"]
            h = np.tanh(a)
            return (h,), (x, state[0], h, p)

        def step_backward(self, dstate, sc):
            x, h_prev, h, p = sc
            dh = np.zeros_like(h) if dstate[0] is None else dstate[0]
            da = dh * (1 - h * h)  # tanh' = 1 - h^2
            g = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev}
            if "bias_ih" in p:
                g["bias_ih"] = da.sum(0)
                g["bias_hh"] = da.sum(0)
            return da @ p["weight_ih"], (da @ p["weight_hh"],), g

        def forward(self, x, state0, params, *, checkpoint_every=None, last=None):
            out, state_n, caches = self.reference_forward(x, state0, params)
            h0 = caches[0][1]
            return out, state_n, (caches, np.concatenate([h0[None], out]))

        def backward(self, doutput, cache, dstate_n=None, *, need_dx=True):
            return self.reference_backward(doutput, cache[0], dstate_n)

        def cache_dims(self, cache):
            return cache[1].shape[0] - 1, cache[1].shape[1]

        def state_at(self, cache, t):
            return (cache[1][t],)

        def per_step(self, cache):
            return {"h": cache[1][1:]}

    return _Toy()
