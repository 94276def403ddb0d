"""Read and write the model-snapshots topic: snapshots, serving-version control records.

Besides snapshots (``<ns>/<model>/<partition>/v<version>``) the compacted topic carries one
control record per model, ``control/<ns>/<model>``: ``{"serve_version": V, "action": ...,
"id": ..., ...}`` (JSON). A manual rollback or promotion writes it; every worker applies it
within seconds to the partitions it owns, once per record and partition (the partition's
drift state remembers the record's :func:`control_token`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.config import Settings
from streamproc.errors import ConfigError, SnapshotError
from streamproc.ingest.schemas import SchemaSet
from streamproc.kafka.read import read_to_end
from streamproc.registry.signing import Signer, parse_keys
from streamproc.registry.snapshots import Snapshot, latest_snapshots, read_snapshot_record

__all__ = [
    "CONTROL_PREFIX",
    "SnapshotInfo",
    "control_key",
    "control_token",
    "list_snapshot_infos",
    "load_registry",
    "signer_from",
]

logger = logging.getLogger(__name__)

CONTROL_PREFIX = "control/"


def control_key(namespace: str, model: str) -> str:
    """Key of the serving-version control record of ``model``."""
    return f"{CONTROL_PREFIX}{namespace}/{model}"


def control_token(control: Mapping[str, Any]) -> str:
    """The identity of a control record: its ``id``, else its time and version.

    >>> control_token({"serve_version": 2, "at": 1700000000000, "id": "c1"})
    'c1'
    >>> control_token({"serve_version": 2, "at": 1700000000000})
    '1700000000000:2'
    """
    given = control.get("id")
    if isinstance(given, str) and given:
        return given
    return f"{control.get('at')}:{control.get('serve_version')}"


def signer_from(settings: Settings) -> Signer:
    """The snapshot signer configured by ``STREAMPROC_SNAPSHOT_KEYS``."""
    if settings.snapshot_keys is None:
        raise ConfigError(
            "STREAMPROC_SNAPSHOT_KEYS is not set: model snapshots must be signed. Set it to "
            "'key-id:secret' (a secret of at least 8 characters; keep it out of version control)"
        )
    return Signer(parse_keys(settings.snapshot_keys.get_secret_value()))


@dataclass(frozen=True)
class SnapshotInfo:
    """Metadata of one snapshot, read without unpickling (for listings)."""

    key: str
    model: str
    namespace: str
    partition: int
    version: int
    created_at: int
    events_seen: int
    source_offsets: dict[str, int]
    metrics: dict[str, float]
    size_bytes: int


def load_registry(
    settings: Settings,
    schemas: SchemaSet,
    signer: Signer,
    *,
    on_refused: Callable[[str, SnapshotError], None] | None = None,
) -> tuple[dict[str, Snapshot], dict[str, dict[str, Any]]]:
    """Every verified latest snapshot by key, and the control records by model."""
    records: list[tuple[bytes | None, bytes | None]] = []
    controls: dict[str, dict[str, Any]] = {}
    prefix = f"{CONTROL_PREFIX}{settings.model_namespace}/"
    for rec in read_to_end(settings, settings.topic_snapshots):
        if rec.key is None:
            continue
        key = rec.key.decode("utf-8", "replace")
        if key.startswith(CONTROL_PREFIX):
            if key.startswith(prefix) and rec.value:
                try:
                    controls[key[len(prefix) :]] = orjson.loads(rec.value)
                except orjson.JSONDecodeError:
                    logger.warning("ignoring malformed control record %s", key)
            continue
        records.append((rec.key, rec.value))
    return latest_snapshots(records, signer, schemas, on_refused=on_refused), controls


def list_snapshot_infos(settings: Settings, schemas: SchemaSet) -> list[SnapshotInfo]:
    """Metadata of the newest snapshot of every key (nothing is unpickled)."""
    latest: dict[str, SnapshotInfo] = {}
    for rec in read_to_end(settings, settings.topic_snapshots):
        if rec.key is None or rec.value is None:
            continue
        key = rec.key.decode("utf-8", "replace")
        if key.startswith(CONTROL_PREFIX):
            continue
        try:
            record = read_snapshot_record(rec.value, schemas)
        except SnapshotError as exc:
            logger.warning("unreadable snapshot %s: %s", key, exc)
            continue
        latest[key] = SnapshotInfo(
            key,
            record["model"],
            record["namespace"],
            record["partition"],
            record["version"],
            record["created_at"],
            record["events_seen"],
            dict(record["source_offsets"]),
            dict(record["metrics"]),
            len(record["model_bytes"]),
        )
    return sorted(latest.values(), key=lambda i: (i.namespace, i.model, i.version, i.partition))
