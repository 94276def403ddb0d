"""The examples in the benchmark harness's docstrings run (make test collects streamproc only)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["stats", "pacing", "resources", "report", "latency", "pyspy", "pipeline", "soak"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"benchmarks.{name} has no examples"
    assert result.failed == 0
