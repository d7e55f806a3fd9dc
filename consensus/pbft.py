"""The PBFT engine: a pure state machine that orders blocks among n = 3f + 1 validators, f of
which may lie.

Normal case (Castro and Liskov, on block digests, one height per sequence number): the primary
of view v (`validators[v % n]`) pre-prepares a block at height h once h - 1 is committed; a
backup that finds it valid (injected `BlockValidator`, after its own h - 1 committed) persists
that it accepted it and broadcasts a signed prepare; 2f + 1 matching prepares make a prepared
certificate (persisted) and a signed commit; 2f + 1 matching commits make a commit certificate
and the block is decided. `Commit` actions come out in height order, certificate attached.

Checkpoints every K blocks carry the *block hash* (the engine never sees app hashes; block
h + 1's header carries app_hash(h), so the hash chain commits to the app state one block
behind). 2f + 1 matching checkpoints make it stable: the log below is garbage-collected and the
watermarks move to (stable, stable + window].

View change: no commit and no new valid proposal for T ms (the node makes an empty block
every second when idle, so silence means the primary is faulty, slow or cut off) sends a
signed view change with the stable checkpoint and every prepared certificate above it; T
doubles with each view change that brings no commit. f + 1 view changes for higher views
pull a replica along. The new primary's new-view carries 2f + 1 view changes; every replica
derives the same re-proposals from them (`select_new_view`) and prepares them in the new
view. A replica that sees traffic of a view it has not entered asks that view's primary for
the new-view. The view, its timer and the view changes collected belong to a `ViewChanger`
(`consensus.pbft_view_change`) the engine owns; it reaches the log only through the engine's
`Replica` methods.

State transfer: evidence that the cluster is ahead (a commit certificate or stable checkpoint
above our height, or f + 1 replicas voting above it) held for `sync_delay_ms` makes a
`RequestSync` (`consensus.pbft_sync`); `verify_certificate` lets the driver check fetched
blocks' certificates. A replica voted out asks so for its last height as a validator when it
has not committed it in that time, without evidence: the others stop sending to it once they
committed that height, so the votes (and the evidence) may never reach it.

Validator sets (`consensus.pbft_membership`): every rule above is per height. The set that
orders height h (its members, f, quorum, the primary of a view) is the one in effect at h;
`reconfigure` adds a set for heights from its effective height on. A replica votes, proposes
and checkpoints at h only as a member of h's set, and counts only votes signed by members of
it; outside every set still in play it follows the chain like an observer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from consensus.codec import MESSAGES, CodecError
from consensus.engine import (
    Action,
    BlockProposal,
    BlockValidator,
    Broadcast,
    Commit,
    EngineStatus,
    NodeId,
    fills_offered_slot,
)
from consensus.pbft_checkpoints import Checkpoints
from consensus.pbft_config import BlockInspector, PbftConfig, Sign, Verify
from consensus.pbft_log import (
    GENESIS_CHECKPOINT,
    NewViewPlan,
    Record,
    Slot,
    add_vote,
    as_votes,
    persist,
    restore,
    slot_key,
    stable_record,
)
from consensus.pbft_membership import Membership, resettle
from consensus.pbft_messages import (
    PBFT_MESSAGE_TYPES,
    Checkpoint,
    CheckpointProof,
    CommitCertificate,
    CommitVote,
    NewView,
    NewViewRequest,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    commit_statement,
    is_well_formed,
    prepare_statement,
)
from consensus.pbft_sync import CatchUp
from consensus.pbft_view_change import ViewChanger

logger = logging.getLogger(__name__)

PRIMARY = "primary"
BACKUP = "backup"
OBSERVER = "observer"  # not a validator of the next height


class PbftEngine:
    """One validator's PBFT state machine; see the module docstring for the contract."""

    def __init__(
        self,
        node_id: NodeId,
        validators: Sequence[NodeId],
        restored: Mapping[str, bytes],
        *,
        validate: BlockValidator,
        inspect: BlockInspector,
        sign: Sign,
        verify: Verify,
        config: PbftConfig | None = None,
        commit_height: int = 0,
        last_block_hash: bytes = bytes(32),
    ) -> None:
        # `validators` is the set the chain started with (heights from 1); later sets come back
        # from this engine's records or from `reconfigure`. This node need not be in it: a
        # replica added later runs from the start as an observer of the heights before its own.
        assert len(set(validators)) == len(validators), "validators must be distinct"
        assert commit_height >= 0
        self.node_id = node_id
        self.config = config or PbftConfig()
        self._validate = validate
        self._inspect = inspect
        self._sign = sign
        self._sets = Membership(validators, restored, verify, inspect)
        self._construction_height = commit_height
        durable = restore(restored)
        self._stable = durable.stable
        self._commit_height = commit_height
        self._last_hash = last_block_hash
        self._slots = {h: Slot.restored(r) for h, r in durable.slots.items()}
        assert all(self._in_window(h) for h in self._slots), "restored slots outside the window"
        self._checkpoints = Checkpoints(node_id, self.config, self._sets, sign)
        self._catch_up = CatchUp(node_id, self.config)
        self._now_ms = 0
        self._retransmit_ms = 0
        self._views = ViewChanger(
            node_id, self.config, self._sets, sign, self, durable.view, durable.new_view
        )

    # The view and whether it is active are the view changer's; the normal case only reads them.
    @property
    def _view(self) -> int:
        return self._views.view

    @property
    def _active(self) -> bool:
        return self._views.active

    # --- Engine interface --------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        self._now_ms = now_ms
        self._retransmit_ms = now_ms + self.config.retransmit_interval_ms
        out: list[Action] = []
        logger.info(
            "node=%s pbft start view=%d active=%s commit_height=%d stable=%d",
            self.node_id,
            self._view,
            self._active,
            self._commit_height,
            self._stable.height,
        )
        self._views.start(now_ms, out)
        return out

    def tick(self, now_ms: int) -> list[Action]:
        self._now_ms = max(self._now_ms, now_ms)
        out: list[Action] = []
        self._views.tick(self._now_ms, out)
        if self._now_ms >= self._retransmit_ms:
            self._retransmit_ms = self._now_ms + self.config.retransmit_interval_ms
            self._retransmit(out)
        self._retry_pending(out)
        self._maybe_sync(out)
        return out

    def receive(self, sender: NodeId, msg: Any) -> list[Action]:
        # Which set a message must come from depends on its height (checked where it is
        # handled); a sender in no set at all is dropped here.
        known = sender != self.node_id and self._sets.known(sender)
        if not known or not isinstance(msg, PBFT_MESSAGE_TYPES):
            logger.debug("node=%s drops %s from %s", self.node_id, type(msg).__name__, sender)
            return []
        if not is_well_formed(msg, self._sets.votes_max, self.config.watermark_window_blocks):
            logger.debug("node=%s drops malformed %s from %s", self.node_id, msg, sender)
            return []
        out: list[Action] = []
        match msg:
            case PrePrepare():
                self._on_pre_prepare(sender, msg, out)
            case Prepare():
                self._on_prepare(sender, msg, out)
            case CommitVote():
                self._on_commit(sender, msg, out)
            case Checkpoint():
                self._on_checkpoint(sender, msg, out)
            case ViewChange():
                self._views.on_view_change(sender, msg, out)
            case NewView():
                self._views.on_new_view(sender, msg, out)
            case NewViewRequest():
                self._views.on_new_view_request(sender, msg, out)
        self._deliver_decided(out)
        self._maybe_sync(out)
        return out

    def propose(self, block: BlockProposal) -> list[Action]:
        if not fills_offered_slot(self.status, block):
            logger.debug("node=%s refuses proposal at height %d", self.node_id, block.height)
            return []
        identity = self._inspect(block.payload)
        assert identity is not None and identity.block_hash == block.block_hash, (
            "the driver proposed a block whose identity does not match"
        )
        out: list[Action] = []
        slot = self._slot(block.height)
        slot.add_payload(block.block_hash, block.payload, trusted=True)
        announce = PrePrepare(self._view, block.height, block.block_hash, block.payload)
        self._accept(slot, block.block_hash, out, announce)
        self._deliver_decided(out)
        return out

    def synced(self, height: int, block_hash: bytes) -> list[Action]:
        out: list[Action] = []
        if height > self._commit_height:
            logger.info("node=%s synced to height %d", self.node_id, height)
            self._commit_height = height
            self._last_hash = block_hash
            self._catch_up.synced()
            self._progress()
            self._maybe_checkpoint(out)
        self._deliver_decided(out)
        self._retry_pending(out)
        self._maybe_sync(out)
        return out

    def reconfigure(self, effective_height: int, validators: tuple[NodeId, ...]) -> list[Action]:
        """From height `effective_height` on, `validators` are the voting validators (a known
        change again: nothing; see `Membership.add` for what is refused and why)."""
        if not self._sets.add(effective_height, validators):
            return []
        out: list[Action] = []
        persist(out, [self._sets.record()])
        logger.info(
            "node=%s validators from height %d: %s (quorum %d)",
            self.node_id,
            effective_height,
            ",".join(validators),
            self._sets.at(effective_height).size,
        )
        undone = resettle(self._slots, self._sets, effective_height)
        if self._construction_height < effective_height <= self._commit_height:
            # At or below the height we were built at, a change was in effect before this
            # run. Above it, it comes late: the node has VALIDATOR_CHANGE_DELAY_BLOCKS of room
            # to tell us before the heights it governs commit, so this should never happen.
            logger.error(
                "node=%s told of the set from %d at commit height %d; not carried by it: %s",
                self.node_id,
                effective_height,
                self._commit_height,
                [h for h in undone if h <= self._commit_height],
            )
        self._deliver_decided(out)
        self._maybe_sync(out)
        return out

    @property
    def status(self) -> EngineStatus:
        current = self._sets.at(self._commit_height + 1)
        primary = current.primary(self._view)
        is_primary = self._active and primary == self.node_id
        next_height: int | None = None
        if is_primary and self._may_propose():
            next_height = self._commit_height + 1
        role = PRIMARY if is_primary else BACKUP
        if self.node_id not in current.members:
            role = OBSERVER
        return EngineStatus(
            role=role,
            round=self._view,
            leader=primary if self._active else None,
            commit_height=self._commit_height,
            next_height=next_height,
            next_parent_hash=self._last_hash if next_height is not None else None,
            proposals_in_flight=1 if is_primary else 0,
            extra={
                "phase": "normal" if self._active else "view-change",
                "stable_checkpoint": self._stable.height,
                "high_watermark": self._high_watermark,
                "slots": len(self._slots),
                "epoch": self._sets.epoch_index(self._commit_height + 1),
                "validators": current.n,
            },
        )

    def verify_certificate(self, height: int, block_hash: bytes, certificate: bytes) -> bool:
        """Is `certificate` a commit certificate for (`height`, `block_hash`) signed by 2f + 1
        validators of the set in effect at `height`? (For the driver, on blocks fetched by sync
        from a peer it need not trust.)"""
        try:
            cert = MESSAGES.decode(certificate, CommitCertificate)
        except CodecError:
            return False
        return (
            cert.height == height
            and cert.block_hash == block_hash
            and self._sets.at(height).commit_certificate_ok(cert)
        )

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

    def enter_view(self, plan: NewViewPlan, out: list[Action]) -> None:
        """Prepare the new view's re-proposals (its primary's and every backup's plan alike);
        votes of earlier views can no longer make a certificate here."""
        view = self._view
        self.adopt_stable(plan.checkpoint, out)
        for slot in self._slots.values():
            slot.pending = None
            for key in [k for k in slot.prepares if k[0] < view]:
                del slot.prepares[key]
        for proof in plan.reproposals:
            if not self._in_window(proof.height):
                continue
            slot = self._slot(proof.height)
            if slot.decided is not None and proof.height <= self._commit_height:
                assert slot.decided.block_hash == proof.block_hash, (
                    f"new view {view} re-proposes another block at committed {proof.height}"
                )
            slot.add_payload(proof.block_hash, proof.payload, trusted=True)
            self._accept(slot, proof.block_hash, out)
        self._deliver_decided(out)

    # --- normal case -------------------------------------------------------------------------

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

    def _may_propose(self) -> bool:
        height = self._commit_height + 1
        if not self._in_window(height) or self._lag_target() > self._commit_height:
            return False
        slot = self._slots.get(height)
        return slot is None or slot.accepted is None or slot.accepted[0] < self._view

    def _note_ahead(self, sender: NodeId, height: int) -> None:
        """An honest replica votes at `height` only once it committed `height - 1`."""
        self._catch_up.note_ahead(sender, height)

    def _votes_at(self, height: int) -> bool:
        """Whether this replica is a validator of `height` (votes, proposes, checkpoints)."""
        return self.node_id in self._sets.at(height).members

    def _on_pre_prepare(self, sender: NodeId, msg: PrePrepare, out: list[Action]) -> None:
        if sender != self._sets.at(msg.height).primary(msg.view) or not self._in_window(msg.height):
            return
        self._note_ahead(sender, msg.height)
        slot = self._slot(msg.height)
        if msg.block_hash not in slot.payloads:
            identity = self._inspect(msg.payload)
            if identity is None or identity.block_hash != msg.block_hash:
                logger.info("node=%s: %s pre-prepared a mislabelled block", self.node_id, sender)
                return
            if identity.height != msg.height:
                return
            slot.add_payload(msg.block_hash, msg.payload, trusted=msg.view == self._view)
        if msg.view != self._view:
            if msg.view > self._view:
                self._views.ask_new_view(msg.view, out)
            return
        if not self._active:
            if msg.view == self._view:
                self._views.ask_new_view(msg.view, out)
            return
        if slot.accepted is not None and slot.accepted[0] == self._view:
            if slot.accepted[1] != msg.block_hash:
                logger.info(
                    "node=%s: primary %s equivocates at %d", self.node_id, sender, msg.height
                )
            return
        if msg.height <= self._commit_height:
            # Already decided here; vote for it again if it is the same block (others may lag).
            if slot.decided is not None and slot.decided.block_hash == msg.block_hash:
                self._accept(slot, msg.block_hash, out)
            return
        slot.pending = (msg.view, msg.block_hash)
        self._retry_pending(out)

    def _retry_pending(self, out: list[Action]) -> None:
        """Validate the primary's proposal at the next height once its parent is committed."""
        slot = self._slots.get(self._commit_height + 1)
        if slot is None or slot.pending is None or not self._active:
            return
        if not self._votes_at(slot.height):
            slot.pending = None  # an observer of this height: it only counts others' votes
            return
        view, block_hash = slot.pending
        if view != self._view:
            slot.pending = None
            return
        payload = slot.payloads.get(block_hash)
        identity = self._inspect(payload) if payload is not None else None
        if payload is None or identity is None or identity.parent_hash != self._last_hash:
            slot.pending = None
            return
        if not self._validate(slot.height, self._last_hash, payload):
            # Not now: it may become valid (the parent is not executed yet, or its signatures are
            # still being checked off the node's event loop), so it is asked again on tick.
            return
        slot.pending = None
        self._accept(slot, block_hash, out)
        self._deliver_decided(out)

    def _accept(
        self,
        slot: Slot,
        block_hash: bytes,
        out: list[Action],
        announce: PrePrepare | None = None,
    ) -> None:
        """Prepare `block_hash` at this slot in the current view, persisted before the vote
        (and before the primary's `announce`ment, so a restart never proposes twice). Not at a
        height whose set this replica is not in (removed, or not added yet)."""
        if not self._votes_at(slot.height):
            return
        assert (
            slot.accepted is None
            or slot.accepted[0] < self._view
            or (slot.accepted == (self._view, block_hash))
        ), "one block per height and view"
        slot.accepted = (self._view, block_hash)
        # The primary is alive and proposing valid blocks: a slow round (big blocks on a busy
        # machine) is not a reason to replace it; a round that stalls still times out.
        self._views.restart_timer()
        persist(out, [slot.record()])
        if announce is not None:
            out.append(Broadcast(announce))
        signature = self._sign(prepare_statement(self._view, slot.height, block_hash))
        out.append(Broadcast(Prepare(self._view, slot.height, block_hash, signature)))
        add_vote(slot.prepares, (self._view, block_hash), self.node_id, signature)
        self._check_prepared(slot, out)

    def _note_ahead_beyond_window(
        self, sender: NodeId, height: int, statement: bytes, signature: bytes
    ) -> None:
        """A signed vote above our high watermark: we cannot use it, but f + 1 of them prove
        the cluster is ahead, so a restarted replica fetches blocks at once instead of waiting
        for the next stable checkpoint (up to a checkpoint interval of blocks away)."""
        if self._sets.at(height).signed_by(sender, statement, signature):
            self._note_ahead(sender, height)

    def _on_prepare(self, sender: NodeId, msg: Prepare, out: list[Action]) -> None:
        if msg.height > self._high_watermark:
            statement = prepare_statement(msg.view, msg.height, msg.block_hash)
            self._note_ahead_beyond_window(sender, msg.height, statement, msg.signature)
            return
        if not self._in_window(msg.height) or msg.view < self._view:
            return
        statement = prepare_statement(msg.view, msg.height, msg.block_hash)
        if not self._sets.at(msg.height).signed_by(sender, statement, msg.signature):
            return
        self._note_ahead(sender, msg.height)
        slot = self._slot(msg.height)
        add_vote(slot.prepares, (msg.view, msg.block_hash), sender, msg.signature)
        if msg.view > self._view or (msg.view == self._view and not self._active):
            self._views.ask_new_view(msg.view, out)
            return
        self._check_prepared(slot, out)

    def _check_prepared(self, slot: Slot, out: list[Action]) -> None:
        if not self._active or slot.accepted is None or slot.accepted[0] != self._view:
            return
        if slot.commit_sent_view >= self._view:
            return
        votes = slot.prepares.get(slot.accepted, {})
        payload = slot.payloads.get(slot.accepted[1])
        quorum = self._sets.at(slot.height)
        if len(votes) < quorum.size or payload is None:
            return
        view, block_hash = slot.accepted
        slot.prepared = PreparedProof(view, slot.height, block_hash, payload, as_votes(votes))
        slot.commit_sent_view = view
        persist(out, [slot.record()])
        signature = self._sign(commit_statement(view, slot.height, block_hash))
        out.append(Broadcast(CommitVote(view, slot.height, block_hash, signature)))
        add_vote(slot.commits, (view, block_hash), self.node_id, signature)
        slot.check_decided(quorum.size)

    def _on_commit(self, sender: NodeId, msg: CommitVote, out: list[Action]) -> None:
        if msg.height > self._high_watermark:
            statement = commit_statement(msg.view, msg.height, msg.block_hash)
            self._note_ahead_beyond_window(sender, msg.height, statement, msg.signature)
            return
        if not self._in_window(msg.height) or msg.height <= self._commit_height:
            return
        statement = commit_statement(msg.view, msg.height, msg.block_hash)
        quorum = self._sets.at(msg.height)
        if not quorum.signed_by(sender, statement, msg.signature):
            return
        self._note_ahead(sender, msg.height)
        slot = self._slot(msg.height)
        add_vote(slot.commits, (msg.view, msg.block_hash), sender, msg.signature)
        slot.check_decided(quorum.size)

    def _deliver_decided(self, out: list[Action]) -> None:
        """Emit `Commit` for each decided height in order while the block is at hand."""
        while True:
            height = self._commit_height + 1
            slot = self._slots.get(height)
            if slot is None or slot.decided is None:
                break
            block_hash = slot.decided.block_hash
            payload = slot.payloads.get(block_hash)
            if payload is None:
                break  # decided elsewhere, block not seen here: state transfer fetches it
            identity = self._inspect(payload)
            assert identity is not None and identity.parent_hash == self._last_hash, (
                f"decided block {height} does not extend this replica's chain"
            )
            certificate = MESSAGES.encode(slot.decided)
            out.append(Commit(height, block_hash, payload, certificate))
            assert height == self._commit_height + 1, "commits are contiguous"
            self._commit_height = height
            self._last_hash = block_hash
            slot.pending = None
            self._catch_up.progressed()
            self._progress()
            self._maybe_checkpoint(out)
        self._retry_pending(out)

    def _maybe_checkpoint(self, out: list[Action]) -> None:
        """At a checkpoint height, announce it (and keep resending it until it is stable)."""
        height, block_hash = self._commit_height, self._last_hash
        if height <= self._stable.height:
            return
        checkpoint = self._checkpoints.announce(height, block_hash)
        if checkpoint is not None:
            out.append(Broadcast(checkpoint))
            self._add_checkpoint(self.node_id, checkpoint, out)

    def _progress(self) -> None:
        self._views.progress()

    # --- checkpoints and garbage collection --------------------------------------------------

    def _on_checkpoint(self, sender: NodeId, msg: Checkpoint, out: list[Action]) -> None:
        if msg.height <= self._stable.height or not self._checkpoints.signed(sender, msg):
            return
        self._note_ahead(sender, msg.height + 1)
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

    # --- retransmission and state transfer ---------------------------------------------------

    def _retransmit(self, out: list[Action]) -> None:
        checkpoint = self._checkpoints.pending(self._stable.height)
        if checkpoint is not None:
            out.append(Broadcast(checkpoint))
        if not self._active:
            self._views.retransmit(out)
            return
        slot = self._slots.get(self._commit_height + 1)
        if slot is not None:
            is_primary = self._sets.at(slot.height).primary(self._view) == self.node_id
            out += [Broadcast(m) for m in slot.own_round(self.node_id, self._view, is_primary)]

    def _lag_target(self) -> int:
        """The highest height known decided by the cluster (0 if none above ours)."""
        known = self._stable.height
        for height, slot in self._slots.items():
            if slot.decided is not None:
                known = max(known, height)
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


__all__ = ["GENESIS_CHECKPOINT", "PbftEngine"]
