"""Faust's aiokafka transport with the consumer's fetch wait taken from the settings.

Faust 0.15 builds its worker consumer with ``fetch_max_wait_ms=1500``, fixed. aiokafka keeps
one fetch request in flight per broker: while one waits for records of some partitions,
records of partitions it does not cover wait too, for up to that long. The worker sets it from
``STREAMPROC_CONSUMER_FETCH_WAIT_MS`` instead; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as driver

from streamproc.config import Settings

__all__ = ["FetchWaitTransport"]


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        settings: Settings = self.app.settings  # type: ignore[attr-defined]  # a WorkerApp
        consumer._fetch_max_wait_ms = settings.consumer_fetch_wait_ms
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchWaitTransport(driver.Transport):
    """The aiokafka transport whose worker consumer waits ``consumer_fetch_wait_ms``."""

    Consumer = _Consumer
