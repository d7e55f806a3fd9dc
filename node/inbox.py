"""The engine's inbox: peer messages, catch-up results and timer ticks, taken in batches.

Everything the engine hears goes through one bounded queue, so one task (the driver's engine
loop) owns the engine. A due tick is a flag as well as a queue item: under load the queue is
never empty, and a tick queued behind thousands of messages (or never queued) would starve a
leader's heartbeats, so the loop asks `take_tick_due` after every batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INBOX_BATCH_MAX = 512
INBOX_ITEMS_MAX = 50_000
STALL_WARN_MS = 200  # a pause this long is logged: it approaches Raft's election timeout


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Message:
    sender: str
    msg: Any


@dataclass(frozen=True, slots=True)
class Synced:
    height: int
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """The validator set changed (or, at start-up, is as stored): `validators` vote from
    `effective_height` on."""

    effective_height: int
    validators: tuple[str, ...]


InboxItem = Tick | Message | Synced | Reconfigure


class Inbox:
    def __init__(self, tick_ms: int) -> None:
        self.tick_ms = tick_ms
        self._queue: asyncio.Queue[InboxItem] = asyncio.Queue(INBOX_ITEMS_MAX)
        self._tick_due = False

    def deliver(self, sender: str, msg: Any) -> bool:
        """A peer message for the engine; False when the inbox is full (the peer retries)."""
        try:
            self._queue.put_nowait(Message(sender, msg))
        except asyncio.QueueFull:
            return False
        return True

    def synced(self, height: int, block_hash: bytes) -> None:
        """A catch-up ended with the chain at `height`."""
        self._queue.put_nowait(Synced(height, block_hash))

    def reconfigure(self, effective_height: int, validators: tuple[str, ...]) -> None:
        """Queued like a message, so the engine hears of the change between two batches, in
        epoch order, from the task that owns it."""
        self._queue.put_nowait(Reconfigure(effective_height, validators))

    def wake(self) -> None:
        """Make the engine loop run soon (e.g. to propose on a new head), if it is idle."""
        if self._queue.empty():
            self._queue.put_nowait(Tick())

    async def next_batch(self) -> list[InboxItem]:
        """Every ready item, at least one, at most INBOX_BATCH_MAX."""
        queue = self._queue
        batch = [await queue.get()]
        while len(batch) < INBOX_BATCH_MAX and not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    def take_tick_due(self) -> bool:
        """Whether a tick fell due since the last call."""
        due, self._tick_due = self._tick_due, False
        return due

    async def run_ticker(self) -> None:
        expected = time.monotonic()
        while True:
            expected += self.tick_ms / 1000
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            late_ms = (time.monotonic() - expected) * 1000
            if late_ms >= STALL_WARN_MS:
                # Something held the event loop (or the GIL) this long: consensus timers and
                # every client call waited with it. Say so, or an election looks unexplained.
                log.warning("event loop stalled %.0f ms", late_ms)
                expected = time.monotonic()
            self._tick_due = True
            self.wake()
