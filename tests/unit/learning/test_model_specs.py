"""MODEL_SPECS contract (river-style checks) and the registry."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest

from streamproc.features import FeatureState, engagement_features
from streamproc.learning import MODEL_SPECS, ModelSpec, ModelSpecError, register_model_spec
from streamproc.learning.specs import completed_label, get_model_specs
from streamproc.testing import make_viewing_event

SPEC_NAMES = sorted(MODEL_SPECS)


def _examples(spec: ModelSpec) -> list[tuple[Any, Any]]:
    """(input, label) pairs: features for featured models, (user, item) for recommenders."""
    state = FeatureState()
    out: list[tuple[Any, Any]] = []
    for i in range(40):
        play = make_viewing_event(
            event_time=i, user_id=f"u-{i % 4}", title_id=f"t-{i % 5}", session_id=f"s-{i}"
        )
        play["network"]["bandwidth_kbps"] = 3_000.0 + 1_000.0 * (i % 7)
        completed = i % 3 != 0
        if spec.task == "recommendation":
            out.append(((play["user_id"], play["title_id"]), 0.9 if completed else 0.2))
        else:
            assert spec.features is not None
            x = spec.features(play, state)
            y: Any = completed if spec.task == "binary" else 0.002 * (i % 9)
            out.append((x, y))
        state.update_play(play, state.genre_of(play))
        state.update_outcome(
            play["user_id"], play["title_id"], "drama", completed=completed, rebuffer_ratio=0.01
        )
    return out


def _predict(spec: ModelSpec, model: Any, inp: Any) -> float:
    if spec.task == "binary":
        return float(model.predict_proba_one(inp).get(True, 0.5))
    if spec.task == "regression":
        return float(model.predict_one(inp))
    return float(model.predict_one(*inp))


def _learn(spec: ModelSpec, model: Any, inp: Any, y: Any) -> None:
    if spec.task == "recommendation":
        model.learn_one(*inp, y)
    else:
        model.learn_one(inp, y)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_pickle_round_trip_predicts_the_same(name: str) -> None:
    spec = MODEL_SPECS[name]
    model = spec.factory(42)
    examples = _examples(spec)
    for inp, y in examples[:30]:
        _learn(spec, model, inp, y)
    clone = pickle.loads(pickle.dumps(model))
    for inp, y in examples[30:]:
        assert _predict(spec, clone, inp) == _predict(spec, model, inp)
        _learn(spec, model, inp, y)
        _learn(spec, clone, inp, y)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_same_seed_same_model(name: str) -> None:
    spec = MODEL_SPECS[name]
    a, b = spec.factory(7), spec.factory(7)
    for inp, y in _examples(spec):
        assert _predict(spec, a, inp) == _predict(spec, b, inp)
        _learn(spec, a, inp, y)
        _learn(spec, b, inp, y)


@pytest.mark.parametrize("name", [n for n in SPEC_NAMES if MODEL_SPECS[n].features is not None])
def test_missing_and_emerging_features_and_x_not_mutated(name: str) -> None:
    spec = MODEL_SPECS[name]
    model = spec.factory(42)
    for i, (x, y) in enumerate(_examples(spec)):
        keys = sorted(x)
        # Drop a different third of the features each time: missing, then emerging ones.
        partial = {k: x[k] for j, k in enumerate(keys) if (j + i) % 3 != 0}
        if i % 5 == 0:
            partial["brand_new_feature"] = 1.0
        before = copy.deepcopy(partial)
        assert math.isfinite(_predict(spec, model, partial))
        _learn(spec, model, partial, y)
        assert partial == before


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_predicting_does_not_change_the_model(name: str) -> None:
    spec = MODEL_SPECS[name]
    model = spec.factory(42)
    examples = _examples(spec)
    for inp, y in examples[:20]:
        _learn(spec, model, inp, y)
    untouched = pickle.loads(pickle.dumps(model))
    for inp, _ in examples[20:]:  # (River may fill caches, e.g. BayesianLinearRegression's)
        _predict(spec, model, inp)
    for inp, y in examples[20:]:
        assert _predict(spec, model, inp) == _predict(spec, untouched, inp)
        _learn(spec, model, inp, y)
        _learn(spec, untouched, inp, y)


def test_built_in_specs() -> None:
    assert {"engagement", "engagement_tree", "qoe", "affinity"} <= set(MODEL_SPECS)
    assert [s.task for s in get_model_specs("engagement,qoe,affinity")] == [
        "binary",
        "regression",
        "recommendation",
    ]


def test_register_refuses_a_duplicate_and_accepts_replace() -> None:
    spec = ModelSpec(
        name="test_only_engagement",
        task="binary",
        factory=MODEL_SPECS["engagement"].factory,
        label=completed_label,
        metrics=("roc_auc",),
        features=engagement_features,
    )
    try:
        register_model_spec(spec)
        with pytest.raises(ModelSpecError, match="already registered"):
            register_model_spec(spec)
        register_model_spec(spec, replace=True)
        assert get_model_specs(["test_only_engagement"]) == [spec]
    finally:
        MODEL_SPECS.pop("test_only_engagement", None)


def test_spec_validation() -> None:
    with pytest.raises(ModelSpecError, match="needs a feature function"):
        ModelSpec("x", "binary", MODEL_SPECS["engagement"].factory, completed_label, ("roc_auc",))
    with pytest.raises(ModelSpecError, match="unknown metric"):
        ModelSpec(
            "x",
            "binary",
            MODEL_SPECS["engagement"].factory,
            completed_label,
            ("accuracy",),
            features=engagement_features,
        )
    with pytest.raises(ModelSpecError, match="task must be"):
        ModelSpec("x", "ranking", MODEL_SPECS["engagement"].factory, completed_label, ())  # type: ignore[arg-type]
