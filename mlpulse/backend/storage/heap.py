"""Give the heap that checkpoints free back to the operating system (glibc only).

A checkpoint builds short-lived rows, pickled head states and SQL parameters for every
dirty series, then drops them. CPython frees the objects, but glibc's allocator keeps
the pages in its arenas, so a backend's RSS stays at the high-water mark of its largest
checkpoint: measured with 4,000 series, 80 MiB above start of which 45 MiB were free
heap. `malloc_trim(0)` (documented in glibc's malloc(3) family) returns them; where
it does not exist (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _load_trim()


def release_free_heap() -> bool:
    """Return free heap pages to the OS; False where the C library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
