"""RecordSender and the Faust producer that flushes it, with a stand-in librdkafka producer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.app import _FlushingProducer, create_app
from streamproc.config import Settings
from streamproc.emit.sender import DeliveryError, RecordSender


class FakeError:
    def __init__(self, text: str, *, fatal: bool = False) -> None:
        self.text, self._fatal = text, fatal

    def str(self) -> str:
        return self.text

    def fatal(self) -> bool:
        return self._fatal


class FakeMessage:
    def topic(self) -> str:
        return "predictions"

    def partition(self) -> int:
        return 3


class FakeProducer:
    """Queues records; ``full`` BufferErrors first; ``unacked`` records never acknowledged."""

    def __init__(self, config: dict[str, Any], *, full: int = 0, unacked: int = 0) -> None:
        self.config = config
        self.full = full
        self.unacked = unacked
        self.queued: list[tuple[Any, ...]] = []
        self.polls: list[float] = []
        self.flushes: list[float] = []

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        self.queued.append((topic, value, key, kw))

    def poll(self, timeout: float) -> int:
        """Report delivery of every queued record but the last ``unacked`` ones."""
        self.polls.append(timeout)
        keep = min(self.unacked, len(self.queued))
        delivered, self.queued = self.queued[: len(self.queued) - keep], self.queued[-keep:]
        if not keep:
            self.queued = []
        for _ in delivered:
            self.config["on_delivery"](None, FakeMessage())
        return len(delivered)

    def flush(self, timeout: float) -> int:
        self.flushes.append(timeout)
        self.queued.clear()
        return self.unacked

    def __len__(self) -> int:
        return len(self.queued)


def _sender(
    settings: Settings, flush_timeout_s: float = 5.0, **fake: Any
) -> tuple[RecordSender, FakeProducer]:
    made: list[FakeProducer] = []

    def factory(config: dict[str, Any]) -> FakeProducer:
        made.append(FakeProducer(config, **fake))
        return made[0]

    sender = RecordSender(settings, flush_timeout_s=flush_timeout_s, producer_factory=factory)
    return sender, made[0]


def test_configuration_is_idempotent_all_acks_java_partitioning(settings: Settings) -> None:
    _, producer = _sender(settings)
    c = producer.config
    assert c["enable.idempotence"] is True and c["acks"] == "all"
    assert c["partitioner"] == "murmur2_random"  # as aiokafka and Java clients hash keys
    assert c["linger.ms"] == settings.producer_linger_ms
    assert "delivery.report.only.error" not in c  # flush counts every delivery report
    assert c["bootstrap.servers"] == settings.bootstrap_servers


def test_send_queues_with_partition_timestamp_and_headers(settings: Settings) -> None:
    sender, producer = _sender(settings)
    sender.send("t", b"v", b"k", headers=[("h", b"1")], partition=2, timestamp_ms=1234)
    sender.send("t", b"w")
    assert producer.queued == [
        ("t", b"v", b"k", {"partition": 2, "timestamp": 1234, "headers": [("h", b"1")]}),
        ("t", b"w", None, {"partition": -1, "timestamp": 0, "headers": None}),
    ]
    assert sender.pending() == 2


def test_a_full_queue_waits_for_room_instead_of_dropping(settings: Settings) -> None:
    sender, producer = _sender(settings, full=3)
    sender.send("t", b"v")
    assert len(producer.queued) == 1
    assert producer.polls == [0.05, 0.05, 0.05]


def test_a_refused_record_raises_at_the_next_poll_and_flush(settings: Settings) -> None:
    sender, _ = _sender(settings)
    sender.poll()  # nothing failed yet
    sender._on_delivery(FakeError("Broker: Message size too large"), FakeMessage())  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match=r"predictions\[3\]: Broker: Message size too large"):
        sender.poll()
    with pytest.raises(DeliveryError, match="stay uncommitted"):
        asyncio.run(sender.flush())


def test_only_a_fatal_client_error_fails_deliveries(settings: Settings) -> None:
    sender, _ = _sender(settings)
    sender._on_error(FakeError("1/1 brokers are down"))  # type: ignore[arg-type]
    sender.poll()
    sender._on_error(FakeError("Fatal: producer fenced", fatal=True))  # type: ignore[arg-type]
    with pytest.raises(DeliveryError, match="fatal producer error: Fatal: producer fenced"):
        sender.poll()


def test_flush_raises_when_acknowledgements_do_not_all_arrive(settings: Settings) -> None:
    sender, producer = _sender(settings, flush_timeout_s=0.2, unacked=2)
    for value in (b"a", b"b", b"c"):
        sender.send("t", value)
    with pytest.raises(DeliveryError, match=r"2 output record\(s\) not acknowledged .* 0.2 s"):
        asyncio.run(sender.flush())
    assert producer.flushes == []  # never librdkafka's flush: it waits for later records too


def test_flush_waits_for_the_records_queued_before_it_only(settings: Settings) -> None:
    # The agents keep queueing while a flush waits; librdkafka's flush waited for those as
    # well, and under sustained load did not return (no offset was committed meanwhile).
    sender, producer = _sender(settings, unacked=1)  # the newest record stays unacknowledged
    sender.send("t", b"before")

    async def run() -> None:
        flushing = asyncio.ensure_future(sender.flush())
        await asyncio.sleep(0.01)
        assert not flushing.done()  # "before" is the newest: not acknowledged yet
        sender.send("t", b"during")  # now "before" is acknowledged at the next poll
        await asyncio.wait_for(flushing, 1.0)

    asyncio.run(run())
    assert [q[1] for q in producer.queued] == [b"during"]


def test_flush_with_nothing_queued_does_not_poll(settings: Settings) -> None:
    sender, producer = _sender(settings)
    asyncio.run(sender.flush())
    assert producer.polls == [] and producer.flushes == []


def test_the_app_producer_flushes_the_sender_before_its_own_records(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    app = create_app(settings.model_copy(update={"agents": "ingest"}))

    class Sender:
        async def flush(self) -> None:
            order.append("sender")

    async def faust_flush(self: Any) -> None:
        order.append("faust")

    monkeypatch.setattr(_FlushingProducer.__mro__[1], "flush", faust_flush)
    app.__dict__["sender"] = Sender()  # the cached property, replaced before first use
    producer = app.producer
    assert isinstance(producer, _FlushingProducer)
    asyncio.run(producer.flush())
    assert order == ["sender", "faust"]
