"""The same LSTM layer in JAX (``jax.jit`` over ``lax.scan``), for the benchmark's JAX column.

Written the way a JAX user would: the input projection of all steps is one matmul before the
scan, each scan step is h @ W_hh^T plus the PyTorch gate equations (i, f, g, o), and the
training step is ``jax.grad`` of sum(output * dout) with respect to the four parameters, x, h_0
and c_0 (what the library's training step returns). float64 runs with ``jax_enable_x64``.
Optional: :func:`available` is False when JAX is not installed and the column is skipped.

Threads: XLA's CPU thread pool is set through ``XLA_FLAGS`` before JAX is imported, by
:func:`configure_threads` (the benchmark runs each configuration in a fresh process).
"""

from __future__ import annotations

import importlib.util
import os


def available() -> bool:
    return importlib.util.find_spec("jax") is not None


def configure_threads(n: int) -> None:
    """Run XLA's CPU work on one core when ``n == 1`` (must run before ``import jax``).

    XLA has no flag for "n threads": ``--xla_cpu_multi_thread_eigen=false`` is set, but the
    XLA of jax 0.10 ignores it for its matmuls (measured: a 2048^3 float32 matmul ran at
    192 GFLOP/s with 1.96 CPU seconds per wall second, i.e. on both cores of the development
    machine, and at 95 GFLOP/s pinned to one core). So with ``n == 1`` the whole process is
    pinned to one core of those it may use (``os.sched_setaffinity``): every implementation of
    the configuration then runs on that core, as NumPy's and PyTorch's one thread do anyway.
    With n > 1 XLA uses its default pool (one thread per core, 2 on the development machine,
    which equals the benchmark's 2-thread setting).
    """
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def build(x, h_0, c_0, w, dout):
    """Return (train_fn, forward_fn), each blocking until its results are ready."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # float32 inputs stay float32

    def forward(params, x, h_0, c_0):
        # (T, B, D) @ (D, 4H) once for all steps, both biases added once
        xw = x @ params["weight_ih"].T + (params["bias_ih"] + params["bias_hh"])
        w_hh_t = params["weight_hh"].T  # (H, 4H)

        def step(carry, xw_t):
            h, c = carry
            a = xw_t + h @ w_hh_t  # (B, 4H)
            i, f, g, o = jnp.split(a, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        (h_n, c_n), out = jax.lax.scan(step, (h_0, c_0), xw)
        return out, h_n, c_n

    def loss(params, x, h_0, c_0, dout):
        return jnp.sum(forward(params, x, h_0, c_0)[0] * dout)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))
    fwd = jax.jit(forward)
    args = (
        {k: jnp.asarray(v) for k, v in w.items()},
        jnp.asarray(x), jnp.asarray(h_0), jnp.asarray(c_0),
    )
    jdout = jnp.asarray(dout)

    def train():
        return jax.block_until_ready(grad(*args, jdout))

    def forward_only():
        return jax.block_until_ready(fwd(*args))

    return train, forward_only
