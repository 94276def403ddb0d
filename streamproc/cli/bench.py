"""``streamproc bench``: throughput, latency and cost of the pipeline on a real Kafka.

The harness is the ``benchmarks`` package of the repository (not part of the wheel), so the
command runs from a checkout installed with ``pip install -e .``; elsewhere it says so.
"""

from __future__ import annotations

import datetime as dt
import logging
import shlex
from pathlib import Path
from types import ModuleType

import click

from streamproc.cli._common import settings_from

__all__ = ["command"]

bench_package: ModuleType | None
try:  # only constants: cheap enough for `streamproc --help`
    import benchmarks as bench_package
except ImportError:
    bench_package = None


def _default(name: str) -> object:
    return getattr(bench_package, name, None) if bench_package is not None else None


def _default_workers() -> str | None:
    counts = getattr(bench_package, "DEFAULT_WORKERS", None)
    return ",".join(str(c) for c in counts) if counts else None


def _command_line(ctx: click.Context) -> str:
    """The command as given: the root flags and this command's flags set on the line."""
    words = ["streamproc"]
    for name, value in ((ctx.find_root().obj or {}).get("overrides") or {}).items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    words.append("bench")
    for param in ctx.command.params:
        name = param.name or ""
        if ctx.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
            continue
        flag = param.opts[0]
        value = ctx.params.get(name)
        if isinstance(param, click.Option) and param.is_flag:
            words.append(flag)
        elif isinstance(value, tuple):
            words += [flag, ",".join(map(str, value))]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def _parse_loads(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        loads = tuple(float(part) for part in value.split(","))
    except ValueError:
        loads = ()
    if not loads or not all(0 < f <= 1.5 for f in loads):
        raise click.BadParameter(
            f"expected a comma list of fractions of the maximum in (0, 1.5] (e.g. 0.5,0.8), "
            f"got {value!r}"
        )
    return loads


def _parse_workers(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    counts = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 16:
            raise click.BadParameter(
                f"expected a comma list of worker counts from 1 to 16 (e.g. 1,2), got {value!r}"
            )
        counts.append(int(part))
    return tuple(sorted(set(counts)))


#: Options of the throughput, latency, reference and breakdown runs, which --soak leaves out.
_THROUGHPUT_OPTIONS = frozenset(
    {
        "events",
        "runs",
        "workers",
        "latency_seconds",
        "latency_load",
        "skip_latency",
        "skip_reference",
        "skip_breakdown",
        "profile",
    }
)


@click.command("bench")
@click.option(
    "--events",
    type=click.IntRange(min=100),
    default=_default("DEFAULT_EVENTS"),
    show_default=True,
    help="Simulated records loaded for each throughput measurement.",
)
@click.option(
    "--runs",
    type=click.IntRange(1, 20),
    default=_default("DEFAULT_RUNS"),
    show_default=True,
    help="Runs of every measurement; each figure is their median with min-max.",
)
@click.option(
    "--workers",
    "workers",
    metavar="N[,N...]",
    callback=_parse_workers,
    default=_default_workers(),
    show_default=True,
    help="Worker process counts to measure.",
)
@click.option(
    "--latency-seconds",
    type=click.FloatRange(min=1.0),
    default=_default("DEFAULT_LATENCY_SECONDS"),
    show_default=True,
    help="Duration of each latency load point, seconds.",
)
@click.option(
    "--latency-load",
    "latency_load",
    metavar="F[,F...]",
    callback=_parse_loads,
    default="0.5,0.8",
    show_default=True,
    help="Offered loads of the latency points, as fractions of the 1-worker maximum.",
)
@click.option("--skip-latency", is_flag=True, help="Leave out the latency load points.")
@click.option("--skip-reference", is_flag=True, help="Leave out the reference loop.")
@click.option("--skip-breakdown", is_flag=True, help="Leave out the in-process cost breakdown.")
@click.option(
    "--profile",
    is_flag=True,
    help="Add one (uncounted) 1-worker pass under py-spy: a flame graph and a per-step table.",
)
@click.option(
    "--bootstrap-servers",
    metavar="HOST:PORT[,...]",
    help="Use this Kafka cluster instead of starting one (its topics are named bench<id>-*, "
    "deleted at the end) [env STREAMPROC_BOOTSTRAP_SERVERS].",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the JSON results to this file.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    help="Results folder [default: benchmarks/results/<UTC timestamp>/].",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".streamproc/bench"),
    show_default=True,
    help="The bench's Kafka (kafka/, wiped at start and end) and the worker logs (logs/).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation.")
@click.option(
    "--soak",
    "soak",
    metavar="N",
    type=click.IntRange(min=2),
    help="Run only the memory soak (no throughput, latency, reference or breakdown): one "
    "worker processes N events, loaded in chunks while it runs, and its resident memory "
    "(VmRSS) is recorded each --soak-every events; the table says whether it stayed within "
    "10 % of the RSS at the first checkpoint, and a second table gives each interval's "
    "median RSS. N must be at least 2 x --soak-every. Worker settings come from the "
    "STREAMPROC_* environment as usual. 2,000,000 events take about 3 min at 14,000 "
    "events/s.",
)
@click.option(
    "--soak-every",
    "soak_every",
    metavar="K",
    type=click.IntRange(min=1000),
    default=200_000,
    show_default=True,
    help="With --soak: a checkpoint each K events processed.",
)
@click.pass_context
def command(
    ctx: click.Context,
    events: int | None,
    runs: int | None,
    workers: tuple[int, ...] | None,
    latency_seconds: float | None,
    latency_load: tuple[float, ...] | None,
    skip_latency: bool,
    skip_reference: bool,
    skip_breakdown: bool,
    profile: bool,
    bootstrap_servers: str | None,
    json_path: Path | None,
    out_dir: Path | None,
    data_dir: Path,
    seed: int,
    soak: int | None,
    soak_every: int,
) -> None:
    """Measure the pipeline: throughput on 1 and 2 workers, latency, memory and CPU per event.

    Starts its own Apache Kafka (or uses --bootstrap-servers), loads simulated Avro events
    into fresh topics and times `streamproc worker` processes (agents ingest,model) until
    their consumer-group lag is 0; measures produce-to-prediction latency at 50% and 80% of
    that maximum; runs the same work in a plain confluent-kafka loop for comparison; and times
    each step in process. Prints a Markdown table and writes results.json and results.md.

    With --soak N, runs only a memory soak instead: one worker's RSS while it processes N
    events, a checkpoint every --soak-every events, and whether it stayed flat (within 10 %).

    Exits 1 if a measurement fails or an input record is not accounted for.
    """
    if bench_package is None:
        raise click.ClickException(
            "the benchmark harness (the `benchmarks` package of the streamproc repository) "
            "cannot be imported: run `streamproc bench` from a checkout installed with "
            "`pip install -e .` (make setup)"
        )
    from benchmarks.harness import RESULTS_DIR, BenchOptions, Progress, run_bench
    from benchmarks.report import render_figures, write_results
    from benchmarks.soak import render_soak, render_soak_markdown
    from streamproc.errors import ConfigError

    given = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    if soak is None and "soak_every" in given:
        raise click.UsageError("--soak-every needs --soak N")
    if soak is not None:
        others = sorted(given & _THROUGHPUT_OPTIONS)
        if others:
            flags = ", ".join("--" + name.replace("_", "-") for name in others)
            raise click.UsageError(f"--soak runs only the memory soak: leave out {flags}")

    settings = settings_from(ctx, bootstrap_servers=bootstrap_servers)
    root = ctx.find_root().obj or {}
    if not (root.get("overrides") or {}).get("log_level") and "log_level" not in (
        settings.model_fields_set
    ):
        # Info lines from the library would break up the progress lines.
        logging.getLogger("streamproc").setLevel(logging.WARNING)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = out_dir if out_dir is not None else RESULTS_DIR / stamp
    try:
        options = BenchOptions(
            events=events if events is not None else BenchOptions.events,
            runs=runs if runs is not None else BenchOptions.runs,
            workers=workers or BenchOptions.workers,
            latency=not skip_latency,
            reference=not skip_reference,
            breakdown=not skip_breakdown,
            profile=profile,
            latency_seconds=(
                latency_seconds if latency_seconds is not None else BenchOptions.latency_seconds
            ),
            latency_fractions=latency_load or BenchOptions.latency_fractions,
            external="bootstrap_servers" in settings.model_fields_set,
            data_dir=data_dir,
            out_dir=out,
            seed=seed,
            command=_command_line(ctx),
            soak_events=soak,
            soak_every=soak_every,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    progress = Progress(lambda line: click.echo(line, err=True))
    try:
        result = run_bench(settings, options, progress)
    except KeyboardInterrupt:
        click.echo("bench interrupted: its workers and Kafka are stopped", err=True)
        ctx.exit(130)
    if soak is not None:
        written = write_results(out, result, json_path=json_path, render=render_soak_markdown)
        click.echo(render_soak(result))
    else:
        written = write_results(out, result, json_path=json_path)
        click.echo(render_figures(result["figures"]))
    click.echo(f"\nresults: {', '.join(str(p) for p in written)}", err=True)
    if not result["checks"]:
        return
    failed = [c for c in result["checks"] if not c["ok"]]
    if failed:
        for check in failed:
            click.echo(
                f"accounting: {check['what']}: expected {check['expected']:,}, "
                f"found {check['found']:,}",
                err=True,
            )
        ctx.exit(1)
