"""``streamproc worker``: run a Faust worker (any number of them form one consumer group)."""

from __future__ import annotations

import click

from streamproc.cli._common import settings_from

__all__ = ["command"]


@click.command("worker")
@click.option("--app-id", help="Consumer group and state prefix [env STREAMPROC_APP_ID].")
@click.option(
    "--batch-size", type=int, help="Most records handed on per fetch [env STREAMPROC_BATCH_SIZE]."
)
@click.pass_context
def command(ctx: click.Context, app_id: str | None, batch_size: int | None) -> None:
    """Run a worker: the ingest agent (and the model agent once enabled).

    Start as many as you like with the same app id: Kafka splits the input partitions
    between them. Stop with Ctrl-C or SIGTERM: the worker commits, flushes and exits.
    """
    settings = settings_from(ctx, app_id=app_id, batch_size=batch_size)
    from agents.worker import run_worker

    run_worker(settings)
