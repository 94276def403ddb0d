"""Run the Faust worker for an app built from settings."""

from __future__ import annotations

import logging

from faust import Worker

from agents.app import create_app
from streamproc.config import Settings
from streamproc.kafka.clients import wait_for_broker

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Start a worker and block until it is stopped (SIGINT/SIGTERM)."""
    wait_for_broker(settings, timeout=30.0)
    app = create_app(settings)
    server = getattr(app, "status_server", None)
    if server is not None:
        server.start()
        logger.info("metrics and status at %s", server.url)
    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if server is not None:
            server.stop()
