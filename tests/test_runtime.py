"""Process-level malloc tuning used by the CLI jobs."""

from __future__ import annotations

import platform

import numpy as np

from lstm_bptt.experiments._runtime import retain_freed_memory


def test_retain_freed_memory_applies_on_glibc_and_is_harmless():
    applied = retain_freed_memory()
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert applied is is_glibc
    # allocation still works after the tuning, including blocks above the old mmap threshold
    a = np.ones((64, 32, 1024), np.float32)
    del a
    b = np.zeros(40 * 1024 * 1024 // 8)
    assert b.sum() == 0.0
