"""The dead-letter topic: summarise it, and replay letters into the input topic after a fix.

A replayed letter is its original payload and key, byte for byte, so it keeps its event_id;
it goes through decoding and validation again like any new record. A header
``streamproc-replay-of: <dlq topic>:<partition>:<offset>`` marks where it came from.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record
from streamproc.errors import KafkaError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import KEY_PARTITIONER, client_config
from streamproc.kafka.read import read_to_end

__all__ = ["DlqSummary", "inspect_dlq", "replay_dlq"]

logger = logging.getLogger(__name__)

HEADER_REPLAY = "streamproc-replay-of"


@dataclass
class DlqSummary:
    """Dead letters by reason, with a few samples of each."""

    total: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _matches(reason: str, wanted: str | None) -> bool:
    # "rule_violation" selects every rule_violation:<rule>; a full code selects just it.
    return wanted is None or reason == wanted or reason.startswith(wanted + ":")


def inspect_dlq(settings: Settings, *, samples: int = 3, reason: str | None = None) -> DlqSummary:
    """Count dead letters by reason and keep up to ``samples`` of each."""
    schemas = load_schemas(settings.schemas_path)
    summary = DlqSummary()
    for rec in read_to_end(settings, settings.topic_dlq):
        _, letter = decode_record(rec.value or b"", schemas)
        why = str(letter["reason"])
        if not _matches(why, reason):
            continue
        summary.total += 1
        summary.by_reason[why] += 1
        kept = summary.samples.setdefault(why, [])
        if len(kept) < samples:
            kept.append(
                {
                    "source": f"{letter['source_topic']}[{letter['source_partition']}]"
                    f"@{letter['source_offset']}",
                    "event_id": letter.get("event_id"),
                    "message": letter["message"],
                    "payload_bytes": len(letter["payload"]),
                }
            )
    return summary


def replay_dlq(
    settings: Settings, *, reason: str | None = None, dry_run: bool = False
) -> tuple[int, Counter[str]]:
    """Re-inject dead letters (optionally only ``reason``) into the input topic.

    Returns
    -------
    (count, by_reason)
        How many letters were (or, with ``dry_run``, would be) replayed.
    """
    from confluent_kafka import Producer

    schemas = load_schemas(settings.schemas_path)
    producer = (
        None
        if dry_run
        else Producer(
            client_config(
                settings,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    # As EventProducer: a viewer's records on the partition murmur2 gives.
                    "partitioner": KEY_PARTITIONER,
                },
            )
        )
    )
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    by_reason: Counter[str] = Counter()
    for rec in read_to_end(settings, settings.topic_dlq):
        _, letter = decode_record(rec.value or b"", schemas)
        why = str(letter["reason"])
        if not _matches(why, reason):
            continue
        count += 1
        by_reason[why] += 1
        if producer is not None:
            origin = f"{rec.topic}:{rec.partition}:{rec.offset}".encode()
            while True:
                try:
                    producer.produce(
                        settings.topic_input,
                        value=letter["payload"],
                        key=letter.get("key"),
                        headers=[(HEADER_REPLAY, origin)],
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
    if producer is not None:
        left = producer.flush(30.0)
        if left or failures:
            raise KafkaError(
                f"replay incomplete: {left} letters not delivered, {len(failures)} failed"
                + (f" (first error: {failures[0]})" if failures else "")
            )
    return count, by_reason
