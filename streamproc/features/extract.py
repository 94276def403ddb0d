"""Pure feature functions: ``(play event, FeatureState) -> Features``.

The same call serves predicting and learning: the partition learner extracts the features
once, at the ``play`` that is the decision, keeps them with the pending session and learns
from exactly that dict when the label arrives. Nothing here reads the session's outcome or
mutates the state, so there is no train/serve skew and no leakage.

What carries the signal (see ``streamproc.simulate.truth``): completion depends on the
viewer's taste for the genre, their general engagement, the title's popularity, rebuffering,
bitrate, device and title length. So the engagement features are the viewer's completion
rate for this genre (shrunk towards their overall rate, itself shrunk towards everybody's),
how often they pick this genre (taste revealed by choices), the title's completion rate and
share of plays, the viewer's rebuffering history, and the play's network, bitrate, device
and length. Rebuffering depends on the load (bitrate / bandwidth), round-trip time, CDN and
connection, which are the QoE features.
"""

from __future__ import annotations

import math

from streamproc.features.state import FeatureState, RunningRate, UserStats
from streamproc.records import ViewingEvent

__all__ = [
    "CONNECTION_TYPES",
    "DEVICE_TYPES",
    "Features",
    "engagement_features",
    "logit",
    "qoe_features",
]

Features = dict[str, float]

#: Pseudo-counts of the shrinkage priors (how many outcomes a prior is worth).
USER_PRIOR_STRENGTH = 4.0
USER_GENRE_PRIOR_STRENGTH = 2.0
TITLE_PRIOR_STRENGTH = 10.0
REBUFFER_PRIOR_STRENGTH = 3.0
_NUMBER_OF_GENRES_GUESS = 10.0
_EMPTY = RunningRate()
_NEW_USER = UserStats()
#: The symbols of the schema's DeviceType and ConnectionType enums.
DEVICE_TYPES = ("tv", "mobile", "tablet", "desktop", "console", "other")
CONNECTION_TYPES = ("wifi", "ethernet", "cellular", "satellite", "other")


def logit(p: float, eps: float = 1e-3) -> float:
    """Log-odds of ``p``, with ``p`` kept within ``[eps, 1 - eps]``.

    Examples
    --------
    >>> logit(0.5), round(logit(0.9), 4), round(logit(1.0), 3)
    (0.0, 2.1972, 6.907)
    """
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def _network(event: ViewingEvent, x: Features) -> None:
    """Network context of a play, added to ``x`` (shared by both feature sets)."""
    network = event["network"]
    playback = event["playback"]
    bandwidth = max(network["bandwidth_kbps"], 1.0)
    load = playback["bitrate_kbps"] / bandwidth
    x["load"] = min(load, 10.0)
    x["log_load"] = math.log(max(load, 1e-3))
    x["log_rtt"] = math.log(max(network["rtt_ms"], 1.0) / 40.0)
    x["log_bitrate"] = math.log2(max(playback["bitrate_kbps"], 1) / 2350.0)
    x["cdn=" + network["cdn"]] = 1.0
    x["connection=" + network["connection_type"]] = 1.0


def qoe_features(event: ViewingEvent, state: FeatureState) -> Features:
    """Features of the expected rebuffering ratio of the session a ``play`` opens.

    The ratio's log-odds are close to linear in the load, the log round-trip time, the CDN
    and the connection; the squares and the products with the load let a linear model
    follow the curvature where the ratio saturates. ``bias`` is a constant 1 for models
    without an intercept (``BayesianLinearRegression``).

    Parameters
    ----------
    event
        The ``play`` event.
    state
        Running statistics before this play (read only; the QoE features need none).

    Returns
    -------
    Features
        Numbers by name; categorical values are one-hot (``cdn=cdn-a``).

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> x = qoe_features(make_viewing_event(event_time=0), FeatureState())
    >>> round(x["load"], 3), x["cdn=cdn-a"], round(x["cdn=cdn-a*load"], 3), x["bias"]
    (0.232, 1.0, 0.232, 1.0)
    """
    x: Features = {"bias": 1.0}
    _network(event, x)
    load, rtt = x["load"], x["log_rtt"]
    x["load^2"] = load * load
    x["log_rtt^2"] = rtt * rtt
    x["load*log_rtt"] = load * rtt
    network = event["network"]
    x["cdn=" + network["cdn"] + "*load"] = load
    x["connection=" + network["connection_type"] + "*load"] = load
    x["device=" + event["device"]["type"]] = 1.0
    return x


