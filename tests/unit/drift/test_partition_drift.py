"""PartitionDrift state: signed snapshot round trip, continuation, manual controls, settings.

The stream is the simulator's data-drift scenario (``throttled_cdn``, onset index 15,000,
seed 42, 400 users, 2 sessions a minute so that labels follow plays closely) on one
partition: the first 32,000 valid events. On it the qoe model's challenger starts at
offset 22,542 and is promoted at 30,295 (golden values of this seed).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from streamproc.config import Settings, load_settings
from streamproc.drift.data import DataDriftMonitor
from streamproc.drift.partition import ADAPTING_USER_DECAY, PartitionDrift, parse_detector_choice
from streamproc.errors import ConfigError, SnapshotError
from streamproc.features.state import USER_DECAY
from streamproc.ingest.schemas import SchemaSet
from streamproc.learning.evaluate import START_TIME_MS
from streamproc.learning.partition import PartitionLearner
from streamproc.learning.specs import get_model_specs
from streamproc.records import ViewingEvent
from streamproc.registry.restore import _drift_state, choose_snapshots
from streamproc.registry.signing import Signer, parse_keys
from streamproc.registry.snapshots import (
    DRIFT_STATE,
    SHARED_MODEL,
    latest_snapshots,
    snapshot_key,
    snapshot_partition,
)
from streamproc.simulate import SimParams, simulate_events
from streamproc.simulate.scenarios import register_variant

REPO = Path(__file__).resolve().parents[3]
MODELS = "engagement,qoe,affinity"
EVENTS = 32_000
CHALLENGER_AT = 22_542
PROMOTED_AT = 30_295
SIGNER = Signer(parse_keys("test:0123456789abcdef"))


@pytest.fixture(scope="module")
def events() -> list[ViewingEvent]:
    # Only the schemas and the size limit are read from these settings.
    settings = load_settings(schemas_dir=REPO / "schemas")
    scenario = register_variant("throttled_cdn", onset=15_000)
    sim = simulate_events(
        SimParams(
            n_events=40_000,
            n_users=400,
            n_titles=120,
            seed=42,
            fmt="json",
            scenario=scenario,
            start_time_ms=START_TIME_MS,
            sessions_per_minute=2.0,
        ),
        settings,
    )
    valid = [cast(ViewingEvent, orjson.loads(r.value)) for r in sim if r.kind == "valid"]
    return valid[:EVENTS]


def _drift(learner: PartitionLearner | None = None) -> PartitionDrift:
    learner = learner or PartitionLearner(get_model_specs(MODELS), seed=42)
    return PartitionDrift(learner, partition=0, data=DataDriftMonitor())


def _run(
    drift: PartitionDrift, events: list[ViewingEvent], start: int, end: int
) -> list[tuple[int, str, str, str, int]]:
    out = []
    for offset in range(start, end):
        _, signals = drift.process(events[offset], offset=offset)
        out += [(offset, s["model"], s["kind"], s["action"], s["model_version"]) for s in signals]
    return out


def _restore(
    records: list[tuple[str, bytes, bytes]], schemas: SchemaSet, *, with_drift: bool = True
) -> PartitionDrift:
    """What the worker does: verify, choose the versions the drift state records, import."""
    snapshots = latest_snapshots(((k, v) for _, k, v in records), SIGNER, schemas)
    state = _drift_state(snapshots, "live", 0)
    assert state is not None
    chosen = choose_snapshots(snapshots, {}, "live", 0, serving=state["versions"])
    learner = PartitionLearner(get_model_specs(MODELS), seed=42)
    learner.import_shared(chosen.pop(SHARED_MODEL).state)
    chosen.pop(DRIFT_STATE)
    for model, snap in chosen.items():
        learner.import_model(model, snap.state, snap.meta.version)
    drift = _drift(learner)
    if with_drift:
        drift.import_state(state)
    return drift


def _snapshot(drift: PartitionDrift, schemas: SchemaSet, offset: int) -> list[Any]:
    return snapshot_partition(
        drift.learner,
        0,
        namespace="live",
        source_offsets={"valid:0": offset},
        signer=SIGNER,
        schemas=schemas,
        extra={DRIFT_STATE: drift.export_state()},
    )


def test_restored_state_continues_exactly(events: list[ViewingEvent], schemas: SchemaSet) -> None:
    """Snapshot with a challenger in flight; the restored copy promotes it like the original."""
    cut = 25_000
    original = _drift()
    before = _run(original, events, 0, cut)
    assert (CHALLENGER_AT, "qoe", "lifecycle", "challenger_started", 1) in before
    assert original.policies["qoe"].phase == "challenging"

    records = _snapshot(original, schemas, cut)
    restored = _restore(records, schemas)
    fresh = _restore(records, schemas, with_drift=False)
    assert restored.policies["qoe"].phase == "challenging"
    after_original = _run(original, events, cut, EVENTS)
    after_restored = _run(restored, events, cut, EVENTS)
    assert (PROMOTED_AT, "qoe", "lifecycle", "promoted", 2) in after_original
    assert after_restored == after_original
    assert restored.learner.versions == original.learner.versions
    assert original.learner.versions == {"engagement": 1, "qoe": 2, "affinity": 1}

    # Without the drift state (a snapshot from before the worker kept one) the same models
    # start with fresh detectors: no challenger in flight, so no promotion on this stretch.
    assert fresh.policies["qoe"].phase == "idle"
    assert not [s for s in _run(fresh, events, cut, EVENTS) if s[3] == "promoted"]


def test_restore_serves_the_version_the_drift_state_records(
    events: list[ViewingEvent], schemas: SchemaSet
) -> None:
    """Not the newest version: after a rollback to v1 the newer v2 snapshot must not win."""
    drift = _drift()
    _run(drift, events, 0, PROMOTED_AT)
    v1 = drift.learner.export_model("qoe")
    _run(drift, events, PROMOTED_AT, PROMOTED_AT + 1)
    assert drift.learner.versions["qoe"] == 2
    promoted = _snapshot(drift, schemas, PROMOTED_AT + 1)
    assert {k.decode() for _, k, _ in promoted} >= {"live/qoe/0/v2", "live/_drift/0/v1"}
    assert _restore(promoted, schemas).learner.versions["qoe"] == 2

    signal = drift.apply_control(
        "qoe", 1, v1, token="c-1", action="manual_rollback", at=START_TIME_MS
    )
    assert signal is not None and signal["details"]["result"] == "switched"
    _run(drift, events, PROMOTED_AT + 1, PROMOTED_AT + 500)
    rolled_back = _snapshot(drift, schemas, PROMOTED_AT + 500)
    # The topic holds both: qoe v2 (from the promotion) and the newer records with qoe v1.
    restored = _restore(promoted + rolled_back, schemas)
    assert restored.learner.versions["qoe"] == 1
    assert restored.controls_applied == {"qoe": "c-1"}
    assert restored.policies["qoe"].phase == "idle"
    assert restored.policies["qoe"].top_version == 2  # a next promotion makes v3


def test_a_tampered_drift_state_is_refused_unread(schemas: SchemaSet) -> None:
    drift = _drift()
    records = _snapshot(drift, schemas, 0)
    _, key, value = next(r for r in records if r[0] == DRIFT_STATE)
    # One byte of the pickled state flipped: the signature no longer verifies.
    middle = len(value) // 2
    tampered = value[:middle] + bytes([value[middle] ^ 1]) + value[middle + 1 :]
    refused: list[str] = []
    snapshots = latest_snapshots(
        [(k, v) for n, k, v in records if n != DRIFT_STATE] + [(key, tampered)],
        SIGNER,
        schemas,
        on_refused=lambda k, _exc: refused.append(k),
    )
    assert refused == ["live/_drift/0/v1"]
    assert _drift_state(snapshots, "live", 0) is None  # fresh detectors, not a crash


def test_drift_state_of_another_snapshot_is_not_used(schemas: SchemaSet) -> None:
    """A crash between the records of one snapshot: drift and shared state differ."""
    drift = _drift()
    first = _snapshot(drift, schemas, 100)
    second = _snapshot(drift, schemas, 200)
    mixed = [r for r in first if r[0] == DRIFT_STATE] + [r for r in second if r[0] != DRIFT_STATE]
    snapshots = latest_snapshots(((k, v) for _, k, v in mixed), SIGNER, schemas)
    assert _drift_state(snapshots, "live", 0) is None


def test_old_snapshots_choose_the_control_version(schemas: SchemaSet) -> None:
    learner = PartitionLearner(get_model_specs(MODELS), seed=42)
    records = snapshot_partition(
        learner, 0, namespace="live", source_offsets={}, signer=SIGNER, schemas=schemas
    )
    snapshots = latest_snapshots(((k, v) for _, k, v in records), SIGNER, schemas)
    assert _drift_state(snapshots, "live", 0) is None
    chosen = choose_snapshots(snapshots, {"qoe": {"serve_version": 1}}, "live", 0)
    assert chosen["qoe"].meta.version == 1 and SHARED_MODEL in chosen


def test_import_of_a_bad_state_changes_nothing(events: list[ViewingEvent]) -> None:
    drift = _drift()
    _run(drift, events, 0, 3000)
    before = pickle.dumps(drift.export_state())
    state = drift.export_state()
    state["policies"]["qoe"] = {"format": 1, "model": "qoe"}
    with pytest.raises(SnapshotError, match='response policy state of "qoe"'):
        drift.import_state(state)
    with pytest.raises(SnapshotError, match="cannot import the drift state"):
        drift.import_state({"format": 99})
    assert pickle.dumps(drift.export_state()) == before


def test_manual_control_switches_once_and_new_versions_stay_unique(
    events: list[ViewingEvent], schemas: SchemaSet
) -> None:
    drift = _drift()
    _run(drift, events, 0, 2000)
    v1 = drift.learner.export_model("engagement")
    # As if a promotion had made v2 earlier: serve it, then an operator goes back to v1.
    drift.learner.import_model("engagement", v1, 2)
    drift.reserve_versions({"engagement": 2})
    drift.policies["engagement"]._want_challenger = True
    drift.process(events[2000], offset=2000)
    assert drift.policies["engagement"].phase == "challenging"

    signal = drift.apply_control(
        "engagement",
        1,
        v1,
        token="c-1",
        action="manual_rollback",
        at=START_TIME_MS,
        offset=2001,
        details={"by": "ops", "note": "test"},
    )
    assert signal is not None
    validate(signal, parse_schema(orjson.loads(_schema_text(schemas))), raise_errors=True)
    assert (signal["action"], signal["partition"], signal["model_version"]) == (
        "manual_rollback",
        0,
        1,
    )
    assert signal["details"]["result"] == "switched"
    assert signal["details"]["from_version"] == "2"
    assert drift.learner.versions["engagement"] == 1
    assert drift.policies["engagement"].phase == "idle"  # the operator decided
    assert drift.controls_applied == {"engagement": "c-1"}
    # The next version the policy makes is v3: v2 already names another model.
    assert drift.policies["engagement"]._new_version(1) == 3

    same = drift.apply_control(
        "engagement", 1, None, token="c-2", action="manual_promote", at=START_TIME_MS
    )
    assert same is not None and same["details"]["result"] == "already_serving"
    missing = drift.apply_control(
        "engagement", 7, None, token="c-3", action="manual_promote", at=START_TIME_MS
    )
    assert missing is not None and missing["details"]["result"] == "no_snapshot"
    assert drift.learner.versions["engagement"] == 1
    assert drift.apply_control("nope", 1, None, token="c-4", action="manual_promote", at=0) is None
    with pytest.raises(SnapshotError):
        drift.apply_control(
            "qoe", 5, {"not": "a model"}, token="c-5", action="manual_promote", at=0
        )
    assert drift.learner.versions["qoe"] == 1 and "qoe" not in drift.controls_applied


def _schema_text(schemas: SchemaSet) -> str:
    return orjson.dumps(schemas.latest("DriftSignal").parsed).decode()


def test_from_settings(settings: Settings) -> None:
    learner = PartitionLearner(get_model_specs(MODELS), seed=42)
    drift = PartitionDrift.from_settings(learner, settings, partition=3)
    assert sorted(drift.monitors) == ["engagement", "qoe"] and drift.data is not None
    assert sorted(drift.policies) == ["engagement", "qoe"]
    assert all(m.concept_detector == "adwin" for m in drift.monitors.values())

    chosen = settings.model_copy(update={"drift_detector": "qoe:ddm", "drift_respond": False})
    drift = PartitionDrift.from_settings(
        PartitionLearner(get_model_specs(MODELS), seed=42), chosen, partition=3
    )
    assert drift.monitors["qoe"].concept_detector == "ddm"
    assert drift.monitors["engagement"].concept_detector == "adwin"
    assert drift.policies == {}

    off = settings.model_copy(update={"drift_enabled": False})
    drift = PartitionDrift.from_settings(
        PartitionLearner(get_model_specs(MODELS), seed=42), off, partition=3
    )
    assert drift.monitors == {} and drift.policies == {} and drift.data is None


def test_parse_detector_choice_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown detector 'kswin'.*known: adwin"):
        parse_detector_choice("kswin", ["engagement"])
    with pytest.raises(ConfigError, match="no model 'ctr'"):
        parse_detector_choice("ctr:ddm", ["engagement"])


def test_data_monitor_state_survives_smaller_windows() -> None:
    from streamproc.testing import make_viewing_event

    big = DataDriftMonitor(reference_size=100, recent_size=50)
    for i in range(400):
        event = make_viewing_event(event_time=i, event_type="play")
        event["network"]["bandwidth_kbps"] = 1000.0 + i
        big.update(event)
    small = DataDriftMonitor(reference_size=60, recent_size=20)
    small.import_state(big.export_state())
    state = small.export_state()["features"]["bandwidth_kbps"]
    assert len(state["reference"]) == 60 and state["reference"][0] == pytest.approx(
        big.export_state()["features"]["bandwidth_kbps"]["reference"][0]
    )
    assert len(state["recent"]) == 20 and state["edges"] is None  # rebuilt at the next check
    assert snapshot_key("live", DRIFT_STATE, 0, 1) == "live/_drift/0/v1"


def test_viewer_statistics_forget_faster_while_a_response_is_under_way(
    events: list[ViewingEvent],
) -> None:
    drift = _drift()
    _run(drift, events, 0, CHALLENGER_AT)
    assert drift.policies["qoe"].phase == "idle"
    assert drift.learner.state.user_decay == USER_DECAY
    started = _run(drift, events, CHALLENGER_AT, CHALLENGER_AT + 1)
    assert (CHALLENGER_AT, "qoe", "lifecycle", "challenger_started", 1) in started
    assert drift.learner.state.user_decay == ADAPTING_USER_DECAY < USER_DECAY
    # Nothing under way again (an operator's control drops the challenger): back to normal.
    drift.policies["qoe"].reset()
    _run(drift, events, CHALLENGER_AT + 1, CHALLENGER_AT + 2)
    assert drift.learner.state.user_decay == USER_DECAY
