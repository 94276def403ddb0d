"""The drift report of a live run: what the workers signalled, set against the true onset.

``streamproc demo`` knows what it published: the valid events in order (their ids), the
sessions in the order the simulator planned them, and the scenario's onset index. Once the
workers have caught up it reads back the valid topic, the drift signals and the predictions of
the run, and :func:`build_drift_run` puts them together. Nothing here talks to Kafka, so the
figures are tested without a broker.

- **Onset.** A drift scenario gives the new truth to the sessions planned at or after the
  onset index (:mod:`streamproc.simulate.scenarios`); the first event of such a session is
  the first event the new truth produced, the same definition as ``streamproc drift-report``
  and the drift tests use. Its publish index is the run's onset position; per partition, the
  valid-topic offset of its first such event is the partition's onset. Such sessions overlap
  the older ones, so the onset position is a little before the onset index.
- **Per partition and model**: the first detection (concept or label; data drift is
  signalled once per partition, under the first model, and shown as the partition's
  ``inputs``) at or after the partition's onset and its delay in events of that partition;
  the challengers started, promotions, rollbacks and retired challengers. A detection before
  the onset is a false alarm.
- **Served quality** (:class:`QualityRow`): for the monitored models, the served prediction of
  each play against the session's label, computed with the models' own label functions from
  the session's closing event (``stop``/``complete``), before the onset and after it by the
  version that served; the simulator's oracle on the same labels beside it. Sessions without
  a closing event (resolved by the workers' timeout) are left out.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamproc.drift.report import Curve, ScenarioResult
from streamproc.features.sessions import SessionOutcome, rebuffer_ratio, watched_fraction
from streamproc.learning.evaluate import roc_auc
from streamproc.learning.specs import (
    ModelSpec,
    completed_label,
    get_model_specs,
    rebuffer_label,
)
from streamproc.simulate import SessionTruth

__all__ = [
    "DETECTION_KINDS",
    "DriftRun",
    "ModelDrift",
    "QualityRow",
    "SignalAt",
    "ValidRecord",
    "as_scenario_result",
    "build_drift_run",
    "format_drift_run",
]

#: Signal kinds that are detections (the rest, ``lifecycle``, are actions).
DETECTION_KINDS = ("concept", "label", "data")
#: Row name of a partition's data drift (signalled under its first model).
INPUTS = "inputs"
#: Fewest labels a quality figure is computed from.
MIN_QUALITY_LABELS = 50
_CLOSING = ("stop", "complete")
#: Widest line of the report.
_WIDTH = 100
#: Label function -> the simulator's truth of the same quantity.
_ORACLES: dict[Callable[[SessionOutcome], Any], str] = {
    completed_label: "p_complete",
    rebuffer_label: "expected_rebuffer_ratio",
}
_METRIC = {"binary": "ROC AUC", "regression": "MAE"}


@dataclass(frozen=True, slots=True)
class ValidRecord:
    """What the report needs of one record of the valid topic."""

    partition: int
    offset: int
    event_id: str
    session_id: str
    event_type: str
    position_s: float
    duration_s: float
    rebuffer_ms: int

    @classmethod
    def from_event(cls, partition: int, offset: int, event: Mapping[str, Any]) -> ValidRecord:
        """From a decoded ``ViewingEvent`` at ``partition``/``offset``."""
        playback = event.get("playback") or {}
        return cls(
            partition,
            offset,
            str(event["event_id"]),
            str(event["session_id"]),
            str(event["event_type"]),
            float(playback.get("position_s") or 0.0),
            float(playback.get("duration_s") or 0.0),
            int(playback.get("rebuffer_ms") or 0),
        )


@dataclass(frozen=True, slots=True)
class SignalAt:
    """One drift signal of the run, placed on the stream.

    ``position``: publish index of the valid event at its input offset (None: unknown);
    ``delay``: events of its partition after the partition's onset (negative: before it;
    None without an onset or an offset).
    """

    signal: dict[str, Any]
    position: int | None
    delay: int | None

    @property
    def what(self) -> str:
        """``kind/detector[/feature]``, e.g. ``data/psi/rtt_ms``."""
        s = self.signal
        out = f"{s.get('kind')}/{s.get('detector')}"
        return out + (f"/{s['feature']}" if s.get("feature") else "")


@dataclass(slots=True)
class ModelDrift:
    """What happened to one model on one partition (``model`` is ``inputs`` for data drift)."""

    partition: int
    model: str
    first_detection: SignalAt | None = None  # at or after the partition's onset
    detections: int = 0  # at or after the onset
    false_alarms: int = 0  # detections before the onset
    challengers: list[SignalAt] = field(default_factory=list)
    promotions: list[SignalAt] = field(default_factory=list)
    rollbacks: list[SignalAt] = field(default_factory=list)
    retired: list[SignalAt] = field(default_factory=list)
    manual: list[SignalAt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QualityRow:
    """Served quality of one model over one phase of the run, and the oracle's on its labels."""

    model: str
    metric: str  # "ROC AUC" or "MAE"
    phase: str  # "before onset", "after onset, v1", ..., or "whole run"
    labels: int
    served: float
    oracle: float

    @property
    def gap(self) -> float:
        """How far the served model is behind the oracle (>= 0 unless it does better)."""
        return self.oracle - self.served if self.metric == "ROC AUC" else self.served - self.oracle


