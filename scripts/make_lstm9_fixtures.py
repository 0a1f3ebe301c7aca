"""Generate tests/fixtures/lstm9_torch.npz: ``nn.LSTM`` with lengths, bidirectional, proj_size
(and ``nn.GRU`` / ``nn.RNN`` with lengths and bidirectional).

Run once, by hand, with ``pip install torch==2.13.0`` (CPU)::

    python scripts/make_lstm9_fixtures.py

The tests read the .npz without importing torch. For every case ``<case>`` the file holds

* ``<case>/config``: JSON string ``{"cell", "D", "H", "P", "L", "T", "B", "bidirectional",
  "bias", "batch_first", "dtype"}`` (cell "lstm", "gru", "rnn_tanh" or "rnn_relu"; P =
  ``proj_size``, 0 for none); GRU/RNN cases have no ``c_0``, ``c_n``, ``Rc``, ``dc_0``;
* ``<case>/lengths``: (B,) int64, or absent when the case has no lengths. Lengths are in no
  particular order (``pack_padded_sequence(..., enforce_sorted=False)``) and include 1 and T;
* ``<case>/param/<name>``: PyTorch's names and layout (``weight_ih_l{k}[_reverse]``,
  ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, ``weight_hr_l{k}``); every entry
  random N(0, 0.5^2), the two biases non-zero and different;
* ``<case>/x`` ((T, B, D), or (B, T, D) if batch_first), ``<case>/h_0`` (L * dirs, B, P or H),
  ``<case>/c_0`` (L * dirs, B, H), all non-zero;
* ``<case>/R`` (shaped like output), ``<case>/Rh``, ``<case>/Rc``: the loss is
  ``sum(output * R) + sum(h_n * Rh) + sum(c_n * Rc)``;
* ``<case>/output`` (padded to T, zeros at padded steps, as ``pad_packed_sequence``),
  ``<case>/h_n``, ``<case>/c_n``: the forward results, rows in the caller's order;
* ``<case>/grad/<name>``, ``<case>/dx``, ``<case>/dh_0``, ``<case>/dc_0``: the gradients of
  the loss by autograd (dx is zero at padded steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lstm9_torch.npz"

# name: dict of nn.LSTM options and sizes. H != D != P so that a transposed weight cannot pass.
CASES = {
    "lengths": dict(D=3, H=4, L=1, T=5, lengths=[3, 5, 1, 4]),
    "lengths_l2": dict(D=3, H=4, L=2, T=4, lengths=[2, 4, 1]),
    "bidir_l1": dict(D=3, H=4, L=1, T=4, B=2, bidirectional=True),
    "bidir_l2": dict(D=4, H=3, L=2, T=3, B=2, bidirectional=True),
    "proj": dict(D=3, H=5, P=2, L=2, T=4, B=2),
    "nobias_lengths_bidir": dict(D=3, H=4, L=1, T=4, lengths=[4, 1, 3], bidirectional=True,
                                 bias=False),
    "batch_first_lengths_bidir": dict(D=2, H=3, L=2, T=4, lengths=[1, 4, 2],
                                      bidirectional=True, batch_first=True),
    "lengths_proj": dict(D=3, H=4, P=3, L=1, T=5, lengths=[2, 5, 1]),
    "combo": dict(D=3, H=5, P=2, L=2, T=5, lengths=[4, 1, 5, 2], bidirectional=True),
    "combo_batch_first_nobias": dict(D=4, H=3, P=2, L=2, T=3, lengths=[1, 3],
                                     bidirectional=True, batch_first=True, bias=False),
    "combo_f32": dict(D=3, H=5, P=2, L=2, T=5, lengths=[4, 1, 5, 2], bidirectional=True,
                      dtype=torch.float32),
    # the other cells get lengths and bidirectional from the same layer code
    "gru_lengths_bidir_l2": dict(cell="gru", D=3, H=4, L=2, T=5, lengths=[4, 1, 5, 2],
                                 bidirectional=True),
    "rnn_tanh_lengths_bidir_batch_first": dict(cell="rnn_tanh", D=3, H=4, L=1, T=4,
                                               lengths=[2, 4, 1], bidirectional=True,
                                               batch_first=True),
    "rnn_relu_lengths_l2": dict(cell="rnn_relu", D=2, H=3, L=2, T=4, lengths=[1, 3, 4]),
}


def make_case(name, seed, D, H, L, T, B=None, P=0, lengths=None, bidirectional=False,
              bias=True, batch_first=False, dtype=torch.float64, cell="lstm"):
    gen = torch.Generator().manual_seed(seed)
    if lengths is not None:
        B = len(lengths)
        assert 1 in lengths and T in lengths and list(lengths) != sorted(lengths, reverse=True)
    dirs = 2 if bidirectional else 1
    common = dict(num_layers=L, bias=bias, batch_first=batch_first,
                  bidirectional=bidirectional, dtype=dtype)
    if cell == "lstm":
        lstm = torch.nn.LSTM(D, H, proj_size=P, **common)
    elif cell == "gru":
        lstm = torch.nn.GRU(D, H, **common)
    else:
        lstm = torch.nn.RNN(D, H, nonlinearity=cell.split("_")[1], **common)
    with torch.no_grad():
        for p in lstm.parameters():
            # larger than the default init so the gates are not all near 0.5
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=dtype))
    params = {k: v.detach().numpy().copy() for k, v in lstm.named_parameters()}
    for k, v in params.items():
        assert np.all(v != 0), k
        if k.startswith("bias_ih"):
            assert np.all(v != params[k.replace("bias_ih", "bias_hh")]), k

    Hout = P or H
    xshape = (B, T, D) if batch_first else (T, B, D)
    x = torch.randn(xshape, generator=gen, dtype=dtype, requires_grad=True)
    h_0 = (0.5 * torch.randn((L * dirs, B, Hout), generator=gen, dtype=dtype)).requires_grad_()
    c_0 = torch.randn((L * dirs, B, H), generator=gen, dtype=dtype, requires_grad=True)
    hx = (h_0, c_0) if cell == "lstm" else h_0
    if lengths is None:
        output, hn = lstm(x, hx)
    else:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                      enforce_sorted=False)
        out_packed, hn = lstm(packed, hx)
        output, out_lengths = pad_packed_sequence(out_packed, batch_first=batch_first,
                                                  total_length=T)
        assert out_lengths.tolist() == list(lengths)
    h_n, c_n = hn if cell == "lstm" else (hn, None)
    assert output.shape == ((B, T, dirs * Hout) if batch_first else (T, B, dirs * Hout))
    R = torch.randn(output.shape, generator=gen, dtype=dtype)
    Rh = torch.randn(h_n.shape, generator=gen, dtype=dtype)
    loss = (output * R).sum() + (h_n * Rh).sum()
    if cell == "lstm":
        Rc = torch.randn(c_n.shape, generator=gen, dtype=dtype)
        loss = loss + (c_n * Rc).sum()
    loss.backward()

    def np_(t):
        return t.detach().numpy().copy()

    if lengths is not None:  # padded steps: output exactly 0 and no gradient into x
        tmask = np.arange(T)[:, None] >= np.asarray(lengths)[None, :]  # (T, B)
        if batch_first:
            tmask = tmask.T
        assert np.all(np_(output)[tmask] == 0) and np.all(np_(x.grad)[tmask] == 0)

    out = {
        f"{name}/config": np.array(json.dumps({
            "cell": cell, "D": D, "H": H, "P": P, "L": L, "T": T, "B": B,
            "bidirectional": bidirectional, "bias": bias, "batch_first": batch_first,
            "dtype": str(dtype).removeprefix("torch."),
        })),
        f"{name}/x": np_(x), f"{name}/h_0": np_(h_0),
        f"{name}/R": np_(R), f"{name}/Rh": np_(Rh),
        f"{name}/output": np_(output), f"{name}/h_n": np_(h_n),
        f"{name}/dx": np_(x.grad), f"{name}/dh_0": np_(h_0.grad),
    }
    if cell == "lstm":
        out.update({f"{name}/c_0": np_(c_0), f"{name}/Rc": np_(Rc), f"{name}/c_n": np_(c_n),
                    f"{name}/dc_0": np_(c_0.grad)})
    if lengths is not None:
        out[f"{name}/lengths"] = np.asarray(lengths, np.int64)
    for pname, p in lstm.named_parameters():
        out[f"{name}/param/{pname}"] = params[pname]
        out[f"{name}/grad/{pname}"] = np_(p.grad)
    return out


def main():
    torch.use_deterministic_algorithms(True)
    arrays = {}
    for seed, (name, spec) in enumerate(CASES.items()):
        arrays.update(make_case(name, 4321 + seed, **spec))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT.name} ({len(CASES)} cases, {len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
