"""The per-step recurrent GEMM cut into column blocks that OpenBLAS's small-matrix kernels take.

Why: on CPUs where OpenBLAS runs its SkylakeX (AVX-512) kernels, a GEMM with M * N * K <= 10^6
multiply-adds goes to a small-matrix kernel that works on the operands in place; above that it
goes through the general code, which packs both operands first (``sgemm_small_kernel_permit`` /
``dgemm_small_kernel_permit`` in OpenBLAS's ``kernel/x86_64``). At the per-step shapes of a
recurrent layer the small kernel is much faster per multiply-add. Measured on this project's
machine (AMD EPYC, AVX-512, OpenBLAS 0.3.30/0.3.31, one thread), the step product
h (B, K) @ W (K, N), float32:

=====================  ========================  ============================
(B, K, N)              one GEMM (best layout)    column blocks of c, c width
=====================  ========================  ============================
(32, 128, 512)         55 us (transposed)        40 us (c = 64)
(32, 256, 1024)        207 us (transposed)       153 us (c = 64)
(64, 256, 1024)        390 us (transposed)       308 us (c = 32)
(32, 1024, 256) (dh)   207 us (transposed)       159 us (c = 16)
=====================  ========================  ============================

and in float64 (32, 256, 1024) 372 -> 305 us, (64, 256, 1024) 692 -> 607 us. Where the
whole product is under the limit already, or blocks narrower than 16 columns would be needed
(e.g. (128, 512, 2048)), one GEMM stays faster, and :func:`step_chunk` returns 0.

The blocks are the columns of W: block j is W[:, j c : (j + 1) c], stored contiguous; each
output element is still one dot product of length K, computed by the kernel OpenBLAS picks for
the block's size. The NumPy path (one stacked ``np.matmul``) and the compiled kernels use the
same blocks (:func:`step_blocks`), so the two paths keep giving the same numbers.

Other BLAS libraries, and OpenBLAS on other cores (Haswell, Zen, ARM), were not measured; there
the product is not cut (:func:`small_gemm_macs` returns 0).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os

import numpy as np

# OpenBLAS cores whose sgemm/dgemm have small-matrix kernels permitted up to 10^6 MACs
SMALL_KERNEL_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
SMALL_KERNEL_MACS = 1_000_000
MAX_BLOCK_BYTES = 256  # block width: 64 float32 or 32 float64 columns (measured best)
MIN_BLOCK = 16  # narrower blocks were slower than one GEMM
MIN_ROWS = 4  # B below this: not measured, not cut
TILE_ROWS = 16  # rows per tile when whole-row blocks would be too narrow (see step_tiles)
MIN_TILE_COLUMNS = {4: 32, 8: 32}  # by itemsize: narrower tiles were slower (see step_tiles)
# ... except for tiles of 16 rows on AMD Zen 4 (family 25 with AVX-512, whose 512-bit units are
# two 256-bit halves): there float32 tiles of 16 columns were faster (see step_tiles)
MIN_TILE_COLUMNS_ZEN4 = {4: 16, 8: 32}


@functools.cache
def cpu_family() -> tuple[str, int] | None:
    """(vendor_id, cpu family) of this machine from /proc/cpuinfo, e.g. ("AuthenticAMD", 25),
    or None where it cannot be read (not Linux)."""
    vendor = family = None
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                elif key == "cpu family" and family is None:
                    family = int(value.strip()) if value.strip().isdigit() else None
                if vendor is not None and family is not None:
                    break
    except OSError:
        return None
    return None if vendor is None or family is None else (vendor, family)


def min_tile_columns(itemsize: int) -> int:
    """Narrowest tile (16 rows) :func:`step_tiles` uses, by itemsize and CPU: 16 float32
    columns on AMD family 25 (Zen 4; Zen 3, also family 25, has no small-matrix kernel, so no
    tiles), else 32 (measured on Zen 4 and Zen 5: see :func:`step_tiles`)."""
    table = (MIN_TILE_COLUMNS_ZEN4 if cpu_family() == ("AuthenticAMD", 25)
             else MIN_TILE_COLUMNS)
    return table.get(itemsize, 32)


@functools.cache
def _numpy_openblas() -> tuple:
    """(get_corename, get_num_threads, set_num_threads) of NumPy's bundled OpenBLAS (ctypes
    functions; a missing one None), or (None, None, None) when NumPy uses another BLAS."""
    here = os.path.dirname(np.__file__)
    for path in sorted(glob.glob(os.path.join(here, os.pardir, "numpy.libs", "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            core = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            set_threads = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if core is not None:
                core.restype, core.argtypes = ctypes.c_char_p, []
                if threads is not None:
                    threads.restype, threads.argtypes = ctypes.c_int, []
                if set_threads is not None:
                    set_threads.restype, set_threads.argtypes = None, [ctypes.c_int]
                return core, threads, set_threads
    return None, None, None


@functools.cache
def openblas_core() -> str | None:
    """The core name NumPy's OpenBLAS runs its kernels for (e.g. ``"SkylakeX"``), or None
    when NumPy uses another BLAS or the name cannot be read."""
    core = _numpy_openblas()[0]
    name = None if core is None else core()
    return None if name is None else name.decode("ascii", "replace").strip()


def numpy_blas_threads() -> int:
    """The number of threads NumPy's OpenBLAS uses now (1 when it cannot be read)."""
    threads = _numpy_openblas()[1]
    return 1 if threads is None else max(1, threads())


