"""``streamproc lag``: committed offset, log-end offset, lag and owner of each partition.

The figures come from :func:`streamproc.kafka.lag.consumer_lag` (the broker's own numbers, the
same ``kafka-consumer-groups --describe`` shows), per group, topic and partition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import click
import orjson
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamproc.cli._common import settings_from
from streamproc.config import Settings
from streamproc.errors import StreamprocError
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.lag import PartitionLag, consumer_lag, list_groups

__all__ = ["collect_lag", "command", "render_lag"]


def collect_lag(
    settings: Settings, group: str | None, *, all_groups: bool, timeout: float
) -> list[PartitionLag]:
    """Lag rows of ``group`` (default ``settings.app_id``), or of every group.

    Raises
    ------
    BrokerUnavailableError
        No broker answered within ``timeout`` seconds.
    click.ClickException
        The group does not exist on the cluster.
    """
    wait_for_broker(settings, timeout=timeout)
    known = list_groups(settings, timeout=timeout)
    if all_groups:
        groups = known
    else:
        wanted = group or settings.app_id
        if wanted not in known:
            listed = ", ".join(known) if known else "none"
            raise click.ClickException(
                f"consumer group {wanted!r} does not exist at {settings.bootstrap_servers} "
                f"(groups there: {listed}); start a worker first, or pass --group or --all"
            )
        groups = [wanted]
    rows: list[PartitionLag] = []
    for name in groups:
        # The workers' own group: always the topics its agents consume, even when no worker
        # is running (then every partition shows what is waiting).
        topics = [settings.topic_input, settings.topic_valid] if name == settings.app_id else None
        rows.extend(consumer_lag(settings, name, topics=topics, timeout=timeout))
    return rows


def _cell(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def render_lag(rows: Sequence[PartitionLag], groups: Sequence[str] = ()) -> RenderableType:
    """One rich table per group (in ``groups`` order, then any other group of ``rows``)."""
    by_group: dict[str, list[PartitionLag]] = {g: [] for g in groups}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    if not by_group:
        return Text("no consumer groups", style="dim")
    tables: list[RenderableType] = []
    for name, group_rows in by_group.items():
        total = sum(r.lag for r in group_rows)
        table = Table(title=f"group {name}", caption=f"total lag {total:,} records")
        for header in ("topic", "partition", "committed", "log-end", "lag", "lag s", "member"):
            justify: JustifyMethod = "left" if header in ("topic", "member") else "right"
            table.add_column(header, justify=justify)
        for r in sorted(group_rows, key=lambda r: (r.topic, r.partition)):
            table.add_row(
                r.topic, str(r.partition), _cell(r.committed), _cell(r.log_end),
                Text(_cell(r.lag), style="bold red" if r.lag else ""),
                _cell(r.lag_seconds, 1), r.member or Text("unassigned", style="dim"),
            )  # fmt: skip
        if not group_rows:
            table.add_row("-", "", "", "", "", "", Text("no committed offsets", style="dim"))
        tables.append(table)
    return Group(*tables)


def _as_json(rows: Sequence[PartitionLag]) -> str:
    return orjson.dumps([r.as_dict() for r in rows], option=orjson.OPT_INDENT_2).decode()


@click.command("lag")
@click.option(
    "--group",
    "-g",
    metavar="GROUP",
    help="Consumer group [default: the app id, STREAMPROC_APP_ID].",
)
@click.option("--all", "all_groups", is_flag=True, help="Every consumer group on the cluster.")
@click.option("--watch", "-w", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print a JSON list of partitions (one list per refresh with --watch).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the broker's answers.",
)
@click.pass_context
def command(
    ctx: click.Context,
    group: str | None,
    all_groups: bool,
    watch: bool,
    interval: float,
    as_json: bool,
    timeout: float,
) -> None:
    """Show consumer lag per group, topic and partition.

    Columns: committed offset, log-end offset, lag (records), lag in seconds (age of the
    oldest unprocessed record, when it can be read) and the member that owns the partition.
    """
    if group is not None and all_groups:
        raise click.UsageError("pass --group or --all, not both")
    settings = settings_from(ctx)
    groups = [] if all_groups else [group or settings.app_id]
    if not watch:
        rows = collect_lag(settings, group, all_groups=all_groups, timeout=timeout)
        if as_json:
            click.echo(_as_json(rows))
        else:
            Console().print(render_lag(rows, groups))
        return
    if as_json:
        try:
            while True:
                rows = collect_lag(settings, group, all_groups=all_groups, timeout=timeout)
                click.echo(orjson.dumps([r.as_dict() for r in rows]).decode())
                time.sleep(interval)
        except KeyboardInterrupt:
            return
    console = Console()
    with Live(Text("reading lag ...", style="dim"), console=console, auto_refresh=False) as live:
        try:
            while True:
                try:
                    rows = collect_lag(settings, group, all_groups=all_groups, timeout=timeout)
                    view: RenderableType = render_lag(rows, groups)
                except StreamprocError as exc:
                    # A broker that goes away mid-watch is shown, not fatal: it may come back.
                    view = Text(f"{type(exc).__name__}: {exc}", style="bold red")
                stamp = Text(time.strftime("%H:%M:%S") + f"  every {interval:g} s, Ctrl-C ends",
                             style="dim")  # fmt: skip
                live.update(Group(view, stamp), refresh=True)
                time.sleep(interval)
        except KeyboardInterrupt:
            return
