"""Data-quality rules under hostile values: check_event against an independent oracle.

The oracle re-reads the table in ``streamproc.ingest.validate`` (rule order = table order) and
says which rule an event breaks first; ``check_event`` must raise exactly that rule, with
the field named, or pass when the oracle finds nothing. The same events are then sent through
the whole ingest stage in Avro (v1 and v2) and JSON: every format gives the same verdict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.config import Settings, load_settings
from streamproc.emit.encode import Encoder
from streamproc.errors import InvalidEventError
from streamproc.ingest import validate
from streamproc.ingest.dedupe import Deduplicator
from streamproc.ingest.process import IngestProcessor
from streamproc.ingest.schemas import load_schemas
from streamproc.ingest.validate import QualityRules, check_event
from streamproc.records import EVENT_TYPES, ViewingEvent

REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000_000
SCHEMAS = load_schemas(REPO / "schemas")
RULE_ORDER = re.findall(r"^``([a-z_]+)``", validate.__doc__ or "", re.MULTILINE)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)


def oracle(event: dict[str, Any], rules: QualityRules, now: int) -> tuple[str, str] | None:
    """(rule, field) of the first rule ``event`` breaks, in the order of the module's table."""
    net, pb = event["network"], event["playback"]
    doubles = {
        "network.bandwidth_kbps": net["bandwidth_kbps"],
        "network.rtt_ms": net["rtt_ms"],
        "playback.position_s": pb["position_s"],
        "playback.duration_s": pb["duration_s"],
    }
    dropped = pb.get("dropped_frames")
    rating = event["rating"]
    is_rating = event["event_type"] == "rating"
    checks: dict[str, Callable[[], str | None]] = {
        "finite_number": lambda: next(
            (k for k, v in doubles.items() if math.isnan(v) or math.isinf(v)), None
        ),
        "id_required": lambda: next(
            (
                k
                for k in ("event_id", "session_id", "user_id", "title_id")
                if event[k].isspace() or event[k] == ""
            ),
            None,
        ),
        "duration_positive": lambda: (
            None if 0 < pb["duration_s"] <= rules.max_duration_s else "playback.duration_s"
        ),
        "position_non_negative": lambda: "playback.position_s" if pb["position_s"] < 0 else None,
        "position_within_duration": lambda: (
            "playback.position_s"
            if pb["position_s"] > pb["duration_s"] + rules.position_slack_s
            else None
        ),
        "counter_non_negative": lambda: next(
            (
                k
                for k, v in (
                    ("playback.rebuffer_count", pb["rebuffer_count"]),
                    ("playback.rebuffer_ms", pb["rebuffer_ms"]),
                    ("playback.dropped_frames", dropped),
                )
                if v is not None and v < 0
            ),
            None,
        ),
        "bitrate_range": lambda: (
            None if 0 < pb["bitrate_kbps"] <= rules.max_bitrate_kbps else "playback.bitrate_kbps"
        ),
        "bandwidth_range": lambda: (
            None
            if 0 <= net["bandwidth_kbps"] <= rules.max_bandwidth_kbps
            else "network.bandwidth_kbps"
        ),
        "rtt_range": lambda: None if 0 <= net["rtt_ms"] <= rules.max_rtt_ms else "network.rtt_ms",
        "event_time_future": lambda: (
            "event_time" if event["event_time"] - now > rules.max_future_skew_ms else None
        ),
        "event_time_past": lambda: (
            "event_time" if now - event["event_time"] > rules.max_event_age_ms else None
        ),
        "rating_range": lambda: (
            "rating"
            if (rating is None and is_rating) or (rating is not None and not 1 <= rating <= 5)
            else None
        ),
    }
    assert list(checks) == RULE_ORDER, "the validate table changed: update the oracle"
    for rule, check in checks.items():
        field = check()
        if field is not None:
            return rule, field
    return None


_DEFAULT = QualityRules()
_DAY = 86_400_000

# Values concentrated around each threshold, plus the whole range of each Avro type.
_DOUBLE = st.floats(allow_nan=True, allow_infinity=True)


def _near(*points: float) -> st.SearchStrategy[float]:
    return st.sampled_from(points).flatmap(
        lambda p: st.sampled_from([p, math.nextafter(p, math.inf), math.nextafter(p, -math.inf)])
    )


_INT = st.integers(-(2**31), 2**31 - 1)
_LONG = st.integers(-(2**63), 2**63 - 1)
_IDS = st.text(max_size=12) | st.sampled_from(["", " ", "\u200b", "\u3000", "\t\n", "u-1"])


