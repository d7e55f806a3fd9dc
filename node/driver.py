"""The driver: feeds the consensus engine, carries out its actions, applies committed blocks.

One task owns the engine. It takes every input that is ready (ticks, peer messages, wake-ups)
in one batch, calls the engine for each, then carries out all resulting actions in order:
persist (one synced write for the whole batch) before any send, so a crash never forgets a
vote. Commits go to a second task that executes blocks in height order and writes each in one
atomic batch; only then are waiting clients answered and subscribers fed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.protobuf.message import DecodeError

from consensus.engine import (
    Action,
    BlockProposal,
    Broadcast,
    Commit,
    Engine,
    Persist,
    RequestSync,
    Send,
)
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.client.identity import tx_id_of
from node.executor import Executor
from node.faults import crashpoints
from node.genesis import Genesis
from node.mempool import Mempool
from node.state import StoreState
from node.storage import ChainHead, Storage
from proto import types_pb2

log = logging.getLogger(__name__)

INBOX_BATCH_MAX = 512
INBOX_ITEMS_MAX = 50_000
COMMIT_QUEUE_MAX = 1_024
HANDOFF_TXS_MAX = 2_000
HANDOFF_RETRY_MS = 500
PROPOSED_TIMES_MAX = 64
# Catch-up: blocks fetched ahead of execution, and blocks applied per worker-thread call.
SYNC_AHEAD_BLOCKS_MAX = 512
SYNC_APPLY_BLOCKS_MAX = 64
STALL_WARN_MS = 200  # a pause this long is logged: it approaches Raft's election timeout


class FatalError(Exception):
    """The node must stop: continuing could corrupt or fork the ledger."""


class PeerTransport(Protocol):
    """How the driver reaches other validators (node/transport.py implements it)."""

    def send(self, to: str, msg: Any) -> None: ...

    def broadcast(self, msg: Any) -> None: ...

    async def forward(self, to: str, txs: list[types_pb2.SignedTx]) -> None: ...

    def fetch_blocks(self, peer: str, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        ...


@dataclass(slots=True)
class _Subscriber:
    queue: asyncio.Queue[types_pb2.CommittedBlock | None]
    overflowed: bool = False


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Message:
    sender: str
    msg: Any


@dataclass(frozen=True, slots=True)
class _Synced:
    height: int
    block_hash: bytes


@dataclass(slots=True)
class DriverStats:
    blocks_committed: int = 0
    txs_committed: int = 0
    proposals: int = 0
    started_s: float = field(default_factory=time.monotonic)


class Driver:
    def __init__(
        self,
        node_id: str,
        genesis: Genesis,
        storage: Storage,
        executor: Executor,
        engine: Engine,
        mempool: Mempool,
        *,
        tick_ms: int = 10,
        empty_block_interval_ms: int = 1_000,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.node_id = node_id
        self.genesis = genesis
        self.storage = storage
        self.executor = executor
        self.engine = engine
        self.mempool = mempool
        self.transport: PeerTransport | None = None
        self.tick_ms = tick_ms
        self.empty_block_interval_ms = empty_block_interval_ms
        self.wall_clock_ms = wall_clock_ms
        self.head: ChainHead = storage.head()
        self.state = StoreState(storage.get_state_for_execution, storage.iter_state)
        self.stats = DriverStats()
        self._inbox: asyncio.Queue[_Tick | _Message | _Synced] = asyncio.Queue(INBOX_ITEMS_MAX)
        self._commits: asyncio.Queue[Commit] = asyncio.Queue(COMMIT_QUEUE_MAX)
        self._waiters: dict[bytes, list[asyncio.Future[types_pb2.Receipt]]] = {}
        self._subscribers: list[_Subscriber] = []
        self._last_proposal_ms = 0
        self._proposed: tuple[int, int] = (-1, 0)  # (round, height) of our last proposal
        # Header times of our recent proposals by block hash: the next block's time must be
        # later than its parent's, and the parent may not be executed yet.
        self._proposed_times: OrderedDict[bytes, int] = OrderedDict()
        self._was_proposer = False
        self._sync_task: asyncio.Task[None] | None = None
        self._handoff_task: asyncio.Task[None] | None = None
        self._handoff_ms = 0
        self._apply_lock = asyncio.Lock()  # the commit loop and a sync never apply at once
        self._tick_due = False
        self.stopped = asyncio.Event()

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        actions = self.engine.start(self._now_ms())
        await self._carry_out(actions)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._ticker(), name="ticker")
                group.create_task(self._engine_loop(), name="engine")
                group.create_task(self._commit_loop(), name="commit")
        finally:
            if self._sync_task is not None:
                self._sync_task.cancel()
            for sub in self._subscribers:
                sub.overflowed = sub.overflowed or sub.queue.full()
                if not sub.queue.full():
                    sub.queue.put_nowait(None)  # end of stream
            self.stopped.set()

    def deliver(self, sender: str, msg: Any) -> bool:
        """A peer message for the engine; False when the inbox is full (the peer retries)."""
        try:
            self._inbox.put_nowait(_Message(sender, msg))
        except asyncio.QueueFull:
            return False
        return True

    def _now_ms(self) -> int:
        return int(time.monotonic() * 1000)

    async def _ticker(self) -> None:
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
            # A due tick is a flag the engine loop honours after every batch: under load the
            # inbox is never empty, and a tick queued behind thousands of messages (or never
            # queued) would starve the leader's heartbeats.
            self._tick_due = True
            if self._inbox.empty():
                self._inbox.put_nowait(_Tick())

    async def _engine_loop(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < INBOX_BATCH_MAX and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            actions: list[Action] = []
            for item in batch:
                if isinstance(item, _Message):
                    actions += self.engine.receive(item.sender, item.msg)
                elif isinstance(item, _Synced):
                    actions += self.engine.synced(item.height, item.block_hash)
            if self._tick_due:
                # After the messages: after a long persist, the messages that queued meanwhile
                # (a leader's heartbeats, votes) count before any timer fires.
                self._tick_due = False
                actions += self.engine.tick(self._now_ms())
            actions += self._maybe_propose()
            await self._carry_out(actions)

    async def _carry_out(self, actions: list[Action]) -> None:
        records = [record for a in actions if isinstance(a, Persist) for record in a.records]
        if records:
            started = time.monotonic()
            await asyncio.to_thread(self.storage.put_consensus, records)
            took_ms = (time.monotonic() - started) * 1000
            if took_ms >= STALL_WARN_MS:
                log.warning("persisting %d consensus records took %.0f ms", len(records), took_ms)
            crashpoints.reached("after_persist_before_send")
        for action in actions:
            match action:
                case Send(to, msg):
                    if self.transport is not None:
                        self.transport.send(to, msg)
                case Broadcast(msg):
                    if self.transport is not None:
                        self.transport.broadcast(msg)
                case Commit():
                    await self._commits.put(action)
                case RequestSync(from_node, from_height):
                    self._start_sync(from_node, from_height)
                case Persist():
                    pass

    # --- proposing --------------------------------------------------------------------------

    def _maybe_propose(self) -> list[Action]:
        status = self.engine.status
        # The proposer role, not a free slot right now (PBFT offers one slot at a time).
        is_proposer = status.leader == self.node_id
        if self._was_proposer and not is_proposer:
            moved = self.mempool.requeue_in_flight()
            if moved:
                log.info("no longer proposer; %d txs back to pending", moved)
            # What we proposed may never commit (a new PBFT view drops an unprepared block):
            # if this node proposes again, it must be able to fill the same height.
            self._proposed = (-1, 0)
        self._was_proposer = is_proposer
        if not is_proposer:
            self._maybe_hand_off(status.leader)
        if status.next_height is None or status.next_parent_hash is None:
            return []
        head = self.head
        next_height = status.next_height
        # The header carries the app hash of height next_height - APP_HASH_LAG, so that block
        # must be executed here; the parent may still be executing (pipelining). One proposal
        # per (round, height): a new round may re-propose an abandoned height.
        if (
            app_hash_height(next_height) > head.height
            or next_height <= head.height
            or self._proposed == (status.round, next_height)
        ):
            return []
        if next_height == head.height + 1:
            parent_time_ms: int | None = head.time_ms
        else:  # the parent is not executed yet: only our own proposal's time is known
            parent_time_ms = self._proposed_times.get(status.next_parent_hash)
        if parent_time_ms is None:
            return []
        now = self.wall_clock_ms()
        limits = self.genesis.block
        pending = self.mempool.pending_count
        due = now - self._last_proposal_ms >= limits.interval_ms
        if not (pending >= limits.txs_max or (pending and due)) and (
            now - self.head.time_ms < self.empty_block_interval_ms
            or self.empty_block_interval_ms <= 0
        ):
            return []
        taken = self.mempool.take(limits.txs_max, limits.bytes_max)
        header = types_pb2.BlockHeader(
            chain_id=self.genesis.chain_id,
            height=next_height,
            time_ms=max(now, parent_time_ms + 1),
            parent_hash=status.next_parent_hash,
            prev_app_hash=self._app_hash_at(app_hash_height(next_height)),
            txs_hash=txs_hash(tx_id for tx_id, _ in taken),
            proposer=self.node_id,
            round=status.round,
        )
        block = types_pb2.Block(header=header, txs=[tx for _, tx in taken])
        proposal = BlockProposal(
            height=header.height,
            parent_hash=header.parent_hash,
            block_hash=block_hash_of(header),
            payload=block.SerializeToString(),
        )
        self._last_proposal_ms = now
        self._proposed = (status.round, header.height)
        self._proposed_times[proposal.block_hash] = header.time_ms
        while len(self._proposed_times) > PROPOSED_TIMES_MAX:
            self._proposed_times.popitem(last=False)
        self.stats.proposals += 1
        log.debug("propose height=%d txs=%d", header.height, len(taken))
        return self.engine.propose(proposal)

    def _maybe_hand_off(self, leader: str | None) -> None:
        """Pending txs on a node that does not propose (a deposed leader or primary, or txs
        admitted while there was none) go to whoever proposes now, or they would never commit."""
        if leader is None or self.transport is None or not self.mempool.pending_count:
            return
        if self._handoff_task is not None and not self._handoff_task.done():
            return
        now = self._now_ms()
        if now - self._handoff_ms < HANDOFF_RETRY_MS:
            return
        self._handoff_ms = now
        drained = self.mempool.drain_pending(HANDOFF_TXS_MAX)
        self._handoff_task = asyncio.create_task(self._hand_off(leader, drained))

    async def _hand_off(self, leader: str, txs: list[tuple[bytes, types_pb2.SignedTx]]) -> None:
        assert self.transport is not None
        try:
            await self.transport.forward(leader, [tx for _, tx in txs])
            log.info("handed %d pending txs to %s", len(txs), leader)
        except Exception as exc:  # the leader refused or is unreachable: keep them, retry later
            log.info("hand-off of %d txs to %s failed: %s", len(txs), leader, exc)
            remaining = [(tx_id, tx) for tx_id, tx in txs if not self.storage.has_tx(tx_id)]
            try:
                self.mempool.add_batch(remaining)
            except Exception:  # full: the client's wait times out and it resubmits
                log.warning("dropped %d pending txs that could not be handed off", len(remaining))

    # --- committing -------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            commit = await self._commits.get()
            # One block applied at a time: a sync may be applying blocks in a worker thread.
            async with self._apply_lock:
                if commit.height <= self.head.height:
                    continue  # applied before a restart, or by sync
                if commit.height != self.head.height + 1:
                    raise FatalError(
                        f"commit of height {commit.height} while the chain is at "
                        f"{self.head.height}"
                    )
                block = types_pb2.Block()
                try:
                    block.ParseFromString(commit.block)
                except DecodeError:
                    raise FatalError(f"committed block {commit.height} does not parse") from None
                committed = await asyncio.to_thread(
                    self._execute_and_store, block, commit.block_hash, commit.certificate
                )
                self._after_commit(committed)

    def _execute_and_store(
        self, block: types_pb2.Block, block_hash: bytes, certificate: bytes, *, sync: bool = True
    ) -> types_pb2.CommittedBlock:
        header = block.header
        head = self.head
        if block_hash_of(header) != block_hash:
            raise FatalError(f"block {header.height}: hash does not match its header")
        if header.parent_hash != head.block_hash or header.height != head.height + 1:
            raise FatalError(f"block {header.height} does not extend our chain head")
        checked_height = app_hash_height(header.height)
        ours = self._app_hash_at(checked_height)
        if header.prev_app_hash != ours:
            raise FatalError(
                f"block {header.height} carries app hash {header.prev_app_hash.hex()[:16]} for "
                f"height {checked_height}; ours is {ours.hex()[:16]}: this node's state "
                "diverged from the proposer's. Stopping for safety."
            )
        if header.time_ms <= head.time_ms:
            raise FatalError(f"block {header.height}: time does not move forward")
        outcome = self.executor.execute(block, self.state, head.app_hash, self.storage.has_tx)
        committed = types_pb2.CommittedBlock(
            block=block,
            block_hash=block_hash,
            receipts=outcome.receipts,
            end_block_events=outcome.end_block_events,
            app_hash=outcome.app_hash,
            certificate=certificate,
        )
        crashpoints.reached("mid_block_commit")
        started = time.monotonic()
        self.storage.commit_block(committed, outcome.writes, outcome.indexed, sync=sync)
        took_ms = (time.monotonic() - started) * 1000
        if took_ms >= STALL_WARN_MS:
            log.warning("writing block %d (%d txs) took %.0f ms", header.height,
                        len(block.txs), took_ms)
        crashpoints.reached("after_commit_before_reply")
        self.head = ChainHead(header.height, outcome.app_hash, block_hash, header.time_ms)
        return committed

    def _app_hash_at(self, height: int) -> bytes:
        head = self.head
        return head.app_hash if height == head.height else self.storage.app_hash_at(height)

    def _after_commit(self, committed: types_pb2.CommittedBlock) -> None:
        receipts = committed.receipts
        self.mempool.remove_committed(r.tx_id for r in receipts)
        self.stats.blocks_committed += 1
        self.stats.txs_committed += len(receipts)
        for receipt in receipts:
            for future in self._waiters.pop(receipt.tx_id, ()):
                if not future.done():
                    future.set_result(receipt)
        for sub in self._subscribers:
            if sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(committed)
            except asyncio.QueueFull:
                sub.overflowed = True
        if self._inbox.empty():
            self._inbox.put_nowait(_Tick())  # wake the proposer for the next height

    # --- catch-up ---------------------------------------------------------------------------

    def _start_sync(self, peer: str, from_height: int) -> None:
        if self._sync_task is not None and not self._sync_task.done():
            return
        if self.transport is None:
            return
        self._sync_task = asyncio.create_task(self._sync(peer, max(from_height, 1)))

    async def _sync(self, peer: str, from_height: int) -> None:
        """Fetch committed blocks from `peer` and apply them: fetching runs ahead in its own task
        while runs of already-fetched blocks are executed in one worker-thread call each, only
        the last block of a run synced to disk (a node 1,000 blocks behind spent most of its
        catch-up on a thread hop and an fsync per block)."""
        assert self.transport is not None
        log.info("syncing from %s at height %d", peer, from_height)
        # A Byzantine-tolerant engine can check a fetched block's commit certificate: the peer
        # serving it need not be trusted (then the header must also match the txs carried).
        verify = getattr(self.engine, "verify_certificate", None)
        fetched: asyncio.Queue[types_pb2.CommittedBlock | None] = asyncio.Queue(
            SYNC_AHEAD_BLOCKS_MAX
        )
        fetcher = asyncio.create_task(self._fetch_into(peer, fetched), name=f"fetch-{peer}")
        try:
            finished = False
            while not finished:
                run: list[types_pb2.CommittedBlock] = []
                item = await fetched.get()
                while item is not None:
                    run.append(item)
                    if len(run) >= SYNC_APPLY_BLOCKS_MAX or fetched.empty():
                        break
                    item = fetched.get_nowait()
                finished = item is None
                if run and not await self._apply_fetched(peer, run, verify):
                    break
        except FatalError:
            raise
        except Exception as exc:  # a block that failed to apply: try again on the next request
            log.warning("sync from %s stopped: %s", peer, exc)
        finally:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)
        self._inbox.put_nowait(_Synced(self.head.height, self.head.block_hash))

    async def _fetch_into(
        self, peer: str, fetched: asyncio.Queue[types_pb2.CommittedBlock | None]
    ) -> None:
        assert self.transport is not None
        try:
            async for block in self.transport.fetch_blocks(peer, self.head.height + 1):
                await fetched.put(block)
        except Exception as exc:  # a peer that fails mid-sync: the engine asks again later
            log.warning("sync from %s stopped: %s", peer, exc)
        finally:
            await fetched.put(None)

    async def _apply_fetched(
        self,
        peer: str,
        run: list[types_pb2.CommittedBlock],
        verify: Callable[[int, bytes, bytes], bool] | None,
    ) -> bool:
        """Apply the blocks of `run` that extend our chain; False on a bad certificate."""
        async with self._apply_lock:  # the commit loop may be applying these heights
            run = [b for b in run if b.block.header.height > self.head.height]
            if not run or run[0].block.header.height != self.head.height + 1:
                return True
            for block in run:
                if verify is not None and not self._certified(block, verify):
                    log.warning(
                        "block %d from %s: bad certificate", block.block.header.height, peer
                    )
                    return False
            applied = await asyncio.to_thread(self._execute_and_store_run, peer, run)
            for committed in applied:
                self._after_commit(committed)
        return True

    def _execute_and_store_run(
        self, peer: str, run: list[types_pb2.CommittedBlock]
    ) -> list[types_pb2.CommittedBlock]:
        applied = []
        for i, fetched in enumerate(run):
            committed = self._execute_and_store(
                fetched.block, fetched.block_hash, fetched.certificate, sync=i == len(run) - 1
            )
            if committed.app_hash != fetched.app_hash:
                raise FatalError(
                    f"block {self.head.height} from {peer}: app hash differs from ours"
                )
            applied.append(committed)
            crashpoints.reached("during_state_transfer")
        return applied

    @staticmethod
    def _certified(
        fetched: types_pb2.CommittedBlock, verify: Callable[[int, bytes, bytes], bool]
    ) -> bool:
        header = fetched.block.header
        if fetched.block_hash != block_hash_of(header):
            return False
        if header.txs_hash != txs_hash(tx_id_of(tx.body) for tx in fetched.block.txs):
            return False
        return verify(header.height, fetched.block_hash, fetched.certificate)

    # --- clients ----------------------------------------------------------------------------

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

    def subscribe(self, queue_max: int) -> _Subscriber:
        sub = _Subscriber(asyncio.Queue(queue_max))
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
