"""The session simulator: determinism, well-formed sessions, extras, manifest, oracle AUC."""

from __future__ import annotations

import io
import random
from collections import Counter, defaultdict
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamproc.config import Settings, load_settings
from streamproc.emit.encode import check_against_schema
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import IngestProcessor
from streamproc.ingest.schemas import load_schemas
from streamproc.simulate import RULES, Manifest, SimParams, SimRecord, simulate_events
from streamproc.simulate.sessions import plan_session
from streamproc.simulate.truth import StationaryScenario
from streamproc.simulate.world import build_world

START = 1_700_000_000_000
V2 = Path(__file__).resolve().parents[3] / "schemas" / "viewing_event" / "v2.avsc"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@cache
def _v2() -> tuple[dict[str, Any], bytes]:
    raw = orjson.loads(V2.read_bytes())
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    return cast(dict[str, Any], parse_schema(raw)), fp


def decode_v2(value: bytes) -> dict[str, Any]:
    """Decode an Avro single-object record with fastavro and the v2.avsc file itself."""
    schema, fp = _v2()
    assert value[:2] == b"\xc3\x01" and value[2:10] == fp
    buf = io.BytesIO(value[10:])
    event = cast(dict[str, Any], schemaless_reader(buf, schema, None))
    assert buf.tell() == len(value) - 10, "trailing bytes after the record"
    when = event["event_time"]
    if isinstance(when, datetime):  # the file's timestamp-millis logical type
        event["event_time"] = int(when.timestamp() * 1000)
    return event


def run(settings: Settings, **params: Any) -> tuple[list[SimRecord], Manifest]:
    params.setdefault("start_time_ms", START)
    sim = simulate_events(SimParams(**params), settings)
    records = list(sim)
    return records, sim.manifest


def by_session(records: list[SimRecord]) -> dict[str, list[dict[str, Any]]]:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.kind == "valid":
            event = decode_v2(record.value)
            sessions[event["session_id"]].append(event)
    return sessions


