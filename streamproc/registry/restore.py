"""Restore a partition's learner from its latest snapshot, then catch up to the stream.

A worker that gets a partition (start, restart, rebalance) loads the newest verified snapshot
of the shared feature state, of the drift state and of every model, then learns - without
emitting anything - from the valid events between the snapshot's offset and the first offset
the consumer delivers. So a crash loses no learning: what the snapshot missed is replayed
from the topic, through the drift monitors and policies too when they are restored.

Which version of each model: the one serving when the drift state was written (the drift
state records it, and the models' snapshots were written with it), so a promotion or a
rollback survives the restart; control records not yet applied to the partition are then
applied by the worker. A snapshot without drift state (written before the worker kept one)
restores the version the model's control record names, else the newest version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streamproc.config import Settings
from streamproc.drift.partition import PartitionDrift
from streamproc.errors import EventError, SnapshotError
from streamproc.ingest.decode import EventDecoder
from streamproc.ingest.schemas import SchemaSet
from streamproc.kafka.clients import client_config
from streamproc.learning.partition import PartitionLearner
from streamproc.records import ViewingEvent
from streamproc.registry.signing import Signer
from streamproc.registry.snapshots import DRIFT_STATE, SHARED_MODEL, Snapshot, snapshot_key
from streamproc.registry.store import load_registry

__all__ = [
    "DRIFT_STATE",
    "SHARED_MODEL",
    "RestoredPartition",
    "choose_snapshots",
    "restore_partitions",
]

logger = logging.getLogger(__name__)


@dataclass
class RestoredPartition:
    """A partition's learner (and drift state), ready to process the offset ``next_offset``.

    Attributes
    ----------
    drift
        The partition's :class:`PartitionDrift` when ``restore_partitions`` was given
        ``new_drift`` (restored from the snapshot if ``drift_restored``, else fresh).
    controls
        The control records (model -> record) as they were when the partition was restored.
    """

    learner: PartitionLearner
    next_offset: int
    from_snapshot: bool
    replayed: int
    drift: PartitionDrift | None = None
    drift_restored: bool = False
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)


def choose_snapshots(
    snapshots: dict[str, Snapshot],
    controls: dict[str, dict[str, object]],
    namespace: str,
    partition: int,
    *,
    serving: Mapping[str, int] | None = None,
) -> dict[str, Snapshot]:
    """Model name -> the snapshot to serve for ``partition`` (shared state under its name).

    ``serving`` (model -> version, from the partition's drift state) comes first; then the
    version the model's control record names; then the newest version.
    """
    by_model: dict[str, list[Snapshot]] = {}
    for snap in snapshots.values():
        meta = snap.meta
        if meta.namespace == namespace and meta.partition == partition:
            by_model.setdefault(meta.model, []).append(snap)
    chosen: dict[str, Snapshot] = {}
    for model, snaps in by_model.items():
        pick = None
        recorded = (serving or {}).get(model)
        if recorded is not None:
            pick = next((s for s in snaps if s.meta.version == recorded), None)
            if pick is None:
                logger.warning(
                    "partition %d: no snapshot of %s v%d, the version its drift state records",
                    partition,
                    model,
                    recorded,
                )
        wanted = controls.get(model, {}).get("serve_version")
        if pick is None and isinstance(wanted, int) and serving is None:
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


def _drift_state(
    snapshots: dict[str, Snapshot], namespace: str, partition: int
) -> dict[str, Any] | None:
    """The partition's drift state, if it was written together with its shared state."""
    drift = snapshots.get(snapshot_key(namespace, DRIFT_STATE, partition, 1))
    shared = snapshots.get(snapshot_key(namespace, SHARED_MODEL, partition, 1))
    if drift is None or shared is None:
        return None
    if drift.meta.source_offsets != shared.meta.source_offsets:
        # A crash between the records of one snapshot: the detectors would not match the
        # learner's state, so they start fresh.
        logger.warning(
            "partition %d: drift state covers %s, the shared state %s; fresh drift detectors",
            partition,
            drift.meta.source_offsets,
            shared.meta.source_offsets,
        )
        return None
    state = drift.state
    if not (isinstance(state, dict) and isinstance(state.get("versions"), dict)):
        logger.warning("partition %d: unreadable drift state; fresh drift detectors", partition)
        return None
    return state


def restore_partitions(
    settings: Settings,
    schemas: SchemaSet,
    signer: Signer,
    first_offsets: dict[int, int],
    new_learner: Callable[[], PartitionLearner],
    on_refused: Callable[[str, SnapshotError], None] | None = None,
    *,
    new_drift: Callable[[PartitionLearner, int], PartitionDrift] | None = None,
) -> dict[int, RestoredPartition]:
    """Learners for ``first_offsets`` (partition -> first offset the consumer delivers).

    With ``new_drift`` (learner, partition -> a fresh :class:`PartitionDrift`), each
    partition also gets its drift state back, and the catch-up runs through it.
    """
    snapshots, controls = load_registry(settings, schemas, signer, on_refused=on_refused)
    decoder = EventDecoder(schemas, max_bytes=1 << 30)
    namespace = settings.model_namespace
    out: dict[int, RestoredPartition] = {}
    for partition, first in first_offsets.items():
        learner = new_learner()
        drift_state = _drift_state(snapshots, namespace, partition) if new_drift else None
        serving = drift_state["versions"] if drift_state is not None else None
        chosen = choose_snapshots(snapshots, controls, namespace, partition, serving=serving)
        chosen.pop(DRIFT_STATE, None)
        shared = chosen.pop(SHARED_MODEL, None)
        drift = new_drift(learner, partition) if new_drift is not None else None
        if shared is None:
            # No snapshot of this partition: what comes before the consumer's position was
            # learned by a worker that committed it but never snapshotted it (it crashed
            # first); learn it again from the topic's first record, emitting nothing.
            replayed = 0
            if first > 0:
                replay: Callable[[ViewingEvent, int], object] = (
                    drift.process if drift is not None else _learn_only(learner)
                )
                replayed = _catch_up(settings, decoder, replay, partition, 0, first)
            out[partition] = RestoredPartition(
                learner, first, False, replayed, drift, False, dict(controls)
            )
            continue
        learner.import_shared(shared.state)
        for model, snap in chosen.items():
            if model in learner.versions:
                learner.import_model(model, snap.state, snap.meta.version)
        restored = False
        if drift is not None:
            if drift_state is not None:
                try:
                    drift.import_state(drift_state)
                    restored = True
                except SnapshotError as exc:
                    logger.warning("partition %d: %s; fresh drift detectors", partition, exc)
            # New versions must not reuse a number a snapshot of this partition has.
            top: dict[str, int] = {}
            for snap in snapshots.values():
                meta = snap.meta
                if meta.namespace == namespace and meta.partition == partition:
                    top[meta.model] = max(top.get(meta.model, 0), meta.version)
            drift.reserve_versions(top)
        start = shared.meta.source_offsets.get(f"{settings.topic_valid}:{partition}", first)
        replayed = 0
        if start < first:
            process: Callable[[ViewingEvent, int], object] = (
                drift.process if drift is not None else _learn_only(learner)
            )
            replayed = _catch_up(settings, decoder, process, partition, start, first)
        out[partition] = RestoredPartition(
            learner, max(start, first), True, replayed, drift, restored, dict(controls)
        )
    return out


def _learn_only(learner: PartitionLearner) -> Callable[[ViewingEvent, int], object]:
    return lambda event, _offset: learner.process(event)


def _catch_up(
    settings: Settings,
    decoder: EventDecoder,
    process: Callable[[ViewingEvent, int], object],
    partition: int,
    start: int,
    end: int,
) -> int:
    """Process valid events [start, end) of ``partition``, emitting nothing."""
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
                    process(decoder.decode(msg.value() or b"").event, offset)
                except EventError as exc:
                    logger.warning("catch-up skipped %s", exc)
                done += 1
            if last >= end - 1:
                break
    finally:
        consumer.close()
    return done
