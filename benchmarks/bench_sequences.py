"""Benchmark the sequence options of the LSTM layer: ``lengths``, ``bidirectional``, ``proj_size``.

Times a training step (forward + BPTT backward with dx, dh_0, dc_0 and every weight gradient)
of one LSTM layer for each variant, and compares it with the plain layer (same T, B, D, H) and
with PyTorch CPU ``nn.LSTM`` (``pack_padded_sequence(enforce_sorted=False)`` for lengths) on the
same numbers. The question is whether each option costs what its extra arithmetic costs:

* ``bidirectional``: twice the arithmetic of one direction (``work`` = 2.0), plus the reversal
  gathers and the concatenation;
* ``lengths``: this library runs every row up to max(lengths) (padded steps are computed with
  zero input and then discarded; exact, and the same work for every cell), so its ``work`` is 1.0
  (plus masking and gathers), while a packed sequence does only sum(lengths) / (T B) of it
  (``useful``): PyTorch can be cheaper there;
* ``proj_size`` P: the gate GEMMs shrink from (D + H) 4H to (D + P) 4H and a (H, P) projection
  is added per step (``work`` below 1.0).

Both of the library's paths can be timed: the compiled time loops (default when numba is
installed, the ``[fast]`` extra) and the NumPy loops (``--numpy``).

Run from the repository root::

    python benchmarks/bench_sequences.py            # ~2 min on 2 idle cores
    python benchmarks/bench_sequences.py --quick    # smoke run
    python benchmarks/bench_sequences.py --json benchmarks/results/sequences.json

Method: ``bench_lstm.py``'s interleaved blocks (every variant of one configuration, ours and
PyTorch's, timed in rotating order; the median over blocks of the per-call time), one BLAS and
one PyTorch thread, CPU time of the process by default (``--clock wall`` for wall time): on a
shared machine the wall time of a single-threaded run mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_lstm import blas_threads, environment, time_interleaved  # noqa: E402

from lstm_bptt import LSTM  # noqa: E402
from lstm_bptt._fast import fast_path_enabled, set_fast_path  # noqa: E402

try:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError:  # the benchmark runs without PyTorch, minus its columns
    torch = None

CONFIGS = {  # name: (T, B, D, H)
    "small": (50, 16, 32, 64),
    "charlm": (64, 32, 64, 128),
    "medium": (100, 64, 128, 256),
}
# name: (bidirectional, lengths, proj_size as a fraction of H)
VARIANTS = {
    "plain": (False, None, 0),
    "lengths=T": (False, "full", 0),
    "lengths~U[1,T]": (False, "random", 0),
    "bidir": (True, None, 0),
    "bidir+lengths": (True, "random", 0),
    "proj H/4": (False, None, 4),
}


def gate_flops(T, B, D, H, P=0):
    """Matmul flops of a training step of one direction (3x the forward GEMMs)."""
    Hr = P or H
    flops = 2 * T * B * (D + Hr) * 4 * H
    if P:
        flops += 2 * T * B * H * P
    return 3 * flops


def make_lengths(kind, T, B, rng):
    if kind is None:
        return None
    if kind == "full":
        return np.full(B, T)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T  # max = T, so the padded tensor is the same size as the plain one
    return lengths


def build(T, B, D, H, dtype, variant, rng):
    """{"lib": train_fn, "torch": train_fn} for one variant, with the same parameters."""
    bidir, lkind, pfrac = VARIANTS[variant]
    P = H // pfrac if pfrac else 0
    lengths = make_lengths(lkind, T, B, rng)
    layer = LSTM(D, H, bidirectional=bidir, proj_size=P, dtype=dtype, rng=0)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dirs = 2 if bidir else 1
    dout = rng.standard_normal((T, B, dirs * (P or H))).astype(dtype)

    def lib():
        _, _, cache = layer.forward(x, lengths=lengths)
        return layer.backward(dout, cache)

    fns = {"lib": lib}
    if torch is not None:
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        net = torch.nn.LSTM(D, H, bidirectional=bidir, proj_size=P, dtype=tdtype)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.from_numpy(layer.params[name]))
        tx = torch.from_numpy(x).requires_grad_(True)
        tdout = torch.from_numpy(dout)
        tlen = None if lengths is None else torch.from_numpy(lengths)

        def torch_train():
            for t in (tx, *net.parameters()):
                t.grad = None
            if tlen is None:
                out, _ = net(tx)
            else:
                packed = pack_padded_sequence(tx, tlen, enforce_sorted=False)
                out, _ = pad_packed_sequence(net(packed)[0], total_length=T)
            out.backward(tdout)
            return out

        fns["torch"] = torch_train
    work = dirs * gate_flops(T, B, D, H, P) / gate_flops(T, B, D, H)
    useful = 1.0 if lengths is None else float(lengths.sum()) / (T * B)
    return fns, work, useful


def run(args):
    results = {"environment": environment(), "rows": [], "args": vars(args)}
    if args.numpy:
        set_fast_path(False)
    path = "compiled" if fast_path_enabled() else "numpy"
    with blas_threads(1):
        for dtype in map(np.dtype, args.dtypes):
            for cname in args.configs:
                T, B, D, H = CONFIGS[cname]
                fns, meta = {}, {}
                for variant in VARIANTS:
                    f, work, useful = build(T, B, D, H, dtype, variant,
                                            np.random.default_rng(0))
                    meta[variant] = (work, useful)
                    for impl, fn in f.items():
                        fns[(variant, impl)] = fn
                clock = time.process_time if args.clock == "cpu" else time.perf_counter
                med = time_interleaved(fns, args.repeats, args.min_block, clock)
                plain = med[("plain", "lib")]
                plain_t = med.get(("plain", "torch"))
                for variant in VARIANTS:
                    work, useful = meta[variant]
                    lib = med[(variant, "lib")]
                    row = {"config": cname, "T": T, "B": B, "D": D, "H": H, "path": path,
                           "dtype": dtype.name, "variant": variant, "lib_ms": 1e3 * lib,
                           "lib/plain": lib / plain, "work": work, "useful": useful}
                    if (variant, "torch") in med:
                        tt = med[(variant, "torch")]
                        row.update({"torch_ms": 1e3 * tt, "torch/plain": tt / plain_t,
                                    "lib/torch": lib / tt})
                    results["rows"].append(row)
                    print(format_row(row), flush=True)
    return results


HEADER = (f"{'config':7} {'path':8} {'dtype':7} {'variant':15} {'lib ms':>9} {'lib/plain':>9} "
          f"{'work':>5} {'useful':>6} {'torch ms':>9} {'torch/pl':>8} {'lib/torch':>9}")


def format_row(r):
    t = (f"{r['torch_ms']:9.2f} {r['torch/plain']:8.2f} {r['lib/torch']:9.2f}"
         if "torch_ms" in r else f"{'-':>9} {'-':>8} {'-':>9}")
    return (f"{r['config']:7} {r['path']:8} {r['dtype']:7} {r['variant']:15} {r['lib_ms']:9.2f} "
            f"{r['lib/plain']:9.2f} {r['work']:5.2f} {r['useful']:6.2f} {t}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                    choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--min-block", type=float, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu",
                    help="cpu (default): process time, robust on a shared machine (one "
                         "thread, so it equals the wall time on an idle one)")
    ap.add_argument("--numpy", action="store_true",
                    help="time the NumPy path even when the compiled one (numba) is available")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.configs is None:
        args.configs = ["small"] if args.quick else ["small", "charlm", "medium"]
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.min_block = args.min_block or (0.05 if args.quick else 0.2)
    print(HEADER)
    results = run(args)
    if args.json is not None:
        results["args"]["json"] = args.json.name  # no machine paths in the saved file
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
