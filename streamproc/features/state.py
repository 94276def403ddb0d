"""Running statistics per user, per title and per user x genre: the memory features read.

Two kinds of update, kept apart so that no outcome leaks into a prediction:

- :meth:`FeatureState.update_play` counts what a ``play`` reveals without any outcome (which
  titles and genres a viewer picks, how popular a title is). It runs *after* the play's
  features were extracted.
- :meth:`FeatureState.update_outcome` and :meth:`FeatureState.update_rating` fold in a resolved
  label (completed, rebuffering ratio, rating) when it arrives, after the models learned.

Rates are decayed counts (:class:`RunningRate`), so "recent" means the last few hundred
outcomes of that user or title and the statistics follow a drifting world. Everything is
plain slotted dataclasses and dicts: the state is part of a partition's snapshot (picklable)
and cheap to read on the hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streamproc.records import ViewingEvent

__all__ = ["USER_DECAY", "FeatureState", "RunningRate", "TitleStats", "UserStats"]


@dataclass(slots=True)
class RunningRate:
    """An exponentially decayed count and sum: a running mean that forgets old values.

    Examples
    --------
    >>> rate = RunningRate()
    >>> for value in (1.0, 0.0, 1.0):
    ...     rate.update(value, decay=1.0)
    >>> rate.n, round(rate.mean(), 3), round(rate.smoothed(prior=0.5, strength=2.0), 3)
    (3.0, 0.667, 0.6)
    """

    n: float = 0.0
    total: float = 0.0

    def update(self, value: float, decay: float) -> None:
        """Fold in ``value``; older values weigh ``decay`` times less at each update."""
        self.n = self.n * decay + 1.0
        self.total = self.total * decay + value

    def mean(self, default: float = 0.0) -> float:
        """The running mean, or ``default`` before the first value."""
        return self.total / self.n if self.n > 0.0 else default

    def smoothed(self, prior: float, strength: float) -> float:
        """The mean shrunk towards ``prior`` as if ``strength`` values of ``prior`` were seen."""
        return (self.total + strength * prior) / (self.n + strength)


@dataclass(slots=True)
class UserStats:
    """What one viewer's past sessions tell."""

    plays: int = 0
    genre_plays: dict[str, int] = field(default_factory=dict)
    completion: RunningRate = field(default_factory=RunningRate)
    genre_completion: dict[str, RunningRate] = field(default_factory=dict)
    excess: RunningRate = field(default_factory=RunningRate)  # completed - title's rate
    genre_excess: dict[str, RunningRate] = field(default_factory=dict)
    rating: RunningRate = field(default_factory=RunningRate)
    genre_rating: dict[str, RunningRate] = field(default_factory=dict)
    rebuffer: RunningRate = field(default_factory=RunningRate)
    log_bitrate: RunningRate = field(default_factory=RunningRate)


@dataclass(slots=True)
class TitleStats:
    """What one title's past sessions tell; ``genre`` is remembered from any event with it."""

    plays: int = 0
    genre: str | None = None
    completion: RunningRate = field(default_factory=RunningRate)
    rating: RunningRate = field(default_factory=RunningRate)


#: Default decay of a viewer's running rates per outcome (0.99: about the last 100 sessions).
USER_DECAY = 0.99


@dataclass(slots=True)
class FeatureState:
    """Per-user, per-title and global running statistics of one partition.

    Parameters
    ----------
    user_decay
        Decay of a user's rates per outcome (0.99: about the last 100 sessions count).
    title_decay
        Decay of a title's rates per outcome.
    """

    user_decay: float = USER_DECAY
    title_decay: float = 0.998
    users: dict[str, UserStats] = field(default_factory=dict)
    titles: dict[str, TitleStats] = field(default_factory=dict)
    plays: int = 0
    genre_plays: dict[str, int] = field(default_factory=dict)
    completion: RunningRate = field(default_factory=RunningRate)
    rebuffer: RunningRate = field(default_factory=RunningRate)
    rating: RunningRate = field(default_factory=RunningRate)

    def genre_of(self, event: ViewingEvent) -> str | None:
        """The event's genre, else the genre its title had in an earlier event, else None."""
        title = event["title"]
        if title is not None:
            return title["genre"]
        stats = self.titles.get(event["title_id"])
        return None if stats is None else stats.genre

    def genre_of_title(self, title_id: str) -> str | None:
        """The genre a title had in an earlier event, if any."""
        stats = self.titles.get(title_id)
        return None if stats is None else stats.genre

    def update_play(self, event: ViewingEvent, genre: str | None) -> None:
        """Count a ``play`` (no outcome involved); call it after extracting its features."""
        user = self.users.get(event["user_id"])
        if user is None:
            user = self.users[event["user_id"]] = UserStats()
        title = self.titles.get(event["title_id"])
        if title is None:
            title = self.titles[event["title_id"]] = TitleStats()
        self.plays += 1
        user.plays += 1
        title.plays += 1
        if genre is not None:
            title.genre = genre
            user.genre_plays[genre] = user.genre_plays.get(genre, 0) + 1
            self.genre_plays[genre] = self.genre_plays.get(genre, 0) + 1
        bitrate = event["playback"]["bitrate_kbps"]
        user.log_bitrate.update(math.log2(max(bitrate, 1) / 2350.0), self.user_decay)

    def update_outcome(
        self,
        user_id: str,
        title_id: str,
        genre: str | None,
        *,
        completed: bool,
        rebuffer_ratio: float | None,
    ) -> None:
        """Fold in a resolved session: whether it completed and its rebuffering ratio."""
        done = 1.0 if completed else 0.0
        title = self.titles.get(title_id)
        if title is None:
            title = self.titles[title_id] = TitleStats()
        # The viewer's completion beyond the title's usual rate (before this outcome).
        excess = done - title.completion.smoothed(self.completion.smoothed(0.5, 2.0), 10.0)
        self.completion.update(done, 1.0)
        title.completion.update(done, self.title_decay)
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserStats()
        user.completion.update(done, self.user_decay)
        if genre is not None:
            per_genre = user.genre_completion.get(genre)
            if per_genre is None:
                per_genre = user.genre_completion[genre] = RunningRate()
            per_genre.update(done, self.user_decay)
        user.excess.update(excess, self.user_decay)
        if genre is not None:
            per_genre = user.genre_excess.get(genre)
            if per_genre is None:
                per_genre = user.genre_excess[genre] = RunningRate()
            per_genre.update(excess, self.user_decay)
        if rebuffer_ratio is not None:
            self.rebuffer.update(rebuffer_ratio, 1.0)
            user.rebuffer.update(rebuffer_ratio, self.user_decay)

    def update_rating(self, user_id: str, title_id: str, genre: str | None, rating: int) -> None:
        """Fold in a 1..5 rating of a title by a user."""
        value = float(rating)
        self.rating.update(value, 1.0)
        title = self.titles.get(title_id)
        if title is None:
            title = self.titles[title_id] = TitleStats()
        title.rating.update(value, self.title_decay)
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = UserStats()
        user.rating.update(value, self.user_decay)
        if genre is not None:
            per_genre = user.genre_rating.get(genre)
            if per_genre is None:
                per_genre = user.genre_rating[genre] = RunningRate()
            per_genre.update(value, self.user_decay)
