"""The learning core of one partition: predict at each ``play``, learn from each outcome.

:class:`PartitionLearner` is what the model agent calls for every event of its partition
(no Kafka here). Test-then-train:

- ``play``: extract the features once per feature function, predict with every model
  (the affinity score goes into the engagement prediction's ``scores``), keep the features
  and served scores with the pending session, return one :class:`PredictionOut` per model;
- ``stop`` / ``complete``: resolve the session's label, score the served predictions
  (prequential metrics), then let each model learn from exactly the features it served with;
- ``rating``: the affinity model is scored on it, then learns from it;
- any event: sessions idle for the timeout (event time) are resolved by the policy.

Determinism: models are built from the seed, nothing reads the wall clock, and state is
only changed by events, so the same events give the same predictions; ``export_*`` /
``import_*`` carry the whole state across a restart or a rebalance.

Failure: a model that raises or returns NaN/inf raises :class:`ModelError` (an
``EventError``: the agent dead-letters the event and goes on). A failed prediction leaves
the learner untouched; a failed learning step is raised after the label was resolved for
every other model, so the state stays consistent either way.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamproc.config import Settings
from streamproc.errors import SnapshotError
from streamproc.features.extract import Features
from streamproc.features.sessions import (
    PendingSession,
    SessionOutcome,
    SessionTracker,
    TimeoutPolicy,
    rating_outcome,
)
from streamproc.features.state import FeatureState
from streamproc.learning.errors import ModelError, ModelSpecError
from streamproc.learning.metrics import PrequentialMetrics
from streamproc.learning.specs import FeatureFunction, ModelSpec, get_model_specs
from streamproc.records import ViewingEvent

__all__ = ["LabelOut", "PartitionLearner", "PredictionOut"]

#: Version of the dicts export_model / export_shared return.
STATE_FORMAT = 1
_NO_TIME = -(1 << 62)


@dataclass(frozen=True, slots=True)
class PredictionOut:
    """One model's prediction for one decision (finite scores only)."""

    event_id: str
    session_id: str
    user_id: str
    title_id: str
    model: str
    model_version: int
    score: float
    scores: dict[str, float]
    event_time: int
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class LabelOut:
    """One scored label: the served score, the label, and where it came from."""

    model: str
    model_version: int
    kind: str  # "session" or "rating"
    session_id: str
    user_id: str
    title_id: str
    event_time: int
    y_true: float
    y_pred: float
    timed_out: bool


