"""Fault injection on real Kafka: every input event accounted for after each fault.

Each scenario publishes a seeded set of simulated records (with invalid records and
duplicates), runs the whole pipeline (agents ``ingest,model``), injects its fault, and then
checks conservation by event_id across the valid, dead-letter and prediction topics:

- the ingest books balance (input = valid + dead + duplicates dropped), and the valid and dead
  event ids are exactly the simulator's (:func:`streamproc.audit.audit_ingest`);
- every valid ``play`` event has a prediction from every model (none missing);
- repeats (a valid record or a prediction written twice) happen only where at-least-once
  allows it, and carry the same event_id (they are counted, and must be 0 where the fault
  gave the worker time to commit).

Each scenario writes its figures (events in, accounted for, duplicates, recovery time, peak
RSS of the workers) to ``test-artifacts/faults/<scenario>.json`` and prints them.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from streamproc.audit import audit_ingest
from streamproc.config import Settings
from streamproc.emit.decode_any import decode_record
from streamproc.errors import KafkaError, StreamprocError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import wait_for_broker
from streamproc.kafka.lag import consumer_lag
from streamproc.kafka.launcher import (
    find_free_ports,
    kill_broker,
    restart_broker,
    start_kafka,
    stop_kafka,
)
from streamproc.kafka.read import read_to_end
from streamproc.kafka.topics import ensure_topics
from streamproc.learning.specs import get_model_specs
from streamproc.produce import EventProducer
from streamproc.testing import predictions_unlike_a_replay, small_world_stream
from streamproc.workers import WorkerProcess, wait_for_catch_up

if TYPE_CHECKING:
    from tests.integration.conftest import KafkaCluster, SettingsFactory

pytestmark = pytest.mark.integration

KEY = "test:0123456789abcdef"
#: The librdkafka assertion that has aborted a worker around a broker restart (see issue notes).
LIBRDKAFKA_ABORT = "rd_kafka_enq_once_del_source_return"
MODELS = [s.name for s in get_model_specs("engagement,qoe,affinity")]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults"


@dataclass
class Published:
    records: int
    valid_ids: set[str]
    plays: set[str]
    invalid: int
    duplicates: int


@dataclass
class Figures:
    scenario: str
    events_in: int = 0
    accounted_for: int = 0
    valid: int = 0
    dead: int = 0
    duplicates_dropped: int = 0
    repeated_valid_records: int = 0
    predictions: int = 0
    repeated_predictions: int = 0
    recovery_s: float | None = None
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(self), indent=2, sort_keys=True)
        (ARTIFACTS / f"{self.scenario}.json").write_text(text + "\n")
        print(f"\nfault scenario {self.scenario}: {text}")


def _settings(make_settings: SettingsFactory, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "agents": "ingest,model",
        "snapshot_keys": KEY,
        "metrics_port": 0,
        "snapshot_every_events": 1000,
        "consumer_session_timeout_ms": 6000,
    }
    values.update(extra)
    settings = make_settings(**values)
    ensure_topics(settings)
    return settings


def _publish(settings: Settings, n: int, seed: int, *, rate: float | None = None) -> Published:
    """Publish ``n`` simulated records (at ``rate`` records/s if given) and flush them."""
    simulation = small_world_stream(settings, n, seed)
    valid_ids: set[str] = set()
    started = time.monotonic()
    with EventProducer(settings) as producer:
        for i, record in enumerate(simulation):
            producer.send_raw(record.key, record.value)
            if record.kind == "valid" and record.event_id is not None:
                valid_ids.add(record.event_id)
            if rate is not None and i % 50 == 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        left = producer.flush(180.0)
        assert left == 0, f"{left} input records not acknowledged"
    manifest = simulation.manifest
    return Published(
        records=manifest.counts["records"],
        valid_ids=valid_ids,
        plays={s.play_event_id for s in manifest.sessions},
        invalid=manifest.counts["invalid"],
        duplicates=manifest.counts["duplicate"],
    )


def _committed(settings: Settings, topic: str) -> int:
    try:
        rows = consumer_lag(settings, settings.app_id, topics=[topic], with_seconds=False)
    except KafkaError:
        return 0  # e.g. the coordinator is still loading
    return sum(r.committed or 0 for r in rows)


def _wait_committed(
    settings: Settings, topic: str, at_least: int, workers: list[WorkerProcess], timeout: float
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            assert worker.alive(), worker.log_tail()
        done = _committed(settings, topic)
        if done >= at_least:
            return done
        assert time.monotonic() < deadline, (
            f"only {done}/{at_least} committed on {topic}\n" + workers[0].log_tail()
        )
        time.sleep(0.2)


def _peak_rss_mb(worker: WorkerProcess) -> float:
    """VmHWM of the worker process (0 if it is gone)."""
    try:
        text = Path(f"/proc/{worker.pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _account(settings: Settings, published: Published, figures: Figures) -> Figures:
    """Check conservation by event_id; fill ``figures``; return it."""
    report = audit_ingest(settings)
    assert report.balanced, report.as_dict()
    assert report.input_records == published.records
    assert report.valid_event_ids == published.valid_ids, "valid events missing or invented"
    assert report.dead == published.invalid
    assert report.duplicates == published.duplicates
    schemas = load_schemas(settings.schemas_path)
    valid_records = Counter(
        decode_record(rec.value or b"", schemas)[1]["event_id"]
        for rec in read_to_end(settings, settings.topic_valid)
    )
    assert set(valid_records) == published.valid_ids
    predictions = Counter(
        (p["event_id"], p["model"])
        for p in (
            decode_record(rec.value or b"", schemas)[1]
            for rec in read_to_end(settings, settings.topic_predictions)
        )
    )
    expected = {(e, m) for e in published.plays for m in MODELS}
    missing = expected - set(predictions)
    assert not missing, (
        f"{len(missing)} (play, model) pairs have no prediction, e.g. {sorted(missing)[:3]}"
    )
    assert set(predictions) == expected, "a prediction for an event that is not a valid play"
    figures.events_in = published.records
    figures.valid = len(published.valid_ids)
    figures.dead = report.dead
    figures.duplicates_dropped = report.duplicates
    figures.accounted_for = figures.valid + figures.dead + figures.duplicates_dropped
    assert figures.accounted_for == figures.events_in
    figures.repeated_valid_records = sum(valid_records.values()) - len(valid_records)
    figures.predictions = len(expected)
    figures.repeated_predictions = sum(predictions.values()) - len(predictions)
    return figures


def _wait_for_log(worker: WorkerProcess, text: str, after: int, timeout: float) -> float:
    """Seconds until ``text`` appears in the worker's log past byte ``after``."""
    started = time.monotonic()
    while True:
        log = worker.log_path.read_bytes()[after:].decode(errors="replace")
        if text in log:
            return time.monotonic() - started
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() - started < timeout, f"no {text!r} in\n{_distinct_lines(log)}"
        time.sleep(0.1)


