"""Keep freed memory in the process's heap while the diagnostics draw large chunks.

Each pass of the importance weights allocates and frees tensors of about 16 MB. glibc's
malloc serves such blocks with ``mmap`` (or trims them off the heap) and hands them back to
the system on ``free``, so the next pass page-faults the same memory in again. Run to run,
that made the IWAE of ``benchmarks/iwae_speed.py`` up to twice as slow, with millions of
page faults; with the limits below the times are steady.
"""

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 2**20  # blocks below this come from the heap
TRIM_THRESHOLD_BYTES = 1024 * 2**20  # free heap above this is returned to the system


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where there is no
    glibc (macOS, Windows, musl), where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    return bool(ok and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
