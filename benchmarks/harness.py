"""The whole benchmark: Kafka, the runs in order, the figures and the report.

Order of one run (every run the same; ``--runs`` of them):

1. for each worker count (ascending): fresh topics, start the workers, wait until they own
   every partition, load the records, time until the lag is 0 (throughput, CPU, peak RSS);
2. on the smallest worker count, while its workers are still up and warm: the latency load
   points (a fraction of the *first* run's throughput, the same rates in every run);
3. after that session has stopped: the reference loop on the same input topic (the same
   records, the first ``events`` offsets of each partition).

Then, once: the in-process breakdown of the per-event cost, and with ``profile`` one more
(uncounted) 1-worker pass under py-spy. Every figure is the median of the runs with min-max.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from benchmarks import DEFAULT_EVENTS, DEFAULT_LATENCY_SECONDS, DEFAULT_RUNS, DEFAULT_WORKERS
from benchmarks.breakdown import measure_breakdown
from benchmarks.latency import LatencyRequest, measure_latency
from benchmarks.pipeline import DrainProgress, PipelineSession, measurement_settings
from benchmarks.preload import Workload, build_workload, extra_records
from benchmarks.pyspy import IDLE, PySpyRecorder, find_py_spy
from benchmarks.reference import run_reference
from benchmarks.report import Figure, figure, machine_info
from benchmarks.resources import CpuMeter, pids_listening_on
from streamproc.config import Settings
from streamproc.errors import ConfigError, StreamprocError
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.launcher import (
    ClusterInfo,
    fetch_kafka_jars,
    find_free_ports,
    start_kafka,
    stop_kafka,
)
from streamproc.kafka.topics import delete_topics, ensure_topics
from streamproc.learning.specs import get_model_specs
from streamproc.observe.gc_pauses import freeze_long_lived

#: Each latency point's warm-up (see benchmarks/latency.py): at least this many seconds at its
#: rate, and at least the opening of a simulated stream, where most records are plays.
LATENCY_WARMUP_S = 2.0
LATENCY_WARMUP_RECORDS = 8_000
#: Records simulated past a latency point's end and not sent (a simulation's closing sessions).
LATENCY_TAIL_RECORDS = 8_000

__all__ = [
    "RESULTS_DIR",
    "BenchOptions",
    "Progress",
    "build_figures",
    "count_checks",
    "local_broker_pids",
    "release_kafka",
    "run_bench",
]

#: Where results go by default: a folder per invocation.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class BenchOptions:
    """What ``streamproc bench`` runs; the fields are its flags."""

    events: int = DEFAULT_EVENTS
    runs: int = DEFAULT_RUNS
    workers: tuple[int, ...] = DEFAULT_WORKERS
    latency: bool = True
    reference: bool = True
    breakdown: bool = True
    profile: bool = False
    latency_seconds: float = DEFAULT_LATENCY_SECONDS
    latency_fractions: tuple[float, ...] = (0.5, 0.8)
    external: bool = False  # use settings.bootstrap_servers; start no Kafka
    data_dir: Path = Path(".streamproc/bench")  # the bench's Kafka and the worker logs
    out_dir: Path = RESULTS_DIR / "latest"  # results (and the py-spy profile)
    seed: int = 0
    command: str = "streamproc bench"
    soak_events: int | None = None  # --soak N: only the memory soak (benchmarks/soak.py)
    soak_every: int = 200_000  # --soak-every K: a checkpoint each K events processed

    def __post_init__(self) -> None:
        if self.soak_every < 1:
            raise ConfigError(f"--soak-every must be at least 1, got {self.soak_every:,}")
        if self.soak_events is not None and self.soak_events < 2 * self.soak_every:
            raise ConfigError(  # two checkpoints at least: K and 2 K
                f"--soak must be at least 2 x --soak-every (2 x {self.soak_every:,} = "
                f"{2 * self.soak_every:,}), got {self.soak_events:,}"
            )
        if self.events < 100:
            raise ConfigError(f"--events must be at least 100, got {self.events}")
        if self.runs < 1:
            raise ConfigError(f"--runs must be at least 1, got {self.runs}")
        if not self.workers or any(w < 1 for w in self.workers):
            raise ConfigError(f"--workers must list counts >= 1, got {self.workers}")
        if not self.latency_seconds > 0:
            raise ConfigError(f"--latency-seconds must be > 0, got {self.latency_seconds}")
        if any(not 0 < f <= 1.5 for f in self.latency_fractions):
            raise ConfigError(
                f"latency load fractions must be in (0, 1.5], got {self.latency_fractions}"
            )


@dataclass
class Progress:
    """Progress lines with the time since the start; :meth:`tick` lines at most every few s."""

    emit: Callable[[str], None]
    every_s: float = 3.0
    started: float = field(default_factory=time.monotonic)
    _last_tick: float = 0.0

    def say(self, message: str) -> None:
        self.emit(f"[{time.monotonic() - self.started:6.1f} s] {message}")

    def tick(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_tick >= self.every_s:
            self._last_tick = now
            self.say(message)


def _utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0")


def local_broker_pids(bootstrap_servers: str) -> dict[str, int]:
    """name -> pid of the Kafka processes of this machine that serve ``bootstrap_servers``."""
    found: dict[str, int] = {}
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if host not in _LOCAL_HOSTS or not port.isdigit():
            continue
        for pid in pids_listening_on(int(port)):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().lower()
            except OSError:
                continue
            if b"kafka" in cmdline and pid not in found.values():
                found[f"broker-{len(found) + 1}"] = pid
    return found


def _start_kafka(settings: Settings, options: BenchOptions, progress: Progress) -> ClusterInfo:
    kafka_dir = options.data_dir / "kafka"
    if stop_kafka(kafka_dir, wipe=True):
        progress.say(f"stopped the Kafka of an earlier bench run ({kafka_dir})")
    fetch_kafka_jars(settings, progress=progress.say)
    return start_kafka(
        settings,
        port=find_free_ports(2),
        data_dir=kafka_dir,
        timeout=120.0,
        progress=progress.say,
        exit_with_parent=True,  # a bench killed outright takes its broker along
    )


def _drain_ticker(
    progress: Progress, label: str, session: PipelineSession
) -> Callable[[DrainProgress], None]:
    def tick(p: DrainProgress) -> None:
        progress.tick(
            f"{label}: {p.ingested:,} / {session.loaded:,} ingested, {p.scored:,} / "
            f"{p.valid_end:,} valid scored, {p.elapsed_s:5.1f} s"
        )

    return tick


def _checks(
    label: str, counts: dict[str, int], workload: Workload, n_models: int, events: int
) -> list[dict[str, Any]]:
    """Each input record accounted for, and one prediction per model per valid play."""
    kinds = workload.kinds
    wanted = {
        "input": events,
        "valid": kinds["valid"],
        "dead_letters": kinds["invalid"],
        "duplicates_dropped": kinds["duplicate"],
        "predictions": workload.plays * n_models,
    }
    return count_checks(label, counts, wanted)


def count_checks(
    label: str, counts: Mapping[str, int], expected: Mapping[str, int]
) -> list[dict[str, Any]]:
    """One check per expected count: ``{what, expected, found, ok}``."""
    return [
        {
            "what": f"{label}: {key}",
            "expected": value,
            "found": counts.get(key, 0),
            "ok": counts.get(key, 0) == value,
        }
        for key, value in expected.items()
    ]


def release_kafka(
    settings: Settings,
    options: BenchOptions,
    cluster: ClusterInfo | None,
    bench_id: str,
    *,
    reached: bool,
    progress: Progress,
) -> None:
    """Delete the bench's topics on an external cluster, or stop (and wipe) its own Kafka."""
    if options.external and reached:
        removed = delete_topics(settings, bench_id)
        if removed:
            progress.say(f"deleted the bench's {len(removed)} topics")
    elif cluster is not None:
        progress.say("stopping the bench's Kafka ...")
        stop_kafka(cluster.data_dir, wipe=True)


