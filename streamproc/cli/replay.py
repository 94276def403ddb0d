"""``streamproc replay``: rebuild the models from the valid topic into a separate namespace."""

from __future__ import annotations

from pathlib import Path

import click

from streamproc.cli._common import settings_from
from streamproc.registry.replay import replay_models

__all__ = ["command"]


@click.command("replay")
@click.option("--namespace", required=True, help="Snapshot namespace to write, e.g. replay-1.")
@click.option(
    "--from-offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="First offset of each partition to learn from.",
)
@click.option(
    "--predictions",
    "predictions_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every prediction as a JSON line to this file.",
)
@click.option("--no-snapshots", is_flag=True, help="Do not write snapshots.")
@click.pass_context
def command(
    ctx: click.Context,
    namespace: str,
    from_offset: int,
    predictions_out: Path | None,
    no_snapshots: bool,
) -> None:
    """Rebuild every model from viewing-events-valid, deterministically.

    The same input offsets and seed (STREAMPROC_SEED) give the same predictions as the live
    worker and identical snapshot bytes. Compare namespaces with `streamproc models list`
    (STREAMPROC_MODEL_NAMESPACE selects which one it shows).
    """
    settings = settings_from(ctx)
    result = replay_models(
        settings,
        namespace,
        from_offset=from_offset,
        predictions_out=predictions_out,
        write_snapshots=not no_snapshots,
        progress=lambda n: click.echo(f"  {n:,} events replayed", err=True),
    )
    click.echo(
        f"replayed {result.events:,} events from {len(result.partitions)} partitions into "
        f"namespace {namespace!r}: {result.predictions:,} predictions, "
        f"{result.signals:,} drift signals (not sent), {result.snapshots} snapshots"
    )
    if predictions_out:
        click.echo(f"predictions written to {predictions_out}")
