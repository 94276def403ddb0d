"""Versioned, signed model snapshots: encode, verify and read them on the compacted topic.

Each snapshot is a ``ModelSnapshot`` Avro record (``schemas/model_snapshot``) keyed by
``<namespace>/<model>/<partition>/v<version>``: compaction keeps the newest snapshot of every
version, so older versions stay available for rollback. The signature is HMAC-SHA256 over a
canonical rendering of the metadata and the model bytes (see :mod:`.signing`); a snapshot is
unpickled only after it verifies.

A state that pickles to :data:`COMPRESS_ABOVE` bytes or more is stored zlib-compressed
(format ``pickle+zlib``; the signature covers the compressed bytes, checked before they are
decompressed): a partition's pending sessions grow with its concurrent sessions, and a
record must stay under the snapshot topic's ``max.message.bytes``.
"""

from __future__ import annotations

import io
import logging
import pickle
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import orjson
from fastavro import schemaless_reader, schemaless_writer

from streamproc.emit.encode import SINGLE_OBJECT_MARKER
from streamproc.errors import SnapshotError
from streamproc.ingest.schemas import SchemaSet
from streamproc.registry.signing import Signer

if TYPE_CHECKING:
    from streamproc.learning.partition import PartitionLearner

__all__ = [
    "DRIFT_STATE",
    "SHARED_MODEL",
    "Snapshot",
    "SnapshotMeta",
    "decode_snapshot",
    "encode_snapshot",
    "latest_snapshots",
    "snapshot_key",
    "snapshot_partition",
]

logger = logging.getLogger(__name__)

_DOMAIN = b"streamproc-snapshot-v1\n"

#: The snapshot "model" that carries a partition's shared feature state and pending sessions.
SHARED_MODEL = "_features"
#: The snapshot "model" that carries a partition's drift state: detectors, episodes, data
#: windows, an in-flight challenger or guard, the control records applied, and the versions
#: serving when it was written (see :class:`~streamproc.drift.partition.PartitionDrift`).
DRIFT_STATE = "_drift"


def snapshot_key(namespace: str, model: str, partition: int, version: int) -> str:
    """The compaction key of a snapshot.

    >>> snapshot_key("live", "engagement", 3, 2)
    'live/engagement/3/v2'
    """
    return f"{namespace}/{model}/{partition}/v{version}"


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot is and what it covers."""

    model: str
    partition: int
    version: int
    events_seen: int
    source_offsets: dict[str, int]  # "topic:partition" -> next offset not yet covered
    metrics: dict[str, float] = field(default_factory=dict)
    namespace: str = "live"
    created_at: int = 0  # epoch ms; 0 = now, at encoding

    @property
    def key(self) -> str:
        return snapshot_key(self.namespace, self.model, self.partition, self.version)

    def _signed_part(self, created_at: int, fmt: str) -> bytes:
        return orjson.dumps(
            {
                "model": self.model,
                "namespace": self.namespace,
                "partition": self.partition,
                "version": self.version,
                "created_at": created_at,
                "events_seen": self.events_seen,
                "source_offsets": self.source_offsets,
                "metrics": self.metrics,
                "format": fmt,
            },
            option=orjson.OPT_SORT_KEYS,
        )


@dataclass(frozen=True)
class Snapshot:
    """A verified snapshot: its metadata and the unpickled state."""

    meta: SnapshotMeta
    state: Any
    key_id: str


#: Pickled states of this many bytes or more are stored zlib-compressed (``pickle+zlib``).
COMPRESS_ABOVE = 256 * 1024
#: A compressed state that inflates beyond this is refused (it was signed, but be safe).
MAX_STATE_BYTES = 1 << 30
FORMATS = ("pickle", "pickle+zlib")


def encode_snapshot(
    meta: SnapshotMeta, state: Any, signer: Signer, schemas: SchemaSet
) -> tuple[bytes, bytes]:
    """``(key, value)`` of a snapshot record carrying ``state`` (pickled) signed by ``signer``.

    States of :data:`COMPRESS_ABOVE` bytes or more are compressed (format ``pickle+zlib``).
    """
    model_bytes = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    fmt = "pickle"
    if len(model_bytes) >= COMPRESS_ABOVE:
        model_bytes, fmt = zlib.compress(model_bytes, 1), "pickle+zlib"
    created_at = meta.created_at or int(time.time() * 1000)
    signature = signer.sign(_DOMAIN + meta._signed_part(created_at, fmt) + b"\n" + model_bytes)
    version = schemas.latest("ModelSnapshot")
    record = {
        "model": meta.model,
        "namespace": meta.namespace,
        "partition": meta.partition,
        "version": meta.version,
        "created_at": created_at,
        "events_seen": meta.events_seen,
        "source_offsets": meta.source_offsets,
        "metrics": meta.metrics,
        "format": fmt,
        "model_bytes": model_bytes,
        "signature": signature,
    }
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER + version.fingerprint)
    schemaless_writer(buf, version.parsed, record)
    return meta.key.encode(), buf.getvalue()


def _inflate(data: bytes, key: str) -> bytes:
    """Decompress a verified ``pickle+zlib`` state, at most :data:`MAX_STATE_BYTES`."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_STATE_BYTES)
    except zlib.error as exc:
        raise SnapshotError(f"snapshot {key}: cannot decompress the state: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise SnapshotError(
            f"snapshot {key}: the compressed state is truncated or inflates beyond "
            f"{MAX_STATE_BYTES} bytes"
        )
    return out


