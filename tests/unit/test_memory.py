"""The worker's malloc settings (glibc's mallopt) and its trimming thread."""

from __future__ import annotations

import platform
import subprocess
import sys
import threading
import time

import pytest

from streamproc.memory import MallocTrimmer, fix_malloc_thresholds, limit_malloc_arenas


def test_zero_leaves_the_allocator_alone() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_limit_is_set_on_glibc() -> None:
    # In a fresh interpreter: the limit applies to a process that has not started threads.
    code = "from streamproc.memory import limit_malloc_arenas as f; print(f(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_zero_leaves_the_thresholds_alone() -> None:
    assert fix_malloc_thresholds(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
@pytest.mark.parametrize(("threshold", "kept_mb"), [(0, (48, 1000)), (131072, (0, 16))])
def test_fixed_thresholds_return_freed_large_blocks_to_the_system(
    threshold: int, kept_mb: tuple[int, int]
) -> None:
    # Two freed 4 MB blocks raise glibc's default mmap threshold to 4 MB; 64 blocks of 1 MB,
    # each followed by a 64 KB block that stays, then come from the heap, and freeing them
    # returns nothing (the kept blocks pin the heap). With fixed thresholds each 1 MB block
    # has its own mapping and is unmapped when freed.
    code = f"""
from streamproc.memory import fix_malloc_thresholds
print(fix_malloc_thresholds({threshold}))
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
big = [bytearray(4 << 20) for _ in range(2)]
del big
before = rss()
blocks, kept = [], []
for _ in range(64):
    blocks.append(bytearray(1 << 20))
    kept.append(bytearray(64 << 10))
del blocks
print((rss() - before) >> 20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    was_set, kept = out.stdout.split()
    assert was_set == str(threshold > 0)
    assert kept_mb[0] <= int(kept) < kept_mb[1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_returns_free_memory_inside_the_heap_to_the_system() -> None:
    # Blocks of 4 KB (below the mmap threshold: from the heap), every 16th kept: freeing the
    # others leaves free pages between blocks in use, which glibc keeps resident by itself
    # (only a free top is trimmed) and malloc_trim gives back.
    code = """
from streamproc.memory import fix_malloc_thresholds, trim_malloc
fix_malloc_thresholds(131072)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
blocks = [bytearray(4096) for _ in range(16384)]
kept = blocks[::16]
del blocks
before = rss()
trimmed = trim_malloc()
print(trimmed, (before - rss()) >> 20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    trimmed, released_mb = out.stdout.split()
    assert trimmed == "True"
    assert int(released_mb) >= 32  # of the 60 MB freed between the kept blocks


def test_the_trimmer_trims_on_its_interval_until_stopped() -> None:
    calls = threading.Semaphore(0)

    def trim() -> bool:
        calls.release()
        return True

    trimmer = MallocTrimmer(0.01, trim).start()
    try:
        for _ in range(3):
            assert calls.acquire(timeout=5.0)
    finally:
        trimmer.stop()
    made = trimmer.calls
    assert made >= 3
    time.sleep(0.05)
    assert trimmer.calls == made  # stopped: no more calls


def test_the_trimmer_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be positive, got 0"):
        MallocTrimmer(0)
