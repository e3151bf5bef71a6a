"""Allocator and garbage collector tuning for the server processes.

glibc serves allocations above its mmap threshold with fresh mmap() calls
and returns them to the kernel on free, so every 1 MiB message buffer costs
256 page faults when it is first touched. Raising the mmap and trim
thresholds keeps freed buffers in the heap for reuse. On this project's
2-core test machine a dataserver streaming reads took 265,000 page faults
and 1.9 CPU-seconds per GiB before, 13,000 to 32,000 faults and 1.3
CPU-seconds after (figures from bench runs on 2026-12-04; see
docs/benchmarks.md). The price is a process that keeps up to
`trim_threshold_bytes` of freed heap memory instead of returning it.

CPython's cyclic garbage collector runs a young-generation pass every 700
net allocations by default. A metaserver allocates several protobuf
messages, futures and closures per operation, so those passes, and the
older-generation passes they trigger, took about 6% of its event loop
thread under a commit load (perf, 2026-12-05). `tune_gc` makes them rarer.
Reference counting still frees everything that is not part of a cycle at
once; only garbage cycles live longer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

# mallopt() parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc refuses mmap thresholds above 32 MiB on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 512 << 20

# Net allocations between young-generation passes, and passes of each generation
# between passes of the next (CPython's defaults are 700, 10, 10).
GC_THRESHOLDS = (20_000, 50, 100)

_tuned = False


def tune_malloc(
    mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES,
    trim_threshold_bytes: int = TRIM_THRESHOLD_BYTES,
) -> bool:
    """Raise glibc's mmap and trim thresholds; return False where the C library is not glibc."""
    global _tuned
    if _tuned:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold_bytes)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold_bytes)
    )
    if not tuned:
        log.info("mallopt rejected the thresholds; the allocator keeps its defaults")
    _tuned = tuned
    return tuned


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Make the cyclic garbage collector run less often in a process with a high allocation rate."""
    gc.set_threshold(*thresholds)
