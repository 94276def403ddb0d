"""Hostile and broken bytes on the input topic: the ingest stage dead-letters, never crashes.

Property of every test here: ``IngestProcessor.process(raw, ...)`` returns (never raises) an
outcome of kind valid/dead/duplicate; a dead outcome has a documented reason and a message
that starts with ``topic[partition]@offset``, and its DeadLetter record decodes back
(``decode_record``) with the original payload bytes intact.

Hypothesis runs derandomized (the same examples on every run) with no example database.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import math
import random
import re
import struct
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamproc.config import Settings, load_settings
from streamproc.emit.decode_any import decode_record
from streamproc.emit.encode import Encoder
from streamproc.errors import EventError
from streamproc.ingest import validate
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import HEADER_SOURCE, IngestOutcome, IngestProcessor
from streamproc.ingest.schemas import SchemaSet, load_schemas
from streamproc.testing import make_viewing_event

REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000_000
TOPIC = "viewing-events"

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Rules named in the validate module's table (its docstring is the list of record).
RULES = frozenset(re.findall(r"^``([a-z_]+)``", validate.__doc__ or "", re.MULTILINE))
REASONS = frozenset(
    {"decode_error", "unknown_schema", "schema_violation", "too_large", "model_error"}
    | {f"rule_violation:{rule}" for rule in RULES}
)

SCHEMAS: SchemaSet = load_schemas(REPO / "schemas")
V1 = SCHEMAS.get("ViewingEvent", 1)
V2 = SCHEMAS.latest("ViewingEvent")


@pytest.fixture(scope="module")
def base_settings() -> Iterator[Settings]:
    """Default settings, unaffected by STREAMPROC_* variables of the developer's shell."""
    with pytest.MonkeyPatch.context() as mp:
        import os

        for name in list(os.environ):
            if name.startswith("STREAMPROC_"):
                mp.delenv(name)
        yield load_settings(schemas_dir=REPO / "schemas")


def _processor(settings: Settings, **kwargs: Any) -> IngestProcessor:
    """A fresh processor: no de-duplication state carried between examples."""
    return IngestProcessor(
        settings, SCHEMAS, Deduplicator(60_000, {}, lambda p, k, v: None), **kwargs
    )


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = dict(make_viewing_event(event_time=NOW))
    event["event_id"] = "00000000-0000-0000-0000-00000000e001"
    event.update(overrides)
    return event


def _v1(event: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in event.items() if k not in ("seq", "experiment")}
    out["network"] = {k: v for k, v in event["network"].items() if k != "isp"}
    out["playback"] = {k: v for k, v in event["playback"].items() if k != "dropped_frames"}
    return out


def _avro(event: dict[str, Any]) -> bytes:
    return Encoder(V2, check=False).encode(event)


def _avro_v1(event: dict[str, Any]) -> bytes:
    return Encoder(V1, check=False).encode(_v1(event))


def _run(
    proc: IngestProcessor,
    raw: bytes | None,
    *,
    key: bytes | None = b"user-key",
    partition: int = 3,
    offset: int = 1207,
) -> IngestOutcome:
    """Process ``raw`` and check every property the stage promises, whatever the input."""
    out = proc.process(raw, key, TOPIC, partition, offset, 99, now_ms=NOW)
    assert out.kind in ("valid", "dead", "duplicate")
    if out.kind == "valid":
        assert out.value is not None
        name, record = decode_record(out.value, SCHEMAS)
        assert name in ("ViewingEvent", "json")
        assert record["event_id"] == out.event_id
        assert dict(out.headers)[HEADER_SOURCE] == f"{TOPIC}:{partition}:{offset}".encode()
        return out
    if out.kind == "duplicate":
        return out
    assert out.reason in REASONS, out.reason
    where = f"{TOPIC}[{partition}]@{offset}: "
    assert out.message is not None and out.message.startswith(where), out.message
    assert out.value is not None
    name, letter = decode_record(out.value, SCHEMAS)
    payload = raw if raw is not None else b""
    if name == "json":  # STREAMPROC_OUTPUT_FORMAT=json: bytes fields are base64
        assert base64.b64decode(letter["payload"]) == payload
        assert letter["key"] == (None if key is None else base64.b64encode(key).decode())
    else:
        assert name == "DeadLetter"
        assert letter["payload"] == payload
        assert letter["key"] == key
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        TOPIC,
        partition,
        offset,
    )
    assert letter["reason"] == out.reason and letter["message"] == out.message
    assert letter["dead_lettered_at"] == NOW and letter["source_timestamp"] == 99
    return out


