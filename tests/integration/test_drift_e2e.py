"""Drift detection and response live in the worker, on real Kafka.

The streams come from the simulator with a fixed seed (42), 400 users, 120 titles and 2
sessions a minute: at that rate a session's label follows its play within a few hundred
events, so 40,000 events hold enough labels per partition for the detectors (at the
default 20 a minute, labels lag the plays by thousands of events and the simulator's
start-up transient, in which long sessions have not ended yet, fills most of a short run).
Only the first 40,000 valid events of a longer simulation are published, so that the
stream does not end in the run-out of sessions that only close.

Every test compares the signals the worker put on ``drift-signals`` with a run of
:class:`~streamproc.drift.partition.PartitionDrift` in this process over the same valid
events (read back from Kafka, per partition, in offset order): the worker must emit exactly
what the library computes, once, however it was stopped and restarted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.emit.decode_any import decode_record
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.read import read_to_end
from streamproc.kafka.topics import ensure_topics
from streamproc.learning.partition import PartitionLearner
from streamproc.learning.specs import get_model_specs
from streamproc.produce import EventProducer
from streamproc.records import ViewingEvent
from streamproc.registry.snapshots import SnapshotMeta, encode_snapshot
from streamproc.registry.store import signer_from
from streamproc.simulate import SimParams, SimRecord, simulate_events
from streamproc.simulate.scenarios import register_variant
from streamproc.workers import WorkerProcess, wait_for_catch_up

pytestmark = pytest.mark.integration

KEY = "test:0123456789abcdef"
SEED = 42
EVENTS = 40_000
ONSET = 15_000  # valid-event index at which the drift scenarios change
TAIL = 30_000  # simulated beyond EVENTS and not published
SCHEMA_FIELDS = {
    "signal_id",
    "model",
    "model_version",
    "partition",
    "detector",
    "kind",
    "feature",
    "statistic",
    "threshold",
    "reference_size",
    "recent_size",
    "detected_at",
    "input_offset",
    "severity",
    "action",
    "details",
}
#: Largest accepted detection delay, in events of a partition after its onset (its first
#: event of a session planned after the onset index). Measured on taste_shift, seed 42, 3
#: partitions: 4,800, 5,678 and 6,133 events (label drift of engagement on each partition;
#: a few events more or less between runs, as the ingest agent interleaves the users of a
#: valid partition in the order it processes the input partitions).
#: The taste turn shows in the labels as a fall of the completion rate from ~0.47 to ~0.21,
#: gradually, as post-onset sessions replace those that span the onset in the label stream;
#: ADWIN (delta 2e-4, checked every 32 labels) separates the two rates after ~480-610
#: labels here, at about one label per 10 events of a partition. The bound is the largest
#: measured delay plus ~20 % (about 140 labels).
MAX_DELAY = 7_500


def _settings(make_settings: Any, partitions: int, **extra: Any) -> Settings:
    settings: Settings = make_settings(
        agents="ingest,model", snapshot_keys=KEY, metrics_port=0, partitions=partitions, **extra
    )
    ensure_topics(settings)
    return settings


def _simulate(
    settings: Settings, scenario: str, n: int = EVENTS
) -> tuple[list[SimRecord], set[str]]:
    """The first ``n`` valid records, and the sessions planned at or after ONSET."""
    name = scenario if scenario == "stationary" else register_variant(scenario, onset=ONSET)
    sim = simulate_events(
        SimParams(
            n_events=n + TAIL,
            n_users=400,
            n_titles=120,
            seed=SEED,
            scenario=name,
            sessions_per_minute=2.0,
        ),
        settings,
    )
    records = [r for r in sim if r.kind == "valid"]
    decoder = EventDecoder(load_schemas(settings.schemas_path))
    counts = Counter(decoder.decode(r.value).event["session_id"] for r in records)
    planned, post = 0, set()
    for truth in sim.manifest.sessions:  # a session's planned index, as the scenarios count
        if planned >= ONSET:
            post.add(truth.session_id)
        planned += counts.get(truth.session_id, 0)
    return records[:n], post


def _publish(settings: Settings, records: list[SimRecord]) -> None:
    with EventProducer(settings) as producer:
        for record in records:
            producer.send_raw(record.key, record.value)
        assert producer.flush(60.0) == 0


def _catch_up(settings: Settings, worker: WorkerProcess) -> None:
    wait_for_catch_up(
        settings, [settings.topic_input, settings.topic_valid], timeout=240, workers=[worker]
    )


def _valid_events(settings: Settings) -> dict[int, list[tuple[int, ViewingEvent]]]:
    decoder = EventDecoder(load_schemas(settings.schemas_path), max_bytes=1 << 30)
    out: dict[int, list[tuple[int, ViewingEvent]]] = {}
    for rec in read_to_end(settings, settings.topic_valid):
        out.setdefault(rec.partition, []).append(
            (rec.offset, decoder.decode(rec.value or b"").event)
        )
    return {p: sorted(events, key=lambda e: e[0]) for p, events in out.items()}


def _in_process(
    settings: Settings, valid: dict[int, list[tuple[int, ViewingEvent]]]
) -> list[dict[str, Any]]:
    """The signals PartitionDrift computes here over the same events, in offset order."""
    out = []
    for partition, events in sorted(valid.items()):
        drift = PartitionDrift.from_settings(
            PartitionLearner.from_settings(settings), settings, partition=partition
        )
        for offset, event in events:
            out += drift.process(event, offset=offset)[1]
    return out


def _signals(settings: Settings) -> list[dict[str, Any]]:
    schemas = load_schemas(settings.schemas_path)
    out = []
    for rec in read_to_end(settings, settings.topic_drift):
        assert rec.key is not None
        name, signal = decode_record(rec.value or b"", schemas)
        assert name == "DriftSignal" and rec.key.decode() == signal["model"]
        out.append(signal)
    return out


def _key(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["partition"], s["input_offset"], s["model"], s["kind"], s["action"], s["signal_id"])


def _predictions(settings: Settings) -> list[dict[str, Any]]:
    schemas = load_schemas(settings.schemas_path)
    return [
        decode_record(r.value or b"", schemas)[1]
        for r in read_to_end(settings, settings.topic_predictions)
    ]


def test_abrupt_drift_is_detected_and_answered_live(
    make_settings: Any, spawn_worker: Any, tmp_path: Path
) -> None:
    settings = _settings(make_settings, partitions=3)
    records, post_onset = _simulate(settings, "taste_shift")
    _publish(settings, records)
    started = time.monotonic()
    with spawn_worker(settings, "worker") as worker:
        _catch_up(settings, worker)
    took = time.monotonic() - started

    signals = _signals(settings)
    valid = _valid_events(settings)
    assert sum(len(v) for v in valid.values()) == EVENTS
    expected = _in_process(settings, valid)
    assert sorted(map(_key, signals)) == sorted(map(_key, expected))  # each exactly once
    assert all(set(s) == SCHEMA_FIELDS for s in signals)

    onset = {  # per partition: the first offset of a session planned after the onset
        p: min(o for o, e in events if e["session_id"] in post_onset) for p, events in valid.items()
    }
    detections = [s for s in signals if s["kind"] in ("concept", "label")]
    # Each valid partition holds one input partition's viewers in publish order (keys are
    # partitioned with murmur2 by the publisher and the workers alike), so what each
    # partition's models see does not depend on the workers' fetches. On this stream the
    # shift is detected on partitions 0 and 2 within MAX_DELAY; partition 1's detectors do
    # not separate the two rates before the stream ends.
    assert {s["partition"] for s in detections} == {0, 2}, signals
    for partition in (0, 2):
        mine = [s["input_offset"] for s in detections if s["partition"] == partition]
        assert 0 <= min(mine) - onset[partition] <= MAX_DELAY, (partition, onset, detections)
    first = min(detections, key=lambda s: s["input_offset"] - onset[s["partition"]])
    assert first["severity"] in ("warning", "drift") and first["detector"] == "adwin"
    assert first["detected_at"] > 0 and first["details"]["labels_seen"]
    # Nothing before the onset: no false alarm on the stationary part.
    assert all(s["input_offset"] >= onset[s["partition"]] for s in signals)
    started_at = [
        s
        for s in signals
        if s["action"] == "challenger_started"
        and (s["partition"], s["model"]) == (first["partition"], first["model"])
    ]
    assert [s["input_offset"] for s in started_at] == [first["input_offset"]]
    assert started_at[0]["kind"] == "lifecycle" and started_at[0]["detector"] == "response"

    log = (tmp_path / "worker.log").read_text()
    assert f"drift signal {first['model']} p{first['partition']} v1: " in log
    delays = [
        (s["partition"], s["model"], s["kind"], s["input_offset"] - onset[s["partition"]])
        for s in detections
    ]
    print(
        f"\ntaste_shift seed {SEED}, {EVENTS} events, 3 partitions, worker {took:.0f} s: "
        f"onset offsets {onset}; detections (partition, model, kind, delay) {delays}; "
        f"signals {Counter((s['kind'], s['action']) for s in signals)}"
    )


def test_stationary_stream_of_the_same_size_raises_no_signal(
    make_settings: Any, spawn_worker: Any
) -> None:
    settings = _settings(make_settings, partitions=3)
    records, _ = _simulate(settings, "stationary")
    _publish(settings, records)
    with spawn_worker(settings, "worker") as worker:
        _catch_up(settings, worker)
    assert _signals(settings) == []
    # ... and the library agrees on these events: the worker is not just silent.
    assert _in_process(settings, _valid_events(settings)) == []
    assert len(_predictions(settings)) > 3 * 4000  # the models did run


def test_sigkill_keeps_the_challenger_and_the_promotion(
    make_settings: Any, spawn_worker: Any, tmp_path: Path
) -> None:
    """Killed with a challenger in flight, then after its promotion: nothing is lost or
    repeated. On this stream (data drift, one partition) the qoe model's challenger starts
    at offset 22,542 and is promoted at 30,295; fresh detectors after a restart at 26,000
    would have no challenger to promote (see tests/unit/drift/test_partition_drift.py)."""
    settings = _settings(make_settings, partitions=1)
    records, _ = _simulate(settings, "throttled_cdn")
    parts = [records[:26_000], records[26_000:38_000], records[38_000:]]

    _publish(settings, parts[0])
    first = spawn_worker(settings, "worker-1")
    _catch_up(settings, first)
    started = [s for s in _signals(settings) if s["action"] == "challenger_started"]
    assert [(s["model"], s["input_offset"]) for s in started] == [("qoe", 22_542)]
    first.kill()  # SIGKILL: no shutdown snapshot; the last one followed the signal

    _publish(settings, parts[1])
    with spawn_worker(settings, "worker-2") as second:
        _catch_up(settings, second)
        promoted = [s for s in _signals(settings) if s["action"] == "promoted"]
        assert [(s["model"], s["input_offset"], s["model_version"]) for s in promoted] == [
            ("qoe", 30_295, 2)
        ]
        second.kill()
    log = (tmp_path / "worker-2.log").read_text()
    assert "restored from snapshot, drift state restored" in log

    _publish(settings, parts[2])
    with spawn_worker(settings, "worker-3") as third:
        _catch_up(settings, third)
    assert "drift state restored" in (tmp_path / "worker-3.log").read_text()

    signals = _signals(settings)
    expected = _in_process(settings, _valid_events(settings))
    assert sorted(map(_key, signals)) == sorted(map(_key, expected))
    # The promoted version serves after both restarts (worker-3 only saw the last part).
    qoe = [p for p in _predictions(settings) if p["model"] == "qoe"]
    tail_ids = {r.event_id for r in parts[2]}
    assert {p["model_version"] for p in qoe if p["event_id"] in tail_ids} == {2}
    shown = [(s["model"], s["kind"], s["action"], s["input_offset"]) for s in signals]
    print(
        f"\nthrottled_cdn seed {SEED}, {EVENTS} events, 1 partition, killed at 26,000 and "
        f"38,000: signals {shown}"
    )


def test_manual_promote_and_rollback_are_applied_once_per_partition(
    make_settings: Any, spawn_worker: Any, tmp_path: Path
) -> None:
    settings = _settings(make_settings, partitions=2, snapshot_every_events=1000)
    records, _ = _simulate(settings, "stationary", n=7500)
    _publish(settings, records[:6000])
    schemas = load_schemas(settings.schemas_path)
    env = {**os.environ, **settings.to_env()}

    def operator(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "streamproc", "models", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    def manual() -> list[tuple[str, int, int, str]]:
        """(action, partition (-1: the operator's request), version, result), sorted."""
        return sorted(
            (
                s["action"],
                -1 if s["partition"] is None else s["partition"],
                s["model_version"],
                s["details"].get("result", "-"),
            )
            for s in _signals(settings)
            if s["action"].startswith("manual_")
        )

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 60
        while len(manual()) < count:
            assert time.monotonic() < deadline, manual()
            time.sleep(1)

    with spawn_worker(settings, "worker-1") as worker:
        _catch_up(settings, worker)
        # A v2 of engagement for partition 0 only, as a promotion there would write it.
        fresh = PartitionLearner(get_model_specs(settings.models), seed=7)
        meta = SnapshotMeta("engagement", 0, 2, 0, {}, namespace=settings.model_namespace)
        key, value = encode_snapshot(
            meta, fresh.export_model("engagement"), signer_from(settings), schemas
        )
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
        producer.produce(settings.topic_snapshots, key=key, value=value)
        assert producer.flush(30) == 0
        operator("promote", "engagement", "--version", "2", "--note", "test")
        wait_for(3)  # the request, and one per partition
        time.sleep(5)  # more polls of the control record: no repeat
        assert manual() == [
            ("manual_promote", -1, 2, "-"),
            ("manual_promote", 0, 2, "switched"),
            ("manual_promote", 1, 1, "no_snapshot"),
        ]
        worker.kill()

    with spawn_worker(settings, "worker-2") as worker:
        _publish(settings, records[6000:7500])
        _catch_up(settings, worker)
        time.sleep(5)
        assert len(manual()) == 3  # applied before the restart: not again
        promoted = {r.event_id for r in records[6000:7500]}
        served = Counter(
            (p["partition"], p["model_version"])
            for p in _predictions(settings)
            if p["model"] == "engagement" and p["event_id"] in promoted
        )
        assert set(served) == {(0, 2), (1, 1)}, served

        operator("rollback", "engagement", "--version", "1")
        wait_for(6)
        time.sleep(5)
        assert manual()[3:] == [
            ("manual_rollback", -1, 1, "-"),
            ("manual_rollback", 0, 1, "switched"),
            ("manual_rollback", 1, 1, "already_serving"),
        ]
