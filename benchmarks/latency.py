"""Produce-to-prediction latency at a fixed offered load.

A rate-limited producer (:class:`~benchmarks.pacing.Pacer`, open loop) writes records to the
input topic of a running :class:`~benchmarks.pipeline.PipelineSession` for a fixed time,
stamping each record's Kafka timestamp with its send time (``time.time()`` at
``produce()``). Once the workers have drained, the predictions topic is read and each
prediction is matched to its input record by ``event_id``:

    latency = Kafka timestamp of the prediction record - send time of the input record

The prediction record's timestamp is set by the worker's producer when the model agent hands
it over (``topic.send``), so the figure covers the producer's linger, the broker, both
agents, both consumers' fetch waits and the model. The ``latency_s`` field of a prediction
(the agent's own figure, from the same send time to just before the send) is kept as well.

Each point sends one simulated stream, in order, and measures only its middle:

- a **warm-up** of its first ``warmup`` records (at least ``warmup_s`` seconds' worth at the
  rate), processed but not measured. The producer is new at every point, and until it has
  connected and obtained its idempotent producer id its first records wait in its own queue
  (before there was a warm-up, the first quarter of a point had a p50 of 250-340 ms against
  25-45 ms for the other three). And a simulated stream opens with every session starting:
  27 % of its first 2,000 records are plays, 14 % of the next 4,000, and 10 % from about the
  8,000th on. Each play costs a prediction of every model, so an opening measured as if it
  were steady load put a burst of 2-3x the plays a second into the first seconds of each
  point (p50 83-111 ms there against about 50 ms after, in a point whose p99 was 151 ms).
- the **measured** records that follow, for ``seconds``: their plays are timed.
- the rest is not sent: a finite simulation ends with sessions that only close (no plays in
  its last 5,000 records or so), which is no steady load either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from benchmarks.pacing import Pacer
from benchmarks.pipeline import DrainProgress, PipelineSession
from benchmarks.preload import BenchRecord
from benchmarks.resources import CpuMeter, total
from benchmarks.stats import percentile, percentiles
from streamproc.emit.decode_any import decode_record
from streamproc.errors import KafkaError
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import client_config, quiet_client_logger
from streamproc.kafka.read import read_to_end

__all__ = ["LatencyPoint", "LatencyRequest", "match_latencies", "measure_latency"]

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class LatencyRequest:
    """One load point: a fraction of the measured maximum and the records to send."""

    fraction: float  # of the maximum throughput, e.g. 0.5
    rate: float  # records a second
    seconds: float  # measured, after the warm-up
    # One stream in order: the warm-up's records, then enough for seconds x rate.
    records: Sequence[BenchRecord]
    warmup: int = 0  # leading records sent at the same rate first, not measured


@dataclass
class LatencyPoint:
    """What one load point measured."""

    fraction: float
    offered_rate: float
    seconds: float  # from the first to the last send
    sent: int
    plays: int  # valid play events sent (each gets one prediction per model)
    max_behind_s: float  # how far the producer fell behind its schedule at worst
    latencies_ms: list[float] = field(default_factory=list)  # one per prediction record
    agent_latencies_ms: list[float] = field(default_factory=list)
    sent_ms: list[int] = field(default_factory=list)  # send time of each one's input record
    worker_cpu_s: float | None = None  # the workers' CPU from the first send to drained
    warmup_sent: int = 0  # records of the warm-up, sent before ``sent`` (their CPU is counted)

    def by_quarter(self) -> list[float | None]:
        """p50 latency (ms) of the inputs sent in each quarter of the run, in order."""
        if not self.sent_ms:
            return []
        first, last = min(self.sent_ms), max(self.sent_ms)
        span = max(1, last - first + 1)
        quarters: list[list[float]] = [[], [], [], []]
        for sent, latency in zip(self.sent_ms, self.latencies_ms, strict=True):
            quarters[min(3, (sent - first) * 4 // span)].append(latency)
        return [percentile(q, 50) if q else None for q in quarters]

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "offered_rate_eps": self.offered_rate,
            "achieved_rate_eps": self.achieved_rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "plays": self.plays,
            "predictions_matched": len(self.latencies_ms),
            "producer_max_behind_s": self.max_behind_s,
            "worker_cpu_us_per_event": (
                self.worker_cpu_s / (self.sent + self.warmup_sent) * 1e6
                if self.worker_cpu_s is not None and self.sent
                else None
            ),
            "latency_ms": percentiles(self.latencies_ms) if self.latencies_ms else None,
            "latency_ms_max": max(self.latencies_ms) if self.latencies_ms else None,
            # a stall (e.g. snapshots) shows as one quarter far above the others
            "latency_p50_ms_by_quarter": self.by_quarter(),
            "agent_latency_ms": (
                percentiles(self.agent_latencies_ms) if self.agent_latencies_ms else None
            ),
        }


def _producer(session: PipelineSession) -> Producer:
    s = session.settings
    # Configured like streamproc.produce.EventProducer: what a real producer would do.
    return Producer(
        client_config(
            s,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": s.producer_linger_ms,
                "logger": quiet_client_logger(),
            },
        )
    )


def _send_paced(
    session: PipelineSession, request: LatencyRequest, say: Say
) -> tuple[LatencyPoint, dict[str, int]]:
    """Send at ``request.rate`` for ``request.seconds``; return the point and play send times."""
    producer = _producer(session)
    topic = session.settings.topic_input
    pacer = Pacer(request.rate)
    sent_at: dict[str, int] = {}
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    sent = 0
    warmup_sent = 0
    plays = 0
    last_say = time.monotonic()
    label = f"latency at {request.fraction:.0%} ({request.rate:,.0f} events/s)"
    measured_from: float | None = None  # the pacer's clock at the first measured send
    for index, record in enumerate(request.records):
        if measured_from is not None and pacer.clock() - measured_from >= request.seconds:
            break
        pacer.wait()
        if measured_from is None and index >= request.warmup:
            measured_from = pacer.clock()
        now_ms = int(time.time() * 1000)
        while True:
            try:
                producer.produce(
                    topic, record.value, record.key, timestamp=now_ms, on_delivery=report
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        if measured_from is None:
            warmup_sent += 1
            continue
        sent += 1
        if record.play and record.event_id is not None:
            sent_at[record.event_id] = now_ms
            plays += 1
        if time.monotonic() - last_say > 2.0:
            last_say = time.monotonic()
            say(
                f"{label}: {pacer.clock() - measured_from:4.1f} / {request.seconds:g} s, "
                f"{sent:,} sent (after {warmup_sent:,} in a warm-up)"
            )
    seconds = 0.0 if measured_from is None else pacer.clock() - measured_from
    left = producer.flush(30.0)
    if left or failures:
        raise KafkaError(
            f"{label}: {len(failures)} record(s) failed and {left} unacknowledged "
            f"(first error: {failures[0] if failures else 'timeout'})"
        )
    session.loaded += warmup_sent + sent
    point = LatencyPoint(request.fraction, request.rate, seconds, sent, plays, pacer.max_behind_s)
    point.warmup_sent = warmup_sent
    return point, sent_at


def match_latencies(
    predictions: Sequence[tuple[str, int, float]], sent_at: dict[str, int]
) -> tuple[list[float], list[float], list[int]]:
    """Latencies (ms) of the predictions of the events in ``sent_at``.

    Parameters
    ----------
    predictions
        ``(event_id, prediction record timestamp ms, latency_s field)`` per prediction.
    sent_at
        event_id -> send time (epoch ms) of the input record.

    Returns
    -------
    (record latencies, agent latencies, send times)
        Latencies in ms and the input's send time (epoch ms), in the order of
        ``predictions``; predictions of other events are skipped.

    >>> match_latencies([("a", 1_250, 0.2), ("b", 9, 0.0), ("a", 1_260, 0.21)], {"a": 1_000})
    ([250.0, 260.0], [200.0, 210.0], [1000, 1000])
    """
    record: list[float] = []
    agent: list[float] = []
    sent_times: list[int] = []
    for event_id, ts_ms, latency_s in predictions:
        sent = sent_at.get(event_id)
        if sent is None:
            continue
        record.append(float(ts_ms - sent))
        agent.append(latency_s * 1000.0)
        sent_times.append(sent)
    return record, agent, sent_times


def measure_latency(
    session: PipelineSession,
    requests: Sequence[LatencyRequest],
    *,
    say: Say,
    drain_timeout: float = 300.0,
    on_progress: Callable[[DrainProgress], None] | None = None,
) -> list[LatencyPoint]:
    """Run each load point in turn on the session's (already warm) workers."""
    s = session.settings
    points: list[tuple[LatencyPoint, dict[str, int]]] = []
    for request in requests:
        meter = CpuMeter({f"worker-{i}": pid for i, pid in enumerate(session.pids)}).start()
        point, sent_at = _send_paced(session, request, say)
        session.wait_drained(
            started=time.monotonic(), timeout=drain_timeout, on_progress=on_progress
        )
        point.worker_cpu_s = total(v for k, v in meter.stop().items() if k.startswith("worker"))
        points.append((point, sent_at))
    say("latency: reading the predictions ...")
    schemas = load_schemas(s.schemas_path)
    predictions: list[tuple[str, int, float]] = []
    for rec in read_to_end(s, s.topic_predictions, timeout=120.0):
        if rec.timestamp_ms is None:
            continue
        _, value = decode_record(rec.value or b"", schemas)
        predictions.append(
            (str(value.get("event_id")), rec.timestamp_ms, float(value.get("latency_s") or 0.0))
        )
    measured = []
    for point, sent_at in points:
        point.latencies_ms, point.agent_latencies_ms, point.sent_ms = match_latencies(
            predictions, sent_at
        )
        measured.append(point)
    return measured
