"""Records -> bytes: Avro single-object encoding (default) or JSON.

Single-object encoding is ``C3 01`` + the writer schema's 8-byte CRC-64-AVRO fingerprint
(little-endian) + the Avro binary body, so a reader needs no registry: it finds the writer
schema among the known versions by fingerprint (see ``streamproc.ingest.decode``).
"""

from __future__ import annotations

import base64
import io
import math
import reprlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from fastavro import schemaless_writer

from streamproc.config import OutputFormat
from streamproc.errors import EventError
from streamproc.ingest.schemas import SchemaSet, SchemaVersion

__all__ = ["SINGLE_OBJECT_MARKER", "Encoder", "SchemaViolationError", "check_against_schema"]

SINGLE_OBJECT_MARKER = b"\xc3\x01"


class SchemaViolationError(EventError):
    """A record does not match the Avro schema it is to be written with."""

    reason = "schema_violation"

    def __init__(self, path: str, expected: str, value: object, *, record: str) -> None:
        self.path, self.expected, self.value = path, expected, value
        shown = _short_repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        kind = "" if isinstance(value, _Missing) else f" ({type(value).__name__})"
        super().__init__(f'{record} field "{path}" must be {expected}, got {shown}{kind}')


# Containers are shown a few levels deep only: JSON input may nest up to orjson's limit of
# 1024 levels, deeper than the recursion limit of the plain repr() (RecursionError).
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 8
_REPR.maxdict = 4


def _short_repr(value: object) -> str:
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return _REPR.repr(value)
    return repr(value)


class _Missing:
    def __repr__(self) -> str:
        return "nothing (the field is missing)"


_MISSING = _Missing()

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.rsplit(".", 1)[-1]
    if isinstance(schema, list):
        return " or ".join(_describe(s) for s in schema)
    kind = schema["type"]
    if kind == "enum":
        return "one of " + ", ".join(schema["symbols"])
    if kind in ("record", "error"):
        return f"a {schema['name'].rsplit('.', 1)[-1]} object"
    if kind == "array":
        return f"an array of {_describe(schema['items'])}"
    if kind == "map":
        return f"a map of {_describe(schema['values'])}"
    return str(kind)


def _matches(schema: Any, value: Any) -> bool:
    try:
        _check(schema, value, "", "")
    except SchemaViolationError:
        return False
    return True


def _check(schema: Any, value: Any, path: str, record: str) -> None:
    """Raise SchemaViolationError naming the first field of ``value`` that ``schema`` refuses."""
    if isinstance(schema, list):
        if not any(_matches(branch, value) for branch in schema):
            # Report inside the one non-null branch when there is exactly one (optional field).
            others = [b for b in schema if b != "null"]
            if len(others) == 1 and value is not None:
                _check(others[0], value, path, record)
            raise SchemaViolationError(path, _describe(schema), value, record=record)
        return
    kind = schema if isinstance(schema, str) else schema["type"]
    ok: bool
    if kind == "null":
        ok = value is None
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in ("int", "long"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok:
            lo, hi = _INT_RANGE[kind]
            ok = lo <= value <= hi
    elif kind in ("float", "double"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind in ("bytes", "fixed"):
        ok = isinstance(value, (bytes, bytearray))
        if ok and kind == "fixed":
            ok = len(value) == schema["size"]
    elif kind == "enum":
        ok = value in schema["symbols"]
    elif kind == "array":
        ok = isinstance(value, list)
        if ok:
            for i, item in enumerate(value):
                _check(schema["items"], item, f"{path}[{i}]", record)
    elif kind == "map":
        ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
        if ok:
            for k, item in value.items():
                _check(schema["values"], item, f"{path}[{k!r}]", record)
    elif kind in ("record", "error"):
        ok = isinstance(value, Mapping)
        if ok:
            for fld in schema["fields"]:
                name = fld["name"]
                sub = f"{path}.{name}" if path else name
                if name not in value:
                    if "default" in fld:
                        continue
                    raise SchemaViolationError(sub, _describe(fld["type"]), _MISSING, record=record)
                _check(fld["type"], value[name], sub, record)
    else:  # a named type reference resolved by fastavro's parse_schema is a dict, not a str
        ok = True
    if not ok:
        raise SchemaViolationError(path or "(record)", _describe(schema), value, record=record)


def check_against_schema(version: SchemaVersion, record: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaViolationError` if ``record`` cannot be written with ``version``.

    >>> from streamproc.config import load_settings
    >>> from streamproc.ingest.schemas import load_schemas
    >>> prediction = load_schemas(load_settings().schemas_path).latest("Prediction")
    >>> try:
    ...     check_against_schema(prediction, {"event_id": 7})
    ... except SchemaViolationError as exc:
    ...     print(exc)
    ?: Prediction field "event_id" must be string, got 7 (int)
    """
    _check(version.parsed, record, "", version.short_name)


def _json_default(value: Any) -> Any:
    # JSON has no bytes: bytes fields (a dead letter's payload) are written as base64.
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError


def _to_millis(record: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``record`` with top-level datetimes as epoch milliseconds."""
    return {
        k: (int(v.timestamp() * 1000) if isinstance(v, datetime) else v) for k, v in record.items()
    }


class Encoder:
    """Encode records of one schema version to bytes.

    Parameters
    ----------
    version
        The writer schema.
    fmt
        ``avro`` (single-object encoding) or ``json`` (orjson; NaN is refused).
    check
        Check each record against the schema first, for a precise error naming the field.
        Producers of external input keep it on; the agents' own records skip it.
    header
        Bytes before each Avro body instead of the single-object header (the Confluent wire
        format's magic byte and schema id: see ``streamproc.ingest.registry``).
    """

    def __init__(
        self,
        version: SchemaVersion,
        fmt: OutputFormat = "avro",
        *,
        check: bool = True,
        header: bytes | None = None,
    ):
        self.version = version
        self.fmt = fmt
        self.check = check
        # Avro framing: single-object by default; the Confluent wire format passes its own.
        self._header = header if header is not None else SINGLE_OBJECT_MARKER + version.fingerprint

    @classmethod
    def for_record(
        cls, schemas: SchemaSet, record: str, fmt: OutputFormat = "avro", *, check: bool = True
    ) -> Encoder:
        """An encoder for the latest version of ``record``."""
        return cls(schemas.latest(record), fmt, check=check)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The bytes of ``record``.

        Raises
        ------
        SchemaViolationError
            When ``check`` is on and the record does not fit the schema.
        """
        if any(isinstance(v, datetime) for v in record.values()):
            record = _to_millis(record)
        if self.check:
            check_against_schema(self.version, record)
        if self.fmt == "json":
            if self.check:
                _refuse_non_finite(record, self.version.short_name)
            return orjson.dumps(record, default=_json_default)
        buf = io.BytesIO()
        buf.write(self._header)
        schemaless_writer(buf, self.version.parsed, record)
        return buf.getvalue()


def _refuse_non_finite(value: Any, record: str, path: str = "") -> None:
    # JSON has no NaN or infinity; orjson would write null, changing the value silently.
    if isinstance(value, float) and not math.isfinite(value):
        raise SchemaViolationError(
            path, "a finite number (JSON has no NaN/inf)", value, record=record
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _refuse_non_finite(v, record, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_non_finite(v, record, f"{path}[{i}]")
