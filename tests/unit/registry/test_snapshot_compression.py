"""Large states are stored zlib-compressed, signed over the compressed bytes."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer

from streamproc.emit.encode import SINGLE_OBJECT_MARKER
from streamproc.errors import SnapshotError
from streamproc.ingest.schemas import load_schemas
from streamproc.registry import snapshots
from streamproc.registry.signing import Signer
from streamproc.registry.snapshots import (
    COMPRESS_ABOVE,
    SnapshotMeta,
    decode_snapshot,
    encode_snapshot,
    read_snapshot_record,
)

SCHEMAS = load_schemas(Path(__file__).resolve().parents[3] / "schemas")
SIGNER = Signer([("key-a", b"secret-of-key-a")])
META = SnapshotMeta("_features", 0, 1, 20_000, {"viewing-events-valid:0": 20_000})


def _big_state() -> dict[str, Any]:
    """Pending-session-like state that pickles to more than COMPRESS_ABOVE bytes."""
    return {f"s-{i:06d}": {"load": i / 7, "device=tv": 1.0} for i in range(20_000)}


def _encode(state: Any) -> bytes:
    return encode_snapshot(META, state, SIGNER, SCHEMAS)[1]


def _resigned(raw: bytes, model_bytes: bytes) -> bytes:
    """``raw`` with new model bytes and a valid signature over them."""
    record = read_snapshot_record(raw, SCHEMAS)
    message = snapshots._DOMAIN + META._signed_part(record["created_at"], record["format"]) + b"\n"
    record.update(model_bytes=model_bytes, signature=SIGNER.sign(message + model_bytes))
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER + SCHEMAS.latest("ModelSnapshot").fingerprint)
    schemaless_writer(buf, SCHEMAS.latest("ModelSnapshot").parsed, record)
    return buf.getvalue()


def test_a_large_state_is_compressed_and_round_trips() -> None:
    state = _big_state()
    assert len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)) >= COMPRESS_ABOVE
    raw = _encode(state)
    record = read_snapshot_record(raw, SCHEMAS)
    assert record["format"] == "pickle+zlib"
    assert len(raw) < len(pickle.dumps(state)) / 2
    assert decode_snapshot(raw, SIGNER, SCHEMAS).state == state


def test_a_small_state_stays_plain_pickle() -> None:
    raw = _encode({"weights": [0.5] * 10})
    assert read_snapshot_record(raw, SCHEMAS)["format"] == "pickle"
    assert decode_snapshot(raw, SIGNER, SCHEMAS).state == {"weights": [0.5] * 10}


def test_compressed_bytes_altered_after_signing_are_refused() -> None:
    raw = _encode(_big_state())
    record = read_snapshot_record(raw, SCHEMAS)
    altered = bytearray(record["model_bytes"])
    altered[100] ^= 0xFF
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER + SCHEMAS.latest("ModelSnapshot").fingerprint)
    schemaless_writer(
        buf, SCHEMAS.latest("ModelSnapshot").parsed, {**record, "model_bytes": bytes(altered)}
    )
    with pytest.raises(SnapshotError, match="refused"):
        decode_snapshot(buf.getvalue(), SIGNER, SCHEMAS)


def test_a_truncated_compressed_state_is_refused() -> None:
    raw = _encode(_big_state())
    compressed = read_snapshot_record(raw, SCHEMAS)["model_bytes"]
    with pytest.raises(SnapshotError, match="truncated or inflates beyond"):
        decode_snapshot(_resigned(raw, compressed[: len(compressed) // 2]), SIGNER, SCHEMAS)


def test_a_state_inflating_beyond_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _encode(_big_state())
    monkeypatch.setattr(snapshots, "MAX_STATE_BYTES", 1_000)
    with pytest.raises(SnapshotError, match="inflates beyond 1000 bytes"):
        decode_snapshot(raw, SIGNER, SCHEMAS)


def test_bytes_that_are_not_zlib_are_refused() -> None:
    raw = _encode(_big_state())
    with pytest.raises(SnapshotError, match="cannot decompress"):
        decode_snapshot(_resigned(raw, b"not zlib at all"), SIGNER, SCHEMAS)
