"""ResponsePolicy: challenger start, promotion and rollback on synthetic score streams."""

from __future__ import annotations

import random
from typing import Any

from streamproc.drift.monitor import make_signal
from streamproc.drift.partition import PartitionDrift
from streamproc.drift.response import PairedWindow, ResponsePolicy
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.learning.specs import get_model_specs


def _policy(**kwargs: Any) -> tuple[PartitionLearner, ResponsePolicy]:
    spec = get_model_specs(["engagement"])[0]
    learner = PartitionLearner([spec])
    return learner, ResponsePolicy(learner, spec, partition=0, window=200, **kwargs)


def _drift() -> dict[str, Any]:
    return make_signal(
        model="engagement",
        model_version=1,
        partition=0,
        detector="adwin",
        kind="concept",
        severity="drift",
        detected_at=0,
    )


def _feed(
    policy: ResponsePolicy, role: str, n: int, served: float, shadow: float, seed: int, start: int
) -> list[dict[str, Any]]:
    """``n`` labels (80 % positive); the served model scores ``served``, the shadow ``shadow``."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        y = float(rng.random() < 0.8)
        shadow_model = policy.challenger if role == "challenger" else policy.previous
        if shadow_model is None:  # promoted, retired, rolled back or accepted
            break
        shadow_model.pending[f"s{i}"] = ({"x": 1.0}, shadow)
        version = policy.learner.versions["engagement"]
        policy.on_label(
            LabelOut("engagement", version, "session", f"s{i}", "u", "t", i, y, served, False),
            offset=i,
        )
        out += policy.apply(event_time=i, offset=i)
    return out


def test_drift_starts_a_challenger_then_promotes_it() -> None:
    learner, policy = _policy()
    policy.on_signal(_drift())
    started = policy.apply(event_time=0)
    assert [s["action"] for s in started] == ["challenger_started"]
    assert policy.phase == "challenging"
    # The champion serves 0.3 where 80 % complete; the challenger's 0.8 is much better.
    out = _feed(policy, "challenger", 400, served=0.3, shadow=0.8, seed=1, start=0)
    assert [(s["action"], s["model_version"]) for s in out] == [("promoted", 2)]
    assert out[0]["input_offset"] == 199  # as soon as the window of 200 is full
    assert out[0]["details"]["from_version"] == "1"
    assert learner.versions == {"engagement": 2}
    assert policy.phase == "guarding"


def test_rollback_when_the_new_version_is_worse() -> None:
    learner, policy = _policy()
    policy.on_signal(_drift())
    policy.apply(event_time=0)
    _feed(policy, "challenger", 200, served=0.3, shadow=0.8, seed=1, start=0)
    assert learner.versions == {"engagement": 2}
    # Now the promoted model (served) does worse than the previous one (in the shadow).
    out = _feed(policy, "previous", 400, served=0.3, shadow=0.8, seed=2, start=1000)
    assert [(s["action"], s["model_version"]) for s in out] == [("rolled_back", 3)]
    assert out[0]["details"]["restored_lineage_of"] == "1"
    assert learner.versions == {"engagement": 3}
    assert policy.phase == "idle"


def test_guard_passes_when_the_new_version_holds() -> None:
    learner, policy = _policy(guard_labels=300)
    policy.on_signal(_drift())
    policy.apply(event_time=0)
    _feed(policy, "challenger", 200, served=0.3, shadow=0.8, seed=1, start=0)
    out = _feed(policy, "previous", 300, served=0.8, shadow=0.8, seed=3, start=1000)
    assert out == [] and policy.phase == "idle" and learner.versions == {"engagement": 2}


def test_a_challenger_that_does_not_win_is_retired() -> None:
    learner, policy = _policy(max_trial_labels=500)
    policy.on_signal(_drift())
    policy.apply(event_time=0)
    out = _feed(policy, "challenger", 600, served=0.8, shadow=0.8, seed=4, start=0)
    assert [(s["kind"], s["action"], s["details"]["event"]) for s in out] == [
        ("lifecycle", "none", "challenger_retired")
    ]
    assert learner.versions == {"engagement": 1} and policy.phase == "idle"


def test_data_signals_do_not_start_a_challenger_by_default() -> None:
    _, policy = _policy()
    signal = _drift() | {"kind": "data"}
    policy.on_signal(signal)
    assert policy.apply(event_time=0) == [] and policy.phase == "idle"


def test_paired_window_slides() -> None:
    w = PairedWindow(3)
    for a, b in [(1.0, 0.0), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5)]:
        w.add(a, b)
    assert w.mean_difference == 0.0 and len(w) == 3 and w.full


def test_partition_drift_chains_on_label_and_serves_the_same_predictions() -> None:
    from streamproc.testing import make_viewing_event

    seen: list[LabelOut] = []
    spec = get_model_specs(["engagement"])
    plain = PartitionLearner(spec)
    wrapped = PartitionDrift(PartitionLearner(spec, on_label=seen.append), partition=0)
    play = make_viewing_event(event_type="play", event_time=1, session_id="s", event_id="a")
    stop = make_viewing_event(event_type="stop", event_time=2, session_id="s", event_id="b")
    for event in (play, stop):
        expected = plain.process(event)
        got, signals = wrapped.process(event, offset=0)
        assert got == expected and signals == []
    assert len(seen) == 1