def test_reason_list_matches_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    para = readme[readme.index("**Dead-letter reasons**") :].split("\n\n", 1)[0]
    documented = set(re.findall(r"`([a-z_:<>]+)`", para))
    assert {r for r in documented if "<" not in r} | {"rule_violation:<rule>"} == documented
    fixed = {"decode_error", "unknown_schema", "schema_violation", "too_large", "model_error"}
    assert documented - fixed - {"rule_violation:<rule>"} == RULES
    assert len(RULES) == 12


# -- random and prefixed bytes ------------------------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=600))
def test_random_bytes(base_settings: Settings, raw: bytes) -> None:
    out = _run(_processor(base_settings), raw)
    assert out.kind == "dead"


_PREFIXES = [
    b"\xc3\x01" + V2.fingerprint,
    b"\xc3\x01" + V1.fingerprint,
    b"\xc3\x01" + SCHEMAS.latest("DeadLetter").fingerprint,
    b"\xc3\x01",
    b"\x00\x00\x00\x00\x01",
    b"\x00",
    b"{",
    b' {"event_id": ',
]


@FUZZ
@given(prefix=st.sampled_from(_PREFIXES), body=st.binary(max_size=400), key=st.none() | st.binary())
def test_random_bodies_after_every_format_prefix(
    base_settings: Settings, prefix: bytes, body: bytes, key: bytes | None
) -> None:
    out = _run(_processor(base_settings), prefix + body, key=key)
    assert out.kind == "dead"


def test_none_and_empty(base_settings: Settings) -> None:
    for raw in (None, b""):
        out = _run(_processor(base_settings), raw, key=None)
        assert out.reason == "decode_error"


# -- bit flips and truncations of valid records ---------------------------------------------


def _valid_records() -> dict[str, bytes]:
    event = _event(seq=7, experiment="B", rating=None)
    event["network"]["isp"] = "isp-x"
    event["playback"]["dropped_frames"] = 3
    return {"avro-v2": _avro(event), "avro-v1": _avro_v1(event), "json": orjson.dumps(event)}


@pytest.mark.parametrize("fmt", ["avro-v2", "avro-v1", "json"])
def test_every_single_bit_flip(base_settings: Settings, fmt: str) -> None:
    """Each bit of a valid record flipped in turn, by position class."""
    base = _valid_records()[fmt]
    proc = _processor(base_settings)
    assert _run(proc, base).kind == "valid"
    seen: set[str | None] = set()
    for i in range(len(base)):
        for bit in range(8):
            raw = bytearray(base)
            raw[i] ^= 1 << bit
            out = _run(_processor(base_settings), bytes(raw), offset=i * 8 + bit)
            seen.add(out.reason)
            if fmt.startswith("avro") and i < 2:  # the marker: no longer an Avro record
                assert out.reason == "decode_error", (i, bit, out.message)
            elif fmt.startswith("avro") and i < 10:  # the fingerprint
                assert out.reason == "unknown_schema", (i, bit, out.message)
            else:
                assert out.reason != "too_large"
    assert "decode_error" in seen


@pytest.mark.parametrize("fmt", ["avro-v2", "avro-v1", "json"])
def test_every_truncation(base_settings: Settings, fmt: str) -> None:
    base = _valid_records()[fmt]
    for cut in range(len(base)):
        out = _run(_processor(base_settings), base[:cut], offset=cut)
        assert out.reason == "decode_error", (cut, out.message)
    # and the same record with trailing garbage
    out = _run(_processor(base_settings), base + b"\x00")
    assert out.reason == "decode_error"
    if fmt != "json":
        assert "trailing bytes" in (out.message or "")