def _distinct_lines(log: str, limit: int = 120) -> str:
    """The log's lines, each message once (a warning repeated every few seconds would fill a
    tail of the log and hide what came before it), at most ``limit`` of them."""
    seen: set[str] = set()
    kept = []
    for line in log.splitlines():
        message = line.split("] ", 3)[-1]  # without the time stamp, pid and level
        if message not in seen:
            seen.add(message)
            kept.append(line)
    return "\n".join(kept[-limit:])


def _publish_in_background(
    settings: Settings, n: int, seed: int, rate: float
) -> tuple[threading.Thread, dict[str, Published]]:
    """Start publishing ``n`` records at ``rate``/s in a thread; the result lands under "p"."""
    result: dict[str, Published] = {}
    thread = threading.Thread(
        target=lambda: result.update(p=_publish(settings, n, seed=seed, rate=rate)),
        daemon=True,
    )
    thread.start()
    return thread, result


def _published(thread: threading.Thread, result: dict[str, Published]) -> Published:
    thread.join(300)
    assert not thread.is_alive() and "p" in result, "the producer did not finish"
    return result["p"]


def _member_id(worker: WorkerProcess) -> str | None:
    """The consumer-group member id the worker last joined with (from Faust's log)."""
    found = re.findall(r"Joined group .* with member_id (\S+)", worker.log_path.read_text())
    return found[-1] if found else None


def _valid_partitions_of(settings: Settings, worker: WorkerProcess) -> set[int]:
    """The partitions of the valid topic the group's coordinator has assigned to ``worker``."""
    member = _member_id(worker)
    try:
        rows = consumer_lag(settings, settings.app_id, topics=[settings.topic_valid])
    except KafkaError:
        return set()  # e.g. the group is rebalancing
    return {r.partition for r in rows if member is not None and r.member == member}


def _wait_joined(settings: Settings, worker: WorkerProcess, timeout: float) -> None:
    """Wait until ``worker`` owns every valid partition (a fast worker that joins late would
    otherwise find a background stream already published, and finish it at once)."""
    deadline = time.monotonic() + timeout
    while _valid_partitions_of(settings, worker) != set(range(settings.partitions)):
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, f"worker did not join\n{worker.log_tail()}"
        time.sleep(0.5)


