"""Follows the chain for the console: replays recent blocks, then streams new ones (Subscribe),
feeding each into `ChainHistory`, which files its events and tells the live pages.

It owns one task, started and cancelled by the app's lifespan. A stream that ends or fails
(a node restarts, the member is suspended) is reopened after a pause from the next height, on
whichever node answers; the pages keep working meanwhile, from the views.
"""

from __future__ import annotations

import asyncio
import logging

from node.client.ledger import LedgerError
from node.console.history import ChainHistory
from node.console.source import ChainSource

log = logging.getLogger(__name__)

REPLAY_BLOCKS_MAX = 2_000  # at start, the history reaches this many blocks back
RETRY_PAUSE_S = 1.0


class ChainFollower:
    def __init__(self, source: ChainSource, history: ChainHistory, *,
                 replay_blocks_max: int = REPLAY_BLOCKS_MAX,
                 retry_pause_s: float = RETRY_PAUSE_S) -> None:
        self._source = source
        self._history = history
        self._replay_blocks_max = replay_blocks_max
        self._retry_pause_s = retry_pause_s
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""  # why the last stream ended ("" while streaming)

    def start(self) -> None:
        assert self._task is None, "started once"
        self._task = asyncio.create_task(self._run(), name="console-follower")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _first_height(self) -> int:
        statuses = [s for s in await self._source.node_statuses() if s.reachable]
        if not statuses:
            raise LedgerError("UNAVAILABLE", "no node answers")
        head = max(s.height for s in statuses)
        base = min(s.base_height for s in statuses)
        return max(1, head - self._replay_blocks_max + 1, base)

    async def _run(self) -> None:
        while True:
            try:
                from_height = (self._history.head + 1 if self._history.head
                               else await self._first_height())
                async for committed in self._source.subscribe(from_height):
                    self.last_error = ""
                    self._history.add_block(committed)
                self.last_error = "the stream ended"
            except LedgerError as exc:
                self.last_error = f"{exc.status}: {exc.message}"
            log.info("block stream interrupted (%s); resubscribing in %.1f s",
                     self.last_error, self._retry_pause_s)
            await asyncio.sleep(self._retry_pause_s)
