"""Benchmark one LSTM layer: this library vs a naive NumPy LSTM vs PyTorch CPU ``nn.LSTM``.

Times a training step (forward + BPTT backward with dx, dh_0, dc_0 and all weight/bias
gradients) and a forward pass (the library's forward always keeps its cache, so PyTorch's
forward is timed with autograd recording, i.e. also keeping what its backward needs), for the
configurations (T, B, D, H) below, in float32 and float64, with 1 and 2 BLAS threads.

Run from the repository root::

    python benchmarks/bench_lstm.py                 # full run (~5 min on 2 idle cores)
    python benchmarks/bench_lstm.py --quick         # < 1 min smoke run (no "large")
    python benchmarks/bench_lstm.py --json out.json

Method: every (config, dtype, threads) runs in a fresh process (``--no-isolate`` runs all in
one): in one long process the timings of later configurations depended on what ran before
(medium float64 lib 412-437 ms alone, 537-597 ms after the float32 configurations, from heap
and page-cache state left by the large runs). Within that process the implementations are run in
interleaved blocks (lib, naive, torch, lib, naive, torch, ...), each block long enough to be
timed reliably; the reported time is the median over blocks of the per-call time, and each
ratio (lib/torch, ...) the median over rounds of the two blocks' ratio in that round. The machine's
GEMM peak is measured in the same run (a large square matmul, per dtype and thread count), and
the achieved matmul rate of the training step is reported as a percentage of it.

Train-step matmul flops = 3 * 2 * T * B * (D + H) * 4H (forward a = [x, h] W^T, backward
dx/dh = da W and dW = da^T [x, h]); forward flops are a third of that. Elementwise work is not
counted, so small H gives low GFLOP/s by construction.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax_lstm  # noqa: E402
import naive_lstm  # noqa: E402

from lstm_bptt import _fast  # noqa: E402
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward  # noqa: E402

try:
    import torch
except ImportError:  # the benchmark runs without PyTorch, minus its column
    torch = None

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # optional extra "perf"
    threadpool_info = threadpool_limits = None

CONFIGS = {  # name: (T, B, D, H)
    "tiny": (100, 1, 8, 32),
    "charlm": (64, 32, 65, 128),
    "medium": (100, 64, 128, 256),
    "large": (50, 128, 512, 512),
}
# lib: the library as installed (compiled path when numba is importable); numpy: the library
# with the compiled path switched off (the default without the "fast" extra); jax: jax_lstm.py
IMPLS = ("lib", "numpy", "naive", "torch", "jax")
SETTLE = 0.1  # seconds between timed blocks with several threads or JAX (time_interleaved)
RATIOS = ("lib/torch", "lib/jax", "numpy/torch", "numpy/jax", "lib/numpy")


def train_flops(T, B, D, H):
    """Matmul flops of one training step (forward + backward incl. weight gradients)."""
    return 3 * 2 * T * B * (D + H) * 4 * H


def blas_threads(n):
    """Context manager limiting BLAS (and PyTorch intra-op) threads to ``n``."""
    stack = contextlib.ExitStack()
    if threadpool_limits is not None:
        stack.enter_context(threadpool_limits(limits=n, user_api="blas"))
    elif n != 1:
        print("warning: threadpoolctl not installed; BLAS thread count not controlled")
    if torch is not None:
        torch.set_num_threads(n)
    return stack


def gemm_peak(dtype, n, repeats):
    """Best GFLOP/s of an (n, n) @ (n, n) matmul (the machine's practical peak)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def small_gemm_us(dtype, B, H, repeats=200):
    """Median microseconds of the per-step recurrent GEMM (B, H) @ (H, 4H)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((B, H)).astype(dtype)
    w = rng.standard_normal((H, 4 * H)).astype(dtype)
    out = np.empty((B, 4 * H), dtype)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, w, out=out)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def make_problem(T, B, D, H, dtype, seed=0):
    """Random inputs, states, parameters (PyTorch layout, U(-1/sqrt(H), 1/sqrt(H))) and R."""
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    w = {
        "weight_ih": rng.uniform(-k, k, (4 * H, D)),
        "weight_hh": rng.uniform(-k, k, (4 * H, H)),
        "bias_ih": rng.uniform(-k, k, 4 * H),
        "bias_hh": rng.uniform(-k, k, 4 * H),
    }
    w = {n: v.astype(dtype) for n, v in w.items()}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    h_0 = rng.standard_normal((B, H)).astype(dtype) * 0.5
    c_0 = rng.standard_normal((B, H)).astype(dtype) * 0.5
    dout = rng.standard_normal((T, B, H)).astype(dtype)  # loss = sum(output * dout)
    return x, h_0, c_0, w, dout


def cache_nbytes(obj, exclude_ids):
    """Bytes of the arrays held by a cache (recursing into tuples/lists/dicts), each array or
    its base counted once, skipping the arrays in ``exclude_ids`` (inputs and weights)."""
    seen = set(exclude_ids)
    total = 0

    def visit(o):
        nonlocal total
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) in seen or id(o) in seen:
                return
            seen.add(id(base))
            total += base.nbytes
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, tuple | list):
            for v in o:
                visit(v)

    visit(obj)
    return total


def build_impls(T, B, D, H, dtype, impls):
    """Return {impl: (train_fn, forward_fn, cache_bytes_per_token or None)}."""
    x, h_0, c_0, w, dout = make_problem(T, B, D, H, dtype)
    out = {}
    if "lib" in impls:
        def lib_train():
            _, _, cache = lstm_forward(x, h_0, c_0, **w)
            return lstm_backward(dout, cache)

        def lib_forward():
            return lstm_forward(x, h_0, c_0, **w)

        _, _, cache = lstm_forward(x, h_0, c_0, **w)
        skip = [id(a) for a in (x, *w.values(), cache.weight_ih, cache.weight_hh)]
        out["lib"] = (lib_train, lib_forward, cache_nbytes(tuple(cache), skip) / (T * B))
    if "numpy" in impls and _fast.fast_path_enabled():
        def numpy_path(fn):
            def call():
                previous = _fast.set_fast_path(False)
                try:
                    return fn()
                finally:
                    _fast.set_fast_path(previous)
            return call

        out["numpy"] = (numpy_path(lib_train), numpy_path(lib_forward), out["lib"][2])
    if "naive" in impls:
        p = naive_lstm.split_params(**w)

        def naive_train():
            _, _, cache = naive_lstm.naive_forward(x, h_0, c_0, p)
            return naive_lstm.naive_backward(dout, cache, p)

        def naive_forward():
            return naive_lstm.naive_forward(x, h_0, c_0, p)

        _, _, cache = naive_lstm.naive_forward(x, h_0, c_0, p)
        # x_t are views of x: skip x; h_prev/c_prev of step 0 are the caller's states
        bytes_ = cache_nbytes(cache, [id(x), id(h_0), id(c_0)])
        out["naive"] = (naive_train, naive_forward, bytes_ / (T * B))
    if "torch" in impls and torch is not None:
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        lstm = torch.nn.LSTM(D, H, dtype=tdtype)
        with torch.no_grad():
            for n, v in w.items():
                getattr(lstm, f"{n}_l0").copy_(torch.from_numpy(v))
        tx = torch.from_numpy(x).requires_grad_(True)
        th = torch.from_numpy(h_0[None]).requires_grad_(True)
        tc = torch.from_numpy(c_0[None]).requires_grad_(True)
        tdout = torch.from_numpy(dout)

        def torch_train():
            for t in (tx, th, tc, *lstm.parameters()):
                t.grad = None
            o, _ = lstm(tx, (th, tc))
            o.backward(tdout)
            return o

        def torch_forward():
            return lstm(tx, (th, tc))

        out["torch"] = (torch_train, torch_forward, None)
    if "jax" in impls and jax_lstm.available():
        out["jax"] = (*jax_lstm.build(x, h_0, c_0, w, dout), None)
    return out


def time_interleaved(fns, repeats, min_block, clock=time.perf_counter, settle=0.0,
                     rounds=None):
    """Median seconds per call of each function, timed in interleaved blocks.

    Each function is first called once (warm-up) and timed once to choose how many calls make
    a block of at least ``min_block`` seconds (of ``clock``); then ``repeats`` rounds run one
    block of every function in turn (the order rotates each round, so no function always
    runs first; each still follows the same one, cyclically). ``settle`` seconds of sleep
    before each block let the previous block's thread pools go idle: with 2 threads, XLA's
    and OpenMP's workers kept spinning into the next block, and the library's blocks, which
    follow JAX's, ran 3-17 % slower than the same code in the ``numpy`` column (medium and
    large, where both run the NumPy path; 0.98-1.01 without JAX in the process). With one
    thread the process is pinned to one core, and XLA's workers, which ignore the thread
    flag, spin on that core after JAX's block: tiny float32 lib/torch 0.256 and 0.334 in two
    runs with JAX, 0.247-0.263 in five without (eighth session, AMD EPYC Zen 4); so settle
    whenever JAX is in the process.

    ``rounds``, a dict, if given receives each function's per-round seconds per call (the
    lists whose medians are returned), for ratios paired round by round (:func:`paired_ratio`).
    """
    n_calls = {}
    for name, fn in fns.items():
        fn()
        t0 = clock()
        fn()
        dt = clock() - t0
        n_calls[name] = max(1, int(np.ceil(min_block / max(dt, 1e-9))))
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, n = fns[name], n_calls[name]
            if settle:  # let the previous block's thread pools go idle (not timed)
                time.sleep(settle)
            t0 = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t0) / n)
    if rounds is not None:
        rounds.update(samples)
    return {name: statistics.median(s) for name, s in samples.items()}


def paired_ratio(a, b):
    """The median over rounds of a[r] / b[r]: two implementations' per-round times (from
    :func:`time_interleaved`) compared within each round, where they ran seconds apart. On
    this shared machine its speed drifts between rounds (lib and torch at tiny float32 both
    0.15-0.24 and 0.59-0.85 ms across runs), and a ratio of the two medians can pair a fast
    round of one with a slow round of the other; the paired median cancels the drift."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def environment():
    """What produced the numbers: versions, CPU, BLAS, the OpenBLAS environment variables."""
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                          "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                          "MKL_NUM_THREADS")}
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "env": env,
        "blas": [],
            "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "fast_path": _fast.fast_path_enabled(),
    }
    import scipy

    info["scipy"] = scipy.__version__
    for mod in ("numba", "jax"):
        with contextlib.suppress(ImportError):
            info[mod] = __import__(mod).__version__
    if threadpool_info is not None:
        info["blas"] = [
            {k: d.get(k) for k in ("internal_api", "prefix", "version", "architecture",
                                   "num_threads", "threading_layer")}
            for d in threadpool_info()
        ]
    return info


