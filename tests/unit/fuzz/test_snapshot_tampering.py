"""Tampered, unsigned, foreign and garbage snapshots: refused with SnapshotError, never unpickled.

The model bytes of every refused snapshot here are a pickle whose unpickling calls
:func:`_ran`, which records the call in :data:`UNPICKLED`: a refused snapshot must leave it
empty. A positive control shows that the same payload does run once the signature verifies.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.emit.encode import SINGLE_OBJECT_MARKER
from streamproc.errors import SnapshotError
from streamproc.ingest.schemas import load_schemas
from streamproc.registry.signing import Signer, parse_keys
from streamproc.registry.snapshots import (
    SnapshotMeta,
    decode_snapshot,
    encode_snapshot,
    latest_snapshots,
    read_snapshot_record,
)

REPO = Path(__file__).resolve().parents[3]
SCHEMAS = load_schemas(REPO / "schemas")
SNAPSHOT = SCHEMAS.latest("ModelSnapshot")

KEY_A = ("key-a", b"secret-of-key-a")
KEY_B = ("key-b", b"secret-of-key-b")
KEY_C = ("key-c", b"secret-of-key-c")

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: What unpickling an :class:`_Evil` payload did (it must stay empty for refused snapshots).
UNPICKLED: list[str] = []


def _ran(tag: str) -> dict[str, str]:
    UNPICKLED.append(tag)
    return {"unpickled": tag}


class _Evil:
    """Unpickling it calls :func:`_ran`: code execution, made observable."""

    def __init__(self, tag: str = "evil") -> None:
        self.tag = tag

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _ran, (self.tag,)


@pytest.fixture(autouse=True)
def _clean_flag() -> Iterator[None]:
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


def _meta(**changes: Any) -> SnapshotMeta:
    fields: dict[str, Any] = {
        "model": "engagement",
        "partition": 3,
        "version": 2,
        "events_seen": 20_000,
        "source_offsets": {"viewing-events-valid:3": 120_345, "viewing-events-valid:9": 7},
        "metrics": {"labels": 812.0, "roc_auc": 0.81, "log_loss": 0.47},
        "namespace": "live",
        "created_at": 1_700_000_000_000,
    }
    fields.update(changes)
    return SnapshotMeta(**fields)


def _snapshot(state: Any = None, *, keys: list[tuple[str, bytes]] | None = None) -> bytes:
    state = _Evil() if state is None else state
    _, value = encode_snapshot(_meta(), state, Signer(keys or [KEY_A]), SCHEMAS)
    return value


def _reencode(raw: bytes, **changes: Any) -> bytes:
    """The snapshot record in ``raw`` with fields replaced, the signature left as it was."""
    record = read_snapshot_record(raw, SCHEMAS)
    record.update(changes)
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MARKER + SNAPSHOT.fingerprint)
    schemaless_writer(buf, SNAPSHOT.parsed, record)
    return buf.getvalue()


def _refused(raw: bytes, signer: Signer | None = None, match: str | None = None) -> SnapshotError:
    with pytest.raises(SnapshotError, match=match) as info:
        decode_snapshot(raw, signer or Signer([KEY_A]), SCHEMAS)
    assert UNPICKLED == [], "a refused snapshot was unpickled"
    return info.value


def test_positive_control_the_payload_runs_once_verified() -> None:
    snap = decode_snapshot(_snapshot(), Signer([KEY_A]), SCHEMAS)
    assert UNPICKLED == ["evil"] and snap.state == {"unpickled": "evil"}
    assert snap.key_id == "key-a" and snap.meta == _meta()


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "qoe"},
        {"namespace": "replay"},
        {"partition": 4},
        {"partition": -3},
        {"version": 3},
        {"version": 1},
        {"created_at": 1_700_000_000_001},
        {"events_seen": 20_001},
        {"events_seen": 0},
        {"source_offsets": {"viewing-events-valid:3": 120_346, "viewing-events-valid:9": 7}},
        {"source_offsets": {"viewing-events-valid:3": 120_345}},
        {
            "source_offsets": {
                "viewing-events-valid:3": 120_345,
                "viewing-events-valid:9": 7,
                "x": 0,
            }
        },
        {"source_offsets": {"viewing-events-valid:4": 120_345, "viewing-events-valid:9": 7}},
        {"source_offsets": {}},
        {"metrics": {"labels": 812.0, "roc_auc": 0.99, "log_loss": 0.47}},
        {"metrics": {}},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:60],
)
def test_tampered_metadata_is_refused(changes: dict[str, Any]) -> None:
    err = _refused(_reencode(_snapshot(), **changes), match="signature does not match")
    assert "refused" in str(err) and "key id 'key-a'" in str(err)


def test_metadata_refused_for_the_key_it_claims() -> None:
    """The refusal names the snapshot key written in the (tampered) metadata."""
    err = _refused(_reencode(_snapshot(), partition=5))
    assert str(err).startswith("snapshot live/engagement/5/v2 refused: ")


@pytest.mark.parametrize(
    "edit",
    ["flip-first", "flip-last", "append", "truncate", "empty", "benign-pickle", "other-evil"],
)
def test_tampered_model_bytes_are_refused(edit: str) -> None:
    raw = _snapshot()
    model_bytes: bytes = read_snapshot_record(raw, SCHEMAS)["model_bytes"]
    new = {
        "flip-first": bytes([model_bytes[0] ^ 1]) + model_bytes[1:],
        "flip-last": model_bytes[:-1] + bytes([model_bytes[-1] ^ 0x80]),
        "append": model_bytes + b".",
        "truncate": model_bytes[:-1],
        "empty": b"",
        "benign-pickle": pickle.dumps({"weights": [0.0]}),
        "other-evil": pickle.dumps(_Evil("swapped")),
    }[edit]
    _refused(_reencode(raw, model_bytes=new), match="signature does not match")


def test_unsigned_snapshot_is_refused() -> None:
    for signature in ("", "key-a", "key-a:", ":"):
        _refused(_reencode(_snapshot(), signature=signature), match="unsigned or .* malformed")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda kid, digest: f"{kid}:{digest.upper()}",
        lambda kid, digest: f"{kid}:{digest[:-1]}",
        lambda kid, digest: f"{kid}:{digest}00",
        lambda kid, digest: f"{kid}:{digest[::-1]}",
        lambda kid, digest: f"{kid}: {digest}",
        lambda kid, digest: f"{kid}:{digest}:{digest}",
        # Regression: a non-ASCII digest made hmac.compare_digest raise TypeError.
        lambda kid, digest: f"{kid}:{digest[:-1]}é",
        lambda kid, digest: f"{kid}:\u0663\u0664",
        lambda kid, digest: kid + ":" + "\U0001f600" * 32,
    ],
)
def test_malformed_signatures_are_refused(mangle: Any) -> None:
    raw = _snapshot()
    kid, _, digest = read_snapshot_record(raw, SCHEMAS)["signature"].partition(":")
    _refused(_reencode(raw, signature=mangle(kid, digest)))


def test_non_ascii_signature_refused_by_the_signer() -> None:
    """Regression: Signer.verify raised TypeError instead of SnapshotError."""
    with pytest.raises(SnapshotError, match="malformed"):
        Signer([KEY_A]).verify(b"message", "key-a:\u00e9" * 8)


def test_unknown_key_id_is_refused() -> None:
    raw = _snapshot(keys=[KEY_C])
    err = _refused(raw, Signer([KEY_A, KEY_B]), match="unknown key id 'key-c'")
    assert "known: key-a, key-b" in str(err) and "STREAMPROC_SNAPSHOT_KEYS" in str(err)
    # The key id is not trusted to pick another key's secret either.
    forged = _reencode(
        raw, signature="key-a:" + read_snapshot_record(raw, SCHEMAS)["signature"][6:]
    )
    _refused(forged, Signer([KEY_A, KEY_B]), match="signature does not match")


def test_same_key_id_with_another_secret_is_refused() -> None:
    _refused(_snapshot(), Signer([("key-a", b"another-secret")]), match="signature does not match")


def test_key_rotation() -> None:
    raw = _snapshot(state={"model": 1}, keys=[KEY_A])
    snap = decode_snapshot(raw, Signer([KEY_B, KEY_A]), SCHEMAS)
    assert snap.key_id == "key-a" and snap.state == {"model": 1}
    # New snapshots are signed with the first key of the rotated list ...
    rotated = _snapshot(state={"model": 2}, keys=[KEY_B, KEY_A])
    assert read_snapshot_record(rotated, SCHEMAS)["signature"].startswith("key-b:")
    assert decode_snapshot(rotated, Signer([KEY_B]), SCHEMAS).key_id == "key-b"
    # ... and once key A is dropped, its snapshots are refused.
    with pytest.raises(SnapshotError, match="unknown key id 'key-a'"):
        decode_snapshot(_snapshot(keys=[KEY_A]), Signer([KEY_B]), SCHEMAS)
    assert UNPICKLED == []
    assert parse_keys("key-b:secret-of-key-b,key-a:secret-of-key-a") == [KEY_B, KEY_A]


def test_unsupported_format_is_refused_before_verifying() -> None:
    _refused(_reencode(_snapshot(), format="json"), match="unsupported format 'json'")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"garbage",
        b'{"model": "engagement"}',
        b"\xc3\x01" + bytes(8),
        b"\xc3\x01" + SNAPSHOT.fingerprint,
        b"\xc3\x01" + SNAPSHOT.fingerprint + b"\xff" * 40,
        b"\xc3\x01" + SCHEMAS.latest("Prediction").fingerprint + b"\x00" * 40,
        pickle.dumps(_Evil("bare")),  # a bare pickle on the topic
    ],
)
def test_garbage_records_are_refused(raw: bytes) -> None:
    _refused(raw)


@FUZZ
@given(body=st.binary(max_size=400), with_header=st.booleans())
def test_random_records_are_refused(body: bytes, with_header: bool) -> None:
    raw = (SINGLE_OBJECT_MARKER + SNAPSHOT.fingerprint if with_header else b"") + body
    with pytest.raises(SnapshotError):
        decode_snapshot(raw, Signer([KEY_A]), SCHEMAS)
    assert UNPICKLED == []


def test_every_single_bit_flip_is_refused() -> None:
    """Each bit of a signed record, flipped in turn: header, metadata, pickle or signature."""
    raw = _snapshot()
    signer = Signer([KEY_A, KEY_B])
    for i in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << bit
            with pytest.raises(SnapshotError):
                decode_snapshot(bytes(flipped), signer, SCHEMAS)
    assert UNPICKLED == []


def test_every_truncation_is_refused() -> None:
    raw = _snapshot()
    for cut in range(len(raw)):
        with pytest.raises(SnapshotError):
            decode_snapshot(raw[:cut], Signer([KEY_A]), SCHEMAS)
    assert UNPICKLED == []


_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model": st.text(max_size=20),
    "namespace": st.text(max_size=20),
    "partition": st.integers(-(2**31), 2**31 - 1),
    "version": st.integers(-(2**31), 2**31 - 1),
    "created_at": st.integers(-(2**63), 2**63 - 1),
    "events_seen": st.integers(-(2**63), 2**63 - 1),
    "source_offsets": st.dictionaries(st.text(max_size=30), st.integers(-(2**63), 2**63 - 1)),
    "metrics": st.dictionaries(st.text(max_size=10), st.floats(allow_nan=False)),
    "model_bytes": st.binary(max_size=200),
    "signature": st.text(max_size=80),
}


@FUZZ
@given(field=st.sampled_from(sorted(_FIELD_VALUES)), data=st.data())
def test_any_change_of_any_field_is_refused(field: str, data: st.DataObject) -> None:
    raw = _snapshot()
    original = read_snapshot_record(raw, SCHEMAS)[field]
    value = data.draw(_FIELD_VALUES[field].filter(lambda v: v != original))
    with pytest.raises(SnapshotError):
        decode_snapshot(_reencode(raw, **{field: value}), Signer([KEY_A, KEY_B]), SCHEMAS)
    assert UNPICKLED == []


def test_latest_snapshots_skips_every_bad_record_and_keeps_the_good_one() -> None:
    good_meta = _meta(version=1)
    good_key, good = encode_snapshot(good_meta, {"model": "ok"}, Signer([KEY_A]), SCHEMAS)
    evil = _snapshot()  # live/engagement/3/v2, signed by key A, with the evil payload
    evil_key = _meta().key.encode()
    records: list[tuple[bytes | None, bytes | None]] = [
        (good_key, good),
        (evil_key, _reencode(evil, partition=3, events_seen=1)),  # tampered
        (evil_key, _reencode(evil, signature="")),  # unsigned
        (evil_key, _snapshot(keys=[KEY_C])),  # unknown key id
        (evil_key, b"\xc3\x01garbage"),  # garbage
        (b"live/engagement/3/v9", good),  # a verified snapshot under another key
        (evil_key, None),  # a tombstone
        (None, good),
    ]
    refused: list[tuple[str, SnapshotError]] = []
    latest = latest_snapshots(
        records, Signer([KEY_A]), SCHEMAS, on_refused=lambda k, e: refused.append((k, e))
    )
    assert list(latest) == [good_key.decode()] and latest[good_key.decode()].state == {
        "model": "ok"
    }
    assert [k for k, _ in refused] == [evil_key.decode()] * 4 + ["live/engagement/3/v9"]
    assert all(isinstance(e, SnapshotError) for _, e in refused)
    assert "does not match" in str(refused[-1][1])
    assert UNPICKLED == []
