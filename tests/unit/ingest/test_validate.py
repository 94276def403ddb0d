from __future__ import annotations

import math
from typing import Any

import pytest

from streamproc.errors import InvalidEventError
from streamproc.ingest.validate import QualityRules, check_event
from streamproc.testing import make_viewing_event

NOW = 1_795_428_000_000


def _event(**changes: Any) -> Any:
    event = make_viewing_event(event_time=NOW)
    for path, value in changes.items():
        parts = path.split("__")
        target: Any = event
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value
    return event


def test_valid_event_passes() -> None:
    check_event(_event(), QualityRules(), now_ms=NOW)


@pytest.mark.parametrize(
    ("changes", "rule", "field"),
    [
        ({"network__bandwidth_kbps": math.nan}, "finite_number", "network.bandwidth_kbps"),
        ({"playback__position_s": math.inf}, "finite_number", "playback.position_s"),
        ({"event_id": ""}, "id_required", "event_id"),
        ({"user_id": "   "}, "id_required", "user_id"),
        ({"playback__duration_s": 0.0}, "duration_positive", "playback.duration_s"),
        ({"playback__position_s": -4.0}, "position_non_negative", "playback.position_s"),
        ({"playback__position_s": 3606.0}, "position_within_duration", "playback.position_s"),
        ({"playback__rebuffer_count": -1}, "counter_non_negative", "playback.rebuffer_count"),
        ({"playback__rebuffer_ms": -5}, "counter_non_negative", "playback.rebuffer_ms"),
        ({"playback__dropped_frames": -5}, "counter_non_negative", "playback.dropped_frames"),
        ({"playback__bitrate_kbps": 0}, "bitrate_range", "playback.bitrate_kbps"),
        ({"network__bandwidth_kbps": -1.0}, "bandwidth_range", "network.bandwidth_kbps"),
        ({"network__bandwidth_kbps": 2e7}, "bandwidth_range", "network.bandwidth_kbps"),
        ({"network__rtt_ms": 1e6}, "rtt_range", "network.rtt_ms"),
        ({"event_time": NOW + 301_000}, "event_time_future", "event_time"),
        ({"event_time": NOW - 31 * 86_400_000}, "event_time_past", "event_time"),
        ({"event_type": "rating", "rating": None}, "rating_range", "rating"),
        ({"event_type": "rating", "rating": 6}, "rating_range", "rating"),
        ({"rating": 0}, "rating_range", "rating"),
    ],
)
def test_each_rule(changes: dict[str, Any], rule: str, field: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        check_event(_event(**changes), QualityRules(), now_ms=NOW)
    assert info.value.rule == rule
    assert info.value.field == field
    assert info.value.reason == f"rule_violation:{rule}"
    assert f'field "{field}" must be' in str(info.value)


def test_slack_is_allowed() -> None:
    check_event(_event(playback__position_s=3604.0), QualityRules(), now_ms=NOW)


def test_thresholds_come_from_settings(settings: Any) -> None:
    rules = QualityRules.from_settings(settings.model_copy(update={"max_future_skew_s": 10.0}))
    with pytest.raises(InvalidEventError, match="at most 10 s in the future"):
        check_event(_event(event_time=NOW + 11_000), rules, now_ms=NOW)
