"""Records handed to the agents a fetch at a time (agents.batches, agents.transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from pydantic import SecretStr

from agents.app import BATCHES_QUEUED, create_app
from agents.batches import BatchTopic, RecordBatch, batch_message
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


def test_a_batch_message_carries_the_records_at_the_last_offset() -> None:
    tp = TP("in", 3)
    message = batch_message(tp, [_record("in", 3, o) for o in (10, 11, 13)], generation_id=7)
    assert isinstance(message.value, RecordBatch)
    assert [r.offset for r in message.value] == [10, 11, 13]
    assert (message.value.first_offset, message.value.last_offset) == (10, 13)
    assert (message.tp, message.offset, message.generation_id) == (tp, 13, 7)
    assert message.timestamp == (1_700_000_000_000 + 13) / 1000


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
    message = batch_message(TP(settings.topic_input, 0), [_record("in", 0, 5)], 1)
    event = asyncio.run(topic.decode(message))
    assert event.value is message.value
    assert event.message is message


class _Fetched:
    """Stands in for the consumer's fetch: one mapping of records, then nothing."""

    def __init__(self, records: dict[TP, list[Any]]) -> None:
        self.records = records

    async def __call__(self, timeout: float) -> tuple[dict[TP, list[Any]], set[TP]]:
        return self.records, set(self.records)


def test_the_fetch_yields_one_message_per_batch_partition_and_one_per_other_record(
    settings: Settings,
) -> None:
    app = create_app(settings)
    consumer: Any = app.consumer
    valid = TP(settings.topic_valid, 1)
    changelog = TP("some-changelog", 0)
    fetched = {
        valid: [_record(valid.topic, 1, o) for o in range(40, 45)],
        changelog: [_record(changelog.topic, 0, o) for o in range(2)],
    }
    consumer._wait_next_records = _Fetched(fetched)
    consumer.highwater = lambda tp: 0  # the consumer thread is not started here
    consumer.flow_active = True

    async def collect() -> list[tuple[TP, Any]]:
        return [item async for item in consumer.getmany_batched(timeout=0.1)]

    got = asyncio.run(collect())
    assert [(tp, m.offset, type(m.value).__name__) for tp, m in got] == [
        (valid, 44, "RecordBatch"),
        (changelog, 0, "bytes"),
        (changelog, 1, "bytes"),
    ]
    assert [r.offset for r in got[0][1].value] == [40, 41, 42, 43, 44]


def test_nothing_is_handed_on_while_the_flow_is_suspended(settings: Settings) -> None:
    app = create_app(settings)
    consumer: Any = app.consumer
    valid = TP(settings.topic_valid, 1)
    consumer._wait_next_records = _Fetched({valid: [_record(valid.topic, 1, 0)]})
    consumer.flow_active = False

    async def collect() -> list[Any]:
        return [item async for item in consumer.getmany_batched(timeout=0.1)]

    assert asyncio.run(collect()) == []


def test_a_batch_is_committed_whole_once_its_last_offset_is_acknowledged(
    settings: Settings,
) -> None:
    # What the fetch loop does for a batch (its records' offsets before the last registered
    # as a gap) and what the stream does when the agent is done (ack the last offset).
    app = create_app(settings)
    consumer: Any = app.consumer
    tp = TP(settings.topic_valid, 0)
    app.topics._acking_topics.add(tp.topic)  # type: ignore[attr-defined]

    async def run() -> list[int | None]:
        seen = []
        first: Any = batch_message(tp, [_record(tp.topic, 0, o) for o in range(0, 100)], 1)
        second: Any = batch_message(tp, [_record(tp.topic, 0, o) for o in range(100, 250)], 1)
        for message in (first, second):
            await consumer._add_gap(tp, message.value.first_offset, message.offset - 1)
        # Nothing acknowledged: nothing to commit, although both gaps are known.
        seen.append(consumer._new_offset(tp))
        first.refcount = 1
        first.ack(consumer)
        seen.append(consumer._new_offset(tp))  # the first batch: offsets 0-99
        consumer._committed_offset[tp] = 100
        seen.append(consumer._new_offset(tp))  # the second is not acknowledged yet
        second.refcount = 1
        second.ack(consumer)
        seen.append(consumer._new_offset(tp))
        return seen

    assert asyncio.run(run()) == [None, 100, None, 250]
