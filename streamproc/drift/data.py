r"""Data drift on key inputs: a reference window against a recent window, every K events.

Per feature, :class:`DataDriftMonitor` keeps a *reference* sample (the first
``reference_size`` values seen, or those after the last re-baseline) and a *recent* sample
(the last ``recent_size`` values, a ring buffer). Every ``check_every`` events of the
partition it compares the two with the population stability index over ``n_bins`` bins
(numeric features: the reference's quantiles; categorical ones: the categories seen):

.. math::

    \mathrm{PSI} = \sum_i (q_i - p_i) \ln(q_i / p_i)

with :math:`p_i`, :math:`q_i` the reference and recent shares (half a count added to every
bin, so an empty bin is finite). The per-event cost is one append; the comparison (a few
``numpy`` calls on at most ``recent_size + reference_size`` values) runs once per
``check_every`` events, never per event (KSWIN's per-event test costs 214 µs).

The threshold comes from a target false-alarm rate, not from folklore (the "0.25 = major
shift" rule of thumb ignores the sample sizes). Without drift, for samples of ``n`` and
``m`` values and ``B`` bins, :math:`\mathrm{PSI} / (1/n + 1/m)` is asymptotically
:math:`\chi^2_{B-1}` (Yurdakul, 2018, "Statistical properties of the population stability
index"). So

.. math::

    \text{threshold} = d \cdot (1/n + 1/m) \cdot \chi^2_{B-1}(1 - \alpha), \qquad
    \alpha = \frac{\text{false\_alarms}}{\text{checks} \times \text{features}}

where ``false_alarms`` is the expected number of false alarms tolerated over ``checks``
comparisons per feature (a Bonferroni split, conservative since successive checks overlap),
and :math:`d` (``design_effect``) widens the null for values that are not independent:
the events of one session share its network and its kinds of events. The default
:math:`d = 2` was set from the stationary simulation: over 200,000 events on 6 partitions
(seed 42) the largest ``PSI / ((1/n + 1/m) chi2(0.5))`` ratio, per feature, is reported by
``streamproc drift-report`` (``null_max_ratio``), and :math:`d = 2` keeps the largest null
statistic below the threshold with room to spare. The :math:`\chi^2` quantile uses the
Wilson-Hilferty approximation (standard library only): 46.0 against the exact 44.8 for
9 degrees of freedom at 1 - 1e-6, so it errs on the side of fewer alarms.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from streamproc.errors import SnapshotError
from streamproc.records import ViewingEvent

__all__ = [
    "DATA_FEATURES",
    "IN_SESSION_EVENT_TYPES",
    "DataDriftMonitor",
    "DataDriftResult",
    "FeatureSpec",
    "chi2_quantile",
    "psi",
    "psi_threshold",
]


def chi2_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of a chi-square with ``df`` degrees of freedom (Wilson-Hilferty).

    >>> round(chi2_quantile(0.95, 9), 2), round(chi2_quantile(0.999999, 9), 1)
    (16.9, 46.0)
    """
    z = NormalDist().inv_cdf(p)
    k = float(df)
    return k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3


def psi_threshold(
    n_reference: int, n_recent: int, n_bins: int, alpha: float, design_effect: float = 1.0
) -> float:
    """The PSI above which a comparison is a drift at false-alarm probability ``alpha``.

    >>> round(psi_threshold(2000, 500, 10, 1e-6, design_effect=2.0), 4)
    0.2299
    """
    return (
        design_effect
        * (1.0 / n_reference + 1.0 / n_recent)
        * chi2_quantile(1.0 - alpha, n_bins - 1)
    )


def psi(reference_counts: np.ndarray[Any, Any], recent_counts: np.ndarray[Any, Any]) -> float:
    """Population stability index of two histograms over the same bins (counts + 0.5).

    >>> round(psi(np.array([50, 50]), np.array([80, 20])), 4)
    0.4063
    """
    p = reference_counts + 0.5
    q = recent_counts + 0.5
    p = p / p.sum()
    q = q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def _log_network(field: str) -> Callable[[ViewingEvent], float | str | None]:
    def read(event: ViewingEvent) -> float | None:
        if event["event_type"] != "play":
            return None
        return math.log(max(float(event["network"][field]), 1.0))  # type: ignore[literal-required]

    return read


def _log_bitrate(event: ViewingEvent) -> float | None:
    if event["event_type"] != "play":
        return None
    return math.log(max(float(event["playback"]["bitrate_kbps"]), 1.0))


def _device(event: ViewingEvent) -> str | None:
    return event["device"]["type"] if event["event_type"] == "play" else None


#: The event types whose mix is watched: those a session emits while it plays. The share of
#: ``play``, ``stop``, ``complete`` and ``rating`` depends on how many sessions are starting or
#: ending, which moves for hours after a stream starts and again where it ends: with them in
#: the mix, a stationary simulated stream of 200,000 events raised an event_type alarm on
#: every partition (seed 7, 6 partitions); without them, none, while a CDN degradation still
#: shows in the network features and in more rebuffers and bitrate changes.
IN_SESSION_EVENT_TYPES = frozenset({"rebuffer", "bitrate_change", "pause", "seek"})


