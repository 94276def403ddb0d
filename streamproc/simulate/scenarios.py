"""Drifting ground truths: the :class:`~streamproc.simulate.truth.Scenario` implementations.

Each scenario is the stationary truth up to the event index ``onset`` (valid events planned
before a session starts; see :func:`~streamproc.simulate.sessions.plan_session`) and a
changed one from there on. Nothing here draws random numbers: a scenario is a pure function
of the event index, so a seed gives the same stream every time and the events before the
onset are byte-identical to the stationary run of the same seed.

- ``taste_shift``   abrupt concept drift: at ``onset`` every viewer's genre tastes turn
  round (affinity -> -affinity). Viewers still *pick* genres by their old taste (habit),
  but finish what they now like: what a viewer's history and choices said about
  completion is now wrong, while the network and quality effects are unchanged.
- ``taste_drift``   gradual concept drift: the same turn blended linearly over ``span``
  events (affinity -> (1 - 2w) affinity, w from 0 to 1).
- ``throttled_cdn`` data drift: at ``onset`` the CDNs degrade: every session's bandwidth
  is cut to ``bandwidth_factor`` (0.4) and its round-trip time multiplied by
  ``rtt_factor`` (1.8), and the CDN term of the rebuffering model weighs ``cdn_factor``
  (1.5) times more. Bitrates, rebuffering and completion all move.

The names sort after ``stationary`` so that :func:`~streamproc.simulate.truth.make_scenario`
keeps listing ``stationary`` first in its error message.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from streamproc.simulate.truth import SCENARIOS, StationaryScenario, TruthCoefficients

__all__ = [
    "DEFAULT_ONSET",
    "DRIFT_SCENARIOS",
    "TasteDriftScenario",
    "TasteShiftScenario",
    "ThrottledCdnScenario",
    "register_variant",
]

#: Event index at which the drift scenarios change (registered defaults).
DEFAULT_ONSET = 100_000
#: Events over which the gradual scenario blends the old and new tastes.
DEFAULT_SPAN = 40_000


class TasteShiftScenario(StationaryScenario):
    """Abrupt concept drift: genre tastes turn round at ``onset``.

    Parameters
    ----------
    onset
        First event index of the new truth.
    coefficients
        The coefficients (unchanged by this drift).

    Examples
    --------
    >>> s = TasteShiftScenario(onset=1000)
    >>> s.affinity_at(0.8, 3, 999), s.affinity_at(0.8, 3, 1000)
    (0.8, -0.8)
    """

    name = "taste_shift"

    def __init__(
        self, onset: int = DEFAULT_ONSET, coefficients: TruthCoefficients | None = None
    ) -> None:
        super().__init__(coefficients)
        self.onset = onset

    def weight_at(self, event_index: int) -> float:
        """How far the drift has gone at ``event_index``: 0 (old truth) to 1 (new truth)."""
        return 1.0 if event_index >= self.onset else 0.0

    def affinity_at(self, affinity: float, genre_index: int, event_index: int) -> float:
        w = self.weight_at(event_index)
        return affinity if w == 0.0 else (1.0 - 2.0 * w) * affinity

    def __repr__(self) -> str:
        return f"{type(self).__name__}(onset={self.onset})"


class TasteDriftScenario(TasteShiftScenario):
    """Gradual concept drift: the taste turn of ``taste_shift`` blended over ``span`` events.

    Examples
    --------
    >>> s = TasteDriftScenario(onset=1000, span=1000)
    >>> [round(s.affinity_at(0.8, 3, i), 3) for i in (999, 1250, 2000)]
    [0.8, 0.4, -0.8]
    """

    name = "taste_drift"

    def __init__(
        self,
        onset: int = DEFAULT_ONSET,
        span: int = DEFAULT_SPAN,
        coefficients: TruthCoefficients | None = None,
    ) -> None:
        super().__init__(onset, coefficients)
        self.span = max(span, 1)

    def weight_at(self, event_index: int) -> float:
        if event_index < self.onset:
            return 0.0
        return min(1.0, (event_index - self.onset) / self.span)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(onset={self.onset}, span={self.span})"


class ThrottledCdnScenario(StationaryScenario):
    """Data drift: the CDNs degrade at ``onset`` (less bandwidth, more RTT, worse edges).

    Examples
    --------
    >>> s = ThrottledCdnScenario(onset=1000)
    >>> s.network_at(10_000.0, 40.0, 999), s.network_at(10_000.0, 40.0, 1000)
    ((10000.0, 40.0), (4000.0, 72.0))
    >>> s.coefficients_at(1000).rebuffer_cdn
    4.5
    """

    name = "throttled_cdn"

    def __init__(
        self,
        onset: int = DEFAULT_ONSET,
        bandwidth_factor: float = 0.4,
        rtt_factor: float = 1.8,
        cdn_factor: float = 1.5,
        coefficients: TruthCoefficients | None = None,
    ) -> None:
        super().__init__(coefficients)
        self.onset = onset
        self.bandwidth_factor = bandwidth_factor
        self.rtt_factor = rtt_factor
        self.cdn_factor = cdn_factor
        self._after = dataclasses.replace(
            self.coefficients, rebuffer_cdn=self.coefficients.rebuffer_cdn * cdn_factor
        )

    def coefficients_at(self, event_index: int) -> TruthCoefficients:
        return self._after if event_index >= self.onset else self.coefficients

    def network_at(
        self, bandwidth_kbps: float, rtt_ms: float, event_index: int
    ) -> tuple[float, float]:
        if event_index < self.onset:
            return bandwidth_kbps, rtt_ms
        return bandwidth_kbps * self.bandwidth_factor, rtt_ms * self.rtt_factor

    def __repr__(self) -> str:
        return (
            f"ThrottledCdnScenario(onset={self.onset}, bandwidth_factor={self.bandwidth_factor}, "
            f"rtt_factor={self.rtt_factor}, cdn_factor={self.cdn_factor})"
        )


#: The drift scenarios by name, with their default onset (registered in ``SCENARIOS``).
DRIFT_SCENARIOS: dict[str, type[StationaryScenario]] = {
    TasteShiftScenario.name: TasteShiftScenario,
    TasteDriftScenario.name: TasteDriftScenario,
    ThrottledCdnScenario.name: ThrottledCdnScenario,
}
SCENARIOS.update(DRIFT_SCENARIOS)

#: The names the drift issue and the README use, for the same scenarios.
SCENARIO_ALIASES = {
    "abrupt": "taste_shift",
    "gradual": "taste_drift",
    "data-drift": "throttled_cdn",
}


def register_variant(base: str, **params: float) -> str:
    """Register ``base`` with other defaults (e.g. an earlier ``onset``); its scenario name.

    :func:`~streamproc.simulate.truth.make_scenario` builds scenarios from their name alone,
    so a variant is a named subclass; registering the same variant twice is a no-op.

    Examples
    --------
    >>> from streamproc.simulate.truth import make_scenario
    >>> name = register_variant("taste_shift", onset=5000)
    >>> name, make_scenario(name).onset
    ('taste_shift(onset=5000)', 5000)
    """
    base = SCENARIO_ALIASES.get(base, base)
    if base not in DRIFT_SCENARIOS:
        raise ValueError(f"unknown drift scenario {base!r}; known: {', '.join(DRIFT_SCENARIOS)}")
    cls: Any = DRIFT_SCENARIOS[base]
    label = base + "(" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
    if label not in SCENARIOS:

        def __init__(self: StationaryScenario, **kwargs: float) -> None:
            cls.__init__(self, **{**params, **kwargs})

        SCENARIOS[label] = type(cls.__name__, (cls,), {"__init__": __init__, "name": label})
    return label
