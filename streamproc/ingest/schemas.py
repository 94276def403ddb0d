"""Load the versioned Avro schemas in ``schemas/`` once, and index them by fingerprint.

Layout: ``schemas/<snake_case(record)>/v<N>.avsc``; the highest version of a record is the
reader schema every consumer resolves to. Each version is known by its CRC-64-AVRO
fingerprint of the Parsing Canonical Form: the 8 bytes that follow the ``C3 01`` marker of
Avro single-object encoding.

Decoding keeps ``timestamp-millis`` fields as integer milliseconds: fastavro converts logical
types as the *writer* schema says, so the parsed copies used for encoding and decoding have
their logical types stripped. The canonical form ignores ``logicalType``, so the fingerprints
are the same as those of the files.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import orjson
from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamproc.errors import SchemaError

__all__ = [
    "SchemaSet",
    "SchemaVersion",
    "load_schemas",
    "record_dir_name",
]

_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


def record_dir_name(record_name: str) -> str:
    """snake_case folder name of a record: ``ViewingEvent`` -> ``viewing_event``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", record_name).lower()


def _strip_logical_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
        return out
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    return schema


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one record schema."""

    name: str  # full name, e.g. streamproc.ViewingEvent
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False)  # as in the file (with docs and logical types)
    parsed: dict[str, Any] = field(repr=False)  # fastavro-parsed, logical types stripped
    canonical: str = field(repr=False)
    fingerprint: bytes = field(repr=False)  # 8 bytes, little-endian CRC-64-AVRO

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits, in the byte order it has on the wire."""
        return self.fingerprint.hex()

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class SchemaSet:
    """Every known version of every record, indexed by record name and by fingerprint."""

    root: Path
    versions: dict[str, tuple[SchemaVersion, ...]]  # short name -> versions, ascending
    by_fingerprint: dict[bytes, SchemaVersion]

    def latest(self, record: str) -> SchemaVersion:
        """The reader (highest) version of ``record`` (short name, e.g. ``ViewingEvent``)."""
        try:
            return self.versions[record][-1]
        except KeyError:
            known = ", ".join(sorted(self.versions)) or "none"
            raise SchemaError(
                f"no schema for record {record!r} in {self.root} (known: {known})"
            ) from None

    def get(self, record: str, version: int) -> SchemaVersion:
        """Version ``version`` of ``record``."""
        for v in self.versions.get(record, ()):
            if v.version == version:
                return v
        have = [v.version for v in self.versions.get(record, ())]
        raise SchemaError(f"no version {version} of {record!r} in {self.root} (have {have})")


def _load_file(path: Path, version: int) -> SchemaVersion:
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise SchemaError(f"{path}: expected an Avro record schema at the top level")
    try:
        # A record schema parses to a dict (fastavro's return type also admits str and list).
        parsed = cast(dict[str, Any], parse_schema(_strip_logical_types(copy.deepcopy(raw))))
        parse_schema(copy.deepcopy(raw))  # the file itself must be valid too
        canonical = to_parsing_canonical_form(raw)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc
    # fastavro's hex spells the bytes little-endian already, as single-object encoding
    # stores them ("int" -> 8f5c393f1ad57572 for the spec's 0x7275d51a3f395c8f).
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    name = parsed["name"]
    return SchemaVersion(name, version, path, raw, parsed, canonical, fp)


@cache
def load_schemas(root: Path) -> SchemaSet:
    """Parse every ``<record>/v<N>.avsc`` under ``root`` (cached per folder).

    Raises
    ------
    SchemaError
        When the folder is missing, a file is not a valid schema, versions are not numbered
        1..N, or a file's record name does not match its folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise SchemaError(f"schema folder {root} does not exist (set STREAMPROC_SCHEMAS_DIR)")
    versions: dict[str, tuple[SchemaVersion, ...]] = {}
    by_fp: dict[bytes, SchemaVersion] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        found: list[SchemaVersion] = []
        for path in sorted(folder.iterdir()):
            match = _VERSION_FILE.match(path.name)
            if match is None:
                continue
            found.append(_load_file(path, int(match.group(1))))
        if not found:
            continue
        found.sort(key=lambda v: v.version)
        numbers = [v.version for v in found]
        if numbers != list(range(1, len(found) + 1)):
            raise SchemaError(f"{folder}: versions must be v1..vN without gaps, got {numbers}")
        short = found[0].short_name
        for v in found:
            if v.short_name != short or record_dir_name(short) != folder.name:
                raise SchemaError(
                    f"{v.path}: record {v.name!r} does not belong in folder {folder.name!r} "
                    f"(expected record {short!r} in folder {record_dir_name(short)!r})"
                )
            other = by_fp.get(v.fingerprint)
            if other is not None and other.name == v.name:
                raise SchemaError(
                    f"{v.path}: same canonical form as {other.path}; a new version must change "
                    "the schema"
                )
            by_fp[v.fingerprint] = v
        versions[short] = tuple(found)
    if not versions:
        raise SchemaError(f"no schemas (<record>/v<N>.avsc) found under {root}")
    return SchemaSet(root, versions, by_fp)
