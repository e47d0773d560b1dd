"""Hand freed heap back to the operating system after a burst of events.

A burst of thousands of watch events is parsed into short-lived dicts; once they are freed, glibc keeps
the memory in its heaps, so the operator's RSS stays at the burst's peak. `malloc_trim(0)` returns the free
pages (a few milliseconds); elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim() -> bool:
    """Return free heap memory to the OS; False where that is not possible (not glibc)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