@dataclass(slots=True)
class DriftRun:
    """The drift report of one live run (see the module docstring)."""

    scenario: str
    onset_index: int | None  # None: no drift in the truth (stationary)
    onset_position: int | None  # publish index of the first event of the new truth
    onset_offsets: dict[int, int]  # partition -> valid offset of its first new-truth event
    partitions: list[int]
    rows: list[ModelDrift]
    signals: list[SignalAt]  # this run's signals of every partition, in topic order
    operator: list[dict[str, Any]] = field(default_factory=list)  # manual, partition null
    quality: list[QualityRow] = field(default_factory=list)
    detection_delay: int | None = None  # first detection's position minus onset_position
    curves: dict[str, Curve] = field(default_factory=dict)  # engagement AUC, for the plot

    @property
    def drifting(self) -> bool:
        return self.onset_index is not None

    def of(self, action: str) -> list[SignalAt]:
        """This run's signals with ``action`` (e.g. ``promoted``), in topic order."""
        return [s for s in self.signals if s.signal.get("action") == action]

    @property
    def detected_partitions(self) -> set[int]:
        return {r.partition for r in self.rows if r.first_detection is not None}


def _event(signal: Mapping[str, Any]) -> str | None:
    details = signal.get("details")
    return details.get("event") if isinstance(details, Mapping) else None


