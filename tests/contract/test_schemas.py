"""Contract of the shipped Avro schemas: they parse, are documented, round-trip, and evolve.

The evolution proof uses real bytes: data written with ViewingEvent v1 is read with v2 and the
other way round, by fastavro's resolver, and ``streamproc schemas check`` agrees with it.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from click.testing import CliRunner
from fastavro import schemaless_reader, schemaless_writer

from streamproc.cli import root
from streamproc.config import Settings
from streamproc.emit.encode import SINGLE_OBJECT_MARKER, Encoder
from streamproc.errors import SchemaError
from streamproc.ingest.schemas import SchemaSet, SchemaVersion, load_schemas
from streamproc.testing import make_viewing_event

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted((REPO / "schemas").glob("*/v*.avsc"))
V2_ONLY = {"seq", "experiment"}
V2_ONLY_NETWORK = {"isp"}
V2_ONLY_PLAYBACK = {"dropped_frames"}


def all_versions(schemas: SchemaSet) -> Iterator[SchemaVersion]:
    for versions in schemas.versions.values():
        yield from versions


# --- every file parses and is documented --------------------------------------------------------


def test_schema_files_exist() -> None:
    assert len(SCHEMA_FILES) >= 6
    assert {p.parent.name for p in SCHEMA_FILES} >= {
        "viewing_event",
        "prediction",
        "drift_signal",
        "dead_letter",
        "model_snapshot",
    }


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_avsc_parses_with_fastavro(path: Path) -> None:
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw)
    assert isinstance(parsed, dict) and parsed["type"] == "record"
    assert raw["namespace"] == "streamproc"


def walk_records(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record definition inside ``schema``, with its path."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_records(branch, where)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            yield where, schema
            for f in schema["fields"]:
                yield from walk_records(f["type"], f"{where}.{f['name']}")
        elif kind == "array":
            yield from walk_records(schema["items"], f"{where}[]")
        elif kind == "map":
            yield from walk_records(schema["values"], f"{where}{{}}")


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_record_and_field_has_a_doc(path: Path) -> None:
    raw = json.loads(path.read_text())
    undocumented = []
    for where, rec in walk_records(raw, raw["name"]):
        if not str(rec.get("doc", "")).strip():
            undocumented.append(f"{where} (record {rec['name']})")
        for f in rec["fields"]:
            # A field of an inline named type may carry its doc on the type (as the enums
            # and nested records of ViewingEvent do); Avro tools show either.
            inline = f["type"] if isinstance(f["type"], dict) else {}
            if not any(str(d.get("doc", "")).strip() for d in (f, inline)):
                undocumented.append(f"{where}.{f['name']}")
    assert undocumented == [], f"{path}: fields without a doc: {undocumented}"


# --- samples round-trip ---------------------------------------------------------------------


class Sampler:
    """A deterministic value for any Avro schema (fastavro-parsed form), non-null if it can."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}
        self.counter = 0

    def value(self, schema: Any) -> Any:
        self.counter += 1
        n = self.counter
        if isinstance(schema, list):
            non_null = [b for b in schema if b != "null"]
            return self.value(non_null[0]) if non_null else None
        if isinstance(schema, str):
            primitives: dict[str, Any] = {
                "null": None,
                "boolean": n % 2 == 0,
                "int": n,
                "long": 1_700_000_000_000 + n,
                "float": 0.5 * n,
                "double": 1.25 * n,
                "bytes": bytes([n % 256]) * 3,
                "string": f"s{n}",
            }
            return primitives[schema] if schema in primitives else self.value(self.named[schema])
        kind = schema["type"]
        if kind in ("record", "enum", "fixed"):
            self.named[schema["name"]] = schema
        if kind == "record":
            return {f["name"]: self.value(f["type"]) for f in schema["fields"]}
        if kind == "enum":
            return schema["symbols"][n % len(schema["symbols"])]
        if kind == "fixed":
            return b"\x07" * schema["size"]
        if kind == "array":
            return [self.value(schema["items"]), self.value(schema["items"])]
        if kind == "map":
            return {"k1": self.value(schema["values"])}
        return self.value(kind)  # {"type": "long"} and the like


