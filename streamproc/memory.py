"""How many malloc arenas the process uses (glibc).

glibc gives threads that allocate at the same time arenas of their own, up to eight per core.
A worker has several threads that allocate (the asyncio loop, Faust's consumer thread,
librdkafka's threads, the flushes run in the default executor), and memory freed in one arena
is reused only by that arena: in a 2,000,000-event soak a worker's RSS rose from 423 to
565-680 MB, and with two arenas from 339 to 448 MB over the first 1,000,000 events
(``benchmarks/README.md``). One arena (the default) peaked 342-360 MB in four later soaks
against 372-375 MB for two in three, at the same throughput and latency in the bench: the
threads other than the event loop allocate little, so they seldom wait for its arena.
:func:`limit_malloc_arenas` sets the limit the way the ``MALLOC_ARENA_MAX`` environment
variable does, but from the process itself, so that a worker started any way (``streamproc
worker``, the image, a test) gets it. It must run before the process starts its second
thread: glibc fixes the limit the first time a thread needs an arena.

:func:`fix_malloc_thresholds` fixes glibc's mmap and trim thresholds. By default glibc raises its
mmap threshold (up to 32 MB) each time a large block it had mapped is freed, so later large blocks
(fetch responses, batches of decoded records) come from the arenas, and memory freed there is
kept. The worker's RSS then follows its largest recent backlog: in the soak it swung between 317
and 436 MB. With both thresholds fixed at 128 KB, blocks from 128 KB up get their own mappings,
returned to the system when freed, and a free heap top above 128 KB is trimmed: 289 MB at
200,000 events, 327-338 MB from 400,000 to 2,000,000, peak 387 MB, at the same throughput.

:class:`MallocTrimmer` returns the free pages *inside* the heaps as well. glibc gives back only
a free heap top by itself; blocks freed below a block still in use stay resident until
``malloc_trim`` is called. In a worker that is most of what was left of the growth: over a
2,000,000-event soak the arenas grew from 75 to 128 MB while the memory in use in them stayed
at 52-67 MB (``mallinfo2``), and RSS rose by 18-22 %. Trimming every second (6 ms median per
call, in a thread of its own) cut that to +12 %. A trim holds the arena the event loop
allocates from while it runs (up to tens of milliseconds under load), and the pages it returns
are faulted in again; the worker trims every 10 s by default
(``STREAMPROC_MALLOC_TRIM_INTERVAL_S``), with the records per fetch capped at 6,000
(``STREAMPROC_BATCH_SIZE``): against slow fragmentation, at no cost the bench could measure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["MallocTrimmer", "fix_malloc_thresholds", "limit_malloc_arenas", "trim_malloc"]

logger = logging.getLogger(__name__)

#: mallopt() parameter numbers in glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@functools.cache
def _libc_function(name: str) -> Any | None:
    """A glibc malloc function, or None when the C library has none (musl, macOS).

    Looked up once per name: ``find_library`` runs ``ldconfig`` in a subprocess, which the
    worker's trimming thread would otherwise fork on every trim.
    """
    library = ctypes.util.find_library("c")
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError, TypeError):
        logger.debug("no %s in the C library %r: malloc left as it is", name, library)
        return None
    return function


def _mallopt() -> Any | None:
    """glibc's ``mallopt``, or None when the C library has none."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
    return mallopt


def _malloc_trim() -> Any | None:
    """glibc's ``malloc_trim``, or None when the C library has none."""
    malloc_trim = _libc_function("malloc_trim")
    if malloc_trim is not None:
        malloc_trim.argtypes = (ctypes.c_size_t,)
        malloc_trim.restype = ctypes.c_int
    return malloc_trim


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


def trim_malloc() -> bool:
    """Return the free memory of every malloc arena to the system (glibc's ``malloc_trim(0)``).

    Returns True if some memory was released, False if none was or the C library is not glibc.
    """
    malloc_trim = _malloc_trim()
    return malloc_trim is not None and bool(malloc_trim(0))


class MallocTrimmer:
    """A daemon thread that calls ``trim`` every ``interval_s`` seconds until :meth:`stop`.

    The call runs without the GIL (ctypes releases it), so the event loop goes on meanwhile;
    it waits only when it allocates from an arena at the moment that arena is being trimmed.
    """

    def __init__(self, interval_s: float, trim: Callable[[], bool] = trim_malloc) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.interval_s = interval_s
        self.trim = trim
        self.calls = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)

    def start(self) -> MallocTrimmer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.trim()
            self.calls += 1
