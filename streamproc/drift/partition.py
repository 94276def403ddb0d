"""One partition's drift monitors and responses around its learner: events -> predictions, signals.

:class:`PartitionDrift` is what the model agent (and the restore catch-up, the replay and
``streamproc drift-report``) calls instead of ``learner.process``. Besides the predictions it
returns the DriftSignal dicts to put on ``drift-signals``: detections (concept, label, data)
and the lifecycle actions of the response (challenger started, promoted, rolled back,
retired), and, through :meth:`PartitionDrift.apply_control`, an operator's manual
promotion or rollback.

Its whole state (detectors, episodes, data windows, an in-flight challenger or guard, the
control records already applied) goes into the partition's snapshot next to the models
(:meth:`PartitionDrift.export_state`), so a restart or a rebalance continues an episode
instead of starting it again.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from streamproc.drift.data import DataDriftMonitor, _describe
from streamproc.drift.detectors import DETECTORS
from streamproc.drift.monitor import Action, DriftMonitor, make_signal
from streamproc.drift.response import ResponsePolicy
from streamproc.errors import ConfigError, SnapshotError
from streamproc.features.state import USER_DECAY
from streamproc.learning.partition import LabelOut, PartitionLearner, PredictionOut
from streamproc.records import ViewingEvent

if TYPE_CHECKING:
    from streamproc.config import Settings

__all__ = ["STATE_FORMAT", "VERSION_ACTIONS", "PartitionDrift", "parse_detector_choice"]

#: Version of the dict :meth:`PartitionDrift.export_state` returns.
STATE_FORMAT = 1
#: Signal actions after which another version serves.
VERSION_ACTIONS = frozenset({"promoted", "rolled_back", "manual_promote", "manual_rollback"})
#: Per-outcome decay of a viewer's running rates while a drift response is under way (about
#: their last 10 sessions count; normally USER_DECAY, about the last 100).
ADAPTING_USER_DECAY = 0.9


def parse_detector_choice(spec: str, models: Sequence[str]) -> dict[str, str]:
    """Model -> concept-drift detector, from ``adwin`` or ``engagement:ddm,qoe:adwin``.

    A bare name applies to every model not named in a ``model:name`` pair; models named by
    no part of ``spec`` get ``adwin``.

    >>> parse_detector_choice("page_hinkley,engagement:ddm", ["engagement", "qoe"])
    {'engagement': 'ddm', 'qoe': 'page_hinkley'}

    Raises
    ------
    ConfigError
        For an unknown detector or model name (the message lists the known ones).
    """
    default = "adwin"
    chosen: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        model, sep, name = part.rpartition(":")
        if name not in DETECTORS:
            raise ConfigError(
                f"STREAMPROC_DRIFT_DETECTOR: unknown detector {name!r} in {spec!r}; known: "
                f"{', '.join(sorted(DETECTORS))}"
            )
        if not sep:
            default = name
        elif model in models:
            chosen[model] = name
        else:
            raise ConfigError(
                f"STREAMPROC_DRIFT_DETECTOR: no model {model!r} in {spec!r}; the model agent "
                f"runs {', '.join(models)}"
            )
    return {m: chosen.get(m, default) for m in models}


def _copy(value: Any) -> Any:
    # A pickle round trip: a deep copy that also proves the state is picklable.
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class PartitionDrift:
    """One partition's learner with a drift monitor and a response policy per model.

    Parameters
    ----------
    learner
        The partition's learner (its ``on_label`` is chained, not replaced).
    partition
        Input partition.
    models
        Models to monitor and respond for (binary or regression specs; default: all such).
    data
        Data drift monitor of the partition's inputs (signals carry the first model).
    respond
        False: monitor only (the no-adaptation baseline).
    monitor_kwargs, policy_kwargs
        Passed to every :class:`~streamproc.drift.monitor.DriftMonitor` /
        :class:`~streamproc.drift.response.ResponsePolicy`.
    model_monitor_kwargs
        Per model, on top of ``monitor_kwargs`` (e.g. ``{"qoe": {"concept_detector": "ddm"}}``).

    Attributes
    ----------
    controls_applied
        Model -> token of the last control record (manual promotion or rollback) applied
        here; kept in the snapshot so that a record is applied, and signalled, once.
    """

    def __init__(
        self,
        learner: PartitionLearner,
        *,
        partition: int | None = None,
        models: Sequence[str] | None = None,
        data: DataDriftMonitor | None = None,
        respond: bool = True,
        monitor_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        model_monitor_kwargs: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.learner = learner
        self.partition = partition
        specs = {s.name: s for s in learner.specs if s.task in ("binary", "regression")}
        names = list(specs) if models is None else list(models)
        self.data = data if names else None
        per_model = model_monitor_kwargs or {}
        self.monitors = {
            name: DriftMonitor(
                name,
                "binary" if specs[name].task == "binary" else "regression",
                partition=partition,
                data=data if i == 0 else None,
                **{**(monitor_kwargs or {}), **per_model.get(name, {})},
            )
            for i, name in enumerate(names)
        }
        self.policies = (
            {
                name: ResponsePolicy(
                    learner, specs[name], partition=partition, **(policy_kwargs or {})
                )
                for name in names
            }
            if respond
            else {}
        )
        self.controls_applied: dict[str, str] = {}
        self._chained = learner.on_label
        learner.on_label = self._on_label
        self._pending: list[dict[str, Any]] = []
        self._offset: int | None = None

    @classmethod
    def from_settings(
        cls, learner: PartitionLearner, settings: Settings, *, partition: int | None = None
    ) -> PartitionDrift:
        """The drift set-up the settings ask for (``STREAMPROC_DRIFT_*``) around ``learner``.

        With ``drift_enabled`` off nothing is monitored, but manual controls still go
        through :meth:`apply_control`.

        Raises
        ------
        ConfigError
            When ``drift_detector`` names an unknown detector or model.
        """
        if not settings.drift_enabled:
            return cls(learner, partition=partition, models=(), respond=False)
        names = [s.name for s in learner.specs if s.task in ("binary", "regression")]
        detectors = parse_detector_choice(settings.drift_detector, names)
        return cls(
            learner,
            partition=partition,
            data=DataDriftMonitor(),
            respond=settings.drift_respond,
            model_monitor_kwargs={m: {"concept_detector": d} for m, d in detectors.items()},
        )

    def __repr__(self) -> str:
        return (
            f"PartitionDrift(partition={self.partition}, monitors={list(self.monitors.values())}, "
            f"policies={list(self.policies.values())})"
        )

    def _version_of(self, name: str) -> Callable[[], int]:
        return lambda: self.learner.versions[name]

    def _on_label(self, label: LabelOut) -> None:
        if self._chained is not None:
            self._chained(label)
        monitor = self.monitors.get(label.model)
        if monitor is None:
            return
        policy = self.policies.get(label.model)
        if policy is not None:
            policy.on_label(label, self._offset)
        signals = monitor.update_label(label, offset=self._offset)
        for signal in signals:
            if policy is not None:
                policy.on_signal(signal)
        self._pending.extend(signals)

    def process(
        self, event: ViewingEvent, offset: int | None = None
    ) -> tuple[list[PredictionOut], list[dict[str, Any]]]:
        """``learner.process(event)`` plus drift monitoring and the response; both outputs.

        Raises
        ------
        ModelError
            As ``learner.process`` (the signals raised so far are kept for the next call).
        """
        self._offset = offset
        new_session = (
            event["event_type"] == "play" and event["session_id"] not in self.learner.sessions
        )
        predictions = self.learner.process(event)
        if new_session:
            for policy in self.policies.values():
                policy.on_play(event["session_id"])
        for name, monitor in self.monitors.items():
            if monitor.data is None:
                continue
            version = self._version_of(name)
            for signal in monitor.update_event(event, version=version, offset=offset):
                target = self.policies.get(name)
                if target is not None:
                    target.on_signal(signal)
                self._pending.append(signal)
        for name, policy in self.policies.items():
            if not policy.busy:
                continue
            actions = policy.apply(event_time=event["event_time"], offset=offset)
            if any(a["action"] in ("promoted", "rolled_back") for a in actions):
                self.monitors[name].reset_concept()
            self._pending.extend(actions)
        # While a response is under way (a challenger learning, or a promotion guarded), the
        # per-user statistics the features are built from forget faster: what a viewer's
        # history said is what the drift made wrong, and a fresh model fed the old history
        # learns no faster than the champion it should beat.
        adapting = False
        for policy in self.policies.values():
            if policy.phase != "idle":
                adapting = True
                break
        self.learner.state.user_decay = ADAPTING_USER_DECAY if adapting else USER_DECAY
        signals, self._pending = self._pending, []
        return predictions, signals

    # -- manual lifecycle actions -------------------------------------------------------------

    def apply_control(
        self,
        model: str,
        version: int,
        state: object | None,
        *,
        token: str,
        action: Action,
        at: int,
        offset: int | None = None,
        details: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Serve ``version`` of ``model`` as an operator asked; the lifecycle signal.

        The same path as a promotion by the policy: the model is imported into the learner
        at that version, the slot's challenger or guard is dropped (the operator decided),
        the concept detector warms up again, and the signal names the action.

        Parameters
        ----------
        state
            The model state of that version's snapshot (:meth:`PartitionLearner.export_model`),
            or None when there is none for this partition: nothing is switched then, and
            the signal says so (``details["result"]``).
        token
            Identity of the control record (see :attr:`controls_applied`).
        at
            When the operator acted, epoch ms (the signal's ``detected_at``).

        Returns
        -------
        dict or None
            The signal; None when this partition runs no model ``model``.

        Raises
        ------
        SnapshotError
            When ``state`` is not a model state of ``model`` (nothing is changed then).
        """
        if model not in self.learner.versions:
            return None
        before = self.learner.versions[model]
        if before == version:
            result = "already_serving"
        elif state is None:
            result = "no_snapshot"
        else:
            self.learner.import_model(model, state, version)
            result = "switched"
            policy = self.policies.get(model)
            if policy is not None:
                policy.reset()
                policy.top_version = max(policy.top_version, version)
            monitor = self.monitors.get(model)
            if monitor is not None:
                monitor.reset_concept()
        self.controls_applied[model] = token
        return make_signal(
            model=model,
            model_version=self.learner.versions[model],
            partition=self.partition,
            detector="manual",
            kind="lifecycle",
            severity="info",
            detected_at=at,
            action=action,
            input_offset=offset,
            details={
                **dict(details or {}),
                "from_version": str(before),
                "to_version": str(version),
                "result": result,
            },
        )

    def reserve_versions(self, known: Mapping[str, int]) -> None:
        """Versions up to ``known[model]`` exist (snapshots): new ones must be higher."""
        for model, version in known.items():
            policy = self.policies.get(model)
            if policy is not None:
                policy.top_version = max(policy.top_version, version)

    # -- state --------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """A picklable copy of every monitor's and policy's state, for the snapshot.

        ``versions`` records the versions serving at the time, so that a restore picks
        the model snapshots written together with this state.
        """
        return dict(
            _copy(
                {
                    "format": STATE_FORMAT,
                    "partition": self.partition,
                    "versions": self.learner.versions,
                    "monitors": {n: m.export_state() for n, m in self.monitors.items()},
                    "data": None if self.data is None else self.data.export_state(),
                    "policies": {n: p.export_state() for n, p in self.policies.items()},
                    "pending": list(self._pending),
                    "controls_applied": dict(self.controls_applied),
                }
            )
        )

    def import_state(self, state: object) -> None:
        """Continue from what :meth:`export_state` returned.

        Monitors and policies of models not in ``state`` (or not run here) start fresh, as
        does the data monitor when ``state`` has none.

        Raises
        ------
        SnapshotError
            When ``state`` or one of its parts is not what ``export_state`` returns; nothing
            is changed then.
        """
        if not (
            isinstance(state, dict)
            and state.get("format") == STATE_FORMAT
            and isinstance(state.get("monitors"), dict)
            and isinstance(state.get("policies"), dict)
            and isinstance(state.get("pending"), list)
            and isinstance(state.get("controls_applied"), dict)
        ):
            raise SnapshotError(
                "cannot import the drift state: expected the dict PartitionDrift.export_state() "
                f"returns (format {STATE_FORMAT}), got {_describe(state)}"
            )
        # Import into fresh objects configured like the current ones, then swap them in:
        # a bad part raises before anything here is touched.
        data = self.data
        if data is not None and state.get("data") is not None:
            data = DataDriftMonitor(
                data.features,
                reference_size=data.reference_size,
                recent_size=data.recent_size,
                check_every=data.check_every,
                n_bins=data.n_bins,
                false_alarms=data.false_alarms,
                checks=data.checks,
                design_effect=data.design_effect,
            )
            data.import_state(state["data"])
        monitors = {}
        for name, m in self.monitors.items():
            monitor = DriftMonitor(
                m.model,
                m.task,
                partition=m.partition,
                concept_detector=m.concept_detector,
                concept_params=m.concept_params,
                label_detector=m.label_detector,
                label_params=m.label_params,
                data=None if m.data is None else data,
                warmup_labels=m.warmup_labels,
                cooldown_labels=m.cooldown_labels,
                cooldown_events=m.cooldown_events,
            )
            if name in state["monitors"]:
                monitor.import_state(state["monitors"][name])
            monitors[name] = monitor
        policies = {}
        for name, p in self.policies.items():
            policy = ResponsePolicy(
                p.learner,
                p.spec,
                partition=p.partition,
                window=p.window,
                margin=p.margin,
                z=p.z,
                max_trial_labels=p.max_trial_labels,
                guard_labels=p.guard_labels,
                trigger_kinds=p.trigger_kinds,
            )
            policy.on_shadow_score = p.on_shadow_score
            if name in state["policies"]:
                policy.import_state(state["policies"][name])
            policies[name] = policy
        self.data, self.monitors, self.policies = data, monitors, policies
        self._pending = list(state["pending"])
        self.controls_applied = {str(k): str(v) for k, v in state["controls_applied"].items()}
