"""One model's drift monitor on one partition: scored labels and inputs -> DriftSignal dicts.

:class:`DriftMonitor` watches three things and emits dicts that match
``schemas/drift_signal/v1.avsc``:

- **concept** drift: the prequential error of the served predictions (log loss for a
  binary model, or its 0/1 error for the binary detectors DDM/EDDM/HDDM; absolute error
  for a regression), through a :mod:`~streamproc.drift.detectors` detector (ADWIN by
  default). Only an *increase* of the error counts: a model getting better is no alarm.
- **label** drift: the resolved labels themselves (completion for an engagement model, the
  rebuffering ratio for a QoE model), ADWIN, either direction.
- **data** drift: the inputs, through a :class:`~streamproc.drift.data.DataDriftMonitor`
  (optional; one per partition is enough, see :meth:`DriftMonitor.update_event`).

Rate limiting: an **episode** of a stream (concept, label, or one data feature) opens at a
detection and lasts while detections keep coming; it closes after a **cool-down** of
``cooldown_labels`` labels (``cooldown_events`` events for data drift) without any. A
stream emits at most one ``warning`` and one ``drift`` signal per episode, so a drift
that ADWIN detects ten times in a row is one signal, not ten. The first ``warmup_labels``
labels are not monitored (a fresh model's error falls as it learns). After a data drift
the feature is re-baselined: its reference window refills from the new data.

``signal_id`` is a UUID derived from the signal's content and ``detected_at`` is the
event time of the record that triggered it, so the same input gives the same signals
(invariant 4: reproducibility).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any, Literal

from streamproc.drift.data import DataDriftMonitor, _describe
from streamproc.drift.detectors import RiverDetector, make_detector
from streamproc.errors import SnapshotError
from streamproc.learning.partition import LabelOut
from streamproc.records import ViewingEvent

__all__ = [
    "DEFAULT_ADWIN_DELTA",
    "Action",
    "DriftKind",
    "DriftMonitor",
    "Severity",
    "make_signal",
]

DriftKind = Literal["concept", "data", "label", "lifecycle"]
Severity = Literal["info", "warning", "drift"]
Action = Literal[
    "none", "challenger_started", "promoted", "rolled_back", "manual_promote", "manual_rollback"
]
#: Version of the dict :meth:`DriftMonitor.export_state` returns.
STATE_FORMAT = 1
_SIGNAL_NAMESPACE = uuid.UUID("6f1c0a52-3d4e-4b8f-9a51-2f0c6d7e8b90")
_LOSS_EPS = 1e-3


def make_signal(
    *,
    model: str,
    model_version: int,
    partition: int | None,
    detector: str,
    kind: DriftKind,
    severity: Severity,
    detected_at: int,
    action: Action = "none",
    feature: str | None = None,
    statistic: float | None = None,
    threshold: float | None = None,
    reference_size: int | None = None,
    recent_size: int | None = None,
    input_offset: int | None = None,
    details: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A DriftSignal dict (``schemas/drift_signal/v1.avsc``) with a content-derived id.

    >>> s = make_signal(model="engagement", model_version=1, partition=0, detector="adwin",
    ...                 kind="concept", severity="drift", detected_at=0, input_offset=7)
    >>> s["signal_id"], s["action"]
    ('30da4157-158c-5b29-98ef-5545eead041b', 'none')
    """
    details = dict(details or {})
    key = (
        f"{model}|{model_version}|{partition}|{detector}|{kind}|{severity}|{action}|{feature}|"
        f"{detected_at}|{input_offset}|{sorted(details.items())}"
    )
    return {
        "signal_id": str(uuid.uuid5(_SIGNAL_NAMESPACE, key)),
        "model": model,
        "model_version": model_version,
        "partition": partition,
        "detector": detector,
        "kind": kind,
        "feature": feature,
        "statistic": statistic,
        "threshold": threshold,
        "reference_size": reference_size,
        "recent_size": recent_size,
        "detected_at": detected_at,
        "input_offset": input_offset,
        "severity": severity,
        "action": action,
        "details": details,
    }


#: ADWIN's confidence for the monitors: 2e-4 (river's default is 2e-3) keeps the stationary
#: simulation free of alarms over 200,000 events (see ``streamproc drift-report``).
DEFAULT_ADWIN_DELTA = 2e-4


def _params(detector: str, given: dict[str, Any] | None) -> dict[str, Any]:
    if given is not None:
        return dict(given)
    return {"delta": DEFAULT_ADWIN_DELTA} if detector == "adwin" else {}


