"""``streamproc demo``: the whole pipeline on a local Kafka, end to end, with a live view.

Steps: start the demo's own Kafka (or use the configured cluster), create the topics, start
the workers, publish a simulated stream with invalid records and duplicates while the live
view (:mod:`streamproc.observe.live`) runs, wait until the workers have caught up, account
for every record (:class:`DemoReport`) and report what the workers did about the drift
(:mod:`streamproc.drift.observed`).

The stream follows a scenario of :mod:`streamproc.simulate.scenarios`, by default the data
drift (``throttled_cdn``) from 40 % of the events on. The world is the drift tests' (400
users, 120 titles, 2 sessions a simulated minute: a session's label follows its play within a
few hundred events, so the detectors and the challengers get labels soon enough), and the
publisher partitions keys with murmur2 like the workers, so each valid partition is fed by
one input partition in publish order: a seed gives the same signals, at the same offsets,
every run. On the defaults (seed 0, 40,000 events, onset 16,000, 1 partition) the worker
signals data drift 2,695 events after the onset, starts a qoe challenger at +6,929 (label
drift) and promotes it as qoe v2 at +13,507; with 2 partitions each partition's models see
half the events, and it takes about 80,000 events for both to promote.

Data between runs: the demo's Kafka keeps its data in ``<data_dir>/kafka``, and each run
stops and wipes it first (``keep_data=False``), so the topics hold exactly this run's records
and the books of the audit are this run's books. The topic names and the app id stay the
defaults, so ``streamproc consume predictions``, ``streamproc lag`` and ``streamproc models
list`` work against the demo without flags. With ``keep_data`` or an external cluster, the
live figures are counted from the offsets the topics had at the start, and the audit covers
the whole topics (earlier runs included).

The snapshot signing key, when ``STREAMPROC_SNAPSHOT_KEYS`` is not set, is generated once and
kept in ``<data_dir>/snapshot.key`` (mode 0600); it is passed to the workers, never printed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console, RenderableType
from rich.live import Live

from streamproc.audit import IngestAudit, audit_ingest
from streamproc.config import Settings
from streamproc.dlq import DlqSummary, inspect_dlq
from streamproc.drift.observed import DriftRun, ValidRecord, build_drift_run, format_drift_run
from streamproc.emit.decode_any import decode_record
from streamproc.errors import KafkaError, StreamprocError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.lag import consumer_lag
from streamproc.kafka.launcher import (
    fetch_kafka_jars,
    find_free_ports,
    kafka_status,
    port_in_use,
    start_kafka,
    stop_kafka,
)
from streamproc.kafka.read import read_to_end
from streamproc.kafka.topics import ensure_topics
from streamproc.learning.specs import get_model_specs
from streamproc.observe.live import (
    DRIFT_ROWS,
    LivePoller,
    LiveSnapshot,
    WorkerFigures,
    format_drift_line,
    format_quality,
    format_status_line,
    partition_end_offsets,
    render_view,
)
from streamproc.produce import EventProducer
from streamproc.registry.signing import parse_keys
from streamproc.registry.store import SnapshotInfo, list_snapshot_infos
from streamproc.simulate import Manifest, SimParams, simulate_events
from streamproc.simulate.scenarios import SCENARIO_ALIASES, register_variant
from streamproc.simulate.stream import sessions_per_minute_for
from streamproc.workers import WorkerProcess, wait_for_catch_up

__all__ = [
    "DEFAULT_ONSET_FRACTION",
    "DEFAULT_SCENARIO",
    "DemoOptions",
    "DemoReport",
    "format_end_report",
    "run_demo",
]

_KEY_FILE = "snapshot.key"
_JOIN_TIMEOUT_S = 120.0
_STATUS_LINE_EVERY_S = 5.0
#: The scenario the demo runs unless told otherwise (an alias of SCENARIO_ALIASES).
DEFAULT_SCENARIO = "data-drift"
#: Where a drift starts unless --drift-at says: this fraction of the valid events.
DEFAULT_ONSET_FRACTION = 0.4
#: The demo's world (see the module docstring).
DEMO_USERS = 400
DEMO_TITLES = 120
#: Sessions a simulated minute (more for very long runs, so that no event is old enough for
#: the ingest's event_time_past rule).
DEMO_SESSIONS_PER_MINUTE = 2.0
#: Engagement labels per window of the plot's AUC curves.
_AUC_WINDOW = 500


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``streamproc demo`` runs; the fields are its flags."""

    events: int = 40_000
    rate: float = 3000.0  # records a second; 0 = as fast as possible
    invalid_fraction: float = 0.03
    duplicate_fraction: float = 0.01
    seed: int = 0
    workers: int = 1
    keep_running: bool = False
    keep_data: bool = False
    data_dir: Path = Path(".streamproc/demo")
    agents: str = "ingest,model"
    external: bool = False  # use settings.bootstrap_servers; start no Kafka
    catch_up_timeout_s: float = 300.0
    scenario: str = DEFAULT_SCENARIO  # a registered scenario or an alias
    drift_at: int | None = None  # onset (valid-event index); None: DEFAULT_ONSET_FRACTION
    partitions: int = 1  # of the topics the demo creates

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def model_running(self) -> bool:
        return "model" in {a.strip() for a in self.agents.split(",")}

    @property
    def scenario_name(self) -> str:
        """The registered name of :attr:`scenario` (an alias resolved)."""
        return SCENARIO_ALIASES.get(self.scenario, self.scenario)

    @property
    def scenario_label(self) -> str:
        """How the reports name the scenario, e.g. ``data-drift (throttled_cdn)``."""
        name = self.scenario_name
        return name if name == self.scenario else f"{self.scenario} ({name})"

    @property
    def onset(self) -> int | None:
        """The drift's onset index, or None for the stationary scenario."""
        if self.scenario_name == "stationary":
            return None
        if self.drift_at is not None:
            return self.drift_at
        return int(self.events * DEFAULT_ONSET_FRACTION)

    def sim_params(self, settings: Settings) -> SimParams:
        """What the publisher simulates (a drift scenario registered with its onset)."""
        onset = self.onset
        scenario = (
            "stationary" if onset is None else register_variant(self.scenario_name, onset=onset)
        )
        return SimParams(
            n_events=self.events,
            n_users=DEMO_USERS,
            n_titles=DEMO_TITLES,
            seed=self.seed,
            fmt=settings.producer_format,
            invalid_fraction=self.invalid_fraction,
            duplicate_fraction=self.duplicate_fraction,
            scenario=scenario,
            sessions_per_minute=sessions_per_minute_for(
                self.events, at_least=DEMO_SESSIONS_PER_MINUTE
            ),
        )