def engagement_features(event: ViewingEvent, state: FeatureState) -> Features:
    """Features of the probability that the session a ``play`` opens completes.

    Works without title metadata (the genre comes from an earlier event of the title, or
    the genre features fall back to the viewer's overall ones) and for unseen viewers and
    titles (the priors). Device and connection are one-hot over every schema symbol, so
    that a standard scaler sees their zeros too.

    Parameters
    ----------
    event
        The ``play`` event.
    state
        Running statistics before this play (read only).

    Returns
    -------
    Features
        Numbers by name.

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> state = FeatureState()
    >>> play = make_viewing_event(event_time=0, user_id="u-1", title_id="t-1")
    >>> state.update_play(play, "drama")
    >>> state.update_outcome("u-1", "t-1", "drama", completed=True, rebuffer_ratio=0.01)
    >>> x = engagement_features(play, state)
    >>> round(x["user_genre_logit"], 3), round(x["genre_share"], 3), x["device=tv"]
    (1.531, -1.386, 1.0)
    """
    x: Features = {}
    _network(event, x)
    device, connection = event["device"]["type"], event["network"]["connection_type"]
    for symbol in DEVICE_TYPES:
        x["device=" + symbol] = 1.0 if symbol == device else 0.0
    for symbol in CONNECTION_TYPES:
        x["connection=" + symbol] = 1.0 if symbol == connection else 0.0
    x["length"] = (event["playback"]["duration_s"] / 60.0 - 85.0) / 35.0

    base = state.completion.smoothed(0.5, 2.0)
    mean_rating = state.rating.mean(3.0)
    genre = state.genre_of(event)
    user = state.users.get(event["user_id"])
    if user is None:
        user = _NEW_USER
    # Completion: this genre's rate shrunk to the viewer's, shrunk to everybody's.
    u_rate = user.completion.smoothed(base, USER_PRIOR_STRENGTH)
    per_genre = _EMPTY if genre is None else user.genre_completion.get(genre, _EMPTY)
    x["user_logit"] = logit(u_rate)
    x["user_genre_logit"] = logit(per_genre.smoothed(u_rate, USER_GENRE_PRIOR_STRENGTH))
    x["user_genre_logit_slow"] = logit(per_genre.smoothed(u_rate, 3 * USER_GENRE_PRIOR_STRENGTH))
    # Completion beyond what the titles watched would predict (taste and engagement).
    excess = user.excess.smoothed(0.0, 3.0)
    genre_excess = _EMPTY if genre is None else user.genre_excess.get(genre, _EMPTY)
    x["user_excess"] = excess
    x["user_genre_excess"] = genre_excess.smoothed(excess, USER_GENRE_PRIOR_STRENGTH)
    x["user_genre_excess_raw"] = genre_excess.smoothed(0.0, 1.0)
    # Ratings speak of taste directly.
    u_rating = user.rating.smoothed(mean_rating, 2.0)
    genre_rating = _EMPTY if genre is None else user.genre_rating.get(genre, _EMPTY)
    x["user_rating"] = u_rating - 3.0
    x["user_genre_rating"] = genre_rating.smoothed(u_rating, 1.0) - 3.0
    # Taste revealed by choice: how often this viewer picks this genre.
    picked = 0 if genre is None else user.genre_plays.get(genre, 0)
    x["genre_share"] = math.log((picked + 0.5) / (user.plays + 0.5 * _NUMBER_OF_GENRES_GUESS))
    x["user_rebuffer"] = user.rebuffer.smoothed(state.rebuffer.mean(), REBUFFER_PRIOR_STRENGTH)

    title = state.titles.get(event["title_id"])
    t_rate = base if title is None else title.completion.smoothed(base, TITLE_PRIOR_STRENGTH)
    t_plays = 0 if title is None else title.plays
    in_genre = state.plays if genre is None else state.genre_plays.get(genre, 0)
    x["title_logit"] = logit(t_rate)
    # Popularity: the title's share of the plays of its genre.
    x["title_share"] = math.log((t_plays + 1.0) / (in_genre + 1.0))
    return x
