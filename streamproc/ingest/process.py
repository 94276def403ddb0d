"""One input record -> its outcome: a valid canonical event, a dead letter, or a duplicate.

No Kafka here: the ingest agent feeds records in and sends what comes out. Detection raises
typed errors (decode, schema, rule); the policy (dead-letter and go on) lives here, in one
place, so that no input of any shape escapes as an exception.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Literal

from streamproc.config import Settings
from streamproc.emit.encode import SINGLE_OBJECT_MARKER, Encoder
from streamproc.errors import EventError
from streamproc.ingest.decode import EventDecoder, SchemaLookup
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.schemas import SchemaSet
from streamproc.ingest.validate import QualityRules, check_event
from streamproc.records import DeadLetter

__all__ = [
    "HEADER_SOURCE",
    "HEADER_WRITER",
    "IngestOutcome",
    "IngestProcessor",
    "build_dead_letter",
    "parse_source_header",
    "sniff_event_id",
]

logger = logging.getLogger(__name__)

#: Header on each valid record: the input record it came from, ``topic:partition:offset``.
HEADER_SOURCE = "streamproc-source"
#: Header on each valid record: the writer schema fingerprint (hex) of the input record.
HEADER_WRITER = "streamproc-writer-fp"

_JSON_EVENT_ID = re.compile(rb'"event_id"\s*:\s*"([^"\\]{1,128})"')


@dataclass(slots=True)
class IngestOutcome:
    """What became of one input record."""

    kind: Literal["valid", "dead", "duplicate"]
    key: bytes | None
    value: bytes | None  # canonical event (valid) or DeadLetter (dead); None for duplicates
    headers: list[tuple[str, bytes]]
    event_id: str | None
    reason: str | None = None
    message: str | None = None


def sniff_event_id(raw: bytes) -> str | None:
    """Best-effort event_id of a record that failed to decode (for matching dead letters).

    >>> sniff_event_id(b'{"event_id": "e-42", "user_id": 7')
    'e-42'
    >>> sniff_event_id(bytes.fromhex("c301") + bytes(8) + bytes([8]) + b"e-42")
    'e-42'
    """
    if raw[:2] == b"\xc3\x01" and len(raw) > 11:
        length = raw[10]
        if length & 0x80 == 0:  # one-byte zigzag varint: ids up to 63 bytes
            n = length >> 1
            if 0 < n <= 63 and len(raw) >= 11 + n:
                try:
                    return raw[11 : 11 + n].decode("utf-8")
                except UnicodeDecodeError:
                    return None
        return None
    match = _JSON_EVENT_ID.search(raw[:4096])
    if match:
        try:
            return match.group(1).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def parse_source_header(value: bytes) -> tuple[str, int, int]:
    """``b"topic:3:1207"`` -> ``("topic", 3, 1207)``."""
    topic, partition, offset = value.decode().rsplit(":", 2)
    return topic, int(partition), int(offset)


class IngestProcessor:
    """Decode, validate and de-duplicate input records; build valid and dead-letter records.

    Parameters
    ----------
    settings
        Thresholds, formats and topic names.
    schemas
        Known schema versions.
    dedupe
        The de-duplication state (see :class:`Deduplicator`).
    registry_lookup
        Confluent Schema Registry id -> schema, when a registry is configured.
    """

    def __init__(
        self,
        settings: Settings,
        schemas: SchemaSet,
        dedupe: Deduplicator,
        *,
        registry_lookup: SchemaLookup | None = None,
    ) -> None:
        self.settings = settings
        self.decoder = EventDecoder(
            schemas, max_bytes=settings.max_message_bytes, registry_lookup=registry_lookup
        )
        self.rules = QualityRules.from_settings(settings)
        self.dedupe = dedupe
        self.valid_encoder = Encoder.for_record(
            schemas, "ViewingEvent", settings.output_format, check=False
        )
        # A record already in the output's encoding (single-object Avro of the latest
        # ViewingEvent) is passed on byte for byte: decoding it checked that it is exactly one
        # complete record of that schema, and validation does not change events.
        self._same_encoding = (
            SINGLE_OBJECT_MARKER + self.valid_encoder.version.fingerprint
            if settings.output_format == "avro"
            else None
        )
        self.dead_encoder = Encoder.for_record(
            schemas, "DeadLetter", settings.output_format, check=False
        )
        self.worker_id = _WORKER_ID

    def process(
        self,
        raw: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        now_ms: int | None = None,
    ) -> IngestOutcome:
        """The outcome of one input record; never raises for bad input."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        raw = raw if raw is not None else b""
        source = f"{topic}:{partition}:{offset}"
        try:
            decoded = self.decoder.decode(raw)
            event = decoded.event
            check_event(event, self.rules, now)
        except EventError as exc:
            exc.at(f"{topic}[{partition}]@{offset}")
            return self._dead(raw, key, topic, partition, offset, timestamp_ms, now, exc)
        event_id = event["event_id"]
        if self.dedupe.is_duplicate(event_id, partition, offset, now_ms=now):
            return IngestOutcome(
                "duplicate",
                key,
                None,
                [],
                event_id,
            )
        if self._same_encoding is not None and raw.startswith(self._same_encoding):
            value = raw
        else:
            value = self.valid_encoder.encode(event)
        headers = [
            (HEADER_SOURCE, source.encode()),
            (HEADER_WRITER, decoded.writer_fingerprint.encode()),
        ]
        return IngestOutcome(
            "valid",
            event["user_id"].encode(),
            value,
            headers,
            event_id,
        )

    def _dead(
        self,
        raw: bytes,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        now: int,
        exc: EventError,
    ) -> IngestOutcome:
        event_id = sniff_event_id(raw)
        value = build_dead_letter(
            self.dead_encoder,
            raw,
            key,
            topic,
            partition,
            offset,
            timestamp_ms,
            now,
            exc,
            worker=self.worker_id,
            event_id=event_id,
        )
        return IngestOutcome(
            "dead",
            key,
            value,
            [(HEADER_SOURCE, f"{topic}:{partition}:{offset}".encode())],
            event_id,
            exc.reason,
            str(exc),
        )


_WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def build_dead_letter(
    encoder: Encoder,
    raw: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    now_ms: int,
    exc: EventError,
    *,
    worker: str | None = None,
    event_id: str | None = None,
) -> bytes:
    """The encoded DeadLetter for a record refused with ``exc`` (any stage)."""
    raw = raw if raw is not None else b""
    letter: DeadLetter = {
        "payload": raw,
        "key": key,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp": timestamp_ms,
        "reason": exc.reason,
        "message": str(exc),
        # read from the first bytes only, never the body
        "event_id": event_id if event_id is not None else sniff_event_id(raw),
        "dead_lettered_at": now_ms,
        "worker": worker or _WORKER_ID,
    }
    return encoder.encode(letter)
