"""Invalid records of known kinds, each with the dead-letter reason the ingest must give it.

An invalid record is made from a copy of a real event (with a fresh ``event_id``) and sent as
an *extra* record, so sessions stay whole. Where the kind allows, the bytes still carry the
event_id where :func:`streamproc.ingest.process.sniff_event_id` finds it (right after the
single-object header, or as the first JSON key), so dead letters can be matched to the
manifest.

=============================  ==========================================================
reason                         how the record is made
=============================  ==========================================================
``decode_error``               Avro: random bytes, a truncated body or trailing bytes;
                               JSON: a truncated document
``unknown_schema``             single-object header with a fingerprint no schema has
``too_large``                  ``device.app_version`` padded past the size limit
``schema_violation``           JSON only: a wrong type, an unknown enum symbol, a missing
                               field, an unparsable event_time
``rule_violation:<rule>``      decodes, but breaks ``<rule>`` of
                               :mod:`streamproc.ingest.validate` (and only that rule)
=============================  ==========================================================

``finite_number`` records are always written as Avro: JSON has no NaN or infinity, and the
input topic accepts both formats.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from streamproc.config import OutputFormat
from streamproc.emit.encode import SINGLE_OBJECT_MARKER, Encoder
from streamproc.simulate.sessions import new_uuid

__all__ = ["RULES", "Corruptor", "InvalidRecord"]

#: The data-quality rules the simulator breaks (names as in streamproc.ingest.validate).
RULES: tuple[str, ...] = (
    "position_non_negative",
    "position_within_duration",
    "counter_non_negative",
    "bandwidth_range",
    "event_time_future",
    "event_time_past",
    "rating_range",
    "id_required",
    "finite_number",
)
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """One injected invalid record, as listed in the manifest."""

    index: int  # position in the emitted stream, from 0
    event_id: str | None  # the id the bytes carry; None for random bytes
    reason: str  # the expected dead-letter reason
    variant: str  # how it was made, e.g. "truncated_avro"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event_id": self.event_id,
            "reason": self.reason,
            "variant": self.variant,
        }


Made = tuple[bytes, str | None, str, str]  # value, event_id, reason, variant


class Corruptor:
    """Make invalid records from valid events.

    Parameters
    ----------
    fmt
        Format of the stream (``json`` adds JSON-only kinds).
    avro, json
        Encoders of the event schema, without the schema check.
    known_fingerprints
        Fingerprints an ``unknown_schema`` record must avoid.
    max_message_bytes
        The ingest size limit; ``too_large`` records exceed it.
    rng
        The corruption random stream.
    """

    def __init__(
        self,
        fmt: OutputFormat,
        avro: Encoder,
        json: Encoder,
        known_fingerprints: frozenset[bytes],
        max_message_bytes: int,
        rng: random.Random,
    ) -> None:
        self.fmt = fmt
        self.avro = avro
        self.json = json
        self.known_fingerprints = known_fingerprints
        self.max_message_bytes = max_message_bytes
        self.rng = rng
        self._encode = avro.encode if fmt == "avro" else json.encode
        kinds: list[tuple[float, Callable[[dict[str, Any]], Made]]] = [
            (0.15, self._decode_error),
            (0.10, self._unknown_schema),
            (0.05, self._too_large),
            (0.60, self._rule_violation),
        ]
        if fmt == "json":
            kinds.append((0.10, self._schema_violation))
        total = sum(w for w, _ in kinds)
        self._kinds = [(w / total, make) for w, make in kinds]

    def make(self, event: Mapping[str, Any]) -> Made:
        """An invalid record derived from ``event``: (value, event_id, reason, variant)."""
        base = copy.deepcopy(dict(event))
        base["event_id"] = new_uuid(self.rng)
        base["seq"] = None  # not one of the session's events
        u = self.rng.random()
        for weight, maker in self._kinds:
            u -= weight
            if u < 0:
                return maker(base)
        return self._kinds[-1][1](base)

    # -- kinds ------------------------------------------------------------------------------------

    def _decode_error(self, event: dict[str, Any]) -> Made:
        rng = self.rng
        if self.fmt == "json":
            text = self.json.encode(event)
            # The event_id is the first key, inside the first ~52 bytes: keep it readable.
            cut = rng.randrange(60, len(text) - 1)
            return text[:cut], event["event_id"], "decode_error", "truncated_json"
        variant = rng.choice(("random_bytes", "truncated_avro", "trailing_bytes"))
        if variant == "random_bytes":
            # First byte 0x80..0xbf: not C3 01 (Avro), 00 (Confluent) nor a JSON start.
            body = bytes([rng.randrange(0x80, 0xC0)]) + rng.randbytes(rng.randrange(8, 200))
            return body, None, "decode_error", variant
        value = self.avro.encode(event)
        if variant == "truncated_avro":
            # Header (10) + id length (1) + 36-char id = 47 bytes stay, so the id is readable.
            value = value[: rng.randrange(48, len(value))]
        else:
            value += rng.randbytes(rng.randrange(1, 9))
        return value, event["event_id"], "decode_error", variant

    def _unknown_schema(self, event: dict[str, Any]) -> Made:
        fingerprint = self.rng.randbytes(8)
        while fingerprint in self.known_fingerprints:  # pragma: no cover - 2**-64 odds
            fingerprint = self.rng.randbytes(8)
        body = self.avro.encode(event)[len(SINGLE_OBJECT_MARKER) + 8 :]
        value = SINGLE_OBJECT_MARKER + fingerprint + body
        return value, event["event_id"], "unknown_schema", "unknown_fingerprint"

    def _too_large(self, event: dict[str, Any]) -> Made:
        pad = self.max_message_bytes + self.rng.randrange(64, 4096)
        event["device"]["app_version"] = "8.112.0-" + "x" * pad
        return self._encode(event), event["event_id"], "too_large", "huge_app_version"

    def _schema_violation(self, event: dict[str, Any]) -> Made:
        variant = self.rng.choice(
            ("bitrate_as_string", "unknown_event_type", "missing_region", "bad_event_time")
        )
        if variant == "bitrate_as_string":
            event["playback"]["bitrate_kbps"] = str(event["playback"]["bitrate_kbps"])
        elif variant == "unknown_event_type":
            event["event_type"] = "buffering"
        elif variant == "missing_region":
            del event["region"]
        else:
            event["event_time"] = "yesterday at noon"
        return orjson.dumps(event), event["event_id"], "schema_violation", variant

    def _rule_violation(self, event: dict[str, Any]) -> Made:
        rng = self.rng
        rule = rng.choice(RULES)
        playback, network = event["playback"], event["network"]
        encode = self._encode
        if rule == "position_non_negative":
            playback["position_s"] = -round(rng.uniform(0.5, 120.0), 3)
        elif rule == "position_within_duration":
            playback["position_s"] = playback["duration_s"] + round(rng.uniform(6.0, 900.0), 3)
        elif rule == "counter_non_negative":
            if rng.random() < 0.5:
                playback["rebuffer_count"] = -rng.randrange(1, 10)
            else:
                playback["rebuffer_ms"] = -rng.randrange(1, 100_000)
        elif rule == "bandwidth_range":
            network["bandwidth_kbps"] = (
                -round(rng.uniform(1.0, 5_000.0), 1)
                if rng.random() < 0.5
                else round(rng.uniform(1.1e7, 1e9), 1)
            )
        elif rule == "event_time_future":
            # Valid events are at most 30 days old, so +31 days is in the future of any
            # clock that would accept them.
            event["event_time"] += 31 * _DAY_MS + rng.randrange(_DAY_MS)
        elif rule == "event_time_past":
            event["event_time"] -= 61 * _DAY_MS + rng.randrange(_DAY_MS)
        elif rule == "rating_range":
            event["event_type"] = "rating"
            event["rating"] = rng.choice((0, 6, 7, 10, -1))
        elif rule == "id_required":
            field = rng.choice(("session_id", "title_id", "user_id"))
            event[field] = rng.choice(("", "   "))
        else:  # finite_number
            target = rng.choice(
                (
                    "network.bandwidth_kbps",
                    "network.rtt_ms",
                    "playback.position_s",
                    "playback.duration_s",
                )
            )
            group, name = target.split(".")
            event[group][name] = rng.choice((float("nan"), float("inf"), float("-inf")))
            encode = self.avro.encode
        return encode(event), event["event_id"], f"rule_violation:{rule}", rule
