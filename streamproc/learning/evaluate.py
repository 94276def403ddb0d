"""Measure the learners against the simulator's hidden truth, without Kafka.

The simulator's valid events are split by user the way Kafka's key partitioning would
(``crc32(user_id) % partitions``), each partition's events go through its own
:class:`~streamproc.learning.partition.PartitionLearner` in order, and every scored label
is collected. On the sessions after a warm-up, three quality targets are checked:

- engagement: prequential ROC AUC within ``auc_margin`` (0.03) of the oracle's AUC
  (the true ``p_complete`` against the same outcomes);
- qoe: MAE at most ``mae_ratio`` (1.25) times the oracle's irreducible error (the true
  expected rebuffering ratio against the same observed ratios);
- affinity: RMSE below a popularity baseline (per-title running mean of the same labels,
  learned from the same partition's labels in the same order).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import orjson

from streamproc.config import Settings
from streamproc.features.sessions import TimeoutPolicy
from streamproc.learning.errors import ModelError
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.learning.specs import ModelSpec, get_model_specs
from streamproc.records import ViewingEvent
from streamproc.simulate import SessionTruth, SimParams, simulate_events

__all__ = [
    "EvaluationParams",
    "EvaluationReport",
    "TargetResult",
    "evaluate_events",
    "evaluate_models",
    "format_report",
    "mean_absolute_error",
    "partition_of",
    "quality_targets",
    "roc_auc",
    "root_mean_squared_error",
    "simulate_sessions",
]

#: Event time of the first simulated session: fixed, so a seed always gives the same bytes.
START_TIME_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class EvaluationParams:
    """What to simulate and how to judge it (see the module docstring)."""

    n_events: int = 600_000
    seed: int = 42
    n_users: int = 1_000
    n_titles: int = 500
    warmup_sessions: int = 20_000
    partitions: int = 6
    engagement_model: str = "engagement"
    qoe_model: str = "qoe"
    affinity_model: str = "affinity"
    completion_threshold: float = 0.9
    session_timeout_s: float = 4 * 3600.0
    timeout_policy: TimeoutPolicy = "abandon"
    auc_margin: float = 0.03
    mae_ratio: float = 1.25

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.warmup_sessions < 0:
            raise ValueError(f"warmup_sessions must be >= 0, got {self.warmup_sessions}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EvaluationParams:
        """Parameters from the settings' model section, then ``overrides`` (None: not given)."""
        given: dict[str, Any] = {
            "seed": settings.seed,
            "partitions": settings.partitions,
            "completion_threshold": settings.completion_threshold,
            "session_timeout_s": settings.session_timeout_s,
            "timeout_policy": settings.session_timeout_policy,
        }
        given.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**given)

    def sim_params(self, **extra: Any) -> SimParams:
        """The simulation these parameters evaluate (sizes and seed), with ``extra`` fields."""
        return SimParams(
            n_events=self.n_events,
            n_users=self.n_users,
            n_titles=self.n_titles,
            seed=self.seed,
            **extra,
        )


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One quality target: the model's figure against its reference."""

    name: str
    metric: str
    value: float
    reference: float
    reference_name: str
    target: str
    passed: bool


