"""Restore a partition's learner from its latest snapshot, then catch up to the stream.

A worker that gets a partition (start, restart, rebalance) loads the newest verified snapshot
of the shared feature state and of every model (at the serving version named by the model's
control record, else the newest version), then learns - without emitting anything - from the
valid events between the snapshot's offset and the first offset the consumer delivers. So a
crash loses no learning: what the snapshot missed is replayed from the topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from streamproc.config import Settings
from streamproc.errors import EventError, SnapshotError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.schemas import SchemaSet
from streamproc.kafka.clients import client_config
from streamproc.learning.partition import PartitionLearner
from streamproc.registry.signing import Signer
from streamproc.registry.snapshots import SHARED_MODEL, Snapshot
from streamproc.registry.store import load_registry

__all__ = ["SHARED_MODEL", "RestoredPartition", "choose_snapshots", "restore_partitions"]

logger = logging.getLogger(__name__)


@dataclass
class RestoredPartition:
    """A partition's learner, ready to process the offset ``next_offset``."""

    learner: PartitionLearner
    next_offset: int
    from_snapshot: bool
    replayed: int


def choose_snapshots(
    snapshots: dict[str, Snapshot],
    controls: dict[str, dict[str, object]],
    namespace: str,
    partition: int,
) -> dict[str, Snapshot]:
    """Model name -> the snapshot to serve for ``partition`` (shared state under its name)."""
    by_model: dict[str, list[Snapshot]] = {}
    for snap in snapshots.values():
        meta = snap.meta
        if meta.namespace == namespace and meta.partition == partition:
            by_model.setdefault(meta.model, []).append(snap)
    chosen: dict[str, Snapshot] = {}
    for model, snaps in by_model.items():
        wanted = controls.get(model, {}).get("serve_version")
        pick = None
        if isinstance(wanted, int):
            pick = next((s for s in snaps if s.meta.version == wanted), None)
            if pick is None:
                logger.warning(
                    "partition %d: no snapshot of %s v%s to serve; using the newest version",
                    partition,
                    model,
                    wanted,
                )
        if pick is None:
            pick = max(snaps, key=lambda s: (s.meta.version, s.meta.created_at))
        chosen[model] = pick
    return chosen


def restore_partitions(
    settings: Settings,
    schemas: SchemaSet,
    signer: Signer,
    first_offsets: dict[int, int],
    new_learner: Callable[[], PartitionLearner],
    on_refused: Callable[[str, SnapshotError], None] | None = None,
) -> dict[int, RestoredPartition]:
    """Learners for ``first_offsets`` (partition -> first offset the consumer delivers)."""
    snapshots, controls = load_registry(settings, schemas, signer, on_refused=on_refused)
    decoder = EventDecoder(schemas, max_bytes=1 << 30)
    out: dict[int, RestoredPartition] = {}
    for partition, first in first_offsets.items():
        learner = new_learner()
        chosen = choose_snapshots(snapshots, controls, settings.model_namespace, partition)
        shared = chosen.pop(SHARED_MODEL, None)
        if shared is None:
            out[partition] = RestoredPartition(learner, first, False, 0)
            continue
        learner.import_shared(shared.state)
        for model, snap in chosen.items():
            if model in learner.versions:
                learner.import_model(model, snap.state, snap.meta.version)
        start = shared.meta.source_offsets.get(f"{settings.topic_valid}:{partition}", first)
        replayed = 0
        if start < first:
            replayed = _catch_up(settings, decoder, learner, partition, start, first)
        out[partition] = RestoredPartition(learner, max(start, first), True, replayed)
    return out


def _catch_up(
    settings: Settings,
    decoder: EventDecoder,
    learner: PartitionLearner,
    partition: int,
    start: int,
    end: int,
) -> int:
    """Learn from valid events [start, end) of ``partition``, emitting nothing."""
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": "streamproc-restore",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    done = 0
    try:
        consumer.assign([TopicPartition(settings.topic_valid, partition, start)])
        idle = 0
        while True:
            batch = consumer.consume(500, 1.0)
            if not batch:
                idle += 1
                if idle > 10:
                    logger.warning(
                        "partition %d: catch-up stopped at %d of %d", partition, start + done, end
                    )
                    break
                continue
            idle = 0
            last = start
            for msg in batch:
                offset = msg.offset()
                if msg.error() is not None or offset is None or offset >= end:
                    continue
                last = offset
                try:
                    learner.process(decoder.decode(msg.value() or b"").event)
                except EventError as exc:
                    logger.warning("catch-up skipped %s", exc)
                done += 1
            if last >= end - 1:
                break
    finally:
        consumer.close()
    return done
