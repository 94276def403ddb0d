"""The metric set follows the naming conventions and METRIC_NAMES lists all of it."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamproc import __version__
from streamproc.metrics import (
    COUNTER_NAMES,
    FORBIDDEN_LABELS,
    HISTOGRAM_NAMES,
    METRIC_NAMES,
    StreamprocMetrics,
    metric_family,
)


@pytest.fixture
def metrics() -> StreamprocMetrics:
    return StreamprocMetrics.create(CollectorRegistry())


def _touch_every_series(m: StreamprocMetrics) -> None:
    """Give every labelled metric one child so that it shows up in the exposition."""
    m.records_in.labels(topic="viewing-events").inc()
    m.records_out.labels(topic="viewing-events-valid").inc()
    m.dead_letters.labels(reason="decode_error").inc()
    m.duplicates.inc()
    m.stage_seconds.labels(stage="ingest").observe(0.01)
    m.event_to_prediction_seconds.observe(1.5)
    m.process_latency_seconds.observe(0.02)
    m.gc_pause_seconds.labels(generation="2").observe(0.03)
    m.predictions.labels(model="engagement").inc()
    m.model_quality.labels(model="engagement", version="3", metric="roc_auc", window="all").set(0.8)
    m.model_version.labels(model="engagement", partition="0").set(3)
    m.labels_resolved.labels(model="engagement").inc()
    m.drift_signals.labels(model="engagement", kind="concept").inc()
    m.snapshots_written.labels(model="engagement").inc()
    m.snapshots_refused.labels(model="engagement", reason="bad_signature").inc()
    m.snapshots_failed.labels(reason="too_large").inc()
    m.consumer_lag_records.labels("streamproc", "viewing-events", "0").set(5)
    m.consumer_lag_seconds.labels("streamproc", "viewing-events", "0").set(1.0)
    m.partition_stalled.labels("streamproc", "viewing-events", "0").set(0)
    m.lag_check_failures.inc()
    m.lag_check_timestamp.set(1.0)
    m.rebalances.inc()
    m.assigned_partitions.labels(topic="viewing-events").set(6)
    m.worker_up.set(1)


def test_every_name_has_the_prefix_and_counters_end_in_total() -> None:
    assert all(name.startswith("streamproc_") for name in METRIC_NAMES)
    assert all(name.endswith("_total") for name in COUNTER_NAMES)
    assert all(name.endswith("_seconds") for name in HISTOGRAM_NAMES)
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES)
    assert list(METRIC_NAMES) == sorted(METRIC_NAMES)


def test_registry_holds_exactly_metric_names(metrics: StreamprocMetrics) -> None:
    _touch_every_series(metrics)
    families = {f.name: f for f in metrics.registry.collect()}
    exported = set()
    for family in families.values():
        assert family.name.startswith("streamproc_")
        assert family.documentation.strip(), f"{family.name} has no help text"
        for sample in family.samples:
            assert metric_family(sample.name) is not None, sample.name
            exported.add(metric_family(sample.name))
        if family.type == "counter":
            assert family.name + "_total" in COUNTER_NAMES
        elif family.type == "histogram":
            assert family.name in HISTOGRAM_NAMES
    assert exported == set(METRIC_NAMES)


def test_no_high_cardinality_labels(metrics: StreamprocMetrics) -> None:
    _touch_every_series(metrics)
    for family in metrics.registry.collect():
        for sample in family.samples:
            assert not FORBIDDEN_LABELS & set(sample.labels), (sample.name, sample.labels)
            assert not any(re.search(r"(^|_)(user|event|session)(_|$)", k) for k in sample.labels)


def test_units_are_seconds_not_milliseconds(metrics: StreamprocMetrics) -> None:
    assert not any(re.search(r"_(ms|millis|milliseconds)(_|$)", n) for n in METRIC_NAMES)


def test_build_info_is_set_and_worker_starts_down(metrics: StreamprocMetrics) -> None:
    text = generate_latest(metrics.registry).decode()
    assert f'streamproc_build_info{{version="{__version__}"}} 1.0' in text
    assert "streamproc_worker_up 0.0" in text


def test_quality_gauge_has_a_window_label(metrics: StreamprocMetrics) -> None:
    metrics.model_quality.labels(model="qoe", version="1", metric="mae", window="recent").set(0.2)
    text = generate_latest(metrics.registry).decode()
    assert 'streamproc_model_quality{metric="mae",model="qoe",version="1",window="recent"} 0.2' in (
        text
    )


def test_a_second_create_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    StreamprocMetrics.create(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        StreamprocMetrics.create(registry)


def test_remove_partition_drops_the_lag_series(metrics: StreamprocMetrics) -> None:
    _touch_every_series(metrics)
    metrics.remove_partition("streamproc", "viewing-events", 0)
    metrics.remove_partition("streamproc", "viewing-events", 0)  # idempotent
    text = generate_latest(metrics.registry).decode()
    assert 'streamproc_consumer_lag_records{group="streamproc"' not in text
    assert 'streamproc_partition_stalled{group="streamproc"' not in text


@pytest.mark.parametrize(
    ("series", "family"),
    [
        ("streamproc_process_latency_seconds_bucket", "streamproc_process_latency_seconds"),
        ("streamproc_stage_seconds_count", "streamproc_stage_seconds"),
        ("streamproc_records_in_total", "streamproc_records_in_total"),
        ("streamproc_records_in_created", "streamproc_records_in_total"),
        ("streamproc_worker_up", "streamproc_worker_up"),
        ("streamproc_worker_up_bucket", None),
        ("streamproc_nope_total", None),
    ],
)
def test_metric_family(series: str, family: str | None) -> None:
    assert metric_family(series) == family


def test_declare_creates_zero_series(metrics: StreamprocMetrics) -> None:
    metrics.declare_model("qoe", drift_kinds=["concept"], refusal_reasons=["bad_signature"])
    metrics.declare_topics(consumed=["viewing-events"], produced=["predictions"])
    metrics.declare_dead_letter_reasons(["decode_error"])
    value = metrics.registry.get_sample_value
    assert value("streamproc_drift_signals_total", {"model": "qoe", "kind": "concept"}) == 0.0
    assert value("streamproc_predictions_total", {"model": "qoe"}) == 0.0
    assert (
        value("streamproc_snapshots_refused_total", {"model": "qoe", "reason": "bad_signature"})
        == 0.0
    )
    assert value("streamproc_records_in_total", {"topic": "viewing-events"}) == 0.0
    assert value("streamproc_records_out_total", {"topic": "predictions"}) == 0.0
    assert value("streamproc_dead_letters_total", {"reason": "decode_error"}) == 0.0
