"""create_app(settings) -> faust.App: the only place a faust.App is built."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.types import ProducerT, TransportT
from prometheus_client import CollectorRegistry

from agents.batches import BatchTopic
from agents.credentials import broker_credentials
from agents.monitor import QuietMonitor
from agents.observe import attach_observability
from agents.recovery import SeekFirstTableManager
from agents.transport import WorkerTransport
from streamproc.config import Settings
from streamproc.emit.sender import RecordSender
from streamproc.errors import ConfigError
from streamproc.ingest.dedupe import Deduplicator
from streamproc.metrics import StreamprocMetrics

__all__ = ["BATCHES_QUEUED", "WorkerApp", "create_app"]

#: Batches (one partition's records of one fetch each) a batch topic's channel holds.
BATCHES_QUEUED = 4


class _FlushingProducer(AIOKafkaProducer):
    """Faust's producer, whose flush first waits for the app's :class:`RecordSender`.

    Faust flushes its producer right before it commits input offsets (and the model agent
    before each snapshot): so no offset is committed, nor snapshot written, ahead of the
    output records produced for it.
    """

    def __init__(self, transport: Any, sender: RecordSender, **kwargs: Any) -> None:
        super().__init__(transport, **kwargs)
        self.sender = sender

    async def flush(self) -> None:
        await self.sender.flush()
        await super().flush()


class WorkerApp(faust.App):
    """faust.App whose agents write their output through one :class:`RecordSender`."""

    settings: Settings

    #: Topics whose records the consumer hands on a fetch at a time (:mod:`agents.batches`).
    batch_topics: set[str]

    #: The ingest agent's de-duplicator (its ids are the de-duplication table's, recovered
    #: from the table's changelog); None when this worker runs no ingest agent.
    deduplicator: Deduplicator | None = None

    def batch_topic(self, name: str) -> BatchTopic:
        """A :class:`BatchTopic` of raw records, read a fetch at a time by its agent.

        Its channel holds at most :data:`BATCHES_QUEUED` batches: with the batch being
        processed and aiokafka's prefetched records, that bounds what a worker holds.
        """
        self.batch_topics.add(name)
        return BatchTopic(
            self,
            topics=[name],
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            maxsize=BATCHES_QUEUED,
        )

    @cached_property
    def sender(self) -> RecordSender:
        """The output producer, built on first use (an app that never runs never connects)."""
        return RecordSender(self.settings)

    def _new_producer(self) -> ProducerT:
        return _FlushingProducer(self.transport, self.sender, loop=self.loop, beacon=self.beacon)

    def _new_transport(self) -> TransportT:
        return WorkerTransport(self.conf.broker_consumer, self)

    def _create_directories(self) -> None:
        """Create nothing: the ``memory://`` table store keeps nothing on disk.

        Faust would otherwise create ``<app id>-data/v1/tables`` in the working directory at
        every start, one empty tree per app id.
        """


def create_app(settings: Settings, metrics: StreamprocMetrics | None = None) -> WorkerApp:
    """Build the Faust app with its topics and agents, configured from ``settings``.

    The app is created per call (no module-level app), so tests and the CLI can build apps
    with different settings in one process; each gets its own metrics registry unless
    ``metrics`` is given. The metrics are at ``app.metrics``.
    """
    from agents.ingest import register_ingest

    servers = ";".join(f"kafka://{s}" for s in settings.bootstrap_servers.split(","))
    app = WorkerApp(
        settings.app_id,
        broker=servers,
        # TLS and SASL from the same settings as the confluent-kafka clients.
        broker_credentials=broker_credentials(settings),
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1,
        # Bytes per partition per fetch; a fetch reaches the agents whole (agents.batches).
        consumer_max_fetch_size=settings.consumer_partition_fetch_bytes,
        # Records handed on per fetch, all partitions together (agents.batches).
        broker_max_poll_records=settings.batch_size or None,
        broker_commit_interval=1.0,
        # Commit on the interval only. Faust also commits from its fetch loop after this many
        # acknowledged offsets, and that commit (which first waits for every output record to
        # be acknowledged) holds the loop: with batches, every 10,000 (the default) came
        # several times a second and stalled both agents' input.
        broker_commit_every=1 << 40,
        # A crashed worker's partitions move to the others within seconds, not a minute.
        broker_session_timeout=settings.consumer_session_timeout_ms / 1000,
        broker_heartbeat_interval=min(3.0, settings.consumer_session_timeout_ms / 3000),
        web_enabled=False,
        # The worker sets up logging itself; keep Faust's per-event logging off.
        loghandlers=[],
        table_cleanup_interval=60.0,
        # Seek input partitions before resuming them after table recovery (see the module).
        TableManager=SeekFirstTableManager,
        # No per-record statistics for Faust's web views, which the worker does not serve.
        Monitor=QuietMonitor,
    )
    app.settings = settings
    app.batch_topics = set()
    wanted = {a.strip() for a in settings.agents.split(",") if a.strip()}
    unknown = wanted - {"ingest", "model"}
    if unknown or not wanted:
        raise ConfigError(
            f"STREAMPROC_AGENTS must name ingest and/or model, got {settings.agents!r}"
        )
    metrics = metrics or StreamprocMetrics.create(CollectorRegistry())
    app.metrics = metrics  # type: ignore[attr-defined]
    consumed: list[str] = []
    if "ingest" in wanted:
        register_ingest(app, settings, metrics)
        consumed.append(settings.topic_input)
    if "model" in wanted:
        from agents.model import register_model

        register_model(app, settings, metrics)
        consumed.append(settings.topic_valid)
    attach_observability(app, settings, metrics, consumed)
    return app
