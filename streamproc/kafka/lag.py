"""Consumer lag per group, topic and partition: log-end offset minus committed offset.

The figures come from the broker (committed offsets of the group, latest offsets of the
partitions), the same sources Apache Kafka's ``kafka-consumer-groups --describe`` uses, so
both agree. Lag in seconds is the age of the oldest unprocessed record: the timestamp of the
record at the committed offset, read with a throw-away consumer.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streamproc.config import Settings
from streamproc.errors import BrokerUnavailableError, KafkaError
from streamproc.kafka.clients import client_config, quiet_client_logger

__all__ = ["LagClients", "PartitionLag", "consumer_lag", "list_groups"]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """Lag of one group on one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    log_end: int
    lag: int  # log_end - committed (log_end - log_start when never committed)
    lag_seconds: float | None  # age of the oldest unprocessed record, when known
    member: str | None  # consumer id that owns the partition now, if any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings), logger=quiet_client_logger())


class LagClients:
    """The offsets consumer of repeated lag measurements, kept open (a worker's monitor).

    A one-off measurement (``streamproc lag``) opens its clients and drops them. A worker
    measures every few seconds for as long as it runs: it keeps one consumer, so a
    measurement costs requests, not new connections, and it never opens an admin client (the
    admin client's offset and group requests have crashed the process inside librdkafka 2.16
    while the broker restarted). Hold :attr:`lock` while measuring; :meth:`close` waits for it.
    """

    def __init__(self, settings: Settings, group: str) -> None:
        self.settings = settings
        self.group = group
        self.lock = threading.Lock()
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = _offsets_consumer(self.settings, self.group)
        return self._consumer

    def close(self) -> None:
        """Close the consumer (after the measurement in progress, if any)."""
        with self.lock:
            if self._consumer is not None:
                self._consumer.close()
            self._consumer = None


def list_groups(settings: Settings, *, timeout: float = 10.0) -> list[str]:
    """Ids of the consumer groups on the cluster."""
    admin = _admin(settings)
    try:
        result = admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout + 5)
    except (KafkaException, concurrent.futures.TimeoutError) as exc:
        raise BrokerUnavailableError(
            f"cannot list consumer groups at {settings.bootstrap_servers}: {exc}"
        ) from exc
    return sorted(g.group_id for g in result.valid)


def consumer_lag(
    settings: Settings,
    group: str,
    *,
    topics: list[str] | None = None,
    with_seconds: bool = True,
    timeout: float = 10.0,
    clients: LagClients | None = None,
) -> list[PartitionLag]:
    """Lag of ``group`` on every partition it has committed on (or of ``topics``, if given).

    ``clients``: a worker's kept-open consumer (see :class:`LagClients`; ``topics`` needed).
    The measurement then asks that consumer only and leaves ``member`` unset: the worker
    knows its own partitions.
    """
    if clients is not None:
        if topics is None:
            raise ValueError("consumer_lag(clients=...) needs the topics")
        return _lag_from_consumer(settings, group, topics, with_seconds, timeout, clients)
    admin = _admin(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            described = admin.describe_consumer_groups([group], request_timeout=timeout)[
                group
            ].result(timeout=timeout + 5)
            break
        except concurrent.futures.TimeoutError as exc:
            # librdkafka has been seen to leave this future unresolved: ask again.
            if time.monotonic() > deadline:
                raise KafkaError(f"describing group {group!r} timed out") from exc
            admin = _admin(settings)
            continue
        except KafkaException as exc:
            # A coordinator that moves or is still loading answers with a retriable error.
            retriable = exc.args and getattr(exc.args[0], "retriable", lambda: False)()
            if not retriable or time.monotonic() > deadline:
                raise KafkaError(f"cannot describe group {group!r}: {exc}") from exc
            time.sleep(0.2)
    owners: dict[tuple[str, int], str] = {}
    for member in described.members or []:
        assignment = member.assignment
        for tp in (assignment.topic_partitions if assignment else None) or []:
            owners[(tp.topic, tp.partition)] = member.member_id

    metadata = admin.list_topics(timeout=timeout)
    if topics is None:
        # The topics the members own now, plus those the group committed on: a group whose
        # consumers are all gone (stopped or crashed workers, when lag matters most) has no
        # members, and kafka-consumer-groups --describe still lists its committed offsets.
        # Faust reads its internal topics (table changelogs, the assignor's leader topic)
        # without committing offsets: their "lag" would be the whole topic, so leave them out.
        candidates = [
            (name, p)
            for name, tmeta in metadata.topics.items()
            if not name.startswith("__") and tmeta.error is None
            for p in tmeta.partitions
        ]
        committed_on = {t for t, _ in _committed(settings, group, candidates, timeout)}
        topics = sorted(
            {t for t in {t for t, _ in owners} | committed_on if not _is_faust_internal(t)}
        )
    partitions = _partitions_of(metadata, topics)
    committed = _committed(settings, group, partitions, timeout)

    wanted = set(partitions)
    if not wanted:
        return []
    specs = {TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted}
    starts_spec = {TopicPartition(t, p): OffsetSpec.earliest() for t, p in wanted}
    try:
        ends = {
            (tp.topic, tp.partition): f.result(timeout=timeout + 5).offset
            for tp, f in admin.list_offsets(specs, request_timeout=timeout).items()
        }
        starts = {
            (tp.topic, tp.partition): f.result(timeout=timeout + 5).offset
            for tp, f in admin.list_offsets(starts_spec, request_timeout=timeout).items()
        }
    except (KafkaException, concurrent.futures.TimeoutError) as exc:
        raise KafkaError(f"cannot read the log-end offsets: {exc}") from exc

    return _rows(settings, group, wanted, committed, starts, ends, owners, with_seconds, timeout)


def _lag_from_consumer(
    settings: Settings,
    group: str,
    topics: list[str],
    with_seconds: bool,
    timeout: float,
    clients: LagClients,
) -> list[PartitionLag]:
    """:func:`consumer_lag` through the kept-open consumer: metadata, commits, watermarks."""
    consumer = clients.consumer
    try:
        partitions = _partitions_of(consumer.list_topics(timeout=timeout), topics)
        committed = _committed_by(consumer, group, partitions, timeout)
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for topic, partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
            starts[(topic, partition)], ends[(topic, partition)] = low, high
    except KafkaException as exc:
        raise KafkaError(f"cannot read the offsets of group {group!r}: {exc}") from exc
    return _rows(
        settings, group, set(partitions), committed, starts, ends, {}, with_seconds, timeout
    )


def _rows(
    settings: Settings,
    group: str,
    wanted: set[tuple[str, int]],
    committed: dict[tuple[str, int], int],
    starts: dict[tuple[str, int], int],
    ends: dict[tuple[str, int], int],
    owners: dict[tuple[str, int], str],
    with_seconds: bool,
    timeout: float,
) -> list[PartitionLag]:
    ages: dict[tuple[str, int], float] = {}
    if with_seconds:
        behind = {
            k: committed.get(k, starts[k]) for k in wanted if committed.get(k, starts[k]) < ends[k]
        }
        ages = _record_ages(settings, behind, timeout)

    rows = []
    for topic, partition in sorted(wanted):
        key = (topic, partition)
        done = committed.get(key)
        lag = ends[key] - (done if done is not None else starts[key])
        rows.append(
            PartitionLag(
                group,
                topic,
                partition,
                done,
                ends[key],
                max(lag, 0),
                (0.0 if lag <= 0 else ages.get(key)) if with_seconds else None,
                owners.get(key),
            )
        )
    return rows


def _is_faust_internal(topic: str) -> bool:
    return topic.endswith("-changelog") or "__assignor-__leader" in topic


def _offsets_consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        client_config(
            settings,
            **{"group.id": group, "enable.auto.commit": False, "enable.partition.eof": False},
        ),
        logger=quiet_client_logger(),
    )


