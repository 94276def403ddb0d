"""The quality of the predictions the workers served, read back from Kafka.

:func:`~streamproc.learning.evaluate.evaluate_models` measures the learners in process. This
module measures what a downstream consumer received: every score on the predictions topic,
joined with the label its session got and with the simulator's hidden truth, under the same
three targets (engagement ROC AUC against the oracle's, qoe MAE against the oracle's, affinity
RMSE against a per-title mean).

The labels come from the valid-events topic: each partition's records, in offset order, go
through a :class:`~streamproc.learning.partition.PartitionLearner` built like the workers'
(the same label definitions, completion threshold and session timeout, inside the same
drift monitors and responses), and every session
label it resolves is paired with the score the workers served for that session's ``play``
(the first copy, when at-least-once delivered one twice). A label without a served score is
counted as missing; the report says how many.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.emit.decode_any import decode_record
from streamproc.errors import EventError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.read import read_to_end
from streamproc.learning.evaluate import (
    EvaluationParams,
    EvaluationReport,
    _TitleMeanBaseline,
    quality_targets,
)
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.records import ViewingEvent
from streamproc.simulate import SessionTruth

__all__ = ["ServedQuality", "served_quality"]


@dataclass(slots=True)
class ServedQuality:
    """The targets on served scores, and how completely the labels were matched."""

    report: EvaluationReport
    predictions: int  # records on the predictions topic
    repeated_predictions: int  # copies beyond the first of an (event, model)
    labels: int  # session labels after the warm-up, all models
    missing: int  # of them, without a served score
    equal_to_replay: float  # share of matched scores equal to the replayed learner's

    @property
    def passed(self) -> bool:
        """Every target holds and every label has its served score."""
        return self.report.passed and not self.missing

    def figures(self) -> list[str]:
        """The run's own lines for :func:`~streamproc.learning.evaluate.format_report`."""
        return [
            f"served predictions read back from Kafka: {self.predictions:,} records "
            f"({self.repeated_predictions:,} repeated)",
            f"session labels: {self.labels:,}, without a served prediction: {self.missing:,}",
            f"served scores equal to a replay of the valid topic: {self.equal_to_replay:.1%}",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.report.to_dict(),
            "predictions": self.predictions,
            "repeated_predictions": self.repeated_predictions,
            "labels": self.labels,
            "labels_without_prediction": self.missing,
            "equal_to_replay": self.equal_to_replay,
            "passed": self.passed,
        }


def _served_scores(
    settings: Settings, timeout: float
) -> tuple[dict[tuple[str, str], float], int, int]:
    """(event_id, model) -> the first score served for it; records read; shadow records."""
    schemas = load_schemas(settings.schemas_path)
    scores: dict[tuple[str, str], float] = {}
    count = shadow = 0
    for record in read_to_end(settings, settings.topic_predictions, timeout=timeout):
        _, prediction = decode_record(record.value or b"", schemas)
        count += 1
        if prediction.get("shadow"):
            shadow += 1  # a challenger's score, published in the shadow: not served
            continue
        scores.setdefault((prediction["event_id"], prediction["model"]), prediction["score"])
    return scores, count, shadow


def _labels_by_partition(
    settings: Settings, timeout: float, progress: Callable[[str], None]
) -> tuple[list[list[LabelOut]], int]:
    """Every label a worker-like learner resolves, per partition of the valid topic; and
    the number of valid events."""
    schemas = load_schemas(settings.schemas_path)
    parts: dict[int, list[tuple[int, ViewingEvent]]] = {}
    for record in read_to_end(settings, settings.topic_valid, timeout=timeout):
        _, event = decode_record(record.value or b"", schemas)
        parts.setdefault(record.partition, []).append((record.offset, cast(ViewingEvent, event)))
    n_events = sum(map(len, parts.values()))
    progress(f"read {n_events:,} valid events in {len(parts)} partitions")
    out: list[list[LabelOut]] = []
    for partition in sorted(parts):
        labels: list[LabelOut] = []
        learner = PartitionLearner.from_settings(settings, on_label=labels.append)
        # The drift monitors and responses too, as the model agent runs them: a response
        # changes what the served model sees (promotions, faster-forgetting statistics).
        drift = PartitionDrift.from_settings(learner, settings, partition=partition)
        for offset, valid in sorted(parts[partition], key=lambda item: item[0]):
            try:
                drift.process(valid, offset=offset)
            except EventError:
                continue  # the model agent dead-letters it
        out.append(labels)
    return out, n_events


def served_quality(
    settings: Settings,
    params: EvaluationParams,
    truths: Sequence[SessionTruth],
    *,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> ServedQuality:
    """The targets of :mod:`streamproc.learning.evaluate`, on the scores the workers served.

    Parameters
    ----------
    settings
        The topics the workers read and wrote, and their model settings.
    params
        Warm-up (in sessions of ``truths``) and targets.
    truths
        The hidden truth of every simulated session, in the order they were planned.
    """
    say = progress or (lambda _m: None)
    started = time.perf_counter()
    served, n_predictions, n_shadow = _served_scores(settings, timeout)
    say(f"read {n_predictions:,} predictions")
    per_partition, n_events = _labels_by_partition(settings, timeout, say)
    session_index = {t.session_id: i for i, t in enumerate(truths)}
    truth_of = {t.session_id: t for t in truths}

    def scored(model: str) -> list[tuple[LabelOut, float | None]]:
        """Session labels of ``model`` after the warm-up, with the served score (or None)."""
        out = []
        for labels in per_partition:
            for lb in labels:
                truth = truth_of.get(lb.session_id)
                if lb.model != model or lb.kind != "session" or truth is None:
                    continue
                if session_index[lb.session_id] < params.warmup_sessions:
                    continue
                out.append((lb, served.get((truth.play_event_id, model))))
        return out

    # The affinity baseline learns from every affinity label of a partition, in order.
    baseline_of: dict[int, float] = {}
    for labels in per_partition:
        baseline = _TitleMeanBaseline()
        for lb in labels:
            if lb.model == params.affinity_model:
                baseline_of[id(lb)] = baseline.predict_then_learn(lb.title_id, lb.y_true)

    eng, qoe, aff = (
        scored(params.engagement_model),
        scored(params.qoe_model),
        scored(params.affinity_model),
    )
    matched = [(lb, s) for lb, s in eng + qoe + aff if s is not None]
    same = [abs(lb.y_pred - s) <= 1e-9 for lb, s in matched]
    report = EvaluationReport(
        params=params,
        events=n_events,
        sessions=len(truths),
        evaluated_sessions=sum(1 for _, s in eng if s is not None),
        targets=quality_targets(
            params,
            eng=[
                (lb.y_true, s, truth_of[lb.session_id].p_complete) for lb, s in eng if s is not None
            ],
            qoe=[
                (lb.y_true, s, truth_of[lb.session_id].expected_rebuffer_ratio)
                for lb, s in qoe
                if s is not None
            ],
            affinity=[(lb.y_true, s, baseline_of[id(lb)]) for lb, s in aff if s is not None],
        ),
        us_per_event=0.0,
        simulate_s=0.0,
        learn_s=time.perf_counter() - started,
    )
    return ServedQuality(
        report=report,
        predictions=n_predictions,
        repeated_predictions=n_predictions - n_shadow - len(served),
        labels=len(eng) + len(qoe) + len(aff),
        missing=sum(1 for _, s in eng + qoe + aff if s is None),
        equal_to_replay=sum(same) / len(same) if same else 0.0,
    )