class _Slot:
    """One model spec's live model, metrics and version."""

    __slots__ = ("metrics", "model", "name", "spec", "version")

    def __init__(self, spec: ModelSpec, seed: int, window: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.model: Any = spec.factory(seed)
        self.metrics = PrequentialMetrics(spec.metrics, window)
        self.version = 1


def _clip(value: float, bounds: tuple[float, float] | None) -> float:
    if bounds is None:
        return value
    return min(max(value, bounds[0]), bounds[1])


class PartitionLearner:
    """Predict, then learn, for the events of one partition.

    Parameters
    ----------
    specs
        The models to run (names must be unique).
    completion_threshold
        Watched fraction at or above which a session completed.
    session_timeout_ms
        Event time without any event of a session after which the timeout policy applies.
    timeout_policy
        ``abandon`` (learn as not completed) or ``drop`` (forget).
    seed
        Seed of the models' random initialisation.
    window
        Labels the ``*_recent`` metrics cover.
    on_label
        Called with every scored label (for evaluation and drift detection).

    Attributes
    ----------
    events_seen
        Events processed.
    labels_resolved
        Outcomes learned from (sessions ended or abandoned, ratings).
    labels_unmatched
        Terminal events whose session was not pending (its play was never seen).
    """

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        *,
        completion_threshold: float = 0.9,
        session_timeout_ms: int = 4 * 3600 * 1000,
        timeout_policy: TimeoutPolicy = "abandon",
        seed: int = 42,
        window: int = 1000,
        on_label: Callable[[LabelOut], None] | None = None,
    ) -> None:
        names = [s.name for s in specs]
        if not names:
            raise ModelSpecError("a partition learner needs at least one model spec")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ModelSpecError(f"model spec names must be unique, got {', '.join(duplicated)}")
        self.specs = tuple(specs)
        self.completion_threshold = completion_threshold
        self.session_timeout_ms = session_timeout_ms
        self.timeout_policy = timeout_policy
        self.seed = seed
        self.window = window
        self.on_label = on_label
        self._slots = {s.name: _Slot(s, seed, window) for s in specs}
        # Recommenders first: their score is an input of the others' outputs.
        self._reco = [s for s in self._slots.values() if s.spec.task == "recommendation"]
        self._featured: list[tuple[_Slot, FeatureFunction]] = [
            (s, s.spec.features)
            for s in self._slots.values()
            if s.spec.features is not None and s.spec.task != "recommendation"
        ]
        self._feature_fns: list[FeatureFunction] = []
        for _, fn in self._featured:
            if fn not in self._feature_fns:
                self._feature_fns.append(fn)
        self.state = FeatureState()
        self.sessions = SessionTracker(completion_threshold, session_timeout_ms, timeout_policy)
        self.events_seen = 0
        self.labels_resolved = 0
        self.labels_unmatched = 0
        self.max_event_time = _NO_TIME

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> PartitionLearner:
        """A learner for ``settings.models`` with the settings' model section (and ``kwargs``).

        Raises
        ------
        ModelSpecError
            When ``settings.models`` names an unknown spec.
        """
        return cls(
            get_model_specs(settings.models),
            completion_threshold=settings.completion_threshold,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            timeout_policy=settings.session_timeout_policy,
            seed=settings.seed,
            **kwargs,
        )

    def __repr__(self) -> str:
        return (
            f"PartitionLearner(specs={list(self._slots)}, "
            f"completion_threshold={self.completion_threshold}, "
            f"session_timeout_ms={self.session_timeout_ms}, "
            f"timeout_policy={self.timeout_policy!r}, seed={self.seed}, window={self.window})"
        )

    # -- the event loop ---------------------------------------------------------------------

    def process(self, event: ViewingEvent) -> list[PredictionOut]:
        """Handle one event; the predictions it makes (only a ``play`` makes any).

        Raises
        ------
        ModelError
            A model raised or returned NaN/inf. On a ``play`` nothing was changed; on a
            label, every other model learned and the session is resolved.
        """
        kind = event["event_type"]
        failures: list[ModelError] = []
        out: list[PredictionOut] = []
        if kind == "play":
            out = self._play(event)
        elif kind == "stop" or kind == "complete":
            closed = self.sessions.close(event)
            if closed is None:
                self.labels_unmatched += 1
            else:
                self._resolve(closed[0], closed[1], event["event_id"], failures)
        elif kind == "rating":
            self._rate(event, failures)
        else:
            self.sessions.update(event)
        self.events_seen += 1
        when = event["event_time"]
        if when > self.max_event_time:
            self.max_event_time = when
            for session, outcome in self.sessions.expire(when):
                self._resolve(session, outcome, event["event_id"], failures)
        if failures:
            raise failures[0]
        return out

    def process_batch(
        self,
        events: Sequence[ViewingEvent],
        *,
        on_error: Callable[[ViewingEvent, ModelError], None] | None = None,
    ) -> list[PredictionOut]:
        """:meth:`process` each event in order; the predictions of all of them.

        Parameters
        ----------
        events
            Events of this partition, in offset order.
        on_error
            Called with an event whose processing raised :class:`ModelError`, and the
            error; the batch then goes on. Without it the error propagates with
            ``index`` (position in ``events``) and ``partial`` (the predictions of the
            events before it) set, and the events after it are not processed.
        """
        out: list[PredictionOut] = []
        for index, event in enumerate(events):
            try:
                out.extend(self.process(event))
            except ModelError as exc:
                if on_error is None:
                    exc.index, exc.partial = index, out
                    raise
                on_error(event, exc)
        return out

    def _predict(self, slot: _Slot, event: ViewingEvent, x: Features | None) -> float:
        """The finite, clipped score of one model, or ModelError."""
        spec = slot.spec
        try:
            if spec.task == "binary":
                proba = slot.model.predict_proba_one(x)
                p_true = proba.get(True)
                # Before any learning River classifiers return {}: serve 0.5.
                value = float(1.0 - proba.get(False, 0.5) if p_true is None else p_true)
            elif spec.task == "regression":
                value = float(slot.model.predict_one(x))
            else:
                value = float(slot.model.predict_one(event["user_id"], event["title_id"]))
        except Exception as exc:
            raise ModelError(
                slot.name, event["event_id"], f"predicting raised {type(exc).__name__}: {exc}"
            ) from exc
        if not math.isfinite(value):
            raise ModelError(slot.name, event["event_id"], f"the model returned {value}")
        return _clip(value, spec.bounds)

    def _play(self, event: ViewingEvent) -> list[PredictionOut]:
        state = self.state
        features = {fn: fn(event, state) for fn in self._feature_fns}
        scores: dict[str, float] = {}
        for slot in self._reco:
            scores[slot.name] = self._predict(slot, event, None)
        stored: dict[str, Features] = {}
        for slot, fn in self._featured:
            x = stored[slot.name] = features[fn]
            scores[slot.name] = self._predict(slot, event, x)
        # Nothing above changed any state; from here on nothing can fail.
        affinity = {"affinity": scores[self._reco[0].name]} if self._reco else {}
        out = [
            PredictionOut(
                event_id=event["event_id"],
                session_id=event["session_id"],
                user_id=event["user_id"],
                title_id=event["title_id"],
                model=slot.name,
                model_version=slot.version,
                score=scores[slot.name],
                scores=dict(affinity) if slot.spec.with_affinity else {},
                event_time=event["event_time"],
            )
            for slot in self._slots.values()
        ]
        genre = state.genre_of(event)
        if event["session_id"] not in self.sessions:
            # A second play of a pending session is served but not learned twice.
            self.sessions.open(
                PendingSession(
                    session_id=event["session_id"],
                    user_id=event["user_id"],
                    title_id=event["title_id"],
                    genre=genre,
                    play_event_id=event["event_id"],
                    play_time=event["event_time"],
                    last_time=event["event_time"],
                    duration_s=event["playback"]["duration_s"],
                    position_s=event["playback"]["position_s"],
                    rebuffer_ms=event["playback"]["rebuffer_ms"],
                    features=stored,
                    scores=scores,
                    versions={name: slot.version for name, slot in self._slots.items()},
                )
            )
        state.update_play(event, genre)
        return out

    def _score(self, slot: _Slot, outcome: SessionOutcome, y: float | bool, served: float) -> None:
        slot.metrics.update(y, served)
        if self.on_label is not None:
            self.on_label(
                LabelOut(
                    model=slot.name,
                    model_version=slot.version,
                    kind=outcome.kind,
                    session_id=outcome.session_id,
                    user_id=outcome.user_id,
                    title_id=outcome.title_id,
                    event_time=outcome.event_time,
                    y_true=float(y),
                    y_pred=served,
                    timed_out=outcome.timed_out,
                )
            )

    def _resolve(
        self,
        session: PendingSession,
        outcome: SessionOutcome,
        event_id: str,
        failures: list[ModelError],
    ) -> None:
        """Score the served predictions of a resolved session, then learn from it."""
        for slot in self._slots.values():
            y = slot.spec.label(outcome)
            served = session.scores.get(slot.name)
            if y is None or served is None:  # no label, or the model came after the play
                continue
            self._score(slot, outcome, y, served)
            try:
                if slot.spec.task == "recommendation":
                    slot.model.learn_one(session.user_id, session.title_id, y)
                else:
                    slot.model.learn_one(session.features[slot.name], y)
            except Exception as exc:
                failures.append(
                    ModelError(slot.name, event_id, f"learning raised {type(exc).__name__}: {exc}")
                )
        genre = session.genre or self.state.genre_of_title(session.title_id)
        self.state.update_outcome(
            session.user_id,
            session.title_id,
            genre,
            completed=outcome.completed,
            rebuffer_ratio=outcome.rebuffer_ratio,
        )
        self.labels_resolved += 1

    def _rate(self, event: ViewingEvent, failures: list[ModelError]) -> None:
        """A rating after the end: recommenders are scored on it, then learn from it."""
        outcome = rating_outcome(event)
        if outcome is None:
            return
        for slot in self._reco:
            y = slot.spec.label(outcome)
            if y is None:
                continue
            try:
                served = self._predict(slot, event, None)
            except ModelError as exc:
                failures.append(exc)
                continue
            self._score(slot, outcome, y, served)
            try:
                slot.model.learn_one(outcome.user_id, outcome.title_id, y)
            except Exception as exc:
                failures.append(
                    ModelError(
                        slot.name,
                        event["event_id"],
                        f"learning raised {type(exc).__name__}: {exc}",
                    )
                )
        if outcome.rating is not None:
            self.state.update_rating(
                outcome.user_id, outcome.title_id, self.state.genre_of(event), outcome.rating
            )
        self.labels_resolved += 1

    # -- reading -----------------------------------------------------------------------------

    def metrics(self) -> dict[str, dict[str, float]]:
        """Model -> prequential metrics (``roc_auc``, ``roc_auc_recent``, ``labels``, ...)."""
        return {name: slot.metrics.get() for name, slot in self._slots.items()}

    @property
    def versions(self) -> dict[str, int]:
        """Model -> version serving now (1 for a fresh model)."""
        return {name: slot.version for name, slot in self._slots.items()}

    def model(self, name: str) -> Any:
        """The live River model called ``name`` (read it; do not train it from outside)."""
        return self._slot(name).model

    def top_titles(
        self, user_id: str, candidates: Sequence[str], k: int = 10, *, model: str | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` candidate titles with the highest affinity for ``user_id``, best first.

        Ties keep the order of ``candidates``. Non-finite scores are skipped.

        Raises
        ------
        ModelSpecError
            When no recommendation model runs here (or ``model`` is not one).
        """
        if model is None:
            if not self._reco:
                raise ModelSpecError("no recommendation model (e.g. affinity) runs here")
            slot = self._reco[0]
        else:
            slot = self._slot(model)
            if slot.spec.task != "recommendation":
                raise ModelSpecError(
                    f'model "{model}" is a {slot.spec.task} model, not a recommendation model'
                )
        scored = []
        for title_id in candidates:
            value = float(slot.model.predict_one(user_id, title_id))
            if math.isfinite(value):
                scored.append((title_id, _clip(value, slot.spec.bounds)))
        scored.sort(key=lambda pair: -pair[1])
        return scored[:k]

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise ModelSpecError(
                f'no model "{name}" in this learner; it runs {", ".join(self._slots)}'
            ) from None

    # -- state ------------------------------------------------------------------------------

    def export_model(self, name: str, *, copy: bool = True) -> dict[str, Any]:
        """A picklable copy of one model's state: the model, its metrics and version.

        ``copy=False`` returns the live objects instead, for a caller that pickles them at
        once (a snapshot): the copy is a pickle round trip, twice the work of the pickle.
        """
        slot = self._slot(name)
        take = _copy if copy else _same
        return {
            "format": STATE_FORMAT,
            "name": name,
            "version": slot.version,
            "model": take(slot.model),
            "metrics": take(slot.metrics),
        }

    def import_model(self, name: str, state: object, version: int) -> None:
        """Serve ``state`` (from :meth:`export_model`) as model ``name`` at ``version``.

        Raises
        ------
        ModelSpecError
            When no model called ``name`` runs here.
        SnapshotError
            When ``state`` is not an exported state of a model called ``name``.
        """
        slot = self._slot(name)
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and state.get("name") == name
            and isinstance(state.get("metrics"), PrequentialMetrics)
            and "model" in state
        ):
            raise SnapshotError(
                f'cannot import model "{name}": expected the dict export_model("{name}") '
                f"returns (format {STATE_FORMAT}), got {_describe(state)}"
            )
        slot.model = _copy(state["model"])
        slot.metrics = _copy(state["metrics"])
        slot.version = version

    def export_shared(self, *, copy: bool = True) -> dict[str, Any]:
        """A picklable copy of the state shared by the models: statistics, pending sessions.

        ``copy=False``: the live objects, as for :meth:`export_model`. The pending sessions,
        the largest part of a partition's state, took 80 % of a snapshot's time to copy.
        """
        take = _copy if copy else _same
        return {
            "format": STATE_FORMAT,
            "features": take(self.state),
            "sessions": take(self.sessions.pending_sessions()),
            "sessions_dropped": self.sessions.dropped,
            "events_seen": self.events_seen,
            "labels_resolved": self.labels_resolved,
            "labels_unmatched": self.labels_unmatched,
            "max_event_time": self.max_event_time,
        }

    def import_shared(self, state: object) -> None:
        """Restore what :meth:`export_shared` returned.

        Raises
        ------
        SnapshotError
            When ``state`` is not such a dict.
        """
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and isinstance(state.get("features"), FeatureState)
            and isinstance(state.get("sessions"), list)
        ):
            raise SnapshotError(
                "cannot import the shared state: expected the dict export_shared() returns "
                f"(format {STATE_FORMAT}), got {_describe(state)}"
            )
        self.state = _copy(state["features"])
        self.sessions.restore(_copy(state["sessions"]), dropped=int(state["sessions_dropped"]))
        self.events_seen = int(state["events_seen"])
        self.labels_resolved = int(state["labels_resolved"])
        self.labels_unmatched = int(state["labels_unmatched"])
        self.max_event_time = int(state["max_event_time"])


def _copy(value: Any) -> Any:
    # A pickle round trip: a deep copy that also proves the state is picklable.
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _same(value: Any) -> Any:
    return value


def _describe(state: object) -> str:
    if isinstance(state, dict):
        return f"a dict with keys {sorted(map(str, state))}"
    return type(state).__name__
