"""The model agent's drift glue without a broker: signals out, controls in, snapshots.

The Faust app is a recording stand-in (``sender.send`` and ``producer.flush`` are all the
runtime uses of it); the PartitionDrift objects are real.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from agents.app import WorkerApp
from agents.drift import ControlFollower, SignalSink
from agents.model import ModelRuntime
from streamproc.config import Settings
from streamproc.drift.monitor import make_signal
from streamproc.drift.partition import PartitionDrift
from streamproc.emit.decode_any import decode_record
from streamproc.errors import SnapshotError
from streamproc.ingest.schemas import SchemaSet
from streamproc.learning.partition import PartitionLearner
from streamproc.learning.specs import get_model_specs
from streamproc.metrics import StreamprocMetrics
from streamproc.registry.restore import RestoredPartition, _drift_state
from streamproc.registry.signing import Signer, parse_keys
from streamproc.registry.snapshots import (
    DRIFT_STATE,
    SnapshotMeta,
    encode_snapshot,
    latest_snapshots,
)

KEY = "test:0123456789abcdef"
SIGNER = Signer(parse_keys(KEY))
MODELS = "engagement,qoe,affinity"


class RecordingSender:
    def __init__(self, sent: list[tuple[str, bytes, bytes]]) -> None:
        self.sent = sent

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: Any) -> None:
        self.sent.append((topic, key or b"", value))


class RecordingProducer:
    def __init__(self) -> None:
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1


class RecordingApp:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.sender = RecordingSender(self.sent)
        self.producer = RecordingProducer()


def _value(metrics: StreamprocMetrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _drift(partition: int = 0) -> PartitionDrift:
    return PartitionDrift(PartitionLearner(get_model_specs(MODELS), seed=42), partition=partition)


def _promoted() -> dict[str, Any]:
    return make_signal(
        model="qoe",
        model_version=2,
        partition=4,
        detector="response",
        kind="lifecycle",
        severity="drift",
        detected_at=1_700_000_000_000,
        action="promoted",
        input_offset=30_295,
        details={"from_version": "1", "to_version": "2"},
    )


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_signal_sink_sends_counts_logs_and_sets_the_version(
    settings: Settings, schemas: SchemaSet, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings.model_copy(update={"output_format": fmt})
    metrics = StreamprocMetrics.create(CollectorRegistry())
    app = RecordingApp()
    sink = SignalSink(cast(WorkerApp, app), settings, metrics, schemas)
    detection = make_signal(
        model="qoe",
        model_version=1,
        partition=4,
        detector="psi",
        kind="data",
        severity="drift",
        detected_at=1_700_000_000_000,
        feature="rtt_ms",
        statistic=0.9,
        threshold=0.2,
        reference_size=1000,
        recent_size=300,
        input_offset=17_000,
    )
    with caplog.at_level(logging.INFO, logger="agents.drift"):
        asyncio.run(sink.send([detection, _promoted()]))
    assert [(t, k) for t, k, _ in app.sent] == [("drift-signals", b"qoe")] * 2
    decoded = [decode_record(v, schemas)[1] for _, _, v in app.sent]
    assert decoded[0]["signal_id"] == detection["signal_id"]
    assert decoded[1]["action"] == "promoted"
    counted = {"model": "qoe", "kind": "data"}
    assert _value(metrics, "streamproc_drift_signals_total", counted) == 1.0
    lifecycle = {"model": "qoe", "kind": "lifecycle"}
    assert _value(metrics, "streamproc_drift_signals_total", lifecycle) == 1.0
    version = {"model": "qoe", "partition": "4"}
    assert _value(metrics, "streamproc_model_version", version) == 2.0
    assert _value(metrics, "streamproc_records_out_total", {"topic": "drift-signals"}) == 2.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "drift signal qoe p4 v1: data/psi/rtt_ms drift, action none, offset 17000",
        "drift signal qoe p4 v2: lifecycle/response drift, action promoted, offset 30295",
    ]


def test_a_signal_that_breaks_the_schema_is_not_sent(
    settings: Settings, schemas: SchemaSet
) -> None:
    metrics = StreamprocMetrics.create(CollectorRegistry())
    app = RecordingApp()
    sink = SignalSink(cast(WorkerApp, app), settings, metrics, schemas)
    bad = {**_promoted(), "kind": "weather"}
    with pytest.raises(Exception, match="kind"):
        asyncio.run(sink.send([bad]))
    assert app.sent == []


def _follower(settings: Settings, schemas: SchemaSet) -> tuple[ControlFollower, list[str]]:
    refused: list[str] = []
    follower = ControlFollower(settings, schemas, SIGNER, lambda key, _exc: refused.append(key))
    return follower, refused


def _v2_snapshot(schemas: SchemaSet, partition: int, signer: Signer = SIGNER) -> bytes:
    other = PartitionLearner(get_model_specs(MODELS), seed=7)
    meta = SnapshotMeta("engagement", partition, 2, 0, {}, namespace="live")
    return encode_snapshot(meta, other.export_model("engagement"), signer, schemas)[1]


def test_each_control_record_is_applied_once_per_partition(
    settings: Settings, schemas: SchemaSet
) -> None:
    follower, refused = _follower(settings, schemas)
    follower.add_snapshot("live/engagement/0/v2", _v2_snapshot(schemas, 0))
    follower.add_snapshot("live/_drift/0/v1", b"never served")  # not kept
    drifts = {0: _drift(0), 1: _drift(1)}
    control = {"serve_version": 2, "action": "manual_promote", "at": 5, "id": "c1", "by": "ops"}

    applied = follower.apply({"engagement": control}, drifts, {0: 100, 1: 200})
    assert sorted(applied) == [0, 1]
    (p0,) = applied[0]
    (p1,) = applied[1]
    assert (p0["action"], p0["partition"], p0["model_version"], p0["input_offset"]) == (
        "manual_promote",
        0,
        2,
        100,
    )
    assert p0["details"]["result"] == "switched" and p0["details"]["by"] == "ops"
    assert p1["details"]["result"] == "no_snapshot" and p1["model_version"] == 1
    assert drifts[0].learner.versions["engagement"] == 2
    assert drifts[1].learner.versions["engagement"] == 1
    assert refused == []

    # Polled again (every 2 s): nothing new, nothing applied, no second signal.
    assert follower.apply({"engagement": control}, drifts, {0: 150, 1: 250}) == {}
    # A new record naming v1: applied once more, on both partitions.
    back = {"serve_version": 1, "action": "manual_rollback", "at": 9, "id": "c2"}
    again = follower.apply({"engagement": back}, drifts, {0: 160, 1: 260})
    assert [s["details"]["result"] for p in (0, 1) for s in again[p]] == [
        "no_snapshot",  # partition 0 has no v1 snapshot cached here
        "already_serving",
    ]
    assert follower.apply({"engagement": back}, drifts, {}) == {}


def test_a_control_naming_a_snapshot_signed_with_another_key_is_refused(
    settings: Settings, schemas: SchemaSet
) -> None:
    follower, refused = _follower(settings, schemas)
    stranger = Signer(parse_keys("other:0123456789abcdef"))
    follower.add_snapshot("live/engagement/0/v2", _v2_snapshot(schemas, 0, stranger))
    drifts = {0: _drift(0)}
    control = {"serve_version": 2, "action": "manual_promote", "at": 5, "id": "c1"}
    applied = follower.apply({"engagement": control}, drifts, {0: 1})
    assert refused == ["live/engagement/0/v2"]
    assert applied[0][0]["details"]["result"] == "no_snapshot"
    assert drifts[0].learner.versions["engagement"] == 1


def _runtime(settings: Settings) -> tuple[ModelRuntime, RecordingApp, StreamprocMetrics]:
    settings = settings.model_copy(update={"snapshot_keys": SecretStr(KEY)})
    metrics = StreamprocMetrics.create(CollectorRegistry())
    app = RecordingApp()
    return ModelRuntime(cast(WorkerApp, app), settings, metrics), app, metrics


def test_snapshot_carries_the_drift_state(settings: Settings, schemas: SchemaSet) -> None:
    runtime, app, metrics = _runtime(settings)
    drift = runtime.new_drift(runtime.new_learner(), 2)
    drift.controls_applied["qoe"] = "c9"
    runtime.learners[2], runtime.drifts[2] = drift.learner, drift
    runtime.next_offset[2], runtime.since_snapshot[2], runtime.last_snapshot[2] = 40, 5, 0.0

    asyncio.run(runtime.snapshot([2], reason="test"))
    keys = sorted(k.decode() for _, k, _ in app.sent)
    assert keys == [
        "live/_drift/2/v1",
        "live/_features/2/v1",
        "live/affinity/2/v1",
        "live/engagement/2/v1",
        "live/qoe/2/v1",
    ]
    assert app.producer.flushes == 2  # before (predictions first) and after
    assert runtime.since_snapshot[2] == 0
    snaps = latest_snapshots(((k, v) for _, k, v in app.sent), SIGNER, schemas)
    assert snaps["live/_drift/2/v1"].meta.source_offsets == {"viewing-events-valid:2": 40}
    state = _drift_state(snaps, "live", 2)
    assert state is not None and state["controls_applied"] == {"qoe": "c9"}
    assert _value(metrics, "streamproc_snapshots_written_total", {"model": DRIFT_STATE}) is None
    assert _value(metrics, "streamproc_snapshots_written_total", {"model": "qoe"}) == 1.0


def test_a_snapshot_above_the_topic_limit_is_not_written_at_all(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import agents.model

    runtime, app, metrics = _runtime(settings)
    drift = runtime.new_drift(runtime.new_learner(), 2)
    runtime.learners[2], runtime.drifts[2] = drift.learner, drift
    runtime.next_offset[2], runtime.since_snapshot[2], runtime.last_snapshot[2] = 40, 5, 0.0
    # Smaller than the models' records, larger than nothing: every component is too large.
    monkeypatch.setattr(agents.model, "SNAPSHOT_MAX_MESSAGE_BYTES", 100)

    with caplog.at_level(logging.ERROR, logger="agents.model"):
        asyncio.run(runtime.snapshot([2], reason="test"))
    assert app.sent == []  # no partial snapshot: all components or none
    assert _value(metrics, "streamproc_snapshots_failed_total", {"reason": "too_large"}) == 1.0
    assert _value(metrics, "streamproc_snapshots_written_total", {"model": "qoe"}) is None
    assert runtime.since_snapshot[2] == 0  # not retried at every batch
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("snapshot of partition 2 not written: _features is ")
    assert "above the snapshot topic's max.message.bytes (100 bytes)" in line


def test_partitions_restored_without_drift_state_take_the_controls_as_applied(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _, metrics = _runtime(settings)
    controls = {"engagement": {"serve_version": 1, "at": 3, "id": "old"}}

    def fake_restore(*args: Any, new_drift: Any, **kwargs: Any) -> dict[int, RestoredPartition]:
        out = {}
        for partition, first in args[3].items():
            learner = args[4]()
            restored = partition == 1
            drift = new_drift(learner, partition)
            out[partition] = RestoredPartition(
                learner, first, restored, 0, drift, restored, controls
            )
        return out

    monkeypatch.setattr("agents.model.restore_partitions", fake_restore)
    asyncio.run(runtime.ensure({0: 0, 1: 10}))
    # Partition 0: fresh models, the record predates them. Partition 1: its drift state
    # was restored and has not applied the record: the follower will.
    assert runtime.drifts[0].controls_applied == {"engagement": "old"}
    assert runtime.drifts[1].controls_applied == {}
    assert runtime.next_offset == {0: 0, 1: 10}
    version = {"model": "engagement", "partition": "1"}
    assert _value(metrics, "streamproc_model_version", version) == 1.0
    runtime.drop([1])
    assert _value(metrics, "streamproc_model_version", version) is None
    assert list(runtime.drifts) == [0]


def test_a_bad_detector_setting_fails_at_start(settings: Settings) -> None:
    with pytest.raises(Exception, match="unknown detector 'adwn'"):
        _runtime(settings.model_copy(update={"drift_detector": "adwn"}))


def test_refused_snapshots_are_counted(settings: Settings) -> None:
    runtime, _, metrics = _runtime(settings)
    runtime._refused("live/engagement/0/v2", SnapshotError("signature does not match"))
    labels = {"model": "engagement", "reason": "bad_signature"}
    assert _value(metrics, "streamproc_snapshots_refused_total", labels) == 1.0
