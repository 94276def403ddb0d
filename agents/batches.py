"""Records handed to an agent a fetch at a time: one Faust event per topic per fetch.

Faust hands an agent one event per record: the consumer wraps each fetched record in a
message, the conductor decodes it into an event and queues it on the agent's channel, the
stream takes it off and acknowledges it. That machinery costs tens of microseconds per record
and per stage, more than the ingest or model work done for the record itself.

A :class:`BatchTopic` is read differently (see :mod:`agents.transport`): its records of one
fetch travel as **one** message whose value is a :class:`RecordBatch` of the fetched records
(``aiokafka`` ``ConsumerRecord``: topic, partition, offset, timestamp in milliseconds, key,
value, headers), in the order Faust's per-record path hands them on (round-robin over the
partitions, each partition's records in offset order), and the topic's decode step passes it
through as the event's value. So an agent sees the records in the order it saw them one by
one, which the ingest agent's output order (and through it what the models learn first)
depends on. Everything else stays Faust's: the consumer group, rebalances, flow control, and
the offset commits. The stream acknowledges a batch's message, at one partition's last offset,
when the agent asks for the next batch; the agent acknowledges every other offset of the batch
as soon as it has processed it (:func:`acknowledge_batch`), so that Faust commits every offset
of the batch, and none before the agent is done with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from itertools import chain, zip_longest
from operator import attrgetter, is_not
from typing import Any, cast

import faust
from faust.types import TP, ConsumerMessage, EventT, Message
from faust.types.tuples import ack_lock

__all__ = ["BatchTopic", "RecordBatch", "acknowledge_batch", "batch_message", "round_robin"]


_not_none = partial(is_not, None)
_value_size = attrgetter("serialized_value_size")


def round_robin(per_partition: Mapping[TP, Sequence[Any]]) -> Iterable[Any]:
    """The records of ``per_partition`` in the order Faust's default scheduler hands one
    topic's records on: the first record of each partition (in the mapping's order), then
    the second of each, and so on, a partition dropping out when it has no more.

    The same order as ``DefaultSchedulingStrategy.iterate`` gives, built in C (itertools)
    instead of a generator step per record (about 1.5 % of a worker's CPU).

    >>> list(round_robin({"a": [1, 2, 3], "b": [10], "c": [20, 21]}))
    [1, 10, 20, 2, 21, 3]
    """
    lists = list(per_partition.values())
    if len(lists) == 1:
        return lists[0]
    # Records are never None, so None marks only the padding of the shorter partitions.
    return filter(_not_none, chain.from_iterable(zip_longest(*lists)))


class RecordBatch(list[Any]):
    """One topic's records of one fetch (never empty).

    ``spans`` maps each partition to the first and last offset of its records here.
    """

    __slots__ = ("spans",)

    def __init__(self, records: Iterable[Any], spans: Mapping[TP, tuple[int, int]]) -> None:
        super().__init__(records)
        self.spans = dict(spans)


def batch_message(batch: RecordBatch, generation_id: int) -> ConsumerMessage:
    """One Faust message carrying ``batch`` as its value.

    The message is the batch's last record's (its partition and offset: with round-robin
    order, the last record of its partition in the batch), so that the stream's
    acknowledgement covers that offset; :func:`acknowledge_batch` covers the others.
    """
    last = batch[-1]
    tp = TP(last.topic, last.partition)
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
        sum(map(_value_size, batch)),
        tp,
        generation_id=generation_id,
    )


def acknowledge_batch(consumer: Any, batch: RecordBatch) -> None:
    """Acknowledge every offset of ``batch`` but its message's: the agent has processed them.

    The stream acknowledges the message's offset itself, as for any event; this marks the
    rest the way Faust's ``Consumer.ack`` marks one offset (under Faust's ``ack_lock``,
    offsets below the committed offset left out), so the commit that follows covers the whole
    batch. The offsets between a partition's records (a transaction marker, a compacted
    record) are acknowledged with them: nothing was fetched there. Faust's Cython stream
    iterator acknowledges events inline, not through ``Consumer.ack``, so this cannot be an
    override of it.
    """
    last = batch[-1]
    message_tp = TP(last.topic, last.partition)
    with ack_lock:
        for tp, (first, end) in batch.spans.items():
            stop = end if tp == message_tp else end + 1
            committed = consumer._committed_offset[tp]
            low = first if committed is None or committed <= first else committed
            if low >= stop:
                continue
            covered: range | list[int] = range(low, stop)
            index = consumer._acked_index[tp]
            if not index.isdisjoint(covered):
                covered = [o for o in covered if o not in index]
            index.update(covered)
            consumer._acked[tp].extend(covered)
            consumer._n_acked += len(covered)


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
