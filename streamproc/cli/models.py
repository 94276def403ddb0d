"""``streamproc models list|show|promote|rollback``: the model registry on the snapshots topic."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.ingest.schemas import load_schemas
from streamproc.registry.lifecycle import set_serving_version
from streamproc.registry.store import SnapshotInfo, list_snapshot_infos

__all__ = ["command"]


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("models")
def command() -> None:
    """List model versions, show one model, promote or roll back to a version."""


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """Every model and version with its partitions, events seen and metrics."""
    settings = settings_from(ctx)
    infos = [
        i
        for i in list_snapshot_infos(settings, load_schemas(settings.schemas_path))
        if i.namespace == settings.model_namespace and not i.model.startswith("_")
    ]
    rows: dict[tuple[str, int], list[SnapshotInfo]] = {}
    for info in infos:
        rows.setdefault((info.model, info.version), []).append(info)
    if as_json:
        click.echo(
            orjson.dumps(
                [
                    {
                        "model": m,
                        "version": v,
                        "partitions": sorted(i.partition for i in group),
                        "events_seen": sum(i.events_seen for i in group),
                        "updated_at": max(i.created_at for i in group),
                        "metrics": {p.partition: p.metrics for p in group},
                    }
                    for (m, v), group in sorted(rows.items())
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    if not rows:
        click.echo(f"no model snapshots in namespace {settings.model_namespace!r} yet")
        return
    click.echo(
        f"{'model':<14}{'version':>8}{'partitions':>12}{'events':>12}  updated (UTC)        "
        "metrics (mean over partitions)"
    )
    for (model, version), group in sorted(rows.items()):
        names = sorted({k for i in group for k in i.metrics})
        means = {k: sum(i.metrics.get(k, 0.0) for i in group) / len(group) for k in names}
        shown = " ".join(f"{k}={v:.4f}" for k, v in means.items())
        click.echo(
            f"{model:<14}{'v' + str(version):>8}{len(group):>12}"
            f"{sum(i.events_seen for i in group):>12,}  "
            f"{_when(max(i.created_at for i in group))}  {shown}"
        )


@command.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Every snapshot of model NAME, per version and partition."""
    settings = settings_from(ctx)
    infos = [
        i
        for i in list_snapshot_infos(settings, load_schemas(settings.schemas_path))
        if i.namespace == settings.model_namespace and i.model == name
    ]
    if not infos:
        raise click.ClickException(f"no snapshots of model {name!r}; see `streamproc models list`")
    for info in infos:
        offsets = ", ".join(f"{k}={v}" for k, v in info.source_offsets.items())
        metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(info.metrics.items()))
        click.echo(
            f"{info.model} v{info.version} partition {info.partition}: "
            f"{info.events_seen:,} events, "
            f"{info.size_bytes:,} bytes, {_when(info.created_at)} UTC, offsets {offsets}"
            + (f"\n    {metrics}" if metrics else "")
        )


def _serving_command(
    command_name: str,
    action: Literal["manual_rollback", "manual_promote"],
    version_help: str,
    doc: str,
) -> None:
    """Register ``models NAME``: serve a version on every partition, through ``action``."""

    @click.argument("name")
    @click.option(
        "--version", "version", type=click.IntRange(min=1), required=True, help=version_help
    )
    @click.option("--note", default="", help="Why (recorded on the drift-signals topic).")
    @click.pass_context
    def serve(ctx: click.Context, name: str, version: int, note: str) -> None:
        result = set_serving_version(settings_from(ctx), name, version, action=action, note=note)
        click.echo(
            f"{name}: serving v{version} on partitions {result['partitions']} "
            "(workers switch within seconds; recorded on the drift-signals topic)"
        )

    serve.__doc__ = doc
    command.command(command_name)(serve)


_serving_command(
    "rollback",
    "manual_rollback",
    "Version to serve again.",
    "Serve VERSION of model NAME again on every partition; recorded as an event.",
)
_serving_command(
    "promote",
    "manual_promote",
    "Version to serve from now on.",
    "Serve VERSION of model NAME on every partition that has it; recorded as an event.",
)
