"""Data-quality rules on a decoded ViewingEvent; a broken rule raises InvalidEventError.

Decoding already checks types; these rules check meaning. Each rule has a stable name that
becomes the dead-letter reason ``rule_violation:<rule>``:

==========================  =====================================================
``finite_number``           every double (bandwidth, rtt, position, duration) is finite
``id_required``             event_id, session_id, user_id, title_id are non-empty
``duration_positive``       0 < playback.duration_s <= max_duration_s
``position_non_negative``   playback.position_s >= 0
``position_within_duration`` position_s <= duration_s + position_slack_s
``counter_non_negative``    rebuffer_count, rebuffer_ms (and dropped_frames) >= 0
``bitrate_range``           0 < playback.bitrate_kbps <= max_bitrate_kbps
``bandwidth_range``         0 <= network.bandwidth_kbps <= max_bandwidth_kbps
``rtt_range``               0 <= network.rtt_ms <= max_rtt_ms
``event_time_future``       event_time <= now + max_future_skew_s
``event_time_past``         event_time >= now - max_event_age_s
``rating_range``            a rating event has a rating in 1..5; other events have none
==========================  =====================================================
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from streamproc.config import Settings
from streamproc.errors import InvalidEventError
from streamproc.records import ViewingEvent

__all__ = ["QualityRules", "check_event"]

_isfinite = math.isfinite


@dataclass(frozen=True, slots=True)
class QualityRules:
    """Thresholds of the data-quality rules (from :class:`~streamproc.config.Settings`)."""

    max_future_skew_ms: int = 300_000
    max_event_age_ms: int = 30 * 24 * 3600 * 1000
    position_slack_s: float = 5.0
    max_bandwidth_kbps: float = 10_000_000.0
    max_rtt_ms: float = 60_000.0
    max_bitrate_kbps: int = 200_000
    max_duration_s: float = 6 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityRules:
        return cls(
            max_future_skew_ms=int(settings.max_future_skew_s * 1000),
            max_event_age_ms=int(settings.max_event_age_s * 1000),
            position_slack_s=settings.position_slack_s,
            max_bandwidth_kbps=settings.max_bandwidth_kbps,
            max_rtt_ms=settings.max_rtt_ms,
            max_bitrate_kbps=settings.max_bitrate_kbps,
            max_duration_s=settings.max_duration_s,
        )


def check_event(event: ViewingEvent, rules: QualityRules, now_ms: int | None = None) -> None:
    """Raise :class:`InvalidEventError` for the first rule ``event`` breaks.

    Parameters
    ----------
    event
        A decoded event (reader schema).
    rules
        The thresholds.
    now_ms
        Current time, epoch ms (default: the wall clock).

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> event = make_viewing_event(event_time=1_700_000_000_000)
    >>> event["playback"]["position_s"] = -4.0
    >>> check_event(event, QualityRules(), now_ms=1_700_000_000_000)
    Traceback (most recent call last):
    ...
    streamproc.errors.InvalidEventError: ?: field "playback.position_s" must be >= 0, got -4.0
    """
    network = event["network"]
    playback = event["playback"]
    bandwidth = network["bandwidth_kbps"]
    rtt = network["rtt_ms"]
    position = playback["position_s"]
    duration = playback["duration_s"]
    for name, value in (
        ("network.bandwidth_kbps", bandwidth),
        ("network.rtt_ms", rtt),
        ("playback.position_s", position),
        ("playback.duration_s", duration),
    ):
        if not _isfinite(value):
            raise InvalidEventError(name, value, "finite_number", "a finite number")
    for name in ("event_id", "session_id", "user_id", "title_id"):
        ident = event[name]  # type: ignore[literal-required]
        if not ident or not ident.strip():
            raise InvalidEventError(name, ident, "id_required", "a non-empty string")
    if not 0.0 < duration <= rules.max_duration_s:
        raise InvalidEventError(
            "playback.duration_s",
            duration,
            "duration_positive",
            f"> 0 and <= {rules.max_duration_s}",
        )
    if position < 0.0:
        raise InvalidEventError("playback.position_s", position, "position_non_negative", ">= 0")
    if position > duration + rules.position_slack_s:
        raise InvalidEventError(
            "playback.position_s",
            position,
            "position_within_duration",
            f"<= duration_s + {rules.position_slack_s:g} s ({duration + rules.position_slack_s:g})",
        )
    if playback["rebuffer_count"] < 0:
        raise InvalidEventError(
            "playback.rebuffer_count", playback["rebuffer_count"], "counter_non_negative", ">= 0"
        )
    if playback["rebuffer_ms"] < 0:
        raise InvalidEventError(
            "playback.rebuffer_ms", playback["rebuffer_ms"], "counter_non_negative", ">= 0"
        )
    dropped = playback.get("dropped_frames")
    if dropped is not None and dropped < 0:
        raise InvalidEventError("playback.dropped_frames", dropped, "counter_non_negative", ">= 0")
    bitrate = playback["bitrate_kbps"]
    if not 0 < bitrate <= rules.max_bitrate_kbps:
        raise InvalidEventError(
            "playback.bitrate_kbps",
            bitrate,
            "bitrate_range",
            f"> 0 and <= {rules.max_bitrate_kbps}",
        )
    if not 0.0 <= bandwidth <= rules.max_bandwidth_kbps:
        raise InvalidEventError(
            "network.bandwidth_kbps",
            bandwidth,
            "bandwidth_range",
            f"between 0 and {rules.max_bandwidth_kbps:g}",
        )
    if not 0.0 <= rtt <= rules.max_rtt_ms:
        raise InvalidEventError(
            "network.rtt_ms", rtt, "rtt_range", f"between 0 and {rules.max_rtt_ms:g}"
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    when = event["event_time"]
    if when > now + rules.max_future_skew_ms:
        raise InvalidEventError(
            "event_time",
            when,
            "event_time_future",
            f"at most {rules.max_future_skew_ms // 1000} s in the future (now is {now} ms)",
        )
    if when < now - rules.max_event_age_ms:
        raise InvalidEventError(
            "event_time",
            when,
            "event_time_past",
            f"at most {rules.max_event_age_ms // 86_400_000} days old (now is {now} ms)",
        )
    rating = event["rating"]
    if event["event_type"] == "rating":
        if rating is None or not 1 <= rating <= 5:
            raise InvalidEventError("rating", rating, "rating_range", "1..5 on a rating event")
    elif rating is not None and not 1 <= rating <= 5:
        raise InvalidEventError("rating", rating, "rating_range", "1..5 or null")
