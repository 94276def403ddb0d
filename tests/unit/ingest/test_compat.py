"""Avro schema-resolution compatibility: each case names the exact field path that breaks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from streamproc.errors import SchemaError
from streamproc.ingest.compat import (
    MODES,
    CompatibilityMode,
    Incompatibility,
    check_compatibility,
    check_evolution,
    pairs_to_check,
)
from streamproc.ingest.schemas import SchemaSet, load_schemas

REPO = Path(__file__).resolve().parents[3]


def record(name: str, *fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def paths(found: list[Incompatibility]) -> list[str]:
    return [i.path for i in found]


def check(reader: Any, writer: Any) -> list[Incompatibility]:
    return check_compatibility(reader, writer, reader_label="v2", writer_label="v1")


BASE = record("Event", field("id", "string"), field("n", "int"))


# --- records ----------------------------------------------------------------------------------


def test_identical_schemas_are_compatible() -> None:
    assert check(BASE, BASE) == []


def test_added_field_with_default_reads_old_data() -> None:
    new = record("Event", field("id", "string"), field("n", "int"), field("x", "long", default=0))
    assert check(new, BASE) == []


def test_added_field_without_default_breaks_backward() -> None:
    new = record("Event", field("id", "string"), field("n", "int"), field("x", "long"))
    assert check(new, BASE) == [
        Incompatibility("Event.x", "reader (v2) field has no default and the writer (v1) lacks it")
    ]


def test_removed_field_is_ignored_by_the_reader() -> None:
    new = record("Event", field("id", "string"))
    assert check(new, BASE) == []


def test_removed_field_without_default_breaks_the_old_reader() -> None:
    new = record("Event", field("id", "string"))
    found = check_compatibility(BASE, new, reader_label="v1", writer_label="v2")
    assert paths(found) == ["Event.n"]
    assert found[0].message == "reader (v1) field has no default and the writer (v2) lacks it"


def test_renamed_field_matches_through_a_reader_alias() -> None:
    new = record("Event", field("id", "string"), field("count", "int", aliases=["n"]))
    assert check(new, BASE) == []
    no_alias = record("Event", field("id", "string"), field("count", "int"))
    assert paths(check(no_alias, BASE)) == ["Event.count"]


def test_record_name_must_match_unqualified_or_by_alias() -> None:
    other_ns = {**BASE, "namespace": "elsewhere"}
    assert check(other_ns, BASE) == []
    renamed = {**BASE, "name": "Renamed"}
    found = check(renamed, BASE)
    assert paths(found) == ["Renamed"]
    assert "'Renamed'" in found[0].message and "'Event'" in found[0].message
    assert check({**renamed, "aliases": ["Event"]}, BASE) == []


def test_nested_record_change_names_the_nested_path() -> None:
    def event(rebuffer: str) -> dict[str, Any]:
        playback = record("Playback", field("position_s", "double"), field("rebuffer_ms", rebuffer))
        return record("ViewingEvent", field("playback", playback))

    found = check(event("int"), event("long"))
    assert paths(found) == ["ViewingEvent.playback.rebuffer_ms"]
    assert found[0].message == "the reader (v2) type int cannot read the writer (v1) type long"


def test_change_inside_a_nullable_record_names_the_inner_field() -> None:
    def event(genre: str) -> dict[str, Any]:
        title = record("Title", field("genre", genre))
        return record("ViewingEvent", field("title", ["null", title], default=None))

    assert paths(check(event("int"), event("string"))) == ["ViewingEvent.title.genre"]


def test_recursive_record_terminates() -> None:
    node = record("Node", field("value", "int"), field("next", ["null", "t.Node"], default=None))
    wider = copy.deepcopy(node)
    wider["fields"][0]["type"] = "long"
    assert check(wider, node) == []
    assert paths(check(node, wider)) == ["Node.value"]


# --- primitives and promotions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_promotions_are_readable(writer: str, reader: str) -> None:
    assert check(record("E", field("v", reader)), record("E", field("v", writer))) == []


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("long", "int"),
        ("double", "float"),
        ("float", "long"),
        ("string", "int"),
        ("int", "boolean"),
    ],
)
def test_narrowing_breaks(writer: str, reader: str) -> None:
    found = check(record("E", field("v", reader)), record("E", field("v", writer)))
    assert paths(found) == ["E.v"]
    assert found[0].message == (
        f"the reader (v2) type {reader} cannot read the writer (v1) type {writer}"
    )


def test_logical_types_resolve_as_their_underlying_type() -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    assert check(record("E", field("t", millis)), record("E", field("t", "long"))) == []
    assert check(record("E", field("t", "long")), record("E", field("t", "int"))) == []


# --- enums ------------------------------------------------------------------------------------


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Kind", "symbols": list(symbols), **extra}


def test_enum_symbol_added_in_the_reader_is_fine() -> None:
    old, new = enum("a", "b"), enum("a", "b", "c")
    assert check(record("E", field("k", new)), record("E", field("k", old))) == []


def test_enum_symbol_the_reader_lacks_breaks_without_default() -> None:
    old, new = enum("a", "b"), enum("a", "b", "c")
    found = check_compatibility(
        record("E", field("k", old)),
        record("E", field("k", new)),
        reader_label="v1",
        writer_label="v2",
    )
    assert paths(found) == ["E.k"]
    assert found[0].message == (
        "the writer (v2) enum Kind has symbols c that the reader (v1) lacks, and the reader "
        "enum has no default"
    )


def test_enum_symbol_the_reader_lacks_is_fine_with_an_enum_default() -> None:
    old, new = enum("a", "other", default="other"), enum("a", "b", "other", default="other")
    assert check(record("E", field("k", old)), record("E", field("k", new))) == []


def test_enum_symbol_removed_breaks_reading_old_data() -> None:
    old, new = enum("a", "b"), enum("a")
    assert paths(check(record("E", field("k", new)), record("E", field("k", old)))) == ["E.k"]


# --- unions -----------------------------------------------------------------------------------


def test_union_widening_reads_old_data() -> None:
    old = record("E", field("v", ["null", "string"], default=None))
    new = record("E", field("v", ["null", "string", "long"], default=None))
    assert check(new, old) == []


def test_union_narrowing_breaks() -> None:
    old = record("E", field("v", ["null", "string", "long"], default=None))
    new = record("E", field("v", ["null", "string"], default=None))
    found = check(new, old)
    assert paths(found) == ["E.v"]
    assert "may write long" in found[0].message
    assert "[null, string]" in found[0].message


def test_plain_type_made_optional_reads_old_data_but_not_the_reverse() -> None:
    plain = record("E", field("v", "string"))
    optional = record("E", field("v", ["null", "string"], default=None))
    assert check(optional, plain) == []
    found = check(plain, optional)
    assert paths(found) == ["E.v"]
    assert "may write null" in found[0].message


def test_writer_type_promoted_into_a_reader_union_branch() -> None:
    old = record("E", field("v", "int"))
    new = record("E", field("v", ["null", "double"], default=None))
    assert check(new, old) == []
    gone = record("E", field("v", ["null", "string"], default=None))
    found = check(gone, old)
    assert paths(found) == ["E.v"]
    assert found[0].message == (
        "the reader (v2) union [null, string] has no branch that can read the writer (v1) type int"
    )


# --- arrays, maps, fixed ------------------------------------------------------------------------


def test_array_items_and_map_values_resolve_recursively() -> None:
    old = record(
        "E",
        field("xs", {"type": "array", "items": "int"}),
        field("m", {"type": "map", "values": "float"}),
    )
    wider = record(
        "E",
        field("xs", {"type": "array", "items": "long"}),
        field("m", {"type": "map", "values": "double"}),
    )
    assert check(wider, old) == []
    assert paths(check(old, wider)) == ["E.xs[]", "E.m{}"]


def test_array_of_records_names_the_item_field() -> None:
    def event(t: str) -> dict[str, Any]:
        item = record("Item", field("q", t))
        return record("E", field("items", {"type": "array", "items": item}))

    assert paths(check(event("int"), event("long"))) == ["E.items[].q"]


def test_array_is_not_a_map() -> None:
    old = record("E", field("v", {"type": "array", "items": "int"}))
    new = record("E", field("v", {"type": "map", "values": "int"}))
    found = check(new, old)
    assert found[0].message == (
        "the reader (v2) type map<int> cannot read the writer (v1) type array<int>"
    )


def test_fixed_size_and_name() -> None:
    def event(size: int, name: str = "Hash") -> dict[str, Any]:
        return record("E", field("h", {"type": "fixed", "name": name, "size": size}))

    assert check(event(16), event(16)) == []
    found = check(event(32), event(16))
    assert paths(found) == ["E.h"]
    assert found[0].message == "fixed Hash has size 32 in the reader (v2) and 16 in the writer (v1)"
    assert paths(check(event(16, "Digest"), event(16))) == ["E.h"]


def test_named_type_reference_is_resolved() -> None:
    kind = enum("a", "b")
    old = record("E", field("k1", kind), field("k2", "Kind"))
    new = record("E", field("k1", enum("a")), field("k2", "Kind"))
    assert paths(check(new, old)) == ["E.k1", "E.k2"]


def test_unknown_reference_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="unknown type 'Nope'"):
        check(record("E", field("v", "Nope")), BASE)


def test_several_problems_are_all_reported() -> None:
    new = record("Event", field("id", "int"), field("n", "int"), field("x", "string"))
    assert paths(check(new, BASE)) == ["Event.id", "Event.x"]


# --- modes ------------------------------------------------------------------------------------


def test_pairs_for_each_mode() -> None:
    assert pairs_to_check(3, "BACKWARD") == [(2, 1), (3, 2)]
    assert pairs_to_check(3, "BACKWARD_TRANSITIVE") == [(2, 1), (3, 1), (3, 2)]
    assert pairs_to_check(3, "FORWARD") == [(1, 2), (2, 3)]
    assert pairs_to_check(3, "FORWARD_TRANSITIVE") == [(1, 2), (1, 3), (2, 3)]
    assert pairs_to_check(3, "FULL") == [(2, 1), (1, 2), (3, 2), (2, 3)]
    assert pairs_to_check(1, "FULL_TRANSITIVE") == []


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(SchemaError, match="unknown compatibility mode 'SIDEWAYS'"):
        pairs_to_check(2, "SIDEWAYS")  # type: ignore[arg-type]


def write_versions(root: Path, *versions: dict[str, Any]) -> SchemaSet:
    folder = root / "event"
    folder.mkdir(parents=True)
    for n, schema in enumerate(versions, start=1):
        (folder / f"v{n}.avsc").write_text(json.dumps(schema))
    return load_schemas(root)


def test_removed_field_passes_backward_but_fails_full(tmp_path: Path) -> None:
    schemas = write_versions(tmp_path, BASE, record("Event", field("id", "string")))
    assert check_evolution(schemas, "BACKWARD") == []
    assert check_evolution(schemas, "BACKWARD_TRANSITIVE") == []
    problems = check_evolution(schemas, "FULL")
    assert [(p.reader, p.writer, p.path) for p in problems] == [(1, 2, "Event.n")]
    assert str(problems[0]) == (
        "Event v1 cannot read data written with v2 (FULL): Event.n: reader (v1) field has no "
        "default and the writer (v2) lacks it"
    )


def test_transitive_mode_catches_what_the_adjacent_one_misses(tmp_path: Path) -> None:
    # v1 -> v2 drops n; v2 -> v3 brings n back as a string: each step reads its predecessor,
    # but v3 cannot read v1's int n.
    v2 = record("Event", field("id", "string"))
    v3 = record("Event", field("id", "string"), field("n", "string", default=""))
    schemas = write_versions(tmp_path, BASE, v2, v3)
    assert check_evolution(schemas, "BACKWARD") == []
    problems = check_evolution(schemas, "BACKWARD_TRANSITIVE")
    assert [(p.reader, p.writer, p.path) for p in problems] == [(3, 1, "Event.n")]


@pytest.mark.parametrize("mode", MODES)
def test_shipped_schemas_pass_every_mode(mode: CompatibilityMode) -> None:
    assert check_evolution(load_schemas(REPO / "schemas"), mode) == []


def test_viewing_event_v1_and_v2_are_compatible_both_ways(schemas: SchemaSet) -> None:
    v1, v2 = schemas.get("ViewingEvent", 1).raw, schemas.get("ViewingEvent", 2).raw
    assert check_compatibility(v2, v1) == []
    assert check_compatibility(v1, v2) == []


def test_required_field_added_deep_in_viewing_event(schemas: SchemaSet) -> None:
    v3 = copy.deepcopy(schemas.get("ViewingEvent", 2).raw)
    playback = next(f for f in v3["fields"] if f["name"] == "playback")
    playback["type"]["fields"].append(field("stall_ms", "long", doc="x"))
    found = check_compatibility(
        v3, schemas.get("ViewingEvent", 1).raw, reader_label="v3", writer_label="v1"
    )
    assert [str(i) for i in found] == [
        "ViewingEvent.playback.stall_ms: reader (v3) field has no default and the writer (v1) "
        "lacks it"
    ]


# --- agreement with the reference checker (Apache avro's port of Java's SchemaCompatibility) --

ORACLE_CASES: list[tuple[Any, Any]] = [
    (BASE, BASE),
    (record("Event", field("id", "string"), field("n", "int"), field("x", "long")), BASE),
    (
        record("Event", field("id", "string"), field("n", "int"), field("x", "long", default=0)),
        BASE,
    ),
    (BASE, record("Event", field("id", "string"))),
    (record("E", field("v", "long")), record("E", field("v", "int"))),
    (record("E", field("v", "int")), record("E", field("v", "long"))),
    (record("E", field("v", "bytes")), record("E", field("v", "string"))),
    (record("E", field("k", enum("a"))), record("E", field("k", enum("a", "b")))),
    (record("E", field("k", enum("a", "z", default="z"))), record("E", field("k", enum("a", "b")))),
    (
        record("E", field("v", ["null", "string"], default=None)),
        record("E", field("v", ["null", "string", "long"], default=None)),
    ),
    (
        record("E", field("v", ["null", "string", "long"], default=None)),
        record("E", field("v", ["null", "string"], default=None)),
    ),
    (record("E", field("v", "string")), record("E", field("v", ["null", "string"], default=None))),
    (record("E", field("v", ["null", "double"], default=None)), record("E", field("v", "int"))),
    (
        record("E", field("h", {"type": "fixed", "name": "H", "size": 4})),
        record("E", field("h", {"type": "fixed", "name": "H", "size": 8})),
    ),
    (
        record("E", field("xs", {"type": "array", "items": "int"})),
        record("E", field("xs", {"type": "array", "items": "long"})),
    ),
    (
        record("E", field("m", {"type": "map", "values": "double"})),
        record("E", field("m", {"type": "map", "values": "float"})),
    ),
]


def test_verdicts_agree_with_apache_avro() -> None:
    """Runs where the ``avro`` package is installed (it is not a dependency of streamproc)."""
    compatibility = pytest.importorskip("avro.compatibility")
    avro_schema = pytest.importorskip("avro.schema")
    for reader, writer in ORACLE_CASES:
        result = compatibility.ReaderWriterCompatibilityChecker().get_compatibility(
            avro_schema.parse(json.dumps(reader)), avro_schema.parse(json.dumps(writer))
        )
        theirs = result.compatibility is compatibility.SchemaCompatibilityType.compatible
        ours = check_compatibility(reader, writer) == []
        assert ours == theirs, (reader, writer, result.messages)
