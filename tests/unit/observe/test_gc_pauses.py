"""The garbage-collection pause histogram and the freeze of long-lived objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streamproc.metrics import StreamprocMetrics
from streamproc.observe.gc_pauses import GcPauseWatcher, freeze_long_lived


def count(registry: CollectorRegistry, generation: str) -> float:
    value = registry.get_sample_value(
        "streamproc_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


def test_each_full_collection_is_observed_while_installed_and_none_after() -> None:
    registry = CollectorRegistry()
    metrics = StreamprocMetrics.create(registry)
    watcher = GcPauseWatcher(metrics.gc_pause_seconds)
    watcher.install()
    watcher.install()  # twice is once
    try:
        gc.collect()
        gc.collect(1)
    finally:
        watcher.remove()
    assert count(registry, "2") == 1
    assert count(registry, "1") >= 1
    total = registry.get_sample_value("streamproc_gc_pause_seconds_sum", {"generation": "2"})
    assert total is not None and 0 < total < 5
    gc.collect()
    assert count(registry, "2") == 1
    assert watcher._callback not in gc.callbacks


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_frozen_objects_are_not_traversed_by_later_collections() -> None:
    kept = [[i] for i in range(50_000)]  # lists: tracked by the collector
    assert freeze_long_lived() >= 50_000
    assert gc.get_freeze_count() >= 50_000
    assert not any(kept[0] is o for o in gc.get_objects())  # out of every generation
    del kept  # still freed by reference counting
