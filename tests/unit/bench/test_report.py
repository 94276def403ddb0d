"""Figures, the Markdown report and the result files, from plain data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import build_figures
from benchmarks.report import (
    figure,
    parse_cpu_model,
    parse_mem_total_bytes,
    render_breakdown,
    render_figures,
    render_markdown,
    render_profile,
    write_results,
)


def _run(
    tp1: float, tp2: float, ref: float, p50: float, rss: int, latency: bool = True
) -> dict[str, Any]:
    cpu = {"worker-1": 20.0, "broker-1": 2.0, "harness": 0.5, "others": 3.0, "wall": 10.0}
    return {
        "pipeline": {
            "1": {
                "throughput_eps": tp1,
                "peak_rss_bytes": [rss],
                "cpu_s": cpu,
                "worker_cpu_us_per_event": 1000.0,
                "broker_cpu_us_per_event": 100.0,
            },
            "2": {
                "throughput_eps": tp2,
                "peak_rss_bytes": [rss, rss + 10_000_000],
                "cpu_s": cpu,
                "worker_cpu_us_per_event": 1100.0,
                "broker_cpu_us_per_event": 90.0,
            },
        },
        "reference": {
            "throughput_eps": ref,
            "peak_rss_bytes": 150_000_000,
            "cpu_us_per_event": 120.0,
            "events": 1000,
            "broker_cpu_s": {"broker-1": 0.02, "others": 1.0, "wall": 2.0},
        },
        "latency": (
            [
                {
                    "latency_ms": {"p50": p50, "p95": 2 * p50, "p99": 3 * p50},
                    "worker_cpu_us_per_event": 2000.0,
                },
                {"latency_ms": {"p50": 2 * p50, "p95": 4 * p50, "p99": 6 * p50}},
            ]
            if latency
            else []
        ),
    }


def _by_key(figures: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in figures}


def test_build_figures_medians_ratios_and_units() -> None:
    runs = [
        _run(1000, 1500, 8000, 100, 200_000_000),
        _run(900, 1400, 9000, 120, 210_000_000),
        _run(1100, 1300, 10000, 80, 190_000_000),
    ]
    figs = _by_key(build_figures(runs, (1, 2), (0.5, 0.8), {0.5: 500.0, 0.8: 800.0}))
    assert figs["throughput_1"]["median"] == 1000
    assert (figs["throughput_1"]["min"], figs["throughput_1"]["max"]) == (900, 1100)
    assert figs["reference"]["median"] == 9000
    # the ratio is taken per run, then summarised: median of 1/8, 1/10, 1.1/10
    assert figs["ratio_1"]["median"] == pytest.approx(0.11)
    assert figs["speedup_2_1"]["values"] == pytest.approx([1.5, 1400 / 900, 1300 / 1100])
    assert figs["latency_50_p50"]["median"] == 100
    assert figs["latency_80_p99"]["median"] == 600
    assert "500 events/s" in figs["latency_50_p50"]["label"]
    assert figs["latency_50_worker_cpu"]["median"] == 2000.0
    assert "latency_80_worker_cpu" not in figs  # not measured in these runs
    assert figs["rss_2"]["median"] == pytest.approx(210.0)  # the largest worker, MB
    assert figs["rss_reference"]["median"] == pytest.approx(150.0)
    assert figs["broker_cpu_reference"]["median"] == pytest.approx(20.0)  # 0.02 s / 1000
    assert figs["others_1"]["median"] == pytest.approx(0.3)  # 3 s over 10 s of wall
    assert all(f["runs"] == 3 for f in figs.values())


def test_build_figures_without_latency_and_reference() -> None:
    runs = [_run(1000, 1500, 0, 0, 1, latency=False)]
    for run in runs:
        run["reference"] = None
    figs = _by_key(build_figures(runs, (1, 2), (0.5, 0.8), None))
    assert "reference" not in figs and "ratio_1" not in figs
    assert not any(k.startswith("latency") for k in figs)
    assert figs["throughput_2"]["median"] == 1500


def test_render_figures_table() -> None:
    row = figure("ratio_1", "pipeline / reference", "x", [0.1234, 0.2, None], digits=2)
    assert row is not None and row["runs"] == 2
    assert figure("x", "never measured", "ms", [None]) is None
    table = render_figures([row])
    assert table.splitlines()[2] == "| pipeline / reference | 0.16 | 0.12 - 0.20 | x | 2 |"


def test_render_breakdown_shows_the_unexplained_rest() -> None:
    breakdown = {
        "processing_us_per_event": 150.0,
        "sends_per_event": {"valid": 1.0, "predictions": 0.3},
        "steps": [
            {"stage": "ingest", "name": "decode", "per_event_us": 20.0, "per_call_us": 20.0,
             "calls": 100},
            {"stage": "kafka", "name": "Faust topic.send", "per_event_us": None,
             "per_call_us": 100.0, "calls": 100},
            {"stage": "kafka", "name": "confluent-kafka produce", "per_event_us": None,
             "per_call_us": 5.0, "calls": 100},
            {"stage": "kafka", "name": "confluent-kafka consume", "per_event_us": None,
             "per_call_us": 2.0, "calls": 100},
        ],
    }  # fmt: skip
    text = render_breakdown(breakdown, worker_cpu_us=1000.0)
    assert "| ingest | decode | 20.0 | 20.0 | 100 |" in text
    assert "| kafka | Faust topic.send | - | 100.0 | 100 |" in text
    assert "1.30 per input event x 100.0 µs | 130.0" in text
    assert "1.30 x 5.0 µs + consume 2.0 µs | 8.5" in text
    assert "**850.0**" in text  # 1000 measured - 150 in process


def test_render_profile() -> None:
    profile = {
        "worker_cpu_us_per_event": 800.0,
        "steps": [{"step": "aiokafka producer", "samples": 50, "share": 0.25}],
    }
    assert "| aiokafka producer | 50 | 25.0% | 200.0 |" in render_profile(profile)


def test_machine_text_parsers() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n"
    assert parse_cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert parse_cpu_model("processor : 0\n") is None
    assert parse_mem_total_bytes("MemTotal:        2048 kB\n") == 2048 * 1024
    assert parse_mem_total_bytes("MemFree: 1 kB\n") is None


def test_markdown_report_and_files(tmp_path: Path) -> None:
    runs = [_run(1000, 1500, 8000, 100, 200_000_000)]
    result = {
        "command": "streamproc bench --runs 1",
        "started_at": "2026-01-01T00:00:00+00:00",
        "machine": {
            "cores": 2,
            "cpu_model": "Test CPU",
            "ram_bytes": 8 * 2**30,
            "versions": {"river": "0.26.1"},
        },
        "settings": {"events": 1000, "kafka_version": "4.0.0"},
        "figures": build_figures(runs, (1, 2), (0.5, 0.8), {0.5: 500.0, 0.8: 800.0}),
        "checks": [
            {"what": "run 1: valid", "expected": 10, "found": 10, "ok": True},
            {"what": "run 1: predictions", "expected": 30, "found": 27, "ok": False},
        ],
        "breakdown": None,
        "profile": None,
    }
    text = render_markdown(result)
    assert "Command: `streamproc bench --runs 1`" in text
    assert "2 cores (Test CPU), 8.0 GiB RAM" in text and "Kafka 4.0.0" in text
    assert "| throughput, 1 worker | 1,000 |" in text
    assert "1 of 2 checks passed" in text
    assert "- run 1: predictions: expected 30, found 27" in text
    json_copy = tmp_path / "copy" / "bench.json"
    written = write_results(tmp_path / "out", result, json_path=json_copy)
    assert [p.name for p in written] == ["results.json", "results.md", "bench.json"]
    assert json.loads(written[0].read_text())["figures"] == result["figures"]
    assert json.loads(json_copy.read_text()) == json.loads(written[0].read_text())
    assert written[1].read_text() == text
