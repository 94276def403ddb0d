"""Publish ViewingEvents to the input topic: schema-checked, idempotent, delivery-counted.

:class:`EventProducer` wraps a confluent-kafka ``Producer`` configured for no loss and no
producer-side duplicates (``enable.idempotence``, ``acks=all``), with a short linger to
batch. Events are checked against the ViewingEvent schema *before* anything is queued, so a
bad event raises :class:`~streamproc.emit.encode.SchemaViolationError` naming the field and
nothing is sent. Delivery reports are counted as they arrive (:attr:`delivered`,
:attr:`failed`, :attr:`errors`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException, Producer

from streamproc.config import OutputFormat, Settings
from streamproc.emit.encode import Encoder
from streamproc.errors import KafkaError
from streamproc.ingest.registry import confluent_header_for
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import KEY_PARTITIONER, client_config, wait_for_broker

__all__ = ["EventProducer"]

logger = logging.getLogger(__name__)

#: How long to serve delivery reports while waiting for room in a full local queue.
_QUEUE_FULL_POLL_S = 0.05


class EventProducer:
    """Send ViewingEvents (or pre-encoded records) to ``settings.topic_input``.

    Parameters
    ----------
    settings
        Bootstrap servers, topic, schemas, linger and the default format
        (``producer_format``).
    fmt
        ``avro`` or ``json``; default ``settings.producer_format``.
    topic
        Override of the destination topic.
    config
        Extra librdkafka settings (e.g. ``{"message.timeout.ms": 5000}``); they win over
        the defaults.

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> with EventProducer(settings) as producer:  # doctest: +SKIP
    ...     producer.send(make_viewing_event())
    >>> producer.delivered, producer.failed  # doctest: +SKIP
    (1, 0)
    """

    def __init__(
        self,
        settings: Settings,
        fmt: OutputFormat | None = None,
        *,
        topic: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.fmt: OutputFormat = fmt or settings.producer_format
        self.topic = topic or settings.topic_input
        version = load_schemas(settings.schemas_path).latest("ViewingEvent")
        # With a Schema Registry, Avro goes out in the Confluent wire format.
        header = confluent_header_for(settings, self.topic, version) if self.fmt == "avro" else None
        self.encoder = Encoder(version, self.fmt, header=header)
        extra: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": settings.producer_linger_ms,
            # Keys go where the workers' producer and Java clients put them (murmur2), so a
            # viewer's valid partition is the partition of its input records: each valid
            # partition is fed by one input partition, in publish order, whatever the
            # workers' fetches are (librdkafka's default, consistent_random, hashes with CRC32).
            "partitioner": KEY_PARTITIONER,
            # librdkafka's own log lines go through logging, not straight to stderr.
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        extra.update(config or {})
        self._producer = Producer(client_config(settings, **extra))
        self.sent = 0
        self.delivered = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"EventProducer(topic={self.topic!r}, fmt={self.fmt!r})"

    # -- connection -----------------------------------------------------------------------------

    def check_connection(self, timeout: float = 5.0) -> None:
        """Raise :class:`BrokerUnavailableError` unless a broker answers within ``timeout`` s."""
        wait_for_broker(self.settings, timeout)

    # -- sending --------------------------------------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> None:
        """Check ``event`` against the schema, encode it and queue it (key = user_id).

        Raises
        ------
        SchemaViolationError
            When the event does not fit the schema; nothing is queued.
        KafkaError
            When the client refuses the record outright (e.g. larger than
            ``message.max.bytes``).
        """
        value = self.encoder.encode(event)
        self.send_raw(str(event["user_id"]).encode(), value)

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Queue pre-encoded bytes as they are; waits for room when the local queue is full.

        Raises
        ------
        KafkaError
            When the client refuses the record outright.
        """
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, on_delivery=self._report)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(_QUEUE_FULL_POLL_S)
            except KafkaException as exc:
                raise KafkaError(
                    f"could not queue a {len(value)}-byte record for topic {self.topic!r}: "
                    f"{exc.args[0] if exc.args else exc}"
                ) from exc
        self.sent += 1
        self._producer.poll(0)

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return int(self._producer.poll(timeout))

    @property
    def pending(self) -> int:
        """Records queued or in flight, without a delivery report yet."""
        # Not len(producer): that also counts queued log lines and other client events.
        return self.sent - self.delivered - self.failed

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to ``timeout`` s for every delivery report; return the failure count.

        Failures are the records reported as failed so far plus those still without a report
        when the timeout ran out.
        """
        self._producer.flush(timeout)
        undelivered = self.pending
        if undelivered:
            logger.warning(
                "%d records still undelivered to %s after %.1f s", undelivered, self.topic, timeout
            )
        return self.failed + undelivered

    def _report(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        name = err.name() if hasattr(err, "name") else type(err).__name__
        self.errors[name] += 1
        self.last_error = str(err)
        if self.failed == 1 or self.failed % 1000 == 0:
            logger.warning("delivery to %s failed (%d so far): %s", self.topic, self.failed, err)

    # -- context manager ------------------------------------------------------------------------

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()
