"""DriftMonitor: rate limiting (episodes, cool-down), warm-up, schema, data drift."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
from fastavro import parse_schema
from fastavro.validation import validate

from streamproc.drift.data import DataDriftMonitor, FeatureSpec, chi2_quantile, psi_threshold
from streamproc.drift.monitor import DriftMonitor, make_signal
from streamproc.learning.partition import LabelOut
from streamproc.records import ViewingEvent
from streamproc.testing import make_viewing_event

SCHEMA = Path(__file__).resolve().parents[3] / "schemas" / "drift_signal" / "v1.avsc"


def _labels(n: int, bad: list[tuple[int, int]], seed: int = 3) -> list[LabelOut]:
    """Labels whose served score is right (0.8, 80 % complete) except inside ``bad``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        wrong = any(a <= i < b for a, b in bad)
        y = rng.random() < 0.8
        p = 0.2 if wrong else 0.8
        out.append(LabelOut("engagement", 1, "session", f"s{i}", "u", "t", i, float(y), p, False))
    return out


def _concept(monitor: DriftMonitor, labels: list[LabelOut]) -> list[int]:
    return [
        i
        for i, lb in enumerate(labels)
        for s in monitor.update_label(lb, offset=i)
        if s["kind"] == "concept"
    ]


def test_one_signal_per_episode() -> None:
    monitor = DriftMonitor("engagement", "binary", partition=1, cooldown_labels=2000)
    # Wrong scores twice, 1,500 labels apart: within the cool-down that is one episode,
    # so the second detection is absorbed.
    labels = _labels(9000, [(3000, 3600), (4500, 9000)])
    assert _concept(monitor, labels) == [3051]
    assert monitor._concept.n_detections >= 3  # up, down, up: all seen by ADWIN


def test_a_new_episode_after_the_cooldown() -> None:
    monitor = DriftMonitor("engagement", "binary", cooldown_labels=500)
    labels = _labels(9000, [(3000, 3600), (4500, 9000)])
    assert _concept(monitor, labels) == [3051, 4555]


def test_warmup_labels_are_not_monitored() -> None:
    monitor = DriftMonitor("engagement", "binary", warmup_labels=5000)
    assert _concept(monitor, _labels(6000, [(3000, 6000)])) == []


def test_no_signal_on_a_stationary_stream() -> None:
    monitor = DriftMonitor("engagement", "binary")
    signals = [s for lb in _labels(30000, []) for s in monitor.update_label(lb)]
    assert signals == []


def test_signals_match_the_avro_schema() -> None:
    schema = parse_schema(orjson.loads(SCHEMA.read_bytes()))
    monitor = DriftMonitor("engagement", "binary", partition=2)
    signals = [
        s
        for i, lb in enumerate(_labels(6000, [(3000, 6000)]))
        for s in monitor.update_label(lb, offset=i)
    ]
    signals.append(
        make_signal(
            model="qoe",
            model_version=3,
            partition=None,
            detector="response",
            kind="lifecycle",
            severity="drift",
            detected_at=5,
            action="promoted",
            details={"from_version": "2", "to_version": "3"},
        )
    )
    assert signals
    for signal in signals:
        assert validate(signal, schema)
    assert signals[0]["input_offset"] == 3051


def test_signal_ids_are_reproducible() -> None:
    def run() -> list[str]:
        monitor = DriftMonitor("engagement", "binary", partition=2)
        labels = _labels(6000, [(3000, 6000)])
        return [
            s["signal_id"]
            for i, lb in enumerate(labels)
            for s in monitor.update_label(lb, offset=i)
        ]

    first = run()
    assert first and first == run()


def test_label_drift_on_the_completion_rate() -> None:
    rng = random.Random(5)
    monitor = DriftMonitor("engagement", "binary")
    kinds = []
    for i in range(8000):
        rate = 0.5 if i < 4000 else 0.25
        y = float(rng.random() < rate)
        label = LabelOut("engagement", 1, "session", f"s{i}", "u", "t", i, y, rate, False)
        kinds += [(i, s["kind"]) for s in monitor.update_label(label)]
    assert kinds == [(4235, "label")]


