"""The worker's consumer waits STREAMPROC_CONSUMER_FETCH_WAIT_MS, not Faust's fixed 1,500 ms."""

from __future__ import annotations

import asyncio

from agents.app import create_app
from agents.transport import FetchWaitTransport
from streamproc.config import Settings


def test_the_worker_consumer_gets_the_fetch_wait_of_the_settings(settings: Settings) -> None:
    async def built() -> tuple[object, int]:
        app = create_app(
            settings.model_copy(update={"agents": "ingest", "consumer_fetch_wait_ms": 77})
        )
        consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
        try:
            return app.transport, consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    transport, wait_ms = asyncio.run(built())
    assert isinstance(transport, FetchWaitTransport)
    assert wait_ms == 77
