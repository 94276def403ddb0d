from __future__ import annotations

import io
import math
import re
from typing import Any

import orjson
import pytest
from fastavro import schemaless_writer

from streamproc.emit.encode import Encoder, SchemaViolationError
from streamproc.errors import EventDecodeError, EventTooLargeError, UnknownSchemaError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.schemas import SchemaSet
from streamproc.testing import make_viewing_event


def _v1_event() -> dict[str, object]:
    event: dict[str, Any] = dict(make_viewing_event())
    for key in ("seq", "experiment"):
        event.pop(key)
    event["network"] = {k: v for k, v in event["network"].items() if k != "isp"}
    event["playback"] = {k: v for k, v in event["playback"].items() if k != "dropped_frames"}
    return event


def test_single_object_latest_round_trip(schemas: SchemaSet) -> None:
    event = make_viewing_event(seq=3, experiment="B")
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(event)
    assert raw[:2] == b"\xc3\x01"
    assert raw[2:10] == schemas.latest("ViewingEvent").fingerprint
    decoded = EventDecoder(schemas).decode(raw)
    assert decoded.event == event
    assert decoded.writer_fingerprint == schemas.latest("ViewingEvent").fingerprint_hex


def test_v1_written_event_is_read_as_v2_with_defaults(schemas: SchemaSet) -> None:
    v1 = schemas.get("ViewingEvent", 1)
    event = _v1_event()
    raw = Encoder(v1).encode(event)
    decoded = EventDecoder(schemas).decode(raw).event
    assert decoded["seq"] is None and decoded["experiment"] is None
    assert decoded["network"]["isp"] is None
    assert decoded["playback"]["dropped_frames"] is None
    assert decoded["event_id"] == event["event_id"]


def test_unknown_fingerprint_is_unknown_schema(schemas: SchemaSet) -> None:
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(make_viewing_event())
    forged = raw[:2] + bytes(8) + raw[10:]
    with pytest.raises(UnknownSchemaError, match="fingerprint 0000000000000000 is not a known"):
        EventDecoder(schemas).decode(forged)


def test_fingerprint_of_another_record_is_refused(schemas: SchemaSet) -> None:
    raw = b"\xc3\x01" + schemas.latest("Prediction").fingerprint + b"\x00"
    with pytest.raises(UnknownSchemaError, match="is Prediction v1, not a ViewingEvent"):
        EventDecoder(schemas).decode(raw)


@pytest.mark.parametrize("cut", [3, 11, 40, -1])
def test_truncated_avro_is_decode_error(schemas: SchemaSet, cut: int) -> None:
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(make_viewing_event())
    with pytest.raises(EventDecodeError) as info:
        EventDecoder(schemas).decode(raw[:cut])
    assert info.value.reason == "decode_error"
    if cut > 10 or cut < 0:  # a whole header: the body is what is short
        assert re.search(r"does not match its writer schema ViewingEvent v\d+: ", str(info.value))


def test_trailing_bytes_are_decode_error(schemas: SchemaSet) -> None:
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(make_viewing_event())
    with pytest.raises(EventDecodeError, match="3 trailing bytes"):
        EventDecoder(schemas).decode(raw + b"abc")


def test_too_large_is_refused_before_decoding(schemas: SchemaSet) -> None:
    with pytest.raises(EventTooLargeError, match="100000 bytes, larger than the limit of 65536"):
        EventDecoder(schemas, max_bytes=65536).decode(b"\xc3\x01" + bytes(99_998))


def test_unknown_format(schemas: SchemaSet) -> None:
    with pytest.raises(EventDecodeError, match="unknown wire format: first bytes 7f 45 4c 46"):
        EventDecoder(schemas).decode(b"\x7fELF\x02")


def test_empty_value(schemas: SchemaSet) -> None:
    with pytest.raises(EventDecodeError, match="empty"):
        EventDecoder(schemas).decode(b"")


def test_confluent_without_registry_says_what_to_set(schemas: SchemaSet) -> None:
    with pytest.raises(UnknownSchemaError, match="STREAMPROC_SCHEMA_REGISTRY_URL"):
        EventDecoder(schemas).decode(b"\x00\x00\x00\x00\x07" + b"body")


def test_confluent_with_lookup(schemas: SchemaSet) -> None:
    version = schemas.latest("ViewingEvent")
    event = make_viewing_event()
    body = io.BytesIO()
    schemaless_writer(body, version.parsed, event)
    raw = b"\x00" + (42).to_bytes(4, "big") + body.getvalue()
    calls: list[int] = []

    def lookup(schema_id: int) -> dict[str, object]:
        calls.append(schema_id)
        return version.raw

    decoder = EventDecoder(schemas, registry_lookup=lookup)
    assert decoder.decode(raw).event == event
    assert decoder.decode(raw).writer_fingerprint == version.fingerprint_hex
    assert calls == [42]  # cached after the first lookup


def test_json_event_gets_defaults_and_iso_time(schemas: SchemaSet) -> None:
    event = _v1_event()
    event["event_time"] = "2026-11-23T10:00:00Z"
    decoded = EventDecoder(schemas).decode(orjson.dumps(event)).event
    assert decoded["event_time"] == 1795428000000
    assert decoded["seq"] is None
    assert isinstance(decoded["network"]["bandwidth_kbps"], float)


def test_json_wrong_type_names_the_field(schemas: SchemaSet) -> None:
    event: dict[str, Any] = dict(make_viewing_event())
    event["playback"] = dict(event["playback"], bitrate_kbps="fast")
    with pytest.raises(
        SchemaViolationError, match=r'"playback.bitrate_kbps" must be int, got .fast.'
    ) as info:
        EventDecoder(schemas).decode(orjson.dumps(event))
    assert info.value.reason == "schema_violation"


def test_json_missing_required_field(schemas: SchemaSet) -> None:
    event = dict(make_viewing_event())
    del event["user_id"]
    with pytest.raises(
        SchemaViolationError,
        match=r'"user_id" must be string, got nothing \(the field is missing\)',
    ):
        EventDecoder(schemas).decode(orjson.dumps(event))


def test_json_bad_enum(schemas: SchemaSet) -> None:
    event = dict(make_viewing_event(event_type="teleport"))
    with pytest.raises(SchemaViolationError, match='"event_type" must be one of play, pause'):
        EventDecoder(schemas).decode(orjson.dumps(event))


@pytest.mark.parametrize("raw", [b"{", b'{"a": NaN}', b"[1, 2]", b"   "])
def test_malformed_json(schemas: SchemaSet, raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        EventDecoder(schemas).decode(raw)


def test_json_encoder_refuses_nan(schemas: SchemaSet) -> None:
    event = make_viewing_event()
    event["network"]["rtt_ms"] = math.nan
    with pytest.raises(SchemaViolationError, match=r"network.rtt_ms"):
        Encoder.for_record(schemas, "ViewingEvent", "json").encode(event)
