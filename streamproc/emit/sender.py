"""RecordSender: the worker's output records, through one confluent-kafka producer.

The agents hand every record they write (valid events, dead letters, predictions, drift
signals, snapshots, de-duplication changelog) to :meth:`RecordSender.send`, which queues it in
librdkafka and returns at once; librdkafka batches and sends from its own thread. Faust's own
``topic.send`` costs about 20 times more per record in the worker's event loop (see
``benchmarks/README.md``), and the workers write more than two records per input event.

At-least-once depends on one rule: an input offset is committed only after every record
produced for it is acknowledged. :meth:`flush` waits for that, and the worker's Faust producer
calls it before each commit (``agents.app``). A record the broker refused for good (after
librdkafka's retries, within ``delivery.timeout.ms``) makes the next :meth:`poll` or
:meth:`flush` raise :class:`DeliveryError`, so the offset is not committed and the worker
stops: on restart the input is read again from the last commit.

Keys are partitioned with the murmur2 hash Java clients and aiokafka use
(``partitioner=murmur2_random``), so a key lands on the same partition whichever client wrote
it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import Producer

from streamproc.config import Settings
from streamproc.errors import KafkaError
from streamproc.kafka.clients import KEY_PARTITIONER, client_config
from streamproc.kafka.security import redact
from streamproc.kafka.topics import SNAPSHOT_MAX_MESSAGE_BYTES

__all__ = ["DeliveryError", "RecordSender"]

logger = logging.getLogger(__name__)


class DeliveryError(KafkaError):
    """The broker did not acknowledge an output record; its input must not be committed."""


class RecordSender:
    """Queue output records on a confluent-kafka producer; flush before offsets are committed.

    Parameters
    ----------
    settings
        Connection, TLS/SASL and ``producer_linger_ms``.
    flush_timeout_s
        How long :meth:`flush` waits for outstanding acknowledgements before it raises.
    producer_factory
        Builds the producer from its configuration (tests pass a stand-in).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        flush_timeout_s: float = 60.0,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self.settings = settings
        self.flush_timeout_s = flush_timeout_s
        self.failures: list[str] = []
        config = client_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": settings.producer_linger_ms,
                "partitioner": KEY_PARTITIONER,
                # librdkafka refuses records above 1,000,000 bytes by default; a partition's
                # snapshot may be larger, up to the snapshot topic's max.message.bytes. The
                # other topics keep the broker's default limit.
                "message.max.bytes": SNAPSHOT_MAX_MESSAGE_BYTES + 64 * 1024,
                # A delivery report for every record: flush() counts them (see there).
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                "logger": logger,
            },
        )
        self._producer = producer_factory(config)
        self._produce = self._producer.produce
        self._produced = 0  # records queued so far
        self._reported = 0  # delivery reports received so far (acknowledged or failed)

    def _on_delivery(self, err: _RdKafkaError | None, msg: Any) -> None:
        self._reported += 1
        if err is not None:
            where = f"{msg.topic()}[{msg.partition()}]" if msg is not None else "?"
            self.failures.append(f"{where}: {redact(err.str(), self.settings)}")

    def _on_error(self, err: _RdKafkaError) -> None:
        # librdkafka retries connection errors itself; a fatal error (e.g. the idempotent
        # producer's sequence lost) ends the producer, so it fails every later delivery.
        text = redact(err.str(), self.settings)
        if err.fatal():
            self.failures.append(f"fatal producer error: {text}")
        logger.warning("output producer: %s", text)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int = -1,
        timestamp_ms: int = 0,
    ) -> None:
        """Queue one record (``partition=-1``: by key; ``timestamp_ms=0``: now)."""
        while True:
            try:
                self._produce(
                    topic,
                    value,
                    key,
                    partition=partition,
                    timestamp=timestamp_ms,
                    headers=headers,
                )
                self._produced += 1
                return
            except BufferError:
                # The local queue is full: wait for the broker to take some (backpressure).
                self._producer.poll(0.05)

    def poll(self) -> None:
        """Serve delivery reports; raise :class:`DeliveryError` if a record was refused."""
        self._producer.poll(0)
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self.failures:
            first = self.failures[0]
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            raise DeliveryError(
                f"Kafka at {self.settings.bootstrap_servers} did not acknowledge an output "
                f"record: {first}{more}; the input offsets stay uncommitted and are read again "
                "after a restart"
            )

    def pending(self) -> int:
        """Records queued or in flight, not yet acknowledged."""
        return len(self._producer)

    async def flush(self) -> None:
        """Wait until every record queued so far is acknowledged; records queued meanwhile
        are not waited for.

        librdkafka's own flush waits until its queue is empty, and the agents keep queueing
        while a flush waits: under sustained load it did not return for as long as records
        kept coming, and no offset was committed meanwhile. This counts delivery reports
        instead (served by polling here, on the event loop, every 2 ms).

        Raises
        ------
        DeliveryError
            A record was refused, or acknowledgements did not all arrive within
            ``flush_timeout_s``.
        """
        target = self._produced
        if self._reported < target:
            started = time.monotonic()
            poll = self._producer.poll
            while True:
                poll(0)
                if self._reported >= target:
                    break
                if time.monotonic() - started > self.flush_timeout_s:
                    self.raise_if_failed()
                    raise DeliveryError(
                        f"{target - self._reported} output record(s) not acknowledged by "
                        f"Kafka at {self.settings.bootstrap_servers} within "
                        f"{self.flush_timeout_s:g} s; the input offsets stay uncommitted"
                    )
                await asyncio.sleep(0.002)
        self.raise_if_failed()

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush what is left (blocking); return the number of records still unacknowledged."""
        left: int = self._producer.flush(timeout_s)
        if left:
            logger.warning("%d output record(s) not acknowledged at close", left)
        return left
