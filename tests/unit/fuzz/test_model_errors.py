"""A model that raises or returns NaN on some input: ModelError for that event, and nothing else.

A custom spec registered through the public registry (``register_model_spec``) wraps the QoE
model and fails on an extreme but valid feature value (a round-trip time near the 60 s
limit), or on learning an extreme label. The learner's contract:

- a failed prediction changes nothing: the learner then serves exactly what a learner that
  never saw the event serves (predictions, metrics, labels, shared state);
- a failed learning step resolves the label for every other model and skips the failing
  one: the learner then serves what a learner whose model skipped that label serves.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.config import Settings, load_settings
from streamproc.emit.decode_any import decode_record
from streamproc.emit.encode import Encoder
from streamproc.features import qoe_features
from streamproc.ingest.process import build_dead_letter
from streamproc.ingest.schemas import load_schemas
from streamproc.ingest.validate import QualityRules, check_event
from streamproc.learning import MODEL_SPECS, ModelError, ModelSpec, PartitionLearner
from streamproc.learning.partition import LabelOut, PredictionOut
from streamproc.learning.specs import rebuffer_label, register_model_spec
from streamproc.records import ViewingEvent
from streamproc.testing import make_viewing_event

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = load_schemas(REPO / "schemas")

#: log(rtt / 40) of the QoE features above which the flaky model fails (rtt > ~44 s).
EXTREME_LOG_RTT = math.log(44_000 / 40.0)
#: Rebuffering ratio above which the flaky model fails to learn.
EXTREME_RATIO = 0.5

Mode = Literal["raise", "nan", "inf", "learn", "skip"]


class FlakyRegressor:
    """The QoE model, failing as ``mode`` says on extreme input.

    ``raise`` / ``nan`` / ``inf``: predicting on an extreme round-trip time raises or returns
    NaN / inf. ``learn``: learning an extreme rebuffering ratio raises. ``skip``: the
    reference for ``learn``: such a label is silently not learned.
    """

    def __init__(self, inner: Any, mode: Mode) -> None:
        self.inner = inner
        self.mode = mode

    def predict_one(self, x: dict[str, float]) -> float:
        if x["log_rtt"] > EXTREME_LOG_RTT:
            if self.mode == "raise":
                raise ValueError(f"log_rtt {x['log_rtt']:.2f} is out of the fitted range")
            if self.mode == "nan":
                return math.nan
            if self.mode == "inf":
                return -math.inf
        return float(self.inner.predict_one(x))

    def learn_one(self, x: dict[str, float], y: float) -> None:
        if y > EXTREME_RATIO and self.mode in ("learn", "skip"):
            if self.mode == "learn":
                raise OverflowError(f"label {y} diverges")
            return
        self.inner.learn_one(x, y)


def _flaky_spec(name: str, mode: Mode) -> ModelSpec:
    qoe = MODEL_SPECS["qoe"]
    return ModelSpec(
        name=name,
        task="regression",
        factory=lambda seed: FlakyRegressor(qoe.factory(seed), mode),
        label=rebuffer_label,
        metrics=("mae",),
        features=qoe_features,
        bounds=(0.0, 1.0),
        description=f"QoE model failing on extreme input ({mode})",
    )


@pytest.fixture
def flaky_specs() -> Iterator[dict[str, str]]:
    """Register one spec per mode (named flaky_<mode>); remove them after the test."""
    names = {mode: f"flaky_{mode}" for mode in ("raise", "nan", "inf", "learn", "skip")}
    assert not set(names.values()) & set(MODEL_SPECS)
    try:
        for mode, name in names.items():
            register_model_spec(_flaky_spec(name, mode))  # type: ignore[arg-type]
        yield names
    finally:
        for name in names.values():
            MODEL_SPECS.pop(name, None)
    assert not set(names.values()) & set(MODEL_SPECS)


@pytest.fixture
def base_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for name in list(os.environ):
        if name.startswith("STREAMPROC_"):
            monkeypatch.delenv(name)
    return load_settings(schemas_dir=REPO / "schemas")


def _session(
    rng: random.Random, n: int, start: int, *, rtt_ms: float = 30.0, rebuffer_ms: int | None = None
) -> list[ViewingEvent]:
    """play, pause, stop/complete (and sometimes a rating) of one session; valid events."""
    sid, user, title = f"s-{n}", f"u-{rng.randrange(12)}", f"t-{rng.randrange(20)}"
    fraction = rng.random()
    rebuffer = rng.randrange(0, 20_000) if rebuffer_ms is None else rebuffer_ms
    kinds = ["play", "pause", "complete" if fraction > 0.9 else "stop"]
    if rng.random() < 0.3:
        kinds.append("rating")
    events = []
    for seq, kind in enumerate(kinds):
        event = make_viewing_event(
            event_id=f"{sid}-{seq}",
            session_id=sid,
            user_id=user,
            title_id=title,
            event_type=kind,
            event_time=start + seq * 60_000,
            seq=seq,
            rating=rng.randint(1, 5) if kind == "rating" else None,
        )
        event["network"]["rtt_ms"] = rtt_ms
        event["network"]["bandwidth_kbps"] = rng.uniform(1_000.0, 40_000.0)
        event["playback"]["duration_s"] = 1_000.0
        event["playback"]["position_s"] = 0.0 if kind == "play" else 1_000.0 * fraction
        event["playback"]["rebuffer_ms"] = 0 if kind == "play" else rebuffer
        check_event(event, QualityRules(), now_ms=event["event_time"])
        events.append(event)
    return events


def _stream(*, bad_every: int, bad: str, n: int = 240, seed: int = 5) -> list[ViewingEvent]:
    """Sessions in event-time order; every ``bad_every``-th has an extreme value (``bad``)."""
    rng = random.Random(seed)
    events: list[ViewingEvent] = []
    for i in range(n):
        extreme = i % bad_every == bad_every - 1
        kwargs: dict[str, Any] = {}
        if extreme and bad == "rtt":
            kwargs["rtt_ms"] = rng.uniform(45_000.0, 60_000.0)
        if extreme and bad == "rebuffer":
            kwargs["rebuffer_ms"] = rng.randrange(600_000, 900_000)  # ratio > 0.5
        events.extend(_session(rng, i, i * 300_000, **kwargs))
    return events


class _Run:
    """A learner and everything it emitted."""

    def __init__(self, settings: Settings, models: str) -> None:
        self.labels: list[LabelOut] = []
        self.learner = PartitionLearner.from_settings(
            settings.model_copy(update={"models": models}), on_label=self.labels.append
        )
        self.predictions: list[PredictionOut] = []
        self.errors: list[tuple[str, ModelError]] = []

    def feed(self, event: ViewingEvent) -> list[PredictionOut]:
        try:
            out = self.learner.process(event)
        except ModelError as exc:
            self.errors.append((event["event_id"], exc))
            return []
        self.predictions.extend(out)
        return out

    def shared(self) -> bytes:
        return pickle.dumps(self.learner.export_shared())


def _only(preds: list[PredictionOut], models: set[str]) -> list[PredictionOut]:
    return [p for p in preds if p.model in models]


@pytest.mark.parametrize("mode", ["raise", "nan", "inf"])
def test_failed_prediction_changes_nothing(
    base_settings: Settings, flaky_specs: dict[str, str], mode: str
) -> None:
    flaky = flaky_specs[mode]
    # Without a recommender: see test_failed_prediction_leaves_the_recommender_untouched.
    models = f"engagement,{flaky},qoe"
    events = _stream(bad_every=7, bad="rtt")
    bad_plays = {
        e["event_id"]
        for e in events
        if e["event_type"] == "play" and e["network"]["rtt_ms"] > 44_000.0
    }
    assert len(bad_plays) == 240 // 7
    seen, never = _Run(base_settings, models), _Run(base_settings, models)
    for event in events:
        out = seen.feed(event)
        if event["event_id"] in bad_plays:
            assert not out
            continue  # the reference never sees it
        assert out == never.feed(event), event["event_id"]
        assert seen.learner.metrics() == never.learner.metrics()
    assert never.errors == []
    assert [event_id for event_id, _ in seen.errors] == sorted(bad_plays, key=_order(events))
    for event_id, exc in seen.errors:
        assert exc.reason == "model_error" and exc.model == flaky and exc.event_id == event_id
        assert f'model "{flaky}" failed on event {event_id}: ' in str(exc)
        detail = {"raise": "predicting raised ValueError", "nan": "returned nan", "inf": "-inf"}
        assert detail[mode] in exc.detail
    # The same predictions, labels, metrics and state as a learner that never saw them.
    assert seen.predictions == never.predictions and len(seen.predictions) > 500
    assert seen.labels == never.labels
    assert seen.learner.metrics() == never.learner.metrics()
    assert seen.shared() == never.shared()
    assert seen.learner.events_seen == never.learner.events_seen == len(events) - len(bad_plays)
    assert seen.learner.labels_unmatched == len(bad_plays)  # their stop found no session
    _check_label_counts(seen)
    # Every prediction served is finite and within the spec's bounds.
    assert all(math.isfinite(p.score) and 0.0 <= p.score <= 1.0 for p in seen.predictions)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "river's BiasedMF.predict_one creates the latent vectors of an unseen user or title "
        "(drawing from its seeded initializer): the affinity prediction made before another "
        "model fails on a play changes the affinity model, against the contract 'a failed "
        "prediction changes nothing' (streamproc/learning/partition.py)"
    ),
)
def test_failed_prediction_leaves_the_recommender_untouched(
    base_settings: Settings, flaky_specs: dict[str, str]
) -> None:
    models = f"engagement,{flaky_specs['raise']},affinity"
    events = _stream(bad_every=7, bad="rtt", n=30)
    seen, never = _Run(base_settings, models), _Run(base_settings, models)
    for event in events:
        seen.feed(event)
        if not (event["event_type"] == "play" and event["network"]["rtt_ms"] > 44_000.0):
            never.feed(event)
    assert len(seen.errors) == 4
    assert pickle.dumps(seen.learner.model("affinity")) == pickle.dumps(
        never.learner.model("affinity")
    )


def _order(events: list[ViewingEvent]) -> Any:
    index = {e["event_id"]: i for i, e in enumerate(events)}
    return index.__getitem__


def _check_label_counts(run: _Run) -> None:
    """Each model's ``labels`` metric counts exactly the labels it emitted."""
    for model, values in run.learner.metrics().items():
        emitted = sum(1 for label in run.labels if label.model == model)
        assert values["labels"] == emitted, model


