"""``streamproc topics create|list``: the project's six topics on the cluster."""

from __future__ import annotations

import click

from streamproc.cli._common import settings_from

__all__ = ["command"]


@click.group("topics")
def command() -> None:
    """Create and list the project's topics (input, valid, dlq, predictions, drift, snapshots).

    Names, partitions, replication and retention come from the STREAMPROC_TOPIC_*,
    STREAMPROC_PARTITIONS, STREAMPROC_REPLICATION_FACTOR and *_RETENTION_MS settings.
    """


@command.command("create")
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    help="Partitions of each new topic (snapshots always get 1) "
    "[env STREAMPROC_PARTITIONS; default 6].",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    help="Replicas of each partition; 3 also sets min.insync.replicas=2 "
    "[env STREAMPROC_REPLICATION_FACTOR; default 1].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the cluster.",
)
@click.pass_context
def create(
    ctx: click.Context, partitions: int | None, replication_factor: int | None, timeout: float
) -> None:
    """Create the topics that are missing; existing ones are left unchanged.

    Safe to run again: each topic is reported as "created" or "already exists", with its
    partitions and replication factor.
    """
    from streamproc.kafka.topics import ensure_topics, topic_status

    settings = settings_from(ctx, partitions=partitions, replication_factor=replication_factor)
    outcomes = dict(ensure_topics(settings, timeout=timeout))
    for found in topic_status(settings, timeout=timeout):
        name = found.spec.name
        label = "created" if outcomes.get(name) == "created" else "already exists"
        click.echo(
            f"{found.spec.role:<12} {name}: {label} ({found.partitions} partitions, "
            f"replication factor {found.replication_factor})"
        )


@command.command("list")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the cluster.",
)
@click.pass_context
def list_(ctx: click.Context, timeout: float) -> None:
    """List the declared topics, their configuration and whether each exists on the cluster."""
    from streamproc.kafka.topics import topic_status

    settings = settings_from(ctx)
    for found in topic_status(settings, timeout=timeout):
        spec = found.spec
        if found.exists:
            actual = f"exists ({found.partitions} partitions, RF {found.replication_factor})"
        else:
            actual = "missing (streamproc topics create)"
        config = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
        click.echo(
            f"{spec.role:<12} {spec.name}: {actual}; declared {spec.partitions} partitions, "
            f"RF {spec.replication_factor}, {config}"
        )
