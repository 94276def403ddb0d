"""How long Python's garbage collector holds the worker, as a histogram.

A full collection traverses every object the collector tracks and holds the process (the
event loop, so every agent) meanwhile. On a worker under load they ran every few seconds and
took 30-180 ms: a direct share of the produce-to-prediction latency tail, invisible in the
stage histograms. prometheus-client's own ``python_gc_*`` families count collections but not
their duration; :class:`GcPauseWatcher` adds that, through :data:`gc.callbacks`.

The worker also takes the objects that live as long as the process (modules, classes, the
schemas) out of the collector's generations with :func:`freeze_long_lived` once it is built.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

__all__ = ["GcPauseWatcher", "freeze_long_lived"]


class GcPauseWatcher:
    """Observe each collection's duration in ``histogram{generation}`` while installed.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> h = Histogram("pause_seconds", "", ["generation"], registry=registry)
    >>> with GcPauseWatcher(h):
    ...     _ = gc.collect()
    >>> registry.get_sample_value("pause_seconds_count", {"generation": "2"})
    1.0
    """

    def __init__(self, histogram: Histogram) -> None:
        self._by_generation = [histogram.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # Called twice per collection, hundreds of times a second: keep it to a clock read.
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def __enter__(self) -> GcPauseWatcher:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def freeze_long_lived() -> int:
    """Collect, then move every object alive now out of the collector's reach; return how many.

    For a process that has built everything it keeps for its lifetime (imports, the app, its
    agents): later full collections no longer traverse those objects. Objects frozen here are
    still freed by reference counting; only reference cycles among them would never be
    collected, which is why it is called once, before any event is processed.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
