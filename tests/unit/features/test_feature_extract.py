"""Feature extraction is pure, deterministic and copes with missing context."""

from __future__ import annotations

import math
import pickle

from streamproc.features import FeatureState, engagement_features, qoe_features
from streamproc.testing import make_viewing_event


def _state_with_history() -> FeatureState:
    state = FeatureState()
    for i in range(5):
        play = make_viewing_event(
            event_time=i, user_id="u-1", title_id=f"t-{i % 2}", session_id=f"s-{i}"
        )
        state.update_play(play, "drama")
        state.update_outcome(
            "u-1", f"t-{i % 2}", "drama", completed=i % 2 == 0, rebuffer_ratio=0.01 * i
        )
    state.update_rating("u-1", "t-0", "drama", 5)
    return state


def test_features_do_not_mutate_the_state_and_repeat_exactly() -> None:
    state = _state_with_history()
    before = pickle.dumps(state)
    play = make_viewing_event(event_time=10, user_id="u-1", title_id="t-0", event_id="e")
    first = engagement_features(play, state), qoe_features(play, state)
    second = engagement_features(play, state), qoe_features(play, state)
    assert first == second
    assert pickle.dumps(state) == before


def test_features_are_finite_for_unknown_user_title_and_missing_title_metadata() -> None:
    state = _state_with_history()
    play = make_viewing_event(event_time=0, user_id="u-new", title_id="t-new", title=None)
    for x in (engagement_features(play, state), qoe_features(play, state)):
        assert x
        assert all(math.isfinite(v) for v in x.values())
    empty = FeatureState()
    assert all(math.isfinite(v) for v in engagement_features(play, empty).values())


def test_genre_is_remembered_from_earlier_events_of_the_title() -> None:
    state = FeatureState()
    with_meta = make_viewing_event(event_time=0, title_id="t-9")
    state.update_play(with_meta, state.genre_of(with_meta))
    without = make_viewing_event(event_time=1, title_id="t-9", title=None)
    assert state.genre_of(without) == "drama"


def test_outcomes_move_the_user_genre_rate_in_the_right_direction() -> None:
    play = make_viewing_event(event_time=0, user_id="u-1", title_id="t-1")
    liked, disliked = FeatureState(), FeatureState()
    for _ in range(4):
        liked.update_play(play, "drama")
        liked.update_outcome("u-1", "t-1", "drama", completed=True, rebuffer_ratio=0.0)
        disliked.update_play(play, "drama")
        disliked.update_outcome("u-1", "t-1", "drama", completed=False, rebuffer_ratio=0.0)
    assert (
        engagement_features(play, liked)["user_genre_logit"]
        > engagement_features(play, disliked)["user_genre_logit"]
    )


def test_state_pickles() -> None:
    state = _state_with_history()
    restored = pickle.loads(pickle.dumps(state))
    play = make_viewing_event(event_time=0, user_id="u-1", title_id="t-0")
    assert engagement_features(play, restored) == engagement_features(play, state)