def test_failed_learning_skips_the_label_for_that_model_only(
    base_settings: Settings, flaky_specs: dict[str, str]
) -> None:
    events = _stream(bad_every=5, bad="rebuffer")
    failing = _Run(base_settings, f"engagement,{flaky_specs['learn']},affinity")
    skipping = _Run(base_settings, f"engagement,{flaky_specs['skip']},affinity")
    without = _Run(base_settings, "engagement,affinity")
    for event in events:
        failing.feed(event)
        skipping.feed(event)
        without.feed(event)
    assert skipping.errors == [] and without.errors == []
    extreme = [  # the stop/complete resolving a session with a rebuffering ratio > 0.5
        e["event_id"]
        for e in events
        if e["event_type"] in ("stop", "complete")
        and e["playback"]["position_s"] >= 1.0
        and e["playback"]["rebuffer_ms"] / 1000.0 / e["playback"]["position_s"] > EXTREME_RATIO
    ]
    assert len(extreme) >= 240 // 5
    assert [event_id for event_id, _ in failing.errors] == extreme
    for _, exc in failing.errors:
        assert exc.reason == "model_error" and exc.model == flaky_specs["learn"]
        assert "learning raised OverflowError" in exc.detail
    # The other models learned every label: as if the flaky model had never run.
    others = {"engagement", "affinity"}
    assert _only(failing.predictions, others) == _only(without.predictions, others)
    assert _metrics(failing, others) == _metrics(without, others)

    # The failing model keeps serving what a model that skipped those labels serves.
    def alias(preds: list[PredictionOut]) -> list[tuple[str, str, float]]:
        return [(p.event_id, p.model.split("_")[0], p.score) for p in preds]

    assert alias(failing.predictions) == alias(skipping.predictions)
    assert (
        failing.learner.metrics()[flaky_specs["learn"]]
        == (skipping.learner.metrics()[flaky_specs["skip"]])
    )
    # The label was resolved (scored, counted) for every model, the failing one included.
    assert failing.learner.labels_resolved == without.learner.labels_resolved
    assert failing.shared() == without.shared()
    _check_label_counts(failing)


