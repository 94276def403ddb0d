"""The reference loop: the pipeline's work in a plain confluent-kafka loop, one event at a time.

What a user would write without Faust: consume in batches of 500, and for each record run
the same code the agents run (:class:`~streamproc.ingest.process.IngestProcessor` with an
in-memory de-duplication dict; the valid record's bytes decoded again as the model agent
does; per input partition a :class:`~streamproc.learning.partition.PartitionLearner` with
all the models inside a :class:`~streamproc.drift.partition.PartitionDrift` (drift monitors
and responses, from the settings, as the model agent builds them); predictions and drift
signals encoded with :mod:`streamproc.emit.encode`), and produce each output record with
``produce()`` + ``poll(0)``; flush at the end. It writes the valid records, the dead
letters, the predictions and the drift signals to topics of its own.

What it leaves out, on purpose (the pipeline's overheads it is compared with): Faust,
the changelog of the de-duplication table, model snapshots (on the interval and after each
drift signal), Prometheus metrics and the worker's logging.

It runs in a process of its own (``spawn``), so its CPU time and peak RSS are its own, and
is timed from the first record received to the last delivery acknowledged.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from benchmarks.resources import cpu_seconds, peak_rss_bytes
from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.emit.encode import Encoder
from streamproc.emit.prediction import prediction_record
from streamproc.errors import EventError, StreamprocError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import HEADER_WRITER, IngestProcessor, build_dead_letter
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import client_config, quiet_client_logger
from streamproc.learning.partition import PartitionLearner

__all__ = ["ReferenceResult", "reference_loop", "run_reference"]

Say = Callable[[str], None]


@dataclass
class ReferenceResult:
    """One run of the reference loop."""

    events: int
    seconds: float
    cpu_s: float | None
    peak_rss_bytes: int | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": self.seconds,
            "throughput_eps": self.throughput,
            "cpu_s": self.cpu_s,
            "cpu_us_per_event": (
                self.cpu_s / self.events * 1e6 if self.cpu_s is not None and self.events else None
            ),
            "peak_rss_bytes": self.peak_rss_bytes,
            "counts": self.counts,
        }


def reference_loop(
    settings: Settings,
    source_topic: str,
    end_offsets: dict[int, int],
    progress: Callable[[int], None] | None = None,
) -> ReferenceResult:
    """Process records ``[0, end)`` of each partition of ``source_topic``; outputs go to
    ``settings``' valid, dead-letter and prediction topics."""
    schemas = load_schemas(settings.schemas_path)
    window_ms = int(settings.dedupe_window_s * 1000)
    ingest = IngestProcessor(settings, schemas, Deduplicator(window_ms, {}))
    decoder = EventDecoder(schemas, max_bytes=1 << 30)
    encode_prediction = Encoder.for_record(
        schemas, "Prediction", settings.output_format, check=False
    ).encode
    dead_encoder = Encoder.for_record(schemas, "DeadLetter", settings.output_format, check=False)
    encode_signal = Encoder.for_record(schemas, "DriftSignal", settings.output_format).encode
    models: dict[int, PartitionDrift] = {}
    counts: Counter[str] = Counter()

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            counts["delivery_failures"] += 1

    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"{settings.app_id}-reference",
                "enable.auto.commit": True,
                "logger": quiet_client_logger(),
            },
        )
    )
    producer = Producer(
        client_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": settings.producer_linger_ms,
                "logger": quiet_client_logger(),
            },
        )
    )
    consumer.assign([TopicPartition(source_topic, p, OFFSET_BEGINNING) for p in end_offsets])
    wanted = sum(end_offsets.values())
    done = 0
    started: float | None = None
    cpu_start: float | None = None
    while done < wanted:
        for msg in consumer.consume(500, 1.0):
            if msg.error() is not None:
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None or offset >= end_offsets.get(partition, 0):
                continue  # written after the measured records (e.g. by the latency runs)
            if started is None:
                started = time.monotonic()
                cpu_start = cpu_seconds(os.getpid())
            done += 1
            _, ts = msg.timestamp()
            # 1. ingest: decode, validate, de-duplicate, build the valid or dead record
            outcome = ingest.process(
                msg.value(), msg.key(), source_topic, partition, offset, ts or None
            )
            headers = cast("list[tuple[str, str | bytes | None]]", outcome.headers)
            if outcome.kind == "dead":
                counts["dead_letters"] += 1
                producer.produce(
                    settings.topic_dlq,
                    outcome.value,
                    outcome.key,
                    headers=headers,
                    on_delivery=delivered,
                )
                producer.poll(0)
                continue
            if outcome.kind == "duplicate":
                counts["duplicates_dropped"] += 1
                continue
            counts["valid"] += 1
            producer.produce(
                settings.topic_valid,
                outcome.value,
                outcome.key,
                headers=headers,
                timestamp=ts or 0,
                on_delivery=delivered,
            )
            producer.poll(0)
            # 2. model: decode the valid record (as the model agent reads it), predict, learn
            model = models.get(partition)
            if model is None:
                learner = PartitionLearner.from_settings(settings)
                model = models[partition] = PartitionDrift.from_settings(
                    learner, settings, partition=partition
                )
            try:
                decoded = decoder.decode(outcome.value or b"")
                outs, signals = model.process(decoded.event, offset=offset)
            except EventError as exc:
                counts["dead_letters"] += 1
                now_ms = int(time.time() * 1000)
                letter = build_dead_letter(
                    dead_encoder,
                    outcome.value,
                    outcome.key,
                    settings.topic_valid,
                    partition,
                    offset,
                    ts or None,
                    now_ms,
                    exc,
                )
                producer.produce(settings.topic_dlq, letter, outcome.key, on_delivery=delivered)
                producer.poll(0)
                continue
            for signal in signals:
                producer.produce(
                    settings.topic_drift,
                    encode_signal(signal),
                    str(signal["model"]).encode(),
                    on_delivery=delivered,
                )
                producer.poll(0)
                counts["drift_signals"] += 1
            if not outs:
                continue
            now = time.time()
            latency = max(0.0, now - ts / 1000) if ts and ts > 0 else 0.0
            fingerprint = next(
                (v.decode() for k, v in outcome.headers if k == HEADER_WRITER), "unknown"
            )
            for out in outs:
                record = prediction_record(
                    out,
                    partition=partition,
                    predicted_at_ms=int(now * 1000),
                    latency_s=latency,
                    input_fingerprint=fingerprint,
                )
                producer.produce(
                    settings.topic_predictions,
                    encode_prediction(record),
                    outcome.key,
                    on_delivery=delivered,
                )
                producer.poll(0)
                counts["predictions"] += 1
                counts[f"predictions_{out.model}"] += 1
            if progress is not None and done % 5000 == 0:
                progress(done)
    producer.flush(60.0)
    seconds = time.monotonic() - started if started is not None else 0.0
    cpu_end = cpu_seconds(os.getpid())
    consumer.close()
    cpu = cpu_end - cpu_start if cpu_end is not None and cpu_start is not None else None
    counts["input"] = done
    return ReferenceResult(done, seconds, cpu, peak_rss_bytes(os.getpid()), dict(counts))


