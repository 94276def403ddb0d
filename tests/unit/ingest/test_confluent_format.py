"""Producers write the Confluent wire format when a Schema Registry is configured."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streamproc.emit.encode import Encoder
from streamproc.errors import ConfigError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.registry import confluent_header, register_writer_schema
from streamproc.ingest.schemas import SchemaSet
from streamproc.testing import make_viewing_event


class _Registry:
    """Stands in for the Schema Registry server (not for Kafka): ids by schema text."""

    def __init__(self) -> None:
        self.subjects: dict[str, list[str]] = {}
        self.ids: dict[str, int] = {}

    def register_schema(self, subject: str, schema: Any) -> int:
        self.subjects.setdefault(subject, []).append(schema.schema_str)
        return self.ids.setdefault(schema.schema_str, 100 + len(self.ids))


def test_registered_id_frames_the_avro_body(schemas: SchemaSet) -> None:
    registry = _Registry()
    version = schemas.latest("ViewingEvent")
    schema_id = register_writer_schema(registry, "viewing-events-value", version)
    assert register_writer_schema(registry, "viewing-events-value", version) == schema_id
    assert orjson.loads(registry.subjects["viewing-events-value"][0])["name"] == "ViewingEvent"

    event = make_viewing_event()
    raw = Encoder(version, header=confluent_header(schema_id)).encode(event)
    assert raw[:5] == b"\x00" + schema_id.to_bytes(4, "big")

    def lookup(wanted: int) -> dict[str, Any]:
        assert wanted == schema_id
        return dict(version.raw)

    decoded = EventDecoder(schemas, registry_lookup=lookup).decode(raw)
    assert decoded.event == event
    assert decoded.writer_fingerprint == version.fingerprint_hex


def test_registration_failure_is_a_clear_error(schemas: SchemaSet) -> None:
    class Down:
        def register_schema(self, subject: str, schema: Any) -> int:
            raise ConnectionError("connection refused")

    with pytest.raises(
        ConfigError, match="cannot register ViewingEvent v2 under subject 'x-value'"
    ):
        register_writer_schema(Down(), "x-value", schemas.latest("ViewingEvent"))
