"""Schema evolution checks: can a reader with schema R read data written with schema W?

Input: two Avro schemas (parsed JSON, as in the ``.avsc`` files), or a :class:`SchemaSet` and a
compatibility mode. Output: a list of :class:`Incompatibility` / :class:`Problem`, each naming
the field path that breaks (``ViewingEvent.playback.rebuffer_ms``) and why; empty = compatible.

The rules are those of the Avro specification, "Schema Resolution":

- records match by unqualified name (or a reader alias); fields match by name or a reader
  field's alias; a reader field the writer lacks needs a default; writer fields the reader
  lacks are skipped;
- enums match by name; a writer symbol the reader lacks needs the reader enum's ``default``;
- fixed types match by name and size;
- arrays and maps resolve their items / values recursively;
- ``int`` is promoted to ``long``, ``float`` and ``double``; ``long`` to ``float`` and
  ``double``; ``float`` to ``double``; ``string`` and ``bytes`` read each other;
- every branch of a writer union must be readable: by the reader type, or by the branch of a
  reader union the resolver would pick (an exact match first, then a promotion); a non-union
  writer type must be readable by some branch of a reader union.

Not covered: logical types are ignored (as in resolution itself: ``timestamp-millis`` is read
as its ``long``), the *values* of field defaults are not checked against their types (fastavro's
``parse_schema`` does that when the schemas are loaded), and writer-side aliases are not used
(the specification applies the reader's aliases only).

Why this is hand-written: fastavro resolves a writer schema to a reader schema at read time but
has no checker that compares two schemas without data. The Apache ``avro`` package (1.12) does
ship one, ``avro.compatibility.ReaderWriterCompatibilityChecker`` (a port of Java's
``SchemaCompatibility``), and the tests compare this module's verdicts with it. It is not used
here because its result cannot name the field that breaks: messages and locations come back as
two unordered sets (``{"x"}``, ``{"/fields/14"}``) that cannot be paired when there are several
problems, and a change inside a record wrapped in a nullable union collapses to "reader union
lacking writer type: RECORD" at the union. ``streamproc schemas check`` exists to say which
field of which version breaks, so it walks the schemas itself.

Modes (as in Confluent Schema Registry), applied to each new version vN of a record in turn:
``BACKWARD`` vN reads v(N-1); ``BACKWARD_TRANSITIVE`` vN reads every earlier version;
``FORWARD`` v(N-1) reads vN; ``FORWARD_TRANSITIVE`` every earlier version reads vN; ``FULL``
both ``BACKWARD`` and ``FORWARD``; ``FULL_TRANSITIVE`` both transitive modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from streamproc.errors import SchemaError
from streamproc.ingest.schemas import SchemaSet, SchemaVersion

__all__ = [
    "MODES",
    "CompatibilityMode",
    "Incompatibility",
    "Problem",
    "check_compatibility",
    "check_evolution",
    "check_versions",
    "pairs_to_check",
]

CompatibilityMode = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
]
MODES: tuple[CompatibilityMode, ...] = get_args(CompatibilityMode)

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types that can read it (besides itself)
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a reader schema cannot read data of a writer schema.

    Parameters
    ----------
    path
        Where, as ``Record.field.subfield`` (``[]`` for array items, ``{}`` for map values).
    message
        What breaks, naming the reader's and the writer's side.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Problem:
    """An incompatibility between two versions of one record, found by :func:`check_evolution`.

    ``reader`` cannot read data written with ``writer``; ``mode`` is the rule that asked for it.
    """

    record: str
    reader: int
    writer: int
    mode: CompatibilityMode
    path: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.record} v{self.reader} cannot read data written with v{self.writer} "
            f"({self.mode}): {self.path}: {self.message}"
        )


# --- normalised schemas ---------------------------------------------------------------------
# A schema is normalised to: a primitive name (str), a list (union), or a dict whose "type" is
# record/enum/fixed/array/map, named types carrying their full name in "name" and every
# reference to a named type replaced by the same dict object (recursive types become cycles).


def _fullname(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _namespace_of(fullname: str) -> str:
    return fullname.rpartition(".")[0]


class _Normaliser:
    def __init__(self, where: str) -> None:
        self.where = where
        self.named: dict[str, dict[str, Any]] = {}

    def run(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            found = self.named.get(_fullname(schema, namespace)) or self.named.get(schema)
            if found is None:
                raise SchemaError(
                    f"{self.where}: reference to unknown type {schema!r} (namespace "
                    f"{namespace or '(none)'!r}); define a named type before using it"
                )
            return found
        if isinstance(schema, list):
            return [self.run(branch, namespace) for branch in schema]
        if not isinstance(schema, dict) or "type" not in schema:
            raise SchemaError(f"{self.where}: expected a schema, got {schema!r}")
        kind = schema["type"]
        if not isinstance(kind, str) or kind not in _NAMED | {"array", "map"}:
            return self.run(kind, namespace)  # {"type": "long", "logicalType": ...} or nested
        if kind == "array":
            return {"type": "array", "items": self.run(schema["items"], namespace)}
        if kind == "map":
            return {"type": "map", "values": self.run(schema["values"], namespace)}
        full = _fullname(schema["name"], schema.get("namespace", namespace))
        out: dict[str, Any] = {
            "type": "record" if kind == "error" else kind,
            "name": full,
            "aliases": [_fullname(a, _namespace_of(full)) for a in schema.get("aliases", [])],
        }
        self.named[full] = out  # before the fields: a field may refer back to this record
        if kind == "enum":
            out["symbols"] = list(schema["symbols"])
            if "default" in schema:
                out["default"] = schema["default"]
        elif kind == "fixed":
            out["size"] = schema["size"]
        else:
            inner = _namespace_of(full)
            out["fields"] = [
                {
                    "name": f["name"],
                    "aliases": list(f.get("aliases", [])),
                    "has_default": "default" in f,
                    "type": self.run(f["type"], inner),
                }
                for f in schema["fields"]
            ]
        return out


def _normalise(schema: Any, where: str) -> Any:
    try:
        return _Normaliser(where).run(schema, "")
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{where}: malformed schema, missing or bad {exc}") from exc


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(b) for b in schema) + "]"
    kind = schema["type"]
    if kind == "array":
        return f"array<{_describe(schema['items'])}>"
    if kind == "map":
        return f"map<{_describe(schema['values'])}>"
    return f"{kind} {_short(schema['name'])}"


def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    wanted = _short(writer["name"])
    return _short(reader["name"]) == wanted or any(_short(a) == wanted for a in reader["aliases"])


def _matches(reader: Any, writer: Any, *, exact: bool) -> bool:
    """Whether the resolver would pair these two non-union types (before looking inside)."""
    if isinstance(reader, str) or isinstance(writer, str):
        if not (isinstance(reader, str) and isinstance(writer, str)):
            return False
        return reader == writer or (not exact and reader in _PROMOTIONS.get(writer, ()))
    if reader["type"] != writer["type"]:
        return False
    if reader["type"] in ("array", "map"):
        return True
    return _names_match(reader, writer)


def _pick_branch(reader_union: list[Any], writer: Any) -> Any | None:
    for exact in (True, False):
        for branch in reader_union:
            if not isinstance(branch, list) and _matches(branch, writer, exact=exact):
                return branch
    return None


class _Checker:
    def __init__(self, reader_label: str, writer_label: str) -> None:
        self.r, self.w = reader_label, writer_label
        self.found: list[Incompatibility] = []
        self._in_progress: set[tuple[int, int]] = set()

    def problem(self, path: str, message: str) -> None:
        self.found.append(Incompatibility(path, message))

    def resolve(self, reader: Any, writer: Any, path: str) -> None:
        if isinstance(writer, list):
            for wb in writer:
                if isinstance(reader, list):
                    rb = _pick_branch(reader, wb)
                    if rb is None:
                        self.problem(
                            path,
                            f"the writer ({self.w}) may write {_describe(wb)} here, and no "
                            f"branch of the reader ({self.r}) union {_describe(reader)} can "
                            "read it",
                        )
                        continue
                    self.resolve(rb, wb, path)
                elif _matches(reader, wb, exact=False):
                    self.resolve(reader, wb, path)
                else:
                    self.problem(
                        path,
                        f"the writer ({self.w}) may write {_describe(wb)} here (union "
                        f"{_describe(writer)}), which the reader ({self.r}) type "
                        f"{_describe(reader)} cannot read",
                    )
            return
        if isinstance(reader, list):
            rb = _pick_branch(reader, writer)
            if rb is None:
                self.problem(
                    path,
                    f"the reader ({self.r}) union {_describe(reader)} has no branch that can "
                    f"read the writer ({self.w}) type {_describe(writer)}",
                )
            else:
                self.resolve(rb, writer, path)
            return
        if not _matches(reader, writer, exact=False):
            same_kind = (
                isinstance(reader, dict)
                and isinstance(writer, dict)
                and reader["type"] == writer["type"]
            )
            if same_kind:
                self.problem(
                    path,
                    f"the reader ({self.r}) {reader['type']} is named "
                    f"{_short(reader['name'])!r} and the writer ({self.w}) one "
                    f"{_short(writer['name'])!r}; names must match (or add the writer's name "
                    "to the reader's aliases)",
                )
            else:
                self.problem(
                    path,
                    f"the reader ({self.r}) type {_describe(reader)} cannot read the writer "
                    f"({self.w}) type {_describe(writer)}",
                )
            return
        if isinstance(reader, str):
            return  # same primitive, or a promotion
        kind = reader["type"]
        if kind == "array":
            self.resolve(reader["items"], writer["items"], path + "[]")
        elif kind == "map":
            self.resolve(reader["values"], writer["values"], path + "{}")
        elif kind == "fixed":
            if reader["size"] != writer["size"]:
                self.problem(
                    path,
                    f"fixed {_short(reader['name'])} has size {reader['size']} in the reader "
                    f"({self.r}) and {writer['size']} in the writer ({self.w})",
                )
        elif kind == "enum":
            self.enum(reader, writer, path)
        else:
            self.record(reader, writer, path)

    def enum(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            self.problem(
                path,
                f"the writer ({self.w}) enum {_short(writer['name'])} has symbols "
                f"{', '.join(missing)} that the reader ({self.r}) lacks, and the reader enum "
                "has no default",
            )

    def record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        key = (id(reader), id(writer))
        if key in self._in_progress:
            return  # a recursive type: the pair is being checked further up
        self._in_progress.add(key)
        by_name = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            sub = f"{path}.{field['name']}"
            writer_field = next(
                (by_name[n] for n in (field["name"], *field["aliases"]) if n in by_name), None
            )
            if writer_field is not None:
                self.resolve(field["type"], writer_field["type"], sub)
            elif not field["has_default"]:
                self.problem(
                    sub,
                    f"reader ({self.r}) field has no default and the writer ({self.w}) lacks it",
                )
        self._in_progress.discard(key)


def check_compatibility(
    reader: Any,
    writer: Any,
    *,
    reader_label: str = "reader",
    writer_label: str = "writer",
) -> list[Incompatibility]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty if it can.

    Parameters
    ----------
    reader, writer
        Avro schemas as parsed JSON (the contents of ``.avsc`` files).
    reader_label, writer_label
        How messages name the two sides, e.g. ``"v2"`` and ``"v1"``.

    Raises
    ------
    SchemaError
        When a schema is malformed (e.g. refers to a type it never defines).

    Examples
    --------
    >>> v1 = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "int"}]}
    >>> v2 = {"type": "record", "name": "T", "fields": [
    ...     {"name": "a", "type": "long"}, {"name": "b", "type": "string"}]}
    >>> [str(i) for i in check_compatibility(v2, v1, reader_label="v2", writer_label="v1")]
    ['T.b: reader (v2) field has no default and the writer (v1) lacks it']
    >>> check_compatibility(v1, v2)[0].path
    'T.a'
    """
    r = _normalise(reader, f"reader schema ({reader_label})")
    w = _normalise(writer, f"writer schema ({writer_label})")
    checker = _Checker(reader_label, writer_label)
    top = r if isinstance(r, str) else _describe(r).split(" ", 1)[-1]
    checker.resolve(r, w, top)
    return checker.found


