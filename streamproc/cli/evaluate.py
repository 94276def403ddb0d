"""``streamproc evaluate``: the models against the simulator's hidden truth, in process."""

from __future__ import annotations

import sys

import click
import orjson

from streamproc.cli._common import settings_from
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
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def command(
    ctx: click.Context,
    events: int,
    seed: int | None,
    users: int,
    titles: int,
    warmup_sessions: int,
    as_json: bool,
) -> None:
    """Run the simulator through the partition learners (no Kafka) and check the targets.

    Events are split by user as Kafka would (crc32(user_id) % partitions); every partition
    has its own learner. Targets, on the sessions after the warm-up: engagement ROC AUC
    within 0.03 of the oracle's, qoe MAE at most 1.25 x the oracle's, affinity RMSE below a
    per-title mean. Exit code 0 when all hold, 1 otherwise.
    """
    settings = settings_from(ctx, seed=seed)
    params = EvaluationParams.from_settings(
        settings,
        n_events=events,
        n_users=users,
        n_titles=titles,
        warmup_sessions=warmup_sessions,
    )
    report = evaluate_models(params, settings)
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        click.echo(format_report(report))
    if not report.passed:
        ctx.exit(1)
