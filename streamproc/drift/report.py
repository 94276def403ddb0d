"""The drift report: detection delay, false alarms and recovery, measured on the simulator.

For each scenario (``stationary``, ``taste_shift``, ``taste_drift``, ``throttled_cdn``) with a
fixed seed, the simulator's valid events are split by user as Kafka would, and every
partition runs twice over the same events, in stream order:

- **adaptive**: a :class:`~streamproc.drift.partition.PartitionDrift` (drift monitors, data
  drift on the inputs, challenger / promotion / rollback);
- **baseline**: the bare learner, champion only (no adaptation).

Figures (stream positions count valid events of the whole stream, all partitions):

- ``onset``: position of the first event of a session planned at or after the scenario's
  onset index (the first event the new truth produced; labels of such sessions arrive
  later, after the session's length).
- ``labels by the target``: labels (session ends) of post-onset sessions within
  ``delay_target`` events of the onset, all partitions together: what any detector fed by
  labels has to go on within the delay target.
- ``detection delay``: first drift signal (concept, label or data; any partition) at or
  after the onset, minus the onset.
- ``false alarms``: drift signals before the onset (every signal, for ``stationary``).
- ``recovery``: over sliding windows of ``auc_window`` engagement labels of post-onset
  sessions, the first window whose served AUC is within ``auc_margin`` of the oracle's AUC
  (true ``p_complete``, same labels): the position of its last label minus the onset. The
  same for the baseline. None: not within the run.

:func:`run_river_streams` runs River's synthetic drift streams (``ConceptDriftStream``
over SEA and Agrawal, drift at a known position) through a prequential Hoeffding tree and
the same :class:`~streamproc.drift.monitor.DriftMonitor`, per detector.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import orjson

from streamproc.config import Settings
from streamproc.drift.data import DataDriftMonitor
from streamproc.drift.monitor import DriftMonitor
from streamproc.drift.partition import PartitionDrift
from streamproc.learning.evaluate import START_TIME_MS, partition_of, roc_auc
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.learning.specs import get_model_specs
from streamproc.records import ViewingEvent
from streamproc.simulate import SimParams, simulate_events
from streamproc.simulate.scenarios import register_variant

__all__ = [
    "DriftReportParams",
    "RiverStreamResult",
    "ScenarioResult",
    "format_drift_report",
    "run_river_streams",
    "run_scenario",
]

SCENARIO_NAMES = ("stationary", "taste_shift", "taste_drift", "throttled_cdn")
#: Events simulated beyond the horizon and not processed (see run_scenario).
TAIL_EVENTS = 30_000


@dataclass(frozen=True, slots=True)
class DriftReportParams:
    """What to simulate and how to judge it (see the module docstring)."""

    n_events: int = 600_000
    onset: int = 300_000
    span: int = 40_000
    seed: int = 42
    n_users: int = 1_000
    n_titles: int = 500
    partitions: int = 6
    models: tuple[str, ...] = ("engagement", "qoe")
    auc_window: int = 2000
    auc_step: int = 250
    auc_margin: float = 0.03
    delay_target: int = 2000
    stationary_events: int = 200_000


@dataclass(slots=True)
class Curve:
    """Windowed AUC against stream position (for the plot)."""

    position: list[int] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)


@dataclass(slots=True)
class ScenarioResult:
    """The figures of one scenario."""

    scenario: str
    seed: int
    events: int
    onset_index: int | None
    onset_position: int | None
    first_post_label: int | None
    labels_by_target: int | None
    signals: list[dict[str, Any]]
    signal_positions: list[int]
    detection_delay: int | None
    first_signal: str | None
    false_alarms: int
    recovery: int | None
    recovery_baseline: int | None
    promotions: int
    rollbacks: int
    challengers: int
    learn_us_per_event: float
    drift_us_per_event: float
    data_null_max_ratio: dict[str, float]
    curves: dict[str, Curve] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("curves")
        out["signals"] = [
            {
                k: s[k]
                for k in (
                    "model",
                    "partition",
                    "kind",
                    "detector",
                    "feature",
                    "severity",
                    "action",
                    "model_version",
                )
            }
            | {"position": p}
            for s, p in zip(self.signals, self.signal_positions, strict=True)
        ]
        return out


def _simulate(
    params: DriftReportParams, scenario: str, settings: Settings, n_events: int
) -> tuple[list[ViewingEvent], dict[str, Any], dict[str, int]]:
    sim = simulate_events(
        SimParams(
            n_events=n_events,
            n_users=params.n_users,
            n_titles=params.n_titles,
            seed=params.seed,
            fmt="json",
            scenario=scenario,
            start_time_ms=START_TIME_MS,
        ),
        settings,
    )
    events = [cast(ViewingEvent, orjson.loads(r.value)) for r in sim if r.kind == "valid"]
    truths = {t.session_id: t for t in sim.manifest.sessions}
    counts: dict[str, int] = {}
    for event in events:
        counts[event["session_id"]] = counts.get(event["session_id"], 0) + 1
    planned, index = 0, {}
    for t in sim.manifest.sessions:  # the event index each session was planned at
        index[t.session_id] = planned
        planned += counts.get(t.session_id, 0)
    return events, truths, index


def _windows(
    labels: Sequence[tuple[int, LabelOut, float]],
    truths: dict[str, Any],
    params: DriftReportParams,
) -> tuple[Curve, Curve]:
    model, oracle = Curve(), Curve()
    w = params.auc_window
    for k in range(0, max(len(labels) - w + 1, 0), params.auc_step):
        chunk = labels[k : k + w]
        y = [lb.y_true > 0.5 for _, lb, _ in chunk]
        model.position.append(chunk[-1][0])
        oracle.position.append(chunk[-1][0])
        model.auc.append(roc_auc(y, [p for _, _, p in chunk]))
        oracle.auc.append(roc_auc(y, [truths[lb.session_id].p_complete for _, lb, _ in chunk]))
    return model, oracle


def run_scenario(scenario: str, params: DriftReportParams, settings: Settings) -> ScenarioResult:
    """Simulate ``scenario`` and run it through the adaptive learners and the baseline."""
    drifting = scenario != "stationary"
    n_events = params.n_events if drifting else params.stationary_events
    name = scenario
    if scenario == "taste_drift":
        name = register_variant(scenario, onset=params.onset, span=params.span)
    elif drifting:
        name = register_variant(scenario, onset=params.onset)
    # The simulation runs on past the horizon: a finite simulation ends with sessions that
    # only close (no plays, labels of long sessions only), which is no drift.
    events, truths, planned_at = _simulate(params, name, settings, n_events + TAIL_EVENTS)
    events = events[:n_events]
    onset_position = first_post_label = None
    if drifting:
        onset_position = next(
            (i for i, e in enumerate(events) if planned_at[e["session_id"]] >= params.onset),
            None,
        )
        first_post_label = next(
            (
                i
                for i, e in enumerate(events)
                if e["event_type"] in ("stop", "complete")
                and planned_at[e["session_id"]] >= params.onset
            ),
            None,
        )
    labels_by_target = None
    if onset_position is not None:
        labels_by_target = sum(
            1
            for e in events[onset_position : onset_position + params.delay_target]
            if e["event_type"] in ("stop", "complete")
            and planned_at[e["session_id"]] >= params.onset
        )
    specs = get_model_specs(list(params.models))
    engagement = params.models[0]
    position = 0
    served: list[tuple[int, LabelOut, float]] = []
    base: list[tuple[int, LabelOut, float]] = []
    challenger: list[tuple[int, LabelOut, float]] = []

    def post_onset(label: LabelOut) -> bool:
        return not drifting or planned_at.get(label.session_id, -1) >= params.onset

    def collect(into: list[tuple[int, LabelOut, float]]) -> Any:
        def on_label(label: LabelOut) -> None:
            if label.model == engagement and label.kind == "session":
                into.append((position, label, label.y_pred))

        return on_label

    def on_shadow(role: str, label: LabelOut, pred: float) -> None:
        if role == "challenger" and label.model == engagement:
            challenger.append((position, label, pred))

    adaptive: list[PartitionDrift] = []
    data_monitors: list[DataDriftMonitor] = []
    for p in range(params.partitions):
        learner = PartitionLearner(specs, seed=params.seed, on_label=collect(served))
        data = DataDriftMonitor()
        data_monitors.append(data)
        drift = PartitionDrift(learner, partition=p, data=data)
        for policy in drift.policies.values():
            policy.on_shadow_score = on_shadow
        adaptive.append(drift)
    baseline = [
        PartitionLearner(specs, seed=params.seed, on_label=collect(base))
        for _ in range(params.partitions)
    ]
    parts = [partition_of(e["user_id"], params.partitions) for e in events]
    signals: list[dict[str, Any]] = []
    positions: list[int] = []
    t0 = time.perf_counter()
    for position, event in enumerate(events):
        _, out = adaptive[parts[position]].process(event, offset=position)
        if out:
            signals.extend(out)
            positions.extend([position] * len(out))
    adaptive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for position, event in enumerate(events):
        baseline[parts[position]].process(event)
    baseline_s = time.perf_counter() - t0

    detections = [
        (pos, s) for pos, s in zip(positions, signals, strict=True) if s["kind"] != "lifecycle"
    ]
    start = onset_position if onset_position is not None else len(events)
    false_alarms = sum(1 for pos, _ in detections if pos < start)
    after = [(pos, s) for pos, s in detections if pos >= start]
    delay = after[0][0] - start if drifting and after else None
    first = (
        f"{after[0][1]['kind']}/{after[0][1]['detector']}"
        + (f"/{after[0][1]['feature']}" if after[0][1]["feature"] else "")
        + f" p{after[0][1]['partition']}"
        if drifting and after
        else None
    )

    def recovery(labels: list[tuple[int, LabelOut, float]]) -> tuple[int | None, Curve, Curve]:
        post = [item for item in labels if post_onset(item[1])]
        model, oracle = _windows(post, truths, params)
        for pos, m, o in zip(model.position, model.auc, oracle.auc, strict=True):
            if m >= o - params.auc_margin:
                return pos - start, model, oracle
        return None, model, oracle

    rec, _, _ = recovery(served)
    rec_base, _, _ = recovery(base)
    curves = {}
    for key, labels in (("served", served), ("baseline", base), ("challenger", challenger)):
        curves[key], oracle_curve = _windows(labels, truths, params)
        if key == "served":
            curves["oracle"] = oracle_curve
    null_max: dict[str, float] = {}
    for data in data_monitors:
        for feature, ratio in data.max_ratio.items():
            null_max[feature] = max(null_max.get(feature, 0.0), ratio)
    policies = [pol for d in adaptive for pol in d.policies.values()]
    return ScenarioResult(
        scenario=scenario,
        seed=params.seed,
        events=len(events),
        onset_index=params.onset if drifting else None,
        onset_position=onset_position,
        first_post_label=first_post_label,
        labels_by_target=labels_by_target,
        signals=signals,
        signal_positions=positions,
        detection_delay=delay,
        first_signal=first,
        false_alarms=false_alarms,
        recovery=rec if drifting else None,
        recovery_baseline=rec_base if drifting else None,
        promotions=sum(pol.promotions for pol in policies),
        rollbacks=sum(pol.rollbacks for pol in policies),
        challengers=sum(pol.challengers_started for pol in policies),
        learn_us_per_event=baseline_s / max(len(events), 1) * 1e6,
        drift_us_per_event=(adaptive_s - baseline_s) / max(len(events), 1) * 1e6,
        data_null_max_ratio={k: round(v, 3) for k, v in null_max.items()},
        curves=curves,
    )


@dataclass(slots=True)
class RiverStreamResult:
    """One detector on one River synthetic drift stream."""

    stream: str
    detector: str
    drift_position: int
    detections: list[int]
    delay: int | None
    false_alarms: int


def run_river_streams(
    *,
    n: int = 20_000,
    position: int = 10_000,
    width: int = 100,
    seed: int = 42,
    detectors: Sequence[str] = ("adwin", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w"),
) -> list[RiverStreamResult]:
    """River's ConceptDriftStream over SEA (variant 0 -> 2) and Agrawal (function 0 -> 2).

    A Hoeffding tree learns prequentially; its served probability and the label go through
    a :class:`~streamproc.drift.monitor.DriftMonitor` per detector (concept signals only);
    the drift ramps in over about ``width`` events around ``position`` (a sigmoid), so the
    delay is the first concept signal at or after ``position - width`` minus ``position``
    (negative: caught on the ramp) and false alarms are signals before ``position - width``.
    """
    from river import datasets, tree

    def streams() -> list[tuple[str, Any]]:
        synth = datasets.synth
        return [
            (
                "SEA 0->2",
                synth.ConceptDriftStream(
                    stream=synth.SEA(seed=seed, variant=0),
                    drift_stream=synth.SEA(seed=seed, variant=2),
                    seed=seed,
                    position=position,
                    width=width,
                ),
            ),
            (
                "Agrawal 0->2",
                synth.ConceptDriftStream(
                    stream=synth.Agrawal(classification_function=0, seed=seed),
                    drift_stream=synth.Agrawal(classification_function=2, seed=seed),
                    seed=seed,
                    position=position,
                    width=width,
                ),
            ),
        ]

    results = []
    for stream_name, _ in streams():
        # One model run per stream; every detector watches the same served predictions.
        stream = dict(streams())[stream_name]
        model: Any = tree.HoeffdingTreeClassifier(grace_period=100)
        monitors = {d: DriftMonitor("synthetic", "binary", concept_detector=d) for d in detectors}
        hits: dict[str, list[int]] = {d: [] for d in detectors}
        for i, (x, y) in enumerate(stream.take(n)):
            p = float(model.predict_proba_one(x).get(True, 0.5)) if i else 0.5
            label = LabelOut("synthetic", 1, "session", str(i), "", "", i, float(y), p, False)
            for d, monitor in monitors.items():
                if any(s["kind"] == "concept" for s in monitor.update_label(label)):
                    hits[d].append(i)
            model.learn_one(x, y)
        for d in detectors:
            after = [i for i in hits[d] if i >= position - width]
            results.append(
                RiverStreamResult(
                    stream=stream_name,
                    detector=d,
                    drift_position=position,
                    detections=hits[d],
                    delay=after[0] - position if after else None,
                    false_alarms=sum(1 for i in hits[d] if i < position - width),
                )
            )
    return results


def format_drift_report(
    results: Sequence[ScenarioResult],
    river: Sequence[RiverStreamResult],
    params: DriftReportParams,
) -> str:
    """A readable table of the scenario figures and the River stream delays."""

    def show(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    lines = [
        f"seed {params.seed}, {params.partitions} partitions, models {', '.join(params.models)}; "
        f"drift scenarios: {params.n_events:,} events, onset index {params.onset:,}; "
        f"stationary: {params.stationary_events:,} events",
        f"recovery: windows of {params.auc_window:,} post-onset engagement labels, "
        f"AUC within {params.auc_margin} of the oracle's",
        "",
        f"{'scenario':<14} {'onset pos':>9} {'1st label':>9} {'delay':>7} {'first signal':<30} "
        f"{'false':>5} {'recovery':>9} {'baseline':>9} {'chal':>4} {'prom':>4} {'roll':>4} "
        f"{'Δwall µs/ev':>11}",
    ]
    for r in results:
        lines.append(
            f"{r.scenario:<14} {show(r.onset_position):>9} {show(r.first_post_label):>9} "
            f"{show(r.detection_delay):>7} {r.first_signal or '-':<30} {r.false_alarms:>5} "
            f"{show(r.recovery):>9} {show(r.recovery_baseline):>9} {r.challengers:>4} "
            f"{r.promotions:>4} {r.rollbacks:>4} {r.drift_us_per_event:>11.2f}"
        )
    lines.append("")
    for r in results:
        if r.scenario == "stationary":
            ok = r.false_alarms == 0
            lines.append(
                f"target: 0 signals on stationary ({r.events:,} events): {r.false_alarms} "
                f"-> {'PASS' if ok else 'FAIL'}; largest data-drift null ratio "
                f"{max(r.data_null_max_ratio.values(), default=0.0):.2f} of the threshold"
            )
        elif r.scenario == "taste_shift":
            ok = r.detection_delay is not None and r.detection_delay <= params.delay_target
            lines.append(
                f"target: abrupt drift detected within {params.delay_target:,} events of the "
                f"onset: {show(r.detection_delay)} -> {'PASS' if ok else 'FAIL'} "
                f"(labels of post-onset sessions within {params.delay_target:,} events of the "
                f"onset, all partitions: {show(r.labels_by_target)})"
            )
    lines += ["", "River synthetic drift streams (Hoeffding tree, concept signals):"]
    lines.append(f"{'stream':<14} {'detector':<13} {'drift at':>8} {'delay':>7} {'false':>5}")
    for s in river:
        lines.append(
            f"{s.stream:<14} {s.detector:<13} {s.drift_position:>8,} {show(s.delay):>7} "
            f"{s.false_alarms:>5}"
        )
    return "\n".join(lines)