@dataclass
class DemoReport:
    """What the demo found once the workers had caught up."""

    audit: IngestAudit
    dlq: DlqSummary
    manifest: Manifest
    published: int
    seconds: float  # from the first record published to caught up
    final: LiveSnapshot
    model_running: bool
    models: list[str]
    predictions: Counter[str] = field(default_factory=Counter)  # model -> distinct plays
    prediction_records: int = 0  # prediction records for this run's plays, repeats included
    earlier_input: int = 0  # input records on the topic from before this run
    quality: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, metric)
    quality_source: str = "the workers' /status.json"
    left_running: list[str] = field(default_factory=list)  # --keep-running: how to stop
    drift: DriftRun | None = None  # None: the model agent did not run
    scenario_label: str = "stationary"

    @property
    def plays(self) -> int:
        return self.manifest.counts["sessions"]

    @property
    def predictions_complete(self) -> bool:
        return all(self.predictions[m] == self.plays for m in self.models)


def demo_snapshot_keys(data_dir: Path) -> SecretStr:
    """The demo's snapshot key spec: read from ``data_dir/snapshot.key``, made on first use.

    Raises
    ------
    StreamprocError
        If the key file exists but does not hold a ``key-id:secret`` spec.
    """
    path = data_dir / _KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        spec = f"demo:{secrets.token_hex(32)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(spec + "\n")
    spec = path.read_text(encoding="utf-8").strip()
    try:
        parse_keys(spec)
    except StreamprocError as exc:
        raise StreamprocError(
            f"{path} does not hold a snapshot key ({exc}); delete it and the demo makes a new one"
        ) from exc
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return SecretStr(spec)