@contextlib.contextmanager
def numpy_blas_threads_limited(n: int):
    """Run the block with NumPy's OpenBLAS on at most ``n`` threads, and set it back after.

    For when threadpoolctl (the ``perf`` extra) is not installed: ``run_task`` promises one
    BLAS thread (the small GEMMs of a task are faster on one, and a Dask worker runs one),
    and without threadpoolctl it used to leave NumPy's thread count as it was. Does nothing
    when NumPy's BLAS is not OpenBLAS (the count cannot be set here). The count is
    process-wide: blocks entered from several Python threads at once restore it in the order
    they exit, not the order they entered.

    Raises
    ------
    ValueError
        ``n`` is not a positive int.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n: expected a positive int (BLAS threads), got {n!r}")
    _, get, set_ = _numpy_openblas()
    before = None if get is None or set_ is None else max(1, get())
    if before is None or before <= n:
        yield
        return
    set_(n)
    try:
        yield
    finally:
        set_(before)


def small_gemm_macs() -> int:
    """Largest GEMM (multiply-adds) that OpenBLAS sends to its small-matrix kernel on this
    machine, or 0 when it has none (or the BLAS is not OpenBLAS)."""
    core = openblas_core()
    return SMALL_KERNEL_MACS if core and core.lower() in SMALL_KERNEL_CORES else 0


def step_chunk(B: int, K: int, N: int, itemsize: int) -> int:
    """Block width c for the per-step product (B, K) @ (K, N), or 0 for one GEMM.

    c is the widest multiple of 8 that divides N, has B * K * c within the small-kernel
    limit, and is at most ``MAX_BLOCK_BYTES`` wide; blocks are used only when the whole
    product is over the limit, B >= ``MIN_ROWS`` and c >= ``MIN_BLOCK``.
    """
    limit = small_gemm_macs()
    if not limit or B < MIN_ROWS or B * K * N <= limit:
        return 0
    cap = min(MAX_BLOCK_BYTES // itemsize, limit // (B * K), N - 1)
    for c in range(cap - cap % 8, MIN_BLOCK - 1, -8):
        if N % c == 0:
            return c
    return 0


def step_tiles(B: int, K: int, N: int, itemsize: int) -> tuple[int, int]:
    """(rows, c): the per-step product (B, K) @ (K, N) as tiles of ``rows`` rows of a and c
    columns of the weight, or (0, 0) for one GEMM.

    Whole rows first (rows = B, c = :func:`step_chunk`) when their blocks are at least
    ``MIN_TILE_COLUMNS`` (32) wide. Where they would be narrower (B K large: the backward's
    (B, 4H) @ (4H, H), or B = 128), tiles of ``TILE_ROWS`` = 16 rows: c is then the widest
    multiple of 8 dividing N with 16 K c within the limit, at most ``MAX_BLOCK_BYTES`` wide
    and at least 32; B must be a multiple of 16. Where no such tile exists, whole rows of
    16 to 24 columns, or else one GEMM. (32, 1024, 256) (the model row's backward): whole
    rows of 16 columns 111 us, tiles of 16 rows and 32 columns 93 us (float32, Zen 5).
    Measured (one thread, us per product), one GEMM -> tiles: float32 (64, 1024, 256)
    411 -> 321, (128, 512, 2048) 3,419 -> 2,612; float64 (64, 1024, 256) 822 -> 638,
    (128, 512, 2048) 5,855 -> 4,975 (AMD EPYC Zen 4). (128, 2048, 512) needs 16-column
    tiles (:func:`min_tile_columns`): in float64 they were slower on Zen 4 (6,470 us), so it
    is one GEMM there; in float32 they are faster on Zen 4 (3,730 -> 2,990, fifth session;
    4,579 -> 3,626 in the kernels' loop and the large training step 960 -> 904 ms, eighth)
    but slower on an AMD EPYC Zen 5 (1,382 -> 2,284; 16 -> 32 columns there took the large
    float32 training step from 445-454 to 407-421 ms). So 16 columns on Zen 4 only.
    """
    whole = step_chunk(B, K, N, itemsize)
    if whole >= MIN_TILE_COLUMNS.get(itemsize, 32):
        return B, whole
    limit = small_gemm_macs()
    if limit and TILE_ROWS < B and B % TILE_ROWS == 0 and B * K * N > limit:
        cap = min(MAX_BLOCK_BYTES // itemsize, limit // (TILE_ROWS * K), N)
        for c in range(cap - cap % 8, min_tile_columns(itemsize) - 1, -8):
            if N % c == 0:
                return TILE_ROWS, c
    return (B, whole) if whole else (0, 0)


def step_blocks(w: np.ndarray, B: int) -> np.ndarray | None:
    """The column blocks (N / c, K, c) of a (K, N) weight for a per-step product with B rows
    (block j = w[:, j c : (j + 1) c], contiguous), or None when it is computed as one GEMM
    (:func:`step_tiles`; :func:`step_rows` gives the rows per tile)."""
    K, N = w.shape
    c = step_tiles(B, K, N, w.itemsize)[1]
    if not c:
        return None
    return np.ascontiguousarray(w.reshape(K, N // c, c).transpose(1, 0, 2))


def step_rows(B: int, blocks: np.ndarray | None) -> int:
    """Rows of a per tile for these :func:`step_blocks` (B: whole rows), 0 without blocks."""
    if blocks is None:
        return 0
    _, K, c = blocks.shape
    return B if B * K * c <= small_gemm_macs() else TILE_ROWS


def step_plan(B: int, w: np.ndarray, blocks: np.ndarray | None) -> tuple:
    """(blocks, rows, transposed): how a compiled kernel computes its per-step product
    a (B, K) @ w (K, N): the column :func:`step_blocks` (or None), :func:`step_rows` and
    :func:`transposed_product`, the last three arguments of every ``*_steps`` kernel."""
    return blocks, step_rows(B, blocks), transposed_product(B, w, blocks)


TRANSPOSED_MAX_ROWS = 64  # with the small-matrix kernel: from B = 64 on the direct product


def transposed_product(B: int, w: np.ndarray, blocks=None) -> bool:
    """Whether the compiled kernels compute the per-step product a (B, K) @ w (K, N)
    transposed: as w^T (N, K) @ a^T (K, B), with the (N, B) result transposed back.

    Float32 only, B >= 4, without blocks. OpenBLAS runs the transposed GEMM faster at these
    shapes, by more than the transpose back costs. On cores with the small-matrix kernel
    (:func:`small_gemm_macs`) only over its limit and for B < 64, where it was measured faster
    (AVX-512 EPYC, fourth and fifth sessions): below the limit the direct product is the small
    kernel, (32, 64, 256) 10 vs 17 us. On other cores (measured: AVX2 EPYC, OpenBLAS Haswell
    kernels, SciPy's OpenBLAS 0.3.30, one thread), direct -> transposed GEMM, us: (8, 64, 256)
    13.6 -> 4.7, (32, 128, 512) 82 -> 52, (64, 256, 1024) 505 -> 390, (128, 512, 2048)
    3,713 -> 3,290; the transpose back costs 6, 32 and 146 us of these. Float64: no gain
    (118 vs 127 us at (32, 128, 512), before the transpose back). B = 1: the direct product
    is a matrix-vector product (0.33 us at (1, 32, 128)).
    """
    if blocks is not None or w.itemsize != 4 or B < MIN_ROWS:
        return False
    limit = small_gemm_macs()
    if limit:
        return B < TRANSPOSED_MAX_ROWS and B * w.size > limit
    return True


class StepProduct:
    """out (B, N) = a (B, K) @ w (K, N) for every step of the NumPy path, by column blocks
    where :func:`step_blocks` says so (one stacked ``np.matmul`` and a copy), else one
    ``np.dot``. The same products as the compiled kernels' for the same blocks.

    With more than one BLAS thread NumPy's one GEMM uses them all, while the small-matrix
    kernel runs on one: then one GEMM is faster (float32 (64, 256, 1024): 238 vs 318 us with 2
    threads), and the blocks are not used. (The compiled kernels always run their BLAS on one
    thread: :class:`lstm_bptt._fast.OneBlasThread`, and keep the blocks, so with several
    NumPy BLAS threads the two paths' products can differ in the last bit, also in float64;
    with one thread they are bitwise the same.)"""

    def __init__(self, w: np.ndarray, B: int, blocks=None):
        self.w = w
        self.blocks = step_blocks(w, B) if blocks is None else blocks
        if self.blocks is not None and numpy_blas_threads() > 1:
            self.blocks = None
        if self.blocks is not None:
            nc, K, c = self.blocks.shape
            rows = step_rows(B, self.blocks)
            self.a_shape = (B // rows, 1, rows, K)  # a as (row tiles, 1, rows, K)
            self.scratch = np.empty((B // rows, nc, rows, c), w.dtype)
            self.scratch_t = self.scratch.transpose(0, 2, 1, 3)  # (row tiles, rows, nc, c)

    def __call__(self, a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write a @ w into ``out`` (B, N), C-contiguous; returns ``out``."""
        if self.blocks is None:
            return np.dot(a, self.w, out=out)
        np.matmul(a.reshape(self.a_shape), self.blocks, out=self.scratch)
        np.copyto(out.reshape(self.scratch_t.shape), self.scratch_t)
        return out


MAX_BLOCK_ROWS = 32  # rows per block of matmul_rows (16-32 measured alike; 32 the fewest calls)


def rows_per_block(M: int, K: int, N: int) -> int:
    """Rows r per block for (M, K) @ (K, N) as stacked (r, K) @ (K, N) products, or 0 for one
    GEMM: r = min(32, limit / (K N)) when the whole product is over the small-kernel limit and
    r >= 16 (so only for a narrow result, N K <= 62,500)."""
    limit = small_gemm_macs()
    if not limit or M * K * N <= limit:
        return 0
    r = min(MAX_BLOCK_ROWS, limit // (K * N))
    return r if r >= MIN_BLOCK else 0


def matmul_rows(a: np.ndarray, w: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out (M, N) = a (M, K) @ w (K, N), by blocks of rows that OpenBLAS's small-matrix kernel
    takes (:func:`rows_per_block`), else one GEMM. For the input gradient dx = da W_ih of a
    recurrent layer (T*B rows, a narrow input). Measured (one thread; M = 2048 unless said):
    (K, N) = (512, 65) float32 1,960 -> 1,523 us, float64 4,984 -> 3,840 us; (512, 16),
    M = 6400: float32 3,097 -> 1,573 us, float64 7,775 -> 3,158 us. Each element is still one dot
    product of length K. The rows of a and out may be strided (e.g. a view into a wider work
    array), their elements must be contiguous (else one GEMM). With more than one BLAS thread,
    one GEMM (on all of them) is used: it is faster then (float32 (2048, 512, 65): 0.84 vs
    1.47 ms with 2 threads). Returns out."""
    M, K = a.shape
    N = w.shape[1]
    r = rows_per_block(M, K, N)
    if (not r or a.strides[1] != a.itemsize or out.strides[1] != out.itemsize
            or numpy_blas_threads() > 1):
        return np.matmul(a, w, out=out)
    n = M - M % r
    blocks = np.lib.stride_tricks.as_strided  # (n / r, r, .) views of the first n rows
    np.matmul(blocks(a, (n // r, r, K), (r * a.strides[0], *a.strides)), w,
              out=blocks(out, (n // r, r, N), (r * out.strides[0], *out.strides)))
    if n < M:
        np.matmul(a[n:], w, out=out[n:])
    return out
