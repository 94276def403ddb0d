"""The worker's HTTP endpoints: metrics, health, readiness and a status page.

- ``/metrics``      Prometheus text exposition of the worker's registry.
- ``/health``       200 ``ok`` while the process is alive (a liveness probe).
- ``/ready``        200 when the worker has partitions assigned *and* the broker answered
  recently; else 503 with a JSON body naming the failing conditions (a readiness probe).
- ``/status.json``  a snapshot for people: events/s in and out over the last minute, lag per
  partition, dead letters by reason, model quality (with its recent history), drift signals,
  model versions.
- ``/status``       a self-contained HTML page (inline JavaScript and SVG; no CDN, no build
  step) that polls ``/status.json`` every 2 s.

Why the standard library's ``ThreadingHTTPServer`` in a thread, not ``aiohttp.web`` on the
worker's loop: a worker spends its loop on CPU-bound batches (decoding, River's
``learn_one``), and a scrape or probe served from that loop would wait for the batch to end,
so Prometheus would see timeouts exactly when the worker is busiest. A thread answers
regardless (the GIL is released often enough; prometheus-client's metrics are thread-safe and
its own ``start_http_server`` works this way). It also needs no event loop at all, so the CLI
and tests use the same server, and no extra dependency. The callables this server is given
(``assigned_partitions``, ``broker_ok``) are therefore called from the server thread and must
only read state.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamproc import __version__
from streamproc.metrics import StreamprocMetrics

__all__ = ["StatusServer"]

logger = logging.getLogger(__name__)

_RATE_WINDOW_S = 60.0
#: (model, version, metric, window) of one model-quality series.
_QualityKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class _Sample:
    """What the sampler reads from the registry at one moment."""

    t: float  # unix time, seconds
    records_in: float  # sum over topics
    records_out: float
    quality: dict[_QualityKey, float] = field(default_factory=dict)
    drift_signals: float = 0.0  # sum over models and kinds


def _read_registry(metrics: StreamprocMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] for every series in the registry."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as ``None``: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _total(series: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in series.get(name, []))


class StatusServer:
    """Serve the worker's endpoints from a background thread.

    Parameters
    ----------
    metrics
        The registry to expose and read the status from.
    host, port
        Where to listen (``Settings.metrics_host`` / ``metrics_port``); port 0 picks a free
        one (see :attr:`port` after :meth:`start`).
    assigned_partitions
        How many partitions the worker has assigned now (for ``/ready``).
    broker_ok
        Whether the broker answered recently (for ``/ready``; e.g. ``LagMonitor.broker_ok``).
    sample_interval_s
        How often the registry is sampled for the throughput and quality history.
    history_s
        How much history ``/status.json`` keeps, seconds.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry
    >>> server = StatusServer(StreamprocMetrics.create(CollectorRegistry()), port=0)
    >>> server.start()
    >>> server.port > 0
    True
    >>> server.stop()
    """

    def __init__(
        self,
        metrics: StreamprocMetrics,
        *,
        host: str = "127.0.0.1",
        port: int = 9100,
        assigned_partitions: Callable[[], int] = lambda: 0,
        broker_ok: Callable[[], bool] = lambda: False,
        sample_interval_s: float = 2.0,
        history_s: float = 600.0,
    ) -> None:
        if sample_interval_s <= 0:
            raise ValueError(f"sample_interval_s must be > 0 seconds, got {sample_interval_s!r}")
        self.metrics = metrics
        self.host = host
        self.port = port
        self.assigned_partitions = assigned_partitions
        self.broker_ok = broker_ok
        self.sample_interval_s = sample_interval_s
        self.history_s = history_s
        self._samples: deque[_Sample] = deque(maxlen=max(2, int(history_s / sample_interval_s)))
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._started_at = time.time()
        self._page = (resources.files("streamproc.observe") / "status.html").read_bytes()

    def __repr__(self) -> str:
        return f"StatusServer(host={self.host!r}, port={self.port!r})"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in daemon threads; returns at once.

        Raises
        ------
        OSError
            The address is taken or cannot be bound (the message names it).
        """
        if self._httpd is not None:
            return
        try:
            httpd = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}; "
                "set STREAMPROC_METRICS_PORT to a free port, or 0 to turn the endpoints off",
            ) from exc  # fmt: skip
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        self._stopping.clear()
        self.sample()
        self._threads = [
            threading.Thread(
                target=httpd.serve_forever, args=(0.1,), name="streamproc-http", daemon=True
            ),
            threading.Thread(target=self._sample_loop, name="streamproc-sampler", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("serving /metrics, /health, /ready and /status on %s", self.url)

    def stop(self) -> None:
        """Stop serving and sampling (idempotent)."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> StatusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the server (``http://host:port``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- sampling ---------------------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stopping.wait(self.sample_interval_s):
            try:
                self.sample()
            except Exception:  # keep sampling: a status page is not worth a dead thread
                logger.warning("status sampling failed", exc_info=True)

    def sample(self, now: float | None = None) -> None:
        """Read the counters and quality gauges into the history (the sampler calls it)."""
        series = _read_registry(self.metrics)
        quality = {
            (lb["model"], lb["version"], lb["metric"], lb["window"]): value
            for lb, value in series.get("streamproc_model_quality", [])
        }
        entry = _Sample(
            time.time() if now is None else now,
            _total(series, "streamproc_records_in_total"),
            _total(series, "streamproc_records_out_total"),
            quality,
            _total(series, "streamproc_drift_signals_total"),
        )
        with self._lock:
            self._samples.append(entry)

    # --- endpoints' content -----------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, body)`` of ``/ready``; the body names every failing condition."""
        failing: list[str] = []
        try:
            assigned = int(self.assigned_partitions())
        except Exception as exc:
            assigned = 0
            failing.append(f"cannot read the assignment: {exc!r}")
        try:
            broker = bool(self.broker_ok())
        except Exception as exc:
            broker = False
            failing.append(f"cannot check the broker: {exc!r}")
        if assigned <= 0:
            failing.append("no partitions assigned to this worker (expected > 0, got 0)")
        if not broker:
            failing.append("the broker has not answered recently")
        body = {
            "ready": not failing,
            "assigned_partitions": assigned,
            "broker_ok": broker,
            "failing": failing,
        }
        return not failing, body

    def status(self) -> dict[str, Any]:
        """The ``/status.json`` document."""
        now = time.time()
        series = _read_registry(self.metrics)
        with self._lock:
            samples = list(self._samples)

        def by(name: str, label: str) -> dict[str, float]:
            return {lb[label]: v for lb, v in series.get(name, [])}

        rate_in = rate_out = 0.0
        if len(samples) >= 2:
            last = samples[-1]
            first = next((s for s in samples if s.t >= last.t - _RATE_WINDOW_S), samples[0])
            if first is last:
                first = samples[-2]
            dt = last.t - first.t
            if dt > 0:
                rate_in = (last.records_in - first.records_in) / dt
                rate_out = (last.records_out - first.records_out) / dt
        throughput = [
            {
                "t": b.t,
                "in_per_s": (b.records_in - a.records_in) / (b.t - a.t),
                "out_per_s": (b.records_out - a.records_out) / (b.t - a.t),
            }
            for a, b in itertools.pairwise(samples)
            if b.t > a.t
        ]

        # When drift signals were emitted, on the same time axis as the quality history.
        drift_marks = [
            {"t": b.t, "signals": b.drift_signals - a.drift_signals}
            for a, b in itertools.pairwise(samples)
            if b.drift_signals > a.drift_signals
        ]

        lag: dict[tuple[str, str, str], dict[str, Any]] = {}
        for name, field_name in (
            ("streamproc_consumer_lag_records", "records"),
            ("streamproc_consumer_lag_seconds", "seconds"),
            ("streamproc_partition_stalled", "stalled"),
        ):
            for lb, value in series.get(name, []):
                key = (lb["group"], lb["topic"], lb["partition"])
                row = lag.setdefault(
                    key,
                    {"group": key[0], "topic": key[1], "partition": int(key[2]),
                     "records": None, "seconds": None, "stalled": False},
                )  # fmt: skip
                row[field_name] = bool(value) if field_name == "stalled" else value

        quality_keys = sorted({k for s in samples for k in s.quality})
        quality = [
            {
                "model": k[0], "version": k[1], "metric": k[2], "window": k[3],
                "value": samples[-1].quality.get(k) if samples else None,
                "series": [[s.t, s.quality[k]] for s in samples if k in s.quality],
            }
            for k in quality_keys
        ]  # fmt: skip
        ready, readiness = self.readiness()
        return {
            "time": now,
            "version": __version__,
            "uptime_s": now - self._started_at,
            "ready": ready,
            "readiness": readiness,
            "throughput": {
                "window_s": _RATE_WINDOW_S,
                "in_per_s": rate_in,
                "out_per_s": rate_out,
                "series": throughput,
            },
            "records_in": by("streamproc_records_in_total", "topic"),
            "records_out": by("streamproc_records_out_total", "topic"),
            "dead_letters": by("streamproc_dead_letters_total", "reason"),
            "duplicates": _total(series, "streamproc_duplicates_total"),
            "predictions": by("streamproc_predictions_total", "model"),
            "lag": [lag[k] for k in sorted(lag, key=lambda k: (k[0], k[1], int(k[2])))],
            "model_quality": quality,
            "model_versions": [
                {"model": lb["model"], "partition": int(lb["partition"]), "version": v}
                for lb, v in series.get("streamproc_model_version", [])
            ],
            "drift_marks": drift_marks,
            "drift_signals": [
                {"model": lb["model"], "kind": lb["kind"], "count": v}
                for lb, v in series.get("streamproc_drift_signals_total", [])
            ],
            "snapshots_written": by("streamproc_snapshots_written_total", "model"),
            "snapshots_refused": [
                {"model": lb["model"], "reason": lb["reason"], "count": v}
                for lb, v in series.get("streamproc_snapshots_refused_total", [])
            ],
        }

    @property
    def page(self) -> bytes:
        """The ``/status`` HTML page."""
        return self._page


def _handler_for(server: StatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"streamproc/{__version__}"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.metrics.registry))
            elif path == "/health":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/ready":
                ready, body = server.readiness()
                self._json(200 if ready else 503, body)
            elif path == "/status.json":
                self._json(200, server.status())
            elif path in ("/status", "/"):
                self._send(200, "text/html; charset=utf-8", server.page)
            else:
                self._json(
                    404,
                    {"error": f"no such path {path!r}; expected one of /metrics, /health, "
                     "/ready, /status, /status.json"},
                )  # fmt: skip

        def _json(self, code: int, body: dict[str, Any]) -> None:
            self._send(code, "application/json", json.dumps(_finite(body)).encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Scrapes every few seconds would flood the worker's log at info.
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler
