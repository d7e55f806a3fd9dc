"""The PBFT replica's log: its slots by height, the watermarks and pipeline bounds, stable
checkpoints and garbage collection, and when it falls behind (state transfer).

`ReplicaLog` is the base of `consensus.pbft.PbftEngine`: it holds what a replica has agreed or
is agreeing on, and the parts of the protocol that only read or trim that log; the engine adds
the normal case (pre-prepare, prepare, commit) and the view changes. It is also what the view
changer sees of the replica (`consensus.pbft_view_change.Replica`), except `enter_view`.
"""

from __future__ import annotations

import logging

from consensus.engine import Action, Broadcast, NodeId
from consensus.pbft_checkpoints import Checkpoints
from consensus.pbft_config import PbftConfig, Sign
from consensus.pbft_log import Record, Restored, Slot, persist, slot_key, stable_record
from consensus.pbft_membership import Membership
from consensus.pbft_messages import Checkpoint, CheckpointProof, PreparedProof
from consensus.pbft_sync import CatchUp

logger = logging.getLogger(__name__)


class ReplicaLog:
    """A replica's slots, stable checkpoint and commit height; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        config: PbftConfig,
        sets: Membership,
        sign: Sign,
        durable: Restored,
        commit_height: int,
        last_block_hash: bytes,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self._sets = sets
        self._stable = durable.stable
        self._commit_height = commit_height
        self._last_hash = last_block_hash
        self._slots = {h: Slot.restored(r) for h, r in durable.slots.items()}
        assert all(self._in_window(h) for h in self._slots), "restored slots outside the window"
        self._checkpoints = Checkpoints(node_id, config, sets, sign)
        self._catch_up = CatchUp(node_id, config)
        self._now_ms = 0

    # --- the replica as its view changer sees it (`pbft_view_change.Replica`) ----------------

    @property
    def commit_height(self) -> int:
        return self._commit_height

    @property
    def stable_checkpoint(self) -> CheckpointProof:
        return self._stable

    def prepared_proofs(self) -> tuple[PreparedProof, ...]:
        return tuple(
            slot.prepared
            for height, slot in sorted(self._slots.items())
            if slot.prepared is not None and height > self._stable.height
        )

    def catching_up(self) -> bool:
        return self._lag_target() > self._commit_height

    def voted_from(self, height: int) -> bool:
        # Slots below the stable checkpoint are gone, but nothing there is prepared again.
        return any(h >= height and s.accepted is not None for h, s in self._slots.items())

    def leave_view(self) -> None:
        for slot in self._slots.values():
            slot.pending = None

    # --- watermarks and the pipeline ---------------------------------------------------------

    @property
    def _high_watermark(self) -> int:
        return self._stable.height + self.config.watermark_window_blocks

    def _in_window(self, height: int) -> bool:
        return self._stable.height < height <= self._high_watermark

    def _slot(self, height: int) -> Slot:
        assert self._in_window(height), f"height {height} outside the watermarks"
        slot = self._slots.get(height)
        if slot is None:
            slot = self._slots[height] = Slot(height)
        return slot

    @property
    def _pipeline_top(self) -> int:
        """The highest height this replica proposes or votes at now (`consensus.pbft_pipeline`)."""
        return min(self._commit_height + self.config.pipeline_depth_blocks, self._high_watermark)

    def _votes_at(self, height: int) -> bool:
        """Whether this replica is a validator of `height` (votes, proposes, checkpoints)."""
        return self.node_id in self._sets.at(height).members

    def _note_ahead(self, sender: NodeId, height: int) -> None:
        """`sender` voted at `height`: an honest replica does so only once it committed
        `height - pipeline_depth_blocks` (`consensus.pbft_pipeline`)."""
        self._catch_up.note_committed(sender, height - self.config.pipeline_depth_blocks)

    def _note_ahead_beyond_window(
        self, sender: NodeId, height: int, statement: bytes, signature: bytes
    ) -> None:
        """A signed vote above our high watermark: we cannot use it, but f + 1 of them prove
        the cluster is ahead, so a restarted replica fetches blocks at once instead of waiting
        for the next stable checkpoint (up to a checkpoint interval of blocks away)."""
        if self._sets.at(height).signed_by(sender, statement, signature):
            self._note_ahead(sender, height)


    # --- checkpoints and garbage collection --------------------------------------------------

    def _maybe_checkpoint(self, out: list[Action]) -> None:
        """At a checkpoint height, announce it (and keep resending it until it is stable)."""
        height, block_hash = self._commit_height, self._last_hash
        if height <= self._stable.height:
            return
        checkpoint = self._checkpoints.announce(height, block_hash)
        if checkpoint is not None:
            out.append(Broadcast(checkpoint))
            self._add_checkpoint(self.node_id, checkpoint, out)

    def _on_checkpoint(self, sender: NodeId, msg: Checkpoint, out: list[Action]) -> None:
        if msg.height <= self._stable.height or not self._checkpoints.signed(sender, msg):
            return
        self._catch_up.note_committed(sender, msg.height)  # it committed the checkpoint
        self._add_checkpoint(sender, msg, out)

    def _add_checkpoint(self, sender: NodeId, msg: Checkpoint, out: list[Action]) -> None:
        proof = self._checkpoints.add(sender, msg.height, msg.block_hash, msg.signature)
        if proof is not None:
            self.adopt_stable(proof, out)

    def adopt_stable(self, proof: CheckpointProof, out: list[Action]) -> None:
        """A stable checkpoint (2f + 1 signed): garbage-collect the log below it."""
        if proof.height <= self._stable.height:
            return
        mine = self._slots.get(proof.height)
        if mine is not None and mine.decided is not None and proof.height <= self._commit_height:
            assert mine.decided.block_hash == proof.block_hash, (
                f"stable checkpoint {proof.height} disagrees with this replica's chain"
            )
        logger.info("node=%s stable checkpoint %d", self.node_id, proof.height)
        self._stable = proof
        records: list[Record] = [stable_record(proof)]
        for height in [h for h in self._slots if h <= proof.height]:
            if self._slots[height].accepted is not None:
                records.append((slot_key(height), None))
            del self._slots[height]
        self._checkpoints.forget_below(proof.height)
        persist(out, records)

    # --- state transfer ----------------------------------------------------------------------

    def _lag_target(self) -> int:
        """The highest height known decided by the cluster (0 if none above ours)."""
        known = self._stable.height
        # Decided next heights whose blocks are not here; and a height decided further up says
        # f + 1 honest voters committed `depth` below it (it may be decided only because the
        # pipeline ran ahead: not deliverable here until the heights below it are decided).
        height = self._commit_height + 1
        while (slot := self._slots.get(height)) is not None and slot.decided is not None:
            known = max(known, height)
            height += 1
        depth = self.config.pipeline_depth_blocks
        for height, slot in self._slots.items():
            if slot.decided is not None:
                known = max(known, height - depth)
        # f + 1 votes above us: f of the set ordering our next height (whose liars vote there).
        return self._catch_up.target(known, self._sets.at(self._commit_height + 1).f)

    def _maybe_sync(self, out: list[Action]) -> None:
        next_slot = self._slots.get(self._commit_height + 1)
        deliverable = (
            next_slot is not None
            and next_slot.decided is not None
            and next_slot.decided.block_hash in next_slot.payloads
        )
        peers = [
            node
            for node in self._sets.at(self._commit_height + 1).validators
            if node != self.node_id
        ]
        target = self._lag_target()
        height = self._commit_height + 1
        if self._votes_at(height) and not self._votes_at(height + 1):
            # This replica's last height as a validator is the next one: the others drop their
            # links to it (and its messages) once they committed it, so the votes that would
            # decide it here may never come and no evidence of it would either. Fetch it as
            # though the cluster were known to be there; until someone has it, the request
            # brings nothing and is retried. A validator voted out stayed a block short of
            # the change for ever, reporting itself a validator.
            target = max(target, height)
        request = self._catch_up.request(
            self._now_ms, self._commit_height, target, deliverable, peers
        )
        if request is not None:
            out.append(request)
