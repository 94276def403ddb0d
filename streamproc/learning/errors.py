"""Errors of the learning stage.

::

    StreamprocError
    ├── ConfigError
    │   └── ModelSpecError       unknown model name, or a spec registered twice
    └── EventError
        └── ModelError           a model raised or returned NaN/inf on one event
                                 (reason "model_error": the event is dead-lettered,
                                 the model keeps serving)
"""

from __future__ import annotations

from typing import Any

from streamproc.errors import ConfigError, EventError

__all__ = ["ModelError", "ModelSpecError"]


class ModelSpecError(ConfigError):
    """A model spec name is unknown, or a spec of that name is already registered."""


class ModelError(EventError):
    """A model raised, or returned a non-finite score, on one event.

    The partition learner raises it only after leaving its state consistent: a failed
    prediction changes nothing; a failed learning step resolves the label for every other
    model and skips the failing one.

    Parameters
    ----------
    model
        Name of the model spec.
    event_id
        The event being processed.
    detail
        What went wrong (the exception, or the value returned).

    Examples
    --------
    >>> str(ModelError("qoe", "e-1", "predict_one returned nan"))
    '?: model "qoe" failed on event e-1: predict_one returned nan'
    """

    reason = "model_error"

    def __init__(self, model: str, event_id: str, detail: str, *, where: str = "?") -> None:
        self.model, self.event_id, self.detail = model, event_id, detail
        #: Set by ``process_batch``: position of the failed event, predictions before it.
        self.index: int | None = None
        self.partial: list[Any] = []
        super().__init__(f'model "{model}" failed on event {event_id}: {detail}', where=where)
