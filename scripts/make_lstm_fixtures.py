"""Generate tests/fixtures/lstm_torch.npz: PyTorch ``nn.LSTM`` forward and gradients.

Run once, by hand, with ``pip install torch==2.13.0`` (CPU)::

    python scripts/make_lstm_fixtures.py

The tests read the .npz without importing torch. For every case ``<case>`` the file holds

* ``<case>/config``: JSON string ``{"D", "H", "L", "T", "B", "batch_first", "dtype"}``;
* ``<case>/param/<name>``: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
  ``bias_hh_l{k}`` (PyTorch's names and layout; both biases random, non-zero and different);
* ``<case>/x`` ((T, B, D), or (B, T, D) if batch_first), ``<case>/h_0``, ``<case>/c_0`` (L, B, H);
* ``<case>/R`` (shaped like output), ``<case>/Rh``, ``<case>/Rc`` (L, B, H): the loss is
  ``sum(output * R) + sum(h_n * Rh) + sum(c_n * Rc)``;
* ``<case>/output``, ``<case>/h_n``, ``<case>/c_n``: the forward results;
* ``<case>/grad/<name>``, ``<case>/dx``, ``<case>/dh_0``, ``<case>/dc_0``: the gradients of
  the loss by autograd.

Cases: ``f64`` (time-major), ``f64_batch_first`` and ``f32`` (time-major, float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lstm_torch.npz"

CASES = {
    # name: (D, H, L, T, B, batch_first, dtype); H != D so a transposed weight cannot pass
    "f64": (3, 4, 2, 5, 2, False, torch.float64),
    "f64_batch_first": (4, 3, 2, 4, 3, True, torch.float64),
    "f32": (3, 5, 2, 6, 2, False, torch.float32),
}


def make_case(name, D, H, L, T, B, batch_first, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, num_layers=L, batch_first=batch_first, dtype=dtype)
    with torch.no_grad():
        for p in lstm.parameters():
            # larger than the default init so the gates are not all near 0.5, and biases random
            # so that a bug mixing up bias_ih and bias_hh (or ignoring one) shows
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=dtype))
    params = {k: v.detach().numpy().copy() for k, v in lstm.named_parameters()}
    for k in range(L):
        b_ih, b_hh = params[f"bias_ih_l{k}"], params[f"bias_hh_l{k}"]
        assert np.all(b_ih != 0) and np.all(b_hh != 0) and np.all(b_ih != b_hh)

    xshape = (B, T, D) if batch_first else (T, B, D)
    x = torch.randn(xshape, generator=gen, dtype=dtype, requires_grad=True)
    h_0 = (0.5 * torch.randn((L, B, H), generator=gen, dtype=dtype)).requires_grad_()
    c_0 = torch.randn((L, B, H), generator=gen, dtype=dtype, requires_grad=True)
    output, (h_n, c_n) = lstm(x, (h_0, c_0))
    R = torch.randn(output.shape, generator=gen, dtype=dtype)
    Rh = torch.randn(h_n.shape, generator=gen, dtype=dtype)
    Rc = torch.randn(c_n.shape, generator=gen, dtype=dtype)
    loss = (output * R).sum() + (h_n * Rh).sum() + (c_n * Rc).sum()
    loss.backward()

    def np_(t):
        return t.detach().numpy().copy()

    out = {
        f"{name}/config": np.array(json.dumps({
            "D": D, "H": H, "L": L, "T": T, "B": B, "batch_first": batch_first,
            "dtype": str(dtype).removeprefix("torch."),
        })),
        f"{name}/x": np_(x), f"{name}/h_0": np_(h_0), f"{name}/c_0": np_(c_0),
        f"{name}/R": np_(R), f"{name}/Rh": np_(Rh), f"{name}/Rc": np_(Rc),
        f"{name}/output": np_(output), f"{name}/h_n": np_(h_n), f"{name}/c_n": np_(c_n),
        f"{name}/dx": np_(x.grad), f"{name}/dh_0": np_(h_0.grad), f"{name}/dc_0": np_(c_0.grad),
    }
    for pname, p in lstm.named_parameters():
        out[f"{name}/param/{pname}"] = params[pname]
        out[f"{name}/grad/{pname}"] = np_(p.grad)
    return out


def main():
    arrays = {}
    for seed, (name, spec) in enumerate(CASES.items()):
        arrays.update(make_case(name, *spec, seed=1234 + seed))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
