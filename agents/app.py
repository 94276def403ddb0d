"""create_app(settings) -> faust.App: the only place a faust.App is built."""

from __future__ import annotations

import faust

from streamproc.config import Settings
from streamproc.errors import ConfigError

__all__ = ["create_app"]


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app with its topics and agents, configured from ``settings``.

    The app is created per call (no module-level app), so tests and the CLI can build apps
    with different settings in one process.
    """
    from agents.ingest import register_ingest

    servers = ";".join(f"kafka://{s}" for s in settings.bootstrap_servers.split(","))
    app = faust.App(
        settings.app_id,
        broker=servers,
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1,
        # A short fetch wait keeps produce-to-output latency low at light load.
        consumer_max_fetch_size=1_048_576,
        broker_commit_interval=1.0,
        web_enabled=False,
        # The worker sets up logging itself; keep Faust's per-event logging off.
        loghandlers=[],
        table_cleanup_interval=60.0,
    )
    wanted = {a.strip() for a in settings.agents.split(",") if a.strip()}
    unknown = wanted - {"ingest", "model"}
    if unknown or not wanted:
        raise ConfigError(
            f"STREAMPROC_AGENTS must name ingest and/or model, got {settings.agents!r}"
        )
    if "ingest" in wanted:
        register_ingest(app, settings)
    if "model" in wanted:
        from agents.model import register_model

        register_model(app, settings)
    return app