def _child(
    settings: Settings, source_topic: str, end_offsets: dict[int, int], conn: Connection
) -> None:
    try:
        result = reference_loop(
            settings, source_topic, end_offsets, lambda n: conn.send(("progress", n))
        )
        conn.send(("result", result))
    except BaseException as exc:  # report anything to the parent, which raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_reference(
    settings: Settings,
    source_topic: str,
    end_offsets: dict[int, int],
    *,
    say: Say,
    timeout: float,
) -> ReferenceResult:
    """Run :func:`reference_loop` in a fresh process; relay its progress to ``say``.

    Raises
    ------
    StreamprocError
        When the loop fails, its process dies, or it takes longer than ``timeout`` seconds.
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(settings, source_topic, end_offsets, send),
        name="streamproc-bench-reference",
        daemon=True,
    )
    process.start()
    send.close()
    wanted = sum(end_offsets.values())
    deadline = time.monotonic() + timeout
    try:
        while True:
            if receive.poll(1.0):
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    kind, payload = "error", "the process closed its pipe without a result"
                if kind == "progress":
                    say(f"reference loop: {payload:,} / {wanted:,} events")
                elif kind == "result":
                    if not isinstance(payload, ReferenceResult):
                        raise StreamprocError(f"reference loop returned {payload!r}")
                    return payload
                else:
                    raise StreamprocError(f"the reference loop failed: {payload}")
            elif not process.is_alive():
                raise StreamprocError(
                    f"the reference loop's process exited ({process.exitcode}) without a result"
                )
            if time.monotonic() > deadline:
                raise StreamprocError(f"the reference loop did not finish within {timeout:.0f} s")
    finally:
        if process.is_alive():
            process.terminate()
        process.join(10)
        receive.close()
