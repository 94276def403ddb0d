"""Run the Faust worker for an app built from settings."""

from __future__ import annotations

import logging

from faust import Worker

from agents.app import create_app
from streamproc.config import Settings
from streamproc.kafka.clients import wait_for_broker
from streamproc.memory import MallocTrimmer, fix_malloc_thresholds, limit_malloc_arenas
from streamproc.observe.gc_pauses import GcPauseWatcher, freeze_long_lived

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Start a worker and block until it is stopped (SIGINT/SIGTERM)."""
    # First: glibc fixes the arena limit when a second thread first allocates, and the broker
    # check below starts librdkafka's threads.
    if limit_malloc_arenas(settings.malloc_arenas):
        logger.debug("malloc arenas limited to %d", settings.malloc_arenas)
    if fix_malloc_thresholds(settings.malloc_mmap_threshold):
        logger.debug("malloc mmap and trim thresholds fixed at %d", settings.malloc_mmap_threshold)
    wait_for_broker(settings, timeout=30.0)
    app = create_app(settings)
    server = getattr(app, "status_server", None)
    if server is not None:
        server.start()
        logger.info("metrics and status at %s", server.url)
    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Everything imported and built so far (modules, classes, functions, the schemas: about
    # 150,000 objects) lives as long as the process. Moved out of the collector's generations,
    # it is no longer traversed by every full collection, which ran every few seconds under
    # load and paused the event loop for 30-100 ms: a direct share of the latency tail.
    frozen = freeze_long_lived()
    logger.debug("%d long-lived objects moved out of the garbage collector's reach", frozen)
    watcher = GcPauseWatcher(app.metrics.gc_pause_seconds)  # type: ignore[attr-defined]
    watcher.install()
    trimmer = (
        MallocTrimmer(settings.malloc_trim_interval_s).start()
        if settings.malloc_trim_interval_s > 0
        else None
    )
    try:
        worker.execute_from_commandline()
    finally:
        if trimmer is not None:
            trimmer.stop()
        watcher.remove()
        if server is not None:
            server.stop()