def print_blas_environment(env):
    """Print the BLAS environment variables of :func:`environment`'s ``env``, a note when
    OPENBLAS_CORETYPE chooses OpenBLAS's kernels instead of the CPU's own, and the kernels
    each BLAS library runs (threadpoolctl)."""
    print("env: " + ", ".join(f"{k}={v}" for k, v in env["env"].items()))
    core = env["env"].get("OPENBLAS_CORETYPE")
    if core:
        print(f"note: OPENBLAS_CORETYPE={core} makes OpenBLAS run those kernels on any CPU "
              "(Haswell on an AVX-512 CPU: about half its GEMM speed, measured on an AMD EPYC "
              "Zen 5); run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to measure the "
              "kernels OpenBLAS picks itself")
    for b in env["blas"]:
        print(f"threadpool: {b['internal_api']} {b['prefix']} {b['version']} "
              f"kernel={b['architecture']}")


def run(args):
    missing = {"torch": torch is None, "jax": not jax_lstm.available(),
               "numpy": not _fast.fast_path_enabled()}
    impls = [i for i in args.impls if not missing.get(i)]
    for i in args.impls:
        if missing.get(i):
            print(f"{i}: not available (numpy: numba missing or LSTM_BPTT_FAST=0, so 'lib' "
                  "is the NumPy path); skipping that column" if i == "numpy"
                  else f"{i} not importable: skipping its column")
    dtypes = [np.dtype(d) for d in args.dtypes]
    results = {"environment": environment(), "peak_gflops": {}, "small_gemm_us": {},
               "rows": [], "args": vars(args)}
    env = results["environment"]
    print(f"CPU: {env['cpu']} ({env['cpu_count']} cores); numpy {env['numpy']}, "
          f"scipy {env['scipy']}, torch {env['torch']}, numba {env.get('numba')}, "
          f"jax {env.get('jax')}; lib uses the compiled path: {env['fast_path']}")
    print_blas_environment(env)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    for threads in args.threads:
        with blas_threads(threads):
            for dtype in dtypes:
                key = f"{dtype.name}/{threads}"
                peak = gemm_peak(dtype, args.gemm_n, 3 if args.quick else 5)
                results["peak_gflops"][key] = peak  # re-measured after the configs: max kept
                print(f"\n== {dtype.name}, {threads} thread(s): GEMM peak "
                      f"({args.gemm_n}^3) {peak:.1f} GFLOP/s")
                for cname in args.configs:
                    T, B, D, H = CONFIGS[cname]
                    results["small_gemm_us"][f"{key}/{cname}"] = small_gemm_us(dtype, B, H)
                    fns = build_impls(T, B, D, H, dtype, impls)
                    cimpls = [i for i in impls if not (args.quick and i == "naive"
                                                       and cname == "large")]
                    for mode, k in (("train", 0), ("forward", 1)):
                        per_round = {}
                        med = time_interleaved({i: fns[i][k] for i in cimpls},
                                               args.repeats, args.min_block, clock,
                                               rounds=per_round,
                                               settle=SETTLE if threads > 1 or "jax" in cimpls
                                               else 0.0)
                        flops = train_flops(T, B, D, H) / (1 if mode == "train" else 3)
                        row = {"config": cname, "T": T, "B": B, "D": D, "H": H,
                               "dtype": dtype.name, "threads": threads, "mode": mode,
                               "seconds": med, "gflops": {i: flops / s / 1e9
                                                          for i, s in med.items()},
                               "tokens_per_s": {i: T * B / s for i, s in med.items()},
                               "cache_bytes_per_token": {i: fns[i][2] for i in cimpls
                                                         if fns[i][2] is not None}}
                        row["pct_peak_lib"] = 100 * row["gflops"].get("lib", np.nan) / peak
                        for rkey in (*RATIOS, "lib/naive"):
                            a, b = rkey.split("/")
                            if a in med and b in med:  # paired by round (paired_ratio)
                                row[rkey] = paired_ratio(per_round[a], per_round[b])
                        results["rows"].append(row)
                        print_row(row)
                again = gemm_peak(dtype, args.gemm_n, 3 if args.quick else 5)
                if again > peak:  # a busy machine lowers the first measurement
                    results["peak_gflops"][key] = again
                    for row in results["rows"]:
                        if (row["dtype"], row["threads"]) == (dtype.name, threads):
                            row["pct_peak_lib"] *= peak / again
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = os.getloadavg()
        print(f"load average at start {env['loadavg_start']}, at end {env['loadavg_end']} "
              f"(> 1 per core means other processes competed for the CPUs)")
    print_table(results)
    return results


