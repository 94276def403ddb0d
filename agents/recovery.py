"""Table recovery that seeks before it lets input records in (faust-streaming issue #596).

After a worker recovers its tables from their changelogs, Faust 0.15's
``Recovery.on_recovery_completed`` resumes the input partitions *before* it seeks them
to their committed offsets, and only then resumes flow control, which clears the
stream queues. Flow is already running at that point (it was resumed to read the
changelogs), so records fetched in that window reach a stream queue and are cleared
from it, or are dropped by the consumer as "already read" after the seek. Their offsets
are never acknowledged, and Faust only commits a run of consecutive acknowledged
offsets: the partition's committed offset stops for good while the worker keeps
processing (seen here after a SIGKILL restart: one partition stuck with 2,000+ records
of lag, nothing in flight). Upstream: https://github.com/faust-streaming/faust/issues/596
(open).

The fix is the order Faust itself uses when an app has no tables
(``Recovery._resume_streams``): seek while the input partitions are still paused,
clear the queues, and only then resume the partitions, so the first input record any
stream sees is the one at the committed offset. Everything else is Faust's own code.
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
        if assignment:
            # 1. Seek while no input partition is being fetched.
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        self.completed.set()
        # 2. Clear the stream queues (resume() clears them) ...
        self.app.flow_control.resume()
        consumer.resume_flow()
        # 3. ... and only then let the input partitions in.
        self.log.dev("Resume stream partitions")
        consumer.resume_partitions(streams)
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
