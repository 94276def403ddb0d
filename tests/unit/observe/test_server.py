"""The HTTP endpoints, on a real socket (port 0) with a fresh registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streamproc.metrics import StreamprocMetrics
from streamproc.observe.server import StatusServer


class WorkerState:
    def __init__(self) -> None:
        self.assigned = 0
        self.broker = True


@pytest.fixture
def state() -> WorkerState:
    return WorkerState()


@pytest.fixture
def metrics() -> StreamprocMetrics:
    return StreamprocMetrics.create(CollectorRegistry())


@pytest.fixture
def server(metrics: StreamprocMetrics, state: WorkerState) -> Iterator[StatusServer]:
    srv = StatusServer(
        metrics, host="127.0.0.1", port=0, sample_interval_s=60.0,
        assigned_partitions=lambda: state.assigned, broker_ok=lambda: state.broker,
    )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(server: StatusServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_health(server: StatusServer) -> None:
    assert server.port > 0
    assert get(server, "/health") == (200, "text/plain; charset=utf-8", "ok\n")


def test_ready_turns_200_once_partitions_are_assigned(
    server: StatusServer, state: WorkerState
) -> None:
    code, ctype, body = get(server, "/ready")
    assert (code, ctype) == (503, "application/json")
    doc = json.loads(body)
    assert doc["ready"] is False
    assert doc["failing"] == ["no partitions assigned to this worker (expected > 0, got 0)"]

    state.assigned = 6
    code, _, body = get(server, "/ready")
    assert code == 200
    assert json.loads(body) == {
        "ready": True,
        "assigned_partitions": 6,
        "broker_ok": True,
        "failing": [],
    }

    state.broker = False
    code, _, body = get(server, "/ready")
    assert code == 503
    assert json.loads(body)["failing"] == ["the broker has not answered recently"]


def test_ready_reports_a_failing_callable(metrics: StreamprocMetrics) -> None:
    def boom() -> int:
        raise RuntimeError("consumer not started")

    srv = StatusServer(metrics, port=0, assigned_partitions=boom, broker_ok=lambda: True)
    ready, body = srv.readiness()
    assert not ready
    assert "cannot read the assignment: RuntimeError('consumer not started')" in body["failing"]


def test_metrics_exposition(server: StatusServer, metrics: StreamprocMetrics) -> None:
    metrics.worker_up.set(1)
    code, ctype, body = get(server, "/metrics")
    assert code == 200
    assert ctype.startswith("text/plain")
    assert "# HELP streamproc_worker_up" in body
    assert "streamproc_worker_up 1.0" in body


def test_status_page_is_self_contained(server: StatusServer) -> None:
    code, ctype, body = get(server, "/status")
    assert (code, ctype) == (200, "text/html; charset=utf-8")
    assert "<script>" in body and "status.json" in body and "setInterval(poll, 2000)" in body
    assert "<svg" in body
    assert "http://" not in body and "https://" not in body  # no CDN


def test_status_json_over_http(server: StatusServer) -> None:
    code, ctype, body = get(server, "/status.json")
    assert (code, ctype) == (200, "application/json")
    doc = json.loads(body)
    for key in ("throughput", "lag", "dead_letters", "model_quality", "drift_signals",
                "model_versions", "readiness"):  # fmt: skip
        assert key in doc


def test_status_document(metrics: StreamprocMetrics, state: WorkerState) -> None:
    # Not started: the history holds exactly the samples taken here, at chosen times.
    srv = StatusServer(metrics, port=0, assigned_partitions=lambda: 2, broker_ok=lambda: True)
    metrics.records_in.labels(topic="viewing-events").inc(100)
    metrics.dead_letters.labels(reason="decode_error").inc(3)
    metrics.model_quality.labels(
        model="engagement", version="2", metric="roc_auc", window="all"
    ).set(0.75)
    metrics.model_version.labels(model="engagement", partition="0").set(2)
    metrics.drift_signals.labels(model="engagement", kind="concept").inc()
    metrics.consumer_lag_records.labels("streamproc", "viewing-events", "1").set(42)
    metrics.partition_stalled.labels("streamproc", "viewing-events", "1").set(1)
    srv.sample(now=1000.0)
    metrics.records_in.labels(topic="viewing-events").inc(60)
    metrics.records_out.labels(topic="viewing-events-valid").inc(30)
    srv.sample(now=1030.0)

    doc = json.loads(json.dumps(srv.status()))
    assert doc["ready"] is True
    assert doc["throughput"]["in_per_s"] == pytest.approx(2.0)
    assert doc["throughput"]["out_per_s"] == pytest.approx(1.0)
    assert doc["throughput"]["series"] == [{"t": 1030.0, "in_per_s": 2.0, "out_per_s": 1.0}]
    assert doc["records_in"] == {"viewing-events": 160.0}
    assert doc["dead_letters"] == {"decode_error": 3.0}
    assert doc["lag"] == [
        {"group": "streamproc", "topic": "viewing-events", "partition": 1,
         "records": 42.0, "seconds": None, "stalled": True}
    ]  # fmt: skip
    [quality] = doc["model_quality"]
    assert quality["model"] == "engagement" and quality["value"] == 0.75
    assert quality["series"] == [[1000.0, 0.75], [1030.0, 0.75]]
    assert doc["model_versions"] == [{"model": "engagement", "partition": 0, "version": 2.0}]
    assert doc["drift_signals"] == [{"model": "engagement", "kind": "concept", "count": 1.0}]
    assert doc["drift_marks"] == []  # the signal came before the first sample: no time known


def test_drift_signals_are_marked_on_the_quality_time_axis(metrics: StreamprocMetrics) -> None:
    srv = StatusServer(metrics, port=0)
    signals = metrics.drift_signals
    srv.sample(now=100.0)
    signals.labels(model="engagement", kind="label").inc()
    signals.labels(model="qoe", kind="lifecycle").inc(2)
    srv.sample(now=105.0)
    srv.sample(now=110.0)
    signals.labels(model="qoe", kind="data").inc()
    srv.sample(now=115.0)
    assert srv.status()["drift_marks"] == [
        {"t": 105.0, "signals": 3.0},
        {"t": 115.0, "signals": 1.0},
    ]


def test_rate_uses_the_last_minute_only(metrics: StreamprocMetrics) -> None:
    srv = StatusServer(metrics, port=0)
    counter = metrics.records_in.labels(topic="viewing-events")
    for t in range(0, 181, 2):  # 10/s for two minutes, then 1/s
        srv.sample(now=float(t))
        counter.inc(10 * 2 if t < 120 else 2)
    assert srv.status()["throughput"]["in_per_s"] == pytest.approx(1.0)


def test_nan_quality_becomes_null(server: StatusServer, metrics: StreamprocMetrics) -> None:
    metrics.model_quality.labels(model="qoe", version="1", metric="roc_auc", window="all").set(
        float("nan")
    )
    server.sample()
    doc = json.loads(get(server, "/status.json")[2])
    assert doc["model_quality"][0]["value"] is None


def test_unknown_path_is_404(server: StatusServer) -> None:
    code, _, body = get(server, "/nope")
    assert code == 404
    assert "/metrics" in json.loads(body)["error"]


def test_a_taken_port_says_which(server: StatusServer, metrics: StreamprocMetrics) -> None:
    other = StatusServer(metrics, host="127.0.0.1", port=server.port)
    with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{server.port}"):
        other.start()
