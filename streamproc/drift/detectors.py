"""Change detectors on one stream of numbers, selectable by name: ``float -> bool``.

A thin layer over ``river.drift``, so the monitor can swap detectors by name and snapshot
them with the model (everything here pickles):

================  ==============================  ========================================
name              river class                     stream it expects
================  ==============================  ========================================
``adwin``         ``drift.ADWIN`` (default)       any bounded numbers (log loss, |error|,
                                                  a label); 0.17 µs/update
``page_hinkley``  ``drift.PageHinkley``           numbers; cumulative deviation from the
                                                  mean (``mode="up"``: increases only)
``ddm``           ``drift.binary.DDM``            0/1 errors; has a warning zone
``eddm``          ``drift.binary.EDDM``           0/1 errors (distance between errors)
``hddm_a``        ``drift.binary.HDDMA``          0/1 errors (Hoeffding bound, averages)
``hddm_w``        ``drift.binary.HDDMW``          0/1 errors (Hoeffding bound, weighted)
================  ==============================  ========================================

``KSWIN`` is deliberately absent: 214 µs per update (PERF-NOTES) is too dear per event;
distribution tests on inputs run every K events in :mod:`streamproc.drift.data` instead.

Only the binary detectors have a warning zone. ADWIN and Page-Hinkley raise no warning;
:class:`RiverDetector` also records whether the detected change was an *increase* of the
stream's mean (:attr:`RiverDetector.increased`): a falling error rate is a change too, but
no reason to replace a model.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from river import drift
from river.drift import binary

__all__ = [
    "BINARY_DETECTORS",
    "DETECTORS",
    "DetectorName",
    "DriftDetector",
    "RiverDetector",
    "make_detector",
]

DetectorName = Literal["adwin", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w"]

#: Name -> river class of every detector :func:`make_detector` builds.
DETECTORS: dict[str, Any] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}
#: Detectors that expect a stream of 0/1 (an error indicator).
BINARY_DETECTORS = frozenset({"ddm", "eddm", "hddm_a", "hddm_w"})


@runtime_checkable
class DriftDetector(Protocol):
    """What the monitor needs of a change detector."""

    name: str

    def update(self, x: float) -> bool:
        """Fold in ``x``; True when a drift is detected at this value."""
        ...

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a drift."""
        ...

    @property
    def warning_detected(self) -> bool:
        """Whether the last update is in the warning zone (False for detectors without one)."""
        ...


class RiverDetector:
    """A ``river.drift`` detector behind the :class:`DriftDetector` protocol.

    Parameters
    ----------
    name
        One of :data:`DETECTORS`.
    params
        Keyword arguments of the river class (e.g. ``delta=0.002`` for ADWIN). Page-Hinkley
        defaults to ``mode="up"`` (only increases matter for an error stream).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(42)
    >>> stream = [rng.gauss(0.2, 0.05) for _ in range(1000)]
    >>> stream += [rng.gauss(0.5, 0.05) for _ in range(1000)]
    >>> detector = make_detector("adwin")
    >>> [i for i, x in enumerate(stream) if detector.update(x)]
    [1055]
    >>> detector.increased
    True
    """

    def __init__(self, name: str = "adwin", **params: Any) -> None:
        try:
            cls = DETECTORS[name]
        except KeyError:
            raise ValueError(
                f"unknown drift detector {name!r}; known: {', '.join(sorted(DETECTORS))}"
            ) from None
        if name == "page_hinkley":
            params.setdefault("mode", "up")
        self.name = name
        self.params = params
        self.binary = name in BINARY_DETECTORS
        self._detector = cls(**params)
        self._mean = 0.0
        self._n = 0
        self.increased = False
        self.n_detections = 0

    def update(self, x: float) -> bool:
        """Fold in ``x``; True when a drift is detected at this value."""
        before = self._mean
        self._n += 1
        # Running mean since the last detection: tells an increase from a decrease.
        self._mean += (x - self._mean) / self._n
        detector = self._detector
        detector.update(x)
        if not detector.drift_detected:
            return False
        estimation = getattr(detector, "estimation", None)
        # ADWIN keeps the recent sub-window: its mean against the mean before it.
        recent = float(estimation) if isinstance(estimation, float) else x
        self.increased = recent > before
        self.n_detections += 1
        self._mean, self._n = recent, 1
        return True

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a drift."""
        return bool(self._detector.drift_detected)

    @property
    def warning_detected(self) -> bool:
        """Whether the last update is in the warning zone (binary detectors only)."""
        return bool(getattr(self._detector, "warning_detected", False))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        return f"RiverDetector({self.name!r}{', ' + args if args else ''})"


def make_detector(name: str = "adwin", **params: Any) -> RiverDetector:
    """The detector called ``name`` with ``params`` (see :class:`RiverDetector`).

    >>> make_detector("ddm", warm_start=50)
    RiverDetector('ddm', warm_start=50)
    """
    return RiverDetector(name, **params)
