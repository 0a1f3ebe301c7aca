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
    """Whether the next forward/backward uses the compiled kernels."""
    return kernels() is not None


def kernels():
    """The kernel module if the fast path is on, else None (the NumPy path is used)."""
    if _setting is False:
        return None
    if _setting is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if env == "0":
            return None
        if env == "1" and _load() is None:
            raise ImportError(f"{ENV_VAR}=1: {INSTALL_HINT}")
    return _load()


def _load():
    global _kernels
    if _kernels is None:
        try:
            from .cells import _kernels as module
        except ImportError:
            module = False
        _kernels = module
    return _kernels or None
