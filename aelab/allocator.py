"""Keeping freed host memory for reuse while a model trains.

PyTorch's CPU tensors come straight from malloc. glibc serves requests above
its mmap threshold (32 MiB at most) with fresh pages from the kernel and
hands them back on free, so the large tensors a training step makes and drops
(the deep fcn's two 50 MB weight gradients, each step) are page-faulted and
zeroed again every step: about a fifth of the fcn's CPU step on this
project's machines. While ``keep_freed_memory`` is active, glibc serves every
request from its heap and does not trim it, so a step reuses what the last one
freed. The settings go back to glibc's defaults when the last user leaves.
With any other C library (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters and glibc's defaults for them (malloc.h, malloc.c)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB free at the top before trimming

_lock = threading.Lock()
_users = 0


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (looked up on first use, not at import), else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- present in glibc only
        return libc
    except (OSError, AttributeError):
        return None


def active() -> bool:
    """Whether freed memory is being kept now (always False off glibc)."""
    return _users > 0 and glibc() is not None


@contextmanager
def keep_freed_memory() -> Iterator[None]:
    """Serve large host allocations from a heap that is not trimmed, for the duration (nests)."""
    global _users
    libc = glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _users == 0:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)  # give back what the run kept
