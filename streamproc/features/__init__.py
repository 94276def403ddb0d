"""Stage 2: ViewingEvent -> features, and sessions -> labels.

- :mod:`.extract`   pure feature functions ``(play event, FeatureState) -> Features``,
  used once at the decision; the same dict is learned from when the label arrives
- :mod:`.state`     running per-user, per-title and per user x genre statistics (picklable)
- :mod:`.sessions`  pending sessions, label resolution (stop/complete/rating) and timeouts
"""

from __future__ import annotations

from streamproc.features.extract import Features, engagement_features, logit, qoe_features
from streamproc.features.sessions import (
    PendingSession,
    SessionOutcome,
    SessionTracker,
    TimeoutPolicy,
    rating_outcome,
    rebuffer_ratio,
    watched_fraction,
)
from streamproc.features.state import FeatureState, RunningRate, TitleStats, UserStats

__all__ = [
    "FeatureState",
    "Features",
    "PendingSession",
    "RunningRate",
    "SessionOutcome",
    "SessionTracker",
    "TimeoutPolicy",
    "TitleStats",
    "UserStats",
    "engagement_features",
    "logit",
    "qoe_features",
    "rating_outcome",
    "rebuffer_ratio",
    "watched_fraction",
]