def _play(i: int, bandwidth: float) -> ViewingEvent:
    event = make_viewing_event(event_time=i, event_type="play", event_id=f"e{i}")
    event["network"]["bandwidth_kbps"] = bandwidth
    return event


def test_data_drift_signals_once_and_rebaselines() -> None:
    rng = random.Random(11)
    monitor = DriftMonitor(
        "engagement",
        "binary",
        partition=0,
        data=DataDriftMonitor(reference_size=500, recent_size=200, check_every=50),
        cooldown_events=100_000,
    )
    hits = []
    for i in range(6000):
        median = 20_000.0 if i < 3000 else 8_000.0
        event = _play(i, median * rng.lognormvariate(0.0, 0.5))
        hits += [
            (i, s["feature"], s["detector"])
            for s in monitor.update_event(event, version=1, offset=i)
        ]
    assert hits == [(3149, "bandwidth_kbps", "psi")]


def test_data_drift_quiet_on_iid_inputs() -> None:
    rng = random.Random(12)
    data = DataDriftMonitor(reference_size=500, recent_size=200, check_every=50)
    events = [_play(i, 20_000.0 * rng.lognormvariate(0.0, 0.5)) for i in range(20000)]
    assert [r for e in events for r in data.update(e)] == []
    assert 0.0 < data.max_ratio["bandwidth_kbps"] < 1.0


def test_threshold_from_the_false_alarm_rate() -> None:
    # 10 bins, alpha 1e-6 per check, n = 1000 and m = 300: (1/n + 1/m) chi2_9(1 - 1e-6).
    assert round(chi2_quantile(1 - 1e-6, 9), 2) == 45.97
    assert round(psi_threshold(1000, 300, 10, 1e-6), 4) == round(45.97 * (1 / 1000 + 1 / 300), 4)


def _typed(i: int, kind: str) -> ViewingEvent:
    return make_viewing_event(event_time=i, event_type=kind, event_id=f"e{i}")


def test_event_type_mix_ignores_sessions_starting_and_ending() -> None:
    # The share of plays and stops swings as sessions start and end (the start and the end of
    # a stream); the in-session mix (rebuffers, bitrate changes, pauses, seeks) stays put.
    rng = random.Random(13)
    data = DataDriftMonitor(reference_size=500, recent_size=200, check_every=50)
    hits = []
    for i in range(6000):
        lifecycle_share = 0.6 if i < 1500 else 0.1
        if rng.random() < lifecycle_share:
            kind = rng.choice(["play", "stop", "complete", "rating"])
        else:
            kind = rng.choices(["rebuffer", "bitrate_change", "pause", "seek"], [5, 2, 2, 1])[0]
        hits += [r.feature for r in data.update(_typed(i, kind))]
    assert hits == []


def test_event_type_mix_signals_more_rebuffers() -> None:
    rng = random.Random(14)
    data = DataDriftMonitor(reference_size=500, recent_size=200, check_every=50)
    hits = []
    for i in range(4000):
        weights = [5, 2, 2, 1] if i < 2000 else [8, 4, 0.2, 0.1]
        kind = rng.choices(["rebuffer", "bitrate_change", "pause", "seek"], weights)[0]
        hits += [(i, r.feature) for r in data.update(_typed(i, kind))]
    assert hits and hits[0][1] == "event_type" and 2000 < hits[0][0] < 2400, hits[:3]


def test_event_type_values_no_longer_watched_are_dropped_on_import() -> None:
    # A snapshot from before the in-session mix held plays and stops in its samples.
    source = DataDriftMonitor(
        [FeatureSpec("event_type", lambda e: e["event_type"], categorical=True, plays_only=False)]
    )
    for i, kind in enumerate(["play", "rebuffer", "stop", "pause"] * 50):
        source.update(_typed(i, kind))
    restored = DataDriftMonitor()
    restored.import_state(source.export_state())
    kept = restored.export_state()["features"]["event_type"]["reference"]
    assert sorted(set(kept)) == ["pause", "rebuffer"] and len(kept) == 100