class _Publisher(threading.Thread):
    """Publish the simulation at ``rate`` records a second (0: no limit) in a daemon thread."""

    def __init__(self, settings: Settings, params: SimParams, rate: float) -> None:
        super().__init__(name="streamproc-demo-publisher", daemon=True)
        self.simulation = simulate_events(params, settings)
        # EventProducer puts keys where the workers' producer does (murmur2, as Java clients
        # do), so valid partition p is fed by input partition p alone, in publish order.
        self.producer = EventProducer(settings, params.fmt)
        self.rate = rate
        self.sent = 0
        self.valid_ids: list[str] = []  # ids of the valid events, in publish order
        self.error: Exception | None = None
        self.finished = threading.Event()
        self.finished_at = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        batch = max(1, int(self.rate * 0.005)) if self.rate > 0 else 0
        started = time.perf_counter()
        try:
            for record in self.simulation:
                if self._halt.is_set():
                    break
                self.producer.send_raw(record.key, record.value)
                self.sent += 1
                if record.kind == "valid" and record.event_id is not None:
                    self.valid_ids.append(record.event_id)
                if batch and self.sent % batch == 0:
                    delay = started + self.sent / self.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
            failed = self.producer.flush(5.0 if self._halt.is_set() else 60.0)
            if failed and not self._halt.is_set():
                self.error = KafkaError(
                    f"{failed} of {self.sent} records could not be delivered to "
                    f"{self.producer.topic} (last error: {self.producer.last_error})"
                )
        except Exception as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()
            self.finished.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ignore Ctrl-C while cleaning up, so a second one cannot leave a worker or broker behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_kafka(settings: Settings, options: DemoOptions, say: Callable[[str], None]) -> str:
    """Start (or reuse) the demo's Kafka; return its bootstrap servers."""
    kafka_dir = options.kafka_dir
    if not options.keep_data:
        had_data = kafka_dir.is_dir() and any(kafka_dir.iterdir())
        if stop_kafka(kafka_dir, wipe=True):
            say(f"stopped the Kafka of an earlier demo run ({kafka_dir})")
        if had_data:
            say(f"wiped the data of an earlier demo run in {kafka_dir} (--keep-data keeps it)")
    status = kafka_status(kafka_dir)
    if status.state == "running" and status.info is not None:
        say(f"reusing the demo's Kafka at {status.info.bootstrap_servers} (--keep-data)")
        return status.info.bootstrap_servers
    fetch_kafka_jars(settings, progress=say)
    port = settings.kafka_port
    if port_in_use(port) or port_in_use(port + 1):
        port = find_free_ports(2)
        say(
            f"port {settings.kafka_port} or {settings.kafka_port + 1} is taken by another "
            f"process: the demo's Kafka uses ports {port}-{port + 1} instead"
        )
    info = start_kafka(
        settings,
        port=port,
        data_dir=kafka_dir,
        timeout=120.0,
        progress=say,
        # A demo killed outright takes its broker along, unless the broker is meant to stay.
        exit_with_parent=not options.keep_running,
    )
    return info.bootstrap_servers


def _metrics_ports(settings: Settings, count: int, say: Callable[[str], None]) -> list[int]:
    if not settings.metrics_port:
        return [0] * count
    ports = [settings.metrics_port + i for i in range(count)]
    if any(port_in_use(p, settings.metrics_host) for p in ports):
        first = find_free_ports(count)
        say(f"metrics port(s) {ports[0]}-{ports[-1]} taken: the workers use {first}+ instead")
        ports = [first + i for i in range(count)]
    return ports


def _check_workers(workers: list[WorkerProcess]) -> None:
    for i, worker in enumerate(workers, start=1):
        if not worker.alive():
            code = worker.stop()  # already exited: this only reads the exit status
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited ({code})"
            raise StreamprocError(
                f"worker {i} (pid {worker.pid}) {how}; the end of its log {worker.log_path}:\n"
                f"{worker.log_tail()}"
            )