HEADER = (f"{'config':7} {'dtype':7} {'thr':>3} {'mode':7} "
          + " ".join(f"{i + ' ms':>9}" for i in IMPLS) + " "
          + " ".join(f"{k:>11}" for k in RATIOS)
          + f" {'lib GF/s':>8} {'%peak':>6} {'cacheB/tok':>10}")


def print_row(row):
    s = row["seconds"]

    def ms(i):
        return f"{1e3 * s[i]:9.3f}" if i in s else f"{'-':>9}"

    def ratio(k):
        return f"{row[k]:11.3f}" if k in row else f"{'-':>11}"

    cb = row["cache_bytes_per_token"].get("lib")
    print(f"{row['config']:7} {row['dtype']:7} {row['threads']:3d} {row['mode']:7} "
          + " ".join(ms(i) for i in IMPLS) + " " + " ".join(ratio(k) for k in RATIOS)
          + f" {row['gflops'].get('lib', np.nan):8.1f} {row['pct_peak_lib']:6.1f} "
          f"{'-' if cb is None else f'{cb:.0f}':>10}")


def print_table(results):
    print("\n" + HEADER)
    for row in results["rows"]:
        print_row(row)
    print("\nGEMM peak GFLOP/s: " + ", ".join(f"{k} {v:.1f}"
                                             for k, v in results["peak_gflops"].items()))
    print("per-step recurrent GEMM (B,H)@(H,4H), median us: " + ", ".join(
        f"{k} {v:.1f}" for k, v in results["small_gemm_us"].items()))


