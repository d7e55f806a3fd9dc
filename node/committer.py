"""The committer: owns the chain head and applies committed blocks, one at a time, in height order.

Commits from the engine queue up here and are applied by `run`; a catch-up hands in runs of
fetched blocks through `apply_fetched`. Both take the apply lock, so a block is never applied
twice or out of order. Each block is checked against our chain (parent, height, the app hash
it carries, time), executed and written in one atomic batch; only then does the head move, the
mempool forget its txs, and the notifier answer clients.

A committed block from the engine is executed on the event loop and written from a worker
thread. Execution is pure Python: in a worker thread it ran no faster and fought the loop for
the GIL, a hand-off every switch interval; executing on the loop cut a Raft-3 cluster's CPU per
tx by 13 % at 1,500 tx/s and raised its closed-loop peak by 6 % (bench/RESULTS.md). The write
ends in an fsync, which can stall for hundreds of milliseconds on a busy disk, and the loop
must keep serving clients and peers meanwhile: it stays in a thread. A catch-up's run of
fetched blocks, many at a time, executes and writes in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from consensus.engine import Commit
from node.chain import app_hash_height, block_hash_of
from node.chain_params import ChainParams
from node.effects import FatalError, is_next_commit
from node.epochs import Epochs
from node.executor import BlockOutcome, Executor
from node.inbox import STALL_WARN_MS, Inbox
from node.mempool import Mempool
from node.notifier import Notifier
from node.ports import BlockMetrics, NodeObserver
from node.snapshots import Snapshotter
from node.state import StoreState
from node.storage import ChainHead, Storage
from proto import types_pb2

log = logging.getLogger(__name__)

COMMIT_QUEUE_MAX = 1_024


@dataclass(frozen=True, slots=True)
class _Executed:
    """A block executed over the head and not yet written."""

    committed: types_pb2.CommittedBlock  # with receipts, block hash, app hash, certificate
    outcome: BlockOutcome  # its writes and indexed tx ids
    execute_s: float


class Committer:
    def __init__(
        self,
        storage: Storage,
        executor: Executor,
        mempool: Mempool,
        notifier: Notifier,
        inbox: Inbox,
        observer: NodeObserver,
        epochs: Epochs | None = None,
        params: ChainParams | None = None,
        snapshotter: Snapshotter | None = None,
        metrics: BlockMetrics | None = None,
    ) -> None:
        self.storage = storage
        self.executor = executor
        self.mempool = mempool
        self.notifier = notifier
        self.inbox = inbox
        self.observer = observer
        # Both told of every stored block: the validator set or the chain params may change.
        self.epochs = epochs
        self.params = params
        self.snapshotter = snapshotter  # a state snapshot every so many blocks
        self.metrics = metrics
        self._head: ChainHead = storage.head()
        self._state = StoreState(storage.get_state_for_execution, storage.iter_state)
        self._commits: asyncio.Queue[Commit] = asyncio.Queue(COMMIT_QUEUE_MAX)
        self._apply_lock = asyncio.Lock()  # the commit loop and a catch-up never apply at once

    @property
    def head(self) -> ChainHead:
        return self._head

    def app_hash_at(self, height: int) -> bytes:
        head = self._head
        return head.app_hash if height == head.height else self.storage.app_hash_at(height)

    # --- blocks stored before a power loss ----------------------------------------------------

    def replay_stored_blocks(self) -> int:
        """Apply the blocks the block database holds above the head; at start, before anything
        reads the head. A block commit syncs the block but its state batch only once a second
        (node/storage.py), so a power loss can take the last state batches and leave their
        blocks. A block is stored only once decided, so these are the chain's: each is checked
        like any commit, executed, and must give the app hash this node computed for it
        before. Returns how many were applied."""
        applied = 0
        for stored in self.storage.blocks_above_head():
            header = stored.block.header
            if header.parent_hash != self._head.block_hash:
                log.warning("stored block %d does not extend the head (%d): not replayed; "
                            "consensus will commit that height again", header.height,
                            self._head.height)
                break
            ours = types_pb2.CommittedBlock()
            ours.block.CopyFrom(stored.block)
            committed = self._execute_and_store(ours, stored.block_hash, stored.certificate)
            if committed.app_hash != stored.app_hash:
                raise FatalError(
                    f"stored block {header.height} executes to app hash "
                    f"{committed.app_hash.hex()[:16]}; before the restart it gave "
                    f"{stored.app_hash.hex()[:16]}: execution is not deterministic here. "
                    "Stopping for safety."
                )
            applied += 1
        if applied:
            self.storage.sync_state()
            log.warning("replayed %d stored blocks whose state a crash lost; head now %d",
                        applied, self._head.height)
        return applied

    # --- blocks the engine committed --------------------------------------------------------

    async def enqueue(self, commit: Commit) -> None:
        """Waits while the queue is full: the engine loop slows to the pace of execution."""
        await self._commits.put(commit)

    async def run(self) -> None:
        while True:
            commit = await self._commits.get()
            async with self._apply_lock:
                if not is_next_commit(commit.height, self._head.height):
                    continue
                # Parsed straight into the record that is stored: no copy of the block's txs.
                committed = types_pb2.CommittedBlock()
                try:
                    committed.block.ParseFromString(commit.block)
                except DecodeError:
                    raise FatalError(f"committed block {commit.height} does not parse") from None
                executed = self._execute(committed, commit.block_hash, commit.certificate)
                await asyncio.to_thread(self._store, executed)
                self._after_commit(committed)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """While held, no block is being applied (to stop the engine's parts between blocks)."""
        async with self._apply_lock:
            yield

    # --- blocks fetched from a peer ---------------------------------------------------------

    async def apply_fetched(
        self,
        peer: str,
        run: list[types_pb2.CommittedBlock],
        accept: Callable[[types_pb2.CommittedBlock], bool],
    ) -> bool:
        """Apply the blocks of `run` that extend our chain, each checked by `accept` just before
        it is applied; False when `accept` refuses one (the blocks before it stay applied)."""
        async with self._apply_lock:  # the commit loop may be applying these heights
            run = [b for b in run if b.block.header.height > self._head.height]
            if not run or run[0].block.header.height != self._head.height + 1:
                return True
            applied, complete = await asyncio.to_thread(
                self._execute_and_store_run, peer, run, accept
            )
            for committed in applied:
                self._after_commit(committed)
        return complete

    def _execute_and_store_run(
        self,
        peer: str,
        run: list[types_pb2.CommittedBlock],
        accept: Callable[[types_pb2.CommittedBlock], bool],
    ) -> tuple[list[types_pb2.CommittedBlock], bool]:
        """Worker thread: only the last block of the run is synced to disk (a node 1,000
        blocks behind spent most of its catch-up on an fsync per block). Each block is checked
        here, after the one before it is stored: a certificate is checked against the
        validator set in effect at its height, which the block before may have changed."""
        applied: list[types_pb2.CommittedBlock] = []
        for i, fetched in enumerate(run):
            if not accept(fetched):
                # Blocks applied unsynced before it may be lost to a crash (a suffix, never half
                # a block) and are then fetched again, as after any catch-up.
                return applied, False
            ours = types_pb2.CommittedBlock()  # the peer's receipts are not taken: ours are
            ours.block.CopyFrom(fetched.block)
            committed = self._execute_and_store(
                ours, fetched.block_hash, fetched.certificate, sync=i == len(run) - 1
            )
            if committed.app_hash != fetched.app_hash:
                raise FatalError(
                    f"block {self._head.height} from {peer}: app hash differs from ours"
                )
            applied.append(committed)
            self.observer.block_synced(self._head.height)
        return applied, True

    # --- both -------------------------------------------------------------------------------

    def _execute_and_store(
        self,
        committed: types_pb2.CommittedBlock,
        block_hash: bytes,
        certificate: bytes,
        *,
        sync: bool = True,
    ) -> types_pb2.CommittedBlock:
        """Execute `committed.block` (only that field is set) and store it with its receipts,
        which the executor builds in place."""
        self._store(self._execute(committed, block_hash, certificate), sync=sync)
        return committed

    def _execute(
        self, committed: types_pb2.CommittedBlock, block_hash: bytes, certificate: bytes
    ) -> _Executed:
        """Check `committed.block` against the head and execute it; `committed` gets the
        receipts, the block hash, the app hash and the certificate."""
        block = committed.block
        header = block.header
        head = self._head
        if block_hash_of(header) != block_hash:
            raise FatalError(f"block {header.height}: hash does not match its header")
        if header.parent_hash != head.block_hash or header.height != head.height + 1:
            raise FatalError(f"block {header.height} does not extend our chain head")
        checked_height = app_hash_height(header.height)
        ours = self.app_hash_at(checked_height)
        if header.prev_app_hash != ours:
            raise FatalError(
                f"block {header.height} carries app hash {header.prev_app_hash.hex()[:16]} for "
                f"height {checked_height}; ours is {ours.hex()[:16]}: this node's state "
                "diverged from the proposer's. Stopping for safety."
            )
        if header.time_ms <= head.time_ms:
            raise FatalError(f"block {header.height}: time does not move forward")
        executing = time.monotonic()
        outcome = self.executor.execute(
            block, self._state, head.app_hash, self.storage.has_tx, into=committed
        )
        execute_s = time.monotonic() - executing
        committed.block_hash = block_hash
        committed.app_hash = outcome.app_hash
        committed.certificate = certificate
        self.observer.block_executed(header.height)
        return _Executed(committed, outcome, execute_s)

    def _store(self, executed: _Executed, *, sync: bool = True) -> None:
        """Write an executed block and move the head to it; nothing else moves the head, and
        the apply lock keeps one block at a time between `_execute` and here."""
        committed, outcome = executed.committed, executed.outcome
        block = committed.block
        header = block.header
        block_hash = committed.block_hash
        started = time.monotonic()
        self.storage.commit_block(committed, outcome.writes, outcome.indexed, sync=sync)
        took_ms = (time.monotonic() - started) * 1000
        if self.metrics is not None:
            self.metrics.block_committed(len(block.txs), executed.execute_s, took_ms / 1000)
        if took_ms >= STALL_WARN_MS:
            log.warning("writing block %d (%d txs) took %.0f ms", header.height,
                        len(block.txs), took_ms)
        self.observer.block_written(header.height)
        self._head = ChainHead(header.height, outcome.app_hash, block_hash, header.time_ms)
        if self.epochs is not None:
            self.epochs.block_stored(header.height)
        if self.params is not None:
            self.params.observe()
        if self.snapshotter is not None:
            self.snapshotter.block_stored(header.height)

    def _after_commit(self, committed: types_pb2.CommittedBlock) -> None:
        if self.epochs is not None:
            self.epochs.block_committed(committed.block.header.height)
        self.mempool.remove_committed(r.tx_id for r in committed.receipts)
        self.notifier.publish(committed)
        self.inbox.wake()  # the proposer may fill the next height now