class _Episode:
    """Rate limiting of one stream: at most one warning and one drift per episode."""

    __slots__ = ("cooldown", "drifted", "last", "open_at", "warned")

    def __init__(self, cooldown: int) -> None:
        self.cooldown = cooldown
        self.last = -(1 << 62)
        self.open_at = -1
        self.warned = False
        self.drifted = False

    def admit(self, now: int, severity: Severity) -> bool:
        """Record a detection at ``now``; True when it must be signalled."""
        if now - self.last > self.cooldown:  # the previous episode is over
            self.open_at, self.warned, self.drifted = now, False, False
        self.last = now
        if severity == "drift":
            if self.drifted:
                return False
            self.drifted = True
            return True
        if self.warned or self.drifted:
            return False
        self.warned = True
        return True

    @property
    def active(self) -> bool:
        return self.open_at >= 0 and self.last >= self.open_at


class DriftMonitor:
    """Concept, label and (optionally) data drift of one model on one partition.

    Parameters
    ----------
    model
        Model spec name (the signals' ``model``).
    task
        ``binary`` or ``regression`` (what the error stream is).
    partition
        Input partition (the signals' ``partition``).
    concept_detector, concept_params
        Detector of the error stream and its parameters (``adwin``, ``delta=2e-4``).
    label_detector, label_params
        Detector of the label stream (``adwin``, ``delta=2e-4``).
    data
        Data drift monitor of the partition's inputs, or None.
    warmup_labels
        Labels not monitored at the start (and after :meth:`reset_concept`).
    cooldown_labels, cooldown_events
        Quiet time that closes an episode (labels for concept/label, events for data).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> monitor = DriftMonitor("engagement", "binary", partition=0, warmup_labels=100)
    >>> def label(i):
    ...     p = 0.8 if i < 3000 else 0.3  # the served score stops being right at 3000
    ...     y = rng.random() < 0.8  # while 80 % of the sessions still complete
    ...     return LabelOut("engagement", 1, "session", f"s{i}", "u", "t", i, float(y), p, False)
    >>> [(i, s["kind"], s["severity"]) for i in range(6000)
    ...  for s in monitor.update_label(label(i), offset=i)]
    [(3075, 'concept', 'drift')]
    """

    def __init__(
        self,
        model: str,
        task: Literal["binary", "regression"],
        *,
        partition: int | None = None,
        concept_detector: str = "adwin",
        concept_params: dict[str, Any] | None = None,
        label_detector: str = "adwin",
        label_params: dict[str, Any] | None = None,
        data: DataDriftMonitor | None = None,
        warmup_labels: int = 300,
        cooldown_labels: int = 2000,
        cooldown_events: int = 20_000,
    ) -> None:
        self.model = model
        self.task = task
        self.partition = partition
        self.concept_detector = concept_detector
        self.concept_params = _params(concept_detector, concept_params)
        self.label_detector = label_detector
        self.label_params = _params(label_detector, label_params)
        self.data = data
        self.warmup_labels = warmup_labels
        self.cooldown_labels = cooldown_labels
        self.cooldown_events = cooldown_events
        self._concept: RiverDetector = make_detector(concept_detector, **self.concept_params)
        self._label: RiverDetector = make_detector(label_detector, **self.label_params)
        self._zero_one = self._concept.binary
        self._episodes = {"concept": _Episode(cooldown_labels), "label": _Episode(cooldown_labels)}
        self._data_episodes: dict[str, _Episode] = {}
        self.labels_seen = 0
        self.events_seen = 0
        self._concept_from = warmup_labels
        self.signals_emitted = 0
        self.drift_detected = False
        self.warning_detected = False

    def __repr__(self) -> str:
        return (
            f"DriftMonitor(model={self.model!r}, task={self.task!r}, partition={self.partition}, "
            f"concept={self._concept!r}, label={self._label!r}, data={self.data!r}, "
            f"warmup_labels={self.warmup_labels}, cooldown_labels={self.cooldown_labels}, "
            f"cooldown_events={self.cooldown_events})"
        )

    def error_of(self, y_true: float, y_pred: float) -> float:
        """The error stream's value for one label (log loss, 0/1 error or absolute error)."""
        if self.task == "regression":
            return abs(y_true - y_pred)
        if self._zero_one:
            return float((y_pred >= 0.5) != (y_true > 0.5))
        p = min(max(y_pred, _LOSS_EPS), 1.0 - _LOSS_EPS)
        return -math.log(p if y_true > 0.5 else 1.0 - p)

    def reset_concept(self) -> None:
        """Forget the error stream (the served model changed) and warm up again."""
        self._concept = make_detector(self.concept_detector, **self.concept_params)
        self._concept_from = self.labels_seen + self.warmup_labels

    def export_state(self) -> dict[str, Any]:
        """The detectors, episodes and counters (picklable; ``data`` is not in it).

        The :class:`DataDriftMonitor` is exported by its owner
        (:meth:`~streamproc.drift.partition.PartitionDrift.export_state`), since one data
        monitor may serve several model monitors.
        """
        return {
            "format": STATE_FORMAT,
            "model": self.model,
            "concept_detector": self.concept_detector,
            "concept_params": dict(self.concept_params),
            "label_detector": self.label_detector,
            "label_params": dict(self.label_params),
            "concept": self._concept,
            "label": self._label,
            "episodes": dict(self._episodes),
            "data_episodes": dict(self._data_episodes),
            "labels_seen": self.labels_seen,
            "events_seen": self.events_seen,
            "concept_from": self._concept_from,
            "signals_emitted": self.signals_emitted,
        }

    def import_state(self, state: object) -> None:
        """Continue from what :meth:`export_state` returned (for the same model).

        A detector configured differently now than in ``state`` (another name or other
        parameters) starts fresh, and the concept stream warms up again; everything else
        (episodes, counters) is kept.

        Raises
        ------
        SnapshotError
            When ``state`` is not such a dict for this model (nothing is changed then).
        """
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and state.get("model") == self.model
            and isinstance(state.get("concept"), RiverDetector)
            and isinstance(state.get("label"), RiverDetector)
            and isinstance(state.get("episodes"), dict)
            and isinstance(state.get("labels_seen"), int)
        ):
            raise SnapshotError(
                f'cannot import the drift monitor state of "{self.model}": expected the dict '
                f"export_state() returns (format {STATE_FORMAT}), got {_describe(state)}"
            )
        self.labels_seen = state["labels_seen"]
        self.events_seen = int(state.get("events_seen", 0))
        self.signals_emitted = int(state.get("signals_emitted", 0))
        self._episodes.update(state["episodes"])
        self._data_episodes = dict(state.get("data_episodes") or {})
        if (state.get("concept_detector"), state.get("concept_params")) == (
            self.concept_detector,
            self.concept_params,
        ):
            self._concept = state["concept"]
            self._concept_from = int(state.get("concept_from", self.warmup_labels))
        else:
            self._concept_from = self.labels_seen + self.warmup_labels
        if (state.get("label_detector"), state.get("label_params")) == (
            self.label_detector,
            self.label_params,
        ):
            self._label = state["label"]

    def update_label(self, label: LabelOut, *, offset: int | None = None) -> list[dict[str, Any]]:
        """Fold in one scored label of this model; the signals it raises (usually none)."""
        self.labels_seen += 1
        self.drift_detected = self.warning_detected = False
        if self.labels_seen <= self.warmup_labels:
            return []
        out: list[dict[str, Any]] = []
        n = self.labels_seen
        if n > self._concept_from:
            concept = self._concept
            hit = concept.update(self.error_of(label.y_true, label.y_pred))
            if hit and concept.increased:
                self.drift_detected = True
                self._emit(out, "concept", "drift", concept.name, label, offset, n)
            elif concept.warning_detected:
                self.warning_detected = True
                self._emit(out, "concept", "warning", concept.name, label, offset, n)
        if self._label.update(label.y_true):
            self._emit(out, "label", "drift", self._label.name, label, offset, n)
        return out

    def _emit(
        self,
        out: list[dict[str, Any]],
        kind: Literal["concept", "label"],
        severity: Severity,
        detector: str,
        label: LabelOut,
        offset: int | None,
        now: int,
    ) -> None:
        if not self._episodes[kind].admit(now, severity):
            return
        self.signals_emitted += 1
        out.append(
            make_signal(
                model=self.model,
                model_version=label.model_version,
                partition=self.partition,
                detector=detector,
                kind=kind,
                severity=severity,
                detected_at=label.event_time,
                input_offset=offset,
                details={"labels_seen": str(now)},
            )
        )

    def update_event(
        self,
        event: ViewingEvent,
        *,
        version: int | Callable[[], int],
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Fold in one input event (data drift; no-op without ``data``); its signals.

        With several models on a partition, give the :class:`DataDriftMonitor` to one
        monitor only (or share it and call this on one), or every model signals the same
        input drift.
        """
        data = self.data
        if data is None:
            return []
        self.events_seen += 1
        results = data.update(event)
        if not results:
            return []
        out = []
        if callable(version):  # read only when there is something to signal (hot path)
            version = version()
        for r in results:
            episode = self._data_episodes.setdefault(r.feature, _Episode(self.cooldown_events))
            data.rebaseline(r.feature)
            if not episode.admit(self.events_seen, "drift"):
                continue
            self.signals_emitted += 1
            out.append(
                make_signal(
                    model=self.model,
                    model_version=version,
                    partition=self.partition,
                    detector="psi",
                    kind="data",
                    severity="drift",
                    detected_at=event["event_time"],
                    input_offset=offset,
                    feature=r.feature,
                    statistic=r.statistic,
                    threshold=r.threshold,
                    reference_size=r.reference_size,
                    recent_size=r.recent_size,
                )
            )
        return out
