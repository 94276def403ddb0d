"""The memory soak's pure parts: checkpoints, verdict, rendering, options, feeder (no broker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from benchmarks.harness import BenchOptions
from benchmarks.pipeline import measurement_settings
from benchmarks.preload import BenchRecord, build_workload
from benchmarks.report import write_results
from benchmarks.soak import (
    FLAT_TOLERANCE,
    Feeder,
    SoakTracker,
    _overrides,
    accounting_checks,
    interval_levels,
    render_checkpoints,
    render_levels,
    render_soak,
    render_soak_markdown,
    render_summary,
    simulated_chunks,
    summarize_soak,
)
from streamproc.cli import root
from streamproc.config import Settings, load_settings
from streamproc.errors import ConfigError

MB = 1_000_000


# -- checkpoints ---------------------------------------------------------------------------------


def test_a_checkpoint_each_time_a_multiple_is_crossed() -> None:
    t = SoakTracker(every=1000, events=4000)
    assert t.marks == [1000, 2000, 3000, 4000]
    assert t.observe(0, 100 * MB, 0.0) == []
    assert t.observe(999, 120 * MB, 2.0) == []
    (first,) = t.observe(1010, 110 * MB, 4.0)
    assert (first.mark, first.processed, first.rss_bytes, first.elapsed_s) == (
        1000,
        1010,
        110 * MB,
        4.0,
    )
    assert first.max_rss_bytes == 120 * MB  # the largest sample so far, not this one
    assert t.observe(1990, 130 * MB, 6.0) == []  # no new multiple: no checkpoint
    assert [c.mark for c in t.observe(2000, 125 * MB, 8.0)] == [2000]  # exactly on the mark
    assert t.checkpoints[-1].max_rss_bytes == 130 * MB
    assert len(t.samples) == 5


def test_a_sample_that_jumps_over_two_multiples_records_both() -> None:
    t = SoakTracker(every=1000, events=5000)
    t.observe(1500, 100 * MB, 3.0)
    jumped = t.observe(3700, 140 * MB, 9.0)
    assert [c.mark for c in jumped] == [2000, 3000]
    assert {(c.processed, c.rss_bytes, c.max_rss_bytes, c.elapsed_s) for c in jumped} == {
        (3700, 140 * MB, 140 * MB, 9.0)
    }
    assert [c.mark for c in t.checkpoints] == [1000, 2000, 3000]
    assert t.next_mark == 4000


def test_the_end_is_a_checkpoint_when_it_is_not_a_multiple() -> None:
    t = SoakTracker(every=1000, events=2500)
    assert t.marks == [1000, 2000, 2500]
    assert [c.mark for c in t.observe(2500, 100 * MB, 5.0)] == [1000, 2000, 2500]
    assert t.next_mark is None
    assert t.observe(2500, 100 * MB, 7.0) == []  # never twice


def test_samples_keep_the_extra_fields() -> None:
    t = SoakTracker(every=10, events=20)
    t.observe(5, 1 * MB, 1.234, scored=4, produced=20)
    assert t.samples == [
        {"elapsed_s": 1.23, "processed": 5, "rss_bytes": MB, "scored": 4, "produced": 20}
    ]


# -- the verdict ---------------------------------------------------------------------------------


def _cps(*rss_mb: float, every: int = 200_000) -> list[dict[str, Any]]:
    return [
        {
            "mark": every * (i + 1),
            "processed": every * (i + 1) + 123,
            "rss_bytes": int(r * MB),
            "max_rss_bytes": int(max(rss_mb[: i + 1]) * MB),
            "elapsed_s": 57.0 * (i + 1),
        }
        for i, r in enumerate(rss_mb)
    ]


def test_flat_when_every_checkpoint_is_within_ten_percent_of_the_first() -> None:
    s = summarize_soak(
        _cps(300, 320, 329, 310), events=800_000, elapsed_s=200.0, peak_rss_bytes=340 * MB
    )
    assert s["flat"] is True
    assert (s["first_mark"], s["last_mark"]) == (200_000, 800_000)
    assert (s["rss_first_bytes"], s["rss_last_bytes"]) == (300 * MB, 310 * MB)
    assert s["ratio"] == pytest.approx(310 / 300, abs=1e-4)
    assert s["max_change_pct"] == pytest.approx(9.67, abs=0.01)
    assert s["events_per_s"] == 4000.0
    assert s["tolerance_pct"] == FLAT_TOLERANCE * 100


def test_not_flat_when_a_checkpoint_in_the_middle_is_too_high() -> None:
    # the end is back within 10 %, but the hump in between is not
    s = summarize_soak(_cps(300, 340, 305), events=600_000, elapsed_s=1.0, peak_rss_bytes=None)
    assert s["ratio"] == pytest.approx(1.0167, abs=1e-4)
    assert s["flat"] is False


def test_not_flat_when_it_grows_or_falls_by_more_than_ten_percent() -> None:
    grows = summarize_soak(_cps(300, 331), events=400_000, elapsed_s=1.0, peak_rss_bytes=None)
    assert grows["flat"] is False
    falls = summarize_soak(_cps(300, 269), events=400_000, elapsed_s=1.0, peak_rss_bytes=None)
    assert falls["flat"] is False and falls["min_change_pct"] == pytest.approx(-10.33, abs=0.01)
    exactly = summarize_soak(_cps(300, 330), events=400_000, elapsed_s=1.0, peak_rss_bytes=None)
    assert exactly["flat"] is True


def test_no_verdict_without_two_checkpoints() -> None:
    assert summarize_soak(_cps(300), events=1, elapsed_s=None, peak_rss_bytes=None)["flat"] is None
    empty = summarize_soak([], events=1, elapsed_s=0.0, peak_rss_bytes=None)
    assert empty["flat"] is None and empty["ratio"] is None and empty["events_per_s"] is None


def _samples(*points: tuple[int, float]) -> list[dict[str, Any]]:
    return [{"processed": p, "rss_bytes": int(r * MB), "elapsed_s": 0.0} for p, r in points]


def test_the_level_of_each_interval_is_the_median_of_its_samples() -> None:
    samples = _samples(
        (0, 120), (150_000, 250),  # before the first checkpoint: left out
        (200_000, 280), (260_000, 330), (350_000, 282),  # a 2-s spike in the first interval
        (420_000, 290), (500_000, 300), (590_000, 295),
        (610_000, 305), (700_000, 500), (800_000, 301),  # the end counts in the last one
    )  # fmt: skip
    levels = interval_levels(samples, every=200_000, events=800_000)
    assert [(lv["start"], lv["end"], lv["samples"]) for lv in levels] == [
        (200_000, 400_000, 3),
        (400_000, 600_000, 3),
        (600_000, 800_000, 3),
    ]
    assert [lv["median_rss_bytes"] for lv in levels] == [282 * MB, 295 * MB, 305 * MB]
    assert (levels[0]["min_rss_bytes"], levels[0]["max_rss_bytes"]) == (280 * MB, 330 * MB)


def test_intervals_without_samples_are_left_out_and_one_interval_has_no_levels() -> None:
    samples = _samples((210_000, 280), (650_000, 300))
    levels = interval_levels(samples, every=200_000, events=800_000)
    assert [lv["start"] for lv in levels] == [200_000, 600_000]
    assert interval_levels(samples, every=200_000, events=200_000) == []


def test_the_levels_are_information_beside_the_verdict() -> None:
    levels = interval_levels(
        _samples((200_000, 280), (300_000, 282), (400_000, 290), (500_000, 306), (600_000, 300)),
        every=200_000,
        events=600_000,
    )
    # the checkpoints (one sample each) are not within 10 %, the interval medians are
    s = summarize_soak(
        _cps(280, 310, 300), events=600_000, elapsed_s=1.0, peak_rss_bytes=None, levels=levels
    )
    assert s["flat"] is False
    assert (s["level_first_bytes"], s["level_last_bytes"]) == (281 * MB, 300 * MB)
    assert s["level_max_change_pct"] == pytest.approx(6.76, abs=0.01)
    assert s["levels_within"] is True
    text = render_summary(s)
    assert "| flat within 10 % (every checkpoint within ±10 % of the first) | no |" in text
    assert "| level: median RSS of the first and the last interval | 281.0 → 300.0 MB |" in text
    assert "(information; the verdict is the checkpoints') | yes (largest change +6.8 %) |" in text
    falls = summarize_soak(
        _cps(300, 300),
        events=400_000,
        elapsed_s=1.0,
        peak_rss_bytes=None,
        levels=[
            {"median_rss_bytes": 300 * MB},
            {"median_rss_bytes": 320 * MB},
            {"median_rss_bytes": 250 * MB},
        ],
    )
    assert falls["level_max_change_pct"] == pytest.approx(-16.67, abs=0.01)
    assert falls["levels_within"] is False
    none = summarize_soak(_cps(300, 300), events=400_000, elapsed_s=1.0, peak_rss_bytes=None)
    assert none["level_max_change_pct"] is None and none["levels_within"] is None
    assert "level:" not in render_summary(none)


def test_the_level_table() -> None:
    def level(start: int, samples: int, median: int, low: int, high: int) -> dict[str, Any]:
        return {
            "start": start,
            "end": start + 200_000,
            "samples": samples,
            "median_rss_bytes": median * MB,
            "min_rss_bytes": low * MB,
            "max_rss_bytes": high * MB,
        }

    table = render_levels(
        [level(200_000, 9, 280, 266, 300), level(400_000, 8, 266, 250, 281)]
    ).splitlines()
    assert table[0] == (
        "| events processed | samples | median RSS MB | change vs first | lowest - highest MB |"
    )
    assert table[2] == "| 200,000 - 400,000 | 9 | 280.0 | +0.0 % | 266.0 - 300.0 |"
    assert table[3] == "| 400,000 - 600,000 | 8 | 266.0 | -5.0 % | 250.0 - 281.0 |"


def test_accounting_checks() -> None:
    checks = accounting_checks(
        {"input": 100, "valid": 95, "dead_letters": 3}, {"input": 100, "valid": 96, "plays": 0}
    )
    assert [c["ok"] for c in checks] == [True, False, True]
    assert checks[1] == {"what": "soak: valid", "expected": 96, "found": 95, "ok": False}


# -- rendering -----------------------------------------------------------------------------------


def test_the_checkpoint_table() -> None:
    table = render_checkpoints(_cps(250, 262.5, 240)).splitlines()
    assert table[0].startswith("| events processed | sampled at | RSS MB | change vs first |")
    assert table[2] == "| 200,000 | 200,123 | 250.0 | +0.0 % | 250.0 | 57.0 |"
    assert table[3] == "| 400,000 | 400,123 | 262.5 | +5.0 % | 262.5 | 114.0 |"
    assert table[4] == "| 600,000 | 600,123 | 240.0 | -4.0 % | 262.5 | 171.0 |"


def test_the_summary_table() -> None:
    s = summarize_soak(
        _cps(300, 400), events=400_000, elapsed_s=125.0, peak_rss_bytes=int(412.3 * MB)
    )
    text = render_summary(s)
    assert "| RSS at 200,000 events | 300.0 MB |" in text
    assert "| RSS at 400,000 events | 400.0 MB |" in text
    assert "| ratio | 1.333 |" in text
    assert "| flat within 10 % (every checkpoint within ±10 % of the first) | no |" in text
    assert "| largest change vs first | +33.3 % |" in text
    assert "| peak RSS (VmHWM) | 412.3 MB |" in text
    assert "| elapsed (first record produced to the last processed) | 125.0 s |" in text
    assert "| events/s | 3,200 |" in text
    falls = render_summary(
        summarize_soak(_cps(300, 303, 240), events=3, elapsed_s=1.0, peak_rss_bytes=None)
    )
    assert "| largest change vs first | -20.0 % |" in falls
    assert "fewer than 2 checkpoints" in render_summary(
        summarize_soak(_cps(300), events=1, elapsed_s=1.0, peak_rss_bytes=None)
    )


def _result() -> dict[str, Any]:
    cps = _cps(300, 310)
    levels = interval_levels(
        _samples((200_000, 300), (300_000, 305), (400_000, 310)), every=200_000, events=400_000
    )
    return {
        "kind": "soak",
        "command": "streamproc bench --soak 400000",
        "started_at": "2026-11-25T10:00:00+00:00",
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "ram_bytes": 24 * 2**30, "versions": {}},
        "load_average_end": [1.0, 1.0, 1.0],
        "settings": {"events": 400_000, "every": 200_000, "dedupe_max_ids": 200_000},
        "soak": {
            "checkpoints": cps,
            "levels": levels,
            "summary": summarize_soak(
                cps, events=400_000, elapsed_s=100.0, peak_rss_bytes=None, levels=levels
            ),
        },
        "checks": accounting_checks({"input": 400_000}, {"input": 400_000, "valid": 1}),
        "figures": [],
    }


def test_the_report_and_the_files(tmp_path: Path) -> None:
    result = _result()
    printed = render_soak(result)
    assert printed.startswith("| events processed |")
    assert "| 200,000 - 400,000 | 3 | 305.0 | +0.0 % | 300.0 - 310.0 |" in printed
    assert "| flat within 10 % (every checkpoint within ±10 % of the first) | yes |" in printed
    md = render_soak_markdown(result)
    assert md.startswith("# streamproc bench --soak — 2026-11-25T10:00:00+00:00")
    assert "Command: `streamproc bench --soak 400000`" in md
    assert "dedupe_max_ids=200000" in md
    assert printed in md
    assert "Accounting: 1 of 2 checks passed:" in md
    assert "- soak: valid: expected 1, found 0" in md
    written = write_results(tmp_path, result, render=render_soak_markdown)
    assert json.loads(written[0].read_text())["soak"]["checkpoints"][1]["rss_bytes"] == 310 * MB
    assert written[1].read_text() == md


# -- options -------------------------------------------------------------------------------------


def test_the_soak_needs_two_checkpoints() -> None:
    with pytest.raises(ConfigError, match=r"2 x 200,000 = 400,000\), got 399,999"):
        BenchOptions(soak_events=399_999)
    with pytest.raises(ConfigError, match="--soak-every must be at least 1"):
        BenchOptions(soak_events=10, soak_every=0)
    assert BenchOptions(soak_events=100_000, soak_every=50_000).soak_every == 50_000
    assert BenchOptions().soak_events is None  # the throughput bench, as before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--soak", "100000"], "--soak must be at least 2 x --soak-every (2 x 200,000"),
        (["--soak", "100000", "--soak-every", "60000"], "got 100,000"),
        (["--soak-every", "50000"], "--soak-every needs --soak N"),
        (["--soak", "400000", "--runs", "2", "--skip-latency"], "leave out --runs, --skip-latency"),
        (["--soak", "400000", "--soak-every", "10"], "10 is not in the range x>=1000"),
    ],
)
def test_bad_soak_options_are_usage_errors(
    args: list[str], message: str, settings: Settings
) -> None:
    result = CliRunner().invoke(root, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_help_describes_the_soak() -> None:
    result = CliRunner().invoke(root, ["bench", "--help"])
    assert result.exit_code == 0
    assert "--soak N" in result.output and "--soak-every K" in result.output
    assert f"default: {BenchOptions().soak_every}" in result.output


# -- the input: chunks and back-pressure ---------------------------------------------------------


def test_the_chunks_are_the_workload_in_pieces(settings: Settings) -> None:
    events = 2500
    chunks, stats = simulated_chunks(settings, events, seed=4, chunk=1000)
    pieces = list(chunks)
    assert [len(p) for p in pieces] == [1000, 1000, 500]
    streamed = [r for p in pieces for r in p]
    workload = build_workload(settings, events, seed=4)
    # the values hold event times relative to now, so compare what does not depend on the clock
    assert [(r.key, r.event_id, r.kind, r.play) for r in streamed] == [
        (r.key, r.event_id, r.kind, r.play) for r in workload.records
    ]
    assert stats.kinds == dict(workload.kinds)
    assert stats.plays == workload.plays > 0


def _fake_chunks(sizes: list[int]) -> Iterator[list[BenchRecord]]:
    for n in sizes:
        yield [BenchRecord(b"k", b"v", None, "valid", False)] * n


def test_the_feeder_keeps_the_backlog_bounded() -> None:
    state = {"processed": 0}
    in_flight_after_load: list[int] = []
    feeder: Feeder

    def load(batch: list[BenchRecord]) -> None:
        in_flight_after_load.append(feeder.produced + len(batch) - state["processed"])

    def processed() -> int:  # the worker consumes 7 records per look
        state["processed"] = min(state["processed"] + 7, feeder.produced)
        return state["processed"]

    feeder = Feeder(_fake_chunks([40, 40, 40, 40, 15]), load, processed, max_in_flight=100)
    feeder.poll_s = 0.001
    feeder.start()
    feeder.join(timeout=10)
    assert feeder.finished and feeder.error is None
    assert feeder.produced == 175
    assert feeder.started_at is not None
    assert len(in_flight_after_load) == 5
    assert max(in_flight_after_load) <= 100
    assert feeder.most_in_flight <= 100


def test_the_feeder_stops_and_reports_errors() -> None:
    waiting = Feeder(_fake_chunks([50, 50]), lambda _b: None, lambda: 0, max_in_flight=60)
    waiting.poll_s = 0.001
    waiting.start()
    waiting.stop()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert waiting.produced == 50 and not waiting.finished  # the second chunk never went

    def broken(_batch: list[BenchRecord]) -> None:
        raise RuntimeError("broker gone")

    failing = Feeder(_fake_chunks([5]), broken, lambda: 0)
    failing.start()
    failing.join(timeout=10)
    assert isinstance(failing.error, RuntimeError) and not failing.finished


def test_settings_from_the_environment_reach_the_worker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMPROC_DEDUPE_WINDOW_S", "600")
    monkeypatch.setenv("STREAMPROC_SASL_PASSWORD", "not-shown")
    monkeypatch.setenv("STREAMPROC_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("STREAMPROC_SASL_USERNAME", "bench")
    given = load_settings()
    env = measurement_settings(given, "bench1-soak").to_env()  # what WorkerProcess passes on
    assert env["STREAMPROC_DEDUPE_WINDOW_S"] == "600.0"
    assert env["STREAMPROC_APP_ID"] == "bench1-soak-streamproc"
    shown = _overrides(given)
    assert shown["dedupe_window_s"] == "600.0"
    assert "sasl_password" not in shown  # secrets stay out of the results
