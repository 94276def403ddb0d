"""In-process cost of each step of the hot path, per input event.

The steps run in the benchmark's own process, on the benchmark's records, one step at a time
over all records (so a timer call does not sit between two steps), with the classes the
agents use:

- ingest: decode, validate, de-duplicate (in memory), encode the valid record, dead letters,
  and :meth:`IngestProcessor.process` as a whole (the rest is its bookkeeping);
- model: decode the valid record again, then :meth:`PartitionDrift.process` as the model agent
  calls it (the learner with all models, drift monitors and response policies built from the
  settings), with each feature function, each model's predict / learn, the learner's
  ``process`` and the drift label hook timed inside it; the prediction records built and
  encoded; and a snapshot of a partition with its drift state (amortised over
  ``snapshot_every_events``; the agent also snapshots after each drift signal);
- Kafka clients, against the broker: one awaited Faust ``topic.send`` and one confluent-kafka
  ``produce`` + ``poll(0)`` per record, and confluent-kafka ``consume(500)`` per record.

Costs are CPU µs per input event (``total / input events``) and per call: the in-process
steps in CPU time of the benchmark's thread, the Kafka client probes in CPU time of the
whole process (librdkafka's threads included), so other load on the machine does not
inflate them. The timers inside ``PartitionDrift.process`` use the wall clock (a CPU-time
clock read costs about 1 µs) and are scaled by the CPU / wall ratio of the whole loop. The
whole measurement is repeated and each step's median is kept.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.preload import BenchRecord
from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.emit.encode import Encoder
from streamproc.emit.prediction import prediction_record
from streamproc.errors import EventError
from streamproc.ingest.decode import DecodedEvent, EventDecoder
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import IngestProcessor, build_dead_letter
from streamproc.ingest.schemas import SchemaSet, load_schemas
from streamproc.ingest.validate import QualityRules, check_event
from streamproc.kafka.topics import TopicSpec, ensure_topics
from streamproc.learning.partition import PartitionLearner, PredictionOut
from streamproc.registry.snapshots import DRIFT_STATE, snapshot_partition
from streamproc.registry.store import signer_from

__all__ = ["Breakdown", "Step", "measure_breakdown"]

#: The breakdown uses at most this many records (enough for stable per-event figures).
MAX_RECORDS = 20_000
#: Records per Kafka client probe.
PROBE_RECORDS = 5_000
#: Faust sends before the timed ones (metadata, connections).
FAUST_WARMUP = 50


@dataclass(frozen=True, slots=True)
class Step:
    """One step: its total CPU time over the run, how often it ran, per input event."""

    stage: str  # ingest | model | drift | kafka
    name: str
    seconds: float
    calls: int
    events: int  # input events the total is spread over (0: a per-record probe)

    @property
    def per_event_us(self) -> float | None:
        return self.seconds / self.events * 1e6 if self.events else None

    @property
    def per_call_us(self) -> float:
        return self.seconds / self.calls * 1e6 if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "seconds": self.seconds,
            "calls": self.calls,
            "events": self.events,
            "per_event_us": self.per_event_us,
            "per_call_us": self.per_call_us,
        }


@dataclass
class Breakdown:
    """Every step measured, and the output records per input event the pipeline sends."""

    events: int
    repeats: int = 1
    steps: list[Step] = field(default_factory=list)
    sends_per_event: dict[str, float] = field(default_factory=dict)

    def add(
        self, stage: str, name: str, seconds: float, calls: int, *, probe: bool = False
    ) -> None:
        self.steps.append(Step(stage, name, seconds, calls, 0 if probe else self.events))

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def processing_us(self) -> float:
        """µs per event of the processing itself: the ingest, model and drift steps."""
        return sum(
            s.per_event_us or 0.0
            for s in self.steps
            if s.stage in ("ingest", "model", "drift") and not s.name.endswith("(all)")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "repeats": self.repeats,
            "steps": [s.as_dict() for s in self.steps],
            "sends_per_event": self.sends_per_event,
            "processing_us_per_event": self.processing_us(),
        }


class _Clock:
    """Accumulates wall-clock nanoseconds and calls under names."""

    def __init__(self) -> None:
        self.ns: defaultdict[str, int] = defaultdict(int)
        self.calls: Counter[str] = Counter()

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        ns, calls = self.ns, self.calls

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                ns[name] += time.perf_counter_ns() - started
                calls[name] += 1

        return wrapper


class _TimedModel:
    """A River model whose predict and learn calls are timed; anything else passes through."""

    def __init__(self, model: Any, name: str, clock: _Clock) -> None:
        self._model = model
        if hasattr(model, "predict_proba_one"):
            self.predict_proba_one = clock.timed(f"{name}: predict", model.predict_proba_one)
        self.predict_one = clock.timed(f"{name}: predict", model.predict_one)
        self.learn_one = clock.timed(f"{name}: learn", model.learn_one)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


_LEARNER = "learner.process"
_LABEL_HOOK = "label monitors + response policies (on each label)"


def _instrument(learner: PartitionLearner, clock: _Clock) -> Callable[[], None] | None:
    """Wrap the learner's models, feature functions, ``process`` and label hook in timers.

    Returns the function that puts the originals back (the timers cannot be pickled into a
    snapshot), or None when the learner's layout is not the one expected.
    """
    slots = getattr(learner, "_slots", None)
    fns = getattr(learner, "_feature_fns", None)
    featured = getattr(learner, "_featured", None)
    if not isinstance(slots, dict) or not isinstance(fns, list) or not isinstance(featured, list):
        return None
    models = {name: slot.model for name, slot in slots.items()}
    for name, slot in slots.items():
        slot.model = _TimedModel(slot.model, name, clock)
    wrapped = {fn: clock.timed(f"features: {fn.__name__}", fn) for fn in fns}
    learner._feature_fns = [wrapped[fn] for fn in fns]
    learner._featured = [(slot, wrapped[fn]) for slot, fn in featured]
    hook = learner.on_label
    if hook is not None:
        learner.on_label = clock.timed(_LABEL_HOOK, hook)
    # An instance attribute shadows the method: PartitionDrift calls it through the instance.
    setattr(learner, "process", clock.timed(_LEARNER, learner.process))  # noqa: B010

    def restore() -> None:
        for name, slot in slots.items():
            slot.model = models[name]
        learner._feature_fns = fns
        learner._featured = featured
        learner.on_label = hook
        delattr(learner, "process")

    return restore


def _loop(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[float, list[Any]]:
    """CPU seconds (this thread) to call ``fn`` on every item; the results (None: EventError)."""
    out: list[Any] = []
    append = out.append
    started = time.thread_time()
    for item in items:
        try:
            append(fn(item))
        except EventError:
            append(None)
    return time.thread_time() - started, out


def _in_process(
    settings: Settings, schemas: SchemaSet, records: Sequence[BenchRecord], result: Breakdown
) -> None:
    """One measurement of every in-process step, added to ``result``."""
    n = len(records)
    now_ms = int(time.time() * 1000)

    # -- ingest -------------------------------------------------------------------------------
    decoder = EventDecoder(schemas, max_bytes=settings.max_message_bytes)
    secs, decoded = _loop(lambda r: decoder.decode(r.value), records)
    result.add("ingest", "decode input (Avro → dict)", secs, n)
    ok = [(r, d) for r, d in zip(records, decoded, strict=True) if d is not None]
    rules = QualityRules.from_settings(settings)

    def validate(pair: tuple[BenchRecord, DecodedEvent]) -> tuple[BenchRecord, DecodedEvent]:
        check_event(pair[1].event, rules, now_ms)
        return pair

    secs, checked = _loop(validate, ok)
    result.add("ingest", "validate (quality rules)", secs, len(ok))
    passed: list[DecodedEvent] = [c[1] for c in checked if c is not None]
    rejected = [r for r, d in zip(records, decoded, strict=True) if d is None]
    rejected += [pair[0] for pair, c in zip(ok, checked, strict=True) if c is None]
    dedupe = Deduplicator(int(settings.dedupe_window_s * 1000), {})
    started = time.thread_time()
    fresh = [
        d
        for o, d in enumerate(passed)
        if not dedupe.is_duplicate(d.event["event_id"], 0, o, now_ms=now_ms)
    ]
    result.add("ingest", "de-duplicate (in memory)", time.thread_time() - started, len(passed))
    valid_encoder = Encoder.for_record(schemas, "ViewingEvent", settings.output_format, check=False)
    secs, _ = _loop(lambda d: valid_encoder.encode(d.event), fresh)
    result.add("ingest", "encode valid record", secs, len(fresh))
    dead_encoder = Encoder.for_record(schemas, "DeadLetter", settings.output_format, check=False)
    error = EventError("benchmark")
    secs, _ = _loop(
        lambda r: build_dead_letter(dead_encoder, r.value, r.key, "t", 0, 0, now_ms, now_ms, error),
        rejected,
    )
    result.add("ingest", "build dead letters", secs, len(rejected))
    processor = IngestProcessor(
        settings, schemas, Deduplicator(int(settings.dedupe_window_s * 1000), {})
    )
    parts = sum(s.seconds for s in result.steps if s.stage == "ingest")
    started = time.thread_time()
    outcomes = [
        processor.process(r.value, r.key, "t", 0, i, now_ms, now_ms) for i, r in enumerate(records)
    ]
    whole = time.thread_time() - started
    result.add("ingest", "IngestProcessor.process (all)", whole, n)
    result.add("ingest", "ingest bookkeeping (outcome, headers)", max(0.0, whole - parts), n)

    # -- model (and drift, as the model agent runs them) ----------------------------------------
    valid = [o for o in outcomes if o.kind == "valid"]
    model_decoder = EventDecoder(schemas, max_bytes=1 << 30)
    secs, events = _loop(lambda o: model_decoder.decode(o.value).event, valid)
    result.add("model", "decode valid record", secs, len(valid))
    clock = _Clock()
    learner = PartitionLearner.from_settings(settings)
    drift = PartitionDrift.from_settings(learner, settings, partition=0)
    restore = _instrument(learner, clock)
    outs: list[PredictionOut] = []
    signals = 0
    started, started_wall = time.thread_time(), time.perf_counter()
    for offset, event in enumerate(events):
        if event is None:
            continue
        try:
            predicted, raised = drift.process(event, offset=offset)
        except EventError:
            continue
        outs.extend(predicted)
        signals += len(raised)
    whole = time.thread_time() - started
    # Per-call timers are wall clock: scale them by this loop's CPU / wall ratio, so that
    # preemption by other processes drops out.
    scale = whole / max(time.perf_counter() - started_wall, 1e-9)
    if restore is not None:
        restore()
    result.add("model", "PartitionDrift.process (all)", whole, len(events))
    cpu = {name: ns * scale / 1e9 for name, ns in clock.ns.items()}
    if restore is not None:
        inside = 0.0
        for name in sorted(cpu):
            if name in (_LEARNER, _LABEL_HOOK):
                continue
            result.add("model", name, cpu[name], clock.calls[name])
            inside += cpu[name]
        hook = cpu.get(_LABEL_HOOK, 0.0)
        result.add("drift", _LABEL_HOOK, hook, clock.calls[_LABEL_HOOK])
        learner_s = cpu.get(_LEARNER, whole)
        result.add(
            "model",
            "learner bookkeeping: sessions, feature state, metrics",
            max(0.0, learner_s - inside - hook),
            len(events),
        )
        result.add(
            "drift",
            "data drift + response policies (rest of PartitionDrift.process)",
            max(0.0, whole - learner_s),
            len(events),
        )
    encode_prediction = Encoder.for_record(
        schemas, "Prediction", settings.output_format, check=False
    ).encode
    secs, _ = _loop(lambda out: encode_prediction(_prediction_record(out)), outs)
    result.add("model", "build + encode prediction records", secs, len(outs))
    signer = signer_from(settings)
    started = time.thread_time()
    snapshot_partition(
        learner,
        0,
        namespace="bench",
        source_offsets={"t:0": n},
        signer=signer,
        schemas=schemas,
        extra={DRIFT_STATE: drift.export_state()},
    )
    one = time.thread_time() - started
    # A partition is snapshotted every snapshot_every_events of its events.
    every = settings.snapshot_every_events
    result.add("model", "snapshot, every snapshot_every_events (amortised)", one * n / every, 1)

    dead = sum(1 for o in outcomes if o.kind == "dead")
    result.sends_per_event = {
        "valid": len(valid) / n,
        "dead_letters": dead / n,
        "predictions": len(outs) / n,
        "drift_signals": signals / n,
        # the ingest agent writes each new event id to its table's changelog
        "dedupe_changelog": len(valid) / n,
    }


def _median_steps(measurements: Sequence[Breakdown]) -> list[Step]:
    """Each step's median over the measurements (the steps come in the same order)."""
    first = measurements[0]
    merged = []
    for i, step in enumerate(first.steps):
        same = [m.steps[i] for m in measurements if len(m.steps) > i]
        merged.append(
            Step(
                step.stage,
                step.name,
                statistics.median(s.seconds for s in same),
                step.calls,
                step.events,
            )
        )
    return merged


