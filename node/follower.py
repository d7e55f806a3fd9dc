"""An observer's way along the chain: no engine, no votes; committed blocks fetched from validators.

A node whose id is not in the validator set in effect (genesis and governance state) runs this
instead of the driver. Each round it asks the next validator in turn for the blocks above its
head (`Syncer.catch_up`: `Peer.FetchBlocks`, and under PBFT each block's commit certificate is
checked against the set in effect at its height, so no single validator is trusted), executes
and stores them through the committer, which answers waiting clients and subscribers as on a
validator. Between rounds it waits FOLLOW_POLL_S: near the head a block comes about every
second when idle, and a fetch that finds nothing costs one small call.

Its status stands in for an engine's: role `observer`, and as leader the proposer of the head
block (the leader or primary that was proposing last), where `Submit` forwards client txs —
unless that proposer is this node or no longer votes (a leader voted out proposed the blocks
up to its removal): then no leader is known until a voter's block arrives, and `Submit` says
"retry". Txs left in the mempool when this node stopped voting are handed to the leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from consensus.engine import EngineStatus
from node.epochs import Epochs
from node.proposer import ChainReader, PendingHandOff
from node.syncer import Syncer
from proto import types_pb2

log = logging.getLogger(__name__)

FOLLOW_POLL_S = 0.2
FOLLOW_FAILED_POLL_S = 0.5  # after a round in which no validator answered


class Follower:
    def __init__(
        self,
        node_id: str,
        syncer: Syncer,
        chain: ChainReader,
        epochs: Epochs,
        get_block: Callable[[int], types_pb2.CommittedBlock | None],
        hand_off: PendingHandOff,
    ) -> None:
        self.node_id = node_id
        self.syncer = syncer
        self.chain = chain
        self.epochs = epochs
        self.get_block = get_block
        self.hand_off = hand_off
        self._next = 0  # round-robin over the validators
        self._header: types_pb2.BlockHeader | None = None
        self._header_height = -1

    @property
    def status(self) -> EngineStatus:
        head = self.chain.head
        if self._header_height != head.height:
            block = self.get_block(head.height) if head.height else None
            self._header = block.block.header if block is not None else None
            self._header_height = head.height
        header = self._header
        proposer = header.proposer if header is not None else ""
        voting = proposer != self.node_id and self.epochs.sets.is_voter(proposer, head.height + 1)
        return EngineStatus(
            role="observer",
            round=header.round if header is not None else 0,
            leader=proposer if voting else None,
            commit_height=head.height,
        )

    def _peers(self) -> list[str]:
        """The validators voting on the next block, this node left out, next one first."""
        voters = [v for v in self.epochs.sets.ids_at(self.chain.head.height + 1)
                  if v != self.node_id]
        if not voters:
            return []
        start = self._next % len(voters)
        self._next += 1
        return voters[start:] + voters[:start]

    async def run(self, until: Callable[[], bool]) -> None:
        """Follow the chain until `until()` holds (checked after every round)."""
        log.info("following the chain as an observer from height %d", self.chain.head.height)
        while not until():
            answered = False
            for peer in self._peers():
                before = self.chain.head.height
                ok = await self.syncer.catch_up(peer)
                if self.chain.head.height > before:
                    log.debug("followed %s to height %d", peer, self.chain.head.height)
                if ok:
                    answered = True
                    break
                log.info("following %s failed at height %d; trying the next validator",
                         peer, self.chain.head.height)
                if until():
                    return
            self.hand_off.maybe_hand_off(self.status.leader)
            await asyncio.sleep(FOLLOW_POLL_S if answered else FOLLOW_FAILED_POLL_S)
