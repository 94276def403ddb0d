"""``streamproc audit``: account for every input record (valid, dead letter or duplicate)."""

from __future__ import annotations

import click
import orjson

from streamproc.audit import audit_ingest
from streamproc.cli._common import settings_from

__all__ = ["command"]


@click.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds allowed to read each topic to its end.",
)
@click.pass_context
def command(ctx: click.Context, as_json: bool, timeout: float) -> None:
    """Check conservation: input records = valid + dead letters + duplicates.

    Run it once the workers have caught up (streamproc lag). Exits 1 if the books do not
    balance.
    """
    settings = settings_from(ctx)
    report = audit_ingest(settings, timeout=timeout)
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(f"input records     {report.input_records:>10,}")
        click.echo(f"valid             {report.valid:>10,}")
        click.echo(f"dead letters      {report.dead:>10,}")
        for reason, n in sorted(report.dead_by_reason.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {reason:<32}{n:>8,}")
        click.echo(f"duplicates        {report.duplicates:>10,}")
        click.echo(
            f"replayed copies   {report.valid_repeats + report.dead_repeats:>10,}"
            "  (at-least-once repeats, same event_id)"
        )
        click.echo("balanced          " + ("yes" if report.balanced else "NO"))
    if not report.balanced:
        ctx.exit(1)
