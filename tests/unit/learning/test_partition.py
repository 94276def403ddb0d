"""PartitionLearner: test-then-train, labels, determinism, state round trips, failures."""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

import pytest

from streamproc.config import Settings
from streamproc.errors import SnapshotError
from streamproc.features import engagement_features
from streamproc.learning import (
    MODEL_SPECS,
    ModelError,
    ModelSpec,
    ModelSpecError,
    PartitionLearner,
    get_model_specs,
)
from streamproc.learning.partition import LabelOut
from streamproc.learning.specs import affinity_label, completed_label
from streamproc.records import ViewingEvent
from streamproc.testing import make_viewing_event


def session_events(
    session_id: str,
    *,
    user_id: str = "u-1",
    title_id: str = "t-1",
    start: int = 0,
    end: str = "complete",
    fraction: float = 0.95,
    rating: int | None = None,
    bandwidth_kbps: float = 25_000.0,
) -> list[ViewingEvent]:
    """play, pause, end (and a rating): one session of a 1000 s title."""
    kinds = ["play", "pause", end] + (["rating"] if rating is not None else [])
    events = []
    for seq, kind in enumerate(kinds):
        event = make_viewing_event(
            event_id=f"{session_id}-{seq}",
            session_id=session_id,
            user_id=user_id,
            title_id=title_id,
            event_type=kind,
            event_time=start + seq * 60_000,
            seq=seq,
            rating=rating if kind == "rating" else None,
        )
        event["network"]["bandwidth_kbps"] = bandwidth_kbps
        event["playback"]["duration_s"] = 1000.0
        position = 0.0 if kind == "play" else 1000.0 * fraction * (1.0 if seq > 1 else 0.5)
        event["playback"]["position_s"] = position
        event["playback"]["rebuffer_ms"] = 0 if kind == "play" else 2_000
        events.append(event)
    return events


def stream(n_sessions: int, seed: int = 0) -> list[ViewingEvent]:
    """Interleaved sessions of a few users and titles (deterministic)."""
    rng = random.Random(seed)
    events: list[ViewingEvent] = []
    for i in range(n_sessions):
        completed = rng.random() < 0.5
        events += session_events(
            f"s-{i}",
            user_id=f"u-{rng.randrange(5)}",
            title_id=f"t-{rng.randrange(7)}",
            start=i * 30_000,
            end="complete" if completed else "stop",
            fraction=0.95 if completed else rng.uniform(0.05, 0.8),
            rating=rng.randint(1, 5) if rng.random() < 0.3 else None,
            bandwidth_kbps=rng.uniform(2_000, 50_000),
        )
    events.sort(key=lambda e: e["event_time"])
    return events


class SpyClassifier:
    """Records what it learns; predicts ``value`` (NaN or raising on demand)."""

    def __init__(self, value: float = 0.3) -> None:
        self.value = value
        self.fail_on_learn = False
        self.predicted: list[dict[str, float]] = []
        self.learned: list[tuple[dict[str, float], Any]] = []

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        if self.value == -1.0:
            raise RuntimeError("boom")
        self.predicted.append(x)
        return {True: self.value, False: 1.0 - self.value}

    def learn_one(self, x: dict[str, float], y: Any) -> None:
        if self.fail_on_learn:
            raise RuntimeError("cannot learn")
        self.learned.append((x, y))


class SpyRecommender:
    """Records (user, item, y) it learns; predicts 0.5."""

    def __init__(self) -> None:
        self.learned: list[tuple[str, str, float]] = []

    def predict_one(self, user: str, item: str, x: Any = None) -> float:
        return 0.5

    def learn_one(self, user: str, item: str, y: float, x: Any = None) -> None:
        self.learned.append((user, item, y))


def spy_specs(value: float = 0.3) -> list[ModelSpec]:
    return [
        ModelSpec(
            name="spy",
            task="binary",
            factory=lambda seed: SpyClassifier(value),
            label=completed_label,
            metrics=("roc_auc", "log_loss"),
            features=engagement_features,
            bounds=(0.0, 1.0),
            with_affinity=True,
        ),
        ModelSpec(
            name="spy_reco",
            task="recommendation",
            factory=lambda seed: SpyRecommender(),
            label=affinity_label,
            metrics=("rmse",),
        ),
    ]


def finite(x: float) -> bool:
    return math.isfinite(x)


DEFAULT = "engagement,qoe,affinity"


def _learner(**kw: object) -> PartitionLearner:
    return PartitionLearner(get_model_specs(DEFAULT), **kw)  # type: ignore[arg-type]