def _wait_joined(settings: Settings, workers: list[WorkerProcess]) -> bool:
    """Wait until every input partition has a worker; False after the timeout."""
    deadline = time.monotonic() + _JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        _check_workers(workers)
        with contextlib.suppress(StreamprocError):
            rows = consumer_lag(
                settings, settings.app_id, topics=[settings.topic_input], with_seconds=False
            )
            if rows and all(r.member for r in rows):
                return True
        time.sleep(0.5)
    return False


def quality_from_snapshots(settings: Settings) -> dict[tuple[str, str], float]:
    """(model, metric) -> prequential figure of the newest snapshots of ``model_namespace``.

    Each model's figure is the mean over its partitions' newest snapshots, weighted by the
    labels each partition has learned from.
    """
    newest: dict[tuple[str, int], SnapshotInfo] = {}
    for info in list_snapshot_infos(settings, load_schemas(settings.schemas_path)):
        if info.namespace != settings.model_namespace:
            continue
        key = (info.model, info.partition)
        if key not in newest or (info.version, info.events_seen) >= (
            newest[key].version,
            newest[key].events_seen,
        ):
            newest[key] = info
    sums: dict[tuple[str, str], tuple[float, float]] = {}
    for info in newest.values():
        weight = info.metrics.get("labels", 0.0)
        if weight <= 0:
            continue
        for metric, value in info.metrics.items():
            if metric == "labels" or metric.endswith("_recent"):
                continue
            total, weights = sums.get((info.model, metric), (0.0, 0.0))
            sums[(info.model, metric)] = (total + weight * value, weights + weight)
    return {k: total / weights for k, (total, weights) in sums.items()}


def _read_predictions(
    settings: Settings, plays: set[str]
) -> tuple[Counter[str], int, list[dict[str, object]]]:
    """Distinct predicted plays per model, the prediction records for ``plays``, and them."""
    schemas = load_schemas(settings.schemas_path)
    seen: set[tuple[str, str]] = set()
    found: list[dict[str, object]] = []
    for rec in read_to_end(settings, settings.topic_predictions):
        _, prediction = decode_record(rec.value or b"", schemas)
        event_id = str(prediction.get("event_id"))
        if event_id in plays:
            found.append(prediction)
            seen.add((event_id, str(prediction.get("model"))))
    return Counter(model for _, model in seen), len(found), found


def _read_since(
    settings: Settings, topic: str, start: dict[int, int]
) -> list[tuple[int, int, dict[str, object]]]:
    """(partition, offset, decoded record) of ``topic`` from the offsets in ``start`` on."""
    schemas = load_schemas(settings.schemas_path)
    out = []
    for rec in read_to_end(settings, topic):
        if rec.offset < start.get(rec.partition, 0):
            continue
        _, record = decode_record(rec.value or b"", schemas)
        out.append((rec.partition, rec.offset, record))
    return out


def _drift_run(
    settings: Settings,
    options: DemoOptions,
    starts: dict[str, dict[int, int]],
    publisher: _Publisher,
    predictions: list[dict[str, object]],
) -> DriftRun:
    """What the workers did about the drift, from the valid, drift and prediction topics."""
    valid = [
        ValidRecord.from_event(p, o, event)
        for p, o, event in _read_since(settings, settings.topic_valid, starts["valid"])
    ]
    signals = [s for _, _, s in _read_since(settings, settings.topic_drift, starts["drift"])]
    return build_drift_run(
        scenario=options.scenario_name,
        onset_index=options.onset,
        published=publisher.valid_ids,
        sessions=publisher.simulation.manifest.sessions,
        valid=valid,
        signals=signals,
        predictions=predictions,
        models=[s.name for s in get_model_specs(settings.models)],
        completion_threshold=settings.completion_threshold,
        # A demo run has a few thousand sessions: short windows, so the curve starts early.
        auc_window=_AUC_WINDOW,
        auc_step=_AUC_WINDOW // 5,
    )


