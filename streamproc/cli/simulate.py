"""``streamproc simulate``: publish a seeded, simulated viewing-event stream to the input topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from streamproc.cli._common import settings_from
from streamproc.config import OutputFormat, Settings
from streamproc.produce import EventProducer
from streamproc.simulate import SCENARIOS, Manifest, SimParams, simulate_events
from streamproc.simulate.scenarios import SCENARIO_ALIASES, register_variant

__all__ = [
    "SCENARIO_CHOICES",
    "canonical_scenario",
    "command",
    "run_simulation",
    "scenario_option",
]

#: ``--scenario`` choices of ``simulate`` and ``demo``: the registered scenarios and the names
#: the README uses for the drift ones.
SCENARIO_CHOICES = (*sorted(SCENARIOS), *sorted(SCENARIO_ALIASES))

FC = TypeVar("FC", bound=Callable[..., object])

#: The sender sleeps at most this often (seconds): small batches keep the rate accurate.
_TICK_S = 0.005


class _Pacer:
    """Keep ``rate`` records a second by sleeping after small batches (0 = no limit)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.batch = max(1, int(rate * _TICK_S)) if rate > 0 else 0
        self._start = time.perf_counter()

    def after(self, sent: int) -> None:
        if not self.batch or sent % self.batch:
            return
        delay = self._start + sent / self.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def run_simulation(
    settings: Settings,
    params: SimParams,
    *,
    rate: float = 0.0,
    manifest_path: Path | None = None,
    console: Console | None = None,
) -> tuple[Manifest, EventProducer, float]:
    """Publish a simulation; return the manifest, the (flushed) producer and the seconds taken.

    Raises
    ------
    BrokerUnavailableError
        If no broker answers before anything is sent.
    """
    console = console or Console(stderr=True)
    producer = EventProducer(settings, params.fmt)
    producer.check_connection()
    sim = simulate_events(params, settings)
    pacer = _Pacer(rate)
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]simulate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    )
    try:
        with progress:
            task = progress.add_task("send", total=params.n_events, speed="")
            for sent, record in enumerate(sim, start=1):
                producer.send_raw(record.key, record.value)
                pacer.after(sent)
                if sent % 2000 == 0:
                    elapsed = time.perf_counter() - started
                    progress.update(
                        task,
                        completed=sim.manifest.counts["valid"],
                        speed=f"{sent / elapsed:,.0f} rec/s" if elapsed else "",
                    )
            progress.update(task, completed=sim.manifest.counts["valid"])
    finally:
        producer.flush(30.0)
        if manifest_path is not None:
            sim.manifest.write(manifest_path)
    return sim.manifest, producer, time.perf_counter() - started


def scenario_option(default: str) -> Callable[[FC], FC]:
    """The ``--scenario`` option, shared by ``simulate`` and ``demo``."""
    aliases = ", ".join(f"{alias} = {name}" for alias, name in sorted(SCENARIO_ALIASES.items()))
    return click.option(
        "--scenario",
        type=click.Choice(SCENARIO_CHOICES),
        default=default,
        show_default=True,
        help=f"Ground-truth scenario: stationary, or a drift ({aliases}) starting at --drift-at.",
    )


def canonical_scenario(scenario: str, drift_at: int | None) -> str:
    """The registered name of a ``--scenario`` value (an alias resolved).

    Raises
    ------
    click.UsageError
        If ``--drift-at`` is given with the stationary scenario.
    """
    name = SCENARIO_ALIASES.get(scenario, scenario)
    if drift_at is not None and name == "stationary":
        raise click.UsageError("--drift-at needs a drift scenario (--scenario abrupt, ...)")
    return name


def _summary(manifest: Manifest, producer: EventProducer, elapsed: float, rate: float = 0.0) -> str:
    counts = manifest.counts
    achieved = producer.sent / elapsed if elapsed else 0.0
    lines = [
        f"sent {producer.sent} records to {producer.topic} in {elapsed:.1f} s "
        f"({achieved:,.0f} records/s)",
        f"  delivered {producer.delivered}, failed {producer.failed}"
        + (f" (last error: {producer.last_error})" if producer.failed else ""),
        f"  valid {counts['valid']} in {counts['sessions']} sessions, "
        f"duplicates {counts['duplicate']}, invalid {counts['invalid']}",
    ]
    lines += [f"    {reason}: {n}" for reason, n in manifest.invalid_by_reason.items()]
    if rate and achieved < 0.95 * rate and producer.sent > rate:
        lines.append(
            f"  the requested --rate {rate:,.0f}/s was not reached: generating and encoding "
            "events in this process is the limit"
        )
    if not manifest.complete:
        lines.append("  stopped before the end of the simulation")
    return "\n".join(lines)


@click.command("simulate")
@click.option(
    "--events",
    "n_events",
    type=click.IntRange(min=2),
    default=20_000,
    show_default=True,
    help="Valid session events to send (whole sessions).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Records per second; 0 sends as fast as possible.",
)
@click.option(
    "--users",
    "n_users",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="Users in the simulated world.",
)
@click.option(
    "--titles",
    "n_titles",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Titles in the simulated world.",
)
@click.option(
    "--invalid-fraction",
    type=click.FloatRange(0.0, 0.9),
    default=0.0,
    show_default=True,
    help="Fraction of all records that are invalid extras.",
)
@click.option(
    "--duplicate-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Fraction of valid events sent twice.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every draw.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["avro", "json"]),
    default=None,
    help="Encoding [env STREAMPROC_PRODUCER_FORMAT; default avro].",
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the manifest (invalid records, duplicates, truth) here.",
)
@scenario_option(default="stationary")
@click.option(
    "--drift-at",
    type=click.IntRange(min=0),
    default=None,
    help="Valid-event index where a drift scenario starts [default: 100000].",
)
@click.option(
    "--start-time-ms",
    type=int,
    default=None,
    help="Event time of the first session, epoch ms [default: the stream ends now].",
)
@click.pass_context
def command(
    ctx: click.Context,
    n_events: int,
    rate: float,
    n_users: int,
    n_titles: int,
    invalid_fraction: float,
    duplicate_fraction: float,
    seed: int,
    fmt: OutputFormat | None,
    manifest_path: Path | None,
    scenario: str,
    drift_at: int | None,
    start_time_ms: int | None,
) -> None:
    """Publish a simulated viewing-event stream (with a hidden ground truth) to the input topic.

    Sessions of many users overlap in time; --invalid-fraction adds invalid records of known
    kinds and --duplicate-fraction re-sends some events, all listed in the --manifest.
    """
    settings = settings_from(ctx, producer_format=fmt)
    scenario = canonical_scenario(scenario, drift_at)
    if drift_at is not None:
        scenario = register_variant(scenario, onset=drift_at)
    params = SimParams(
        n_events=n_events,
        n_users=n_users,
        n_titles=n_titles,
        seed=seed,
        fmt=settings.producer_format,
        invalid_fraction=invalid_fraction,
        duplicate_fraction=duplicate_fraction,
        scenario=scenario,
        start_time_ms=start_time_ms,
    )
    manifest, producer, elapsed = run_simulation(
        settings, params, rate=rate, manifest_path=manifest_path
    )
    click.echo(_summary(manifest, producer, elapsed, rate), err=True)
    if manifest_path is not None:
        click.echo(f"manifest written to {manifest_path}", err=True)
    if producer.failed:
        raise click.ClickException(f"{producer.failed} records could not be delivered")