def _partitions_of(metadata: Any, topics: list[str]) -> list[tuple[str, int]]:
    """Every ``(topic, partition)`` of ``topics`` in cluster ``metadata``."""
    partitions: list[tuple[str, int]] = []
    for topic in topics:
        tmeta = metadata.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            raise KafkaError(f"topic {topic!r} does not exist")
        partitions.extend((topic, p) for p in sorted(tmeta.partitions))
    return partitions


def _committed(
    settings: Settings, group: str, partitions: list[tuple[str, int]], timeout: float
) -> dict[tuple[str, int], int]:
    """Committed offsets of ``group``, fetched by a consumer carrying the group id.

    A consumer that never subscribes does not join the group; it only asks the coordinator.
    AdminClient.list_consumer_group_offsets is not used: librdkafka crashes (SIGSEGV) when
    that request meets NOT_COORDINATOR, e.g. while a new broker loads its offsets topic
    (confluentinc/librdkafka#5040); the consumer path handles the same error and retries.
    """
    if not partitions:
        return {}
    consumer = _offsets_consumer(settings, group)
    try:
        return _committed_by(consumer, group, partitions, timeout)
    finally:
        consumer.close()


def _committed_by(
    consumer: Consumer, group: str, partitions: list[tuple[str, int]], timeout: float
) -> dict[tuple[str, int], int]:
    try:
        result = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout)
    except KafkaException as exc:
        raise KafkaError(f"cannot read the committed offsets of group {group!r}: {exc}") from exc
    return {
        (tp.topic, tp.partition): tp.offset for tp in result if tp.error is None and tp.offset >= 0
    }


def _record_ages(
    settings: Settings, positions: dict[tuple[str, int], int], timeout: float
) -> dict[tuple[str, int], float]:
    """Age in seconds of the record at each (topic, partition) position."""
    if not positions:
        return {}
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": "streamproc-lag-probe",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            },
        )
    )
    ages: dict[tuple[str, int], float] = {}
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in positions.items()])
        deadline = time.monotonic() + timeout
        while len(ages) < len(positions) and time.monotonic() < deadline:
            for msg in consumer.consume(len(positions), 0.2):
                topic, partition = msg.topic(), msg.partition()
                if msg.error() is not None or topic is None or partition is None:
                    continue
                key = (topic, partition)
                if key in ages:
                    continue
                ts_type, ts = msg.timestamp()
                if ts_type and ts > 0:
                    ages[key] = max(0.0, time.time() - ts / 1000.0)
                consumer.pause([TopicPartition(key[0], key[1])])
    finally:
        consumer.close()
    return ages