def run_demo(
    settings: Settings,
    options: DemoOptions,
    *,
    console: Console | None = None,
) -> DemoReport:
    """Run the demo (see the module docstring) and return what it found.

    The workers and the demo's Kafka are stopped on return, on error and on Ctrl-C; with
    ``keep_running``, they keep running after a successful run.

    Raises
    ------
    StreamprocError
        If Kafka cannot start, a worker dies (the message ends with its log), the publisher
        fails, or the workers do not catch up within ``catch_up_timeout_s``.
    """
    console = console or Console()

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False, soft_wrap=True)

    workers: list[WorkerProcess] = []
    poller: LivePoller | None = None
    publisher: _Publisher | None = None
    started_kafka = False
    succeeded = False
    try:
        if options.external:
            say(f"using the Kafka at {settings.bootstrap_servers} (STREAMPROC_BOOTSTRAP_SERVERS)")
            bootstrap = settings.bootstrap_servers
        else:
            started_kafka = True
            bootstrap = _start_kafka(settings, options, say)
        keys = settings.snapshot_keys or demo_snapshot_keys(options.data_dir)
        ports = _metrics_ports(settings, options.workers, say)
        settings = settings.model_copy(
            update={
                "bootstrap_servers": bootstrap,
                "kafka_data_dir": options.kafka_dir,
                "agents": options.agents,
                "snapshot_keys": keys,
                "metrics_host": "127.0.0.1",
                "partitions": options.partitions,
            }
        )
        outcomes = [outcome for _, outcome in ensure_topics(settings)]
        say(
            f"topics: {outcomes.count('created')} created, {outcomes.count('exists')} already there"
        )
        if bootstrap != Settings.model_fields["bootstrap_servers"].default:
            say(f"other commands reach this Kafka with --bootstrap-servers {bootstrap}")
        topics = settings.topics
        roles = ("input", "valid", "dlq", "predictions", "drift")
        ends = partition_end_offsets(settings, [topics[r] for r in roles])
        starts = {role: ends[topics[role]] for role in roles}
        baseline = {topic: sum(by_partition.values()) for topic, by_partition in ends.items()}
        if len(starts["input"]) != options.partitions:
            say(
                f"the topics have {len(starts['input'])} partition(s), made before this run "
                f"(--partitions {options.partitions} applies to topics the demo creates)"
            )
        if any(baseline.values()):
            say(
                "the topics hold records from earlier runs: the live figures count from now on, "
                "the audit covers the whole topics"
            )

        urls = [f"http://127.0.0.1:{p}" for p in ports if p]
        say(f"starting {options.workers} worker(s) with agents {options.agents} ...")
        for i, port in enumerate(ports, start=1):
            log = options.data_dir / "logs" / f"worker-{i}.log"
            env = {"STREAMPROC_METRICS_PORT": str(port), "STREAMPROC_AGENTS": options.agents}
            workers.append(WorkerProcess(settings, log, env).start())
            say(f"  worker {i}: pid {workers[-1].pid}, log {log}")
        for i, url in enumerate(urls, start=1):
            say(f"  worker {i}: status {url}/status  metrics {url}/metrics")
        if not _wait_joined(settings, workers):
            say(f"the workers have not joined group {settings.app_id} after "
                f"{_JOIN_TIMEOUT_S:.0f} s; publishing anyway")  # fmt: skip

        lag_roles = ("input", "valid") if options.model_running else ("input",)
        catch_up = [topics[r] for r in lag_roles]
        publisher = _Publisher(settings, options.sim_params(settings), options.rate)
        poller = LivePoller(
            settings, baseline, urls, lag_roles=lag_roles, model_running=options.model_running
        ).start()
        rate = f"{options.rate:,.0f} records/s" if options.rate else "as fast as possible"
        say(f"publishing {options.events:,} valid events (+ invalid, duplicates) at {rate}")
        onset = options.onset
        say(
            f"scenario {options.scenario_label}"
            + ("" if onset is None else f": the truth changes at valid event #{onset:,}")
            + f"; seed {options.seed}, {len(starts['input'])} partition(s)"
        )
        poller.phase = "publishing"
        publisher.start()
        begun = time.monotonic()

        def finish() -> LiveSnapshot:
            wait_for_catch_up(settings, catch_up, timeout=60.0, workers=workers)
            poller.phase = "caught up"
            return poller.poll()

        final = _watch(console, poller, publisher, workers, catch_up, options, finish)
        seconds = time.monotonic() - begun

        say("auditing the topics ...")
        plays = {s.play_event_id for s in publisher.simulation.manifest.sessions}
        report = DemoReport(
            audit=audit_ingest(settings),
            dlq=inspect_dlq(settings, samples=1),
            manifest=publisher.simulation.manifest,
            published=publisher.sent,
            seconds=seconds,
            final=final,
            model_running=options.model_running,
            models=[s.name for s in get_model_specs(settings.models)],
            earlier_input=baseline[topics["input"]],
            scenario_label=options.scenario_label,
        )
        if options.model_running:
            report.predictions, report.prediction_records, predictions = _read_predictions(
                settings, plays
            )
            say("reading back the drift signals ...")
            report.drift = _drift_run(settings, options, starts, publisher, predictions)
            report.quality = dict(final.workers.quality)
            if not report.quality:
                if not options.keep_running:
                    # A worker snapshots its models when it stops: the freshest figures.
                    for i, worker in enumerate(workers, start=1):
                        say(f"stopping worker {i} (pid {worker.pid}) ...")
                        worker.stop()
                report.quality = quality_from_snapshots(settings)
                report.quality_source = "the models' latest snapshots"
        if options.keep_running:
            pids = " ".join(str(w.pid) for w in workers)
            report.left_running.append(f"the workers: stop them with `kill {pids}`")
            if started_kafka:
                report.left_running.append(
                    f"Kafka: stop it with `streamproc kafka stop --data-dir {options.kafka_dir}`"
                )
        succeeded = True
        return report
    finally:
        with _no_interrupts():
            _clean_up(
                say,
                options,
                publisher,
                poller,
                workers,
                started_kafka=started_kafka,
                keep=succeeded and options.keep_running,
            )


