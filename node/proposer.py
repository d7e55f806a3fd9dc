"""The proposer: builds a block when the engine offers a slot, and hands pending txs onward when
this node does not propose.

`Proposer.offer` is called by the engine loop after every batch with the engine's status. It
proposes when the engine offers a slot (`next_height`, `next_parent_hash`: a PBFT primary offers
the height above its own block still being agreed, up to `pipeline_depth_blocks` heights in
flight, so the parent may not be committed yet) and enough txs are
pending to fill a block, or some are pending and `interval_ms` has passed or nothing of ours is
in flight (the slot sits on the executed head), or
`empty_block_interval_ms` (0: never) has passed since the head block's time, and
`ProposalSlots` (node/effects.py) allows the slot: pipelining no deeper than APP_HASH_LAG, a
parent whose time is known, one proposal per (round, height). The block limits and the empty
block interval are the chain params in force at the slot's height (node/chain_params.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from consensus.engine import BlockProposal, EngineStatus
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.chain_params import ChainParams
from node.effects import ProposalSlots
from node.mempool import Mempool
from node.ports import Forwarder
from node.storage import ChainHead
from proto import types_pb2

log = logging.getLogger(__name__)

HANDOFF_TXS_MAX = 2_000
HANDOFF_RETRY_MS = 500


class ChainReader(Protocol):
    """The executed chain as the proposer needs it (the committer implements it)."""

    @property
    def head(self) -> ChainHead: ...

    def app_hash_at(self, height: int) -> bytes: ...


class PendingHandOff(Protocol):
    def maybe_hand_off(self, leader: str | None) -> None: ...


class NoHandOff:
    """A node without peers never has anyone to hand txs to."""

    def maybe_hand_off(self, leader: str | None) -> None:
        pass


class HandOff:
    """Pending txs on a node that does not propose (a deposed leader or primary, or txs
    admitted while there was none) go to whoever proposes now, or they would never commit.
    One hand-off at a time, at most one every HANDOFF_RETRY_MS; a failed one puts back the txs
    that did not commit meanwhile."""

    def __init__(
        self,
        forwarder: Forwarder,
        mempool: Mempool,
        has_tx: Callable[[bytes], bool],
        monotonic_ms: Callable[[], int],
    ) -> None:
        self.forwarder = forwarder
        self.mempool = mempool
        self.has_tx = has_tx
        self.monotonic_ms = monotonic_ms
        self._task: asyncio.Task[None] | None = None
        self._last_ms = 0

    def maybe_hand_off(self, leader: str | None) -> None:
        if leader is None or not self.mempool.pending_count:
            return
        if self._task is not None and not self._task.done():
            return
        now = self.monotonic_ms()
        if now - self._last_ms < HANDOFF_RETRY_MS:
            return
        self._last_ms = now
        drained = self.mempool.drain_pending(HANDOFF_TXS_MAX)
        self._task = asyncio.create_task(self._hand_off(leader, drained))

    async def _hand_off(self, leader: str, txs: list[tuple[bytes, types_pb2.SignedTx]]) -> None:
        try:
            await self.forwarder.forward(leader, [tx for _, tx in txs])
            log.info("handed %d pending txs to %s", len(txs), leader)
        except Exception as exc:  # the leader refused or is unreachable: keep them, retry later
            log.info("hand-off of %d txs to %s failed: %s", len(txs), leader, exc)
            remaining = [(tx_id, tx) for tx_id, tx in txs if not self.has_tx(tx_id)]
            try:
                self.mempool.add_batch(remaining)
            except Exception:  # full: the client's wait times out and it resubmits
                log.warning("dropped %d pending txs that could not be handed off", len(remaining))


class Proposer:
    def __init__(
        self,
        node_id: str,
        chain_id: str,
        params: ChainParams,
        mempool: Mempool,
        chain: ChainReader,
        hand_off: PendingHandOff,
        *,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self.params = params
        self.mempool = mempool
        self.chain = chain
        self.hand_off = hand_off
        self.wall_clock_ms = wall_clock_ms
        self._slots = ProposalSlots(node_id)
        self._last_proposal_ms = 0

    def offer(self, status: EngineStatus) -> BlockProposal | None:
        """The block to propose now, if any (taken from the mempool, recorded as proposed)."""
        if self._slots.follow_leader(status.leader):
            moved = self.mempool.requeue_in_flight()
            if moved:
                log.info("no longer proposer; %d txs back to pending", moved)
        if status.leader != self.node_id:
            self.hand_off.maybe_hand_off(status.leader)
        head = self.chain.head
        slot = self._slots.free_slot(status, head.height, head.time_ms)
        if slot is None:
            return None
        height, parent_hash, parent_time_ms = slot
        now = self.wall_clock_ms()
        limits = self.params.limits_at(height)
        if not self._due(now, height):
            return None
        taken = self.mempool.take(limits.txs_max, limits.bytes_max)
        header = types_pb2.BlockHeader(
            chain_id=self.chain_id,
            height=height,
            time_ms=max(now, parent_time_ms + 1),
            parent_hash=parent_hash,
            prev_app_hash=self.chain.app_hash_at(app_hash_height(height)),
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
        self._slots.proposed(status.round, height, proposal.block_hash, header.time_ms)
        log.debug("propose height=%d txs=%d", header.height, len(taken))
        return proposal

    def _due(self, now: int, height: int) -> bool:
        """Whether enough is pending, or enough time has passed, to propose block `height` now.

        `interval_ms` is how long txs gather while a block is ahead of the executed head:
        with the pipeline idle (the slot sits on the head) waiting would only add latency,
        so whatever is pending goes at once (under load the pipeline is never idle, so blocks
        stay full-sized)."""
        params = self.params.at(height)
        limits = self.params.limits_at(height)
        pending = self.mempool.pending_count
        due = now - self._last_proposal_ms >= limits.interval_ms
        idle = height == self.chain.head.height + 1
        if pending >= limits.txs_max or (pending and (due or idle)):
            return True
        return 0 < params.empty_block_interval_ms <= now - self.chain.head.time_ms