def sample(version: SchemaVersion) -> dict[str, Any]:
    value = Sampler().value(version.parsed)
    assert isinstance(value, dict)
    return value


def read_avro(body: bytes, writer: SchemaVersion, reader: SchemaVersion | None) -> dict[str, Any]:
    """Decode an Avro body with fastavro, resolving ``writer`` to ``reader`` if given."""
    value = schemaless_reader(io.BytesIO(body), writer.parsed, reader.parsed if reader else None)
    assert isinstance(value, dict)
    return value


def test_every_version_round_trips_through_the_encoder_and_fastavro(schemas: SchemaSet) -> None:
    for version in all_versions(schemas):
        record = sample(version)
        data = Encoder(version).encode(record)
        assert data[:2] == SINGLE_OBJECT_MARKER == b"\xc3\x01", version.path
        assert data[2:10] == version.fingerprint, version.path
        assert schemas.by_fingerprint[data[2:10]] is version
        body = io.BytesIO()
        schemaless_writer(body, version.parsed, record)
        assert data[10:] == body.getvalue(), version.path
        assert read_avro(data[10:], version, None) == record


def test_a_realistic_viewing_event_round_trips(schemas: SchemaSet) -> None:
    event = make_viewing_event(rating=4, seq=3, experiment="arm-b")
    version = schemas.latest("ViewingEvent")
    data = Encoder(version).encode(event)
    assert data[:10] == b"\xc3\x01" + version.fingerprint
    assert read_avro(data[10:], version, None) == dict(event)


# --- evolution, proved with real bytes ---------------------------------------------------------


def as_v1(event: dict[str, Any]) -> dict[str, Any]:
    old = {k: v for k, v in copy.deepcopy(event).items() if k not in V2_ONLY}
    old["network"] = {k: v for k, v in old["network"].items() if k not in V2_ONLY_NETWORK}
    old["playback"] = {k: v for k, v in old["playback"].items() if k not in V2_ONLY_PLAYBACK}
    return old


def test_v1_bytes_are_read_as_v2_with_defaults(schemas: SchemaSet) -> None:
    v1, v2 = schemas.get("ViewingEvent", 1), schemas.get("ViewingEvent", 2)
    old_event = as_v1(dict(make_viewing_event(rating=5)))
    data = Encoder(v1).encode(old_event)
    assert schemas.by_fingerprint[data[2:10]] is v1

    read = read_avro(data[10:], v1, v2)

    assert read["seq"] is None
    assert read["experiment"] is None
    assert read["network"]["isp"] is None
    assert read["playback"]["dropped_frames"] is None
    assert as_v1(read) == old_event


def test_v2_bytes_are_read_with_the_v1_reader_dropping_new_fields(schemas: SchemaSet) -> None:
    v1, v2 = schemas.get("ViewingEvent", 1), schemas.get("ViewingEvent", 2)
    new_event: dict[str, Any] = dict(make_viewing_event(seq=7, experiment="arm-b", rating=3))
    new_event["network"] = {**new_event["network"], "isp": "isp-x"}
    new_event["playback"] = {**new_event["playback"], "dropped_frames": 12}
    data = Encoder(v2).encode(new_event)
    assert schemas.by_fingerprint[data[2:10]] is v2

    read = read_avro(data[10:], v2, v1)

    assert read == as_v1(new_event)
    assert "seq" not in read and "isp" not in read["network"]
    assert "dropped_frames" not in read["playback"]


# --- `streamproc schemas check` -------------------------------------------------------------


@pytest.fixture
def cli(settings: Settings) -> CliRunner:
    """A runner whose environment has no STREAMPROC_* variables (the settings fixture)."""
    del settings
    return CliRunner()


@pytest.mark.parametrize("mode", ["BACKWARD_TRANSITIVE", "FULL_TRANSITIVE"])
def test_schemas_check_passes_on_the_shipped_schemas(cli: CliRunner, mode: str) -> None:
    result = cli.invoke(root, ["schemas", "check", "--mode", mode, "--dir", str(REPO / "schemas")])
    assert result.exit_code == 0, result.output
    assert f"mode {mode}" in result.output
    assert "ViewingEvent (streamproc.ViewingEvent)" in result.output
    v2 = load_schemas(REPO / "schemas").get("ViewingEvent", 2)
    assert f"v2  {v2.fingerprint_hex}  v2.avsc  reader" in result.output
    assert "INCOMPATIBLE" not in result.output