def test_play_gives_one_finite_prediction_per_model_with_affinity_in_engagement() -> None:
    learner = _learner()
    out = learner.process(session_events("s-1")[0])
    assert [p.model for p in out] == ["engagement", "qoe", "affinity"]
    for p in out:
        assert math.isfinite(p.score) and p.model_version == 1 and not p.shadow
        assert p.event_id == "s-1-0" and p.session_id == "s-1" and p.event_time == 0
    eng, qoe, aff = out
    assert set(eng.scores) == {"affinity"} and eng.scores["affinity"] == aff.score
    assert 0.0 <= eng.score <= 1.0 and qoe.score >= 0.0
    assert learner.versions == {"engagement": 1, "qoe": 1, "affinity": 1}


def test_other_events_predict_nothing_and_labels_are_counted() -> None:
    learner = _learner()
    outs = [learner.process(e) for e in session_events("s-1", rating=4)]
    assert [len(o) for o in outs] == [3, 0, 0, 0]
    assert learner.labels_resolved == 2  # the session and its rating
    assert learner.events_seen == 4
    metrics = learner.metrics()
    assert metrics["engagement"]["labels"] == 1
    assert metrics["affinity"]["labels"] == 2
    assert {"roc_auc", "roc_auc_recent", "log_loss", "log_loss_recent"} <= set(
        metrics["engagement"]
    )
    assert {"mae", "mae_recent"} <= set(metrics["qoe"])
    assert {"rmse", "rmse_recent"} <= set(metrics["affinity"])


def test_features_learned_are_exactly_the_features_served() -> None:
    learner = PartitionLearner(spy_specs())
    events = stream(40)
    learner.process_batch(events)
    spy: SpyClassifier = learner.model("spy")
    assert spy.learned, "nothing was learned"
    # The very dict objects the model predicted with are the ones it learned from ...
    served_ids = {id(x) for x in spy.predicted}
    assert all(id(x) in served_ids for x, _ in spy.learned)
    # ... and their content did not change in between (no outcome leaked into them).
    replay = PartitionLearner(spy_specs())
    replay.process_batch(events)
    replay_spy: SpyClassifier = replay.model("spy")
    assert [x for x, _ in spy.learned] == [x for x, _ in replay_spy.learned]
    first_play = next(e for e in events if e["event_type"] == "play")
    fresh = PartitionLearner(spy_specs())
    fresh.process(first_play)
    fresh_spy: SpyClassifier = fresh.model("spy")
    assert fresh_spy.predicted[0] == spy.predicted[0]


def test_labels_complete_stop_and_rating() -> None:
    labels: list[LabelOut] = []
    learner = PartitionLearner(spy_specs(), on_label=labels.append)
    for e in session_events("s-1", end="complete") + session_events(
        "s-2", start=1_000_000, end="stop", fraction=0.4, rating=2
    ):
        learner.process(e)
    spy: SpyClassifier = learner.model("spy")
    reco: SpyRecommender = learner.model("spy_reco")
    assert [y for _, y in spy.learned] == [True, False]
    assert reco.learned == [("u-1", "t-1", 0.95), ("u-1", "t-1", 0.4), ("u-1", "t-1", 0.25)]
    assert [(lb.model, lb.kind, lb.y_true) for lb in labels] == [
        ("spy", "session", 1.0),
        ("spy_reco", "session", 0.95),
        ("spy", "session", 0.0),
        ("spy_reco", "session", 0.4),
        ("spy_reco", "rating", 0.25),
    ]
    assert labels[0].y_pred == pytest.approx(0.3)


@pytest.mark.parametrize("policy", ["abandon", "drop"])
def test_session_timeout_policies(policy: str) -> None:
    learner = PartitionLearner(
        spy_specs(),
        session_timeout_ms=3 * 3_600_000,
        timeout_policy=policy,  # type: ignore[arg-type]
    )
    play, pause, _ = session_events("s-1", fraction=0.95)
    learner.process(play)
    learner.process(pause)
    # Another user's event, 2 h later: the session has not been idle for long enough yet.
    learner.process(session_events("s-2", user_id="u-2", start=2 * 3_600_000)[0])
    spy: SpyClassifier = learner.model("spy")
    assert spy.learned == []
    # 3.5 h: s-1 (last seen at 1 min) times out, s-2 (2 h) does not.
    learner.process(session_events("s-3", user_id="u-3", start=7 * 1_800_000)[0])
    if policy == "abandon":
        assert [y for _, y in spy.learned] == [False]
        assert learner.labels_resolved == 1
    else:
        assert spy.learned == [] and learner.labels_resolved == 0
        assert learner.sessions.dropped == 1
    assert "s-1" not in learner.sessions


def test_same_events_and_seed_give_identical_predictions() -> None:
    events = stream(60, seed=3)
    a = _learner(seed=7).process_batch(events)
    b = _learner(seed=7).process_batch(events)
    assert a == b and len(a) == 3 * 60


def test_process_batch_equals_process_in_order() -> None:
    events = stream(30, seed=4)
    one = _learner()
    by_one = [p for e in events for p in one.process(e)]
    assert _learner().process_batch(events) == by_one