def run_bench(settings: Settings, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); return the result (JSON-able).

    Raises
    ------
    StreamprocError
        If Kafka cannot start, a worker dies, the workers do not drain in time, or the
        reference loop fails. Workers, the reference process and the bench's Kafka are
        stopped on every exit.
    """
    if options.soak_events is not None:  # --soak: the memory soak and nothing else
        from benchmarks.soak import run_soak

        return run_soak(settings, options, progress)
    started_at = _utc()
    begun = time.monotonic()
    machine = machine_info()
    workers = tuple(sorted(set(options.workers)))
    first = workers[0]
    bench_id = f"bench{uuid.uuid4().hex[:8]}"
    cluster: ClusterInfo | None = None
    reached = False  # the external cluster answered: its bench topics are deleted at the end
    runs: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    breakdown: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    n_models = len(get_model_specs(settings.models))
    logs = options.data_dir / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # the logs of the previous bench run
    drain_timeout = max(180.0, options.events / 50)
    try:
        if options.external:
            progress.say(f"using the Kafka cluster at {settings.bootstrap_servers}")
            wait_for_broker(settings, timeout=30.0)
            reached = True
            bootstrap = settings.bootstrap_servers
            brokers: dict[str, int] = local_broker_pids(bootstrap)
            progress.say(
                f"broker process(es) on this machine: {', '.join(map(str, brokers.values()))}"
                if brokers
                else "the brokers do not run on this machine: their CPU time is not measured"
            )
        else:
            cluster = _start_kafka(settings, options, progress)
            bootstrap = cluster.bootstrap_servers
            brokers = {f"broker-{n.node_id}": n.pid for n in cluster.nodes}
        keys = settings.snapshot_keys or SecretStr(f"bench:{secrets.token_hex(16)}")
        base = settings.model_copy(update={"bootstrap_servers": bootstrap, "snapshot_keys": keys})

        progress.say(f"simulating {options.events:,} records (Avro, seed {options.seed}) ...")
        workload = build_workload(base, options.events, seed=options.seed)
        # The workload's records live to the end: out of the collector's way, so that full
        # collections do not pause the paced producer of the latency points.
        freeze_long_lived()
        progress.say(
            f"workload: {workload.events:,} records ({workload.kinds['valid']:,} valid, "
            f"{workload.kinds['invalid']:,} invalid, {workload.kinds['duplicate']:,} duplicates; "
            f"{workload.plays:,} plays), {workload.mean_bytes:.0f} bytes on average"
        )
        rates: dict[float, float] | None = None
        for run in range(1, options.runs + 1):
            record: dict[str, Any] = {
                "run": run,
                "pipeline": {},
                "reference": None,
                "latency": [],
                "load_average": None,
            }
            for count in workers:
                prefix = f"{bench_id}-r{run}-w{count}"
                label = f"run {run}/{options.runs}, {count} worker(s)"
                ms = measurement_settings(base, prefix)
                progress.say(f"{label}: starting the workers (topics {prefix}-*) ...")
                with PipelineSession(
                    ms, count, logs, broker_pids=brokers, say=progress.tick
                ) as session:
                    joined = session.wait_joined()
                    progress.say(f"{label}: joined in {joined:.1f} s; loading and draining ...")
                    tp = session.measure_throughput(
                        workload.records,
                        timeout=drain_timeout,
                        on_progress=_drain_ticker(progress, label, session),
                    )
                    record["pipeline"][str(count)] = tp.as_dict()
                    checks += _checks(label, tp.counts, workload, n_models, workload.events)
                    progress.say(
                        f"{label}: {tp.throughput:,.0f} events/s ({tp.events:,} in "
                        f"{tp.seconds:.1f} s; loaded in {tp.load_seconds:.1f} s)"
                    )
                    if count == first and options.latency:
                        if rates is None:
                            rates = {f: f * tp.throughput for f in options.latency_fractions}
                        requests = []
                        for i, fraction in enumerate(options.latency_fractions):
                            needed = int(rates[fraction] * options.latency_seconds * 1.1) + 100
                            seed = options.seed + 1000 * run + i
                            warm = max(
                                int(rates[fraction] * LATENCY_WARMUP_S), LATENCY_WARMUP_RECORDS
                            )
                            # New sessions of the workload's viewers and titles: the
                            # workers' models and statistics stay valid, as in a service
                            # that keeps running. (A new world, as before, set off drift
                            # signals, challengers and snapshots in every point.)
                            stream = extra_records(
                                base,
                                warm + needed + LATENCY_TAIL_RECORDS,
                                seed=seed,
                                world_seed=options.seed,
                            )
                            requests.append(
                                LatencyRequest(
                                    fraction,
                                    rates[fraction],
                                    options.latency_seconds,
                                    stream[: warm + needed],
                                    warmup=warm,
                                )
                            )
                        points = measure_latency(
                            session,
                            requests,
                            say=progress.say,
                            on_progress=_drain_ticker(progress, f"{label}, latency", session),
                        )
                        record["latency"] = [p.as_dict() for p in points]
                        for p in points:
                            q = p.as_dict()["latency_ms"] or {}
                            progress.say(
                                f"{label}: latency at {p.fraction:.0%} ({p.offered_rate:,.0f} "
                                f"events/s): p50 {q.get('p50', float('nan')):,.0f} ms, "
                                f"p99 {q.get('p99', float('nan')):,.0f} ms "
                                f"({len(p.latencies_ms):,} predictions)"
                            )
                if count == first and options.reference:
                    ref_settings = measurement_settings(base, f"{prefix}-ref")
                    ensure_topics(ref_settings)
                    progress.say(f"run {run}/{options.runs}: reference loop on {ms.topic_input}")
                    meter = CpuMeter(brokers).start()
                    ref = run_reference(
                        ref_settings,
                        ms.topic_input,
                        tp.input_end_offsets,
                        say=progress.tick,
                        timeout=drain_timeout,
                    )
                    broker_cpu = meter.stop()
                    record["reference"] = {**ref.as_dict(), "broker_cpu_s": broker_cpu}
                    checks += _checks(
                        f"run {run}/{options.runs}, reference loop",
                        ref.counts,
                        workload,
                        n_models,
                        workload.events,
                    )
                    progress.say(
                        f"run {run}/{options.runs}: reference loop {ref.throughput:,.0f} "
                        f"events/s ({ref.events:,} in {ref.seconds:.1f} s)"
                    )
            record["load_average"] = machine_info()["load_average"]
            runs.append(record)

        if options.breakdown:
            progress.say("in-process breakdown of the per-event cost ...")
            bd_settings = measurement_settings(base, f"{bench_id}-breakdown")
            breakdown = measure_breakdown(
                bd_settings, workload.records, repeats=options.runs, say=progress.say
            ).as_dict()
        if options.profile:
            profile = _profile(
                base, bench_id, workload, brokers, logs, drain_timeout, progress, options
            )
    finally:
        release_kafka(settings, options, cluster, bench_id, reached=reached, progress=progress)

    result: dict[str, Any] = {
        "schema_version": 1,
        "command": options.command,
        "started_at": started_at,
        "finished_at": _utc(),
        "duration_s": round(time.monotonic() - begun, 1),
        "machine": machine,
        "load_average_end": machine_info()["load_average"],
        "settings": _settings_used(base, options, workload, cluster, rates),
        "figures": build_figures(runs, workers, options.latency_fractions, rates),
        "checks": checks,
        "runs": runs,
        "breakdown": breakdown,
        "profile": profile,
    }
    return result


def _settings_used(
    settings: Settings,
    options: BenchOptions,
    workload: Workload,
    cluster: ClusterInfo | None,
    rates: dict[float, float] | None,
) -> dict[str, Any]:
    return {
        "events": options.events,
        "runs": options.runs,
        "workers": ",".join(map(str, sorted(set(options.workers)))),
        "record_bytes_mean": round(workload.mean_bytes),
        "invalid": workload.kinds["invalid"],
        "duplicates": workload.kinds["duplicate"],
        "plays": workload.plays,
        "partitions": settings.partitions,
        "agents": "ingest,model",
        "models": settings.models,
        "batch_size": settings.batch_size,
        "consumer_partition_fetch_bytes": settings.consumer_partition_fetch_bytes,
        "producer_linger_ms": settings.producer_linger_ms,
        "log_level": settings.log_level,
        "output_format": settings.output_format,
        "snapshot_every_events": settings.snapshot_every_events,
        "latency_seconds": options.latency_seconds if options.latency else None,
        "latency_rates_eps": ({f"{f:.0%}": round(r) for f, r in rates.items()} if rates else None),
        "kafka": "external" if cluster is None else "started by the bench (1 broker)",
        "kafka_version": cluster.kafka_version if cluster is not None else "external",
    }


def build_figures(
    runs: list[dict[str, Any]],
    workers: tuple[int, ...],
    fractions: tuple[float, ...],
    rates: dict[float, float] | None,
) -> list[Figure]:
    """The results table's rows from the per-run records (median and min-max of each)."""

    def pipe(count: int, key: str) -> list[Any]:
        return [r["pipeline"].get(str(count), {}).get(key) for r in runs]

    def ref(key: str) -> list[Any]:
        return [(r["reference"] or {}).get(key) for r in runs]

    rows: list[Figure | None] = []
    for w in workers:
        rows.append(
            figure(
                f"throughput_{w}",
                f"throughput, {w} worker{'s' * (w > 1)}",
                "events/s",
                pipe(w, "throughput_eps"),
            )
        )
    rows.append(
        figure(
            "reference",
            "reference loop (plain confluent-kafka, 1 process)",
            "events/s",
            ref("throughput_eps"),
        )
    )
    for w in workers:
        ratios = [
            p / q if p and q else None
            for p, q in zip(pipe(w, "throughput_eps"), ref("throughput_eps"), strict=True)
        ]
        rows.append(
            figure(
                f"ratio_{w}",
                f"pipeline ({w} worker{'s' * (w > 1)}) / reference",
                "x",
                ratios,
                digits=2,
            )
        )
    if len(workers) > 1:
        low, high = workers[0], workers[-1]
        speedups = [
            p / q if p and q else None
            for p, q in zip(pipe(high, "throughput_eps"), pipe(low, "throughput_eps"), strict=True)
        ]
        rows.append(
            figure(
                f"speedup_{high}_{low}",
                f"speed-up, {high} vs {low} worker(s)",
                "x",
                speedups,
                digits=2,
            )
        )
    for i, fraction in enumerate(fractions):
        rate = f" = {rates[fraction]:,.0f} events/s" if rates else ""
        for q in ("p50", "p95", "p99"):
            values = [
                ((r["latency"][i]["latency_ms"] or {}).get(q) if len(r["latency"]) > i else None)
                for r in runs
            ]
            rows.append(
                figure(
                    f"latency_{round(fraction * 100)}_{q}",
                    f"latency {q}, at {fraction:.0%} of max{rate}",
                    "ms",
                    values,
                )
            )
        cpu = [
            (r["latency"][i].get("worker_cpu_us_per_event") if len(r["latency"]) > i else None)
            for r in runs
        ]
        rows.append(
            figure(
                f"latency_{round(fraction * 100)}_worker_cpu",
                f"worker CPU per event at {fraction:.0%} of max (paced)",
                "µs",
                cpu,
            )
        )
    for w in workers:
        rss = [
            max((b for b in v if b), default=None) if v else None for v in pipe(w, "peak_rss_bytes")
        ]
        rows.append(
            figure(
                f"rss_{w}",
                f"peak RSS per worker, {w} worker{'s' * (w > 1)} (largest)",
                "MB",
                [b / 1e6 if b else None for b in rss],
            )
        )
    rows.append(
        figure(
            "rss_reference",
            "peak RSS, reference loop",
            "MB",
            [b / 1e6 if b else None for b in ref("peak_rss_bytes")],
        )
    )
    for w in workers:
        rows.append(
            figure(
                f"worker_cpu_{w}",
                f"worker CPU per event, {w} worker{'s' * (w > 1)} (all together)",
                "µs",
                pipe(w, "worker_cpu_us_per_event"),
            )
        )
        rows.append(
            figure(
                f"broker_cpu_{w}",
                f"broker CPU per event, {w} worker{'s' * (w > 1)}",
                "µs",
                pipe(w, "broker_cpu_us_per_event"),
            )
        )
    rows.append(
        figure("reference_cpu", "reference loop CPU per event", "µs", ref("cpu_us_per_event"))
    )
    broker_ref = []
    for r in runs:
        ref_cpu = (r["reference"] or {}).get("broker_cpu_s") or {}
        used = [v for k, v in ref_cpu.items() if k.startswith("broker")]
        events = (r["reference"] or {}).get("events")
        broker_ref.append(sum(used) / events * 1e6 if used and events else None)
    rows.append(
        figure("broker_cpu_reference", "broker CPU per event, reference loop", "µs", broker_ref)
    )
    for w in workers:
        others = []
        for cpu in pipe(w, "cpu_s"):
            wall = (cpu or {}).get("wall")
            other = (cpu or {}).get("others")
            others.append(other / wall if other is not None and wall else None)
        rows.append(
            figure(
                f"others_{w}",
                f"CPU of other processes during the {w}-worker runs",
                "cores",
                others,
                digits=2,
            )
        )
    return [r for r in rows if r is not None]


