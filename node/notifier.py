"""Who hears about committed blocks: clients waiting for receipts, and Subscribe streams.

Published to only after a block's write batch is durable, so a receipt a client gets is never
lost to a crash. Each subscription has a bounded queue; one that falls behind is marked
overflowed and gets nothing more (the API tells its client to resubscribe).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from proto import types_pb2


@dataclass(slots=True)
class Subscription:
    queue: asyncio.Queue[types_pb2.CommittedBlock | None]  # None: the stream ends
    overflowed: bool = False


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[bytes, list[asyncio.Future[types_pb2.Receipt]]] = {}
        self._subscriptions: list[Subscription] = []

    # --- receipts ---------------------------------------------------------------------------

    def wait_for(self, tx_ids: list[bytes]) -> list[asyncio.Future[types_pb2.Receipt]]:
        loop = asyncio.get_running_loop()
        futures = []
        for tx_id in tx_ids:
            future: asyncio.Future[types_pb2.Receipt] = loop.create_future()
            self._waiters.setdefault(tx_id, []).append(future)
            futures.append(future)
        return futures

    def forget_waiters(self, tx_ids: list[bytes]) -> None:
        for tx_id in tx_ids:
            futures = self._waiters.get(tx_id)
            if futures is None:
                continue
            remaining = [f for f in futures if not f.done()]
            if remaining:
                self._waiters[tx_id] = remaining
            else:
                del self._waiters[tx_id]

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, queue_max: int) -> Subscription:
        sub = Subscription(asyncio.Queue(queue_max))
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    # --- publishing -------------------------------------------------------------------------

    def publish(self, committed: types_pb2.CommittedBlock) -> None:
        """A block is durable: answer its waiters, feed every subscription."""
        for receipt in committed.receipts:
            for future in self._waiters.pop(receipt.tx_id, ()):
                if not future.done():
                    future.set_result(receipt)
        for sub in self._subscriptions:
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(committed)
            except asyncio.QueueFull:
                sub.overflowed = True

    def close(self) -> None:
        """No more blocks will come: end every stream that has room to be told so."""
        for sub in self._subscriptions:
            sub.overflowed = sub.overflowed or sub.queue.full()
            if not sub.queue.full():
                sub.queue.put_nowait(None)
