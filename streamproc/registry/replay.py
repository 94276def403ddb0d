"""Rebuild models from the valid-events topic, deterministically, into another namespace.

Each partition of the valid topic is read in offset order from the start (or an offset) and
fed to a fresh :class:`~streamproc.learning.partition.PartitionLearner` seeded from the
settings, inside the same :class:`~streamproc.drift.partition.PartitionDrift` (drift
monitors, challenger, promotion, rollback) as the live model agent: the same code path and
order. With the same input, seed and drift settings, the predictions are identical to the
live ones (and to any other replay), and the snapshots carry identical model bytes. The
replay's drift signals are counted, not sent; manual controls (operator actions, not in the
input) are not replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.errors import EventError, KafkaError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.schemas import load_schemas
from streamproc.kafka.clients import client_config
from streamproc.learning.partition import PartitionLearner, PredictionOut
from streamproc.learning.specs import get_model_specs
from streamproc.registry.snapshots import DRIFT_STATE, snapshot_partition
from streamproc.registry.store import signer_from

__all__ = ["ReplayResult", "replay_models"]

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """What a replay did."""

    namespace: str
    events: int = 0
    predictions: int = 0
    signals: int = 0
    snapshots: int = 0
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> events
    metrics: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)


def _prediction_line(partition: int, out: PredictionOut) -> bytes:
    return orjson.dumps(
        {
            "event_id": out.event_id,
            "model": out.model,
            "model_version": out.model_version,
            "partition": partition,
            "score": out.score,
            "scores": out.scores,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def replay_models(
    settings: Settings,
    namespace: str,
    *,
    from_offset: int = 0,
    predictions_out: Path | None = None,
    write_snapshots: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Rebuild every partition's models from the valid topic into ``namespace``.

    Parameters
    ----------
    namespace
        Snapshot namespace to write (must differ from the live one).
    from_offset
        First offset of each partition to learn from.
    predictions_out
        Write every prediction as a JSON line here (sorted keys; for comparisons).
    write_snapshots
        Write signed snapshots of the rebuilt models to the snapshots topic.
    """
    if namespace == settings.model_namespace:
        raise KafkaError(
            f"replay namespace {namespace!r} is the live one; choose another (e.g. replay-1)"
        )
    schemas = load_schemas(settings.schemas_path)
    decoder = EventDecoder(schemas, max_bytes=1 << 30)
    specs = get_model_specs(settings.models)
    result = ReplayResult(namespace)
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"streamproc-replay-{namespace}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            },
        )
    )
    out: IO[bytes] | None = predictions_out.open("wb") if predictions_out else None
    drifts: dict[int, PartitionDrift] = {}
    ends: dict[int, int] = {}
    try:
        meta = consumer.list_topics(settings.topic_valid, timeout=10.0).topics.get(
            settings.topic_valid
        )
        if meta is None or meta.error is not None:
            raise KafkaError(f"topic {settings.topic_valid!r} does not exist")
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.topic_valid, partition), timeout=10.0
            )
            start = max(low, from_offset)
            if high <= start:
                continue
            learner = PartitionLearner(
                specs,
                completion_threshold=settings.completion_threshold,
                session_timeout_ms=int(settings.session_timeout_s * 1000),
                timeout_policy=settings.session_timeout_policy,
                seed=settings.seed,
            )
            drift = PartitionDrift.from_settings(learner, settings, partition=partition)
            drifts[partition] = drift
            ends[partition] = high
            done = _replay_partition(
                consumer,
                settings.topic_valid,
                partition,
                start,
                high,
                decoder,
                drift,
                out,
                result,
            )
            result.partitions[partition] = done
            result.events += done
            result.metrics[partition] = learner.metrics()
            if progress is not None:
                progress(result.events)
    finally:
        consumer.close()
        if out is not None:
            out.close()
    if write_snapshots and drifts:
        result.snapshots = _write_snapshots(settings, namespace, drifts, ends)
    return result


def _replay_partition(
    consumer: Any,
    topic: str,
    partition: int,
    start: int,
    end: int,
    decoder: EventDecoder,
    drift: PartitionDrift,
    out: IO[bytes] | None,
    result: ReplayResult,
) -> int:
    consumer.assign([TopicPartition(topic, partition, start)])
    done = 0
    position = start
    idle = 0
    while position < end:
        batch = consumer.consume(1000, 1.0)
        if not batch:
            idle += 1
            if idle > 30:
                raise KafkaError(f"replay of {topic}[{partition}] stalled at offset {position}")
            continue
        idle = 0
        for msg in batch:
            if msg.error() is not None or msg.offset() >= end:
                continue
            position = msg.offset() + 1
            done += 1
            try:
                event = decoder.decode(msg.value() or b"").event
                outs, signals = drift.process(event, offset=msg.offset())
            except EventError as exc:
                logger.warning("replay skipped %s[%d]@%d: %s", topic, partition, msg.offset(), exc)
                continue
            result.predictions += len(outs)
            result.signals += len(signals)
            if out is not None:
                for o in outs:
                    out.write(_prediction_line(partition, o) + b"\n")
    consumer.unassign()
    return done


def _write_snapshots(
    settings: Settings,
    namespace: str,
    drifts: dict[int, PartitionDrift],
    ends: dict[int, int],
) -> int:
    from confluent_kafka import Producer

    schemas = load_schemas(settings.schemas_path)
    signer = signer_from(settings)
    producer = Producer(client_config(settings, **{"enable.idempotence": True, "acks": "all"}))
    count = 0
    for partition, drift in drifts.items():
        records = snapshot_partition(
            drift.learner,
            partition,
            namespace=namespace,
            source_offsets={f"{settings.topic_valid}:{partition}": ends[partition]},
            signer=signer,
            schemas=schemas,
            created_at=1,  # fixed: a replay's snapshots are identical byte for byte
            extra={DRIFT_STATE: drift.export_state()},
        )
        for _, key, value in records:
            producer.produce(settings.topic_snapshots, key=key, value=value)
            producer.poll(0)
            count += 1
    if producer.flush(60.0):
        raise KafkaError("replay snapshots were not all delivered")
    return count