def test_export_import_round_trip_gives_identical_subsequent_predictions() -> None:
    events = stream(80, seed=5)
    head, tail = events[:150], events[150:]
    original = _learner()
    original.process_batch(head)
    shared = pickle.loads(pickle.dumps(original.export_shared()))
    models = {n: pickle.loads(pickle.dumps(original.export_model(n))) for n in original.versions}
    restored = _learner()
    restored.import_shared(shared)
    for name, state in models.items():
        restored.import_model(name, state, version=4)
    assert restored.versions == {"engagement": 4, "qoe": 4, "affinity": 4}
    expected = original.process_batch(tail)
    got = restored.process_batch(tail)
    assert [(p.model, p.score, p.scores) for p in got] == [
        (p.model, p.score, p.scores) for p in expected
    ]
    assert restored.metrics() == original.metrics()
    assert restored.labels_resolved == original.labels_resolved


def test_exported_state_is_a_copy() -> None:
    learner = _learner()
    events = stream(20, seed=6)
    learner.process_batch(events[:30])
    snapshot = learner.export_model("engagement")
    before = pickle.dumps(snapshot)
    learner.process_batch(events[30:])
    assert pickle.dumps(snapshot) == before


def test_import_refuses_foreign_state() -> None:
    learner = _learner()
    with pytest.raises(SnapshotError, match="export_model"):
        learner.import_model("qoe", {"format": 1}, version=2)
    with pytest.raises(SnapshotError, match="export_model"):
        learner.import_model("qoe", learner.export_model("engagement"), version=2)
    with pytest.raises(ModelSpecError, match="no model"):
        learner.import_model("nope", learner.export_model("qoe"), version=2)
    with pytest.raises(SnapshotError, match="export_shared"):
        learner.import_shared(["not", "a", "state"])


def test_nan_prediction_raises_model_error_and_changes_nothing() -> None:
    learner = PartitionLearner(spy_specs(value=math.nan))
    before = pickle.dumps(learner.export_shared())
    with pytest.raises(ModelError, match='model "spy" failed on event s-1-0') as info:
        learner.process(session_events("s-1")[0])
    assert info.value.reason == "model_error"
    assert pickle.dumps(learner.export_shared()) == before
    assert "s-1" not in learner.sessions and learner.events_seen == 0


def test_raising_prediction_raises_model_error_and_the_model_keeps_serving() -> None:
    learner = PartitionLearner(spy_specs(value=-1.0))
    with pytest.raises(ModelError, match="RuntimeError: boom"):
        learner.process(session_events("s-1")[0])
    spy: SpyClassifier = learner.model("spy")
    spy.value = 0.4
    out = learner.process(session_events("s-2")[0])
    assert out[0].score == pytest.approx(0.4)


def test_failing_learn_resolves_the_label_for_the_others_then_raises() -> None:
    learner = PartitionLearner(spy_specs())
    play, pause, end = session_events("s-1")
    learner.process(play)
    learner.process(pause)
    spy: SpyClassifier = learner.model("spy")
    spy.fail_on_learn = True
    with pytest.raises(ModelError, match="learning raised RuntimeError"):
        learner.process(end)
    reco: SpyRecommender = learner.model("spy_reco")
    assert reco.learned == [("u-1", "t-1", 0.95)]
    assert "s-1" not in learner.sessions
    assert learner.labels_resolved == 1 and learner.events_seen == 3


def test_process_batch_reports_errors_and_goes_on() -> None:
    learner = PartitionLearner(spy_specs(value=math.nan))
    events = session_events("s-1") + session_events("s-2", start=10**6)
    failed: list[str] = []
    out = learner.process_batch(events, on_error=lambda e, exc: failed.append(e["event_id"]))
    assert out == [] and failed == ["s-1-0", "s-2-0"]
    with pytest.raises(ModelError) as info:
        learner.process_batch(events)
    assert info.value.index == 0 and info.value.partial == []


def test_top_titles() -> None:
    learner = _learner()
    learner.process_batch(stream(60, seed=8))
    top = learner.top_titles("u-1", [f"t-{i}" for i in range(7)], k=3)
    assert len(top) == 3
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    with pytest.raises(ModelSpecError, match="not a recommendation model"):
        learner.top_titles("u-1", ["t-1"], model="qoe")


def test_spec_names_must_be_unique_and_known() -> None:
    with pytest.raises(ModelSpecError, match="unique"):
        PartitionLearner([MODEL_SPECS["qoe"], MODEL_SPECS["qoe"]])
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        get_model_specs("engagement,nope")


def test_from_settings(settings: Settings) -> None:
    learner = PartitionLearner.from_settings(settings)
    assert list(learner.versions) == ["engagement", "qoe", "affinity"]
    assert learner.session_timeout_ms == 4 * 3600 * 1000
    assert learner.timeout_policy == "abandon" and learner.seed == 42
