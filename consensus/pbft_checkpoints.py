"""PBFT checkpoints: this replica's announcements and the signed checkpoints it hears.

Every `checkpoint_interval_blocks` a validator of that height signs (height, block hash) and
broadcasts it, resending it until it is stable; 2f + 1 matching ones (a quorum of the set in
effect at that height, which alone may sign it) make the stable checkpoint that the engine
adopts (`PbftEngine.adopt_stable`: garbage collection and the watermarks).
"""

from __future__ import annotations

from consensus.engine import NodeId
from consensus.pbft_config import PbftConfig, Sign
from consensus.pbft_log import CheckpointVotes, as_votes
from consensus.pbft_membership import Membership
from consensus.pbft_messages import Checkpoint, CheckpointProof, checkpoint_statement


class Checkpoints:
    def __init__(self, node_id: NodeId, config: PbftConfig, sets: Membership, sign: Sign) -> None:
        self._node_id = node_id
        self._config = config
        self._sets = sets
        self._sign = sign
        self._votes = CheckpointVotes()
        self._own: Checkpoint | None = None

    def announce(self, height: int, block_hash: bytes) -> Checkpoint | None:
        """Our checkpoint for a just committed `height`, if it is a checkpoint height at which
        this replica is a validator."""
        if height % self._config.checkpoint_interval_blocks:
            return None
        if self._node_id not in self._sets.at(height).members:
            return None
        statement = checkpoint_statement(height, block_hash)
        self._own = Checkpoint(height, block_hash, self._sign(statement))
        return self._own

    def pending(self, stable_height: int) -> Checkpoint | None:
        """Our latest checkpoint while it is not stable yet (to resend)."""
        own = self._own
        return own if own is not None and own.height > stable_height else None

    def signed(self, sender: NodeId, msg: Checkpoint) -> bool:
        statement = checkpoint_statement(msg.height, msg.block_hash)
        return self._sets.at(msg.height).signed_by(sender, statement, msg.signature)

    def add(
        self, sender: NodeId, height: int, block_hash: bytes, signature: bytes
    ) -> CheckpointProof | None:
        """Record a verified checkpoint; the proof once a quorum of its height's set agrees."""
        quorum = self._sets.at(height)
        signers = self._votes.add(sender, height, block_hash, signature)
        # Only members of the set of `height` (the set may have changed since one was held).
        signers = {node: sig for node, sig in signers.items() if node in quorum.members}
        if len(signers) < quorum.size:
            return None
        return CheckpointProof(height, block_hash, as_votes(signers))

    def forget_below(self, height: int) -> None:
        self._votes.forget_below(height)