def _assert_predictions_equal_a_replay(settings: Settings, tmp_path: Path) -> None:
    """Every prediction served, from any worker, equals one a one-process replay makes
    (for an event written twice, the replay's score of one of its copies)."""
    mismatched = predictions_unlike_a_replay(settings, tmp_path)
    assert not mismatched, f"{len(mismatched)} predictions differ, e.g. {mismatched[:2]}"


def test_two_workers_one_killed_the_other_takes_over_with_model_state(
    make_settings: SettingsFactory, spawn_worker: Any, tmp_path: Path
) -> None:
    settings = _settings(make_settings, snapshot_every_events=300)
    figures = Figures("two_workers_one_sigkilled")
    a = spawn_worker(settings, "worker-a")
    b = spawn_worker(settings, "worker-b")
    # 12,000 records at 500/s: records keep arriving on every partition after the kill, so
    # the survivor takes over worker-a's partitions while the stream goes on.
    producer, result = _publish_in_background(settings, 12_000, seed=31, rate=500.0)
    # Kill worker-a only once the group is settled with both workers, worker-a owns
    # partitions, and it has snapshotted since it got them (a worker too slow to heartbeat
    # during a join can be left out of a generation; then it rejoins).
    deadline = time.monotonic() + 240
    while True:
        assert a.alive() and b.alive(), (a.log_tail(), b.log_tail())
        a_parts = _valid_partitions_of(settings, a)
        b_parts = _valid_partitions_of(settings, b)
        a_log = a.log_path.read_text()
        last_join = a_log.rfind("Joined group")
        if (
            a_parts
            and b_parts
            and a_parts | b_parts == set(range(settings.partitions))
            and "snapshot of partitions" in a_log[last_join:]
            and _committed(settings, settings.topic_valid) >= 2_000
        ):
            break
        assert time.monotonic() < deadline, f"group never settled: a={a_parts} b={b_parts}"
        time.sleep(0.5)
    figures.notes["killed_worker_partitions"] = sorted(a_parts)
    figures.peak_rss_mb["worker-a"] = _peak_rss_mb(a)
    b_offset = b.log_path.stat().st_size
    a.kill()
    killed = time.monotonic()
    # worker-b takes over worker-a's partitions and restores their models from snapshots.
    figures.notes["takeover_s"] = round(
        _wait_for_log(b, "restored from snapshot", b_offset, timeout=120), 1
    )
    published = _published(producer, result)
    wait_for_catch_up(
        settings, [settings.topic_input, settings.topic_valid], timeout=240, workers=[b]
    )
    figures.recovery_s = round(time.monotonic() - killed, 1)
    figures.peak_rss_mb["worker-b"] = _peak_rss_mb(b)
    b.stop()
    taken_over = b.log_path.read_bytes()[b_offset:].decode(errors="replace")
    for p in sorted(a_parts):
        assert re.search(rf"partition {p}: (restored from snapshot|fresh models)", taken_over), (
            f"worker-b never took over partition {p}"
        )
    _account(settings, published, figures).save()
    # The survivor went on from worker-a's model state: every prediction, from either
    # worker, equals the one a deterministic replay of the valid topic makes.
    _assert_predictions_equal_a_replay(settings, tmp_path)


def test_sigterm_commits_snapshots_flushes_and_exits_in_bounded_time(
    make_settings: SettingsFactory, spawn_worker: Any
) -> None:
    settings = _settings(make_settings)
    figures = Figures("graceful_sigterm")
    first = spawn_worker(settings, "worker-1")
    # 10,000 records at 1,000/s: the stream is still arriving when the worker is stopped
    # (published at once, a fast worker could finish it before the stop).
    producer, result = _publish_in_background(settings, 10_000, seed=32, rate=1_000.0)
    _wait_committed(settings, settings.topic_valid, 3_000, [first], 240)
    figures.peak_rss_mb["worker-1"] = _peak_rss_mb(first)
    started = time.monotonic()
    code = first.stop(timeout=60)
    stop_s = time.monotonic() - started
    figures.notes["stop_s"] = round(stop_s, 1)
    log = first.log_path.read_text()
    assert code == 0, f"exit status {code}\n{first.log_tail()}"
    assert stop_s < 30, f"SIGTERM took {stop_s:.1f} s"
    assert "(shutdown)" in log, "no snapshot at shutdown"
    committed = _committed(settings, settings.topic_valid)
    published = _published(producer, result)
    assert 0 < committed < len(published.valid_ids) * 0.99, "stopped mid-stream"

    restarted = time.monotonic()
    with spawn_worker(settings, "worker-2") as second:
        wait_for_catch_up(
            settings, [settings.topic_input, settings.topic_valid], timeout=240, workers=[second]
        )
        figures.recovery_s = round(time.monotonic() - restarted, 1)
        figures.peak_rss_mb["worker-2"] = _peak_rss_mb(second)
    assert "restored from snapshot" in (second.log_path.read_text())
    _account(settings, published, figures).save()
    # A graceful stop commits what it processed and flushes its output first: nothing repeats.
    assert figures.repeated_valid_records == 0
    assert figures.repeated_predictions == 0


