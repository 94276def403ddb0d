"""Bytes of any of the project's topics -> a JSON-ready dict (for ``consume`` and the DLQ tools)."""

from __future__ import annotations

import base64
import io
from typing import Any, cast

import orjson
from fastavro import schemaless_reader

from streamproc.emit.encode import SINGLE_OBJECT_MARKER
from streamproc.errors import EventDecodeError, UnknownSchemaError
from streamproc.ingest.schemas import SchemaSet

__all__ = ["decode_record", "to_jsonable"]


def decode_record(raw: bytes, schemas: SchemaSet) -> tuple[str, dict[str, Any]]:
    """``(record name, record)`` of a single-object Avro or JSON value.

    Avro records are resolved to the latest version of their record type. JSON objects are
    returned as they are (record name ``json``); a JSON dead letter's payload stays base64.
    """
    if raw[:2] == SINGLE_OBJECT_MARKER:
        writer = schemas.by_fingerprint.get(raw[2:10])
        if writer is None:
            raise UnknownSchemaError(f"unknown schema fingerprint {raw[2:10].hex()}")
        reader = schemas.latest(writer.short_name)
        try:
            record = schemaless_reader(
                io.BytesIO(raw[10:]), writer.parsed, None if reader is writer else reader.parsed
            )
        except Exception as exc:
            raise EventDecodeError(f"cannot decode {writer.short_name}: {exc}") from exc
        # The schemas are all records, so fastavro reads a dict.
        return writer.short_name, cast(dict[str, Any], record)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"neither single-object Avro nor JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EventDecodeError("JSON value is not an object")
    return "json", obj


def to_jsonable(value: Any) -> Any:
    """Bytes -> base64 text, recursively, so orjson can write the record."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    return value
