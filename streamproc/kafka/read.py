"""Read a topic from the beginning up to its current end (for audits, the DLQ tools and tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import KafkaException as _KafkaException

from streamproc.config import Settings
from streamproc.errors import AuthorizationError, BrokerUnavailableError, KafkaError
from streamproc.kafka.clients import client_config
from streamproc.kafka.security import ACL_HINT, describe_security

__all__ = ["Record", "read_to_end"]


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]  # a header's value may be null

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def read_to_end(settings: Settings, topic: str, *, timeout: float = 60.0) -> Iterator[Record]:
    """Every record of ``topic`` from each partition's start to its end as of the call.

    Uses manual assignment (no consumer group, nothing committed).

    Raises
    ------
    BrokerUnavailableError
        If the cluster does not answer.
    AuthorizationError
        If the ACLs do not let the user describe the topic.
    KafkaError
        If the topic does not exist or the end is not reached within ``timeout`` seconds.
    """
    config = client_config(
        settings,
        **{
            "group.id": "streamproc-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
        },
    )
    consumer = Consumer(config)
    try:
        try:
            meta = consumer.list_topics(topic, timeout=10.0)
        except _KafkaException as exc:
            raise BrokerUnavailableError(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}; is it running "
                "(streamproc kafka start)?"
            ) from exc
        tmeta = meta.topics.get(topic)
        if (
            tmeta is not None
            and tmeta.error is not None
            and (tmeta.error.code() == _RdKafkaError.TOPIC_AUTHORIZATION_FAILED)
        ):
            raise AuthorizationError(
                f"reading topic {topic!r} on {settings.bootstrap_servers} was refused to "
                f"{describe_security(settings)}: {tmeta.error.str()}; {ACL_HINT}"
            )
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise KafkaError(
                f"topic {topic!r} does not exist on {settings.bootstrap_servers}; "
                "create the topics with `streamproc topics create`"
            )
        ends: dict[int, int] = {}
        assignment = []
        for partition in sorted(tmeta.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10.0
            )
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        if not assignment:
            return
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        remaining = dict(ends)
        while remaining:
            if time.monotonic() > deadline:
                raise KafkaError(
                    f"reading {topic!r} did not reach its end within {timeout:.0f} s "
                    f"(partitions left: {sorted(remaining)})"
                )
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    continue
                partition = msg.partition()
                offset = msg.offset()
                if partition is None or offset is None:  # set on every consumed message
                    continue
                end = remaining.get(partition)
                if end is None or offset >= end:
                    continue
                ts_type, ts = msg.timestamp()
                yield Record(
                    topic,
                    partition,
                    offset,
                    ts if ts_type else None,
                    msg.key(),
                    msg.value(),
                    # A consumed message's headers are a list (never a dict) of pairs.
                    tuple(cast("list[tuple[str, bytes | None]]", msg.headers() or [])),
                )
                if offset + 1 >= end:
                    del remaining[partition]
            # Control records (transaction markers) occupy offsets too: stop at the position.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(remaining)]):
                if tp.offset >= 0 and tp.offset >= remaining.get(tp.partition, 1 << 62):
                    remaining.pop(tp.partition, None)
    finally:
        consumer.close()