def test_schemas_check_defaults_to_the_configured_mode(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMPROC_SCHEMA_COMPATIBILITY", "FULL_TRANSITIVE")
    result = cli.invoke(root, ["schemas", "check", "--dir", str(REPO / "schemas")])
    assert result.exit_code == 0, result.output
    assert "mode FULL_TRANSITIVE" in result.output


def schemas_with_v3(tmp_path: Path, change: Any) -> Path:
    root_dir = tmp_path / "schemas"
    shutil.copytree(REPO / "schemas", root_dir)
    v3 = json.loads((root_dir / "viewing_event" / "v2.avsc").read_text())
    change(v3)
    (root_dir / "viewing_event" / "v3.avsc").write_text(json.dumps(v3, indent=2))
    return root_dir


def add_required_playback_field(schema: dict[str, Any]) -> None:
    playback = next(f for f in schema["fields"] if f["name"] == "playback")
    playback["type"]["fields"].append(
        {"name": "stall_ms", "type": "long", "doc": "Longest stall, ms."}
    )


def test_schemas_check_fails_on_a_new_required_field(cli: CliRunner, tmp_path: Path) -> None:
    folder = schemas_with_v3(tmp_path, add_required_playback_field)
    result = cli.invoke(root, ["schemas", "check", "--dir", str(folder)])
    assert result.exit_code == 1
    assert (
        "INCOMPATIBLE: v3 cannot read data written with v1: ViewingEvent.playback.stall_ms: "
        "reader (v3) field has no default and the writer (v1) lacks it"
    ) in result.output
    assert "v3 cannot read data written with v2: ViewingEvent.playback.stall_ms" in result.output
    assert isinstance(result.exception, SchemaError)
    assert "ViewingEvent.playback.stall_ms" in str(result.exception)
    assert "BACKWARD_TRANSITIVE" in str(result.exception)


def test_schemas_check_via_main_prints_the_error_and_exits_1(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamproc.cli import main

    folder = schemas_with_v3(tmp_path, add_required_playback_field)
    with pytest.raises(SystemExit) as exit_info:
        main(["schemas", "check", "--dir", str(folder)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("SchemaError: 2 incompatible change(s) under BACKWARD_TRANSITIVE")
    assert "ViewingEvent.playback.stall_ms" in err


def test_removing_a_required_field_passes_backward_but_not_full(
    cli: CliRunner, tmp_path: Path
) -> None:
    def drop_region(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "region"]

    folder = str(schemas_with_v3(tmp_path, drop_region))
    backward = cli.invoke(root, ["schemas", "check", "--mode", "BACKWARD", "--dir", folder])
    assert backward.exit_code == 0, backward.output
    full = cli.invoke(root, ["schemas", "check", "--mode", "FULL_TRANSITIVE", "--dir", folder])
    assert full.exit_code == 1
    assert "v1 cannot read data written with v3: ViewingEvent.region" in full.output
    assert "v2 cannot read data written with v3: ViewingEvent.region" in full.output


def test_schemas_list_and_show(cli: CliRunner) -> None:
    folder = str(REPO / "schemas")
    listed = cli.invoke(root, ["schemas", "list", "--dir", folder])
    assert listed.exit_code == 0, listed.output
    schemas = load_schemas(REPO / "schemas")
    for version in all_versions(schemas):
        assert version.fingerprint_hex in listed.output
    assert "Prediction (streamproc.Prediction)" in listed.output

    shown = cli.invoke(
        root, ["schemas", "show", "viewing_event", "--version", "1", "--dir", folder]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == schemas.get("ViewingEvent", 1).raw

    missing = cli.invoke(root, ["schemas", "show", "Nope", "--dir", folder])
    assert missing.exit_code == 1
    assert isinstance(missing.exception, SchemaError)
    assert "known: DeadLetter" in str(missing.exception)
