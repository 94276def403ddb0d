"""The drift report of a live run (streamproc.drift.observed), on a small synthetic run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from streamproc.drift.observed import (
    INPUTS,
    MIN_QUALITY_LABELS,
    DriftRun,
    ValidRecord,
    as_scenario_result,
    build_drift_run,
    format_drift_run,
)
from streamproc.simulate import SessionTruth

SESSIONS = 400
ONSET_SESSION = 200  # sessions from this one on are planned at or after the onset index
EVENTS_PER_SESSION = 4
ONSET_INDEX = ONSET_SESSION * EVENTS_PER_SESSION  # 800


@dataclass
class Run:
    """A synthetic run: what the demo published and what the topics hold afterwards."""

    published: list[str] = field(default_factory=list)
    sessions: list[SessionTruth] = field(default_factory=list)
    valid: list[ValidRecord] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    play_offset: dict[str, tuple[int, int]] = field(default_factory=dict)  # session -> (p, off)


def _version(partition: int, offset: int, promoted: dict[int, list[tuple[int, int]]]) -> int:
    version = 1
    for at, v in promoted.get(partition, []):
        if offset >= at:
            version = v
    return version


def make_run(promoted: dict[int, list[tuple[int, int]]] | None = None) -> Run:
    """400 sessions of 4 events on 2 partitions (session k on partition k % 2).

    Sessions are published one after the other, except that the play of session 200 (the
    first of the new truth) comes before session 199: the onset position is 796, not 800.
    qoe serves 0.011 before the onset and, after it, 0.03 from v1, 0.015 from v2, 0.02 from
    v3, against a label of 0.01 (oracle 0.012). Engagement scores separate the labels
    perfectly (AUC 1).
    """
    promoted = promoted or {}
    run = Run()
    order: list[tuple[int, int]] = []  # (session, event number)
    for k in range(SESSIONS):
        if k == ONSET_SESSION - 1:
            order.append((ONSET_SESSION, 0))
            order += [(k, e) for e in range(EVENTS_PER_SESSION)]
        elif k == ONSET_SESSION:
            order += [(k, e) for e in range(1, EVENTS_PER_SESSION)]
        else:
            order += [(k, e) for e in range(EVENTS_PER_SESSION)]
    for k in range(SESSIONS):
        completed = k % 3 == 0
        run.sessions.append(
            SessionTruth(
                session_id=f"s{k}",
                user_id=f"u{k % 2}",
                title_id="t",
                play_event_id=f"e{k}-0",
                start_time_ms=k,
                p_complete=0.9 if completed else 0.1,
                expected_rebuffer_ratio=0.012,
                completed=completed,
                watched_fraction=1.0 if completed else 0.5,
                rating=None,
            )
        )
    offsets = [0, 0]
    for k, e in order:
        partition = k % 2
        event_id = f"e{k}-{e}"
        run.published.append(event_id)
        last = e == EVENTS_PER_SESSION - 1
        completed = k % 3 == 0
        run.valid.append(
            ValidRecord(
                partition=partition,
                offset=offsets[partition],
                event_id=event_id,
                session_id=f"s{k}",
                event_type=("complete" if completed else "stop") if last else "play",
                position_s=100.0 if last else 0.0,
                duration_s=200.0,
                rebuffer_ms=1000 if last else 0,
            )
        )
        if e == 0:
            run.play_offset[f"s{k}"] = (partition, offsets[partition])
        offsets[partition] += 1
    for k in range(SESSIONS):
        partition, offset = run.play_offset[f"s{k}"]
        version = _version(partition, offset, promoted)
        post = k >= ONSET_SESSION
        qoe = {1: 0.03, 2: 0.015, 3: 0.02}[version] if post else 0.011
        for model, score, v in (
            ("engagement", 0.8 if k % 3 == 0 else 0.2, 1),
            ("qoe", qoe, version),
        ):
            run.predictions.append(
                {
                    "event_id": f"e{k}-0",
                    "session_id": f"s{k}",
                    "model": model,
                    "model_version": v,
                    "score": score,
                    "partition": partition,
                    "shadow": False,
                }
            )
    return run


def signal(partition: int | None, offset: int | None, **overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": "qoe",
        "model_version": 1,
        "partition": partition,
        "detector": "adwin",
        "kind": "label",
        "feature": None,
        "severity": "drift",
        "action": "none",
        "input_offset": offset,
        "details": {},
    }
    out.update(overrides)
    return out


def lifecycle(partition: int, offset: int, action: str, **overrides: Any) -> dict[str, Any]:
    return signal(partition, offset, kind="lifecycle", detector="response", action=action) | (
        overrides
    )


PROMOTED = {0: [(600, 2)], 1: [(440, 2), (660, 3)]}
SIGNALS = [
    signal(1, 100, model="engagement", kind="concept"),  # before p1's onset: a false alarm
    signal(1, 420),
    lifecycle(1, 420, "challenger_started"),
    signal(0, 450, model="engagement", kind="data", detector="psi", feature="bandwidth_kbps"),
    signal(0, 451, model="engagement", kind="data", detector="psi", feature="rtt_ms"),
    signal(0, 480),
    lifecycle(0, 480, "challenger_started"),
    lifecycle(1, 440, "promoted", model_version=2),
    signal(0, 500, model="engagement"),
    lifecycle(0, 500, "challenger_started", model="engagement"),
    lifecycle(0, 600, "promoted", model_version=2),
    lifecycle(1, 660, "rolled_back", model_version=3),
    lifecycle(0, 700, "none", model="engagement", details={"event": "challenger_retired"}),
    signal(None, None, model="qoe", kind="lifecycle", detector="manual", action="manual_promote"),
]


def build(run: Run, signals: list[dict[str, Any]], **kwargs: Any) -> DriftRun:
    values: dict[str, Any] = {
        "scenario": "throttled_cdn",
        "onset_index": ONSET_INDEX,
        "published": run.published,
        "sessions": run.sessions,
        "valid": run.valid,
        "signals": signals,
        "predictions": run.predictions,
        "auc_window": 100,
        "auc_step": 50,
    }
    values.update(kwargs)
    return build_drift_run(**values)


def test_onset_is_the_first_event_of_a_session_planned_after_the_onset_index() -> None:
    result = build(make_run(), [])
    assert result.onset_position == ONSET_INDEX - EVENTS_PER_SESSION  # 796: it came early
    # p0: sessions 0, 2, ..., 198 (400 events) then the play of session 200; p1 likewise.
    assert result.onset_offsets == {0: 400, 1: 400}
    assert result.partitions == [0, 1]


def test_rows_per_partition_and_model_with_delays_after_each_partitions_onset() -> None:
    result = build(make_run(PROMOTED), SIGNALS)
    rows = {(r.partition, r.model): r for r in result.rows}
    assert list(rows) == [(0, INPUTS), (0, "engagement"), (0, "qoe"), (1, "engagement"), (1, "qoe")]

    inputs = rows[(0, INPUTS)]
    assert inputs.first_detection is not None
    assert (inputs.first_detection.what, inputs.first_detection.delay) == (
        "data/psi/bandwidth_kbps",
        50,
    )
    assert inputs.detections == 2 and inputs.false_alarms == 0

    qoe0 = rows[(0, "qoe")]
    assert qoe0.first_detection is not None and qoe0.first_detection.delay == 80
    assert [s.delay for s in qoe0.challengers] == [80]
    assert [(s.signal["model_version"], s.delay) for s in qoe0.promotions] == [(2, 200)]

    engagement0 = rows[(0, "engagement")]
    assert [s.delay for s in engagement0.challengers] == [100]
    assert len(engagement0.retired) == 1 and not engagement0.promotions

    false_alarm = rows[(1, "engagement")]
    assert false_alarm.first_detection is None and false_alarm.false_alarms == 1

    qoe1 = rows[(1, "qoe")]
    assert [s.delay for s in qoe1.promotions] == [40]
    assert [(s.signal["model_version"], s.delay) for s in qoe1.rollbacks] == [(3, 260)]

    assert [s["action"] for s in result.operator] == ["manual_promote"]
    assert result.detected_partitions == {0, 1}
    assert len(result.of("promoted")) == 2
    # Positions map each signal's (partition, offset) to its publish index.
    promoted_p0 = result.of("promoted")[1]
    assert promoted_p0.position is not None
    assert make_run().published[promoted_p0.position] == "e300-0"  # p0 offset 600
    # The first detection of all partitions (qoe on p1, offset 420), against position 796.
    first = qoe1.first_detection
    assert first is not None and first.position is not None
    assert result.detection_delay == first.position - 796 == 48


def test_repeats_after_a_restart_are_ignored() -> None:
    run = make_run()
    repeat = run.valid[0]
    run.valid.append(
        ValidRecord(0, 10_000, repeat.event_id, repeat.session_id, "play", 0.0, 200.0, 0)
    )
    assert build(run, []).onset_offsets == {0: 400, 1: 400}


def test_served_quality_before_the_onset_and_by_version_after_it() -> None:
    result = build(make_run(PROMOTED), SIGNALS)
    quality = {(q.model, q.phase): q for q in result.quality}
    assert set(quality) == {
        ("engagement", "before onset"),
        ("engagement", "after onset, v1"),
        ("qoe", "before onset"),
        ("qoe", "after onset, v1"),
        ("qoe", "after onset, v2"),
        # v3 served 35 plays on p1 (offsets 660-796): below MIN_QUALITY_LABELS
    }
    assert MIN_QUALITY_LABELS > 35
    before, v1, v2 = (
        quality[("qoe", p)] for p in ("before onset", "after onset, v1", "after onset, v2")
    )
    assert (before.metric, before.labels) == ("MAE", 200)
    assert before.served == pytest.approx(0.001) and before.oracle == pytest.approx(0.002)
    assert v1.served == pytest.approx(0.02) and v2.served == pytest.approx(0.005)
    assert v2.gap == pytest.approx(0.003)
    assert v1.labels + v2.labels + 35 == 200
    auc = quality[("engagement", "before onset")]
    assert (auc.metric, auc.served, auc.oracle) == ("ROC AUC", 1.0, 1.0)
    assert auc.gap == 0.0


def test_the_report_text_fits_100_columns_and_says_what_happened() -> None:
    text = format_drift_run(
        build(make_run(PROMOTED), SIGNALS), scenario_label="data-drift (throttled_cdn)"
    )
    lines = text.splitlines()
    assert lines[0] == "== Drift report =="
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    assert "data-drift (throttled_cdn); onset index 800" in text
    assert "their first event was published as #796" in text
    assert "at valid offset p0 400 · p1 400" in text
    qoe0 = next(line for line in lines if line.startswith("p0   qoe"))
    assert qoe0.split() == ["p0", "qoe", "label/adwin", "+80", "+80", "v2", "+200", "-"]
    qoe1 = next(line for line in lines if line.startswith("p1   qoe"))
    assert qoe1.split()[-4:] == ["v2", "+40", "v3", "+260"]
    assert "1 detection(s) before the onset" in text
    assert "1 challenger(s) retired without winning" in text
    assert "operator    manual_promote qoe v1 (every partition)" in text
    assert "drift signalled on 2 of 2 partition(s)" in text
    assert "3 challenger(s) started · 2 promotion(s) · 1 rollback(s) · 1 false alarm(s)" in text
    assert "promoted: qoe p0 v2 (+200 events), qoe p1 v2 (+40 events)" in text
    assert "after onset, v2  0.0050 (oracle 0.0020, gap 0.0030; 105 labels)" in text


def test_no_signal_and_no_promotion_are_said_plainly() -> None:
    nothing = format_drift_run(build(make_run(), []))
    assert "NO drift signal after the onset" in nothing
    unanswered = format_drift_run(
        build(make_run(), [signal(0, 480), lifecycle(0, 480, "challenger_started")])
    )
    assert "NO promotion: no challenger beat its champion within the run" in unanswered
    data_only = format_drift_run(
        build(make_run(), [signal(0, 450, kind="data", detector="psi", feature="rtt_ms")])
    )
    assert "no challenger: only data drift was signalled" in data_only


def test_stationary_run_counts_every_detection_as_a_false_alarm() -> None:
    quiet = build(make_run(), [], onset_index=None)
    assert quiet.onset_position is None and quiet.onset_offsets == {}
    text = format_drift_run(quiet, scenario_label="stationary")
    assert "stationary: no drift in the truth" in text
    assert "0 detection(s) (as expected on a stationary stream)" in text
    assert {q.phase for q in quiet.quality} == {"whole run"}
    noisy = build(make_run(), [signal(0, 5)], onset_index=None)
    assert noisy.rows[0].false_alarms == 1
    assert "1 detection(s) (false alarms)" in format_drift_run(noisy)


def test_plot_inputs_are_built_from_the_run(tmp_path: Any) -> None:
    result = build(make_run(PROMOTED), SIGNALS)
    plotted = as_scenario_result(result, label="demo", seed=0, events=1600)
    assert plotted.onset_position == 796
    # every partition's signal with an offset, the operator's (no offset) left out
    assert len(plotted.signals) == len(SIGNALS) - 1 == len(plotted.signal_positions)
    assert (plotted.promotions, plotted.rollbacks, plotted.challengers) == (2, 1, 3)
    served = plotted.curves["served"]
    assert served.position == sorted(served.position) and served.auc[0] == 1.0
    assert "baseline" not in plotted.curves

    from streamproc.drift.plot import plot_drift_report

    path = tmp_path / "demo.png"
    plot_drift_report([plotted], str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
