"""``streamproc drift-report``: drift detection, false alarms and recovery, measured in process."""

from __future__ import annotations

import sys

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.drift.report import (
    SCENARIO_NAMES,
    DriftReportParams,
    format_drift_report,
    run_river_streams,
    run_scenario,
)

__all__ = ["command"]

_DEFAULTS = DriftReportParams()


@click.command("drift-report")
@click.option(
    "--scenario",
    "scenarios",
    type=click.Choice(SCENARIO_NAMES),
    multiple=True,
    help="Scenario to run (repeat; default: all).",
)
@click.option(
    "--events",
    type=click.IntRange(min=2),
    default=_DEFAULTS.n_events,
    show_default=True,
    help="Valid events of a drift scenario.",
)
@click.option(
    "--onset",
    type=click.IntRange(min=0),
    default=_DEFAULTS.onset,
    show_default=True,
    help="Event index at which the drift starts.",
)
@click.option(
    "--stationary-events",
    type=click.IntRange(min=2),
    default=_DEFAULTS.stationary_events,
    show_default=True,
    help="Valid events of the stationary run (false alarms).",
)
@click.option("--seed", type=int, help="Seed of the simulation and the models [42].")
@click.option("--no-river", is_flag=True, help="Skip River's synthetic drift streams.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a PNG of windowed AUC, signals, promotions and rollbacks (needs matplotlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    events: int,
    onset: int,
    stationary_events: int,
    seed: int | None,
    no_river: bool,
    plot: str | None,
    as_json: bool,
) -> None:
    """Run the drift scenarios through the learners with and without the drift response.

    Reports, per scenario: detection delay after the onset (target <= 2,000 events for
    abrupt drift), false alarms (target 0 on 200,000 stationary events), and recovery (events
    until the served engagement AUC is within 0.03 of the oracle's) against a champion-only
    baseline; then River's synthetic drift streams. Exit code 0 when the targets hold.
    """
    settings = settings_from(ctx, seed=seed)
    params = DriftReportParams(
        n_events=events,
        onset=onset,
        stationary_events=stationary_events,
        seed=settings.seed if seed is None else seed,
    )
    results = [run_scenario(name, params, settings) for name in scenarios or SCENARIO_NAMES]
    river = [] if no_river else run_river_streams(seed=params.seed)
    if plot:
        from streamproc.drift.plot import plot_drift_report

        plot_drift_report(results, plot)
    if as_json:
        doc = {"results": [r.to_dict() for r in results], "river": [vars_of(s) for s in river]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        click.echo(format_drift_report(results, river, params))
    ok = all(
        (r.scenario != "stationary" or r.false_alarms == 0)
        and (
            r.scenario != "taste_shift"
            or (r.detection_delay is not None and r.detection_delay <= params.delay_target)
        )
        for r in results
    )
    ctx.exit(0 if ok else 1)


def vars_of(obj: object) -> dict[str, object]:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else {}
