"""Does the library's training step slow down when other libraries share its process?

One LSTM layer's training step (forward + BPTT with every gradient, (T, B, D, H) =
(64, 32, 65, 128) float32 by default), timed in one process in phases: alone, after
``import torch`` (nothing of PyTorch run), after PyTorch's own LSTM has run, and after JAX has
run (each skipped when not installed); each phase with the recycling of the cache memory on
(the default, :func:`lstm_bptt.set_recycling`) and off (every cache array a fresh
``np.empty``, as before the recycling). Reported per phase: median and minimum ms per step,
minor page faults per step and system CPU ms per step (``getrusage``).

    python benchmarks/bench_neighbours.py [--dtype float64] [--size 100 64 128 256]

The phases run in this order in one process because what changes the step's speed is the
process's heap history (see benchmarks/README.md); one BLAS thread, pinned to one core.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lstm_bptt import set_recycling  # noqa: E402
from lstm_bptt.cells.lstm import lstm_backward, lstm_forward  # noqa: E402


def make_step(T, B, D, H, dtype):
    rng = np.random.default_rng(0)
    k = 1 / np.sqrt(H)
    w = {name: rng.uniform(-k, k, shape).astype(dtype) for name, shape in (
        ("weight_ih", (4 * H, D)), ("weight_hh", (4 * H, H)), ("bias_ih", (4 * H,)),
        ("bias_hh", (4 * H,)))}
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dout = rng.standard_normal((T, B, H)).astype(dtype)

    def step():
        _, _, cache = lstm_forward(x, None, None, **w)
        return lstm_backward(dout, cache)

    return step, (x, w, dout)


def measure(step, seconds):
    for _ in range(3):
        step()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = len(times)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / n,
            "sys_ms_per_step": 1e3 * (r1.ru_stime - r0.ru_stime) / n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=4, default=[64, 32, 65, 128],
                    metavar=("T", "B", "D", "H"))
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--seconds", type=float, default=2.0, help="per phase and setting")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    T, B, D, H = args.size
    step, (x, w, dout) = make_step(T, B, D, H, np.dtype(args.dtype))

    def phase(name):
        for recycle in (True, False):
            set_recycling(recycle)
            r = measure(step, args.seconds)
            print(f"{name:28s} recycling {'on ' if recycle else 'off'}  median "
                  f"{r['median_ms']:8.2f} ms  min {r['min_ms']:8.2f}  page faults/step "
                  f"{r['faults_per_step']:8.1f}  system ms/step {r['sys_ms_per_step']:6.2f}",
                  flush=True)
        set_recycling(True)

    print(f"LSTM training step, (T, B, D, H) = {tuple(args.size)}, {args.dtype}, 1 thread")
    phase("alone")
    try:
        import torch
    except ImportError:
        torch = None
        print("torch not installed: its phases are skipped")
    if torch is not None:
        torch.set_num_threads(1)
        phase("after import torch")
        lstm = torch.nn.LSTM(D, H).to(getattr(torch, args.dtype))
        xt = torch.from_numpy(x).requires_grad_()
        for _ in range(10):
            y, _ = lstm(xt)
            y.backward(torch.from_numpy(dout))
        phase("after torch's LSTM ran")
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        jax = None
        print("jax not installed: its phase is skipped")
    if jax is not None:
        f = jax.jit(lambda a: jnp.tanh(a @ a.T).sum())
        a = jnp.asarray(x.reshape(T * B, D))
        for _ in range(10):
            f(a).block_until_ready()
        phase("after jax ran")


if __name__ == "__main__":
    main()