def _metrics(run: _Run, models: set[str]) -> dict[str, dict[str, float]]:
    return {k: v for k, v in run.learner.metrics().items() if k in models}


def test_process_batch_dead_letters_and_goes_on(
    base_settings: Settings, flaky_specs: dict[str, str]
) -> None:
    models = f"engagement,{flaky_specs['nan']}"
    events = _stream(bad_every=4, bad="rtt", n=60)
    batch = _Run(base_settings, models)
    failed: list[ModelError] = []
    out = batch.learner.process_batch(events, on_error=lambda e, exc: failed.append(exc))
    single = _Run(base_settings, models)
    for event in events:
        single.feed(event)
    assert out == single.predictions
    assert [exc.event_id for exc in failed] == [event_id for event_id, _ in single.errors]
    assert len(failed) == 15


def test_model_error_becomes_a_dead_letter_with_the_event(
    base_settings: Settings, flaky_specs: dict[str, str]
) -> None:
    """What the model agent does with a ModelError: a DeadLetter with reason model_error."""
    run = _Run(base_settings, f"engagement,{flaky_specs['raise']}")
    play = _stream(bad_every=1, bad="rtt", n=1)[0]
    raw = Encoder.for_record(SCHEMAS, "ViewingEvent").encode(play)
    run.feed(play)
    [(_, exc)] = run.errors
    exc.at("viewing-events-valid[4]@88")
    letter_bytes = build_dead_letter(
        Encoder.for_record(SCHEMAS, "DeadLetter", check=True),
        raw,
        b"u-key",
        "viewing-events-valid",
        4,
        88,
        123,
        456,
        exc,
    )
    name, letter = decode_record(letter_bytes, SCHEMAS)
    assert name == "DeadLetter" and letter["reason"] == "model_error"
    assert letter["payload"] == raw and letter["key"] == b"u-key"
    assert letter["event_id"] == play["event_id"]
    assert letter["message"].startswith(
        f'viewing-events-valid[4]@88: model "{flaky_specs["raise"]}" failed on event '
        f"{play['event_id']}: predicting raised ValueError"
    )


