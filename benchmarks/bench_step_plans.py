"""Time the per-step product plans of the compiled kernels on this machine.

For each per-step product (B, K) @ (K, N) of the benchmark configurations (forward
(B, H) @ (H, 4H) and backward (B, 4H) @ (4H, H)), float32 and float64, this times inside numba,
as the kernels run it (``lstm_bptt.cells._kernels._recurrent_product``): one GEMM, the
transposed product, and column blocks of c = 16..256 columns in tiles of B, 16 or 32 rows.
It prints the plan ``lstm_bptt._blas.step_plan`` picks ("current") next to the fastest.
The plans differ between CPUs (the eighth session's Zen 4 against the seventh's Zen 5:
benchmarks/README.md). Needs numba (the ``fast`` extra). Run with one BLAS thread, from the
repository root::

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python benchmarks/bench_step_plans.py

Names: ``c{c}r{rows}`` = blocks of c columns, tiles of ``rows`` rows; times in us per product,
median of 9 interleaved rounds.
"""

import sys
import time

import numpy as np

try:
    from numba import njit
except ImportError:
    sys.exit('bench_step_plans.py needs numba: pip install "lstm-bptt[fast]"')

from lstm_bptt import _blas
from lstm_bptt.cells import _kernels as K


@njit(cache=False, error_model="numpy", nogil=True)
def loop(h, w_t, w, out, out_t, blocks, scratch, transposed, n):
    """n per-step products, as a kernel's time loop makes them."""
    for _ in range(n):
        K._recurrent_product(h, w_t, w, out, out_t, blocks, scratch, transposed)


def plan_name(plan):
    """The ``c{c}r{rows}`` / "one" / "transposed" name of a (blocks, rows, transposed) plan."""
    blocks, rows, transposed = plan
    if blocks is not None:
        return f"c{blocks.shape[2]}r{rows}"
    return "transposed" if transposed else "one"


def run(B, Kd, N, dtype, reps=9):
    """Print the median us per product of every plan for (B, Kd) @ (Kd, N)."""
    rng = np.random.default_rng(0)
    h = rng.standard_normal((B, Kd)).astype(dtype)
    w_t = rng.standard_normal((Kd, N)).astype(dtype)
    w = np.ascontiguousarray(w_t.T)
    out = np.empty((B, N), dtype)
    out_t = np.empty((N, B), dtype)
    plans = {"one": (None, 0, False), "transposed": (None, 0, True)}
    for c in (16, 32, 64, 128, 256):
        if N % c or c >= N:
            continue
        blocks = np.ascontiguousarray(w_t.reshape(Kd, N // c, c).transpose(1, 0, 2))
        for rows in (B, 16, 32):
            if rows <= B and B % rows == 0:
                plans[plan_name((blocks, rows, False))] = (blocks, rows, False)
    current = plan_name(_blas.step_plan(B, w_t, _blas.step_blocks(w_t, B)))
    n = max(1, int(3e7 / (B * Kd * N)))
    samples = {k: [] for k in plans}
    scratch = {k: K._block_scratch(p[0], B, p[1], out) for k, p in plans.items()}
    for k, (blocks, _, tr) in plans.items():  # compile and warm up
        loop(h, w_t, w, out, out_t, blocks, scratch[k], tr, 1)
    for _ in range(reps):
        for k, (blocks, _, tr) in plans.items():
            t0 = time.perf_counter()
            loop(h, w_t, w, out, out_t, blocks, scratch[k], tr, n)
            samples[k].append((time.perf_counter() - t0) / n * 1e6)
    med = {k: sorted(v)[reps // 2] for k, v in samples.items()}
    best = min(med, key=med.get)
    ranked = " ".join(f"{k}:{v:.1f}" for k, v in sorted(med.items(), key=lambda kv: kv[1]))
    print(f"{np.dtype(dtype).name} ({B},{Kd},{N}) current={current} {med[current]:.1f}us "
          f"best={best} {med[best]:.1f}us | {ranked}")


SHAPES = [(32, 128, 512), (32, 512, 128), (64, 256, 1024), (64, 1024, 256), (128, 512, 2048),
          (128, 2048, 512)]  # charlm, medium, large: forward and backward


def main():
    print(f"CPU family: {_blas.cpu_family()}, OpenBLAS core: {_blas.openblas_core()}")
    for dt in (np.float32, np.float64):
        for s in SHAPES:
            run(*s, dt)


if __name__ == "__main__":
    main()