def measure_breakdown(
    settings: Settings,
    records: Sequence[BenchRecord],
    *,
    repeats: int = 3,
    kafka: bool = True,
    say: Callable[[str], None] | None = None,
) -> Breakdown:
    """Time every step on (at most :data:`MAX_RECORDS` of) ``records``; see the module doc.

    With ``kafka``, the client probes write to and read from a fresh topic named after
    ``settings.app_id`` on ``settings.bootstrap_servers``.
    """
    records = list(records[:MAX_RECORDS])
    schemas = load_schemas(settings.schemas_path)
    measurements = []
    for i in range(repeats):
        if say:
            say(f"breakdown {i + 1}/{repeats}: ingest, model and drift steps on "
                f"{len(records):,} records ...")  # fmt: skip
        one = Breakdown(events=len(records))
        _in_process(settings, schemas, records, one)
        if kafka:
            _probe_clients(settings, records, one, say)
        measurements.append(one)
    result = Breakdown(
        events=len(records),
        repeats=repeats,
        steps=_median_steps(measurements),
        sends_per_event=measurements[0].sends_per_event,
    )
    return result


def _prediction_record(out: PredictionOut) -> dict[str, Any]:
    return prediction_record(
        out,
        partition=0,
        predicted_at_ms=out.event_time,
        latency_s=0.0,
        input_fingerprint="0" * 16,
    )


