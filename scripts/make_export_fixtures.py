"""Generate the PyTorch hand-off fixtures: safetensors files in both directions.

Run once, by hand, from the repository root with ``pip install torch==2.13.0 safetensors``::

    PYTHONPATH=. python scripts/make_export_fixtures.py

Two directions, both with ``torch.nn.LSTM(3, 5, num_layers=2)`` and random non-zero weights
and biases (b_ih != b_hh):

* **PyTorch -> here.** ``torch_lstm_f64.safetensors`` / ``torch_lstm_f32.safetensors`` are
  written by ``safetensors.torch.save_file(lstm.state_dict(), ...)``; the npz holds the input
  and PyTorch's outputs, which the tests reproduce after reading the file with
  :func:`lstm_bptt.export.load_safetensors` (no torch, no safetensors package).
  ``torch_lstm_bidir_proj.safetensors``: the same with ``bidirectional=True, proj_size=2``.
* **here -> PyTorch.** ``ours_lstm.safetensors`` is written by OUR writer
  (:func:`lstm_bptt.export.save_safetensors`, the only lstm_bptt code this script uses) from
  the parameters stored in the npz (``to_torch/param/<name>``) and the metadata
  ``to_torch/metadata``. The script then runs the README's PyTorch lines (the ``py`` block of
  "Hand a model to PyTorch", executed as written) on that file, i.e.
  ``torch.nn.LSTM(...).load_state_dict(safetensors.torch.load_file(...))`` with strict key
  checking, checks that PyTorch read back exactly our arrays and metadata, and stores
  PyTorch's outputs. The tests (without torch) rewrite the same parameters with our writer,
  require the very same bytes (so the file PyTorch accepted is what the writer produces
  today) and compare our forward with PyTorch's outputs.
* **a model, here -> PyTorch.** ``ours_charlm.safetensors`` is written by ``lstm-bptt export``
  from a CharLM (embedding, 2 layers) checkpoint and loaded with strict key checking into
  :class:`TorchCharLM` (``embedding``, ``lstm``, ``head``); ``charlm/logits`` are its outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

from lstm_bptt.export import save_safetensors

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
D, H, L, T, B = 3, 5, 2, 4, 3  # H != D so a transposed weight cannot pass


def readme_torch_lines() -> str:
    """The ``py`` code block of the README section "Hand a model to PyTorch"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Hand a model to PyTorch", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    return block


def random_lstm(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, num_layers=L, dtype=dtype)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=dtype))
    return lstm, gen


def run(lstm, x, h_0, c_0):
    with torch.no_grad():
        out, (h_n, c_n) = lstm(torch.from_numpy(x), (torch.from_numpy(h_0), torch.from_numpy(c_0)))
    return out.numpy(), h_n.numpy(), c_n.numpy()


def inputs(dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, D)).astype(dtype),
            (0.5 * rng.standard_normal((L, B, H))).astype(dtype),
            rng.standard_normal((L, B, H)).astype(dtype))


class TorchCharLM(torch.nn.Module):
    """The PyTorch twin of ``CharLM(V, hidden_size=H, num_layers=L, embedding_dim=E)``: the
    same attribute names, so its state_dict keys are CharLM's."""

    def __init__(self, V, E, H, L, dtype):
        super().__init__()
        self.embedding = torch.nn.Embedding(V, E, dtype=dtype)
        self.lstm = torch.nn.LSTM(E, H, num_layers=L, dtype=dtype)
        self.head = torch.nn.Linear(H, V, dtype=dtype)

    def forward(self, ids):  # (T, B) -> logits (T, B, V)
        out, _ = self.lstm(self.embedding(ids))
        return self.head(out)


def charlm_to_torch(out):
    """A CharLM checkpoint exported by ``lstm-bptt export --format safetensors`` loads with
    strict key checking into :class:`TorchCharLM`; its logits are stored."""
    from lstm_bptt import CharLM, save_checkpoint
    from lstm_bptt.experiments.cli import main as cli

    V, E = 6, 3
    model = CharLM(V, hidden_size=H, num_layers=L, embedding_dim=E, dtype=np.float64, rng=0)
    rng = np.random.default_rng(30)
    for v in model.params.values():
        v[...] = 0.5 * rng.standard_normal(v.shape)
    path = FIX / "ours_charlm.safetensors"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "checkpoint.npz"
        save_checkpoint(ckpt, {"model": {"class": "CharLM", "config": model.config()},
                               "params": dict(model.params)})
        assert cli(["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--out",
                    str(path), "--overwrite"]) == 0
    twin = TorchCharLM(V, E, H, L, torch.float64)
    twin.load_state_dict(safetensors.torch.load_file(str(path)))  # strict
    ids = rng.integers(0, V, (T, B))
    with torch.no_grad():
        logits = twin(torch.from_numpy(ids)).numpy()
    out["charlm/config"] = np.array(json.dumps({"V": V, "E": E, "H": H, "L": L,
                                                "dtype": "float64"}))
    out["charlm/ids"] = ids
    out["charlm/logits"] = logits