def run_isolated(args):
    """Run each (threads, dtype, config) in a fresh child process and merge the results."""
    if args.quick and args.configs is None:
        args.configs = [c for c in CONFIGS if c != "large"]
    configs = args.configs or list(CONFIGS)
    merged = None
    for threads in args.threads:
        for dtype in args.dtypes:
            for cname in configs:
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "r.json"
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--no-isolate",
                           "--configs", cname, "--dtypes", dtype, "--threads", str(threads),
                           "--impls", *args.impls, "--clock", args.clock, "--json", str(out)]
                    for flag, value in (("--repeats", args.repeats),
                                        ("--min-block", args.min_block),
                                        ("--gemm-n", args.gemm_n)):
                        if value is not None:
                            cmd += [flag, str(value)]
                    cmd += ["--quick"] * args.quick + ["--retain-memory"] * args.retain_memory
                    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                    part = json.loads(out.read_text())
                if merged is None:
                    merged = part
                    merged["args"] = {k: v for k, v in vars(args).items() if k != "json"}
                    penv = part["environment"]
                    print(f"CPU: {penv['cpu']}; numpy {penv['numpy']}, torch {penv['torch']}"
                          "; each configuration in a fresh process")
                    print_blas_environment(penv)
                    print(HEADER)
                else:
                    merged["rows"] += part["rows"]
                    merged["small_gemm_us"].update(part["small_gemm_us"])
                    for k, v in part["peak_gflops"].items():
                        merged["peak_gflops"][k] = max(v, merged["peak_gflops"].get(k, 0))
                for row in part["rows"]:
                    print_row(row)
    print_table(merged)
    if args.json is not None:
        args.json.write_text(json.dumps(merged, indent=1, default=str))
        print(f"wrote {args.json}")
    return merged


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                    help="default: all (all but large with --quick)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"],
                    choices=["float32", "float64"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    ap.add_argument("--repeats", type=int, default=None, help="timed blocks per implementation")
    ap.add_argument("--min-block", type=float, default=None, help="seconds per timed block")
    ap.add_argument("--gemm-n", type=int, default=None, help="size of the peak GEMM")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repeats, short blocks, no 'large' config unless --configs names "
                         "it (~1 min)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time (default) or process CPU time (robust on a shared machine "
                         "for 1 thread; with 2 threads it adds up both threads)")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--retain-memory", action="store_true",
                    help="keep freed memory in the heap (glibc mallopt, as the CLI jobs do): "
                         "no page faults for the per-call caches; applies to every "
                         "implementation in the process")
    ap.add_argument("--no-isolate", dest="isolate", action="store_false",
                    help="run every configuration in this one process instead of a fresh "
                         "process each")
    args = ap.parse_args(argv)
    if args.isolate:
        return run_isolated(args)
    if len(args.threads) == 1 and args.threads[0] == 1 and hasattr(os, "sched_setaffinity"):
        # one thread: the process on one core, so that no library's helper threads (XLA's
        # pool ignores its thread flag, see jax_lstm.configure_threads) use a second one
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if "jax" in args.impls and jax_lstm.available():
        if len(args.threads) > 1:
            print("warning: XLA's threads are set once per process: JAX runs with "
                  f"{args.threads[0]} thread(s) throughout (the default, isolated mode does "
                  "not have this problem)")
        jax_lstm.configure_threads(args.threads[0])
    if args.retain_memory:
        from lstm_bptt.experiments._runtime import retain_freed_memory

        print(f"retain freed memory (mallopt): {retain_freed_memory()}")
    if args.quick and args.configs is None:
        args.configs = [c for c in CONFIGS if c != "large"]
    if args.configs is None:
        args.configs = list(CONFIGS)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.min_block is None:
        args.min_block = 0.05 if args.quick else 0.2
    if args.gemm_n is None:
        args.gemm_n = 1024 if args.quick else 2048
    results = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
