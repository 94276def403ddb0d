"""The worker's malloc arena limit (glibc's mallopt)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from streamproc.memory import limit_malloc_arenas


def test_zero_leaves_the_allocator_alone() -> None:
    assert limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_the_limit_is_set_on_glibc() -> None:
    # In a fresh interpreter: the limit applies to a process that has not started threads.
    code = "from streamproc.memory import limit_malloc_arenas as f; print(f(2))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