def test_registry_cleanup_leaves_the_builtin_specs(flaky_specs: dict[str, str]) -> None:
    assert {"engagement", "engagement_tree", "qoe", "affinity"} <= set(MODEL_SPECS)
    assert all(name in MODEL_SPECS for name in flaky_specs.values())


# -- extreme but valid events through the built-in models ---------------------------------------

_EXTREMES: dict[str, st.SearchStrategy[Any]] = {
    "network.rtt_ms": st.sampled_from([0.0, 5e-324, 59_999.9, 60_000.0]),
    "network.bandwidth_kbps": st.sampled_from([0.0, 5e-324, 1.0, 10_000_000.0]),
    "playback.bitrate_kbps": st.sampled_from([1, 200_000]),
    "playback.duration_s": st.sampled_from([5e-324, 1e-9, 21_600.0]),
    "playback.position_s": st.sampled_from([0.0, 5.0, 21_605.0]),
    "playback.rebuffer_ms": st.sampled_from([0, 2**31, 2**63 - 1]),
    "playback.rebuffer_count": st.sampled_from([0, 2**31 - 1]),
    "playback.dropped_frames": st.sampled_from([None, 0, 2**31 - 1]),
}


@settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 59), st.sampled_from(sorted(_EXTREMES)), st.data()),
        min_size=1,
        max_size=6,
    )
)
def test_extreme_valid_values_never_crash_or_poison_the_builtin_models(
    base_settings: Settings, edits: list[tuple[int, str, Any]]
) -> None:
    """Valid (check_event passes) but extreme events: no exception, and no ModelError either."""
    rng = random.Random(11)
    sessions = [_session(rng, i, i * 300_000) for i in range(60)]
    for index, path, data in edits:
        value = data.draw(_EXTREMES[path])
        for event in sessions[index]:
            section, name = path.split(".")
            event[section][name] = value  # type: ignore[literal-required]
    run = _Run(base_settings, "engagement,engagement_tree,qoe,affinity")
    for session in sessions:
        for event in session:
            try:
                check_event(event, QualityRules(), now_ms=event["event_time"])
            except Exception:
                continue  # the ingest stage would have dead-lettered it
            run.feed(event)
    assert run.errors == []
    assert all(math.isfinite(p.score) for p in run.predictions)
    assert all(math.isfinite(v) for m in run.learner.metrics().values() for v in m.values())
    _check_label_counts(run)
