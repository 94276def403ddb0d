"""The manifest of a simulation: what was sent, what is invalid and why, and the hidden truth.

Written as JSON by ``streamproc simulate --manifest FILE``::

    {
      "format_version": 1,
      "seed": 7,
      "params": {"n_events": 20000, "n_users": 1000, ...},
      "start_time_ms": 1717000000000,      # first event's time, epoch ms
      "complete": true,                    # false when the run stopped early
      "counts": {"records": 21150, "valid": 20000, "invalid": 1050, "duplicate": 100,
                 "sessions": 2460},
      "invalid_by_reason": {"decode_error": 160, "rule_violation:rating_range": 70, ...},
      "invalid": [{"index": 17, "event_id": "…", "reason": "decode_error",
                   "variant": "truncated_avro"}, ...],
      "duplicated": ["<event_id>", ...],   # sorted
      "sessions": [{"session_id": "…", "user_id": "u-000042", "title_id": "t-00007",
                    "play_event_id": "…", "start_time_ms": …, "p_complete": 0.63,
                    "expected_rebuffer_ratio": 0.004, "completed": true,
                    "watched_fraction": 0.95, "rating": 4}, ...]
    }
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamproc.simulate.corrupt import InvalidRecord
from streamproc.simulate.sessions import SessionTruth

__all__ = ["MANIFEST_FORMAT_VERSION", "Manifest"]

MANIFEST_FORMAT_VERSION = 1


@dataclass(slots=True)
class Manifest:
    """Everything a simulation run sent that a test or an audit needs to check the pipeline."""

    seed: int
    params: dict[str, Any]
    start_time_ms: int
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("records", "valid", "invalid", "duplicate", "sessions"), 0
        )
    )
    invalid: list[InvalidRecord] = field(default_factory=list)
    duplicated: set[str] = field(default_factory=set)
    sessions: list[SessionTruth] = field(default_factory=list)
    complete: bool = False

    @property
    def invalid_by_reason(self) -> dict[str, int]:
        """Invalid records per expected dead-letter reason."""
        return dict(sorted(Counter(r.reason for r in self.invalid).items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": MANIFEST_FORMAT_VERSION,
            "seed": self.seed,
            "params": self.params,
            "start_time_ms": self.start_time_ms,
            "complete": self.complete,
            "counts": dict(self.counts),
            "invalid_by_reason": self.invalid_by_reason,
            "invalid": [r.to_dict() for r in self.invalid],
            "duplicated": sorted(self.duplicated),
            "sessions": [s.to_dict() for s in self.sessions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest :meth:`to_dict` wrote.

        Raises
        ------
        ValueError
            When the format version is not the one this code writes.
        """
        version = data.get("format_version")
        if version != MANIFEST_FORMAT_VERSION:
            raise ValueError(
                f"manifest format_version is {version!r}, expected {MANIFEST_FORMAT_VERSION}"
            )
        return cls(
            seed=data["seed"],
            params=data["params"],
            start_time_ms=data["start_time_ms"],
            counts=dict(data["counts"]),
            invalid=[InvalidRecord(**r) for r in data["invalid"]],
            duplicated=set(data["duplicated"]),
            sessions=[SessionTruth(**s) for s in data["sessions"]],
            complete=data["complete"],
        )

    def write(self, path: Path) -> None:
        """Write the manifest as JSON to ``path``."""
        path.write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read a manifest :meth:`write` wrote."""
        return cls.from_dict(orjson.loads(path.read_bytes()))