def _clean_up(
    say: Callable[[str], None],
    options: DemoOptions,
    publisher: _Publisher | None,
    poller: LivePoller | None,
    workers: list[WorkerProcess],
    *,
    started_kafka: bool,
    keep: bool,
) -> None:
    """Stop what the demo started; each step runs even when an earlier one fails."""
    steps: list[tuple[str, Callable[[], object]]] = []
    if publisher is not None and publisher.is_alive():
        steps.append(("stop publishing", publisher.stop))
    if poller is not None:
        steps.append(("stop the live view", poller.stop))
    if not keep:
        for i, worker in enumerate(workers, start=1):
            if worker.alive():
                say(f"stopping worker {i} (pid {worker.pid}) ...")
            steps.append((f"stop worker {i}", worker.stop))
        if started_kafka and kafka_status(options.kafka_dir).state != "stopped":
            say("stopping the demo's Kafka ...")
            steps.append(("stop Kafka", lambda: stop_kafka(options.kafka_dir)))
    for what, step in steps:
        try:
            step()
        except Exception as exc:
            say(f"could not {what}: {type(exc).__name__}: {exc}")


def _watch(
    console: Console,
    poller: LivePoller,
    publisher: _Publisher,
    workers: list[WorkerProcess],
    catch_up: list[str],
    options: DemoOptions,
    finish: Callable[[], LiveSnapshot],
) -> LiveSnapshot:
    """Show the live view until the publisher is done and the group's lag is 0.

    ``finish`` confirms the catch-up and takes the last snapshot, which the view shows last.
    """
    topics = poller.settings.topics
    lag_of = {topics[r]: r for r in poller.lag_roles}

    def done(snap: LiveSnapshot) -> bool:
        if not publisher.finished.is_set() or snap.taken_at <= publisher.finished_at:
            return False
        return all(snap.lag.get(lag_of[t]) == 0 for t in catch_up)

    def step() -> LiveSnapshot:
        _check_workers(workers)
        poller.published = publisher.sent
        if publisher.finished.is_set():
            if publisher.error is not None:
                raise StreamprocError(f"publishing failed: {publisher.error}")
            poller.phase = "catching up"
            if time.monotonic() - publisher.finished_at > options.catch_up_timeout_s:
                raise StreamprocError(
                    f"the workers have not caught up {options.catch_up_timeout_s:.0f} s after "
                    f"the last record was published (lag: {poller.latest.lag})"
                )
        time.sleep(0.5)
        return poller.latest

    if console.is_terminal:
        # As many drift signals as fit under the rest of the screen (about 25 lines).
        rows = max(3, min(DRIFT_ROWS, console.size.height - 25))

        def view(snap: LiveSnapshot) -> RenderableType:
            return render_view(snap, topics, drift_rows=rows)

        with Live(view(poller.latest), console=console, refresh_per_second=2) as live:
            while not done(snap := step()):
                live.update(view(snap))
            final = finish()
            live.update(view(final))
        return final
    last_line = 0.0
    printed = 0  # drift signals printed so far

    def plain(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    def new_signals(snap: LiveSnapshot) -> None:
        nonlocal printed
        for event in snap.drift[printed:]:
            plain(format_drift_line(event))
        printed = max(printed, len(snap.drift))

    while not done(snap := step()):
        new_signals(snap)
        if time.monotonic() - last_line >= _STATUS_LINE_EVERY_S:
            plain(format_status_line(snap))
            last_line = time.monotonic()
    final = finish()
    new_signals(final)
    plain(format_status_line(final))
    return final


def format_end_report(report: DemoReport) -> str:
    """The end report, as plain text."""
    audit, manifest = report.audit, report.manifest
    counts = manifest.counts
    rate = report.published / report.seconds if report.seconds else 0.0
    lines = [
        "== streamproc demo: end report ==",
        f"published   {report.published:,} records: {counts['valid']:,} valid events in "
        f"{counts['sessions']:,} sessions, {counts['invalid']:,} invalid, "
        f"{counts['duplicate']:,} duplicates",
        f"processed   all of them {report.seconds:.1f} s after the first was published "
        f"({rate:,.0f} records/s end to end)",
        f"input       {audit.input_records:,} records"
        + (f" ({report.earlier_input:,} from earlier runs)" if report.earlier_input else ""),
        f"valid       {audit.valid:,}",
        f"dead        {audit.dead:,}",
    ]
    width = max((len(r) for r in audit.dead_by_reason), default=0)
    for reason, n in sorted(audit.dead_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
        expected = manifest.invalid_by_reason.get(reason)
        lines.append(
            f"  {reason:<{width}} {n:>7,}" + ("" if expected is None else f"  (sent {expected:,})")
        )
        for sample in report.dlq.samples.get(reason, [])[:1]:
            lines.append(f"      e.g. {sample['message']}")
    lines.append(f"duplicates  {audit.duplicates:,} dropped (sent {counts['duplicate']:,})")
    verdict = "yes" if audit.balanced else "NO"
    lines.append(
        f"balanced    {verdict}: input {audit.input_records:,} = valid {audit.valid:,} + dead "
        f"{audit.dead:,} + duplicates {audit.duplicates:,}"
        + (f"; {audit.both} record(s) both valid and dead" if audit.both else "")
    )
    if audit.valid_repeats or audit.dead_repeats:
        lines.append(
            f"            repeats after a restart (at-least-once): {audit.valid_repeats} valid, "
            f"{audit.dead_repeats} dead"
        )
    if not report.model_running:
        lines.append("predictions model agent not running (--agents excludes model)")
    else:
        ok = "as expected" if report.predictions_complete else "MISSING some"
        per_model = ", ".join(f"{m} {report.predictions[m]:,}" for m in report.models)
        lines.append(
            f"predictions {report.prediction_records:,} records for {report.plays:,} plays x "
            f"{len(report.models)} models: {per_model} ({ok}; one per model per play)"
        )
    figures = WorkerFigures(answering=1, quality=report.quality)
    quality = format_quality(figures, model_running=report.model_running)
    if report.model_running and report.quality:
        quality += f" (from {report.quality_source}; prequential, over the whole run)"
    elif report.model_running:
        quality = "not reported: no worker status and no model snapshot yet"
    lines.append("quality     " + quality)
    if report.drift is None:
        lines.append(f"drift       {report.final.workers.drift_signals:,.0f} signals")
    else:
        lines.append(f"drift       {len(report.drift.signals):,} signals (see the drift report)")
    if report.drift is not None:
        lines += ["", format_drift_run(report.drift, scenario_label=report.scenario_label)]
    elif not report.model_running:
        lines += ["", "== Drift report ==", "not available: the model agent did not run"]
    lines += [f"left running {what}" for what in report.left_running]
    return "\n".join(lines)
