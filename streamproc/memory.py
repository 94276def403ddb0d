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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["limit_malloc_arenas"]

logger = logging.getLogger(__name__)

#: mallopt() parameter number of M_ARENA_MAX in glibc's malloc.h.
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> bool:
    """Limit glibc's malloc to ``arenas`` arenas; 0 leaves glibc's default.

    Returns True if the limit was set, False if ``arenas`` is 0 or the C library is not glibc
    (musl, macOS: nothing to set).
    """
    if arenas <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no mallopt in the C library %r: malloc arenas left as they are", name)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
