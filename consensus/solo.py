"""The solo engine: one validator that commits its own proposals at once.

It exists so the whole path (admission, block building, execution, storage, receipts) runs
before Raft and PBFT, and as the fastest baseline for benchmarks. It persists nothing: the
block store is its log.
"""

from __future__ import annotations

from typing import Any

from consensus.engine import Action, BlockProposal, Commit, EngineStatus, NodeId


class SoloEngine:
    def __init__(self, node_id: NodeId, commit_height: int, last_hash: bytes) -> None:
        self.node_id = node_id
        self._height = commit_height
        self._last_hash = last_hash

    def start(self, now_ms: int) -> list[Action]:
        return []

    def tick(self, now_ms: int) -> list[Action]:
        return []

    def receive(self, sender: NodeId, msg: Any) -> list[Action]:
        return []

    def propose(self, block: BlockProposal) -> list[Action]:
        if block.height != self._height + 1 or block.parent_hash != self._last_hash:
            return []
        self._height = block.height
        self._last_hash = block.block_hash
        return [Commit(block.height, block.block_hash, block.payload)]

    def synced(self, height: int, block_hash: bytes) -> list[Action]:
        if height > self._height:
            self._height, self._last_hash = height, block_hash
        return []

    def reconfigure(self, effective_height: int, validators: tuple[NodeId, ...]) -> list[Action]:
        # One validator is the whole design (it commits its own proposals alone): a second
        # would need a real consensus engine, so the set is fixed. Restating it is harmless.
        if tuple(validators) == (self.node_id,):
            return []
        raise ValueError(f"solo's validator set is fixed at [{self.node_id}]: not {validators!r}")

    @property
    def status(self) -> EngineStatus:
        return EngineStatus(
            role="solo",
            round=0,
            leader=self.node_id,
            commit_height=self._height,
            next_height=self._height + 1,
            next_parent_hash=self._last_hash,
            proposals_in_flight=1,
        )
