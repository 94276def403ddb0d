"""The model specs: one registry of what each model predicts, from what, and how it is scored.

A :class:`ModelSpec` names a task and gives a factory of a fresh River model (seeded), the
feature function it reads at the decision, the label definition it learns from and its
prequential metrics. :data:`MODEL_SPECS` holds the built-in ones; add your own with
:func:`register_model_spec` and select them by name (``STREAMPROC_MODELS``).

Built-in specs:

- ``engagement``       P(session completes) at ``play``: StandardScaler | LogisticRegression
- ``engagement_tree``  the same task with a Hoeffding adaptive tree (dearer: ~130 µs/label)
- ``qoe``              expected rebuffering ratio at ``play``: BayesianLinearRegression on
  the ratio's log-odds
- ``affinity``         user x title affinity: ``river.reco.BiasedMF`` learned from the watched
  fraction and from ratings rescaled to [0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from river import compose, linear_model, optim, preprocessing, reco, tree

from streamproc.features.extract import Features, engagement_features, qoe_features
from streamproc.features.sessions import SessionOutcome
from streamproc.features.state import FeatureState
from streamproc.learning.errors import ModelSpecError
from streamproc.learning.metrics import METRICS
from streamproc.records import ViewingEvent

__all__ = [
    "MODEL_SPECS",
    "TASKS",
    "FeatureFunction",
    "ModelSpec",
    "Task",
    "affinity_label",
    "completed_label",
    "get_model_specs",
    "logit_to_ratio",
    "ratio_to_logit",
    "rebuffer_label",
    "register_model_spec",
]

Task = Literal["binary", "regression", "recommendation"]
TASKS: tuple[Task, ...] = ("binary", "regression", "recommendation")
FeatureFunction = Callable[[ViewingEvent, FeatureState], Features]
Label = Callable[[SessionOutcome], "float | bool | None"]


def completed_label(outcome: SessionOutcome) -> bool | None:
    """Engagement label: whether the session completed (nothing to learn from a rating).

    >>> completed_label(SessionOutcome("session", "s", "u", "t", 0, completed=True))
    True
    """
    return outcome.completed if outcome.kind == "session" else None


def rebuffer_label(outcome: SessionOutcome) -> float | None:
    """QoE label: the session's rebuffering ratio (None when too little was watched).

    >>> rebuffer_label(SessionOutcome("session", "s", "u", "t", 0, rebuffer_ratio=0.02))
    0.02
    """
    return outcome.rebuffer_ratio if outcome.kind == "session" else None


def affinity_label(outcome: SessionOutcome) -> float | None:
    """Affinity label in [0, 1]: the watched fraction, or a 1..5 rating as (rating - 1) / 4.

    >>> affinity_label(SessionOutcome("rating", "s", "u", "t", 0, rating=4))
    0.75
    >>> affinity_label(SessionOutcome("session", "s", "u", "t", 0, watched_fraction=0.3))
    0.3
    """
    if outcome.kind == "rating":
        return None if outcome.rating is None else (outcome.rating - 1) / 4.0
    return outcome.watched_fraction


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How one named model is built, fed, labelled and scored.

    Parameters
    ----------
    name
        The model's name (the ``model`` field of its predictions).
    task
        ``binary`` (``predict_proba_one``), ``regression`` (``predict_one``) or
        ``recommendation`` (``predict_one(user, item)``; no feature function).
    factory
        ``seed -> model``: a fresh River model whose random initialisation uses ``seed``.
    label
        The label definition: ``SessionOutcome -> label``, None when an outcome carries no
        label for this model.
    metrics
        Prequential metric names (see :data:`~streamproc.learning.metrics.METRICS`).
    features
        The feature function read at the ``play``; required unless ``recommendation``.
    bounds
        Served scores are clipped to these bounds (e.g. a ratio cannot be negative).
    with_affinity
        Add the learner's affinity score to the prediction's ``scores["affinity"]``.
    description
        One line for ``--help`` and the docs.

    Raises
    ------
    ModelSpecError
        When the task or a metric is unknown, or a feature function is missing.
    """

    name: str
    task: Task
    factory: Callable[[int], Any]
    label: Label
    metrics: tuple[str, ...]
    features: FeatureFunction | None = None
    bounds: tuple[float, float] | None = None
    with_affinity: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ModelSpecError(
                f'model spec "{self.name}": task must be one of {", ".join(TASKS)}, '
                f"got {self.task!r}"
            )
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ModelSpecError(
                f'model spec "{self.name}": unknown metric(s) {", ".join(unknown)}; '
                f"known: {', '.join(sorted(METRICS))}"
            )
        if self.task != "recommendation" and self.features is None:
            raise ModelSpecError(
                f'model spec "{self.name}": a {self.task} model needs a feature function'
            )