_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "event_id": _IDS,
    "session_id": _IDS,
    "user_id": _IDS,
    "title_id": _IDS,
    "event_type": st.sampled_from(EVENT_TYPES),
    "event_time": st.integers(NOW - 31 * _DAY, NOW + 600_000)
    | st.sampled_from(
        [
            NOW + _DEFAULT.max_future_skew_ms,
            NOW + _DEFAULT.max_future_skew_ms + 1,
            NOW - _DEFAULT.max_event_age_ms,
            NOW - _DEFAULT.max_event_age_ms - 1,
        ]
    )
    | _LONG,
    "network.bandwidth_kbps": _near(0.0, 25_000.0, _DEFAULT.max_bandwidth_kbps) | _DOUBLE,
    "network.rtt_ms": _near(0.0, 30.0, _DEFAULT.max_rtt_ms) | _DOUBLE,
    "playback.position_s": _near(0.0, 3600.0, 3600.0 + _DEFAULT.position_slack_s) | _DOUBLE,
    "playback.duration_s": _near(0.0, 1.0, 3600.0, _DEFAULT.max_duration_s) | _DOUBLE,
    "playback.bitrate_kbps": st.sampled_from([0, 1, 5800, _DEFAULT.max_bitrate_kbps]) | _INT,
    "playback.rebuffer_count": st.sampled_from([0, -1, 3]) | _INT,
    "playback.rebuffer_ms": st.sampled_from([0, -1, 2000]) | _LONG,
    "playback.dropped_frames": st.none() | st.sampled_from([0, -1]) | _INT,
    "rating": st.none() | st.integers(0, 6) | _INT,
    "title": st.none() | st.just({"genre": "drama", "release_year": None}),
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with up to three fields set to anything their Avro type allows."""
    event = _base_event()
    for path in draw(st.lists(st.sampled_from(sorted(_FIELD_VALUES)), max_size=3)):
        *parents, last = path.split(".")
        node = event
        for name in parents:
            node = node[name]
        node[last] = draw(_FIELD_VALUES[path])
    return event


def _rules() -> st.SearchStrategy[QualityRules]:
    return st.builds(
        QualityRules,
        max_future_skew_ms=st.integers(0, 10 * _DAY),
        max_event_age_ms=st.integers(0, 400 * _DAY),
        position_slack_s=st.floats(0, 100),
        max_bandwidth_kbps=st.floats(1, 1e9),
        max_rtt_ms=st.floats(1, 1e6),
        max_bitrate_kbps=st.integers(1, 2**31 - 1),
        max_duration_s=st.floats(1, 1e6),
    )


def _verdict(event: dict[str, Any], rules: QualityRules, now: int) -> tuple[str, str] | None:
    try:
        check_event(_typed(event), rules, now)
    except InvalidEventError as exc:
        assert exc.reason == f"rule_violation:{exc.rule}"
        assert exc.rule in RULE_ORDER
        assert str(exc).startswith(f'?: field "{exc.field}" must be ')
        return exc.rule, exc.field
    return None


def _typed(event: dict[str, Any]) -> ViewingEvent:
    return event  # type: ignore[return-value]  # the strategy builds the reader schema's shape


def test_oracle_covers_the_documented_rules() -> None:
    assert len(RULE_ORDER) == 12 and len(set(RULE_ORDER)) == 12


@FUZZ
@given(event=events())
def test_check_event_matches_the_oracle(event: dict[str, Any]) -> None:
    assert _verdict(event, _DEFAULT, NOW) == oracle(event, _DEFAULT, NOW)


@FUZZ
@given(event=events(), rules=_rules(), now=st.integers(0, 2**62))
def test_check_event_matches_the_oracle_for_any_thresholds(
    event: dict[str, Any], rules: QualityRules, now: int
) -> None:
    assert _verdict(event, rules, now) == oracle(event, rules, now)


@pytest.mark.parametrize(
    ("path", "value", "rule"),
    [
        ("playback.duration_s", _DEFAULT.max_duration_s, None),
        (
            "playback.duration_s",
            math.nextafter(_DEFAULT.max_duration_s, math.inf),
            "duration_positive",
        ),
        ("playback.duration_s", 5e-324, None),
        ("playback.duration_s", 0.0, "duration_positive"),
        ("playback.duration_s", -0.0, "duration_positive"),
        ("playback.position_s", -0.0, None),
        ("playback.position_s", -5e-324, "position_non_negative"),
        ("playback.position_s", 3600.0 + _DEFAULT.position_slack_s, None),
        ("playback.position_s", 3605.0000000001, "position_within_duration"),
        ("network.bandwidth_kbps", _DEFAULT.max_bandwidth_kbps, None),
        ("network.bandwidth_kbps", 1e308, "bandwidth_range"),
        ("network.rtt_ms", -0.0, None),
        ("network.rtt_ms", _DEFAULT.max_rtt_ms + 1e-9, "rtt_range"),
        ("playback.bitrate_kbps", _DEFAULT.max_bitrate_kbps, None),
        ("playback.bitrate_kbps", 2**31 - 1, "bitrate_range"),
        ("playback.rebuffer_ms", -(2**63), "counter_non_negative"),
        ("playback.dropped_frames", -(2**31), "counter_non_negative"),
        ("event_time", NOW + _DEFAULT.max_future_skew_ms, None),
        ("event_time", NOW + _DEFAULT.max_future_skew_ms + 1, "event_time_future"),
        ("event_time", NOW - _DEFAULT.max_event_age_ms, None),
        ("event_time", NOW - _DEFAULT.max_event_age_ms - 1, "event_time_past"),
        ("event_time", 2**63 - 1, "event_time_future"),
        ("event_time", -(2**63), "event_time_past"),
        ("rating", 0, "rating_range"),
        ("rating", 2**31 - 1, "rating_range"),
    ],
)
def test_boundaries(base_settings: Settings, path: str, value: object, rule: str | None) -> None:
    """Each threshold, exactly and one step beyond, in check_event and in every format."""
    event = _base_event()
    *parents, last = path.split(".")
    node = event
    for name in parents:
        node = node[name]
    node[last] = value
    assert _verdict(event, _DEFAULT, NOW) == (None if rule is None else (rule, path))
    expected = None if rule is None else f"rule_violation:{rule}"
    assert _ingest_reasons(base_settings, event) == {expected}


# -- the same verdict in every wire format -------------------------------------------------------


@pytest.fixture(scope="module")
def base_settings() -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        import os

        for name in list(os.environ):
            if name.startswith("STREAMPROC_"):
                mp.delenv(name)
        yield load_settings(schemas_dir=REPO / "schemas")


def _base_event() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "session_id": "s-1",
        "user_id": "u-1",
        "title_id": "t-1",
        "event_type": "pause",
        "event_time": NOW,
        "device": {"type": "tv", "os": "tizen-7", "app_version": "8.112.0"},
        "network": {
            "connection_type": "wifi",
            "bandwidth_kbps": 25_000.0,
            "rtt_ms": 30.0,
            "cdn": "cdn-a",
            "isp": None,
        },
        "playback": {
            "position_s": 0.0,
            "duration_s": 3600.0,
            "bitrate_kbps": 5800,
            "rebuffer_count": 0,
            "rebuffer_ms": 0,
            "dropped_frames": None,
        },
        "region": "eu-west",
        "rating": None,
        "title": None,
        "seq": None,
        "experiment": None,
    }


def _ingest_reasons(settings: Settings, event: dict[str, Any]) -> set[str | None]:
    """The reason (None: valid) of ``event`` sent as Avro v2, Avro v1 and (when it can) JSON."""
    v1 = {k: v for k, v in event.items() if k not in ("seq", "experiment")}
    v1["network"] = {k: v for k, v in event["network"].items() if k != "isp"}
    v1["playback"] = {k: v for k, v in event["playback"].items() if k != "dropped_frames"}
    raws = [
        Encoder(SCHEMAS.latest("ViewingEvent"), check=False).encode(event),
        Encoder(SCHEMAS.get("ViewingEvent", 1), check=False).encode(v1),
    ]
    if event["playback"]["dropped_frames"] is not None:
        raws.pop()  # v1 cannot carry dropped_frames: its verdict could differ
    doubles = (*event["network"].values(), *event["playback"].values())
    if all(not isinstance(v, float) or math.isfinite(v) for v in doubles):
        raws.append(orjson.dumps(event))  # JSON has no NaN/inf
    reasons: set[str | None] = set()
    for raw in raws:
        dedupe = Deduplicator(60_000, {}, lambda p, k, v: None)
        out = IngestProcessor(settings, SCHEMAS, dedupe).process(raw, None, "in", 0, 1, None, NOW)
        assert out.kind in ("valid", "dead")
        reasons.add(out.reason)
    return reasons


@settings(parent=FUZZ, max_examples=150)
@given(event=events())
def test_every_format_gives_the_oracle_verdict(
    base_settings: Settings, event: dict[str, Any]
) -> None:
    found = oracle(event, QualityRules.from_settings(base_settings), NOW)
    expected = None if found is None else f"rule_violation:{found[0]}"
    assert _ingest_reasons(base_settings, event) == {expected}


def test_quality_rules_follow_the_settings(base_settings: Settings) -> None:
    assert QualityRules.from_settings(base_settings) == QualityRules()