def build_drift_run(
    *,
    scenario: str,
    onset_index: int | None,
    published: Sequence[str],
    sessions: Sequence[SessionTruth],
    valid: Iterable[ValidRecord],
    signals: Iterable[Mapping[str, Any]],
    predictions: Iterable[Mapping[str, Any]] = (),
    models: Sequence[str] = ("engagement", "qoe"),
    completion_threshold: float = 0.9,
    auc_window: int = 2000,
    auc_step: int = 250,
) -> DriftRun:
    """Put a live run's valid events, signals and predictions against its onset.

    Parameters
    ----------
    scenario
        The scenario's name, as the report shows it.
    onset_index
        The scenario's onset (valid-event index); None for a stationary run.
    published
        Ids of the valid events published, in publish order.
    sessions
        The simulator's sessions in planning order (``Manifest.sessions``).
    valid
        This run's records of the valid topic (repeats after a restart are ignored).
    signals
        This run's DriftSignal dicts, in topic order.
    predictions
        This run's Prediction dicts (for the served quality; optional).
    models
        The models the workers run (those with an oracle get quality rows).
    completion_threshold
        The workers' ``STREAMPROC_COMPLETION_THRESHOLD``.
    auc_window, auc_step
        Windows of engagement labels of the curves for the plot.
    """
    index: dict[str, int] = {}
    for i, event_id in enumerate(published):
        index.setdefault(event_id, i)
    by_partition: dict[int, list[ValidRecord]] = {}
    seen: set[str] = set()
    for rec in sorted(valid, key=lambda r: (r.partition, r.offset)):
        if rec.event_id in seen:
            continue  # a repeat (at-least-once)
        seen.add(rec.event_id)
        by_partition.setdefault(rec.partition, []).append(rec)
    records = [r for recs in by_partition.values() for r in recs]
    position_of = {(r.partition, r.offset): index.get(r.event_id) for r in records}

    post: set[str] = set()
    if onset_index is not None:
        counts = Counter(r.session_id for r in records)
        planned = 0
        for truth in sessions:  # a session's planned index, as the scenarios count it
            if planned >= onset_index:
                post.add(truth.session_id)
            planned += counts.get(truth.session_id, 0)
    onset_offsets = {
        p: next(r.offset for r in recs if r.session_id in post)
        for p, recs in by_partition.items()
        if any(r.session_id in post for r in recs)
    }
    post_positions = [
        index[r.event_id] for r in records if r.session_id in post and r.event_id in index
    ]
    onset_position = min(post_positions) if post_positions else None

    placed: list[SignalAt] = []
    operator: list[dict[str, Any]] = []
    for raw in signals:
        signal = dict(raw)
        partition, offset = signal.get("partition"), signal.get("input_offset")
        if partition is None:
            operator.append(signal)
            continue
        onset = onset_offsets.get(partition)
        placed.append(
            SignalAt(
                signal,
                position_of.get((partition, offset)) if offset is not None else None,
                offset - onset if offset is not None and onset is not None else None,
            )
        )

    rows: dict[tuple[int, str], ModelDrift] = {}

    def row(partition: int, model: str) -> ModelDrift:
        key = (partition, model)
        if key not in rows:
            rows[key] = ModelDrift(partition, model)
        return rows[key]

    # The drift topic may have several partitions: put each partition's signals in stream order.
    for at in sorted(placed, key=lambda a: (a.signal["partition"], a.signal["input_offset"] or 0)):
        s = at.signal
        partition, model = int(s["partition"]), str(s["model"])
        if s.get("kind") in DETECTION_KINDS:
            target = row(partition, INPUTS if s["kind"] == "data" else model)
            if at.delay is None or at.delay < 0:
                target.false_alarms += 1
            else:
                target.detections += 1
                if target.first_detection is None:
                    target.first_detection = at
            continue
        action = s.get("action")
        target = row(partition, model)
        if action == "challenger_started":
            target.challengers.append(at)
        elif action == "promoted":
            target.promotions.append(at)
        elif action == "rolled_back":
            target.rollbacks.append(at)
        elif str(action).startswith("manual_"):
            target.manual.append(at)
        elif _event(s) == "challenger_retired":
            target.retired.append(at)
    partitions = sorted(set(by_partition) | {p for p, _ in rows})
    order = {m: i for i, m in enumerate([INPUTS, *(models or [])])}
    ordered = sorted(rows.values(), key=lambda r: (r.partition, order.get(r.model, 99), r.model))
    detected = [
        at.position
        for r in ordered
        if r.first_detection is not None and (at := r.first_detection).position is not None
    ]
    delay = min(detected) - onset_position if detected and onset_position is not None else None
    run = DriftRun(
        scenario=scenario,
        onset_index=onset_index,
        onset_position=onset_position,
        onset_offsets=onset_offsets,
        partitions=partitions,
        rows=ordered,
        signals=placed,
        operator=operator,
        detection_delay=delay,
    )
    _add_quality(
        run,
        records,
        index,
        {t.session_id: t for t in sessions},
        post,
        list(predictions),
        [s for s in get_model_specs([m for m in models if m]) if s.label in _ORACLES],
        completion_threshold,
        (auc_window, auc_step),
    )
    return run


def _outcome(closing: ValidRecord, threshold: float) -> SessionOutcome:
    """The label the workers learn at a session's closing event (no timeout)."""
    fraction = watched_fraction(closing.position_s, closing.duration_s)
    return SessionOutcome(
        kind="session",
        session_id=closing.session_id,
        user_id="",
        title_id="",
        event_time=0,
        completed=closing.event_type == "complete" or fraction >= threshold,
        watched_fraction=fraction,
        rebuffer_ratio=rebuffer_ratio(closing.rebuffer_ms, closing.position_s),
    )


def _score(task: str, y: Sequence[float], p: Sequence[float]) -> float:
    if task == "binary":
        return roc_auc([v > 0.5 for v in y], p)
    return sum(abs(a - b) for a, b in zip(y, p, strict=True)) / len(y)


