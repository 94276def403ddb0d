"""The records that flow through streamproc, as typed dictionaries.

Events are the dictionaries fastavro decodes (no copy into another object on the
hot path); these ``TypedDict`` types give them names and let mypy check access.
Field meanings and units are documented in ``schemas/*.avsc``.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

__all__ = [
    "EVENT_TYPES",
    "DeadLetter",
    "Device",
    "EventType",
    "Network",
    "Playback",
    "Title",
    "ViewingEvent",
]

EventType = Literal[
    "play", "pause", "seek", "bitrate_change", "rebuffer", "stop", "complete", "rating"
]
EVENT_TYPES: tuple[EventType, ...] = (
    "play",
    "pause",
    "seek",
    "bitrate_change",
    "rebuffer",
    "stop",
    "complete",
    "rating",
)


class Device(TypedDict):
    type: str
    os: str
    app_version: str


class Network(TypedDict):
    connection_type: str
    bandwidth_kbps: float
    rtt_ms: float
    cdn: str
    isp: NotRequired[str | None]


class Playback(TypedDict):
    position_s: float
    duration_s: float
    bitrate_kbps: int
    rebuffer_count: int
    rebuffer_ms: int
    dropped_frames: NotRequired[int | None]


class Title(TypedDict):
    genre: str
    release_year: int | None


class ViewingEvent(TypedDict):
    """One viewing event, as in ``schemas/viewing_event`` (latest version)."""

    event_id: str
    session_id: str
    user_id: str
    title_id: str
    event_type: EventType
    event_time: int  # epoch milliseconds (Avro timestamp-millis, kept as int)
    device: Device
    network: Network
    playback: Playback
    region: str
    rating: int | None
    title: Title | None
    seq: NotRequired[int | None]
    experiment: NotRequired[str | None]


class DeadLetter(TypedDict):
    """A record that could not be accepted, as in ``schemas/dead_letter``."""

    payload: bytes
    key: NotRequired[bytes | None]
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: int | None
    reason: str
    message: str
    event_id: str | None
    dead_lettered_at: int
    worker: str