def pairs_to_check(n_versions: int, mode: CompatibilityMode) -> list[tuple[int, int]]:
    """The (reader, writer) version pairs ``mode`` requires of versions 1..``n_versions``.

    >>> pairs_to_check(3, "BACKWARD")
    [(2, 1), (3, 2)]
    >>> pairs_to_check(3, "FULL_TRANSITIVE")
    [(2, 1), (1, 2), (3, 1), (1, 3), (3, 2), (2, 3)]
    """
    if mode not in MODES:
        raise SchemaError(f"unknown compatibility mode {mode!r}; expected one of {MODES}")
    backward = mode.startswith(("BACKWARD", "FULL"))
    forward = mode.startswith(("FORWARD", "FULL"))
    transitive = mode.endswith("_TRANSITIVE")
    pairs: list[tuple[int, int]] = []
    for new in range(2, n_versions + 1):
        for old in range(1, new) if transitive else (new - 1,):
            if backward:
                pairs.append((new, old))
            if forward:
                pairs.append((old, new))
    return pairs


def check_versions(versions: Sequence[SchemaVersion], mode: CompatibilityMode) -> list[Problem]:
    """The problems of one record's version chain (ascending, v1 first) under ``mode``."""
    by_number = {v.version: v for v in versions}
    problems: list[Problem] = []
    for reader, writer in pairs_to_check(len(versions), mode):
        r, w = by_number[reader], by_number[writer]
        found = check_compatibility(
            r.raw, w.raw, reader_label=f"v{reader}", writer_label=f"v{writer}"
        )
        problems.extend(
            Problem(r.short_name, reader, writer, mode, inc.path, inc.message) for inc in found
        )
    return problems


def check_evolution(schema_set: SchemaSet, mode: CompatibilityMode) -> list[Problem]:
    """Every problem of every record's version chain in ``schema_set`` under ``mode``.

    An empty list means every record evolves compatibly. A record with one version has
    nothing to check.
    """
    problems: list[Problem] = []
    for record in sorted(schema_set.versions):
        problems.extend(check_versions(schema_set.versions[record], mode))
    return problems
