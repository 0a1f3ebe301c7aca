"""The switch for the optional compiled path (``pip install "lstm-bptt[fast]"``, numba).

When numba is importable the sequence loops of the cells run as compiled kernels
(:mod:`lstm_bptt.cells._kernels`): per step the GEMM stays in BLAS and the elementwise work is one
fused loop. Without numba, or when switched off, the NumPy code is used; it is the reference
and the default without the extra. Switch off with the environment variable
``LSTM_BPTT_FAST=0`` (read at each call, so it may be set at any time) or from Python with
:func:`set_fast_path`; ``LSTM_BPTT_FAST=1`` asks for the fast path and fails loudly if numba is
missing.

numba itself is imported on the first call that could use it, not when ``lstm_bptt`` is
imported (importing numba costs ~0.3-0.5 s). The kernels are compiled with ``cache=True``: the
first process on a machine compiles them (a few seconds), later processes load them from disk.
"""

from __future__ import annotations

import inspect
import os

ENV_VAR = "LSTM_BPTT_FAST"
INSTALL_HINT = 'the fast path needs numba: pip install "lstm-bptt[fast]"'

_setting: bool | None = None  # None: automatic (environment variable, then availability)
_kernels = None  # the imported module, or False when numba is not importable


def set_fast_path(enabled: bool | None) -> bool | None:
    """Turn the compiled path on (True), off (False) or back to automatic (None).

    Automatic means: off if the environment variable ``LSTM_BPTT_FAST`` is ``0``, otherwise on
    when numba is importable. Returns the previous setting.

    Raises
    ------
    TypeError
        ``enabled`` is not a bool or None.
    ImportError
        ``enabled`` is True and numba is not installed.
    """
    global _setting
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled: expected True, False or None, got {type(enabled).__name__}")
    if enabled and _load() is None:
        raise ImportError(INSTALL_HINT)
    previous, _setting = _setting, enabled
    return previous


def fast_path_enabled() -> bool:
    """Whether the compiled kernels are on. Even then a layer whose per-step GEMM has
    ``PARALLEL_STEP_MACS`` or more multiply-adds takes the NumPy path while BLAS has several
    threads (see :func:`kernels`)."""
    return kernels() is not None


# Per-step GEMMs of at least this many multiply-adds (B * K * G) run on the NumPy path when BLAS
# has several threads; see :func:`kernels`. (B, K, G) = (32, 128, 512): 2.1e6 (the kernels win
# with 2 threads: 16.5 vs 18.5 ms per training step), (64, 256, 1024): 1.7e7 and
# (128, 512, 2048): 1.3e8 (the NumPy path wins: 140 vs 161 ms, 544 vs 658 ms).
PARALLEL_STEP_MACS = 1 << 23


def kernels(step_macs: int = 0):
    """The kernel module if the fast path is on, else None (the NumPy path is used).

    ``step_macs`` is the size of the caller's per-step GEMM (B * K * G multiply-adds). The
    kernels run their BLAS on one thread (:class:`OneBlasThread`); when BLAS has more threads
    and the per-step GEMM has at least ``PARALLEL_STEP_MACS``, the NumPy path, whose per-step
    GEMMs use every BLAS thread, is faster, and None is returned.
    """
    if _setting is False:
        return None
    if _setting is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env == "0":
            return None
        if env == "1" and _load() is None:
            raise ImportError(f"{ENV_VAR}=1: {INSTALL_HINT}")
    loaded = _load()
    if loaded is not None and step_macs >= PARALLEL_STEP_MACS and loaded.blas_threads() > 1:
        return None
    return loaded


def _load():
    global _kernels
    if _kernels is None:
        try:
            from .cells import _kernels as module
        except ImportError:
            _kernels = False
        else:
            _kernels = OneBlasThread(module, *_kernel_blas_threads())
    return _kernels or None


class OneBlasThread:
    """The kernel module, its functions called with the kernels' BLAS on one thread.

    The kernels call BLAS once per time step (``np.dot`` in numba goes to the BLAS that SciPy
    ships, a separate OpenBLAS from NumPy's) with elementwise loops in between. With that
    OpenBLAS on more than one thread, every per-step call paid its thread pool's wake-up:
    measured with 2 threads on 2 cores, a (T, B, D, H) = (64, 32, 65, 128) float32 training
    step took 33-54 ms against 15 ms with the kernels' BLAS on one thread (and 17-19 ms on the
    NumPy path with 2 threads); at (50, 128, 512, 512) one thread cost 0-10 %. So around each
    kernel call SciPy's OpenBLAS is set to one thread and set back after. That setting is
    process-wide: another thread calling SciPy's BLAS at that moment also gets one thread.
    Where SciPy's OpenBLAS cannot be found (another BLAS), the kernels are called as they are.
    """

    def __init__(self, module, get_threads=None, set_threads=None):
        self._module = module
        self._get, self._set = get_threads, set_threads

    def blas_threads(self) -> int:
        """The kernels' BLAS thread count (1 when it cannot be read)."""
        return 1 if self._get is None else self._get()

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        # compiled kernels (numba dispatchers) and plain functions; classes and constants as is
        if self._get is None or not (hasattr(fn, "py_func") or inspect.isfunction(fn)):
            return fn
        get, set_ = self._get, self._set

        def call(*args):
            n = get()
            if n <= 1:
                return fn(*args)
            set_(1)
            try:
                return fn(*args)
            finally:
                set_(n)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = fn.__doc__
        setattr(self, name, call)  # once per name: later lookups skip __getattr__
        return call


def _kernel_blas_threads():
    """(get, set) of the thread count of the OpenBLAS that SciPy (and so numba) uses, or
    (None, None) if it is not SciPy's bundled OpenBLAS (e.g. another BLAS in a conda
    environment)."""
    import ctypes
    import glob

    try:
        import scipy
    except ImportError:  # pragma: no cover - numba's np.dot needs SciPy anyway
        return None, None
    libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs",
                                  "libscipy_openblas*"))
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", ""), ("scipy_openblas", "64_"),
                               ("openblas", "")):
            try:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
            except AttributeError:
                continue
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None, None