def _event_type(event: ViewingEvent) -> str | None:
    kind = event["event_type"]
    return kind if kind in IN_SESSION_EVENT_TYPES else None


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One monitored input: how to read it from an event (None: this event has none)."""

    name: str
    read: Callable[[ViewingEvent], float | str | None]
    categorical: bool = False
    plays_only: bool = True  # read only at ``play`` events (skips a call per other event)
    #: The values a categorical feature can take (older snapshots may hold others).
    categories: frozenset[str] | None = None


#: The key inputs monitored by default: network, bitrate and device at each play, and the
#: mix of in-session event types (more rebuffers and bitrate changes when QoE drops).
DATA_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("bandwidth_kbps", _log_network("bandwidth_kbps")),
    FeatureSpec("rtt_ms", _log_network("rtt_ms")),
    FeatureSpec("bitrate_kbps", _log_bitrate),
    FeatureSpec("device_type", _device, categorical=True),
    FeatureSpec(
        "event_type",
        _event_type,
        categorical=True,
        plays_only=False,
        categories=IN_SESSION_EVENT_TYPES,
    ),
)


#: Version of the dict :meth:`DataDriftMonitor.export_state` returns.
STATE_FORMAT = 1


def _describe(state: object) -> str:
    if isinstance(state, dict):
        return f"a dict with keys {sorted(map(str, state))}"
    return type(state).__name__


@dataclass(frozen=True, slots=True)
class DataDriftResult:
    """One feature's comparison that crossed its threshold."""

    feature: str
    statistic: float
    threshold: float
    reference_size: int
    recent_size: int


class _Feature:
    __slots__ = ("categories", "edges", "recent", "ref_counts", "reference", "spec")

    def __init__(self, spec: FeatureSpec, recent_size: int) -> None:
        self.spec = spec
        self.reference: list[Any] = []
        self.recent: deque[Any] = deque(maxlen=recent_size)
        self.edges: np.ndarray[Any, Any] | None = None
        self.categories: dict[str, int] = {}
        self.ref_counts: np.ndarray[Any, Any] | None = None


