"""Faust's aiokafka transport, with two changes to its consumer.

1. **The fetch wait and minimum from the settings.** Faust 0.15 builds its worker consumer
   with ``fetch_max_wait_ms=1500`` and ``fetch_min_bytes=1``, fixed. aiokafka keeps one fetch
   request in flight per broker: while one waits for records of some partitions, records of
   partitions it does not cover wait too, for up to that long. The worker sets them from
   ``STREAMPROC_CONSUMER_FETCH_WAIT_MS`` and ``STREAMPROC_CONSUMER_FETCH_MIN_BYTES``.

2. **No four tasks per record.** Faust's fetch loop (``Consumer._drain_messages``) hands each
   record to the streams with ``await self.wait_first(callback(message),
   self.suspend_flow.wait())``: four tasks created, raced and cancelled per record (the
   callback, the suspend-flow event, the consumer's stopped and crashed events), about 40-60
   µs of CPU per record, for each of the two topics a worker consumes. The race only matters
   when the callback has to wait (flow suspended for a rebalance, a stream's buffer full):
   :func:`deliver` first runs the callback directly, and only if it suspends does it finish
   it exactly as Faust does, in a task raced against the same events. Faust has no setting
   for either; the loop is Faust's own otherwise, and ``tests/unit/agents/test_transport.py``
   fails if a Faust upgrade changes the method it replaces.

3. **A fetch at a time for batch topics.** Records of a :class:`~agents.batches.BatchTopic`
   (the worker's input and valid topics) reach the agent as one message per topic per
   fetch, carrying a :class:`~agents.batches.RecordBatch` of the records in Faust's own
   round-robin order (:mod:`agents.batches`); Faust's per-record message, event, queueing
   and acknowledgement then happen once per batch. The stream acknowledges the batch's
   message (its last record's partition and offset); the agent acknowledges every other
   offset when it has processed the batch (:func:`~agents.batches.acknowledge_batch`), so
   the commits are those the per-record path would make. Read offsets and gaps are kept
   per partition as Faust keeps them. Records of other topics (table changelogs during
   recovery) take Faust's per-record path, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar, cast

import aiokafka
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from mode import Service, ServiceT

from agents.batches import RecordBatch, batch_message, round_robin
from streamproc.config import Settings

__all__ = ["WorkerTransport", "deliver"]

M = TypeVar("M")


class _Resumed(Awaitable[Any]):
    """The rest of a coroutine that already ran up to its first suspension.

    ``first`` is what the coroutine yielded there (the future it waits for); awaiting this
    object yields it to the running task and then drives the coroutine on, as ``await`` would
    have, passing values and exceptions (a cancellation) through.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: cancellation
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                value = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def deliver(
    service: Service,
    callback: Callable[[M], Awaitable[Any]],
    message: M,
    suspend_flow: asyncio.Event | Any,
) -> None:
    """``await service.wait_first(callback(message), suspend_flow.wait())``, minus the tasks.

    The callback runs in this task until it completes or suspends. Completed (the usual case:
    flow running, buffers not full), nothing else happens. Suspended, or the flow already
    suspended or the service stopping, the rest runs as Faust runs all of it: in a task raced
    against ``suspend_flow``, the service's stopped and crashed events, and cancelled if one
    of those comes first.
    """
    coro = callback(message)
    if asyncio.iscoroutine(coro) and not (
        suspend_flow.is_set()
        or cast(Any, service)._stopped.is_set()
        or cast(Any, service)._crashed.is_set()
    ):
        try:
            first = coro.send(None)
        except StopIteration:
            return
        await service.wait_first(_Resumed(coro, first), suspend_flow.wait())
        return
    await service.wait_first(coro, suspend_flow.wait())


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        settings: Settings = self.app.settings  # type: ignore[attr-defined]  # a WorkerApp
        consumer._fetch_max_wait_ms = settings.consumer_fetch_wait_ms
        consumer._fetch_min_bytes = settings.consumer_fetch_min_bytes
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany_batched(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's ``Consumer.getmany``, with one message per batch topic per fetch.

        The records of the topics in ``app.batch_topics`` come first, each topic's as one
        :func:`~agents.batches.batch_message` whose records are in Faust's round-robin
        order; the others follow one message per record in that order too. The checks are
        Faust's: nothing is handed on while the flow is suspended (a rebalance), after the
        consumer generation changed, or for a partition that is neither active nor
        buffered; records before a partition's read offset are dropped as already handed on.
        """
        me = cast(Any, self)
        records, active_partitions = await me._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As Faust's getmany: the records fetched are dropped, so move back to the
            # committed offsets, or they would never be fetched again (a worker that stopped
            # the flow to seek after table recovery then never saw its input).
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        batch_topics = cast(Any, self.app).batch_topics
        buffered = me._buffered_partitions
        read_offset = me._read_offset
        singles: dict[TP, Any] = {}
        batched: dict[str, dict[TP, Any]] = {}

        def wanted(tp: TP) -> bool:
            return active_partitions is None or tp in active_partitions or tp in buffered

        def flowing() -> bool:
            return self.flow_active and self.app.consumer_generation_id == generation_id

        for tp, fetched in records.items():
            if tp.topic not in batch_topics:
                singles[tp] = fetched
            elif fetched and wanted(tp):
                r_offset = read_offset[tp]
                if r_offset is not None and fetched[0].offset < r_offset:
                    fetched = [r for r in fetched if r.offset >= r_offset]  # Faust's test
                if fetched:
                    batched.setdefault(tp.topic, {})[tp] = fetched
        for per_partition in batched.values():
            if not flowing():
                return
            spans = {tp: (rs[0].offset, rs[-1].offset) for tp, rs in per_partition.items()}
            batch = RecordBatch(round_robin(per_partition), spans)
            for tp in per_partition:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            message = batch_message(batch, generation_id)
            yield message.tp, message
        if singles:
            to_message = self._to_message
            for tp, record in self.scheduler.iterate(singles):
                if not flowing():
                    return
                if wanted(tp):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    yield tp, to_message(tp, record)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        # faust-streaming 0.15.3's Consumer._drain_messages, with the per-record
        # ``await self.wait_first(callback(message), self.suspend_flow.wait())`` replaced by
        # ``await deliver(...)`` (same semantics, see the module docstring).
        me = cast(Any, self)
        callback = self.callback
        getmany = self.getmany_batched
        consumer_should_stop = me._stopped.is_set
        fetcher_should_stop = cast(Any, fetcher)._stopped.is_set

        get_read_offset = me._read_offset.__getitem__
        set_read_offset = me._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = me._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    tp: TP
                    message: Message
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        batch: Any = message.value
                        if type(batch) is RecordBatch:
                            # A batch: read offsets and gaps per partition, as Faust's
                            # per-record loop keeps them.
                            for btp, (first, _) in batch.spans.items():
                                r_offset = get_read_offset(btp)
                                gap = first - (r_offset or 0)
                                if gap > 1 and r_offset and acks_enabled_for(btp.topic):
                                    await me._add_gap(btp, r_offset + 1, first)
                            if commit_every is not None and me._n_acked >= commit_every:
                                me._n_acked = 0
                                await self.commit()
                            await deliver(self, callback, message, suspend_flow)
                            for btp, (_, last) in batch.spans.items():
                                set_read_offset(btp, last)
                            continue
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await me._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and me._n_acked >= commit_every:
                                me._n_acked = 0
                                await self.commit()
                            await deliver(self, callback, message, suspend_flow)
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class WorkerTransport(driver.Transport):
    """The aiokafka transport with the consumer described in the module docstring."""

    Consumer = _Consumer
