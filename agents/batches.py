"""Records handed to an agent a fetch at a time: one Faust event per partition per fetch.

Faust hands an agent one event per record: the consumer wraps each fetched record in a
message, the conductor decodes it into an event and queues it on the agent's channel, the
stream takes it off and acknowledges it. That machinery costs tens of microseconds per record
and per stage, more than the ingest or model work done for the record itself.

A :class:`BatchTopic` is read differently (see :mod:`agents.transport`): each partition's
records of one fetch travel as **one** message whose value is a :class:`RecordBatch` of the
fetched records (``aiokafka`` ``ConsumerRecord``: topic, partition, offset, timestamp in
milliseconds, key, value, headers), and the topic's decode step passes it through as the
event's value. Everything else stays Faust's: the consumer group, rebalances, flow control,
the stream's acknowledgement after the agent has processed the batch, and the offset commits
(acknowledging a batch's message acknowledges every offset it covers, see
``agents.transport._Consumer.ack``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.types import TP, ConsumerMessage, EventT, Message

__all__ = ["BatchTopic", "RecordBatch", "batch_message"]


class RecordBatch(list[Any]):
    """The records of one partition from one fetch, in offset order (never empty)."""

    __slots__ = ()

    @property
    def first_offset(self) -> int:
        return int(self[0].offset)

    @property
    def last_offset(self) -> int:
        return int(self[-1].offset)


def batch_message(tp: TP, records: Iterable[Any], generation_id: int) -> ConsumerMessage:
    """One Faust message carrying ``records`` (one partition's, in order) as its value.

    The message's offset is the last record's, so Faust's read-offset bookkeeping moves past
    the whole batch; its timestamp is the last record's too.
    """
    batch = RecordBatch(records)
    last = batch[-1]
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        last.offset,
        last.timestamp / 1000.0,
        last.timestamp_type,
        [],
        None,
        cast(Any, batch),  # Faust types a message's value as bytes
        None,
        0,
        sum(r.serialized_value_size for r in batch),
        tp,
        generation_id=generation_id,
    )


class BatchTopic(faust.Topic):
    """A raw-bytes topic whose events are :class:`RecordBatch` es, not single records.

    Its channel holds at most ``maxsize`` batches (the worker passes a small number: a batch
    is up to a fetch's worth of records, so Faust's default of 4,096 events would let
    millions of records queue up in memory).
    """

    def _compile_decode(self) -> None:
        # No deserialisation: the value is the RecordBatch the consumer built.
        async def decode(message: Message, *, propagate: bool = False) -> EventT[Any]:
            return self._create_event(message.key, message.value, message.headers, message=message)

        self.decode = decode  # type: ignore[method-assign]