@FUZZ
@given(
    fmt=st.sampled_from(["avro-v2", "avro-v1", "json"]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.none() | st.integers(0, 10_000),
)
def test_random_byte_edits(
    base_settings: Settings, fmt: str, edits: list[tuple[int, int]], cut: int | None
) -> None:
    raw = bytearray(_valid_records()[fmt])
    for pos, value in edits:
        raw[pos % len(raw)] = value
    if cut is not None:
        raw = raw[: cut % (len(raw) + 1)]
    _run(_processor(base_settings), bytes(raw))


# -- unknown schemas ------------------------------------------------------------------------------


@FUZZ
@given(fp=st.binary(min_size=8, max_size=8))
def test_valid_body_with_an_unknown_fingerprint(base_settings: Settings, fp: bytes) -> None:
    assume(fp not in SCHEMAS.by_fingerprint)
    body = _valid_records()["avro-v2"][10:]
    out = _run(_processor(base_settings), b"\xc3\x01" + fp + body)
    assert out.reason == "unknown_schema"
    assert fp.hex() in (out.message or "")


def test_fingerprint_of_another_record_type(base_settings: Settings) -> None:
    letter = _processor(base_settings).process(b"junk", None, "t", 0, 0, None, now_ms=NOW).value
    assert letter is not None and letter[:2] == b"\xc3\x01"
    out = _run(_processor(base_settings), letter)  # a DeadLetter sent back to the input
    assert out.reason == "unknown_schema" and "not a ViewingEvent" in (out.message or "")


def _registry() -> Callable[[int], dict[str, Any]]:
    table: dict[int, Any] = {
        1: V1.raw,
        2: V2.raw,
        3: "string",  # any schema of the registry can be named by a record
        4: ["null", "string"],
        5: SCHEMAS.latest("Prediction").raw,
        6: {"type": "fixed", "name": "ViewingEvent", "size": 16},
        7: {"type": "record", "name": "ViewingEvent", "fields": [{"name": "x", "type": "int"}]},
    }

    def lookup(schema_id: int) -> dict[str, Any]:
        # KeyError for an unknown id, as a registry client raises; not always a dict (3, 4).
        return cast(dict[str, Any], table[schema_id])

    return lookup


@pytest.mark.parametrize(
    ("schema_id", "reason"),
    [
        (1, "valid"),
        (2, "valid"),
        (3, "unknown_schema"),
        (4, "unknown_schema"),
        (5, "unknown_schema"),
        (6, "unknown_schema"),
        (7, "decode_error"),  # a ViewingEvent the reader schema cannot resolve
        (8, "unknown_schema"),
        (2**32 - 1, "unknown_schema"),
    ],
)
def test_confluent_schema_ids(base_settings: Settings, schema_id: int, reason: str) -> None:
    """Regression: ids 3 and 4 (a primitive or union schema) raised AttributeError."""
    event = _valid_records()
    body = event["avro-v1" if schema_id == 1 else "avro-v2"][10:]
    raw = b"\x00" + schema_id.to_bytes(4, "big") + body
    proc = _processor(base_settings, registry_lookup=_registry())
    out = _run(proc, raw)
    assert (out.reason or out.kind) == reason, out.message
    # The cached schema gives the same verdict the second time.
    assert (_run(proc, raw, offset=1208).reason or "valid") == reason


def test_confluent_without_a_registry(base_settings: Settings) -> None:
    raw = b"\x00\x00\x00\x00\x02" + _valid_records()["avro-v2"][10:]
    out = _run(_processor(base_settings), raw)
    assert out.reason == "unknown_schema" and "STREAMPROC_SCHEMA_REGISTRY_URL" in (
        out.message or ""
    )


@FUZZ
@given(schema_id=st.integers(0, 9), body=st.binary(max_size=300))
def test_confluent_random_bodies(base_settings: Settings, schema_id: int, body: bytes) -> None:
    raw = b"\x00" + schema_id.to_bytes(4, "big") + body
    out = _run(_processor(base_settings, registry_lookup=_registry()), raw)
    assert out.kind == "dead"


# -- JSON: wrong types, nesting, sizes ------------------------------------------------------------


def _field_paths(schema: Any, prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(dotted path, type, has default) of every field, nested records included."""
    for fld in schema["fields"]:
        path = f"{prefix}{fld['name']}"
        yield path, fld["type"], "default" in fld
        kind = fld["type"]
        if isinstance(kind, list):
            records = [k for k in kind if isinstance(k, dict) and k.get("type") == "record"]
            kind = records[0] if records else None
        if isinstance(kind, dict) and kind.get("type") == "record":
            yield from _field_paths(kind, path + ".")


FIELDS = list(_field_paths(V2.raw))


def _accepts(kind: Any, value: Any) -> bool:
    """Independent reading of the Avro JSON mapping: does ``kind`` accept ``value``?"""
    if isinstance(kind, list):
        return any(_accepts(k, value) for k in kind)
    if isinstance(kind, dict):
        if kind["type"] == "enum":
            return value in kind["symbols"]
        if kind["type"] == "record":
            return isinstance(value, dict) and all(
                _accepts(f["type"], value[f["name"]]) if f["name"] in value else "default" in f
                for f in kind["fields"]
            )
        kind = kind["type"]
    if kind == "null":
        return value is None
    if kind == "string":
        return isinstance(value, str)
    if kind in ("int", "long"):
        bits = 31 if kind == "int" else 63
        return type(value) is int and -(2**bits) <= value < 2**bits
    if kind == "double":
        return type(value) in (int, float)
    raise AssertionError(kind)


def _set_path(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = event
    for name in parents:
        node = node[name]
    node[last] = value


def _del_path(event: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = event
    for name in parents:
        node = node[name]
    del node[last]


_WRONG: list[object] = [
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**63 - 1,
    -(2**63),
    1.5,
    "",
    "x",
    "play",
    [],
    [1],
    {},
]


@pytest.mark.parametrize(("path", "kind", "has_default"), FIELDS, ids=[f[0] for f in FIELDS])
def test_json_wrong_type_in_every_field(
    base_settings: Settings, path: str, kind: Any, has_default: bool
) -> None:
    for n, value in enumerate(_WRONG):
        event = _event(title={"genre": "drama", "release_year": 2021})
        _set_path(event, path, value)
        out = _run(_processor(base_settings), orjson.dumps(event), offset=n)
        if _accepts(kind, value):
            assert out.reason != "schema_violation", (path, value, out.message)
        else:
            assert out.reason == "schema_violation", (path, value, out.message)
            assert f'field "{path}' in (out.message or ""), out.message
    event = _event(title={"genre": "drama", "release_year": 2021})
    _del_path(event, path)
    out = _run(_processor(base_settings), orjson.dumps(event))
    if has_default:
        assert out.reason != "schema_violation", out.message
    else:
        assert out.reason == "schema_violation" and "the field is missing" in (out.message or "")


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(path=st.sampled_from([f[0] for f in FIELDS]), value=_JSON_VALUES)
def test_json_any_value_in_any_field(base_settings: Settings, path: str, value: Any) -> None:
    event = _event()
    _set_path(event, path, value)
    _run(_processor(base_settings), orjson.dumps(event))


@FUZZ
@given(value=_JSON_VALUES)
def test_json_top_level_is_any_value(base_settings: Settings, value: Any) -> None:
    out = _run(_processor(base_settings), orjson.dumps(value))
    assert out.kind == "dead"


@pytest.mark.parametrize("depth", [10, 500, 998, 999, 1000, 1022, 1023, 1024, 1025, 10_000])
@pytest.mark.parametrize("shape", ["array", "object"])
@pytest.mark.parametrize("where", ["field", "unknown_key", "nested_record", "top"])
def test_json_deep_nesting(base_settings: Settings, depth: int, shape: str, where: str) -> None:
    """Regression: 1000..1023 nested arrays in a field raised RecursionError (repr)."""
    nested = "[" * depth + "]" * depth if shape == "array" else '{"a":' * depth + "1" + "}" * depth
    if where == "top":
        raw = nested.encode()
    else:
        marker = '"@@NESTED@@"'
        event = _event()
        if where == "field":
            event["session_id"] = "@@NESTED@@"
        elif where == "unknown_key":
            event["extra"] = "@@NESTED@@"
        else:
            event["playback"]["position_s"] = "@@NESTED@@"
        raw = orjson.dumps(event).replace(marker.encode(), nested.encode())
    out = _run(_processor(base_settings), raw)
    if where == "unknown_key":  # ignored when orjson can parse it
        assert out.kind == "valid" or out.reason == "decode_error", out.message
    elif where == "top" and shape == "array":
        assert out.reason == "decode_error"
    else:
        assert out.reason in ("decode_error", "schema_violation"), out.message
    assert len(out.message or "") < 400


@FUZZ
@given(extra=st.integers(-64, 64), fmt=st.sampled_from(["json", "avro"]))
def test_size_limit_boundary(base_settings: Settings, extra: int, fmt: str) -> None:
    """A record of exactly max_message_bytes is decoded; one byte more is too_large."""
    limit = base_settings.max_message_bytes
    event = _event(user_id="")
    base = len(orjson.dumps(event) if fmt == "json" else _avro(event))
    # A user_id of n ASCII characters adds n bytes (+ its varint growing by 2 in Avro).
    n = limit + extra - base - (0 if fmt == "json" else 2)
    assume(n > 0)
    event["user_id"] = "u" * n
    raw = orjson.dumps(event) if fmt == "json" else _avro(event)
    out = _run(_processor(base_settings), raw)
    if len(raw) > limit:
        assert out.reason == "too_large"
        assert f"{len(raw)} bytes" in (out.message or "")
    else:
        assert out.kind == "valid", out.message


def test_huge_values_within_the_limit(base_settings: Settings) -> None:
    big_array = _event()
    big_array["session_id"] = list(range(10_000))
    big_string = _event(region="r" * 60_000)
    big_map = _event()
    big_map["device"] = {str(i): i for i in range(5_000)}
    for n, event in enumerate((big_array, big_string, big_map)):
        raw = orjson.dumps(event)
        assert len(raw) <= base_settings.max_message_bytes
        out = _run(_processor(base_settings), raw, offset=n)
        assert len(out.message or "") < 400
    assert _run(_processor(base_settings), orjson.dumps(big_string)).kind == "valid"
    huge = orjson.dumps(_event(region="r" * 10_000_000))
    out = _run(_processor(base_settings), huge)
    assert out.reason == "too_large"


# -- numbers, time, text ---------------------------------------------------------------------------

_DOUBLES = [
    "network.bandwidth_kbps",
    "network.rtt_ms",
    "playback.position_s",
    "playback.duration_s",
]
_SIGNALLING_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]


@pytest.mark.parametrize("path", _DOUBLES)
@pytest.mark.parametrize("value", [math.nan, -math.nan, _SIGNALLING_NAN, math.inf, -math.inf])
def test_avro_non_finite_doubles_are_finite_number_violations(
    base_settings: Settings, path: str, value: float
) -> None:
    event = _event()
    _set_path(event, path, value)
    for raw in (_avro(event), _avro_v1(event)):
        out = _run(_processor(base_settings), raw)
        assert out.reason == "rule_violation:finite_number", out.message
        assert f'"{path}"' in (out.message or "")


@pytest.mark.parametrize("token", [b"NaN", b"nan", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_json_has_no_non_finite_numbers(base_settings: Settings, token: bytes) -> None:
    raw = orjson.dumps(_event()).replace(b'"rtt_ms":30.0', b'"rtt_ms":' + token)
    assert token in raw
    out = _run(_processor(base_settings), raw)
    assert out.reason == "decode_error"
    # orjson writes NaN as null: a producer serialising NaN sends a schema violation
    event = _event()
    event["network"]["rtt_ms"] = math.nan
    raw = orjson.dumps(event)
    assert b'"rtt_ms":null' in raw
    assert _run(_processor(base_settings), raw).reason == "schema_violation"


def _expected_time_reason(when: int, settings: Settings) -> str | None:
    if when > NOW + int(settings.max_future_skew_s * 1000):
        return "rule_violation:event_time_future"
    if when < NOW - int(settings.max_event_age_s * 1000):
        return "rule_violation:event_time_past"
    return None


_DAY = 86_400_000


@FUZZ
@given(
    when=st.integers(-(2**63), 2**63 - 1)
    | st.integers(NOW - 31 * _DAY, NOW + 600_000)
    | st.sampled_from([2**63 - 1, -(2**63), 0, -1, 2**62, NOW + 300_000, NOW + 300_001]),
    fmt=st.sampled_from(["avro-v2", "avro-v1", "json"]),
)
def test_event_time_anywhere_in_the_long_range(
    base_settings: Settings, when: int, fmt: str
) -> None:
    event = _event(event_time=when)
    encode: dict[str, Callable[[dict[str, Any]], bytes]] = {
        "avro-v2": _avro,
        "avro-v1": _avro_v1,
        "json": orjson.dumps,
    }
    out = _run(_processor(base_settings), encode[fmt](event))
    assert out.reason == _expected_time_reason(when, base_settings), out.message


@pytest.mark.parametrize("when", [2**63, 2**64 - 1, -(2**63) - 1, 1.5, 1e300, True, "soon"])
def test_json_event_time_out_of_long_range(base_settings: Settings, when: object) -> None:
    text = str(when).encode() if type(when) is int else orjson.dumps(when)  # beyond orjson
    raw = orjson.dumps(_event()).replace(f'"event_time":{NOW}'.encode(), b'"event_time":' + text)
    assert text in raw
    out = _run(_processor(base_settings), raw)
    assert out.reason == "schema_violation" and '"event_time"' in (out.message or "")


@FUZZ
@given(
    when=st.datetimes(),
    offset_min=st.none() | st.integers(-1439, 1439),
    zulu=st.booleans(),
)
def test_json_iso_event_time(
    base_settings: Settings, when: Any, offset_min: int | None, zulu: bool
) -> None:
    from datetime import timedelta, timezone

    if offset_min is None:
        text = when.isoformat()  # naive: refused, the time zone is unknown
    elif offset_min == 0 and zulu:
        text = when.isoformat() + "Z"
    else:
        text = when.replace(tzinfo=timezone(timedelta(minutes=offset_min))).isoformat()
    out = _run(_processor(base_settings), orjson.dumps(_event(event_time=text)))
    if offset_min is None:
        assert out.reason == "schema_violation"
        return
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    ms = int(aware.timestamp() * 1000)
    expected = _expected_time_reason(ms, base_settings)
    if abs(ms - NOW - 300_000) > 2 and abs(ms - NOW + 30 * _DAY) > 2:  # float rounding aside
        assert out.reason == expected, (text, out.message)


_ID_FIELDS = ["event_id", "session_id", "user_id", "title_id"]
_ODD_IDS = [
    "\u200b",  # zero-width space: not whitespace for str.strip, accepted
    "\u200d",  # zero-width joiner
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\ufeff",  # byte order mark
    "\u2066u-1\u2069",  # isolates around an id
    "\u0000",
    "u\u0301",  # combining accent
    "\U0001f600",
    "\u3000",  # ideographic space: whitespace, refused
    "\u00a0",  # no-break space: whitespace, refused
    "\u2028",  # line separator: whitespace, refused
    " \t\n",
    "",
]


@pytest.mark.parametrize("field", _ID_FIELDS)
@pytest.mark.parametrize("ident", _ODD_IDS)
def test_odd_ids_are_judged_the_same_in_every_format(
    base_settings: Settings, field: str, ident: str
) -> None:
    """Whitespace-only ids (str.strip) are refused; zero-width and bidi characters are ids."""
    event = _event(**{field: ident})
    reasons = {
        fmt: _run(_processor(base_settings), raw).reason
        for fmt, raw in (
            ("avro", _avro(event)),
            ("v1", _avro_v1(event)),
            ("json", orjson.dumps(event)),
        )
    }
    expected = None if ident.strip() else "rule_violation:id_required"
    assert set(reasons.values()) == {expected}, reasons


@FUZZ
@given(field=st.sampled_from(_ID_FIELDS), ident=st.text(max_size=30))
def test_any_unicode_id_is_judged_the_same_in_every_format(
    base_settings: Settings, field: str, ident: str
) -> None:
    event = _event(**{field: ident})
    avro = _run(_processor(base_settings), _avro(event))
    json = _run(_processor(base_settings), orjson.dumps(event))
    assert (avro.kind, avro.reason) == (json.kind, json.reason)
    assert avro.reason == (None if ident.strip() else "rule_violation:id_required")


@pytest.mark.parametrize(
    "text",
    [b'"\\ud800"', b'"\\udfff"', b'"\\ud800\\u0041"', b'"\xed\xa0\x80"', b'"\xff"', b'"\xc3"'],
)
def test_json_surrogates_and_invalid_utf8(base_settings: Settings, text: bytes) -> None:
    raw = orjson.dumps(_event()).replace(b'"s-1"', text)
    out = _run(_processor(base_settings), raw)
    assert out.reason == "decode_error", out.message
    paired = orjson.dumps(_event()).replace(b'"s-1"', b'"\\ud83d\\ude00"')
    assert _run(_processor(base_settings), paired).kind == "valid"


_STRING_FIELDS = [
    path
    for path, kind, _ in FIELDS
    if kind == "string" or (isinstance(kind, list) and "string" in kind)
]


def _invalid_utf8() -> st.SearchStrategy[bytes]:
    def bad(b: bytes) -> bool:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    return st.binary(min_size=1, max_size=24).filter(bad)


@FUZZ
@given(path=st.sampled_from(_STRING_FIELDS), bad=_invalid_utf8(), v1=st.booleans())
def test_avro_invalid_utf8_in_any_string_is_a_decode_error(
    base_settings: Settings, path: str, bad: bytes, v1: bool
) -> None:
    assume(not (v1 and path in ("network.isp", "experiment")))
    encode = _avro_v1 if v1 else _avro
    raws = []
    for filler in ("Y", "Z"):
        event = _event(title={"genre": "drama", "release_year": None})
        _set_path(event, path, filler * len(bad))
        raws.append(encode(event))
    diff = [i for i, (a, b) in enumerate(zip(raws[0], raws[1], strict=True)) if a != b]
    assert diff == list(range(diff[0], diff[0] + len(bad)))
    raw = raws[0][: diff[0]] + bad + raws[0][diff[0] + len(bad) :]
    out = _run(_processor(base_settings), raw)
    assert out.reason == "decode_error" and "UnicodeDecodeError" in (out.message or "")


@FUZZ
@given(raw=st.binary(max_size=300), prefix=st.sampled_from([b"", *_PREFIXES]))
def test_decode_record_raises_only_event_errors(raw: bytes, prefix: bytes) -> None:
    """decode_any (consume, dlq inspect) on garbage: a typed error, nothing else."""
    with contextlib.suppress(EventError):
        decode_record(prefix + raw, SCHEMAS)


def test_json_output_format_dead_letters_keep_the_payload(base_settings: Settings) -> None:
    proc = _processor(base_settings.model_copy(update={"output_format": "json"}))
    for n, raw in enumerate((b"\xff\x00garbage", _valid_records()["avro-v2"][:-3], b'{"a":')):
        out = _run(proc, raw, offset=n)
        assert out.kind == "dead"


def test_decoder_alone_raises_only_event_errors() -> None:
    decoder = EventDecoder(SCHEMAS, max_bytes=4096, registry_lookup=_registry())
    rng = random.Random(7)
    bases = list(_valid_records().values())
    for _ in range(3000):
        raw = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        with contextlib.suppress(EventError):
            decoder.decode(bytes(raw))


# -- memory -------------------------------------------------------------------------------------


def _corrupt_records(settings: Settings, n: int) -> list[bytes]:
    """``n`` distinct records that are all dead letters, of every reason and format."""
    rng = random.Random(1)
    proc = _processor(settings)
    bases = list(_valid_records().values())
    out: list[bytes] = []
    while len(out) < n:
        raw = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.2:
            raw = raw[: rng.randrange(len(raw))]
        if proc.process(bytes(raw), None, TOPIC, 0, 0, None, now_ms=NOW).kind == "dead":
            out.append(bytes(raw))
    return out


def test_no_memory_growth_per_bad_record(base_settings: Settings) -> None:
    """60,000 bad records through one processor: allocated memory stays flat.

    Two measures: ``sys.getallocatedblocks`` over 50,000 records (cheap), and tracemalloc
    (bytes, but ~6x slower) over the last 5,000: a leak of even 4 bytes a record shows.
    """
    records = _corrupt_records(base_settings, 997)
    proc = _processor(base_settings)

    def feed(start: int, n: int) -> None:
        for i in range(start, start + n):
            proc.process(records[i % len(records)], b"k", TOPIC, i % 6, i, None, now_ms=NOW)

    feed(0, 5_000)  # warm-up: caches, interned strings, the schema parsers
    gc.collect()
    blocks_before = sys.getallocatedblocks()
    feed(5_000, 50_000)
    gc.collect()
    grown_blocks = sys.getallocatedblocks() - blocks_before
    assert grown_blocks < 1_000, f"{grown_blocks} blocks more after 50,000 bad records"
    tracemalloc.start()
    try:
        feed(55_000, 1_000)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        feed(56_000, 5_000)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 20_000, f"{after - before} bytes more after 5,000 bad records"


def test_avro_writer_schema_fields_roundtrip_sanity() -> None:
    """The fixtures above encode what they claim (guards the tests, not the code)."""
    event = _event()
    buf = io.BytesIO()
    schemaless_writer(buf, V2.parsed, event)
    assert _avro(event)[10:] == buf.getvalue()
    assert _avro(event)[2:10] == V2.fingerprint and _avro_v1(event)[2:10] == V1.fingerprint
