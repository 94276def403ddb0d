"""Bytes -> ViewingEvent: detect the wire format, find the writer schema, resolve to the reader.

Three formats are accepted on the input topic, told apart by their first byte:

========================  ==========================================================
``C3 01`` + 8 bytes       Avro single-object encoding: CRC-64-AVRO fingerprint of the
                          writer schema (little-endian), then the Avro body. Default.
``00`` + 4 bytes          Confluent wire format: magic byte, big-endian schema id in the
                          Schema Registry (needs ``STREAMPROC_SCHEMA_REGISTRY_URL``).
``{``                     JSON (orjson), checked against the reader schema; ``event_time``
                          as epoch milliseconds or an ISO-8601 string.
========================  ==========================================================

Every failure raises an :class:`~streamproc.errors.EventError` subclass whose ``reason`` is
the dead-letter reason code; nothing else escapes :meth:`EventDecoder.decode`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streamproc.emit.encode import SINGLE_OBJECT_MARKER, SchemaViolationError, check_against_schema
from streamproc.errors import EventDecodeError, EventTooLargeError, UnknownSchemaError
from streamproc.ingest.schemas import SchemaSet, SchemaVersion, _strip_logical_types
from streamproc.records import ViewingEvent

__all__ = ["DecodedEvent", "EventDecoder", "SchemaLookup"]

logger = logging.getLogger(__name__)

_HEADER_LEN = len(SINGLE_OBJECT_MARKER) + 8
_JSON_START = frozenset(b"{ \t\r\n")

#: Resolves a Confluent Schema Registry id to the writer schema (parsed JSON).
SchemaLookup = Callable[[int], dict[str, Any]]


class DecodedEvent:
    """An event and the fingerprint (hex) of the schema it was written with."""

    __slots__ = ("event", "writer_fingerprint")

    def __init__(self, event: ViewingEvent, writer_fingerprint: str) -> None:
        self.event = event
        self.writer_fingerprint = writer_fingerprint


class EventDecoder:
    """Decode input records of one record type (``ViewingEvent``) in any accepted format.

    Parameters
    ----------
    schemas
        The known schema versions; the latest version of ``record`` is the reader schema.
    max_bytes
        Records larger than this are refused before decoding (reason ``too_large``).
    registry_lookup
        Resolves Confluent schema ids; ``None`` when no Schema Registry is configured.
    record
        Short name of the record type accepted.
    """

    def __init__(
        self,
        schemas: SchemaSet,
        *,
        max_bytes: int = 65536,
        registry_lookup: SchemaLookup | None = None,
        record: str = "ViewingEvent",
    ) -> None:
        self.schemas = schemas
        self.max_bytes = max_bytes
        self.registry_lookup = registry_lookup
        self.record = record
        self._reader = schemas.latest(record)
        self._registry_cache: dict[int, tuple[dict[str, Any], str]] = {}

    @property
    def reader(self) -> SchemaVersion:
        """The reader schema every event is resolved to."""
        return self._reader

    def decode(self, raw: bytes) -> DecodedEvent:
        """Decode ``raw`` to an event of the reader schema.

        Raises
        ------
        EventTooLargeError, EventDecodeError, UnknownSchemaError, SchemaViolationError
            With the dead-letter reason on the exception's ``reason``.
        """
        size = len(raw)
        if size > self.max_bytes:
            raise EventTooLargeError(
                f"record is {size} bytes, larger than the limit of {self.max_bytes} "
                "(STREAMPROC_MAX_MESSAGE_BYTES); refused before decoding"
            )
        if size == 0:
            raise EventDecodeError("record value is empty; expected an encoded ViewingEvent")
        if raw[:2] == SINGLE_OBJECT_MARKER:
            return self._decode_single_object(raw)
        first = raw[0]
        if first == 0:
            return self._decode_confluent(raw)
        if first in _JSON_START:
            return self._decode_json(raw)
        raise EventDecodeError(
            f"unknown wire format: first bytes {raw[:4].hex(' ')}; expected Avro single-object "
            "encoding (c3 01), Confluent wire format (00) or a JSON object ({)"
        )

    # -- Avro -----------------------------------------------------------------------------------

    def _decode_single_object(self, raw: bytes) -> DecodedEvent:
        if len(raw) < _HEADER_LEN:
            raise EventDecodeError(
                f"truncated single-object header: {len(raw)} bytes, expected at least "
                f"{_HEADER_LEN} (marker c3 01 + 8-byte fingerprint)"
            )
        fp = raw[2:_HEADER_LEN]
        writer = self.schemas.by_fingerprint.get(fp)
        if writer is None:
            raise UnknownSchemaError(
                f"schema fingerprint {fp.hex()} is not a known {self.record} version "
                f"(known: {self._known()}); register the schema under schemas/ or fix the "
                "producer"
            )
        if writer.short_name != self.record:
            raise UnknownSchemaError(
                f"schema fingerprint {fp.hex()} is {writer.short_name} v{writer.version}, "
                f"not a {self.record}"
            )
        event = self._read_avro(
            raw,
            _HEADER_LEN,
            writer.parsed,
            writer is self._reader,
            f"{writer.short_name} v{writer.version}",
        )
        return DecodedEvent(event, writer.fingerprint_hex)

    def _read_avro(
        self, raw: bytes, start: int, writer: dict[str, Any], same: bool, label: str
    ) -> ViewingEvent:
        buf = io.BytesIO(raw)
        buf.seek(start)
        try:
            if same:
                record = schemaless_reader(buf, writer, None)
            else:
                record = schemaless_reader(buf, writer, self._reader.parsed)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ...
            raise EventDecodeError(
                f"Avro body does not match its writer schema {label}: {type(exc).__name__}: {exc}"
            ) from exc
        rest = len(raw) - buf.tell()
        if rest:
            raise EventDecodeError(
                f"{rest} trailing bytes after a complete {label} record; the record is "
                "corrupt or was written with another schema"
            )
        return cast(ViewingEvent, record)

    def _decode_confluent(self, raw: bytes) -> DecodedEvent:
        if len(raw) < 5:
            raise EventDecodeError(
                f"truncated Confluent header: {len(raw)} bytes, expected magic byte 00 + "
                "4-byte schema id"
            )
        schema_id = int.from_bytes(raw[1:5], "big")
        if self.registry_lookup is None:
            raise UnknownSchemaError(
                f"record is in Confluent wire format (schema id {schema_id}) but no Schema "
                "Registry is configured; set STREAMPROC_SCHEMA_REGISTRY_URL"
            )
        cached = self._registry_cache.get(schema_id)
        if cached is None:
            try:
                raw_schema = self.registry_lookup(schema_id)
                parsed_any = parse_schema(_strip_logical_types(raw_schema))
            except Exception as exc:
                raise UnknownSchemaError(
                    f"Schema Registry has no usable schema with id {schema_id}: {exc}"
                ) from exc
            # Any schema id of the registry can be named by a record, e.g. a primitive "string"
            # (parsed to a str) or a union (a list): only a record schema can be a ViewingEvent.
            if not isinstance(parsed_any, dict) or parsed_any.get("type") != "record":
                raise UnknownSchemaError(
                    f"schema id {schema_id} is not a record schema ({_describe_schema(parsed_any)})"
                    f", not a {self.record}"
                )
            parsed = cast(dict[str, Any], parsed_any)
            if str(parsed.get("name", "")).rsplit(".", 1)[-1] != self.record:
                raise UnknownSchemaError(
                    f"schema id {schema_id} is {parsed.get('name')!r}, not a {self.record}"
                )
            from fastavro.schema import fingerprint, to_parsing_canonical_form

            fp = fingerprint(to_parsing_canonical_form(raw_schema), "CRC-64-AVRO")
            cached = (parsed, fp)
            self._registry_cache[schema_id] = cached
        parsed, fp = cached
        event = self._read_avro(raw, 5, parsed, False, f"registry schema id {schema_id}")
        return DecodedEvent(event, fp)

    # -- JSON -----------------------------------------------------------------------------------

    def _decode_json(self, raw: bytes) -> DecodedEvent:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(f"malformed JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise EventDecodeError(
                f"JSON value is a {type(obj).__name__}, expected an object (a ViewingEvent)"
            )
        when = obj.get("event_time")
        if isinstance(when, str):
            obj["event_time"] = _iso_to_millis(when)
        try:
            check_against_schema(self._reader, obj)
        except SchemaViolationError:
            raise
        # Round-trip through Avro: fills defaults, drops unknown keys, normalises numbers.
        buf = io.BytesIO()
        try:
            schemaless_writer(buf, self._reader.parsed, obj)
        except Exception as exc:  # pragma: no cover - check_against_schema catches these first
            raise EventDecodeError(f"JSON event cannot be written as Avro: {exc}") from exc
        buf.seek(0)
        event = schemaless_reader(buf, self._reader.parsed, None)
        return DecodedEvent(cast(ViewingEvent, event), "json")

    def _known(self) -> str:
        return ", ".join(
            f"v{v.version}={v.fingerprint_hex}" for v in self.schemas.versions.get(self.record, ())
        )


def _describe_schema(schema: object) -> str:
    if isinstance(schema, dict):
        return f"type {schema.get('type')!r}"
    if isinstance(schema, list):
        return "a union"
    return f"type {schema!r}"


def _iso_to_millis(text: str) -> int | str:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text  # left as a string: the schema check reports it with the field name
    if when.tzinfo is None:
        return text
    return int(when.timestamp() * 1000)