def _engagement_logreg(seed: int) -> Any:
    # LogisticRegression initialises its weights to zero: nothing random to seed.
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optimizer=optim.SGD(0.002), intercept_lr=0.002
    )


def _engagement_tree(seed: int) -> Any:
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=200, leaf_prediction="nba", seed=seed)


#: Ratios are clipped to [RATIO_FLOOR, 1 - RATIO_FLOOR] before taking their log-odds.
RATIO_FLOOR = 3e-3


def ratio_to_logit(y: float) -> float:
    """Log-odds of a ratio clipped away from 0 and 1 (the QoE model's target space).

    >>> round(ratio_to_logit(0.5), 3), round(ratio_to_logit(0.0), 3)
    (0.0, -5.806)
    """
    y = min(max(y, RATIO_FLOOR), 1.0 - RATIO_FLOOR)
    return math.log(y / (1.0 - y))


def logit_to_ratio(z: float) -> float:
    """Inverse of :func:`ratio_to_logit` (the logistic function).

    >>> round(logit_to_ratio(ratio_to_logit(0.02)), 6)
    0.02
    """
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def _qoe_bayes(seed: int) -> Any:
    # Least squares on the log-odds of the ratio: its exact online solution
    # (BayesianLinearRegression) converges within a few hundred sessions, where SGD on
    # ratios of ~0.01 needs many thousands. Nothing random to seed.
    return compose.TargetTransformRegressor(
        linear_model.BayesianLinearRegression(alpha=1.0, beta=1.0),
        func=ratio_to_logit,
        inverse_func=logit_to_ratio,
    )


def _affinity_mf(seed: int) -> Any:
    return reco.BiasedMF(
        n_factors=10,
        bias_optimizer=optim.SGD(0.02),
        latent_optimizer=optim.SGD(0.05),
        l2_bias=0.001,
        l2_latent=0.003,
        weight_initializer=optim.initializers.Zeros(),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
        seed=seed,
    )


#: Name -> spec of every model a learner can run; extend with :func:`register_model_spec`.
MODEL_SPECS: dict[str, ModelSpec] = {}


def register_model_spec(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to :data:`MODEL_SPECS` and return it.

    Raises
    ------
    ModelSpecError
        When a spec of that name exists and ``replace`` is False.
    """
    if spec.name in MODEL_SPECS and not replace:
        raise ModelSpecError(
            f'a model spec named "{spec.name}" is already registered; pass replace=True '
            "to override it"
        )
    MODEL_SPECS[spec.name] = spec
    return spec


def get_model_specs(names: str | Sequence[str]) -> list[ModelSpec]:
    """The specs called ``names`` (a list, or a comma list such as ``settings.models``).

    Raises
    ------
    ModelSpecError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> [s.task for s in get_model_specs("engagement, qoe")]
    ['binary', 'regression']
    """
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n and n not in MODEL_SPECS]
    if unknown:
        raise ModelSpecError(
            f"unknown model spec(s) {', '.join(unknown)}; known: {', '.join(sorted(MODEL_SPECS))}"
        )
    return [MODEL_SPECS[n] for n in wanted if n]


register_model_spec(
    ModelSpec(
        name="engagement",
        task="binary",
        factory=_engagement_logreg,
        label=completed_label,
        metrics=("roc_auc", "log_loss"),
        features=engagement_features,
        bounds=(0.0, 1.0),
        with_affinity=True,
        description="P(the session completes) at play: StandardScaler | LogisticRegression",
    )
)
register_model_spec(
    ModelSpec(
        name="engagement_tree",
        task="binary",
        factory=_engagement_tree,
        label=completed_label,
        metrics=("roc_auc", "log_loss"),
        features=engagement_features,
        bounds=(0.0, 1.0),
        with_affinity=True,
        description="P(the session completes) at play: HoeffdingAdaptiveTreeClassifier",
    )
)
register_model_spec(
    ModelSpec(
        name="qoe",
        task="regression",
        factory=_qoe_bayes,
        label=rebuffer_label,
        metrics=("mae",),
        features=qoe_features,
        bounds=(0.0, 1.0),
        description="Expected rebuffering ratio at play: BayesianLinearRegression on log-odds",
    )
)
register_model_spec(
    ModelSpec(
        name="affinity",
        task="recommendation",
        factory=_affinity_mf,
        label=affinity_label,
        metrics=("rmse",),
        bounds=(0.0, 1.0),
        description="User x title affinity (watched fraction, ratings): BiasedMF",
    )
)
