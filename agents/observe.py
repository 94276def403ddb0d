"""Observability of a worker: lag monitor, status server, rebalance and liveness metrics."""

from __future__ import annotations

import logging
from typing import Any

import faust

from streamproc.config import Settings
from streamproc.metrics import StreamprocMetrics
from streamproc.observe.lag_monitor import LagMonitor
from streamproc.observe.server import StatusServer

__all__ = ["attach_observability"]

logger = logging.getLogger(__name__)


def attach_observability(
    app: faust.App, settings: Settings, metrics: StreamprocMetrics, consumed: list[str]
) -> StatusServer | None:
    """Measure lag, serve /metrics, /health, /ready and /status, count rebalances.

    Parameters
    ----------
    consumed
        The source topics the worker's agents consume (lag and readiness are about these).

    Returns
    -------
    StatusServer or None
        The server (started when the worker starts), or None when ``metrics_port`` is 0.
    """
    source = set(consumed)

    def owned() -> set[tuple[str, int]]:
        # Called from the server's thread too: never create the consumer from here.
        consumer = getattr(app, "_consumer", None)
        if consumer is None:
            return set()
        try:
            assignment = consumer.assignment()
        except Exception:  # the consumer is not started yet
            return set()
        return {(tp.topic, tp.partition) for tp in assignment if tp.topic in source}

    monitor = LagMonitor.for_settings(settings, metrics, topics=consumed, owned_partitions=owned)
    server: StatusServer | None = None
    if settings.metrics_port:
        server = StatusServer(
            metrics,
            host=settings.metrics_host,
            port=settings.metrics_port,
            assigned_partitions=lambda: len(owned()),
            broker_ok=monitor.broker_ok,
        )
    metrics.declare_topics(
        consumed=consumed,
        produced=[
            settings.topic_valid,
            settings.topic_dlq,
            settings.topic_predictions,
            settings.topic_snapshots,
        ],
    )

    async def start_observing() -> None:
        # Faust starts tasks after the first assignment; the server is already up by then
        # (started by the worker before Faust, so /health and /ready answer during start-up).
        metrics.worker_up.set(1)
        await monitor.run()

    async def on_assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned: set[Any] = args[0] if args else kwargs.get("assigned", set())
        metrics.rebalances.inc()
        counts = dict.fromkeys(consumed, 0)
        for tp in assigned:
            if tp.topic in counts:
                counts[tp.topic] += 1
        for topic, n in counts.items():
            metrics.assigned_partitions.labels(topic=topic).set(n)

    async def on_shutdown(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        metrics.worker_up.set(0)
        monitor.stop()
        if server is not None:
            server.stop()

    # Registered by calls, not decorators: Faust's decorators are untyped.
    app.task(start_observing)
    app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]  # mode types handlers as a union mypy cannot match
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]  # mode types handlers as a union mypy cannot match

    app.status_server = server  # type: ignore[attr-defined]
    return server