class DataDriftMonitor:
    """Reference-vs-recent PSI per input feature, compared every ``check_every`` events.

    Parameters
    ----------
    features
        What to monitor (default :data:`DATA_FEATURES`).
    reference_size, recent_size
        Values in the reference and recent samples, per feature.
    check_every
        Events between two comparisons.
    n_bins
        Bins of a numeric feature (reference quantiles).
    false_alarms, checks
        Tolerated expected false alarms over ``checks`` comparisons per feature: they set
        ``alpha`` (see the module docstring).
    design_effect
        Widening of the null distribution for dependent values (see the module docstring).

    Examples
    --------
    >>> from streamproc.testing import make_viewing_event
    >>> monitor = DataDriftMonitor(reference_size=200, recent_size=100, check_every=50)
    >>> def play(i, bw):
    ...     event = make_viewing_event(event_time=i, event_type="play")
    ...     event["network"]["bandwidth_kbps"] = bw * (1 + (i % 7) / 10)
    ...     return event
    >>> hits = [(i, r.feature) for i in range(600)
    ...         for r in monitor.update(play(i, 20_000.0 if i < 400 else 5_000.0))]
    >>> hits[:2]  # every check after the shift: DriftMonitor rate-limits and re-baselines
    [(449, 'bandwidth_kbps'), (499, 'bandwidth_kbps')]
    """

    def __init__(
        self,
        features: Sequence[FeatureSpec] = DATA_FEATURES,
        *,
        reference_size: int = 1000,
        recent_size: int = 300,
        check_every: int = 200,
        n_bins: int = 10,
        false_alarms: float = 0.01,
        checks: int = 10_000,
        design_effect: float = 2.0,
    ) -> None:
        self.features = tuple(features)
        self.reference_size = reference_size
        self.recent_size = recent_size
        self.check_every = check_every
        self.n_bins = n_bins
        self.false_alarms = false_alarms
        self.checks = checks
        self.design_effect = design_effect
        self.alpha = false_alarms / (checks * max(len(self.features), 1))
        self._features = [_Feature(spec, recent_size) for spec in self.features]
        self._every_event = [f for f in self._features if not f.spec.plays_only]
        self._events = 0
        #: Largest statistic / threshold ratio seen per feature (calibration, reports).
        self.max_ratio: dict[str, float] = {spec.name: 0.0 for spec in self.features}

    def __repr__(self) -> str:
        return (
            f"DataDriftMonitor(features={[f.name for f in self.features]}, "
            f"reference_size={self.reference_size}, recent_size={self.recent_size}, "
            f"check_every={self.check_every}, n_bins={self.n_bins}, "
            f"false_alarms={self.false_alarms}, checks={self.checks}, "
            f"design_effect={self.design_effect})"
        )

    def update(self, event: ViewingEvent) -> list[DataDriftResult]:
        """Fold in one event; the features whose comparison crossed the threshold now."""
        watched = self._features if event["event_type"] == "play" else self._every_event
        for feature in watched:
            value = feature.spec.read(event)
            if value is None:
                continue
            if len(feature.reference) < self.reference_size:
                feature.reference.append(value)
            else:
                feature.recent.append(value)
        self._events += 1
        if self._events % self.check_every:
            return []
        return self.check()

    def check(self) -> list[DataDriftResult]:
        """Compare every feature with a full recent window now (done every K events)."""
        out = []
        for feature in self._features:
            if len(feature.recent) < self.recent_size:
                continue
            ref, rec = self._histograms(feature)
            statistic = psi(ref, rec)
            threshold = psi_threshold(
                len(feature.reference),
                len(feature.recent),
                len(ref),
                self.alpha,
                self.design_effect,
            )
            name = feature.spec.name
            self.max_ratio[name] = max(self.max_ratio[name], statistic / threshold)
            if statistic > threshold:
                out.append(
                    DataDriftResult(
                        name, statistic, threshold, len(feature.reference), len(feature.recent)
                    )
                )
        return out

    def rebaseline(self, name: str) -> None:
        """Start a new reference for feature ``name`` (after a drift was signalled)."""
        for feature in self._features:
            if feature.spec.name == name:
                feature.reference = []
                feature.recent.clear()
                feature.edges = None
                feature.categories = {}
                feature.ref_counts = None

    def export_state(self) -> dict[str, Any]:
        """The samples and counters (picklable; the features' read functions are not in it).

        >>> from streamproc.testing import make_viewing_event
        >>> a, b = DataDriftMonitor(), DataDriftMonitor()
        >>> for i in range(50):
        ...     _ = a.update(make_viewing_event(event_time=i, event_type="play"))
        >>> b.import_state(a.export_state())
        >>> b.export_state()["events"], len(b.export_state()["features"]["rtt_ms"]["reference"])
        (50, 50)
        """
        return {
            "format": STATE_FORMAT,
            "events": self._events,
            "max_ratio": dict(self.max_ratio),
            "features": {
                f.spec.name: {
                    "reference": list(f.reference),
                    "recent": list(f.recent),
                    "edges": f.edges,
                    "categories": dict(f.categories),
                    "ref_counts": f.ref_counts,
                }
                for f in self._features
            },
        }

    def import_state(self, state: object) -> None:
        """Continue from what :meth:`export_state` returned.

        Features this monitor does not watch are ignored; watched features missing from
        ``state`` start empty. Samples larger than this monitor's windows are cut (the oldest
        reference values and the newest recent values are kept; the bins are then rebuilt).

        Raises
        ------
        SnapshotError
            When ``state`` is not such a dict (nothing is changed then).
        """
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and isinstance(state.get("events"), int)
            and isinstance(state.get("features"), dict)
        ):
            raise SnapshotError(
                "cannot import the data drift state: expected the dict export_state() returns "
                f"(format {STATE_FORMAT}), got {_describe(state)}"
            )
        saved: dict[str, Any] = state["features"]
        for feature in self._features:
            item = saved.get(feature.spec.name)
            if not isinstance(item, dict):
                continue
            reference = list(item.get("reference", ()))
            recent = list(item.get("recent", ()))
            allowed = feature.spec.categories
            kept = len(reference)
            if allowed is not None:  # values this reader no longer produces are dropped
                reference = [v for v in reference if v in allowed]
                recent = [v for v in recent if v in allowed]
            fresh = _Feature(feature.spec, self.recent_size)
            fresh.reference = reference[: self.reference_size]
            fresh.recent.extend(recent)
            if kept == len(reference) <= self.reference_size:  # else: bins rebuilt
                fresh.edges = item.get("edges")
                fresh.categories = dict(item.get("categories") or {})
                fresh.ref_counts = item.get("ref_counts")
            self._features[self._features.index(feature)] = fresh
        self._every_event = [f for f in self._features if not f.spec.plays_only]
        self._events = state["events"]
        for name, ratio in dict(state.get("max_ratio") or {}).items():
            if name in self.max_ratio:
                self.max_ratio[name] = float(ratio)

    def _histograms(self, feature: _Feature) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        if feature.spec.categorical:
            cats = feature.categories
            if not cats:
                for value in feature.reference:
                    cats.setdefault(value, len(cats))
            other = len(cats)  # categories unseen in the reference share one bin
            size = other + 1
            if feature.ref_counts is None:
                ref_idx = [cats.get(v, other) for v in feature.reference]
                feature.ref_counts = np.bincount(ref_idx, minlength=size)
            rec_idx = [cats.get(v, other) for v in feature.recent]
            return feature.ref_counts, np.bincount(rec_idx, minlength=size)
        if feature.edges is None:
            qs = np.quantile(np.asarray(feature.reference), np.linspace(0, 1, self.n_bins + 1))
            feature.edges = np.unique(qs[1:-1])
        edges = feature.edges
        size = len(edges) + 1
        if feature.ref_counts is None:
            feature.ref_counts = np.bincount(
                np.searchsorted(edges, feature.reference, side="right"), minlength=size
            )
        ref = feature.ref_counts
        rec = np.bincount(
            np.searchsorted(edges, np.fromiter(feature.recent, float), side="right"),
            minlength=size,
        )
        return ref, rec
