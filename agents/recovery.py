"""Table recovery that cannot leave a hole in the acknowledged offsets (faust-streaming #596).

Faust only commits a run of consecutive acknowledged offsets, so an input record that is
fetched but never handed to a stream blocks every later commit of its partition for good:
the worker keeps running, its lag grows, nothing is lost but nothing moves. Two ways
Faust 0.15 drops fetched input records right after it recovers its tables, both seen here:

- while the changelogs are read, the input partitions are paused; when the changelog
  partitions are paused too, the set of active partitions a fetch is waiting with becomes
  empty, which aiokafka reads as "every partition": input records come back, are dropped
  as not active, and the consumer position has moved past them (a graceful restart with
  new records: every partition stuck);
- ``Recovery.on_recovery_completed`` resumes the input partitions *before* it seeks them
  while the flow is running, then clears the stream queues: records fetched in that window
  are cleared or dropped as already read (a SIGKILL restart: one partition stuck).
  Upstream: https://github.com/faust-streaming/faust/issues/596 (open).

The order below is the one Faust uses for an app without tables (``_resume_streams``),
where the flow is stopped during the rebalance: stop the flow, resume the input
partitions, seek every partition to its committed offset, then clear the queues and
resume the flow. Whatever was fetched before the seek is fetched again; a fetch that
returns while the flow is stopped makes Faust seek back itself. Everything else is
Faust's own code.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery

__all__ = ["SeekFirstRecovery", "SeekFirstTableManager"]


class SeekFirstRecovery(Recovery):
    """:class:`faust.tables.recovery.Recovery` with the seek before the resume."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                self.app.consumer_generation_id,
                generation_id,
            )
            return
        streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
        # 1. Stop delivery, as a rebalance does: nothing reaches a stream queue from here on,
        #    and records a fetch returns while the flow is stopped make Faust seek back.
        consumer.stop_flow()
        self.app.flow_control.suspend()
        # 2. Let the input partitions in (a non-empty set of active partitions also ends
        #    fetches for "every partition", which an empty set means to the fetcher) ...
        self.log.dev("Resume stream partitions")
        consumer.resume_partitions(streams)
        if assignment:
            # 3. ... and move every partition back to its committed offset, after whatever
            #    was fetched and dropped while the changelogs were read.
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.completed.set()
        # 4. Clear the stream queues (resume() clears them) and deliver again.
        self.app.flow_control.resume()
        consumer.resume_flow()
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")


class SeekFirstTableManager(TableManager):
    """The app's table manager, with :class:`SeekFirstRecovery` as its recovery service."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