@dataclass(slots=True)
class EvaluationReport:
    """The figures of one evaluation run."""

    params: EvaluationParams
    events: int
    sessions: int
    evaluated_sessions: int
    targets: list[TargetResult]
    us_per_event: float
    simulate_s: float
    learn_s: float
    model_errors: int = 0
    learner_metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every target holds."""
        return all(t.passed for t in self.targets)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def partition_of(user_id: str, partitions: int) -> int:
    """The partition of a user's events: ``crc32(user_id) % partitions``.

    >>> partition_of("u-000042", 6)
    4
    """
    return zlib.crc32(user_id.encode()) % partitions


def roc_auc(y_true: Sequence[bool], scores: Sequence[float]) -> float:
    """Exact ROC AUC (Mann-Whitney, ties count one half); 0.5 without both classes.

    >>> roc_auc([False, True, False, True], [0.1, 0.8, 0.4, 0.4])
    0.875
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average rank of each distinct score, 1-based.
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def mean_absolute_error(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean of ``|y_true - y_pred|`` (NaN when empty).

    >>> mean_absolute_error([0.0, 1.0], [0.5, 0.5])
    0.5
    """
    if not len(y_true):
        return math.nan
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def root_mean_squared_error(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Square root of the mean of ``(y_true - y_pred)**2`` (NaN when empty).

    >>> root_mean_squared_error([0.0, 1.0], [1.0, 1.0])
    0.7071067811865476
    """
    if not len(y_true):
        return math.nan
    diff = np.asarray(y_true) - np.asarray(y_pred)
    return float(np.sqrt(np.mean(diff * diff)))


def simulate_sessions(
    params: EvaluationParams, settings: Settings
) -> tuple[list[ViewingEvent], list[SessionTruth]]:
    """The simulator's valid events, in stream order, and the truth of every session.

    A thin adapter over :func:`~streamproc.simulate.simulate_events`: JSON records (so the
    decoded dicts are the events exactly as generated), no invalid records or duplicates.
    """
    sim = simulate_events(params.sim_params(fmt="json", start_time_ms=START_TIME_MS), settings)
    events = [cast(ViewingEvent, orjson.loads(r.value)) for r in sim if r.kind == "valid"]
    return events, list(sim.manifest.sessions)


class _TitleMeanBaseline:
    """Per-title running mean of the affinity labels (global mean, then 0.5, before any)."""

    def __init__(self) -> None:
        self._titles: dict[str, list[float]] = {}
        self._total = [0.0, 0.0]

    def predict_then_learn(self, title_id: str, y: float) -> float:
        stats = self._titles.get(title_id)
        if stats is not None:
            guess = stats[0] / stats[1]
        elif self._total[1]:
            guess = self._total[0] / self._total[1]
        else:
            guess = 0.5
        if stats is None:
            stats = self._titles[title_id] = [0.0, 0.0]
        stats[0] += y
        stats[1] += 1.0
        self._total[0] += y
        self._total[1] += 1.0
        return guess


def quality_targets(
    params: EvaluationParams,
    *,
    eng: Sequence[tuple[float, float, float]],
    qoe: Sequence[tuple[float, float, float]],
    affinity: Sequence[tuple[float, float, float]],
) -> list[TargetResult]:
    """The three targets from ``(label, model score, reference score)`` triples per model.

    References: the oracle's ``p_complete`` (engagement), the oracle's expected rebuffering
    ratio (qoe), the per-title running mean (affinity).
    """
    model_auc = roc_auc([y > 0.5 for y, _, _ in eng], [p for _, p, _ in eng])
    oracle_auc = roc_auc([y > 0.5 for y, _, _ in eng], [r for _, _, r in eng])
    model_mae = mean_absolute_error([y for y, _, _ in qoe], [p for _, p, _ in qoe])
    oracle_mae = mean_absolute_error([y for y, _, _ in qoe], [r for _, _, r in qoe])
    model_rmse = root_mean_squared_error([y for y, _, _ in affinity], [p for _, p, _ in affinity])
    baseline_rmse = root_mean_squared_error(
        [y for y, _, _ in affinity], [r for _, _, r in affinity]
    )
    return [
        TargetResult(
            name=params.engagement_model,
            metric="roc_auc",
            value=model_auc,
            reference=oracle_auc,
            reference_name="oracle p_complete",
            target=f">= oracle - {params.auc_margin}",
            passed=model_auc >= oracle_auc - params.auc_margin,
        ),
        TargetResult(
            name=params.qoe_model,
            metric="mae",
            value=model_mae,
            reference=oracle_mae,
            reference_name="oracle expected ratio",
            target=f"<= {params.mae_ratio} x oracle",
            passed=model_mae <= params.mae_ratio * oracle_mae,
        ),
        TargetResult(
            name=params.affinity_model,
            metric="rmse",
            value=model_rmse,
            reference=baseline_rmse,
            reference_name="per-title mean",
            target="< baseline",
            passed=model_rmse < baseline_rmse,
        ),
    ]


def evaluate_models(params: EvaluationParams, settings: Settings) -> EvaluationReport:
    """Simulate, learn partition by partition, and check the quality targets.

    Parameters
    ----------
    params
        Sizes, seed, warm-up and targets.
    settings
        Where the schemas are; the model seed is ``params.seed``.
    """
    started = time.perf_counter()
    events, truths = simulate_sessions(params, settings)
    simulate_s = time.perf_counter() - started
    return evaluate_events(params, events, truths, simulate_s=simulate_s)


def evaluate_events(
    params: EvaluationParams,
    events: Sequence[ViewingEvent],
    truths: Sequence[SessionTruth],
    *,
    specs: Sequence[ModelSpec] | None = None,
    simulate_s: float = 0.0,
) -> EvaluationReport:
    """:func:`evaluate_models` on events already simulated (``specs``: default by name)."""
    session_index = {t.session_id: i for i, t in enumerate(truths)}
    truth_of = {t.session_id: t for t in truths}

    parts: list[list[ViewingEvent]] = [[] for _ in range(params.partitions)]
    for event in events:
        parts[partition_of(event["user_id"], params.partitions)].append(event)

    wanted = [params.engagement_model, params.qoe_model, params.affinity_model]
    if specs is None:
        specs = get_model_specs(wanted)
    labels: list[LabelOut] = []
    baseline_guess: list[float] = []  # aligned with the affinity labels
    learn_s = 0.0
    learners = []
    errors: list[ModelError] = []
    for part in parts:
        baseline = _TitleMeanBaseline()

        def collect(label: LabelOut, baseline: _TitleMeanBaseline = baseline) -> None:
            labels.append(label)
            if label.model == params.affinity_model:
                baseline_guess.append(baseline.predict_then_learn(label.title_id, label.y_true))

        learner = PartitionLearner(
            specs,
            completion_threshold=params.completion_threshold,
            session_timeout_ms=int(params.session_timeout_s * 1000),
            timeout_policy=params.timeout_policy,
            seed=params.seed,
            on_label=collect,
        )
        t0 = time.perf_counter()
        # Like the agent: an event a model fails on is counted (dead-lettered), not fatal.
        learner.process_batch(part, on_error=lambda _event, exc: errors.append(exc))
        learn_s += time.perf_counter() - t0
        learners.append(learner)

    def after_warmup(label: LabelOut) -> bool:
        return session_index.get(label.session_id, -1) >= params.warmup_sessions

    eng = [lb for lb in labels if lb.model == params.engagement_model and after_warmup(lb)]
    qoe = [lb for lb in labels if lb.model == params.qoe_model and after_warmup(lb)]
    aff_all = [lb for lb in labels if lb.model == params.affinity_model]
    aff_idx = [i for i, lb in enumerate(aff_all) if after_warmup(lb)]

    aff_true = [aff_all[i].y_true for i in aff_idx]
    targets = quality_targets(
        params,
        eng=[(lb.y_true, lb.y_pred, truth_of[lb.session_id].p_complete) for lb in eng],
        qoe=[(lb.y_true, lb.y_pred, truth_of[lb.session_id].expected_rebuffer_ratio) for lb in qoe],
        affinity=[
            (aff_true[k], aff_all[i].y_pred, baseline_guess[i]) for k, i in enumerate(aff_idx)
        ],
    )
    merged: dict[str, dict[str, float]] = {}
    for name in wanted:
        per_part = [ln.metrics()[name] for ln in learners]
        total = sum(m["labels"] for m in per_part) or 1.0
        merged[name] = {
            key: sum(m[key] * m["labels"] for m in per_part) / total if key != "labels" else total
            for key in per_part[0]
        }
    return EvaluationReport(
        params=params,
        events=len(events),
        sessions=len(truths),
        evaluated_sessions=len(eng),
        targets=targets,
        us_per_event=learn_s / max(len(events), 1) * 1e6,
        simulate_s=simulate_s,
        learn_s=learn_s,
        model_errors=len(errors),
        learner_metrics=merged,
    )


def format_report(
    report: EvaluationReport,
    *,
    figures: Sequence[str] | None = None,
    passed: bool | None = None,
) -> str:
    """A readable table of the targets, PASS/FAIL each, and the run's figures.

    ``figures``: lines that replace the in-process run's timing lines; ``passed``: the
    overall verdict, when more than the targets decide it.
    """
    p = report.params
    lines = [
        f"seed {p.seed}, {report.events:,} events, {report.sessions:,} sessions "
        f"({p.n_users:,} users, {p.n_titles:,} titles, {p.partitions} partitions); "
        f"scored after {p.warmup_sessions:,} warm-up sessions: "
        f"{report.evaluated_sessions:,} sessions",
        "",
        f"{'model':<12} {'metric':<8} {'value':>8} {'reference':>10}  {'(reference)':<22} "
        f"{'target':<20} result",
    ]
    for t in report.targets:
        lines.append(
            f"{t.name:<12} {t.metric:<8} {t.value:>8.4f} {t.reference:>10.4f}  "
            f"{'(' + t.reference_name + ')':<22} {t.target:<20} "
            f"{'PASS' if t.passed else 'FAIL'}"
        )
    lines.append("")
    if figures is None:
        lines += [
            f"PartitionLearner.process: {report.us_per_event:.1f} µs/event "
            f"({report.learn_s:.1f} s learning, {report.simulate_s:.1f} s simulating)",
            f"model errors (events dead-lettered): {report.model_errors}",
        ]
    else:
        lines += figures
    verdict = report.passed if passed is None else passed
    lines.append(f"overall: {'PASS' if verdict else 'FAIL'}")
    return "\n".join(lines)
