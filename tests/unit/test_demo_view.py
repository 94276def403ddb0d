"""The demo's live view and end report: pure formatting, no broker."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from streamproc import demo
from streamproc.audit import IngestAudit
from streamproc.config import load_settings
from streamproc.demo import DemoReport, demo_snapshot_keys, format_end_report
from streamproc.dlq import DlqSummary
from streamproc.drift.observed import build_drift_run
from streamproc.errors import StreamprocError
from streamproc.observe.live import (
    DRIFT_ROWS,
    DriftEvent,
    LiveSnapshot,
    WorkerFigures,
    drift_table,
    format_action,
    format_drift_line,
    format_duplicates,
    format_quality,
    format_recent_quality,
    format_served,
    format_status_line,
    render_view,
    summarise_status,
    top_reasons,
)
from streamproc.simulate import Manifest


def _status(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "duplicates": 4.0,
        "dead_letters": {"decode_error": 3.0, "too_large": 1.0},
        "predictions": {"engagement": 10.0},
        "drift_signals": [{"model": "qoe", "kind": "concept", "count": 2.0}],
        "model_quality": [
            {"model": "engagement", "version": "1", "metric": "roc_auc", "window": "all",
             "value": 0.60},
            {"model": "engagement", "version": "2", "metric": "roc_auc", "window": "recent",
             "value": 0.80},
            {"model": "engagement", "version": "2", "metric": "roc_auc", "window": "all",
             "value": 0.70},
            {"model": "qoe", "version": "1", "metric": "mae", "window": "all", "value": None},
        ],
    }  # fmt: skip
    doc.update(overrides)
    return doc


def _snap(**overrides: Any) -> LiveSnapshot:
    values: dict[str, Any] = {
        "taken_at": 0.0,
        "elapsed_s": 7.4,
        "phase": "publishing",
        "published": 1000,
        "counts": {"input": 1000, "valid": 900, "dlq": 30, "predictions": 270},
        "rates": {"input": 2999.6, "valid": 2500.0, "dlq": 10.0, "predictions": 800.0},
        "lag": {"input": 60, "valid": 12},
        "dead_by_reason": {"decode_error": 20, "too_large": 10},
        "workers": WorkerFigures(expected=1),
        "urls": ("http://127.0.0.1:9100",),
    }
    values.update(overrides)
    return LiveSnapshot(**values)


def test_summarise_status_adds_counters_and_takes_the_newest_whole_run_quality() -> None:
    figures = summarise_status([_status(), _status(duplicates=1.0), None])
    assert (figures.answering, figures.expected) == (2, 3)
    assert figures.duplicates == 5.0
    assert figures.dead_letters == {"decode_error": 6.0, "too_large": 2.0}
    assert figures.predictions == {"engagement": 20.0}
    assert figures.drift_signals == 4.0
    # version 2 beats version 1, window "all" beats "recent"; a None value is skipped.
    assert figures.quality == {("engagement", "roc_auc"): pytest.approx(0.70)}


def test_summarise_status_of_no_worker() -> None:
    assert summarise_status([None, None]) == WorkerFigures(answering=0, expected=2)


def test_summarise_status_averages_quality_over_workers() -> None:
    one = _status(model_quality=[{"model": "qoe", "version": "1", "metric": "mae",
                                  "window": "all", "value": 0.2}])  # fmt: skip
    two = _status(model_quality=[{"model": "qoe", "version": "1", "metric": "mae",
                                  "window": "all", "value": 0.4}])  # fmt: skip
    assert summarise_status([one, two]).quality == {("qoe", "mae"): pytest.approx(0.3)}


def test_top_reasons_keeps_five_most_frequent() -> None:
    counts = {f"r{i}": i for i in range(8)}
    assert top_reasons(counts) == [("r7", 7), ("r6", 6), ("r5", 5), ("r4", 4), ("r3", 3)]


@pytest.mark.parametrize(
    ("figures", "model_running", "expected"),
    [
        (WorkerFigures(), True, "no worker status yet"),
        (WorkerFigures(answering=1), True, "warming up"),
        (WorkerFigures(answering=1), False, "model agent not running"),
        (
            WorkerFigures(
                answering=1,
                quality={
                    ("engagement", "roc_auc"): 0.71234,
                    ("qoe", "mae"): 0.0123,
                    ("affinity", "rmse"): 0.9,
                },
            ),
            True,
            "engagement ROC AUC 0.7123 · qoe MAE 0.0123 · affinity RMSE 0.9000",
        ),
    ],
)
def test_format_quality(figures: WorkerFigures, model_running: bool, expected: str) -> None:
    assert format_quality(figures, model_running=model_running) == expected


def test_duplicates_from_the_workers_else_estimated_else_unknown() -> None:
    assert format_duplicates(_snap(workers=WorkerFigures(answering=1, duplicates=7.0))) == "7"
    assert format_duplicates(_snap()) == "~10"  # 1000 - 60 behind - 900 - 30
    assert format_duplicates(_snap(lag={"input": None})) == "-"
    assert format_duplicates(_snap(counts={})) == "-"


def test_status_line_is_one_line_with_the_figures() -> None:
    line = format_status_line(_snap())
    assert "\n" not in line
    assert line.startswith("[7s] publishing: in 1,000 (3,000/s) valid 900 (2,500/s) dead 30")
    assert "lag in=60 valid=12" in line
    assert line.endswith("| no worker status yet")


def test_render_view_shows_topics_reasons_and_endpoints() -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(render_view(_snap(), load_settings().topics))
    text = console.export_text()
    for expected in (
        "viewing-events-valid",
        "decode_error 20 · too_large 10",
        "http://127.0.0.1:9100/status",
        "http://127.0.0.1:9100/metrics",
        "0/1 answering",
        "~10",
    ):
        assert expected in text


def test_render_view_without_the_model_agent() -> None:
    console = Console(width=120, record=True, color_system=None)
    console.print(render_view(_snap(model_running=False, lag={"input": 0}), load_settings().topics))
    assert "model agent not running" in console.export_text()


def _report(**overrides: Any) -> DemoReport:
    manifest = Manifest(seed=0, params={}, start_time_ms=0)
    manifest.counts.update(records=110, valid=100, invalid=6, duplicate=4, sessions=10)
    audit = IngestAudit(input_records=110, valid=100, dead=6, duplicates=4)
    audit.dead_by_reason.update({"decode_error": 5, "too_large": 1})
    dlq = DlqSummary(
        total=6, samples={"decode_error": [{"source": "x[0]@1", "message": "bad bytes"}]}
    )
    values: dict[str, Any] = {
        "audit": audit,
        "dlq": dlq,
        "manifest": manifest,
        "published": 110,
        "seconds": 2.0,
        "final": _snap(),
        "model_running": True,
        "models": ["engagement", "qoe", "affinity"],
        "predictions": Counter({"engagement": 10, "qoe": 10, "affinity": 10}),
        "prediction_records": 30,
    }
    values.update(overrides)
    return DemoReport(**values)


def test_end_report_balanced_with_predictions() -> None:
    text = format_end_report(_report(quality={("qoe", "mae"): 0.25}))
    assert "balanced    yes: input 110 = valid 100 + dead 6 + duplicates 4" in text
    assert "e.g. bad bytes" in text
    assert "30 records for 10 plays x 3 models" in text and "as expected" in text
    assert "qoe MAE 0.2500" in text


def test_end_report_unbalanced_and_without_the_model_agent() -> None:
    report = _report(model_running=False)
    report.audit.duplicates = 3
    text = format_end_report(report)
    assert "balanced    NO" in text
    assert "model agent not running" in text


def test_end_report_flags_missing_predictions() -> None:
    text = format_end_report(_report(predictions=Counter({"engagement": 9})))
    assert "MISSING some" in text


def test_snapshot_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = demo_snapshot_keys(tmp_path / "demo")
    path = tmp_path / "demo" / "snapshot.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert demo_snapshot_keys(tmp_path / "demo").get_secret_value() == first.get_secret_value()
    assert first.get_secret_value() not in repr(first)


def test_snapshot_key_file_with_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.key"
    path.write_text("no-colon-here\n")
    os.chmod(path, 0o600)
    with pytest.raises(StreamprocError, match=r"snapshot.key does not hold a snapshot key"):
        demo_snapshot_keys(tmp_path)


def test_end_report_says_how_to_stop_what_keeps_running() -> None:
    report = _report(left_running=["Kafka: stop it with `streamproc kafka stop --data-dir d`"])
    assert format_end_report(report).endswith(
        "left running Kafka: stop it with `streamproc kafka stop --data-dir d`"
    )


# --- drift in the live view and the end report ---------------------------------------------


def _signal(**overrides: Any) -> dict[str, Any]:
    signal: dict[str, Any] = {
        "partition": 0,
        "model": "qoe",
        "model_version": 1,
        "kind": "label",
        "detector": "adwin",
        "feature": None,
        "severity": "drift",
        "action": "none",
        "input_offset": 22_233,
        "details": {},
    }
    signal.update(overrides)
    return signal


DRIFT = (
    DriftEvent(17.2, _signal(model="engagement", kind="data", detector="psi",
                             feature="bandwidth_kbps", input_offset=17_999)),
    DriftEvent(21.0, _signal()),
    DriftEvent(21.0, _signal(kind="lifecycle", detector="response", severity="warning",
                             action="challenger_started")),
    DriftEvent(27.4, _signal(kind="lifecycle", detector="response", action="promoted",
                             model_version=2, input_offset=28_811)),
    DriftEvent(31.0, _signal(partition=None, kind="lifecycle", detector="manual",
                             action="manual_rollback", input_offset=None)),
)  # fmt: skip


def test_summarise_status_reads_served_versions_and_recent_quality() -> None:
    doc = _status(
        model_versions=[
            {"model": "qoe", "partition": 0, "version": 2.0},
            {"model": "qoe", "partition": 1, "version": 1.0},
        ],
        model_quality=[
            {"model": "qoe", "version": "1", "metric": "mae", "window": "recent", "value": 0.02},
            {"model": "qoe", "version": "2", "metric": "mae", "window": "recent", "value": 0.01},
            {"model": "qoe", "version": "2", "metric": "mae", "window": "all", "value": 0.03},
        ],
    )
    figures = summarise_status([doc, None])
    assert figures.served == {"qoe": {0: 2, 1: 1}}
    assert figures.recent == {("qoe", "mae", 1): 0.02, ("qoe", "mae", 2): 0.01}
    assert format_served(figures) == "qoe v2 p0, v1 p1"
    assert format_recent_quality(figures) == "qoe MAE v1 0.0200, v2 0.0100"


def test_recent_quality_leaves_out_versions_no_partition_serves() -> None:
    figures = WorkerFigures(
        answering=1,
        served={"qoe": {0: 2}, "engagement": {0: 1}},
        recent={
            ("qoe", "mae", 1): 0.02,
            ("qoe", "mae", 2): 0.01,
            ("engagement", "roc_auc", 1): 0.7,
        },
    )
    assert format_recent_quality(figures) == "engagement ROC AUC v1 0.7000 · qoe MAE v2 0.0100"
    assert format_served(figures) == "engagement v1 · qoe v2"
    assert format_recent_quality(WorkerFigures()) == "warming up"


def test_drift_line_is_plain_and_names_partition_model_action_and_version() -> None:
    lines = [format_drift_line(e) for e in DRIFT]
    assert lines[0] == (
        "[17s] drift signal p0 engagement v1: data/psi/bandwidth_kbps drift, action -, "
        "valid offset 17,999"
    )
    assert "p0 qoe v1: lifecycle/response warning, action challenger_started" in lines[2]
    assert "p0 qoe v2: lifecycle/response drift, action promoted, valid offset 28,811" in lines[3]
    assert lines[4].endswith(
        "all partitions qoe v1: lifecycle/manual drift, action manual_rollback"
    )
    retired = _signal(
        kind="lifecycle", detector="response", details={"event": "challenger_retired"}
    )
    assert format_action(retired) == "challenger_retired"
    assert all("\x1b" not in line and "\n" not in line for line in lines)


def _text(renderable: Any, width: int = 200) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_render_view_lists_drift_signals_as_they_arrive_within_100_columns() -> None:
    figures = WorkerFigures(
        answering=1,
        expected=1,
        served={"engagement": {0: 1}, "qoe": {0: 2}},
        recent={("qoe", "mae", 2): 0.0149},
    )
    lines = _text(render_view(_snap(drift=DRIFT, workers=figures), load_settings().topics))
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    text = "\n".join(lines)
    assert "serving         engagement v1 · qoe v2" in text
    assert "recent quality  qoe MAE v2 0.0149" in text
    assert "drift signals   5" in text
    rows = [
        line.split() for line in lines if "lifecycle/" in line or "/adwin" in line or "/psi" in line
    ]
    assert rows == [
        ["│", "17s", "p0", "engagement", "data/psi/bandwidth_kbps", "-", "v1", "│"],
        ["│", "21s", "p0", "qoe", "label/adwin", "-", "v1", "│"],
        ["│", "21s", "p0", "qoe", "lifecycle/response", "challenger_started", "v1", "│"],
        ["│", "27s", "p0", "qoe", "lifecycle/response", "promoted", "v2", "│"],
        ["│", "31s", "all", "qoe", "lifecycle/manual", "manual_rollback", "v1", "│"],
    ]


def test_render_view_keeps_the_newest_drift_signals() -> None:
    many = tuple(DriftEvent(float(i), _signal(input_offset=i)) for i in range(DRIFT_ROWS + 3))
    text = "\n".join(_text(drift_table(many)))
    assert "3 earlier signal(s) not shown" in text
    assert f"{DRIFT_ROWS + 2}s" in text and "\n   0s" not in text
    assert "none yet" in "\n".join(_text(render_view(_snap(), load_settings().topics)))
    short = "\n".join(_text(render_view(_snap(drift=DRIFT), load_settings().topics, drift_rows=2)))
    assert "3 earlier signal(s) not shown" in short and "manual_rollback" in short


class _Poller:
    """What ``_watch`` reads of a LivePoller: snapshots handed out one per step."""

    def __init__(self, snaps: list[LiveSnapshot]) -> None:
        self.settings = load_settings()
        self.lag_roles = ("input", "valid")
        self.published = 0
        self.phase = "publishing"
        self._snaps = snaps

    @property
    def latest(self) -> LiveSnapshot:
        return self._snaps.pop(0) if len(self._snaps) > 1 else self._snaps[0]


def test_without_a_terminal_the_demo_prints_each_drift_signal_once_as_a_plain_line() -> None:
    now = time.monotonic()
    publisher = SimpleNamespace(finished=threading.Event(), finished_at=now, error=None, sent=100)
    publisher.finished.set()
    caught_up = {"input": 0, "valid": 0}
    snaps = [
        _snap(drift=DRIFT[:2], taken_at=now - 1.0),  # before the last record: not done
        _snap(drift=DRIFT[:4], lag=caught_up, taken_at=now + 1.0),
    ]
    final = _snap(drift=DRIFT, lag=caught_up, phase="caught up", taken_at=now + 2.0)
    out = io.StringIO()
    console = Console(file=out, width=100)
    assert not console.is_terminal
    settings = load_settings()
    result = demo._watch(
        console,
        _Poller(snaps),  # type: ignore[arg-type]
        publisher,  # type: ignore[arg-type]
        [],
        [settings.topic_input, settings.topic_valid],
        demo.DemoOptions(),
        lambda: final,
    )
    assert result is final
    text = out.getvalue()
    assert "\x1b" not in text  # no cursor control, no colour
    drift_lines = [line for line in text.splitlines() if "drift signal" in line]
    assert drift_lines == [format_drift_line(e) for e in DRIFT]
    assert text.rstrip().splitlines()[-1].startswith("[7s] caught up:")


def test_end_report_ends_with_the_drift_report() -> None:
    run = build_drift_run(
        scenario="throttled_cdn",
        onset_index=2,
        published=["a", "b", "c", "d"],
        sessions=[],
        valid=[],
        signals=[],
    )
    text = format_end_report(_report(drift=run, scenario_label="data-drift (throttled_cdn)"))
    head, _, tail = text.partition("\n\n== Drift report ==\n")
    assert "balanced    yes" in head and "drift       0 signals (see the drift report)" in head
    assert tail.startswith("scenario    data-drift (throttled_cdn); onset index 2")
    assert "NO drift signal after the onset" in tail
    without = format_end_report(_report(model_running=False))
    assert without.endswith("== Drift report ==\nnot available: the model agent did not run")