def _add_quality(
    run: DriftRun,
    records: Sequence[ValidRecord],
    index: Mapping[str, int],
    truths: Mapping[str, SessionTruth],
    post: set[str],
    predictions: Sequence[Mapping[str, Any]],
    specs: Sequence[ModelSpec],
    threshold: float,
    windows: tuple[int, int],
) -> None:
    closing = {r.session_id: r for r in records if r.event_type in _CLOSING}
    served: dict[tuple[str, str], tuple[float, int]] = {}  # (model, session) -> score, version
    for pred in predictions:
        if pred.get("shadow"):
            continue
        key = (str(pred.get("model")), str(pred.get("session_id")))
        served.setdefault(key, (float(pred["score"]), int(pred.get("model_version") or 1)))
    for spec in specs:
        oracle_field = _ORACLES[spec.label]
        # (phase, label position, label, served score, oracle)
        rows: list[tuple[str, int, float, float, float]] = []
        for session_id, end in closing.items():
            found = served.get((spec.name, session_id))
            truth = truths.get(session_id)
            label = spec.label(_outcome(end, threshold))
            if found is None or truth is None or label is None:
                continue
            score, version = found
            if not run.drifting:
                phase = "whole run"
            elif session_id in post:
                phase = f"after onset, v{version}"
            else:
                phase = "before onset"
            position = index.get(end.event_id, -1)
            rows.append((phase, position, float(label), score, float(getattr(truth, oracle_field))))
        phases = sorted({r[0] for r in rows}, key=lambda ph: (ph != "before onset", ph))
        for phase in phases:
            mine = [r for r in rows if r[0] == phase]
            if len(mine) < MIN_QUALITY_LABELS:
                continue
            ys = [r[2] for r in mine]
            run.quality.append(
                QualityRow(
                    spec.name,
                    _METRIC[spec.task],
                    phase,
                    len(mine),
                    _score(spec.task, ys, [r[3] for r in mine]),
                    _score(spec.task, ys, [r[4] for r in mine]),
                )
            )
        if spec.task == "binary" and not run.curves:
            ordered = sorted((r for r in rows if r[1] >= 0), key=lambda r: r[1])
            run.curves = _auc_curves(ordered, *windows)


def _auc_curves(
    rows: Sequence[tuple[str, int, float, float, float]], window: int, step: int
) -> dict[str, Curve]:
    """Windowed ROC AUC of the served scores and the oracle's, by label position."""
    served, oracle = Curve(), Curve()
    for k in range(0, max(len(rows) - window + 1, 0), step):
        chunk = rows[k : k + window]
        y = [r[2] > 0.5 for r in chunk]
        served.position.append(chunk[-1][1])
        served.auc.append(roc_auc(y, [r[3] for r in chunk]))
        oracle.position.append(chunk[-1][1])
        oracle.auc.append(roc_auc(y, [r[4] for r in chunk]))
    return {"served": served, "oracle": oracle} if served.position else {}


def as_scenario_result(run: DriftRun, *, label: str, seed: int, events: int) -> ScenarioResult:
    """The run as :func:`streamproc.drift.plot.plot_drift_report` draws it.

    The served and the oracle's windowed engagement AUC, the onset and every signal placed
    on the stream; a live run has no no-adaptation baseline and no challenger curve (shadow
    predictions are not published).
    """
    placed = [(s.signal, s.position) for s in run.signals if s.position is not None]
    return ScenarioResult(
        scenario=label,
        seed=seed,
        events=events,
        onset_index=run.onset_index,
        onset_position=run.onset_position,
        first_post_label=None,
        labels_by_target=None,
        signals=[signal for signal, _ in placed],
        signal_positions=[position for _, position in placed],
        detection_delay=run.detection_delay,
        first_signal=None,
        false_alarms=sum(r.false_alarms for r in run.rows),
        recovery=None,
        recovery_baseline=None,
        promotions=len(run.of("promoted")),
        rollbacks=len(run.of("rolled_back")),
        challengers=len(run.of("challenger_started")),
        learn_us_per_event=0.0,
        drift_us_per_event=0.0,
        data_null_max_ratio={},
        curves=dict(run.curves),
    )


# --- the text --------------------------------------------------------------------------------


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _delay(value: int | None) -> str:
    return "-" if value is None else f"{value:+,}"


def _versions(items: Sequence[SignalAt]) -> str:
    if not items:
        return "-"
    return ", ".join(f"v{s.signal.get('model_version')} {_delay(s.delay)}" for s in items)


def _first(items: Sequence[SignalAt]) -> str:
    if not items:
        return "-"
    return _delay(items[0].delay) + (f" ({len(items)})" if len(items) > 1 else "")