def _profile(
    base: Settings,
    bench_id: str,
    workload: Workload,
    brokers: dict[str, int],
    logs: Path,
    drain_timeout: float,
    progress: Progress,
    options: BenchOptions,
) -> dict[str, Any]:
    """One more 1-worker pass (not counted) with py-spy attached to the worker."""
    executable = find_py_spy()
    if executable is None:
        raise StreamprocError(
            "--profile needs py-spy: install it into the virtualenv (pip install py-spy)"
        )
    ms = measurement_settings(base, f"{bench_id}-profile")
    out = options.out_dir / "profile"
    progress.say("profile: a 1-worker pass with py-spy attached ...")
    with PipelineSession(ms, 1, logs, broker_pids=brokers, say=progress.tick) as session:
        session.wait_joined()
        recorder = PySpyRecorder(session.pids[0], out, executable).start()
        try:
            tp = session.measure_throughput(
                workload.records,
                timeout=drain_timeout,
                on_progress=_drain_ticker(progress, "profile", session),
            )
        finally:
            samples = recorder.stop()
    busy = {k: v for k, v in samples.items() if k != IDLE}
    total_busy = sum(busy.values()) or 1
    return {
        "throughput_eps": tp.throughput,
        "worker_cpu_us_per_event": tp.cpu_per_event_us("worker"),
        "idle_samples": samples.get(IDLE, 0),
        "steps": [
            {"step": k, "samples": v, "share": v / total_busy}
            for k, v in sorted(busy.items(), key=lambda kv: -kv[1])
        ],
        "svg": str(recorder.svg),
        "collapsed": str(recorder.raw),
    }
