"""How many malloc arenas the process uses (glibc).

glibc gives threads that allocate at the same time arenas of their own, up to eight per core.
A worker has several threads that allocate (the asyncio loop, Faust's consumer thread,
librdkafka's threads, the flushes run in the default executor), and memory freed in one arena
is reused only by that arena: in a 2,000,000-event soak a worker's RSS rose from 423 to
565-680 MB, and with two arenas from 339 to 448 MB over the first 1,000,000 events
(``benchmarks/README.md``). :func:`limit_malloc_arenas` sets the limit the way the
``MALLOC_ARENA_MAX`` environment variable does, but from the process itself, so that a worker
started any way (``streamproc worker``, the image, a test) gets it. It must run before the
process starts its second thread: glibc fixes the limit the first time a thread needs an arena.

:func:`fix_malloc_thresholds` fixes glibc's mmap and trim thresholds. By default glibc raises its
mmap threshold (up to 32 MB) each time a large block it had mapped is freed, so later large blocks
(fetch responses, batches of decoded records) come from the arenas, and memory freed there is
kept. The worker's RSS then follows its largest recent backlog: in the soak it swung between 317
and 436 MB. With both thresholds fixed at 128 KB, blocks from 128 KB up get their own mappings,
returned to the system when freed, and a free heap top above 128 KB is trimmed: 289 MB at
200,000 events, 327-338 MB from 400,000 to 2,000,000, peak 387 MB, at the same throughput.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

__all__ = ["fix_malloc_thresholds", "limit_malloc_arenas"]

logger = logging.getLogger(__name__)

#: mallopt() parameter numbers in glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def _mallopt() -> Any | None:
    """glibc's ``mallopt``, or None when the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no mallopt in the C library %r: malloc left as it is", name)
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def limit_malloc_arenas(arenas: int) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas; 0 leaves glibc's default.

    Returns True if the limit was set, False if ``arenas`` is 0 or the C library is not glibc
    (musl, macOS: nothing to set).
    """
    if arenas <= 0:
        return False
    mallopt = _mallopt()
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def fix_malloc_thresholds(threshold: int) -> bool:
    """Fix glibc's mmap and trim thresholds at ``threshold`` bytes; 0 leaves glibc's defaults.

    Blocks of at least ``threshold`` bytes are mapped on their own (and unmapped when freed),
    and free memory above ``threshold`` at the top of the heap is returned to the system;
    fixing either stops glibc from raising them as the process frees large blocks.

    Returns True if both were set, False if ``threshold`` is 0 or the C library is not glibc.
    """
    if threshold <= 0:
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) & bool(mallopt(M_TRIM_THRESHOLD, threshold))
