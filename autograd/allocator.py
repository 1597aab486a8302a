"""Keep freed array memory in the process for the next training step (glibc only).

glibc's malloc serves large requests (from 128 KiB, rising to at most 32 MiB as it sees
them freed) with fresh `mmap`s, and returns free memory at the top of its heap to the system
whenever more than twice that lies there. A training step allocates and frees the same
activations and gradients every time, so each step faults the same pages in again: on this
project's machine (a VM) that cost 15-20% of a CNN training step. Raising both thresholds
makes freed arrays come back from malloc's free lists, as a caching allocator would, while
`tracemalloc` and the graph still see exactly the arrays that are alive.

Applied once, when `autograd` is imported, unless `NPGRAD_MALLOC_TUNING=0` is set, or the
user set glibc's own `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` (theirs win). At
most `TRIM_THRESHOLD` bytes of free memory stay with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 256 << 20  # requests below this come from the heap, never a fresh mmap
TRIM_THRESHOLD = 512 << 20  # free memory at the top of the heap kept before giving it back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers

tuned = False  # whether `tune_malloc` changed the settings in this process


def tune_malloc() -> bool:
    """Set glibc's thresholds (see the module doc); False where that does not apply."""
    global tuned
    if tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("NPGRAD_MALLOC_TUNING") == "0":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return tuned
