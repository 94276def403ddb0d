"""EventProducer and `produce` line handling, against an address where no broker listens.

A real confluent-kafka Producer points at 127.0.0.1:1 with a short message timeout: nothing
is ever delivered, so delivery failures are real delivery reports, not a fake.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from unittest.mock import MagicMock

import orjson
import pytest

from streamproc.cli.produce import parse_event_line, produce_lines
from streamproc.config import Settings, load_settings
from streamproc.emit.encode import SchemaViolationError
from streamproc.emit.sender import RecordSender
from streamproc.errors import BrokerUnavailableError
from streamproc.produce import EventProducer
from streamproc.testing import make_viewing_event

FAST_FAIL = {"message.timeout.ms": 500, "reconnect.backoff.max.ms": 100}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(bootstrap_servers="127.0.0.1:1")


@pytest.fixture
def producer(settings: Settings) -> Iterator[EventProducer]:
    p = EventProducer(settings, "avro", config=FAST_FAIL)
    yield p
    p.flush(5.0)


def test_schema_violation_is_raised_before_anything_is_queued(producer: EventProducer) -> None:
    event = make_viewing_event()
    event["playback"]["bitrate_kbps"] = "5800"  # type: ignore[typeddict-item]
    with pytest.raises(SchemaViolationError, match=r'field "playback\.bitrate_kbps" must be int'):
        producer.send(event)
    assert producer.sent == 0 and producer.pending == 0


def test_missing_field_names_the_field(producer: EventProducer) -> None:
    event = dict(make_viewing_event())
    del event["region"]
    with pytest.raises(SchemaViolationError, match='field "region"'):
        producer.send(event)
    assert producer.sent == 0


def test_undeliverable_events_are_counted_as_failed(producer: EventProducer) -> None:
    producer.send(make_viewing_event())
    producer.send_raw(b"u-1", b"\xc3\x01raw")
    assert producer.sent == 2
    assert producer.flush(10.0) == 2
    assert producer.delivered == 0 and producer.failed == 2
    assert producer.errors == {"_MSG_TIMED_OUT": 2}
    assert producer.last_error is not None


def test_full_queue_is_waited_for_not_raised(settings: Settings) -> None:
    # A one-message queue: the second send waits until the first one times out.
    producer = EventProducer(settings, config={**FAST_FAIL, "queue.buffering.max.messages": 1})
    started = time.monotonic()
    producer.send_raw(b"k", b"one")
    producer.send_raw(b"k", b"two")
    assert time.monotonic() - started >= 0.3
    assert producer.flush(10.0) == 2 and producer.sent == 2


def test_context_manager_flushes(settings: Settings) -> None:
    with EventProducer(settings, "json", config=FAST_FAIL) as producer:
        producer.send(make_viewing_event())
    assert producer.pending == 0 and producer.failed == 1
    assert producer.encoder.fmt == "json" and producer.topic == settings.topic_input


def test_idempotent_producer_settings_are_used(producer: EventProducer) -> None:
    assert repr(producer) == "EventProducer(topic='viewing-events', fmt='avro')"


def test_keys_are_partitioned_as_the_workers_partition_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # murmur2, as the workers' RecordSender and Java clients: a viewer's valid partition is
    # then the partition of its input records, so each valid partition holds one input
    # partition's viewers in publish order, whatever the workers' fetches are.
    seen: list[dict[str, object]] = []
    monkeypatch.setattr("streamproc.produce.Producer", lambda config: seen.append(config))
    EventProducer(settings)
    assert seen[0]["partitioner"] == "murmur2_random"
    sender: list[dict[str, object]] = []

    def capture(config: dict[str, object]) -> MagicMock:
        sender.append(config)
        return MagicMock()

    RecordSender(settings, producer_factory=capture)
    assert sender[0]["partitioner"] == seen[0]["partitioner"]


def test_unreachable_broker_is_reported(producer: EventProducer) -> None:
    with pytest.raises(BrokerUnavailableError, match=r"no Kafka broker answered at 127\.0\.0\.1:1"):
        producer.check_connection(timeout=1.0)


def test_parse_event_line_accepts_iso_times() -> None:
    event = parse_event_line(b'{"event_id": "e1", "event_time": "2024-06-01T12:00:00+00:00"}')
    assert event["event_time"] == 1_717_243_200_000


def test_produce_lines_reports_bad_lines_with_their_number(producer: EventProducer) -> None:
    good = make_viewing_event()
    iso = dict(make_viewing_event(), event_time="2024-06-01T12:00:00Z")
    wrong_type = make_viewing_event()
    wrong_type["playback"]["rebuffer_ms"] = "many"  # type: ignore[typeddict-item]
    lines = [
        orjson.dumps(good),
        b"",
        b'{"event_id": "e-2", ',
        orjson.dumps(iso),
        orjson.dumps(wrong_type),
        orjson.dumps(dict(make_viewing_event(), event_time="yesterday")),
        b"[1, 2]",
    ]
    err = io.StringIO()
    counts = produce_lines(lines, producer, err)
    assert (counts.read, counts.sent, counts.rejected, counts.failed) == (6, 2, 4, 2)
    report = err.getvalue().splitlines()
    assert report[0].startswith("line 3: rejected: malformed JSON")
    assert report[1].startswith('line 5: rejected: ViewingEvent field "playback.rebuffer_ms"')
    assert report[2].startswith('line 6: rejected: field "event_time" must be')
    assert report[3].startswith("line 7: rejected: expected a JSON object")
