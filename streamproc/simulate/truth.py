r"""The hidden ground truth: how network, taste and quality drive rebuffering and completion.

The online models never see these formulas or their latent inputs; the simulator records the
true probabilities per session (:class:`~streamproc.simulate.sessions.SessionTruth`) so that
what a model learned can be measured against the oracle.

Rebuffering (per session)
    The player picks a bitrate :math:`b` from the ladder: the highest step at most
    :math:`a \cdot w` (bandwidth :math:`w`, per-session ABR aggressiveness
    :math:`a \sim U(0.4, 1.3)`), capped by the device. With load :math:`\ell = b / w`,
    RTT :math:`r`, CDN quality :math:`q` and connection type :math:`c`:

    .. math::

        z_r &= \beta_0 + \beta_\ell \ell + \beta_r \ln(r / 40) + \beta_q (1 - q) + \beta_c[c] \\
        \rho &= \rho_{max} \, \sigma(z_r)

    :math:`\rho` is the expected rebuffering ratio (rebuffer time / watched time). Stalls
    then happen as a Poisson process over the watched time :math:`W`: their count is
    :math:`\mathrm{Poisson}(W \rho / m)` with mean stall length :math:`m = 1.5 + 20 \rho`
    seconds, each stall lasting :math:`\mathrm{Exp}(m)`; so :math:`E[\text{ratio}] = \rho`.

Completion
    With latent genre affinity :math:`\alpha` (user x genre, ~N(0, 1)), title popularity
    :math:`\pi` (standardised log popularity), user engagement :math:`e`, device type
    :math:`d` and title length :math:`L` minutes:

    .. math::

        z_c = \gamma_0 + \gamma_\alpha \alpha + \gamma_\pi \pi + \gamma_\rho \rho
              + \gamma_b \log_2(b / 2350) + \gamma_d[d] + \gamma_L (L - 85) / 35 + e

    :math:`p_{complete} = \sigma(z_c)`. The session completes (watched fraction >= 0.9,
    a ``complete`` event) with that probability, otherwise it ``stop``\s earlier.

Rating
    With probability ``p_rating`` (0.3) the viewer rates after the end:
    :math:`\mathrm{clip}(\mathrm{round}(3 + 0.9 \alpha + 0.7 (C - 0.5) - 6 \rho + N(0, 0.7)),
    1, 5)` where :math:`C` is 1 for a completed session.

Scenarios
    A :class:`Scenario` supplies the coefficients and may adjust the latent inputs at a given
    event index: the place where a drifting scenario will shift affinities or network
    conditions at index K. Only :class:`StationaryScenario` exists for now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "SCENARIOS",
    "Scenario",
    "StationaryScenario",
    "TruthCoefficients",
    "expected_rebuffer_ratio",
    "make_scenario",
    "p_complete",
    "rating_score",
]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


@dataclass(frozen=True, slots=True)
class TruthCoefficients:
    """Coefficients of the ground-truth model (see the module docstring for the formulas)."""

    rebuffer_intercept: float = -4.5
    rebuffer_load: float = 3.0
    rebuffer_rtt: float = 0.6
    rebuffer_cdn: float = 3.0
    rebuffer_connection: dict[str, float] = field(
        default_factory=lambda: {
            "ethernet": -0.4,
            "wifi": 0.0,
            "cellular": 0.6,
            "satellite": 0.9,
            "other": 0.2,
        }
    )
    rebuffer_max: float = 0.3
    complete_intercept: float = -1.3
    complete_affinity: float = 1.0
    complete_popularity: float = 0.5
    complete_rebuffer: float = -25.0
    complete_bitrate: float = 0.15
    complete_device: dict[str, float] = field(
        default_factory=lambda: {
            "tv": 0.35,
            "console": 0.2,
            "desktop": 0.0,
            "tablet": -0.15,
            "mobile": -0.45,
            "other": -0.2,
        }
    )
    complete_length: float = -0.35
    p_rating: float = 0.3


def expected_rebuffer_ratio(
    coef: TruthCoefficients,
    *,
    bandwidth_kbps: float,
    rtt_ms: float,
    connection_type: str,
    cdn_quality: float,
    bitrate_kbps: int,
) -> float:
    """The true expected rebuffering ratio (rebuffer time / watched time) of a session.

    Examples
    --------
    >>> coef = TruthCoefficients()
    >>> good = expected_rebuffer_ratio(coef, bandwidth_kbps=50_000, rtt_ms=12,
    ...     connection_type="ethernet", cdn_quality=0.95, bitrate_kbps=8000)
    >>> bad = expected_rebuffer_ratio(coef, bandwidth_kbps=4_000, rtt_ms=120,
    ...     connection_type="cellular", cdn_quality=0.55, bitrate_kbps=4300)
    >>> round(good, 4), round(bad, 3)
    (0.002, 0.237)
    """
    load = bitrate_kbps / max(bandwidth_kbps, 1.0)
    z = (
        coef.rebuffer_intercept
        + coef.rebuffer_load * load
        + coef.rebuffer_rtt * math.log(max(rtt_ms, 1.0) / 40.0)
        + coef.rebuffer_cdn * (1.0 - cdn_quality)
        + coef.rebuffer_connection.get(connection_type, 0.0)
    )
    return coef.rebuffer_max * _sigmoid(z)


def p_complete(
    coef: TruthCoefficients,
    *,
    affinity: float,
    popularity_z: float,
    rebuffer_ratio: float,
    bitrate_kbps: int,
    device_type: str,
    duration_s: float,
    engagement: float,
) -> float:
    """The true probability that a session is watched to the end (fraction >= 0.9).

    Examples
    --------
    >>> coef = TruthCoefficients()
    >>> round(p_complete(coef, affinity=1.5, popularity_z=1.0, rebuffer_ratio=0.002,
    ...     bitrate_kbps=8000, device_type="tv", duration_s=5400, engagement=0.3), 3)
    0.82
    >>> round(p_complete(coef, affinity=-1.0, popularity_z=-1.0, rebuffer_ratio=0.05,
    ...     bitrate_kbps=560, device_type="mobile", duration_s=7200, engagement=0.0), 3)
    0.006
    """
    z = (
        coef.complete_intercept
        + coef.complete_affinity * affinity
        + coef.complete_popularity * popularity_z
        + coef.complete_rebuffer * rebuffer_ratio
        + coef.complete_bitrate * math.log2(bitrate_kbps / 2350.0)
        + coef.complete_device.get(device_type, 0.0)
        + coef.complete_length * (duration_s / 60.0 - 85.0) / 35.0
        + engagement
    )
    return _sigmoid(z)


def rating_score(affinity: float, completed: bool, rebuffer_ratio: float, noise: float) -> int:
    """The 1..5 rating a viewer gives; ``noise`` is a N(0, 0.7) draw.

    Examples
    --------
    >>> rating_score(1.2, True, 0.01, 0.0), rating_score(-1.5, False, 0.2, -0.3)
    (4, 1)
    """
    raw = 3.0 + 0.9 * affinity + 0.7 * ((1.0 if completed else 0.0) - 0.5)
    raw += -6.0 * rebuffer_ratio + noise
    return min(5, max(1, round(raw)))


class Scenario(Protocol):
    """How the ground truth behaves over the stream.

    ``event_index`` is the number of valid events planned before the session starts. A
    drifting scenario returns other coefficients or shifted inputs from some index K on.
    """

    name: str

    def coefficients_at(self, event_index: int) -> TruthCoefficients:
        """The coefficients in force for a session starting at ``event_index``."""
        ...

    def affinity_at(self, affinity: float, genre_index: int, event_index: int) -> float:
        """The latent affinity in force (a drift may shift tastes)."""
        ...

    def network_at(
        self, bandwidth_kbps: float, rtt_ms: float, event_index: int
    ) -> tuple[float, float]:
        """The (bandwidth_kbps, rtt_ms) in force (a drift may degrade the network)."""
        ...


class StationaryScenario:
    """The ground truth never changes."""

    name = "stationary"

    def __init__(self, coefficients: TruthCoefficients | None = None) -> None:
        self.coefficients = coefficients or TruthCoefficients()

    def coefficients_at(self, event_index: int) -> TruthCoefficients:
        return self.coefficients

    def affinity_at(self, affinity: float, genre_index: int, event_index: int) -> float:
        return affinity

    def network_at(
        self, bandwidth_kbps: float, rtt_ms: float, event_index: int
    ) -> tuple[float, float]:
        return bandwidth_kbps, rtt_ms

    def __repr__(self) -> str:
        return "StationaryScenario()"


#: Scenario name -> factory. Drift scenarios will be added here.
SCENARIOS: dict[str, type[StationaryScenario]] = {"stationary": StationaryScenario}


def make_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    try:
        return SCENARIOS[name]()
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None


from streamproc.simulate import scenarios as _scenarios  # noqa: E402, F401 (registers drift scenarios)
