"""Generate tests/fixtures/gru_torch.npz and rnn_torch.npz: ``nn.GRU`` / ``nn.RNN`` references.

Run once, by hand, with ``pip install torch==2.13.0`` (CPU)::

    python scripts/make_gru_rnn_fixtures.py

The tests read the .npz files without importing torch. For every case ``<case>`` a file holds

* ``<case>/config``: JSON string ``{"D", "H", "L", "T", "B", "batch_first", "bias", "dtype",
  "nonlinearity", "bidirectional"}`` (``nonlinearity`` is "tanh" or "relu" for ``nn.RNN``,
  null for ``nn.GRU``);
* ``<case>/lengths``: (B,) int64, only for the cases with lengths (in no particular order,
  ``pack_padded_sequence(..., enforce_sorted=False)``, including 1 and T);
* ``<case>/param/<name>``: ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}`` and (with bias)
  ``bias_ih_l{k}``, ``bias_hh_l{k}`` (PyTorch's names and layout; both biases random, non-zero
  and different, so a bug that mixes them up or drops one shows: for the GRU b_hn sits inside
  r * (.) and b_in outside, so the two are not interchangeable);
* ``<case>/x`` ((T, B, D), or (B, T, D) if batch_first), ``<case>/h_0`` (L * dirs, B, H),
  non-zero;
* ``<case>/R`` (shaped like output), ``<case>/Rh`` (L * dirs, B, H): the loss is
  ``sum(output * R) + sum(h_n * Rh)``;
* ``<case>/output`` (padded to T with zeros, as ``pad_packed_sequence``), ``<case>/h_n``: the
  forward results;
* ``<case>/grad/<name>``, ``<case>/dx``, ``<case>/dh_0``: the gradients of the loss by autograd.

Cases (the same in both files; for ``nn.RNN`` each exists with tanh and with relu, prefixed
``tanh_`` / ``relu_``): ``f64`` (2 layers, time-major), ``f64_1layer_batch_first``,
``f64_nobias`` (2 layers, bias=False), ``f32`` (2 layers, time-major, float32),
``lengths_bidir`` (2 layers), ``batch_first_lengths``, ``bidir_f32`` (2 layers, float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"

CASES = {
    # name: (D, H, L, T, B, batch_first, bias, dtype[, options]); H != D so that a transposed
    # weight cannot pass
    "f64": (3, 4, 2, 5, 2, False, True, torch.float64),
    "f64_1layer_batch_first": (4, 3, 1, 4, 3, True, True, torch.float64),
    "f64_nobias": (3, 5, 2, 4, 2, False, False, torch.float64),
    "f32": (3, 5, 2, 6, 2, False, True, torch.float32),
    "lengths_bidir": (3, 4, 2, 5, 4, False, True, torch.float64,
                      dict(lengths=[3, 5, 1, 4], bidirectional=True)),
    "batch_first_lengths": (4, 3, 1, 4, 3, True, True, torch.float64, dict(lengths=[1, 4, 2])),
    "bidir_f32": (3, 5, 2, 4, 2, False, True, torch.float32, dict(bidirectional=True)),
}


def make_case(module, name, D, H, L, T, B, batch_first, bias, dtype, options=None, *, seed,
              nonlinearity=None):
    options = options or {}
    lengths = options.get("lengths")
    bidirectional = options.get("bidirectional", False)
    dirs = 2 if bidirectional else 1
    gen = torch.Generator().manual_seed(seed)
    kwargs = {} if nonlinearity is None else {"nonlinearity": nonlinearity}
    net = module(D, H, num_layers=L, bias=bias, batch_first=batch_first, dtype=dtype,
                 bidirectional=bidirectional, **kwargs)
    with torch.no_grad():
        for p in net.parameters():
            # larger than the default init so the gates are not all near 0.5 (relu: a few
            # units are negative, so both branches of the derivative are exercised)
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=dtype))
    params = {k: v.detach().numpy().copy() for k, v in net.named_parameters()}
    if bias:
        for k in range(L):
            b_ih, b_hh = params[f"bias_ih_l{k}"], params[f"bias_hh_l{k}"]
            assert np.all(b_ih != 0) and np.all(b_hh != 0) and np.all(b_ih != b_hh)
    else:
        assert not any(k.startswith("bias") for k in params)

    xshape = (B, T, D) if batch_first else (T, B, D)
    x = torch.randn(xshape, generator=gen, dtype=dtype, requires_grad=True)
    h_0 = (0.5 * torch.randn((L * dirs, B, H), generator=gen, dtype=dtype)).requires_grad_()
    if lengths is None:
        output, h_n = net(x, h_0)
    else:
        assert len(lengths) == B and 1 in lengths and T in lengths
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        out_packed, h_n = net(packed, h_0)
        output, out_lengths = pad_packed_sequence(out_packed, batch_first=batch_first,
                                                  total_length=T)
        assert out_lengths.tolist() == list(lengths)
    if nonlinearity == "relu":
        # both branches of relu' must occur, else a wrong derivative at a < 0 would pass
        assert (output == 0).any() and (output > 0).any()
    R = torch.randn(output.shape, generator=gen, dtype=dtype)
    Rh = torch.randn(h_n.shape, generator=gen, dtype=dtype)
    loss = (output * R).sum() + (h_n * Rh).sum()
    loss.backward()

    def np_(t):
        return t.detach().numpy().copy()

    out = {
        f"{name}/config": np.array(json.dumps({
            "D": D, "H": H, "L": L, "T": T, "B": B, "batch_first": batch_first, "bias": bias,
            "dtype": str(dtype).removeprefix("torch."), "nonlinearity": nonlinearity,
            "bidirectional": bidirectional,
        })),
        f"{name}/x": np_(x), f"{name}/h_0": np_(h_0),
        f"{name}/R": np_(R), f"{name}/Rh": np_(Rh),
        f"{name}/output": np_(output), f"{name}/h_n": np_(h_n),
        f"{name}/dx": np_(x.grad), f"{name}/dh_0": np_(h_0.grad),
    }
    if lengths is not None:
        out[f"{name}/lengths"] = np.asarray(lengths, np.int64)
    for pname, p in net.named_parameters():
        out[f"{name}/param/{pname}"] = params[pname]
        out[f"{name}/grad/{pname}"] = np_(p.grad)
    return out


def main():
    torch.use_deterministic_algorithms(True)
    gru, rnn = {}, {}
    for seed, (name, spec) in enumerate(CASES.items()):
        gru.update(make_case(torch.nn.GRU, name, *spec, seed=2014 + seed))
        for k, nl in enumerate(("tanh", "relu")):
            rnn.update(make_case(torch.nn.RNN, f"{nl}_{name}", *spec, seed=1990 + 10 * k + seed,
                                 nonlinearity=nl))
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for fname, arrays in (("gru_torch.npz", gru), ("rnn_torch.npz", rnn)):
        np.savez_compressed(FIXTURES / fname, **arrays)
        print(f"wrote {fname} ({len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
