"""The PBFT engine: a pure state machine that orders blocks among n = 3f + 1 validators, f of
which may lie.

Normal case (Castro and Liskov, on block digests, one height per sequence number): the primary
of view v (`validators[v % n]`) pre-prepares a block at height h on its own block at h - 1, up
to `pipeline_depth_blocks` heights above its commit height (`consensus.pbft_pipeline`); a
backup that finds it valid (injected `BlockValidator`) persists that it accepted it and
broadcasts a signed prepare, once the block's parent is committed here or prepared here in
this view; 2f + 1 matching prepares make a prepared certificate (persisted) and a signed
commit; 2f + 1 matching commits make a commit certificate and the block is decided. `Commit`
actions come out in height order, certificate attached, each block on the last committed one.

Checkpoints every K blocks carry the *block hash* (the engine never sees app hashes; a block's
header carries the app hash of a block below it, node/chain.py, so the hash chain commits to
the app state a little behind). 2f + 1 matching checkpoints make it stable: the log below is
garbage-collected and the watermarks move to (stable, stable + window].

View change: no commit and no new valid proposal for T ms (the node makes an empty block
every second when idle, so silence means the primary is faulty, slow or cut off) sends a
signed view change with the stable checkpoint and every prepared certificate above it (every
height in flight that prepared here: the P-set); T doubles with each view change that brings
no commit. f + 1 view changes for higher views pull a replica along. The new primary's
new-view carries 2f + 1 view changes; every replica derives the same re-proposals from them
(`select_new_view`: a chain of blocks from the checkpoint up), prepares them in the new view,
and the new primary proposes on the last of them. A replica that sees traffic of a view it
has not entered asks that view's primary for the new-view. The view, its timer and the view
changes collected belong to a `ViewChanger` (`consensus.pbft_view_change`) the engine owns; it
reaches the log (`consensus.pbft_replica.ReplicaLog`, the engine's base) only through the
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
from consensus.pbft_config import BlockInspector, PbftConfig, Sign, Verify
from consensus.pbft_log import (
    GENESIS_CHECKPOINT,
    NewViewPlan,
    Slot,
    add_vote,
    as_votes,
    persist,
    restore,
)
from consensus.pbft_membership import Membership, resettle
from consensus.pbft_messages import (
    PBFT_MESSAGE_TYPES,
    Checkpoint,
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
from consensus.pbft_pipeline import Parent, next_proposal, parent_state
from consensus.pbft_replica import ReplicaLog
from consensus.pbft_view_change import ViewChanger

logger = logging.getLogger(__name__)

PRIMARY = "primary"
BACKUP = "backup"
OBSERVER = "observer"  # not a validator of the next height


class PbftEngine(ReplicaLog):
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
        config = config or PbftConfig()
        sets = Membership(validators, restored, verify, inspect)
        durable = restore(restored)
        super().__init__(node_id, config, sets, sign, durable, commit_height, last_block_hash)
        self._validate = validate
        self._inspect = inspect
        self._sign = sign
        self._construction_height = commit_height
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
        # A replica restarted at a checkpoint height announces it again: a cluster restarted
        # with the chain at its high watermark had no checkpoint to move it (a window full of
        # pipelined heights, all committed, none proposable) and stood still for good.
        self._maybe_checkpoint(out)
        return out

    def tick(self, now_ms: int) -> list[Action]:
        self._now_ms = max(self._now_ms, now_ms)
        out: list[Action] = []
        self._views.tick(self._now_ms, out)
        if self._now_ms >= self._retransmit_ms:
            self._retransmit_ms = self._now_ms + self.config.retransmit_interval_ms
            self._retransmit(out)
        self._deliver_decided(out)  # (then the pending proposals, as after every message)
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
        offered = self._next_proposal() if is_primary else None
        role = PRIMARY if is_primary else BACKUP
        if self.node_id not in current.members:
            role = OBSERVER
        return EngineStatus(
            role=role,
            round=self._view,
            leader=primary if self._active else None,
            commit_height=self._commit_height,
            next_height=offered[0] if offered is not None else None,
            next_parent_hash=offered[1] if offered is not None else None,
            proposals_in_flight=self.config.pipeline_depth_blocks if is_primary else 0,
            extra={
                "phase": "normal" if self._active else "view-change",
                "stable_checkpoint": self._stable.height,
                "high_watermark": self._high_watermark,
                "slots": len(self._slots),
                "epoch": self._sets.epoch_index(self._commit_height + 1),
                "validators": current.n,
                "pipeline_depth": self.config.pipeline_depth_blocks,
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

    # --- the view changer's way in (the rest of `pbft_view_change.Replica` is the log's) -----

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

    def _next_proposal(self) -> tuple[int, bytes] | None:
        """(height, parent) the primary may pre-prepare next: the first height above the
        commit height it has not proposed at in this view, within the pipeline depth."""
        if self._lag_target() > self._commit_height:
            return None
        offered = next_proposal(
            self._slots, self._view, self._commit_height, self._last_hash, self._pipeline_top
        )
        if offered is None or not self._in_window(offered[0]):
            return None
        height = offered[0]
        if self._sets.at(height).primary(self._view) != self.node_id or not self._votes_at(height):
            return None  # across a change of the set, another replica proposes there
        return offered

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
        """Validate the primary's proposals in the pipeline, lowest first; prepare each once
        its parent is committed or prepared here in this view (`consensus.pbft_pipeline`)."""
        if not self._active:
            return
        for height in range(self._commit_height + 1, self._pipeline_top + 1):
            slot = self._slots.get(height)
            if slot is not None and slot.pending is not None:
                self._try_accept(slot, out)
        if self._deliverable():  # decided as soon as accepted (a set of one)
            self._deliver_decided(out)

    def _deliverable(self) -> bool:
        """Whether the next height is decided and its block is here."""
        slot = self._slots.get(self._commit_height + 1)
        decided = slot.decided if slot is not None else None
        return slot is not None and decided is not None and decided.block_hash in slot.payloads

    def _try_accept(self, slot: Slot, out: list[Action]) -> None:
        assert slot.pending is not None
        if not self._votes_at(slot.height):
            slot.pending = None  # an observer of this height: it only counts others' votes
            return
        view, block_hash = slot.pending
        if view != self._view:
            slot.pending = None
            return
        payload = slot.payloads.get(block_hash)
        identity = self._inspect(payload) if payload is not None else None
        if payload is None or identity is None:
            slot.pending = None
            return
        parent = parent_state(
            self._slots,
            self._view,
            slot.height,
            identity.parent_hash,
            self._commit_height,
            self._last_hash,
        )
        if parent is Parent.WRONG:
            slot.pending = None
            return
        if parent is Parent.UNKNOWN:
            return  # the parent's pre-prepare has not come (or not been accepted) yet
        if not self._validate(slot.height, identity.parent_hash, payload):
            # Not now: it may become valid (the parent is not executed yet, or its signatures are
            # still being checked off the node's event loop), so it is asked again on tick.
            return
        if parent is not Parent.READY:
            return  # valid, but its parent is not prepared yet: asked again when it is
        slot.pending = None
        self._accept(slot, block_hash, out)

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
        slot.accepted_ms = self._now_ms
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

    def _progress(self) -> None:
        self._views.progress()

    # --- retransmission ----------------------------------------------------------------------

    def _retransmit(self, out: list[Action]) -> None:
        checkpoint = self._checkpoints.pending(self._stable.height)
        if checkpoint is not None:
            out.append(Broadcast(checkpoint))
        if not self._active:
            self._views.retransmit(out)
            return
        # Every height in flight whose round has lasted an interval (a round that just began
        # is not resent: with several heights in flight that would double the traffic).
        recent_ms = self._now_ms - self.config.retransmit_interval_ms
        for height in range(self._commit_height + 1, self._pipeline_top + 1):
            slot = self._slots.get(height)
            if slot is None or slot.accepted_ms > recent_ms:
                continue
            self._sign_own_votes(slot, out)
            is_primary = self._sets.at(height).primary(self._view) == self.node_id
            out += [Broadcast(m) for m in slot.own_round(self.node_id, self._view, is_primary)]

    def _sign_own_votes(self, slot: Slot, out: list[Action]) -> None:
        """After a restart the slot's record says what this replica voted in this view (the
        block it accepted, the one it prepared) but its signatures were in memory: sign the
        same votes again (a repeat, no new vote), or no one would hear them again and a
        height prepared everywhere would wait for a view change to commit."""
        view = self._view
        if slot.accepted is None or slot.accepted[0] != view:
            return
        height, block_hash = slot.height, slot.accepted[1]
        if self.node_id not in slot.prepares.get(slot.accepted, {}):
            signature = self._sign(prepare_statement(view, height, block_hash))
            add_vote(slot.prepares, slot.accepted, self.node_id, signature)
            self._check_prepared(slot, out)
        prepared = slot.prepared
        if prepared is None or (prepared.view, prepared.block_hash) != slot.accepted:
            return
        mine = slot.commits.get(slot.accepted, {})
        if slot.commit_sent_view == view and self.node_id not in mine:
            signature = self._sign(commit_statement(view, height, block_hash))
            add_vote(slot.commits, slot.accepted, self.node_id, signature)
            slot.check_decided(self._sets.at(height).size)


__all__ = ["GENESIS_CHECKPOINT", "PbftEngine"]
