"""``streamproc schemas``: list, show and check the evolution of the versioned Avro schemas."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.errors import SchemaError
from streamproc.ingest.compat import MODES, CompatibilityMode, Problem, check_versions
from streamproc.ingest.schemas import SchemaSet, SchemaVersion, load_schemas, record_dir_name

__all__ = ["command"]

_DIR_OPTION = click.option(
    "--dir",
    "schemas_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of <record>/v<N>.avsc files [env STREAMPROC_SCHEMAS_DIR; default: the "
    "schemas shipped with streamproc].",
)


def _load(ctx: click.Context, schemas_dir: Path | None) -> SchemaSet:
    settings = settings_from(ctx, schemas_dir=schemas_dir)
    return load_schemas(settings.schemas_path)


def _echo_versions(versions: tuple[SchemaVersion, ...]) -> None:
    first = versions[0]
    click.echo(f"{first.short_name} ({first.name})")
    for v in versions:
        reader = "  reader" if v is versions[-1] else ""
        click.echo(f"  v{v.version}  {v.fingerprint_hex}  {v.path.name}{reader}")


def _find_record(schema_set: SchemaSet, record: str) -> str:
    for name in schema_set.versions:
        if record in (name, record_dir_name(name), schema_set.versions[name][0].name):
            return name
    known = ", ".join(sorted(schema_set.versions))
    raise SchemaError(f"no record {record!r} in {schema_set.root} (known: {known})")


@click.group("schemas")
def command() -> None:
    """List, show and check the versioned Avro schemas (schemas/<record>/v<N>.avsc)."""


@command.command("list")
@_DIR_OPTION
@click.pass_context
def list_(ctx: click.Context, schemas_dir: Path | None) -> None:
    """Every record with its versions and fingerprints; the highest version is the reader."""
    schema_set = _load(ctx, schemas_dir)
    for record in sorted(schema_set.versions):
        _echo_versions(schema_set.versions[record])


@command.command("show")
@click.argument("record")
@click.option("--version", "version", type=click.IntRange(min=1), help="Default: the latest.")
@_DIR_OPTION
@click.pass_context
def show(ctx: click.Context, record: str, version: int | None, schemas_dir: Path | None) -> None:
    """Print the schema of RECORD (e.g. ViewingEvent or viewing_event) as JSON."""
    schema_set = _load(ctx, schemas_dir)
    name = _find_record(schema_set, record)
    chosen = schema_set.latest(name) if version is None else schema_set.get(name, version)
    click.echo(orjson.dumps(chosen.raw, option=orjson.OPT_INDENT_2).decode())


@command.command("check")
@click.option(
    "--mode",
    type=click.Choice(MODES, case_sensitive=False),
    help="Evolution rule [env STREAMPROC_SCHEMA_COMPATIBILITY; default BACKWARD_TRANSITIVE].",
)
@_DIR_OPTION
@click.pass_context
def check(ctx: click.Context, mode: str | None, schemas_dir: Path | None) -> None:
    """Check that each record's versions evolve compatibly; exit 1 naming what breaks.

    BACKWARD: each version reads data of the one before; FORWARD: each version's data is
    read by the one before; FULL: both. The _TRANSITIVE modes check against every earlier
    version, not just the previous one.
    """
    settings = settings_from(ctx, schemas_dir=schemas_dir)
    chosen: CompatibilityMode = settings.schema_compatibility
    if mode is not None:
        chosen = next(m for m in MODES if m == mode.upper())
    schema_set = load_schemas(settings.schemas_path)
    click.echo(f"mode {chosen}, schemas in {schema_set.root}")
    problems: list[Problem] = []
    for record in sorted(schema_set.versions):
        versions = schema_set.versions[record]
        _echo_versions(versions)
        found = check_versions(versions, chosen)
        if not found:
            click.echo("  compatible" if len(versions) > 1 else "  compatible (one version)")
        for p in found:
            click.echo(
                f"  INCOMPATIBLE: v{p.reader} cannot read data written with v{p.writer}: "
                f"{p.path}: {p.message}"
            )
        problems.extend(found)
    if problems:
        fields = ", ".join(dict.fromkeys(p.path for p in problems))
        raise SchemaError(
            f"{len(problems)} incompatible change(s) under {chosen} in {schema_set.root}, at "
            f"{fields}. Fix: give new fields a default, remove only fields that have one, keep "
            "enum symbols or give the enum a default, only widen types (int -> long -> float "
            f"-> double). First: {problems[0]}"
        )
