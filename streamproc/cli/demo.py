"""``streamproc demo``: local Kafka, workers and the simulator, with a live view and a report."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.console import Console

from streamproc.cli._common import settings_from
from streamproc.cli.simulate import canonical_scenario, scenario_option

__all__ = ["command"]


@click.command("demo")
@click.option(
    "--events",
    type=click.IntRange(min=2),
    default=40_000,
    show_default=True,
    help="Valid session events to publish (invalid records and duplicates come on top).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0),
    default=3000.0,
    show_default=True,
    help="Records a second; 0 publishes as fast as possible.",
)
@click.option(
    "--invalid-fraction",
    type=click.FloatRange(0.0, 0.9),
    default=0.03,
    show_default=True,
    help="Fraction of all records that are invalid.",
)
@click.option(
    "--duplicate-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=0.01,
    show_default=True,
    help="Fraction of valid events sent twice.",
)
@scenario_option(default="data-drift")
@click.option(
    "--drift-at",
    type=click.IntRange(min=0),
    default=None,
    metavar="K",
    help="Valid-event index where the drift starts [default: 40 % of --events].",
)
@click.option(
    "--partitions",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Partitions of the topics the demo creates (each partition has its own models).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation.")
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Worker processes (one consumer group).",
)
@click.option(
    "--agents",
    default="ingest,model",
    show_default=True,
    help="Agents each worker runs (comma list of ingest, model).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave Kafka and the workers running after the report.",
)
@click.option(
    "--keep-data",
    is_flag=True,
    help="Keep the topics of the previous demo run (default: wipe the demo's Kafka first).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".streamproc/demo"),
    show_default=True,
    help="Kafka data (kafka/), worker logs (logs/) and the demo's snapshot key.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="Draw the run's windowed engagement AUC (served and oracle), the onset and every "
    "drift signal into FILE.png.",
)
@click.pass_context
def command(
    ctx: click.Context,
    events: int,
    rate: float,
    invalid_fraction: float,
    duplicate_fraction: float,
    scenario: str,
    drift_at: int | None,
    partitions: int,
    seed: int,
    workers: int,
    agents: str,
    keep_running: bool,
    keep_data: bool,
    data_dir: Path,
    plot: Path | None,
) -> None:
    """Run the pipeline end to end on a local Kafka, with a live view and an end report.

    Starts Apache Kafka in DATA_DIR/kafka (or uses STREAMPROC_BOOTSTRAP_SERVERS and starts
    nothing), creates the topics, starts the workers, publishes a simulated stream with
    invalid records and duplicates that drifts at --drift-at (default: data drift at 40 %
    of the events), shows what flows and each drift signal, challenger, promotion or rollback
    as the workers raise it, then audits every record, reports what the workers did about
    the drift (delays after the true onset, promotions, served quality before and after) and
    stops everything (unless --keep-running). Ctrl-C stops it all.

    Exits 1 if a worker dies or the books do not balance; a drift that goes undetected or
    unanswered is reported, not an error.
    """
    from streamproc.demo import DemoOptions, format_end_report, run_demo
    from streamproc.drift.observed import as_scenario_result

    canonical_scenario(scenario, drift_at)  # --drift-at needs a drift scenario
    if drift_at is not None and drift_at >= events:
        raise click.BadParameter(
            f"{drift_at} is not below --events {events}: the run would hold no drift",
            param_hint="'--drift-at'",
        )
    if plot is not None and not plot.parent.is_dir():
        raise click.BadParameter(
            f"{plot}: directory {plot.parent} does not exist", param_hint="'--plot'"
        )
    if plot is not None and "model" not in {a.strip() for a in agents.split(",")}:
        raise click.UsageError("--plot needs the model agent (--agents ...,model)")

    root = ctx.find_root().obj or {}
    settings = settings_from(ctx)
    if not (root.get("overrides") or {}).get("log_level") and "log_level" not in (
        settings.model_fields_set
    ):
        # Info lines from the library would break up the live view; --log-level brings them back.
        logging.getLogger("streamproc").setLevel(logging.WARNING)
        # librdkafka warns of transient states of a broker that has just started.
        logging.getLogger("streamproc.produce.librdkafka").setLevel(logging.ERROR)
    options = DemoOptions(
        events=events,
        rate=rate,
        invalid_fraction=invalid_fraction,
        duplicate_fraction=duplicate_fraction,
        seed=seed,
        workers=workers,
        keep_running=keep_running,
        keep_data=keep_data,
        data_dir=data_dir,
        agents=agents,
        external="bootstrap_servers" in settings.model_fields_set,
        scenario=scenario,
        drift_at=drift_at,
        partitions=partitions,
    )
    console = Console()
    try:
        report = run_demo(settings, options, console=console)
    except KeyboardInterrupt:
        click.echo("demo interrupted: the workers and the demo's Kafka are stopped", err=True)
        ctx.exit(130)
    click.echo(format_end_report(report))
    failed = False
    if plot is not None and report.drift is not None:
        from streamproc.drift.plot import plot_drift_report

        label = f"{options.scenario_label}, live demo, {partitions} partition(s)"
        result = as_scenario_result(report.drift, label=label, seed=seed, events=events)
        try:
            plot_drift_report([result], str(plot))
            click.echo(f"plot        written to {plot}")
        except (OSError, ValueError) as exc:
            click.echo(f"could not write the plot {plot}: {exc}", err=True)
            failed = True
    if not report.audit.balanced:
        click.echo(
            "the books do not balance: some input records are neither valid, dead letters nor "
            f"duplicates (see the worker logs in {data_dir / 'logs'})",
            err=True,
        )
        failed = True
    if failed:
        ctx.exit(1)
