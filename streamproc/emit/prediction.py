"""The Prediction record (schemas/prediction) of one model's output for one decision."""

from __future__ import annotations

from typing import Any

from streamproc.learning.partition import PredictionOut

__all__ = ["prediction_record"]


def prediction_record(
    out: PredictionOut,
    *,
    partition: int,
    predicted_at_ms: int,
    latency_s: float,
    input_fingerprint: str,
) -> dict[str, Any]:
    """The Prediction dict for ``out``, as the model agent emits it.

    Examples
    --------
    >>> out = PredictionOut("e1", "s1", "u1", "t1", "qoe", 2, 0.1, {}, 1_000)
    >>> record = prediction_record(
    ...     out, partition=3, predicted_at_ms=1_050, latency_s=0.05, input_fingerprint="ab"
    ... )
    >>> record["model_version"], record["partition"], record["shadow"]
    (2, 3, False)
    """
    return {
        "event_id": out.event_id,
        "session_id": out.session_id,
        "user_id": out.user_id,
        "title_id": out.title_id,
        "model": out.model,
        "model_version": out.model_version,
        "score": out.score,
        "scores": out.scores,
        "shadow": out.shadow,
        "partition": partition,
        "event_time": out.event_time,
        "predicted_at": predicted_at_ms,
        "latency_s": latency_s,
        "input_fingerprint": input_fingerprint,
    }