def auc(scores: list[float], labels: list[bool]) -> float:
    """Rank-based ROC AUC (ties do not occur with continuous scores)."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = sum(rank for rank, i in enumerate(order, start=1) if labels[i])
    pos = sum(labels)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * (len(labels) - pos))


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(settings: Settings) -> None:
    params = dict(n_events=3000, seed=5, invalid_fraction=0.1, duplicate_fraction=0.05)
    first, manifest_a = run(settings, **params)
    second, manifest_b = run(settings, **params)
    assert [(r.key, r.value, r.kind) for r in first] == [(r.key, r.value, r.kind) for r in second]
    assert manifest_a.to_dict() == manifest_b.to_dict()


def test_other_seed_gives_other_events(settings: Settings) -> None:
    a, _ = run(settings, n_events=500, seed=1)
    b, _ = run(settings, n_events=500, seed=2)
    assert {r.value for r in a}.isdisjoint({r.value for r in b})


def test_world_seed_keeps_the_viewers_and_titles_with_new_sessions(settings: Settings) -> None:
    def viewers(records: list[SimRecord]) -> dict[str, tuple[Any, ...]]:
        out = {}
        for record in records:
            e = decode_v2(record.value)
            out[e["user_id"]] = (e["device"], e["network"]["cdn"], e["region"], e["experiment"])
        return out

    def titles(records: list[SimRecord]) -> dict[str, tuple[Any, ...]]:
        out = {}
        for record in records:
            e = decode_v2(record.value)
            if e["title"] is not None:  # some sessions carry no title metadata
                out[e["title_id"]] = (e["playback"]["duration_s"], e["title"]["genre"])
        return out

    base, _ = run(settings, n_events=3000, seed=1)
    same_world, manifest = run(settings, n_events=3000, seed=2, world_seed=1)
    other_world, _ = run(settings, n_events=3000, seed=2)
    assert manifest.params["world_seed"] == 1
    # New sessions and events...
    assert {decode_v2(r.value)["event_id"] for r in base}.isdisjoint(
        decode_v2(r.value)["event_id"] for r in same_world
    )
    # ...of the same viewers and titles: every one seen in both runs is the same.
    a, b = viewers(base), viewers(same_world)
    shared = a.keys() & b.keys()
    assert len(shared) > 50 and all(a[u] == b[u] for u in shared)
    ta, tb = titles(base), titles(same_world)
    shared_titles = ta.keys() & tb.keys()
    assert len(shared_titles) > 50 and all(ta[t] == tb[t] for t in shared_titles)
    # Without it, the other seed is another world.
    c = viewers(other_world)
    assert sum(a[u] != c[u] for u in a.keys() & c.keys()) > 25


def test_extras_do_not_change_the_valid_events(settings: Settings) -> None:
    plain, _ = run(settings, n_events=2000, seed=9)
    noisy, _ = run(settings, n_events=2000, seed=9, invalid_fraction=0.2, duplicate_fraction=0.1)
    assert [r.value for r in plain] == [r.value for r in noisy if r.kind == "valid"]


# -- valid events and sessions --------------------------------------------------------------------


def test_every_valid_record_decodes_with_the_v2_schema(settings: Settings) -> None:
    records, manifest = run(settings, n_events=5000, seed=3)
    assert all(r.kind == "valid" for r in records)
    assert len(records) == 5000 == manifest.counts["valid"] == manifest.counts["records"]
    for record in records:
        event = decode_v2(record.value)
        assert record.key == event["user_id"].encode()
        assert record.event_id == event["event_id"]
    assert len({r.event_id for r in records}) == 5000


def test_sessions_are_well_formed_and_match_their_truth(settings: Settings) -> None:
    records, manifest = run(settings, n_events=8000, seed=4)
    sessions = by_session(records)
    truths = {t.session_id: t for t in manifest.sessions}
    assert sessions.keys() == truths.keys()
    assert manifest.counts["sessions"] == len(truths)
    for session_id, events in sessions.items():
        truth = truths[session_id]
        assert [e["seq"] for e in events] == list(range(len(events)))
        types = [e["event_type"] for e in events]
        assert types[0] == "play" and events[0]["event_id"] == truth.play_event_id
        assert events[0]["event_time"] == truth.start_time_ms
        if types[-1] == "rating":
            assert events[-1]["rating"] == truth.rating and 1 <= events[-1]["rating"] <= 5
            types.pop()
        else:
            assert truth.rating is None
        assert types[-1] == ("complete" if truth.watched_fraction >= 0.9 else "stop")
        assert truth.completed == (types[-1] == "complete")
        assert set(types[1:-1]) <= {"pause", "seek", "bitrate_change", "rebuffer"}
        assert all(e["rating"] is None for e in events if e["event_type"] != "rating")
        assert len({e["user_id"] for e in events}) == 1 == len({e["title_id"] for e in events})
        previous: dict[str, Any] | None = None
        for event in events:
            playback = event["playback"]
            assert 0.0 <= playback["position_s"] <= playback["duration_s"]
            assert playback["bitrate_kbps"] > 0 and event["network"]["bandwidth_kbps"] > 0
            if previous is not None:
                prev = previous["playback"]
                assert event["event_time"] >= previous["event_time"]
                assert playback["position_s"] >= prev["position_s"]
                assert playback["rebuffer_count"] >= prev["rebuffer_count"]
                assert playback["rebuffer_ms"] >= prev["rebuffer_ms"]
                if event["event_type"] == "rebuffer":
                    assert playback["rebuffer_count"] > prev["rebuffer_count"]
            previous = event
        end = events[-1]["playback"]
        assert end["position_s"] == pytest.approx(
            truth.watched_fraction * end["duration_s"], abs=0.01
        )


def test_sessions_overlap_and_the_stream_is_in_event_time_order(settings: Settings) -> None:
    records, _ = run(settings, n_events=4000, seed=6)
    events = [decode_v2(r.value) for r in records]
    times = [e["event_time"] for e in events]
    assert times == sorted(times)
    open_sessions: set[str] = set()
    most_open = 0
    for event in events:
        if event["event_type"] == "play":
            open_sessions.add(event["session_id"])
        elif event["event_type"] in ("stop", "complete"):
            open_sessions.discard(event["session_id"])
        most_open = max(most_open, len(open_sessions))
    assert most_open >= 50
    span_h = (times[-1] - times[0]) / 3_600_000
    assert 1.0 <= span_h <= 12.0


def test_default_timeline_ends_now(settings: Settings) -> None:
    now = 1_750_000_000_000
    sim = simulate_events(SimParams(n_events=2000, seed=8), settings, now_ms=now)
    times = [decode_v2(r.value)["event_time"] for r in sim]
    assert max(times) == now
    assert now - min(times) < 24 * 3_600_000
    assert sim.manifest.start_time_ms == min(times)


def test_json_records_fit_the_schema(settings: Settings) -> None:
    records, _ = run(settings, n_events=1000, seed=2, fmt="json")
    reader = load_schemas(settings.schemas_path).latest("ViewingEvent")
    for record in records:
        check_against_schema(reader, orjson.loads(record.value))


# -- invalid records and duplicates ---------------------------------------------------------------


def test_fractions_are_honoured(settings: Settings) -> None:
    records, manifest = run(
        settings, n_events=20_000, seed=10, invalid_fraction=0.1, duplicate_fraction=0.05
    )
    counts = Counter(r.kind for r in records)
    assert counts["valid"] == 20_000
    assert counts["invalid"] / len(records) == pytest.approx(0.1, abs=0.01)
    assert counts["duplicate"] / counts["valid"] == pytest.approx(0.05, abs=0.006)
    assert dict(counts) == {k: manifest.counts[k] for k in ("valid", "invalid", "duplicate")}
    assert manifest.counts["records"] == len(records) and manifest.complete
    assert [records[i.index].event_id for i in manifest.invalid] == [
        i.event_id for i in manifest.invalid
    ]
    assert all(records[i.index].kind == "invalid" for i in manifest.invalid)
    reasons = set(manifest.invalid_by_reason)
    assert reasons == {"decode_error", "unknown_schema", "too_large"} | {
        f"rule_violation:{rule}" for rule in RULES
    }
    valid_ids = {r.event_id for r in records if r.kind == "valid"}
    assert valid_ids.isdisjoint(i.event_id for i in manifest.invalid)
    assert manifest.duplicated <= valid_ids


def test_duplicates_repeat_the_bytes_a_little_later(settings: Settings) -> None:
    records, manifest = run(settings, n_events=3000, seed=12, duplicate_fraction=0.2)
    first_seen: dict[str, int] = {}
    for index, record in enumerate(records):
        assert record.event_id is not None
        if record.kind == "valid":
            first_seen[record.event_id] = index
        else:
            assert record.kind == "duplicate"
            original = records[first_seen[record.event_id]]
            assert (record.key, record.value) == (original.key, original.value)
            assert 0 < index - first_seen[record.event_id] <= 400
    assert {r.event_id for r in records if r.kind == "duplicate"} == manifest.duplicated


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_ingest_gives_each_record_its_expected_outcome(settings: Settings, fmt: str) -> None:
    records, manifest = run(
        settings, n_events=3000, seed=13, fmt=fmt, invalid_fraction=0.25, duplicate_fraction=0.05
    )
    processor = IngestProcessor(
        settings, load_schemas(settings.schemas_path), Deduplicator(10**12, {})
    )
    now = max(decode_any_time(r, fmt) for r in records if r.kind == "valid") + 1000
    outcomes: Counter[str] = Counter()
    for offset, record in enumerate(records):
        outcome = processor.process(record.value, record.key, "in", 0, offset, None, now_ms=now)
        outcomes[outcome.kind] += 1
        if record.kind == "invalid":
            assert outcome.kind == "dead", record
            assert outcome.reason == record.expected_reason, (outcome.message, record)
            if record.expected_reason != "too_large" and record.event_id is not None:
                assert outcome.event_id == record.event_id
        else:
            assert outcome.kind == record.kind, (outcome.reason, outcome.message)
    assert outcomes["dead"] == manifest.counts["invalid"]
    if fmt == "json":
        assert "schema_violation" in manifest.invalid_by_reason


def decode_any_time(record: SimRecord, fmt: str) -> int:
    if fmt == "json":
        return int(orjson.loads(record.value)["event_time"])
    return int(decode_v2(record.value)["event_time"])


# -- manifest and parameters ----------------------------------------------------------------------


def test_manifest_round_trips_through_json(settings: Settings, tmp_path: Path) -> None:
    _, manifest = run(settings, n_events=500, seed=1, invalid_fraction=0.1, duplicate_fraction=0.1)
    path = tmp_path / "manifest.json"
    manifest.write(path)
    data = orjson.loads(path.read_bytes())
    assert data["seed"] == 1 and data["params"]["n_events"] == 500
    assert data["counts"]["valid"] == 500
    assert {"event_id", "reason", "index", "variant"} <= data["invalid"][0].keys()
    assert {"session_id", "play_event_id", "p_complete", "completed"} <= data["sessions"][0].keys()
    assert Manifest.read(path).to_dict() == manifest.to_dict()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_events": 1}, "n_events must be 0 or at least 2"),
        ({"invalid_fraction": 0.95}, r"invalid_fraction must be in \[0, 0.9\], got 0.95"),
        ({"duplicate_fraction": -0.1}, "duplicate_fraction must be in"),
        ({"scenario": "drift"}, "unknown scenario 'drift'; known: stationary"),
        ({"speed": 0.0}, "speed must be a finite number > 0"),
        ({"fmt": "xml"}, "fmt must be avro or json"),
    ],
)
def test_bad_parameters_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimParams(**changes)


def test_zero_events_gives_an_empty_stream(settings: Settings) -> None:
    records, manifest = run(settings, n_events=0)
    assert records == [] and manifest.complete and manifest.counts["sessions"] == 0


# -- the hidden truth -----------------------------------------------------------------------------


def test_oracle_auc_of_completion_is_informative_but_not_perfect() -> None:
    world = build_world(21, 1000, 500)
    rng = random.Random(21)
    scenario = StationaryScenario()
    truths = [
        plan_session(world, rng, scenario, index=i, start_ms=0, budget=1000, event_index=0).truth
        for i in range(5000)
    ]
    labels = [t.completed for t in truths]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    score = auc([t.p_complete for t in truths], labels)
    assert 0.7 <= score <= 0.9
    # The network matters: rebuffering alone carries signal about completion.
    assert auc([-t.expected_rebuffer_ratio for t in truths], labels) > 0.57
