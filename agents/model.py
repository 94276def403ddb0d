"""Model agent: viewing-events-valid -> predictions and drift signals; learns from outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import faust
from confluent_kafka import KafkaException
from mode.supervisors import CrashingSupervisor
from prometheus_client import Counter

from agents.batches import RecordBatch, acknowledge_batch
from agents.drift import ControlFollower, SignalSink
from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift, parse_detector_choice
from streamproc.emit.encode import Encoder
from streamproc.emit.prediction import prediction_record
from streamproc.errors import EventError, KafkaError, SnapshotError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.process import HEADER_WRITER, build_dead_letter
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.topics import SNAPSHOT_MAX_MESSAGE_BYTES
from streamproc.learning.partition import LabelOut, PartitionLearner, PredictionOut
from streamproc.learning.specs import get_model_specs
from streamproc.metrics import StreamprocMetrics
from streamproc.registry.restore import RestoredPartition, restore_partitions
from streamproc.registry.snapshots import DRIFT_STATE, SHARED_MODEL, snapshot_partition
from streamproc.registry.store import control_token, signer_from

if TYPE_CHECKING:
    from agents.app import WorkerApp

__all__ = ["SNAPSHOT_BUDGET_S", "ModelRuntime", "register_model"]

#: Seconds of interval-snapshot building after a batch (see ModelRuntime.snapshot_due).
SNAPSHOT_BUDGET_S = 0.05

logger = logging.getLogger(__name__)


class ModelRuntime:
    """The per-partition learners and drift state of this worker, and their snapshots."""

    def __init__(self, app: WorkerApp, settings: Settings, metrics: StreamprocMetrics) -> None:
        self.app = app
        self.sender = app.sender
        self.settings = settings
        self.metrics = metrics
        self.schemas = load_schemas(settings.schemas_path)
        self.signer = signer_from(settings)
        self.specs = get_model_specs(settings.models)
        self.decoder = EventDecoder(self.schemas, max_bytes=1 << 30)
        self.prediction_encoder = Encoder.for_record(
            self.schemas, "Prediction", settings.output_format, check=False
        )
        self.dead_encoder = Encoder.for_record(
            self.schemas, "DeadLetter", settings.output_format, check=False
        )
        if settings.drift_enabled:  # a bad STREAMPROC_DRIFT_DETECTOR fails at start-up
            parse_detector_choice(
                settings.drift_detector,
                [s.name for s in self.specs if s.task in ("binary", "regression")],
            )
        self.learners: dict[int, PartitionLearner] = {}
        self._label_counters: dict[str, Counter] = {}
        self.drifts: dict[int, PartitionDrift] = {}
        self.next_offset: dict[int, int] = {}
        self.since_snapshot: dict[int, int] = {}
        self.last_snapshot: dict[int, float] = {}
        self._writing: asyncio.Future[None] | None = None
        self._write_error: Exception | None = None
        self.signals = SignalSink(app, settings, metrics, self.schemas)
        self.controls = ControlFollower(settings, self.schemas, self.signer, self._refused)

    def new_learner(self) -> PartitionLearner:
        s = self.settings
        return PartitionLearner(
            self.specs,
            completion_threshold=s.completion_threshold,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            timeout_policy=s.session_timeout_policy,
            seed=s.seed,
            on_label=self._count_label,
        )

    def _count_label(self, label: LabelOut) -> None:
        # The counter of each model looked up once: labels() costs more than the count.
        counter = self._label_counters.get(label.model)
        if counter is None:
            counter = self.metrics.labels_resolved.labels(model=label.model)
            self._label_counters[label.model] = counter
        counter.inc()

    def new_drift(self, learner: PartitionLearner, partition: int) -> PartitionDrift:
        return PartitionDrift.from_settings(learner, self.settings, partition=partition)

    async def ensure(self, first_offsets: dict[int, int]) -> None:
        """Create or restore the learners of partitions seen for the first time."""
        missing = {p: o for p, o in first_offsets.items() if p not in self.learners}
        if not missing:
            return
        restored: dict[int, RestoredPartition] = await asyncio.to_thread(
            restore_partitions,
            self.settings,
            self.schemas,
            self.signer,
            missing,
            self.new_learner,
            self._refused,
            new_drift=self.new_drift,
        )
        for partition, result in restored.items():
            drift = result.drift or self.new_drift(result.learner, partition)
            if not result.drift_restored:
                # Fresh models have no version to switch to, and a snapshot without drift
                # state was restored at the version the control records name: they count
                # as applied, so the follower does not signal them again.
                for model, control in result.controls.items():
                    drift.controls_applied.setdefault(model, control_token(control))
            self.learners[partition] = result.learner
            self.drifts[partition] = drift
            self.next_offset[partition] = result.next_offset
            self.since_snapshot[partition] = 0
            self.last_snapshot[partition] = time.monotonic()
            for model, version in result.learner.versions.items():
                self.metrics.model_version.labels(model=model, partition=str(partition)).set(
                    version
                )
            logger.info(
                "partition %d: %s%s (replayed %d events to catch up, versions %s)",
                partition,
                "restored from snapshot" if result.from_snapshot else "fresh models",
                ", drift state restored" if result.drift_restored else "",
                result.replayed,
                result.learner.versions,
            )

    def _refused(self, key: str, exc: SnapshotError) -> None:
        parts = key.split("/")
        model = parts[1] if len(parts) > 1 else "unknown"
        text = str(exc)
        reason = (
            "bad_signature"
            if "signature" in text or "unsigned" in text or "key id" in text
            else "corrupt"
        )
        self.metrics.snapshots_refused.labels(model=model, reason=reason).inc()
        logger.warning("refused snapshot %s: %s", key, exc)

    async def snapshot(self, partitions: Sequence[int], *, reason: str, wait: bool = False) -> None:
        """Snapshot the models, shared state and drift state of ``partitions``.

        The records are built here, from the state as it is now (the agent holds the event
        loop: nothing changes it meanwhile). Writing them waits until every output record
        sent so far is acknowledged (a snapshot must never cover an event whose prediction
        could still be lost), and that wait happens in the background, in snapshot order, so
        the agent goes on with the next records. ``wait=True`` (after a drift signal or a
        control record, so that a restart never repeats them; revocation; shutdown) returns
        when this and every earlier snapshot are written. A write that failed raises here, or
        at the agent's next :meth:`raise_if_write_failed`.
        """
        self.raise_if_write_failed()
        if not partitions:
            return
        started = time.perf_counter()
        built: list[tuple[int, list[tuple[str, bytes, bytes]]]] = []
        for partition in partitions:
            learner = self.learners.get(partition)
            drift = self.drifts.get(partition)
            if learner is None or drift is None:
                continue
            records = snapshot_partition(
                learner,
                partition,
                namespace=self.settings.model_namespace,
                source_offsets={
                    f"{self.settings.topic_valid}:{partition}": self.next_offset[partition]
                },
                signer=self.signer,
                schemas=self.schemas,
                extra={DRIFT_STATE: drift.export_state()},
            )
            self.since_snapshot[partition] = 0
            self.last_snapshot[partition] = time.monotonic()
            too_large = [(n, len(v)) for n, _, v in records if len(v) > SNAPSHOT_MAX_MESSAGE_BYTES]
            if too_large:
                # Write all components of a partition or none: a restore must never mix
                # models and shared state of different offsets. The worker keeps serving;
                # a restart restores the previous snapshot and replays from its offsets.
                self.metrics.snapshots_failed.labels(reason="too_large").inc()
                logger.error(
                    "snapshot of partition %d not written: %s above the snapshot topic's "
                    "max.message.bytes (%d bytes); a restart replays from the previous "
                    "snapshot. Use more partitions (less state per partition)",
                    partition,
                    ", ".join(f"{n} is {size} bytes" for n, size in too_large),
                    SNAPSHOT_MAX_MESSAGE_BYTES,
                )
                continue
            built.append((partition, records))
        build_ms = (time.perf_counter() - started) * 1000
        previous = self._writing
        self._writing = asyncio.ensure_future(self._write(previous, built, reason, build_ms))
        if wait:
            await self._writing
            self.raise_if_write_failed()

    async def _write(
        self,
        previous: asyncio.Future[None] | None,
        built: list[tuple[int, list[tuple[str, bytes, bytes]]]],
        reason: str,
        build_ms: float,
    ) -> None:
        """Write built snapshots once every earlier output record is acknowledged."""
        try:
            if previous is not None:
                await previous  # snapshots of a partition are written in the order built
            if self._write_error is not None or not built:
                return
            started = time.perf_counter()
            # Predictions sent before a snapshot must be durable before it is, so that a
            # restart from the snapshot never skips an event whose prediction was lost.
            await self.app.producer.flush()
            flushed = time.perf_counter()
            written = 0
            for _partition, records in built:
                for name, key, value in records:
                    written += len(value)
                    self.sender.send(self.settings.topic_snapshots, value, key)
                    if name not in (SHARED_MODEL, DRIFT_STATE):
                        self.metrics.snapshots_written.labels(model=name).inc()
            await self.app.producer.flush()
            logger.info(
                "snapshot of partitions %s (%s): %.1f KB built in %.0f ms; written after "
                "%.0f ms of waiting for earlier records, in %.0f ms",
                sorted(p for p, _ in built),
                reason,
                written / 1024,
                build_ms,
                (flushed - started) * 1000,
                (time.perf_counter() - flushed) * 1000,
            )
        except Exception as exc:  # raised in the agent: the worker stops before a commit
            if self._write_error is None:
                self._write_error = exc

    def raise_if_write_failed(self) -> None:
        """Raise the error of a snapshot write that failed in the background."""
        if self._write_error is not None:
            raise self._write_error

    async def snapshot_due(self, budget_s: float = SNAPSHOT_BUDGET_S) -> None:
        """Interval snapshots of the partitions due, the longest-unsnapshotted first, until
        ``budget_s`` of building them has passed (at least one).

        Building a snapshot holds the event loop (about 30 ms for a partition with 1,000 open
        sessions), and partitions that started together fall due together: six in a row
        would stall both agents for 0.2 s. The rest wait for the next batch or the timer.
        Written in the background: if one is lost, a restart replays from the previous one.
        """
        started = time.perf_counter()
        for partition in self.due():
            await self.snapshot([partition], reason="interval")
            if time.perf_counter() - started >= budget_s:
                return

    def due(self) -> list[int]:
        """Partitions due for an interval snapshot, the longest unsnapshotted first."""
        now = time.monotonic()
        s = self.settings
        due = [
            p
            for p in self.learners
            if self.since_snapshot[p] >= s.snapshot_every_events
            or (self.since_snapshot[p] and now - self.last_snapshot[p] >= s.snapshot_every_s)
        ]
        return sorted(due, key=lambda p: self.last_snapshot[p])

    def publish_quality(self) -> None:
        """Set the model-quality gauges: each metric averaged over this worker's partitions."""
        sums: dict[tuple[str, int, str], list[float]] = {}
        for learner in self.learners.values():
            versions = learner.versions
            for model, values in learner.metrics().items():
                if values.get("labels", 0.0) < 1:
                    continue
                for name, value in values.items():
                    if name != "labels" and math.isfinite(value):
                        sums.setdefault((model, versions[model], name), []).append(value)
        for (model, version, name), found in sums.items():
            metric, window = (name[:-7], "recent") if name.endswith("_recent") else (name, "all")
            self.metrics.model_quality.labels(
                model=model, version=str(version), metric=metric, window=window
            ).set(sum(found) / len(found))

    def drop(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self.learners.pop(p, None)
            self.drifts.pop(p, None)
            self.next_offset.pop(p, None)
            for spec in self.specs:
                with contextlib.suppress(KeyError):  # no series for it yet
                    self.metrics.model_version.remove(spec.name, str(p))


def _writer_fingerprint(headers: Any) -> str:
    """The input record's writer-schema fingerprint, from the header the ingest agent sets."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in pairs:
        if key == HEADER_WRITER and isinstance(value, bytes):
            return value.decode()
    return "unknown"


def register_model(app: WorkerApp, settings: Settings, metrics: StreamprocMetrics) -> None:
    """Declare the model agent on ``app``."""
    runtime = ModelRuntime(app, settings, metrics)
    app.model_runtime = runtime  # type: ignore[attr-defined]
    metrics.snapshots_failed.labels(reason="too_large")  # the alert sees its first increase
    for spec in runtime.specs:
        metrics.declare_model(
            spec.name,
            drift_kinds=("concept", "data", "label", "lifecycle"),
            refusal_reasons=("bad_signature", "corrupt"),
        )
    records_in = metrics.records_in.labels(topic=settings.topic_valid)
    predictions_out = metrics.records_out.labels(topic=settings.topic_predictions)
    stage = metrics.stage_seconds.labels(stage="model")
    to_prediction = metrics.event_to_prediction_seconds
    latency_hist = metrics.process_latency_seconds
    predictions_by_model = {s.name: metrics.predictions.labels(model=s.name) for s in runtime.specs}
    valid_topic = app.batch_topic(settings.topic_valid)
    predictions_topic = settings.topic_predictions
    dlq_topic = settings.topic_dlq
    send = runtime.sender.send
    decode = runtime.decoder.decode
    encode_prediction: Callable[[dict[str, Any]], bytes] = runtime.prediction_encoder.encode

    async def score(stream: faust.StreamT[RecordBatch]) -> None:
        """Predict at each play; learn when sessions end."""
        # Each event is the valid topic's records of one fetch (agents.batches).
        consumer = app.consumer
        async for batch in stream:
            started = time.perf_counter()
            records_in.inc(len(batch))
            await runtime.ensure({tp.partition: first for tp, (first, _) in batch.spans.items()})
            drifts, next_offset = runtime.drifts, runtime.next_offset
            for record in batch:
                partition, offset = record.partition, record.offset
                if offset < next_offset[partition]:
                    continue  # already covered by the restored snapshot
                drift = drifts[partition]
                next_offset[partition] = offset + 1
                runtime.since_snapshot[partition] += 1
                try:
                    decoded = decode(record.value or b"")
                    outs, signals = drift.process(decoded.event, offset=offset)
                except EventError as exc:
                    exc.at(f"{record.topic}[{partition}]@{offset}")
                    metrics.dead_letters.labels(reason=exc.reason).inc()
                    logger.warning("model stage rejected %s", exc)
                    value = build_dead_letter(
                        runtime.dead_encoder,
                        record.value,
                        record.key,
                        record.topic,
                        partition,
                        offset,
                        record.timestamp if record.timestamp > 0 else None,
                        int(time.time() * 1000),
                        exc,
                    )
                    send(dlq_topic, value, record.key)
                    continue
                if outs:
                    send_predictions(record, partition, outs)
                if signals:
                    # After the predictions: the snapshot flushes both, and covers this
                    # event, so a restart neither repeats these signals nor loses a
                    # promotion (nor resurrects the champion it replaced).
                    await runtime.signals.send(signals)
                    await runtime.snapshot([partition], reason="drift signal", wait=True)
            runtime.sender.poll()  # delivery reports; raises if a record was refused
            runtime.raise_if_write_failed()
            acknowledge_batch(consumer, batch)
            stage.observe((time.perf_counter() - started) / len(batch))
            await runtime.snapshot_due()

    def send_predictions(record: Any, partition: int, outs: Sequence[PredictionOut]) -> None:
        """Send the predictions of one event (``record``: an aiokafka ConsumerRecord)."""
        now = time.time()
        now_ms = int(now * 1000)
        sent_ms = record.timestamp
        latency = max(0.0, now - sent_ms / 1000) if sent_ms > 0 else 0.0
        fingerprint = _writer_fingerprint(record.headers)
        for out in outs:
            prediction = prediction_record(
                out,
                partition=partition,
                predicted_at_ms=now_ms,
                latency_s=latency,
                input_fingerprint=fingerprint,
            )
            send(predictions_topic, encode_prediction(prediction), record.key)
            predictions_by_model[out.model].inc()
            predictions_out.inc()
            to_prediction.observe(max(0.0, now - out.event_time / 1000))
        latency_hist.observe(latency)

    # An agent that raises ends the worker (exit 1) instead of being restarted in place:
    # Faust's restarted agent does not get the records its predecessor had fetched, so the
    # partitions' commits would stall for good. A new worker restores and replays instead.
    app.agent(valid_topic, name="score", supervisor_strategy=CrashingSupervisor)(score)

    follow_state = {"failing": False}

    async def follow_controls() -> None:
        """Serve the model versions the control records name (manual rollback, promotion)."""
        try:
            controls = await asyncio.to_thread(runtime.controls.poll)
        except (KafkaException, KafkaError) as exc:
            # The broker is away (restart, network): a timer that raises would stop the
            # worker, so say it once and read on at the next tick.
            if not follow_state["failing"]:
                logger.warning(
                    "cannot read control records from %s, retrying every 2 s: %s",
                    settings.topic_snapshots,
                    exc,
                )
            follow_state["failing"] = True
            return
        if follow_state["failing"]:
            logger.info("reading control records from %s again", settings.topic_snapshots)
            follow_state["failing"] = False
        if not controls:
            return
        applied = runtime.controls.apply(controls, runtime.drifts, runtime.next_offset)
        for signals in applied.values():
            await runtime.signals.send(signals)
        if applied:
            await runtime.snapshot(sorted(applied), reason="control record", wait=True)

    # Registered by calls, not decorators: app.timer() returns an untyped Callable.
    app.timer(interval=2.0)(follow_controls)

    async def publish_quality() -> None:
        runtime.publish_quality()

    app.timer(interval=2.0)(publish_quality)

    async def snapshot_idle() -> None:
        """Interval snapshots of partitions that fell due and have had no records since."""
        await runtime.snapshot_due()

    app.timer(interval=5.0)(snapshot_idle)

    async def on_revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        mine = [tp.partition for tp in revoked if tp.topic == settings.topic_valid]
        mine = [p for p in mine if p in runtime.learners]
        if mine:
            await runtime.snapshot(mine, reason="partitions revoked", wait=True)
            runtime.drop(mine)

    async def on_shutdown(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await runtime.snapshot(list(runtime.learners), reason="shutdown", wait=True)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # mode types handlers as a union mypy cannot match
    app.on_before_shutdown.connect(on_shutdown)  # type: ignore[arg-type]  # mode types handlers as a union mypy cannot match
