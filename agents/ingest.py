"""Ingest agent: viewing-events -> viewing-events-valid | viewing-events-dlq (| duplicate)."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from streamproc.config import Settings
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import IngestProcessor
from streamproc.ingest.registry import registry_lookup_for
from streamproc.ingest.schemas import load_schemas

__all__ = ["IngestCounters", "register_ingest"]

logger = logging.getLogger(__name__)


class IngestCounters:
    """Running totals of one worker (exported as metrics; read by tests and the demo)."""

    def __init__(self) -> None:
        self.valid = 0
        self.dead = 0
        self.duplicates = 0
        self.by_reason: dict[str, int] = {}


def register_ingest(app: faust.App, settings: Settings) -> IngestCounters:
    """Declare the ingest agent, its topics and its de-duplication table on ``app``."""
    schemas = load_schemas(settings.schemas_path)
    input_topic = app.topic(settings.topic_input, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")
    valid_topic = app.topic(settings.topic_valid, key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    # Changelog records are written with the table's own serializers (JSON keys and values),
    # the ones Faust uses to read the changelog back when it recovers the table.
    seen = app.Table(
        "ingest-seen-event-ids",
        partitions=settings.partitions,
        help="event_id -> [partition, offset, seen_at_ms] of the record that first carried it",
    )

    def persist(partition: int, event_id: str, value: list[int] | None) -> None:
        # The agent works on batches, so Faust's "current event" is not the event whose id
        # is stored: name the changelog partition (= source partition) explicitly.
        if value is None:  # a tombstone, as Faust writes for a deleted key
            seen.send_changelog(partition, event_id, None, value_serializer="raw")
        else:
            seen.send_changelog(partition, event_id, value)

    dedupe = Deduplicator(int(settings.dedupe_window_s * 1000), seen.data, persist)
    processor = IngestProcessor(
        settings, schemas, dedupe, registry_lookup=registry_lookup_for(settings)
    )
    counters = IngestCounters()
    app.ingest_counters = counters  # type: ignore[attr-defined]

    async def ingest(stream: faust.StreamT[Any]) -> None:
        """Validate viewing events; dead-letter the bad, drop duplicates."""
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            now_ms = int(time.time() * 1000)
            for event in events:
                msg = event.message
                outcome = processor.process(
                    msg.value, msg.key, msg.topic, msg.partition, msg.offset,
                    int(msg.timestamp * 1000) if msg.timestamp else None, now_ms,
                )
                if outcome.kind == "valid":
                    counters.valid += 1
                    await valid_topic.send(
                        key=outcome.key, value=outcome.value, headers=outcome.headers
                    )
                elif outcome.kind == "dead":
                    counters.dead += 1
                    reason = outcome.reason or "unknown"
                    counters.by_reason[reason] = counters.by_reason.get(reason, 0) + 1
                    logger.debug("dead-lettered %s", outcome.message)
                    await dlq_topic.send(
                        key=outcome.key, value=outcome.value, headers=outcome.headers
                    )
                else:
                    counters.duplicates += 1

    app.agent(input_topic, name="ingest")(ingest)

    @app.timer(interval=max(10.0, settings.dedupe_window_s / 10))
    async def purge_seen() -> None:
        """Forget event ids older than the de-duplication window."""
        removed = dedupe.purge(now_ms=int(time.time() * 1000))
        if removed:
            logger.info("forgot %d event ids older than %.0f s", removed, settings.dedupe_window_s)

    return counters
