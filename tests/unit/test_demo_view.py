"""The demo's live view and end report: pure formatting, no broker."""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from streamproc.audit import IngestAudit
from streamproc.config import load_settings
from streamproc.demo import DemoReport, demo_snapshot_keys, format_end_report
from streamproc.dlq import DlqSummary
from streamproc.errors import StreamprocError
from streamproc.observe.live import (
    LiveSnapshot,
    WorkerFigures,
    format_duplicates,
    format_quality,
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
