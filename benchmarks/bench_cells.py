"""Benchmark one GRU or vanilla RNN layer of this library against PyTorch CPU nn.GRU / nn.RNN.

The same harness as ``bench_lstm.py`` (its configurations, interleaved timing blocks, medians,
BLAS thread control, one fresh process per configuration), for the other cells: a training step
(forward + BPTT backward with dx, dh_0 and all weight/bias gradients) and a forward pass (the
library's forward always keeps its cache, so PyTorch's forward is timed with autograd
recording).

Run from the repository root::

    python benchmarks/bench_cells.py                          # gru, rnn_tanh, rnn_relu; all configs
    python benchmarks/bench_cells.py --cells gru --quick      # smoke run
    python benchmarks/bench_cells.py --json benchmarks/results/cells.json

Train-step matmul flops = 3 * 2 * T * B * (D + H) * G H with G = 3 (GRU) or 1 (RNN). With numba
installed the library runs its compiled kernels (``lstm_bptt._fast``); ``LSTM_BPTT_FAST=0``
times the NumPy path. Which one ran is recorded in the JSON (``fast_path``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lstm import CONFIGS, blas_threads, environment, time_interleaved  # noqa: E402

from lstm_bptt import fast_path_enabled  # noqa: E402
from lstm_bptt.cells.gru import gru_backward, gru_forward  # noqa: E402
from lstm_bptt.cells.rnn import rnn_backward, rnn_forward  # noqa: E402

try:
    import torch
except ImportError:  # the benchmark runs without PyTorch, minus its column
    torch = None

CELLS = {"gru": 3, "rnn_tanh": 1, "rnn_relu": 1}  # name: G (H-blocks in weight_ih)


def make_problem(cell, T, B, D, H, dtype, seed=0):
    """Random x, h_0, parameters (PyTorch layout and init U(-1/sqrt(H), 1/sqrt(H))), dout."""
    rng = np.random.default_rng(seed)
    G = CELLS[cell]
    k = 1 / np.sqrt(H)
    w = {"weight_ih": rng.uniform(-k, k, (G * H, D)), "weight_hh": rng.uniform(-k, k, (G * H, H)),
         "bias_ih": rng.uniform(-k, k, G * H), "bias_hh": rng.uniform(-k, k, G * H)}
    w = {n: v.astype(dtype) for n, v in w.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)  # loss = sum(output * dout)
    return x, h_0, w, dout


def build_impls(cell, T, B, D, H, dtype, impls):
    """{impl: (train_fn, forward_fn)} for "lib" and (if importable) "torch"."""
    x, h_0, w, dout = make_problem(cell, T, B, D, H, dtype)
    if cell == "gru":
        def fwd():
            return gru_forward(x, h_0, **w)
        bwd = gru_backward
    else:
        nl = cell.split("_")[1]

        def fwd():
            return rnn_forward(x, h_0, **w, nonlinearity=nl)
        bwd = rnn_backward
    out = {}
    if "lib" in impls:
        out["lib"] = (lambda: bwd(dout, fwd()[2]), fwd)
    if "torch" in impls and torch is not None:
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        if cell == "gru":
            net = torch.nn.GRU(D, H, dtype=tdtype)
        else:
            net = torch.nn.RNN(D, H, nonlinearity=cell.split("_")[1], dtype=tdtype)
        with torch.no_grad():
            for n, v in w.items():
                getattr(net, f"{n}_l0").copy_(torch.from_numpy(v))
        tx = torch.from_numpy(x).requires_grad_(True)
        th = torch.from_numpy(h_0[None]).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def torch_train():
            for t in (tx, th, *net.parameters()):
                t.grad = None
            o, _ = net(tx, th)
            o.backward(tdout)
            return o

        out["torch"] = (torch_train, lambda: net(tx, th))
    return out


def run(args):
    impls = [i for i in args.impls if not (i == "torch" and torch is None)]
    results = {"environment": environment(), "rows": [], "args": vars(args),
               "fast_path": fast_path_enabled()}
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    for threads in args.threads:
        with blas_threads(threads):
            for dtype in map(np.dtype, args.dtypes):
                for cell in args.cells:
                    for cname in args.configs:
                        T, B, D, H = CONFIGS[cname]
                        fns = build_impls(cell, T, B, D, H, dtype, impls)
                        for mode, k in (("train", 0), ("forward", 1)):
                            med = time_interleaved({i: fns[i][k] for i in fns}, args.repeats,
                                                   args.min_block, clock)
                            flops = 3 * 2 * T * B * (D + H) * CELLS[cell] * H
                            flops /= 1 if mode == "train" else 3
                            row = {"cell": cell, "config": cname, "T": T, "B": B, "D": D,
                                   "H": H, "dtype": dtype.name, "threads": threads,
                                   "mode": mode, "seconds": med,
                                   "gflops": {i: flops / s / 1e9 for i, s in med.items()}}
                            if "torch" in med:
                                row["lib/torch"] = med["lib"] / med["torch"]
                            results["rows"].append(row)
    return results


HEADER = (f"{'cell':8} {'config':7} {'dtype':7} {'thr':>3} {'mode':7} {'lib ms':>9} "
          f"{'torch ms':>9} {'lib/torch':>9} {'lib GF/s':>8}")


def format_row(row):
    s = row["seconds"]
    torch_ms = f"{1e3 * s['torch']:9.3f}" if "torch" in s else f"{'-':>9}"
    ratio = f"{row['lib/torch']:9.3f}" if "lib/torch" in row else f"{'-':>9}"
    return (f"{row['cell']:8} {row['config']:7} {row['dtype']:7} {row['threads']:3d} "
            f"{row['mode']:7} {1e3 * s['lib']:9.3f} {torch_ms} {ratio} "
            f"{row['gflops']['lib']:8.1f}")


def run_isolated(args):
    """Each (threads, dtype, cell, config) in a fresh process, as bench_lstm.py does."""
    merged = None
    print(HEADER)
    for threads in args.threads:
        for dtype in args.dtypes:
            for cell in args.cells:
                for cname in args.configs:
                    with tempfile.TemporaryDirectory() as tmp:
                        out = Path(tmp) / "r.json"
                        cmd = [sys.executable, str(Path(__file__).resolve()), "--no-isolate",
                               "--cells", cell, "--configs", cname, "--dtypes", dtype,
                               "--threads", str(threads), "--impls", *args.impls,
                               "--clock", args.clock, "--repeats", str(args.repeats),
                               "--min-block", str(args.min_block), "--json", str(out)]
                        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                        part = json.loads(out.read_text())
                    if merged is None:
                        merged = part
                        merged["args"] = {k: v for k, v in vars(args).items() if k != "json"}
                        print(f"compiled fast path (numba): {part['fast_path']} "
                              "(LSTM_BPTT_FAST=0 for the NumPy path)", flush=True)
                    else:
                        merged["rows"] += part["rows"]
                    for row in part["rows"]:
                        print(format_row(row), flush=True)
    return merged


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                    help="default: all (all but large with --quick)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                    choices=["float32", "float64"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--impls", nargs="+", default=["lib", "torch"], choices=["lib", "torch"])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--min-block", type=float, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-isolate", dest="isolate", action="store_false")
    args = ap.parse_args(argv)
    if args.configs is None:
        args.configs = [c for c in CONFIGS if not (args.quick and c == "large")]
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.min_block is None:
        args.min_block = 0.05 if args.quick else 0.2
    if args.isolate:
        results = run_isolated(args)
    else:
        results = run(args)
        if args.json is None:
            print(HEADER)
            for row in results["rows"]:
                print(format_row(row))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
        if args.isolate:
            print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