def main():
    out = {}
    config = {"D": D, "H": H, "L": L, "T": T, "B": B}
    # ---- PyTorch -> here
    for tag, tdtype, npdtype, seed in (("f64", torch.float64, np.float64, 10),
                                       ("f32", torch.float32, np.float32, 11)):
        lstm, _ = random_lstm(tdtype, seed)
        sd = lstm.state_dict()
        for k in range(L):
            assert torch.all(sd[f"bias_ih_l{k}"] != sd[f"bias_hh_l{k}"])
        path = FIX / f"torch_lstm_{tag}.safetensors"
        safetensors.torch.save_file(sd, str(path), metadata={"format": "pt"})
        x, h_0, c_0 = inputs(npdtype, seed)
        o, h_n, c_n = run(lstm, x, h_0, c_0)
        name = f"from_torch_{tag}"
        out[f"{name}/config"] = np.array(json.dumps({**config, "dtype": np.dtype(npdtype).name}))
        for k, v in dict(x=x, h_0=h_0, c_0=c_0, output=o, h_n=h_n, c_n=c_n).items():
            out[f"{name}/{k}"] = v

    # ---- PyTorch -> here, bidirectional with proj_size (LSTMP): names *_reverse, weight_hr_l{k}
    gen = torch.Generator().manual_seed(12)
    P = 2
    lstm = torch.nn.LSTM(D, H, num_layers=L, bidirectional=True, proj_size=P,
                         dtype=torch.float64)
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    safetensors.torch.save_file(lstm.state_dict(), str(FIX / "torch_lstm_bidir_proj.safetensors"),
                                metadata={"format": "pt"})
    rng = np.random.default_rng(12)
    x = rng.standard_normal((T, B, D))
    h_0 = 0.5 * rng.standard_normal((2 * L, B, P))
    c_0 = rng.standard_normal((2 * L, B, H))
    o, h_n, c_n = run(lstm, x, h_0, c_0)
    name = "from_torch_bidir_proj"
    out[f"{name}/config"] = np.array(json.dumps({**config, "dtype": "float64",
                                                 "bidirectional": True, "proj_size": P}))
    for k, v in dict(x=x, h_0=h_0, c_0=c_0, output=o, h_n=h_n, c_n=c_n).items():
        out[f"{name}/{k}"] = v

    # ---- here -> PyTorch
    rng = np.random.default_rng(20)
    params = {}
    for k in range(L):
        d_in = D if k == 0 else H
        for n, shape in (("weight_ih", (4 * H, d_in)), ("weight_hh", (4 * H, H)),
                         ("bias_ih", (4 * H,)), ("bias_hh", (4 * H,))):
            params[f"{n}_l{k}"] = 0.5 * rng.standard_normal(shape)
    names = list(params)
    metadata = {"format": "pt", "lstm_bptt.class": "LSTM",
                "lstm_bptt.config": json.dumps({"input_size": D, "hidden_size": H,
                                                "num_layers": L, "dtype": "float64"})}
    ours = FIX / "ours_lstm.safetensors"
    save_safetensors(ours, params, metadata, overwrite=True)
    x, h_0, c_0 = inputs(np.float64, 21)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ours, Path(tmp) / "lstm.safetensors")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            ns = {"torch": torch, "safetensors": safetensors}
            exec(readme_torch_lines(), ns)  # the README's two lines, as written
        finally:
            os.chdir(cwd)
    lstm = ns["lstm"]
    assert isinstance(lstm, torch.nn.LSTM)
    got = {k: v.numpy() for k, v in lstm.state_dict().items()}
    assert list(got) == names, list(got)
    assert all(np.array_equal(got[k], params[k]) for k in names)
    with safetensors.safe_open(str(ours), framework="pt") as f:
        assert f.metadata() == metadata, f.metadata()
    o, h_n, c_n = run(lstm, x, h_0, c_0)
    out["to_torch/config"] = np.array(json.dumps({**config, "dtype": "float64"}))
    out["to_torch/metadata"] = np.array(json.dumps(metadata))
    for k, v in params.items():
        out[f"to_torch/param/{k}"] = v
    for k, v in dict(x=x, h_0=h_0, c_0=c_0, output=o, h_n=h_n, c_n=c_n).items():
        out[f"to_torch/{k}"] = v
    charlm_to_torch(out)
    out["meta/versions"] = np.array(json.dumps({
        "torch": torch.__version__, "safetensors": safetensors.__version__,
        "numpy": np.__version__}))
    np.savez_compressed(FIX / "export_torch.npz", **out)
    print("wrote", FIX / "export_torch.npz", json.loads(str(out["meta/versions"])))


if __name__ == "__main__":
    main()