def _probe_clients(
    settings: Settings,
    records: Sequence[BenchRecord],
    result: Breakdown,
    say: Callable[[str], None] | None,
) -> None:
    """Per-record CPU cost of the Kafka clients: Faust send, confluent-kafka produce, consume."""
    from confluent_kafka import Consumer, TopicPartition

    from streamproc.kafka.clients import client_config, quiet_client_logger

    probe = records[:PROBE_RECORDS]
    topic = f"{settings.app_id}-probe-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, [TopicSpec(topic, settings.partitions, settings.replication_factor)])
    if say:
        say(f"breakdown: Kafka client probes ({len(probe):,} records each) ...")
    secs = asyncio.run(_faust_send(settings, topic, probe))
    result.add(
        "kafka", "Faust topic.send, awaited (per output record)", secs, len(probe), probe=True
    )

    producer = _plain_producer(settings)
    started = time.process_time()
    for r in probe:
        producer.produce(topic, r.value, r.key)
        producer.poll(0)
    producer.flush(30)
    result.add(
        "kafka",
        "confluent-kafka produce + poll(0) (per output record)",
        time.process_time() - started,
        len(probe),
        probe=True,
    )

    reader = {"group.id": f"{topic}-reader", "enable.auto.commit": False}
    consumer = Consumer(client_config(settings, **reader, logger=quiet_client_logger()))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
    # the Faust probe's records (with its warm-up) and the confluent-kafka probe's
    wanted = 2 * len(probe) + min(len(probe), FAUST_WARMUP)
    got = 0
    started = time.process_time()
    deadline = time.monotonic() + 60
    while got < wanted and time.monotonic() < deadline:
        got += sum(1 for m in consumer.consume(500, 0.5) if m.error() is None)
    result.add(
        "kafka",
        "confluent-kafka consume(500) (per input record)",
        time.process_time() - started,
        max(got, 1),
        probe=True,
    )
    consumer.close()


def _plain_producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    from streamproc.kafka.clients import client_config, quiet_client_logger

    return Producer(
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


async def _faust_send(settings: Settings, topic: str, records: Sequence[BenchRecord]) -> float:
    """CPU seconds to send ``records`` one ``await topic.send`` at a time, as the agents do."""
    import faust

    servers = ";".join(f"kafka://{s}" for s in settings.bootstrap_servers.split(","))
    app = faust.App(
        f"{topic}-faust",
        broker=servers,
        producer_linger_ms=settings.producer_linger_ms,
        producer_acks=-1,
        web_enabled=False,
        loghandlers=[],
    )
    channel = app.topic(topic, key_serializer="raw", value_serializer="raw")
    await app.producer.start()
    try:
        # The first sends wait for metadata and connections: warm up outside the timing.
        for r in records[:FAUST_WARMUP]:
            await channel.send(key=r.key, value=r.value)
        await app.producer.flush()
        started = time.process_time()
        for r in records:
            await channel.send(key=r.key, value=r.value)
        await app.producer.flush()
        return time.process_time() - started
    finally:
        await app.producer.stop()
