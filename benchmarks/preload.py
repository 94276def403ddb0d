"""The benchmark's input: simulated records, and a bulk producer that loads them into a topic.

The records come from :func:`streamproc.simulate.simulate_events` (Avro single-object
encoding, invalid records and duplicates mixed in as in the demo), are generated once per
invocation and loaded unchanged into a fresh topic for each measurement, so every run reads
the same bytes with the same keys. The bulk producer is a confluent-kafka ``Producer``
configured like :class:`streamproc.produce.EventProducer` (idempotent, ``acks=all``) but
with a long linger and big batches, so loading is much faster than processing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streamproc.config import Settings
from streamproc.errors import KafkaError
from streamproc.kafka.clients import client_config, quiet_client_logger
from streamproc.simulate import SimParams, Simulation, simulate_events

__all__ = [
    "BenchRecord",
    "LoadResult",
    "Workload",
    "bench_simulation",
    "build_workload",
    "end_offsets",
    "extra_records",
    "load_records",
    "topic_record_count",
]

#: Fractions of invalid records and duplicates in the simulated stream (the demo's defaults).
INVALID_FRACTION = 0.03
DUPLICATE_FRACTION = 0.01

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One input record: key, value, and what the simulator made it."""

    key: bytes
    value: bytes
    event_id: str | None
    kind: str  # valid | invalid | duplicate
    play: bool  # a valid play event: the model agent predicts on it


@dataclass
class Workload:
    """The records of one invocation and what the pipeline must make of them."""

    records: list[BenchRecord]
    seed: int
    kinds: Counter[str] = field(init=False)

    def __post_init__(self) -> None:
        self.kinds = Counter(r.kind for r in self.records)

    @property
    def events(self) -> int:
        return len(self.records)

    @property
    def plays(self) -> int:
        """Valid play events: each gets one prediction per model."""
        return sum(1 for r in self.records if r.play)

    @property
    def mean_bytes(self) -> float:
        return sum(len(r.value) for r in self.records) / max(1, len(self.records))


def build_workload(settings: Settings, events: int, *, seed: int) -> Workload:
    """Exactly ``events`` simulated records: the start of a stream of ``events`` valid events.

    Invalid records and duplicates come on top of the valid ones in the simulator, so the
    stream is cut after ``events`` records (its last sessions end without their labels).

    Raises
    ------
    ValueError
        When ``events`` < 2.
    """
    if events < 2:
        raise ValueError(f"events must be at least 2, got {events}")
    return Workload(_simulate(settings, events, seed), seed=seed)


def extra_records(
    settings: Settings, count: int, *, seed: int, world_seed: int | None = None
) -> list[BenchRecord]:
    """``count`` more records from another seed (new sessions and event ids), e.g. for the
    latency runs; ``world_seed``: the viewers and titles of that seed's world (the workload's,
    so that the workers see more of the service they learned, not a changed one)."""
    return _simulate(settings, max(2, count), seed, world_seed=world_seed)[:count]


def bench_simulation(
    settings: Settings, events: int, seed: int, *, world_seed: int | None = None
) -> Simulation:
    """The bench's simulated stream: Avro, with the demo's invalid and duplicate fractions."""
    return simulate_events(
        SimParams(
            n_events=events,
            seed=seed,
            fmt="avro",
            invalid_fraction=INVALID_FRACTION,
            duplicate_fraction=DUPLICATE_FRACTION,
            world_seed=world_seed,
        ),
        settings,
    )


def _simulate(
    settings: Settings, events: int, seed: int, *, world_seed: int | None = None
) -> list[BenchRecord]:
    simulation = bench_simulation(settings, events, seed, world_seed=world_seed)
    taken: list[Any] = []
    for record in simulation:
        taken.append(record)
        if len(taken) >= events:
            break
    plays = {s.play_event_id for s in simulation.manifest.sessions}
    return [
        BenchRecord(r.key, r.value, r.event_id, r.kind, r.kind == "valid" and r.event_id in plays)
        for r in taken
    ]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """How the load went."""

    records: int
    seconds: float
    started_at: float  # time.monotonic() just before the first record was queued

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def bulk_producer(settings: Settings) -> Producer:
    """An idempotent ``acks=all`` producer with big batches (for loading, not for latency)."""
    return Producer(
        client_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "logger": quiet_client_logger(),
            },
        )
    )


def load_records(
    settings: Settings,
    topic: str,
    records: list[BenchRecord],
    *,
    say: Say | None = None,
    timeout: float = 120.0,
) -> LoadResult:
    """Write ``records`` to ``topic`` as fast as the broker takes them; wait for every ack.

    Raises
    ------
    KafkaError
        When a record is refused or not acknowledged within ``timeout`` seconds.
    """
    producer = bulk_producer(settings)
    failures: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.monotonic()
    last_say = started
    for i, record in enumerate(records, start=1):
        while True:
            try:
                producer.produce(topic, record.value, record.key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:
                raise KafkaError(f"could not queue a record for {topic!r}: {exc}") from exc
        if i % 1000 == 0:
            producer.poll(0)
            if say is not None and time.monotonic() - last_say > 2.0:
                last_say = time.monotonic()
                say(f"loading: {i:,} / {len(records):,} records queued")
    left = producer.flush(timeout)
    seconds = time.monotonic() - started
    if left or failures:
        raise KafkaError(
            f"loading {topic!r}: {len(failures)} record(s) refused and {left} not acknowledged "
            f"within {timeout:.0f} s (first error: {failures[0] if failures else 'timeout'})"
        )
    return LoadResult(len(records), seconds, started)


def end_offsets(settings: Settings, topic: str, *, timeout: float = 10.0) -> dict[int, int]:
    """partition -> log-end offset of ``topic``.

    Raises
    ------
    KafkaError
        When the topic does not exist or the offsets cannot be read.
    """
    admin = AdminClient(client_config(settings, logger=quiet_client_logger()))
    try:
        meta = admin.list_topics(topic, timeout=timeout)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None:
            raise KafkaError(f"topic {topic!r} does not exist")
        specs = {TopicPartition(topic, p): OffsetSpec.latest() for p in tmeta.partitions}
        futures = admin.list_offsets(specs, request_timeout=timeout)
        return {tp.partition: f.result(timeout=timeout + 5).offset for tp, f in futures.items()}
    except KafkaException as exc:
        raise KafkaError(f"cannot read the end offsets of {topic!r}: {exc}") from exc


def topic_record_count(settings: Settings, topic: str) -> int:
    """Records written to a fresh, non-compacted ``topic`` (the sum of its end offsets)."""
    return sum(end_offsets(settings, topic).values())
