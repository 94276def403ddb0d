from __future__ import annotations

import orjson

from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record
from streamproc.emit.encode import Encoder
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import HEADER_SOURCE, HEADER_WRITER, IngestProcessor
from streamproc.ingest.schemas import SchemaSet
from streamproc.testing import make_viewing_event


def _processor(settings: Settings, schemas: SchemaSet) -> tuple[IngestProcessor, list[object]]:
    changes: list[object] = []
    dedupe = Deduplicator(60_000, {}, lambda p, k, v: changes.append((p, k, v)))
    return IngestProcessor(settings, schemas, dedupe), changes


def test_valid_event_becomes_canonical_record(settings: Settings, schemas: SchemaSet) -> None:
    proc, changes = _processor(settings, schemas)
    event = make_viewing_event()
    raw = orjson.dumps(event)  # JSON in, Avro out
    out = proc.process(raw, b"k", "viewing-events", 2, 17, 123)
    assert out.kind == "valid" and out.key == event["user_id"].encode()
    assert dict(out.headers)[HEADER_SOURCE] == b"viewing-events:2:17"
    assert dict(out.headers)[HEADER_WRITER] == b"json"
    name, record = decode_record(out.value or b"", schemas)
    assert name == "ViewingEvent" and record == event
    assert changes and changes[0][:2] == (2, event["event_id"])  # type: ignore[index]


def test_duplicate_and_replay(settings: Settings, schemas: SchemaSet) -> None:
    proc, _ = _processor(settings, schemas)
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(make_viewing_event())
    assert proc.process(raw, None, "in", 0, 5, None).kind == "valid"
    assert proc.process(raw, None, "in", 0, 5, None).kind == "valid"  # replay, same offset
    assert proc.process(raw, None, "in", 0, 9, None).kind == "duplicate"


def test_dead_letter_carries_everything(settings: Settings, schemas: SchemaSet) -> None:
    proc, _ = _processor(settings, schemas)
    event = make_viewing_event()
    event["playback"]["position_s"] = -1.0
    raw = Encoder.for_record(schemas, "ViewingEvent").encode(event)
    out = proc.process(raw, b"user", "viewing-events", 3, 1207, 99)
    assert out.kind == "dead"
    assert out.reason == "rule_violation:position_non_negative"
    name, letter = decode_record(out.value or b"", schemas)
    assert name == "DeadLetter"
    assert letter["payload"] == raw and letter["key"] == b"user"
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "viewing-events",
        3,
        1207,
    )
    assert letter["source_timestamp"] == 99
    assert letter["event_id"] == event["event_id"]
    assert letter["message"].startswith('viewing-events[3]@1207: field "playback.position_s"')


def test_garbage_never_raises(settings: Settings, schemas: SchemaSet) -> None:
    proc, _ = _processor(settings, schemas)
    for raw in (
        None,
        b"",
        b"\xc3\x01",
        b"\x00\x01",
        b"{",
        b"\xff" * 100,
        b"\xc3\x01" + b"\x00" * 80,
    ):
        out = proc.process(raw, None, "in", 0, 1, None)
        assert out.kind == "dead" and out.reason


def test_json_output_format(settings: Settings, schemas: SchemaSet) -> None:
    proc, _ = _processor(settings.model_copy(update={"output_format": "json"}), schemas)
    out = proc.process(b"junk", None, "in", 0, 1, None)
    letter = orjson.loads(out.value or b"")
    assert letter["reason"] == "decode_error"
    assert letter["payload"] == "anVuaw=="  # base64 of the bytes


def test_latest_avro_passes_through_byte_for_byte_older_versions_are_upgraded(
    settings: Settings, schemas: SchemaSet
) -> None:
    proc, _ = _processor(settings, schemas)
    latest = schemas.latest("ViewingEvent")
    raw = Encoder(latest).encode(make_viewing_event())
    out = proc.process(raw, None, "in", 0, 1, None)
    assert out.kind == "valid" and out.value is raw
    assert latest.version > 1, "the schema set has an older ViewingEvent to upgrade from"
    old = schemas.get("ViewingEvent", 1)
    event = make_viewing_event()
    v1_fields = {f["name"] for f in old.parsed["fields"]}
    raw_v1 = Encoder(old).encode({k: v for k, v in event.items() if k in v1_fields})
    upgraded = proc.process(raw_v1, None, "in", 0, 2, None)
    assert upgraded.kind == "valid" and upgraded.value != raw_v1
    assert (upgraded.value or b"")[2:10] == latest.fingerprint
    assert decode_record(upgraded.value or b"", schemas)[1]["event_id"] == event["event_id"]
