"""The response to drift: challenger, shadow evaluation, promotion, guarded rollback.

:class:`ResponsePolicy` runs beside one model slot of a
:class:`~streamproc.learning.partition.PartitionLearner`, without changing it:

1. **challenger**: on a concept (or label) drift or warning signal, a fresh model of the same
   spec (``spec.factory(seed)``) starts; the champion keeps serving.
2. **shadow evaluation**: at each new session's ``play`` the challenger predicts on exactly
   the features the champion served with (read from the learner's pending session, so no
   second feature extraction and no train/serve skew); when the label arrives both are
   scored on it (the champion's score is the ``LabelOut``'s served ``y_pred``) and the
   challenger learns from it, in the same test-then-train order as the champion.
3. **promotion**: when over the last ``window`` paired labels the challenger's mean loss
   (log loss, or absolute error for a regression) is below the champion's by more than
   ``margin`` (relative: 0.02 = 2 % of the champion's loss, so one setting serves log losses
   of ~0.5 and rebuffering errors of ~0.01) and the paired difference is significant
   (``z`` standard errors), the challenger is imported into the learner as the next
   version (signal ``action=promoted``). A challenger that has not won after
   ``max_trial_labels`` labels is retired (a ``lifecycle`` / ``info`` signal).
4. **guard**: after a promotion the previous champion keeps predicting and learning in the
   shadow for ``guard_labels`` labels; if the new version does worse than it by the same
   test, it is served again (``action=rolled_back``) as the next version: versions only
   grow, so a version number never names two different models (the previous model
   learned during the guard, so it is no longer the old version's snapshot). "Next" is
   one above the highest version the slot has used (:attr:`ResponsePolicy.top_version`),
   not the serving one: after an operator served v1 again, a promotion makes v3, not a
   second v2.

Promotions and rollbacks are applied by :meth:`ResponsePolicy.apply` *after*
``learner.process`` returned (the learner calls ``on_label`` before the champion learns;
swapping the slot's model inside that callback would make the new model learn the label
twice). :class:`~streamproc.drift.partition.PartitionDrift` wires learner, monitors and
policies of one partition.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from streamproc.drift.data import _describe
from streamproc.drift.monitor import Action, Severity, make_signal
from streamproc.errors import SnapshotError
from streamproc.learning.partition import LabelOut, PartitionLearner
from streamproc.learning.specs import ModelSpec

__all__ = ["STATE_FORMAT", "PairedWindow", "ResponsePolicy"]

_EPS = 1e-3
#: Version of the dicts the ``export_state`` methods here return.
STATE_FORMAT = 1
_SHADOWS = ("challenger", "previous")


class PairedWindow:
    """Paired losses of two models on the same labels over the last ``size`` labels.

    >>> w = PairedWindow(4)
    >>> for a, b in [(0.7, 0.5), (0.6, 0.4), (0.9, 0.6), (0.5, 0.4)]:
    ...     w.add(a, b)
    >>> round(w.mean_difference, 3), round(w.z, 2)
    (0.2, 4.9)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._sq = 0.0
        self.a_sum = 0.0
        self.b_sum = 0.0
        self._a: deque[float] = deque(maxlen=size)
        self._b: deque[float] = deque(maxlen=size)

    def add(self, loss_a: float, loss_b: float) -> None:
        """Add one label's losses (``a``: incumbent, ``b``: contender)."""
        if len(self._d) == self.size:
            old = self._d[0]
            self._sum -= old
            self._sq -= old * old
            self.a_sum -= self._a[0]
            self.b_sum -= self._b[0]
        d = loss_a - loss_b
        self._d.append(d)
        self._a.append(loss_a)
        self._b.append(loss_b)
        self._sum += d
        self._sq += d * d
        self.a_sum += loss_a
        self.b_sum += loss_b

    def __len__(self) -> int:
        return len(self._d)

    @property
    def full(self) -> bool:
        return len(self._d) == self.size

    @property
    def mean_difference(self) -> float:
        """Mean of ``loss_a - loss_b`` (positive: ``b`` is better)."""
        return self._sum / len(self._d) if self._d else 0.0

    @property
    def relative_difference(self) -> float:
        """Mean of ``loss_a - loss_b`` over the mean of ``loss_a`` (0 when that is 0)."""
        return self._sum / self.a_sum if self.a_sum > 0 else 0.0

    @property
    def z(self) -> float:
        """The mean difference in standard errors (0 with fewer than 2 labels)."""
        n = len(self._d)
        if n < 2:
            return 0.0
        mean = self._sum / n
        var = max(self._sq / n - mean * mean, 0.0) * n / (n - 1)
        return mean / math.sqrt(var / n) if var > 0 else (math.inf if mean > 0 else 0.0)


