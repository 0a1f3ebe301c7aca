"""Recycled memory for the large arrays a forward pass returns (caches, outputs, dx).

Why: every training step allocates its caches afresh (the user holds them, so they cannot be
scratch buffers) and drops them after the backward. For arrays above glibc's mmap threshold
that means an ``mmap`` per array and a page fault per 4 KiB page on first touch, every step:
1,739 faults and 3.5-4.7 ms of system time in a 20 ms float32 training step of a
(T, B, D, H) = (64, 32, 65, 128) layer, i.e. 20 % of the step. Whether glibc maps these arrays
afresh depends on the heap's history (its mmap threshold adapts to what the process freed
before), which is why the same step ran at 18-21 ms in a process holding only this library and
at 22-26 ms right after ``import torch`` in the same process (measured; ``benchmarks/README.md``).

What: :func:`empty` hands out arrays carved from a small per-thread pool of buffers. A buffer is
handed out again only when no array made from it is alive any more: every NumPy view, slice,
reshape or ``view(dtype)`` of a pooled array keeps a reference to the buffer (``ndarray.base``),
so the buffer's reference count tells whether anything still uses it. Arrays below
``MIN_BYTES`` come from ``np.empty`` (malloc serves them from its heap without faults), and so
does everything when recycling is switched off (:func:`set_recycling`) or the interpreter does
not count references (``sys.getrefcount`` missing).

Memory: the pool keeps at most ``MAX_BUFFERS`` buffers per thread (the oldest are dropped
first; a dropped buffer is freed as soon as its arrays are) and never holds more than
``MAX_FREE_BYTES`` of buffers nobody uses. In a training loop it holds one step's caches,
which the step needed anyway. :func:`release` empties this thread's pool.
"""

from __future__ import annotations

import math
import sys
import threading

import numpy as np

MIN_BYTES = 1 << 17  # 128 KiB: glibc's default mmap threshold; smaller arrays use np.empty
MAX_BUFFERS = 64  # per thread
MAX_FREE_BYTES = 1 << 30  # per thread: unused buffers beyond this are dropped
ALIGN = 64  # bytes: a cache line, one AVX-512 register

_LOCAL = threading.local()
_enabled = hasattr(sys, "getrefcount")


def _refcount(pool: list, k: int) -> int:
    return sys.getrefcount(pool[k])


# The count of a pooled buffer that only the pool references, measured through the same code
# path as the checks below (so interpreter details of how temporaries are counted cancel out).
_FREE_COUNT = _refcount([np.empty(1, np.uint8)], 0) if _enabled else None


def set_recycling(enabled: bool) -> bool:
    """Turn recycling on or off for all threads (on by default); returns the previous setting.

    Off, :func:`empty` is ``np.empty``. Raises TypeError for a non-bool.
    """
    global _enabled
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True or False, got {type(enabled).__name__}")
    previous = _enabled
    _enabled = enabled and _FREE_COUNT is not None
    if not _enabled:
        release()
    return previous


def release() -> None:
    """Drop this thread's pool (arrays still in use stay valid; they are freed with their last
    reference)."""
    _LOCAL.pool = []


def _pool() -> list:
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = []
    return pool


def empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``, from the pool.

    Parameters
    ----------
    shape : tuple of int
    dtype : NumPy float dtype (any fixed-size dtype works)

    Returns
    -------
    ndarray of ``shape`` and ``dtype``, writeable, aligned to 64 bytes when it comes from the
    pool. Its memory is not shared with any array that is still alive.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if not _enabled or nbytes < MIN_BYTES:
        return np.empty(shape, dtype)
    pool = _pool()
    for k in range(len(pool) - 1, -1, -1):  # most recently used first
        if pool[k].nbytes - ALIGN == nbytes and _refcount(pool, k) == _FREE_COUNT:
            raw = pool.pop(k)
            pool.append(raw)
            return _carve(raw, nbytes, shape, dtype)
    raw = np.empty(nbytes + ALIGN, np.uint8)
    pool.append(raw)
    _trim(pool)
    return _carve(raw, nbytes, shape, dtype)


def _carve(raw: np.ndarray, nbytes: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
    off = -raw.__array_interface__["data"][0] % ALIGN
    return raw[off : off + nbytes].view(dtype).reshape(shape)


def _trim(pool: list) -> None:
    """Drop the oldest buffers beyond MAX_BUFFERS, then the oldest unused ones beyond
    MAX_FREE_BYTES."""
    del pool[: max(0, len(pool) - MAX_BUFFERS)]
    free = [k for k in range(len(pool)) if _refcount(pool, k) == _FREE_COUNT]
    excess = sum(pool[k].nbytes for k in free) - MAX_FREE_BYTES
    for k in free:  # oldest first
        if excess <= 0:
            break
        excess -= pool[k].nbytes
        pool[k] = None
    pool[:] = [raw for raw in pool if raw is not None]
