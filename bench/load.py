"""Driving load and timing every tx: submission (closed- or open-loop) and the commit tracker.

Latency is submit-to-commit as the client sees it: the clock is read just before the Submit
call that first carries a tx, and again when the block holding its receipt arrives on the
node's `Subscribe` stream. A submission refused for back-pressure (mempool full, no leader
yet) is retried with the original submit time, so a retry costs latency, not correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from node.client.ledger import LedgerClient, LedgerError
from proto import types_pb2

RETRY_STATUSES = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")
RETRY_PAUSE_S = 0.05
OPEN_LOOP_TICK_S = 0.02  # open loop sends what is due every tick, in batches
# Submit calls in flight per open-loop client: eight keep the generator on schedule at 80 % of
# a solo node's peak on the 2-core VM of bench/RESULTS.md, where two left it seconds behind.
OPEN_LOOP_INFLIGHT = 8


@dataclass(slots=True)
class Phase:
    """One set of txs timed together (a setup stage, the warm-up or the measured load)."""

    name: str
    size: int
    submit_s: list[float] = field(init=False)
    commit_s: list[float] = field(init=False)
    code: list[str | None] = field(init=False)  # None: waiting, "": success, else the failure
    finished: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.submit_s = [0.0] * self.size
        self.commit_s = [0.0] * self.size
        self.code = [None] * self.size
        if self.size == 0:
            self.done.set()

    def finish(self, index: int, code: str, at_s: float) -> None:
        if self.code[index] is not None:
            return
        self.code[index] = code
        self.commit_s[index] = at_s
        self.finished += 1
        if self.finished == self.size:
            self.done.set()

    @property
    def submitted(self) -> int:
        return sum(1 for s in self.submit_s if s)


@dataclass(slots=True)
class Batch:
    phase: Phase
    indices: list[int]
    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class BlockSeen:
    at_s: float
    height: int
    txs: int


class Tracker:
    """Follows one node's committed blocks and finishes the txs it was asked to watch."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client
        self._watch: dict[bytes, tuple[Batch, int]] = {}
        self.blocks: list[BlockSeen] = []
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.on_block: Callable[[], None] | None = None

    def start(self, from_height: int) -> None:
        self._task = asyncio.create_task(self._follow(from_height), name="tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LedgerError):
                await self._task

    async def _follow(self, from_height: int) -> None:
        try:
            async for block in self.client.subscribe(from_height):
                now = time.perf_counter()
                receipts = block.receipts
                self.blocks.append(BlockSeen(now, block.block.header.height, len(receipts)))
                watch = self._watch
                for receipt in receipts:
                    found = watch.pop(receipt.tx_id, None)
                    if found is None:
                        continue
                    batch, index = found
                    code = "" if receipt.status == types_pb2.SUCCESS else receipt.error_code
                    batch.phase.finish(index, code, now)
                    batch.remaining -= 1
                    if batch.remaining == 0:
                        batch.done.set()
                if self.on_block is not None:
                    self.on_block()
        except LedgerError as exc:
            self.error = exc

    def watch(self, batch: Batch, tx_ids: list[bytes]) -> None:
        for index, tx_id in zip(batch.indices, tx_ids, strict=True):
            self._watch[tx_id] = (batch, index)

    def refuse(self, batch: Batch, tx_ids: list[bytes], code: str) -> None:
        now = time.perf_counter()
        for index, tx_id in zip(batch.indices, tx_ids, strict=True):
            if self._watch.pop(tx_id, None) is not None:
                batch.phase.finish(index, code, now)
        batch.remaining = 0
        batch.done.set()

    def give_up(self, phase: Phase, code: str = "TIMEOUT") -> None:
        """Finish whatever of phase is still waiting (after the commit timeout)."""
        now = time.perf_counter()
        for tx_id, (batch, index) in list(self._watch.items()):
            if batch.phase is phase:
                del self._watch[tx_id]
                phase.finish(index, code, now)
        for index, code_now in enumerate(phase.code):
            if code_now is None:
                phase.finish(index, "NOT_SUBMITTED", now)


class Sender:
    """Submits batches of pre-signed txs through a set of clients, timing each tx."""

    def __init__(
        self,
        clients: list[LedgerClient],
        tracker: Tracker,
        txs: list[types_pb2.SignedTx],
        tx_ids: list[bytes],
        *,
        retry_s: float = 60.0,
    ) -> None:
        self.clients = clients
        self.tracker = tracker
        self.txs = txs
        self.tx_ids = tx_ids
        self.retry_s = retry_s
        self.retries = 0
        self.last_submit_s = 0.0
        # Open loop: how late each batch left against its schedule (tx i is due at i / rate).
        # Latency counts from the send, so time a batch waited for a free Submit slot is in
        # no tx's latency: a generator that falls behind hides queueing, and this shows it.
        self.schedule_lag_s: list[float] = []

    async def send(self, client: LedgerClient, batch: Batch, offset: int) -> None:
        """Submit one batch (indices relative to offset into the signed txs)."""
        txs = [self.txs[offset + i] for i in batch.indices]
        tx_ids = [self.tx_ids[offset + i] for i in batch.indices]
        self.tracker.watch(batch, tx_ids)
        now = time.perf_counter()
        submit_s = batch.phase.submit_s
        for i in batch.indices:
            submit_s[i] = now
        self.last_submit_s = now
        give_up_at = now + self.retry_s
        while True:
            try:
                await client.submit(txs)
                return
            except LedgerError as exc:
                if exc.status in RETRY_STATUSES and time.perf_counter() < give_up_at:
                    self.retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                self.tracker.refuse(batch, tx_ids, f"REFUSED_{exc.status}")
                return

    async def closed_loop(
        self, phase: Phase, offset: int, batch_txs: int, deadline_s: float | None,
        batch_timeout_s: float = 120.0,
    ) -> None:
        """Each client keeps one batch in flight: it sends the next when the last committed
        (or, after batch_timeout_s, gives its missing txs up as TIMEOUT and moves on)."""
        queue = deque(
            list(range(start, min(start + batch_txs, phase.size)))
            for start in range(0, phase.size, batch_txs)
        )

        async def client_loop(client: LedgerClient) -> None:
            while queue and (deadline_s is None or time.perf_counter() < deadline_s):
                indices = queue.popleft()
                batch = Batch(phase, indices, len(indices))
                await self.send(client, batch, offset)
                try:
                    async with asyncio.timeout(batch_timeout_s):
                        await batch.done.wait()
                except TimeoutError:
                    self.tracker.refuse(
                        batch, [self.tx_ids[offset + i] for i in indices], "TIMEOUT"
                    )

        async with asyncio.TaskGroup() as group:
            for client in self.clients:
                group.create_task(client_loop(client))

    async def open_loop(
        self, phase: Phase, offset: int, rate_tps: float, batch_txs: int,
        deadline_s: float | None, *, inflight_per_client: int = OPEN_LOOP_INFLIGHT,
    ) -> None:
        """Send at rate_tps regardless of commits, with at most `inflight_per_client` Submit
        calls in flight per client (a bound on what a stalled node can pile up here)."""
        slots = asyncio.Semaphore(len(self.clients) * inflight_per_client)
        started = time.perf_counter()
        sent = turn = 0
        tasks: set[asyncio.Task[None]] = set()

        async def one(client: LedgerClient, batch: Batch) -> None:
            try:
                await self.send(client, batch, offset)
            finally:
                slots.release()

        while sent < phase.size:
            now = time.perf_counter()
            if deadline_s is not None and now >= deadline_s:
                break
            due = min(phase.size, int(rate_tps * (now - started)) + 1)
            while sent < due:
                take = min(batch_txs, due - sent)
                batch = Batch(phase, list(range(sent, sent + take)), take)
                sent += take
                await slots.acquire()
                self.schedule_lag_s.append(
                    time.perf_counter() - started - batch.indices[0] / rate_tps)
                client = self.clients[turn % len(self.clients)]
                turn += 1
                task = asyncio.create_task(one(client, batch))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(OPEN_LOOP_TICK_S)
        if tasks:
            await asyncio.gather(*tasks)
