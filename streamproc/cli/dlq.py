"""``streamproc dlq inspect|replay``: look at dead letters, and re-inject them after a fix."""

from __future__ import annotations

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.dlq import inspect_dlq, replay_dlq

__all__ = ["command"]


@click.group("dlq")
def command() -> None:
    """Inspect and replay the dead-letter topic."""


@command.command("inspect")
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Samples shown per reason.",
)
@click.option("--reason", help="Only this reason (rule_violation selects every rule).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def inspect(ctx: click.Context, samples: int, reason: str | None, as_json: bool) -> None:
    """Count dead letters by reason, with samples of each."""
    summary = inspect_dlq(settings_from(ctx), samples=samples, reason=reason)
    if as_json:
        click.echo(
            orjson.dumps(
                {
                    "total": summary.total,
                    "by_reason": dict(summary.by_reason),
                    "samples": summary.samples,
                },
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
        return
    click.echo(f"{summary.total:,} dead letters")
    for why, n in summary.by_reason.most_common():
        click.echo(f"  {why:<40}{n:>8,}")
        for sample in summary.samples.get(why, []):
            click.echo(f"      {sample['source']}  event_id={sample['event_id']}")
            click.echo(f"        {sample['message']}")


@command.command("replay")
@click.option("--reason", help="Only letters with this reason (rule_violation = every rule).")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; send nothing.")
@click.pass_context
def replay(ctx: click.Context, reason: str | None, dry_run: bool) -> None:
    """Re-inject dead letters into the input topic, unchanged, to be validated again.

    Use after a fix (a new schema version, a relaxed rule). Letters keep their event ids.
    Each run replays every matching letter: run it once per fix.
    """
    count, by_reason = replay_dlq(settings_from(ctx), reason=reason, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {count:,} dead letters")
    for why, n in by_reason.most_common():
        click.echo(f"  {why:<40}{n:>8,}")