class _Shadow:
    """A model run beside the champion: predicts at plays, is scored and learns at labels."""

    __slots__ = ("model", "pending", "window")

    def __init__(self, model: Any, window: int) -> None:
        self.model = model
        self.pending: dict[str, tuple[dict[str, float], float]] = {}
        self.window = PairedWindow(window)


class ResponsePolicy:
    """Challenger, shadow evaluation, promotion and guarded rollback for one model slot.

    Parameters
    ----------
    learner
        The partition's learner (its slot ``spec.name`` is managed).
    spec
        The model's spec (binary or regression; recommenders are not handled).
    partition
        Input partition (for the signals).
    window
        Paired labels the promotion and rollback tests look at.
    margin
        Relative mean loss difference a contender must beat the incumbent by.
    z
        Standard errors the difference must exceed (a paired test over the window).
    max_trial_labels
        Labels after which a challenger that has not won is retired.
    guard_labels
        Labels after a promotion during which a rollback is possible.
    trigger_kinds
        Signal kinds that start a challenger (``concept``; add ``label`` or ``data``).
    """

    def __init__(
        self,
        learner: PartitionLearner,
        spec: ModelSpec,
        *,
        partition: int | None = None,
        window: int = 300,
        margin: float = 0.02,
        z: float = 3.0,
        max_trial_labels: int = 3000,
        guard_labels: int = 1500,
        trigger_kinds: Sequence[str] = ("concept", "label"),
    ) -> None:
        if spec.task not in ("binary", "regression"):
            raise ValueError(
                f"a response policy needs a binary or regression spec, got {spec.task!r}"
            )
        self.learner = learner
        self.spec = spec
        self.model = spec.name
        self.partition = partition
        self.window = window
        self.margin = margin
        self.z = z
        self.max_trial_labels = max_trial_labels
        self.guard_labels = guard_labels
        self.trigger_kinds = tuple(trigger_kinds)
        self.challenger: _Shadow | None = None
        self.previous: _Shadow | None = None  # the old champion during the guard
        self._labels_in_phase = 0
        self._decision: tuple[str, LabelOut, int | None] | None = None
        self._want_challenger = False
        self.promotions = 0
        self.rollbacks = 0
        self.challengers_started = 0
        #: Highest version number this slot has used on this partition: a promotion or a
        #: rollback serves ``top_version + 1``, so a number never names two models even
        #: after an operator served an older version again.
        self.top_version = learner.versions[self.model]
        self._champion_before: int | None = None  # the version the guard may restore
        #: Called with (role, label, shadow prediction) for every shadow-scored label
        #: (role ``challenger`` or ``previous``): for reports and plots.
        self.on_shadow_score: Callable[[str, LabelOut, float], None] | None = None

    def __repr__(self) -> str:
        return (
            f"ResponsePolicy(model={self.model!r}, partition={self.partition}, "
            f"window={self.window}, margin={self.margin}, z={self.z}, "
            f"max_trial_labels={self.max_trial_labels}, guard_labels={self.guard_labels})"
        )

    @property
    def busy(self) -> bool:
        """Whether :meth:`apply` has anything to do (False on most events: skip the call)."""
        return self._want_challenger or self._decision is not None

    @property
    def phase(self) -> str:
        """``idle``, ``challenging`` or ``guarding``."""
        if self.challenger is not None:
            return "challenging"
        return "guarding" if self.previous is not None else "idle"

    def loss(self, y_true: float, y_pred: float) -> float:
        """Log loss (binary) or absolute error (regression) of one prediction."""
        if self.spec.task == "regression":
            return abs(y_true - y_pred)
        p = min(max(y_pred, _EPS), 1.0 - _EPS)
        return -math.log(p if y_true > 0.5 else 1.0 - p)

    # -- hooks the wiring calls ---------------------------------------------------------------

    def on_signal(self, signal: dict[str, Any]) -> None:
        """A monitor signal of this model: a trigger starts a challenger at :meth:`apply`."""
        if (
            signal["kind"] in self.trigger_kinds
            and signal["severity"] in ("warning", "drift")
            and self.phase == "idle"
        ):
            self._want_challenger = True

    def on_play(self, session_id: str) -> None:
        """After ``learner.process(play)``: shadow models predict on the stored features."""
        session = self.learner.sessions.get(session_id)
        if session is None or self.model not in session.features:
            return
        x = session.features[self.model]
        for shadow in (self.challenger, self.previous):
            if shadow is not None and session_id not in shadow.pending:
                shadow.pending[session_id] = (x, self._predict(shadow.model, x))
                if len(shadow.pending) > 4 * len(self.learner.sessions) + 1000:
                    self._prune(shadow)

    def on_label(self, label: LabelOut, offset: int | None = None) -> None:
        """A scored label of this model (from ``on_label``): score and train the shadows."""
        if label.model != self.model or label.kind != "session":
            return
        served_loss = self.loss(label.y_true, label.y_pred)
        y: Any = label.y_true > 0.5 if self.spec.task == "binary" else label.y_true
        for role, shadow in (("challenger", self.challenger), ("previous", self.previous)):
            if shadow is None:
                continue
            item = shadow.pending.pop(label.session_id, None)
            if item is None:
                continue  # opened before the shadow started: nothing served to compare
            x, pred = item
            shadow_loss = self.loss(label.y_true, pred)
            # Incumbent = the served model, contender = the shadow (challenger, or the
            # previous champion during the guard): a positive difference favours the shadow.
            shadow.window.add(served_loss, shadow_loss)
            if self.on_shadow_score is not None:
                self.on_shadow_score(role, label, pred)
            shadow.model.learn_one(x, y)
        if self.phase == "idle":
            return
        self._labels_in_phase += 1
        if self.challenger is not None:
            w = self.challenger.window
            if w.full and w.relative_difference > self.margin and w.z > self.z:
                self._decision = ("promote", label, offset)
            elif self._labels_in_phase >= self.max_trial_labels:
                self._decision = ("retire", label, offset)
        elif self.previous is not None:
            w = self.previous.window
            if w.full and w.relative_difference > self.margin and w.z > self.z:
                self._decision = ("rollback", label, offset)
            elif self._labels_in_phase >= self.guard_labels:
                self._decision = ("accept", label, offset)

    def apply(self, *, event_time: int, offset: int | None = None) -> list[dict[str, Any]]:
        """After ``learner.process``: start, promote, retire or roll back; the signals."""
        out: list[dict[str, Any]] = []
        version = self.learner.versions[self.model]
        if self._want_challenger:
            self._want_challenger = False
            if self.phase == "idle":
                self.challenger = _Shadow(self.spec.factory(self.learner.seed), self.window)
                self._labels_in_phase = 0
                self.challengers_started += 1
                out.append(
                    self._signal(
                        version,
                        "challenger_started",
                        "warning",
                        event_time,
                        offset,
                        {"challenger": "fresh " + self.model},
                    )
                )
        decision, self._decision = self._decision, None
        if decision is None:
            return out
        what, label, at = decision
        if what == "promote" and self.challenger is not None:
            w = self.challenger.window
            old = self.learner.export_model(self.model)
            self.previous = _Shadow(old["model"], self.window)
            new = self._new_version(version)
            self._serve(self.challenger.model, new)
            self._champion_before = version
            self.challenger = None
            self._labels_in_phase = 0
            self.promotions += 1
            out.append(
                self._signal(
                    new,
                    "promoted",
                    "drift",
                    label.event_time,
                    at,
                    self._figures(w, version, new),
                )
            )
        elif what == "retire" and self.challenger is not None:
            w = self.challenger.window
            self.challenger = None
            out.append(
                self._signal(
                    version,
                    "none",
                    "info",
                    label.event_time,
                    at,
                    {**self._figures(w, version, version), "event": "challenger_retired"},
                )
            )
        elif what == "rollback" and self.previous is not None:
            w = self.previous.window
            new = self._new_version(version)
            self._serve(self.previous.model, new)
            self.previous = None
            self.rollbacks += 1
            before = self._champion_before
            out.append(
                self._signal(
                    new,
                    "rolled_back",
                    "drift",
                    label.event_time,
                    at,
                    {
                        **self._figures(w, version, new),
                        "restored_lineage_of": str(version - 1 if before is None else before),
                    },
                )
            )
        elif what == "accept":
            self.previous = None
        return out

    def reset(self) -> None:
        """Drop the challenger and the guard (an operator chose the served version)."""
        self.challenger = None
        self.previous = None
        self._champion_before = None
        self._labels_in_phase = 0
        self._decision = None
        self._want_challenger = False

    # -- state --------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """The shadows (challenger, previous champion), windows and counters (picklable)."""
        return {
            "format": STATE_FORMAT,
            "model": self.model,
            "challenger": self.challenger,
            "previous": self.previous,
            "labels_in_phase": self._labels_in_phase,
            "decision": self._decision,
            "want_challenger": self._want_challenger,
            "promotions": self.promotions,
            "rollbacks": self.rollbacks,
            "challengers_started": self.challengers_started,
            "top_version": self.top_version,
            "champion_before": self._champion_before,
        }

    def import_state(self, state: object) -> None:
        """Continue from what :meth:`export_state` returned (for the same model).

        Raises
        ------
        SnapshotError
            When ``state`` is not such a dict for this model (nothing is changed then).
        """
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and state.get("model") == self.model
            and all(isinstance(state.get(k), (_Shadow, type(None))) for k in _SHADOWS)
            and isinstance(state.get("top_version"), int)
        ):
            raise SnapshotError(
                f'cannot import the response policy state of "{self.model}": expected the '
                f"dict export_state() returns (format {STATE_FORMAT}), got {_describe(state)}"
            )
        self.challenger = state["challenger"]
        self.previous = state["previous"]
        self._labels_in_phase = int(state.get("labels_in_phase", 0))
        self._decision = state.get("decision")
        self._want_challenger = bool(state.get("want_challenger", False))
        self.promotions = int(state.get("promotions", 0))
        self.rollbacks = int(state.get("rollbacks", 0))
        self.challengers_started = int(state.get("challengers_started", 0))
        self.top_version = max(self.top_version, state["top_version"])
        self._champion_before = state.get("champion_before")

    # -- internals ----------------------------------------------------------------------------

    def _new_version(self, current: int) -> int:
        self.top_version = max(self.top_version, current) + 1
        return self.top_version

    def _predict(self, model: Any, x: dict[str, float]) -> float:
        if self.spec.task == "binary":
            proba = model.predict_proba_one(x)
            p_true = proba.get(True)
            value = float(1.0 - proba.get(False, 0.5) if p_true is None else p_true)
        else:
            value = float(model.predict_one(x))
        if not math.isfinite(value):
            value = 0.5 if self.spec.task == "binary" else 0.0
        bounds = self.spec.bounds
        return value if bounds is None else min(max(value, bounds[0]), bounds[1])

    def _serve(self, model: Any, version: int) -> None:
        state = self.learner.export_model(self.model)
        state["model"] = model
        self.learner.import_model(self.model, state, version)

    def _prune(self, shadow: _Shadow) -> None:
        # Sessions the learner dropped (timeout policy "drop") never get a label.
        sessions = self.learner.sessions
        shadow.pending = {k: v for k, v in shadow.pending.items() if k in sessions}

    def _figures(self, w: PairedWindow, from_version: int, to_version: int) -> dict[str, str]:
        n = max(len(w), 1)
        return {
            "from_version": str(from_version),
            "to_version": str(to_version),
            "window": str(len(w)),
            "incumbent_loss": f"{w.a_sum / n:.5f}",
            "contender_loss": f"{w.b_sum / n:.5f}",
            "margin": str(self.margin),
            "z": f"{w.z:.2f}",
        }

    def _signal(
        self,
        version: int,
        action: Action,
        severity: Severity,
        event_time: int,
        offset: int | None,
        details: dict[str, str],
    ) -> dict[str, Any]:
        return make_signal(
            model=self.model,
            model_version=version,
            partition=self.partition,
            detector="response",
            kind="lifecycle",
            severity=severity,
            detected_at=event_time,
            action=action,
            input_offset=offset,
            details=details,
        )