def test_burst_of_ten_times_the_rate_lag_rises_and_drains_memory_bounded(
    make_settings: SettingsFactory, spawn_worker: Any
) -> None:
    settings = _settings(make_settings)
    figures = Figures("burst_10x")
    worker = spawn_worker(settings, "worker")
    # The normal rate: 300 records/s for 10 s, then a burst of 30,000 records as fast as the
    # broker takes them (about 10 times the rate the worker sustains, 100 times the normal).
    normal = _publish(settings, 3_000, seed=33, rate=300.0)
    wait_for_catch_up(settings, [settings.topic_input], timeout=120, workers=[worker])
    settled_rss = _peak_rss_mb(worker)
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                rows = consumer_lag(settings, settings.app_id, with_seconds=False, timeout=5.0)
                lag = sum(r.lag for r in rows)
            except KafkaError:
                lag = -1
            rss = 0.0
            try:
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) / 1024
            except OSError:
                pass
            samples.append((time.monotonic(), lag, rss))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    burst_started = time.monotonic()
    burst = _publish(settings, 30_000, seed=34)
    figures.notes["burst_publish_s"] = round(time.monotonic() - burst_started, 1)
    try:
        drain_s = wait_for_catch_up(
            settings, [settings.topic_input, settings.topic_valid], timeout=300, workers=[worker]
        )
    finally:
        stop.set()
        sampler.join(10)
    figures.recovery_s = round(time.monotonic() - burst_started, 1)
    peak_lag = max(lag for _, lag, _ in samples)
    peak_rss = max(rss for _, _, rss in samples)
    figures.peak_rss_mb["worker"] = round(max(peak_rss, _peak_rss_mb(worker)), 1)
    figures.notes.update(
        peak_lag_records=peak_lag,
        rss_before_burst_mb=round(settled_rss, 1),
        drain_after_publish_s=round(drain_s, 1),
    )
    worker.stop()
    assert peak_lag > 5_000, f"the burst never built a backlog (peak lag {peak_lag})"
    # Bounded: Faust's buffers and the fetch size cap what a backlog can pull into memory.
    assert figures.peak_rss_mb["worker"] < settled_rss + 250, figures
    combined = Published(
        records=normal.records + burst.records,
        valid_ids=normal.valid_ids | burst.valid_ids,
        plays=normal.plays | burst.plays,
        invalid=normal.invalid + burst.invalid,
        duplicates=normal.duplicates + burst.duplicates,
    )
    _account(settings, combined, figures).save()


def test_single_broker_restarted_while_producers_and_workers_run(
    kafka: KafkaCluster, make_settings: SettingsFactory, spawn_worker: Any, tmp_path: Path
) -> None:
    # A broker of its own: the session's broker is shared by the other tests.
    data_dir = tmp_path / "kafka-restart"
    info = start_kafka(
        kafka.settings,
        brokers=1,
        port=find_free_ports(2),
        data_dir=data_dir,
        timeout=120,
        exit_with_parent=True,
    )
    try:
        settings = _settings(make_settings, bootstrap_servers=info.bootstrap_servers)
        figures = Figures("single_broker_restart")
        worker = spawn_worker(settings, "worker")
        # 10,000 records at 800/s: the producer is still sending when the broker goes down.
        producer, result = _publish_in_background(settings, 10_000, seed=35, rate=800.0)
        _wait_committed(settings, settings.topic_valid, 2_000, [worker], 120)
        node = info.nodes[0].node_id
        kill_broker(data_dir, node, signal.SIGKILL)
        down = time.monotonic()
        time.sleep(5)
        restart_broker(data_dir, node, timeout=120)
        figures.notes["broker_down_s"] = round(time.monotonic() - down, 1)
        wait_for_broker(settings, timeout=60)
        published = _published(producer, result)
        # Known open problem: librdkafka 2.16 has aborted the worker process around a broker
        # restart (an assertion in rd_kafka_enq_once_del_source_return, twice in CI). Only
        # that exit is answered by starting the worker again, as a supervisor would; any
        # other exit fails the test. The books must balance either way, and restarts are
        # reported in the figures.
        exits: list[str] = []
        while True:
            try:
                wait_for_catch_up(
                    settings,
                    [settings.topic_input, settings.topic_valid],
                    timeout=300,
                    workers=[worker],
                )
                break
            except StreamprocError:
                log = worker.log_path.read_text(errors="replace")
                if worker.alive() or LIBRDKAFKA_ABORT not in log or len(exits) >= 2:
                    raise
                exits.append(worker.log_tail(1))
                worker = spawn_worker(settings, f"worker-restarted-{len(exits)}")
        figures.notes["worker_restarts"] = len(exits)
        figures.notes["worker_exit"] = exits
        figures.recovery_s = round(time.monotonic() - down, 1)
        figures.peak_rss_mb["worker"] = _peak_rss_mb(worker)
        worker.stop()
        _account(settings, published, figures).save()
    finally:
        stop_kafka(data_dir)


