"""Records handed to the agents a fetch at a time (agents.batches, agents.transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP
from pydantic import SecretStr

from agents.app import BATCHES_QUEUED, create_app
from agents.batches import BatchTopic, RecordBatch, acknowledge_batch, batch_message, round_robin
from streamproc.config import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"snapshot_keys": SecretStr("k1:batches-test-secret")})


def _record(
    topic: str, partition: int, offset: int, value: bytes = b"v"
) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def _batch(tp: TP, offsets: range | list[int]) -> RecordBatch:
    records = [_record(tp.topic, tp.partition, o) for o in offsets]
    return RecordBatch(records, {tp: (records[0].offset, records[-1].offset)})


def test_a_batch_message_is_its_last_records() -> None:
    a, b = TP("in", 3), TP("in", 4)
    batch = RecordBatch(
        [_record("in", 3, 10), _record("in", 4, 7), _record("in", 3, 11), _record("in", 3, 13)],
        {a: (10, 13), b: (7, 7)},
    )
    message: Any = batch_message(batch, generation_id=7)
    assert message.value is batch
    assert (message.tp, message.offset, message.generation_id) == (a, 13, 7)
    assert message.timestamp == (1_700_000_000_000 + 13) / 1000


@pytest.mark.parametrize("sizes", [[5], [3, 0, 1], [1, 4, 2, 4], [6, 6], [2, 9, 1, 7, 3, 3]])
def test_round_robin_is_the_order_of_fausts_default_scheduler(sizes: list[int]) -> None:
    per_partition = {
        TP("in", p): [_record("in", p, 100 * p + o) for o in range(n)]
        for p, n in enumerate(sizes)
        if n
    }
    scheduler = DefaultSchedulingStrategy()  # type: ignore[abstract]  # mode declares __init__ abstract
    faust_order = [r for _, r in scheduler.iterate(per_partition)]
    ours = list(round_robin(per_partition))
    assert len(ours) == sum(sizes)
    assert [(r.partition, r.offset) for r in ours] == [(r.partition, r.offset) for r in faust_order]


def test_the_agents_topics_are_batch_topics_with_a_short_queue(settings: Settings) -> None:
    app = create_app(settings)
    assert app.batch_topics == {settings.topic_input, settings.topic_valid}
    channels: list[Any] = [agent.channel for agent in app.agents.values()]
    topics = {c.get_topic_name(): c for c in channels}
    for name in (settings.topic_input, settings.topic_valid):
        assert isinstance(topics[name], BatchTopic)
        assert topics[name].maxsize == BATCHES_QUEUED


def test_a_batch_topic_passes_the_batch_through_as_the_event_value(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"agents": "ingest"}))
    topic = app.batch_topic(settings.topic_input)
    message = batch_message(_batch(TP(settings.topic_input, 0), [5]), 1)
    event = asyncio.run(topic.decode(message))
    assert event.value is message.value
    assert event.message is message


class _Fetched:
    """Stands in for the consumer's fetch: one mapping of records, then nothing."""

    def __init__(self, records: dict[TP, list[Any]]) -> None:
        self.records = records

    async def __call__(self, timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
        return self.records, set(self.records)


def _fetching(settings: Settings, records: dict[TP, list[Any]], *, flow_active: bool) -> Any:
    """The worker's consumer, its next fetch returning ``records`` (no broker involved)."""
    consumer: Any = create_app(settings).consumer
    consumer._wait_next_records = _Fetched(records)
    consumer.highwater = lambda tp: 0  # the consumer thread is not started here
    consumer.flow_active = flow_active
    return consumer


def _handed_on(consumer: Any) -> list[tuple[TP, Any]]:
    """What one ``getmany_batched`` call hands on."""

    async def collect() -> list[tuple[TP, Any]]:
        return [item async for item in consumer.getmany_batched(timeout=0.1)]

    return asyncio.run(collect())


def test_the_fetch_yields_one_message_per_batch_topic_in_faust_order(
    settings: Settings,
) -> None:
    v1, v2 = TP(settings.topic_valid, 1), TP(settings.topic_valid, 2)
    changelog = TP("some-changelog", 0)
    fetched = {
        v1: [_record(v1.topic, 1, o) for o in range(40, 45)],
        v2: [_record(v2.topic, 2, o) for o in range(7, 9)],
        changelog: [_record(changelog.topic, 0, o) for o in range(2)],
    }
    consumer = _fetching(settings, fetched, flow_active=True)
    consumer._read_offset[v1] = 41  # 40 and 41 were handed on before: dropped as Faust does

    got = _handed_on(consumer)
    assert [(tp, m.offset, type(m.value).__name__) for tp, m in got] == [
        (v1, 44, "RecordBatch"),
        (changelog, 0, "bytes"),
        (changelog, 1, "bytes"),
    ]
    batch = got[0][1].value
    # Round-robin over the partitions, as Faust's per-record path hands records on.
    assert [(r.partition, r.offset) for r in batch] == [
        (1, 41),
        (2, 7),
        (1, 42),
        (2, 8),
        (1, 43),
        (1, 44),
    ]
    assert batch.spans == {v1: (41, 44), v2: (7, 8)}


def test_nothing_is_handed_on_while_the_flow_is_suspended(settings: Settings) -> None:
    valid = TP(settings.topic_valid, 1)
    consumer = _fetching(settings, {valid: [_record(valid.topic, 1, 0)]}, flow_active=False)
    seeks: list[bool] = []

    async def seek() -> None:
        seeks.append(True)

    consumer.perform_seek = seek

    assert _handed_on(consumer) == []
    # The fetched records are dropped: back to the committed offsets, as Faust does, or they
    # would never be fetched again.
    assert seeks == [True]


def test_a_batch_is_committed_whole_once_the_agent_and_the_stream_acknowledged_it(
    settings: Settings,
) -> None:
    # The agent acknowledges a batch's offsets but its message's when it has processed it;
    # the stream acknowledges the message's when the agent asks for the next batch.
    app = create_app(settings)
    consumer: Any = app.consumer
    a, b = TP(settings.topic_valid, 0), TP(settings.topic_valid, 1)
    app.topics._acking_topics.add(a.topic)  # type: ignore[attr-defined]
    records = [_record(b.topic, 1, o) for o in range(0, 30)]
    records += [_record(a.topic, 0, o) for o in range(0, 100)]
    first: Any = batch_message(RecordBatch(records, {a: (0, 99), b: (0, 29)}), 1)
    second: Any = batch_message(_batch(a, range(100, 250)), 1)
    seen = [(consumer._new_offset(a), consumer._new_offset(b))]  # nothing processed yet
    acknowledge_batch(consumer, first.value)
    # Partition 1 is done; partition 0's last offset (the message's) is not acknowledged yet.
    seen.append((consumer._new_offset(a), consumer._new_offset(b)))
    consumer._committed_offset[a] = 99
    first.refcount = 1
    first.ack(consumer)
    seen.append((consumer._new_offset(a), None))  # the rest of the first batch
    consumer._committed_offset[a] = 100
    second.refcount = 1
    second.ack(consumer)  # its last offset alone commits nothing: 100-248 are not done
    seen.append((consumer._new_offset(a), None))
    acknowledge_batch(consumer, second.value)
    seen.append((consumer._new_offset(a), None))
    assert seen == [(None, None), (99, 30), (100, None), (None, None), (250, None)]


def test_offsets_below_the_committed_one_are_not_acknowledged_again(settings: Settings) -> None:
    app = create_app(settings)
    consumer: Any = app.consumer
    tp, other = TP(settings.topic_valid, 2), TP(settings.topic_valid, 3)
    consumer._committed_offset[tp] = 60
    tail = [_record(other.topic, 3, 0)]  # the message's: not acknowledged here
    records = [_record(tp.topic, 2, o) for o in range(50, 70)] + tail
    acknowledge_batch(consumer, RecordBatch(records, {tp: (50, 69), other: (0, 0)}))
    assert consumer._acked[tp] == list(range(60, 70))
    assert consumer._acked[other] == []
    acknowledge_batch(consumer, _batch(tp, range(65, 72)))
    assert consumer._acked[tp] == [*range(60, 70), 70]
    assert consumer._n_acked == 11
