"""``streamproc evaluate``: the models against the simulator's hidden truth, in process or
through Kafka."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from streamproc.cli._common import settings_from
from streamproc.evaluate_kafka import evaluate_through_kafka
from streamproc.learning.evaluate import EvaluationParams, evaluate_models, format_report

__all__ = ["command"]

_DEFAULTS = EvaluationParams()


@click.command("evaluate")
@click.option(
    "--events",
    type=click.IntRange(min=2),
    default=_DEFAULTS.n_events,
    show_default=True,
    help="Valid events to simulate.",
)
@click.option(
    "--seed", type=int, help="Seed of the simulation and the models [env STREAMPROC_SEED; 42]."
)
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=_DEFAULTS.n_users,
    show_default=True,
    help="Users in the simulated world.",
)
@click.option(
    "--titles",
    type=click.IntRange(min=1),
    default=_DEFAULTS.n_titles,
    show_default=True,
    help="Titles in the simulated world.",
)
@click.option(
    "--warmup-sessions",
    type=click.IntRange(min=0),
    default=_DEFAULTS.warmup_sessions,
    show_default=True,
    help="Sessions learned from before the targets are measured.",
)
@click.option(
    "--kafka",
    "through_kafka",
    is_flag=True,
    help="Run the stream through Kafka and worker processes instead, and measure the "
    "scores served on the predictions topic (fresh topics, deleted afterwards).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Worker processes (with --kafka).",
)
@click.option(
    "--keep-topics", is_flag=True, help="Keep the run's topics (with --kafka), for inspection."
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".streamproc/evaluate"),
    show_default=True,
    help="The workers' logs (with --kafka).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    events: int,
    seed: int | None,
    users: int,
    titles: int,
    warmup_sessions: int,
    through_kafka: bool,
    workers: int,
    keep_topics: bool,
    log_dir: Path,
    as_json: bool,
) -> None:
    """Run the simulator through the partition learners (no Kafka) and check the targets.

    Events are split by user as Kafka would (crc32(user_id) % partitions); every partition
    has its own learner. Targets, on the sessions after the warm-up: engagement ROC AUC
    within 0.03 of the oracle's, qoe MAE at most 1.25 x the oracle's, affinity RMSE below a
    per-title mean. Exit code 0 when all hold, 1 otherwise.

    With --kafka the same stream goes to the Kafka of STREAMPROC_BOOTSTRAP_SERVERS (e.g. from
    `streamproc kafka start`) through --workers worker processes, and the targets are checked
    on the predictions they published, each joined with its session's label.
    """
    settings = settings_from(ctx, seed=seed)
    params = EvaluationParams.from_settings(
        settings,
        n_events=events,
        n_users=users,
        n_titles=titles,
        warmup_sessions=warmup_sessions,
    )
    if through_kafka:
        served = evaluate_through_kafka(
            params,
            settings,
            workers=workers,
            log_dir=log_dir,
            keep_topics=keep_topics,
            say=lambda message: click.echo(message, err=True),
        )
        report, passed, out = served.report, served.passed, served.to_dict()
        figures: list[str] | None = served.figures()
    else:
        report = evaluate_models(params, settings)
        passed, out, figures = report.passed, report.to_dict(), None
    if as_json:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        click.echo(format_report(report, figures=figures, passed=passed))
    if not passed:
        ctx.exit(1)