def test_three_brokers_one_killed_mid_stream_and_restarted(
    kafka3: KafkaCluster, make_settings: SettingsFactory, spawn_worker: Any
) -> None:
    assert kafka3.data_dir is not None and kafka3.info is not None
    settings = _settings(
        make_settings, bootstrap_servers=kafka3.bootstrap_servers, replication_factor=3
    )
    assert wait_for_broker(settings, timeout=30, min_brokers=3) == 3
    figures = Figures("three_brokers_one_killed")
    worker = spawn_worker(settings, "worker")
    _wait_joined(settings, worker, 120)
    # 9,000 records at 600/s: records keep arriving while a broker is down.
    producer, result = _publish_in_background(settings, 9_000, seed=36, rate=600.0)
    _wait_committed(settings, settings.topic_valid, 2_000, [worker], 240)
    victim = kafka3.info.nodes[-1].node_id
    kill_broker(kafka3.data_dir, victim, signal.SIGKILL)
    killed = time.monotonic()
    try:
        # Processing goes on with two of three replicas (min.insync.replicas=2).
        before = _committed(settings, settings.topic_valid)
        progressed = _wait_committed(settings, settings.topic_valid, before + 500, [worker], 120)
        figures.notes["committed_while_down"] = progressed - before
    finally:
        restart_broker(kafka3.data_dir, victim, timeout=120)
    figures.notes["broker_down_s"] = round(time.monotonic() - killed, 1)
    published = _published(producer, result)
    wait_for_catch_up(
        settings, [settings.topic_input, settings.topic_valid], timeout=300, workers=[worker]
    )
    figures.recovery_s = round(time.monotonic() - killed, 1)
    figures.peak_rss_mb["worker"] = _peak_rss_mb(worker)
    worker.stop()
    _account(settings, published, figures).save()


def test_scaling_from_one_to_two_workers_keeps_predictions_flowing_and_model_state(
    make_settings: SettingsFactory, spawn_worker: Any, tmp_path: Path
) -> None:
    settings = _settings(make_settings)
    figures = Figures("scale_one_to_two_workers")
    first = spawn_worker(settings, "worker-1")
    _wait_joined(settings, first, 120)
    # 9,000 records at 600/s: the second worker joins while records keep arriving.
    producer, result = _publish_in_background(settings, 9_000, seed=37, rate=600.0)
    _wait_committed(settings, settings.topic_valid, 1_500, [first], 120)
    second = spawn_worker(settings, "worker-2")
    added = time.monotonic()
    # The partitions the first worker hands over arrive with their models (its snapshot at
    # revocation), not as fresh models.
    figures.notes["handover_s"] = round(
        _wait_for_log(second, "restored from snapshot", 0, timeout=120), 1
    )
    published = _published(producer, result)
    wait_for_catch_up(
        settings,
        [settings.topic_input, settings.topic_valid],
        timeout=300,
        workers=[first, second],
    )
    figures.recovery_s = round(time.monotonic() - added, 1)
    figures.peak_rss_mb = {"worker-1": _peak_rss_mb(first), "worker-2": _peak_rss_mb(second)}
    assert "partitions revoked" in first.log_path.read_text()
    first.stop()
    second.stop()
    _account(settings, published, figures).save()
    # Neither worker lost model state: every prediction, from either worker, equals the one
    # a deterministic replay of the valid topic by one process makes.
    _assert_predictions_equal_a_replay(settings, tmp_path)
