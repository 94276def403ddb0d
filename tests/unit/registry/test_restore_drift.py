"""restore_partitions with and without a drift state in the snapshots (no broker).

The registry read (``load_registry``) is replaced by the verified snapshots of records made
here; everything else is the code the worker runs. The snapshots cover the first offset the
consumer delivers, so there is nothing to catch up.
"""

from __future__ import annotations

from typing import Any

import pytest

from streamproc.config import Settings
from streamproc.drift.data import DataDriftMonitor
from streamproc.drift.partition import PartitionDrift
from streamproc.ingest.schemas import SchemaSet
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.learning.specs import get_model_specs
from streamproc.registry.restore import restore_partitions
from streamproc.registry.signing import Signer, parse_keys
from streamproc.registry.snapshots import (
    DRIFT_STATE,
    SnapshotMeta,
    encode_snapshot,
    latest_snapshots,
    snapshot_partition,
)

SIGNER = Signer(parse_keys("test:0123456789abcdef"))
MODELS = "engagement,qoe,affinity"


def _learner() -> PartitionLearner:
    return PartitionLearner(get_model_specs(MODELS), seed=42)


def _new_drift(learner: PartitionLearner, partition: int) -> PartitionDrift:
    return PartitionDrift(learner, partition=partition, data=DataDriftMonitor())


def test_old_and_new_snapshots_restore(
    settings: Settings, schemas: SchemaSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    offsets = {p: {f"{settings.topic_valid}:{p}": 500} for p in (0, 1)}
    # Partition 0: a snapshot from before the drift state existed.
    records = snapshot_partition(
        _learner(), 0, namespace="live", source_offsets=offsets[0], signer=SIGNER, schemas=schemas
    )
    # Partition 1: with a drift state whose monitor has seen labels and a control applied;
    # and a v3 of qoe exists (an older promotion) while v1 serves.
    drift = _new_drift(_learner(), 1)
    for i in range(50):
        drift.monitors["qoe"].update_label(
            LabelOut("qoe", 1, "session", f"s{i}", "u", "t", i, 0.01, 0.02, False)
        )
    drift.controls_applied["qoe"] = "c7"
    records += snapshot_partition(
        drift.learner,
        1,
        namespace="live",
        source_offsets=offsets[1],
        signer=SIGNER,
        schemas=schemas,
        extra={DRIFT_STATE: drift.export_state()},
    )
    meta = SnapshotMeta("qoe", 1, 3, 0, offsets[1], namespace="live")
    records.append(("qoe", *encode_snapshot(meta, _learner().export_model("qoe"), SIGNER, schemas)))
    controls = {"qoe": {"serve_version": 3, "at": 1, "id": "c7"}}

    def registry(*_: Any, **__: Any) -> Any:
        return latest_snapshots(((k, v) for _, k, v in records), SIGNER, schemas), controls

    monkeypatch.setattr("streamproc.registry.restore.load_registry", registry)
    restored = restore_partitions(
        settings, schemas, SIGNER, {0: 500, 1: 500}, _learner, new_drift=_new_drift
    )

    old = restored[0]
    assert old.from_snapshot and not old.drift_restored and old.drift is not None
    assert old.drift.monitors["qoe"].labels_seen == 0  # fresh detectors
    # Without a drift state the control record still picks the version (v3 has no
    # snapshot on partition 0, so the newest, v1).
    assert old.learner.versions["qoe"] == 1
    assert old.controls == controls

    new = restored[1]
    assert new.from_snapshot and new.drift_restored and new.drift is not None
    assert new.drift.monitors["qoe"].labels_seen == 50
    assert new.drift.controls_applied == {"qoe": "c7"}
    # The drift state recorded v1 as serving: neither the control (v3) nor the newest wins.
    assert new.learner.versions["qoe"] == 1
    assert new.drift.policies["qoe"].top_version == 3  # a promotion here makes v4
    assert (old.next_offset, new.next_offset, new.replayed) == (500, 500, 0)


def test_without_new_drift_nothing_changes(
    settings: Settings, schemas: SchemaSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = snapshot_partition(
        _learner(), 0, namespace="live", source_offsets={}, signer=SIGNER, schemas=schemas
    )

    def registry(*_: Any, **__: Any) -> Any:
        return latest_snapshots(((k, v) for _, k, v in records), SIGNER, schemas), {}

    monkeypatch.setattr("streamproc.registry.restore.load_registry", registry)
    restored = restore_partitions(settings, schemas, SIGNER, {0: 0, 2: 7}, _learner)
    assert restored[0].from_snapshot and restored[0].drift is None
    assert not restored[2].from_snapshot and restored[2].next_offset == 7