def format_drift_run(run: DriftRun, *, scenario_label: str | None = None) -> str:
    """The "Drift report" section of the demo's end report, as plain text (<= 100 columns)."""
    label = scenario_label or run.scenario
    parts = ", ".join(f"p{p}" for p in run.partitions) or "none"
    lines = ["== Drift report =="]
    if run.drifting:
        lines.append(
            f"scenario    {label}; onset index {run.onset_index:,}: the sessions planned from "
            "there on"
        )
        lines.append("            follow the new truth")
        if run.onset_position is None:
            lines.append(
                "onset       no event of the new truth was published (onset beyond the run)"
            )
        else:
            offsets = " · ".join(
                f"p{p} {run.onset_offsets[p]:,}" for p in sorted(run.onset_offsets)
            )
            lines.append(
                f"onset       their first event was published as #{run.onset_position:,}; the "
                "first on each partition"
            )
            lines += textwrap.wrap(
                f"at valid offset {offsets} (delays: events of the partition after it)",
                width=_WIDTH,
                initial_indent=" " * 12,
                subsequent_indent=" " * 12,
            )
    else:
        lines.append(
            f"scenario    {label}: no drift in the truth; every detection is a false alarm"
        )
    lines.append(f"partitions  {parts}")
    if run.rows:
        lines.append(
            f"{'part':<5}{'model':<12}{'first detection':<28}{'delay':>8}  "
            f"{'challenger':<12}{'promoted':<14}{'rolled back'}"
        )
    for r in run.rows:
        first = r.first_detection
        lines.append(
            f"{'p' + str(r.partition):<5}{r.model:<12}{first.what if first else '-':<28}"
            f"{_delay(first.delay) if first else '-':>8}  {_first(r.challengers):<12}"
            f"{_versions(r.promotions):<14}{_versions(r.rollbacks):<12}".rstrip()
        )
        extra = []
        if r.false_alarms:
            extra.append(f"{r.false_alarms} detection(s) before the onset")
        if r.retired:
            extra.append(f"{len(r.retired)} challenger(s) retired without winning")
        if r.manual:
            extra.append(
                "operator: "
                + ", ".join(f"{s.signal['action']} v{s.signal['model_version']}" for s in r.manual)
            )
        if extra:
            lines.append(" " * 17 + "; ".join(extra))
    for s in run.operator:
        lines.append(
            f"operator    {s.get('action')} {s.get('model')} v{s.get('model_version')} "
            f"(every partition)"
        )
    lines += _outcome_lines(run)
    if run.quality:
        lines.append(
            "quality     served and oracle on the same labels (from the sessions' closing events,"
        )
        lines.append(
            "            as the workers learn them; after onset: sessions of the new truth)"
        )
        for model in dict.fromkeys(q.model for q in run.quality):
            mine = [q for q in run.quality if q.model == model]
            for k, q in enumerate(mine):
                head = f"  {model} {q.metric}" if k == 0 else ""
                lines.append(
                    f"{head:<22}{q.phase:<17}{q.served:.4f} (oracle {q.oracle:.4f}, "
                    f"gap {q.gap:.4f}; {q.labels:,} labels)"
                )
    return "\n".join(lines)


def _outcome_lines(run: DriftRun) -> list[str]:
    detections = [r for r in run.rows if r.first_detection is not None]
    challengers = [s for r in run.rows for s in r.challengers]
    promotions = [(r, s) for r in run.rows for s in r.promotions]
    rollbacks = [s for r in run.rows for s in r.rollbacks]
    false_alarms = sum(r.false_alarms for r in run.rows)
    lines = []
    if not run.drifting:
        total = sum(r.detections + r.false_alarms for r in run.rows)
        lines.append(
            f"outcome     {total} detection(s)"
            + (" (as expected on a stationary stream)" if not total else " (false alarms)")
        )
        return lines
    if not detections:
        lines.append(
            "outcome     NO drift signal after the onset within the run (try more --events)"
        )
        return lines
    lines.append(
        f"outcome     drift signalled on {len(run.detected_partitions)} of "
        f"{len(run.partitions)} partition(s), the first {_n(run.detection_delay)} valid events "
        "after the onset"
    )
    lines.append(
        f"            {len(challengers)} challenger(s) started · {len(promotions)} promotion(s) · "
        f"{len(rollbacks)} rollback(s) · {false_alarms} false alarm(s)"
    )
    if not challengers:
        lines.append(
            "            no challenger: only data drift was signalled (a challenger starts on "
            "concept or label drift)"
        )
    elif not promotions:
        lines.append(
            "            NO promotion: no challenger beat its champion within the run (try more "
            "--events)"
        )
    else:
        lines.append(
            "            promoted: "
            + ", ".join(
                f"{r.model} p{r.partition} v{s.signal.get('model_version')} "
                f"({_delay(s.delay)} events)"
                for r, s in promotions
            )
        )
    return lines