def read_snapshot_record(raw: bytes, schemas: SchemaSet) -> dict[str, Any]:
    """The ModelSnapshot record in ``raw``, not yet verified (never unpickled here)."""
    if raw[:2] != SINGLE_OBJECT_MARKER:
        raise SnapshotError("not a single-object Avro record (expected marker c3 01)")
    writer = schemas.by_fingerprint.get(raw[2:10])
    if writer is None or writer.short_name != "ModelSnapshot":
        raise SnapshotError(f"schema fingerprint {raw[2:10].hex()} is not a ModelSnapshot")
    try:
        # A record schema always decodes to a dict.
        record = cast(
            dict[str, Any],
            schemaless_reader(
                io.BytesIO(raw[10:]), writer.parsed, schemas.latest("ModelSnapshot").parsed
            ),
        )
    except Exception as exc:
        raise SnapshotError(f"corrupt snapshot record: {type(exc).__name__}: {exc}") from exc
    return record


def decode_snapshot(raw: bytes, signer: Signer, schemas: SchemaSet) -> Snapshot:
    """Verify and unpickle a snapshot record.

    Raises
    ------
    SnapshotError
        If the record is corrupt, unsigned, signed with an unknown key or altered. The
        model bytes are never unpickled in that case.
    """
    record = read_snapshot_record(raw, schemas)
    meta = SnapshotMeta(
        model=record["model"],
        partition=record["partition"],
        version=record["version"],
        events_seen=record["events_seen"],
        source_offsets=dict(record["source_offsets"]),
        metrics=dict(record["metrics"]),
        namespace=record["namespace"],
        created_at=record["created_at"],
    )
    if record["format"] not in FORMATS:
        raise SnapshotError(
            f"snapshot {meta.key}: unsupported format {record['format']!r} "
            f"(expected one of {', '.join(FORMATS)})"
        )
    message = _DOMAIN + meta._signed_part(meta.created_at, record["format"]) + b"\n"
    try:
        key_id = signer.verify(message + record["model_bytes"], record["signature"])
    except SnapshotError as exc:
        raise SnapshotError(f"snapshot {meta.key} refused: {exc}") from None
    payload = record["model_bytes"]
    if record["format"] == "pickle+zlib":
        payload = _inflate(payload, meta.key)
    try:
        state = pickle.loads(payload)
    except Exception as exc:
        raise SnapshotError(f"snapshot {meta.key}: cannot unpickle: {exc}") from exc
    return Snapshot(meta, state, key_id)


def snapshot_partition(
    learner: PartitionLearner,
    partition: int,
    *,
    namespace: str,
    source_offsets: dict[str, int],
    signer: Signer,
    schemas: SchemaSet,
    created_at: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> list[tuple[str, bytes, bytes]]:
    """``(model, key, value)`` snapshot records of every model of a partition and its shared
    feature state (under the model name ``_features``), all covering ``source_offsets``.

    ``extra`` adds more signed components of the partition's state, name -> state (version
    1, like the shared state), e.g. ``{DRIFT_STATE: drift.export_state()}``.
    """
    metrics = learner.metrics()
    # The live state (no copy): it is pickled below, before anything can change it.
    states: list[tuple[str, int, Any, dict[str, float]]] = [
        (SHARED_MODEL, 1, learner.export_shared(copy=False), {})
    ]
    states += [(name, 1, state, {}) for name, state in (extra or {}).items()]
    states += [
        (name, version, learner.export_model(name, copy=False), metrics.get(name, {}))
        for name, version in learner.versions.items()
    ]
    records = []
    for name, version, state, model_metrics in states:
        meta = SnapshotMeta(
            model=name,
            partition=partition,
            version=version,
            events_seen=learner.events_seen,
            source_offsets=source_offsets,
            metrics={k: float(v) for k, v in model_metrics.items()},
            namespace=namespace,
            created_at=created_at,
        )
        key, value = encode_snapshot(meta, state, signer, schemas)
        records.append((name, key, value))
    return records


def latest_snapshots(
    records: Iterable[tuple[bytes | None, bytes | None]],
    signer: Signer,
    schemas: SchemaSet,
    *,
    on_refused: Any = None,
) -> dict[str, Snapshot]:
    """The newest verified snapshot per key among ``(key, value)`` records in topic order.

    Refused snapshots are reported to ``on_refused(key, error)`` and skipped, so the last
    good version stays in place.
    """
    latest: dict[str, Snapshot] = {}
    for key, value in records:
        if key is None or value is None:
            continue
        name = key.decode("utf-8", "replace")
        try:
            snap = decode_snapshot(value, signer, schemas)
        except SnapshotError as exc:
            logger.warning("refused snapshot %s: %s", name, exc)
            if on_refused is not None:
                on_refused(name, exc)
            continue
        if snap.meta.key != name:
            logger.warning("refused snapshot %s: its metadata names %s", name, snap.meta.key)
            if on_refused is not None:
                on_refused(name, SnapshotError(f"key {name} does not match {snap.meta.key}"))
            continue
        latest[name] = snap
    return latest
