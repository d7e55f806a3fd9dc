"""PBFT view changes: leaving a view, view-change messages, the new-view and entering it.

A mixin of `consensus.pbft.PbftEngine` (kept apart so each module stays readable): it reads and
writes the engine's state declared below, and calls the few engine methods stubbed at the end.
See `consensus.pbft` for the protocol; the rules here are: a replica whose timer fires leaves
its view; in a view change it moves on only with 2f + 1 view changes for its view or to the
lowest higher view someone is in; f + 1 view changes for higher views pull it along; the new
primary's new-view (2f + 1 signed view changes) is self-certifying, so anyone may relay it.
"""

from __future__ import annotations

import logging

from consensus.engine import Action, Broadcast, NodeId, Persist, Send
from consensus.pbft_config import PbftConfig, Sign
from consensus.pbft_log import (
    Quorum,
    Record,
    Slot,
    new_view_record,
    select_new_view,
    view_record,
)
from consensus.pbft_messages import (
    CheckpointProof,
    NewView,
    NewViewRequest,
    PrePrepare,
    ViewChange,
    view_change_statement,
)

logger = logging.getLogger(__name__)

TIMEOUT_DOUBLINGS_MAX = 16


class ViewChanges:
    """The view-change half of the PBFT engine (a mixin; see the module docstring)."""

    node_id: NodeId
    config: PbftConfig
    _q: Quorum
    _sign: Sign
    _view: int
    _active: bool
    _stable: CheckpointProof
    _new_view: NewView | None
    _commit_height: int
    _slots: dict[int, Slot]
    _view_changes: dict[int, dict[NodeId, ViewChange]]
    _now_ms: int
    _timeout_doublings: int
    _deadline_ms: int
    _asked_new_view_ms: dict[int, int]

    def _timeout_ms(self) -> int:
        timeout = self.config.view_change_timeout_ms << min(
            self._timeout_doublings, TIMEOUT_DOUBLINGS_MAX
        )
        return min(timeout, self.config.view_change_timeout_max_ms)

    def _reset_deadline(self) -> None:
        self._deadline_ms = self._now_ms + self._timeout_ms()

    def _on_timeout(self, out: list[Action]) -> None:
        """No commit in time: leave the view. In a view change, move on only with 2f + 1 view
        changes for this view (the new primary had its chance) or, lacking them, to the lowest
        higher view someone is in: replicas whose views drifted apart (partitions, restarts,
        a liar feeding only some) must meet rather than climb side by side for ever."""
        if self._active and self._lag_target() > self._commit_height:
            # The cluster commits without us: this replica is catching up (restarted, or cut
            # off for a while), which says nothing about the primary. A view change here made
            # a replica restarted after 5 minutes leave the view the others were working in.
            self._reset_deadline()
            return
        if self._active:
            self._start_view_change(self._view + 1, out)
            return
        if len(self._view_changes.get(self._view, {})) >= self._q.size:
            self._start_view_change(self._view + 1, out)
            return
        higher = [
            vc.view
            for held in self._view_changes.values()
            for vc in held.values()
            if vc.view > self._view
        ]
        if higher:
            self._start_view_change(min(higher), out)
        else:
            self._reset_deadline()

    def _start_view_change(self, view: int, out: list[Action]) -> None:
        assert view > self._view or (view == self._view and self._active), "views only go up"
        logger.info(
            "node=%s view change %d -> %d at height %d",
            self.node_id,
            self._view,
            view,
            self._commit_height,
        )
        self._view = view
        self._active = False
        self._timeout_doublings += 1
        self._reset_deadline()
        self._persist(out, [view_record(view, False)])
        for slot in self._slots.values():
            slot.pending = None
        self._send_view_change(out)

    def _own_view_change(self) -> ViewChange:
        prepared = tuple(
            slot.prepared
            for height, slot in sorted(self._slots.items())
            if slot.prepared is not None and height > self._stable.height
        )
        unsigned = ViewChange(self._view, self._stable, prepared, self.node_id, b"")
        return ViewChange(
            unsigned.view,
            unsigned.checkpoint,
            unsigned.prepared,
            unsigned.node,
            self._sign(view_change_statement(unsigned)),
        )

    def _send_view_change(self, out: list[Action]) -> None:
        msg = self._own_view_change()
        self._view_changes.setdefault(self._view, {})[self.node_id] = msg
        out.append(Broadcast(msg))
        self._maybe_send_new_view(out)

    def _on_view_change(self, sender: NodeId, msg: ViewChange, out: list[Action]) -> None:
        if msg.node != sender:
            return
        if msg.view < self._view or (msg.view == self._view and self._active):
            # A straggler: hand it the new-view of our view (new-views are self-certifying).
            if self._new_view is not None and self._new_view.view == self._view and self._active:
                out.append(Send(sender, self._new_view))
            return
        if self._view_changes.get(msg.view, {}).get(sender) == msg:
            return  # a retransmission of one we hold
        if not self._q.view_change_ok(msg, self.config.watermark_window_blocks):
            logger.info("node=%s drops an invalid view change from %s", self.node_id, sender)
            return
        for view in [v for v in self._view_changes if v < self._view]:
            del self._view_changes[view]
        for held in self._view_changes.values():  # one view change per sender: its latest
            if sender in held and held[sender].view < msg.view:
                del held[sender]
        self._view_changes.setdefault(msg.view, {})[sender] = msg
        self._stable_from(msg.checkpoint, out)
        # f + 1 replicas want a higher view: at least one is honest, so join the lowest of them.
        higher = sorted(
            vc.view
            for held in self._view_changes.values()
            for vc in held.values()
            if vc.view > self._view
        )
        if len(higher) >= self._q.f + 1:
            self._start_view_change(higher[-(self._q.f + 1)], out)
        self._maybe_send_new_view(out)

    def _stable_from(self, proof: CheckpointProof, out: list[Action]) -> None:
        """A verified stable checkpoint learnt from a view change (we may be behind it)."""
        if proof.height > self._stable.height:
            self._adopt_stable(proof, out)

    def _maybe_send_new_view(self, out: list[Action]) -> None:
        if self._active or self._q.primary(self._view) != self.node_id:
            return
        held = self._view_changes.get(self._view, {})
        if len(held) < self._q.size:
            return
        chosen = tuple(held[node] for node in sorted(held)[: self._q.size])
        if self.node_id not in {vc.node for vc in chosen}:
            chosen = (held[self.node_id], *chosen[: self._q.size - 1])
        msg = NewView(self._view, chosen)
        self._persist(out, [new_view_record(msg)])
        out.append(Broadcast(msg))
        self._install_new_view(msg, out)

    def _on_new_view(self, sender: NodeId, msg: NewView, out: list[Action]) -> None:
        # Any replica may relay a new-view: its view changes are signed and the plan follows
        # from them deterministically. (Two different valid new-views for one view are no worse
        # than an equivocating primary: at most one block per height gathers 2f + 1 prepares.)
        if msg.view < self._view or (msg.view == self._view and self._active):
            return
        if not self._q.new_view_ok(msg, self.config.watermark_window_blocks):
            logger.info("node=%s drops an invalid new-view from %s", self.node_id, sender)
            return
        self._persist(out, [new_view_record(msg)])
        self._install_new_view(msg, out)

    def _install_new_view(self, msg: NewView, out: list[Action]) -> None:
        plan = select_new_view(msg.view_changes)
        logger.info(
            "node=%s enters view %d (primary %s) re-proposing %d blocks above %d",
            self.node_id,
            msg.view,
            self._q.primary(msg.view),
            len(plan.reproposals),
            plan.checkpoint.height,
        )
        self._view = msg.view
        self._active = True
        self._new_view = msg
        self._reset_deadline()
        self._persist(out, [view_record(msg.view, True)])
        for view in [v for v in self._view_changes if v <= msg.view]:
            del self._view_changes[view]
        self._stable_from(plan.checkpoint, out)
        for slot in self._slots.values():
            slot.pending = None
            for key in [k for k in slot.prepares if k[0] < msg.view]:
                del slot.prepares[key]
        for proof in plan.reproposals:
            if not self._in_window(proof.height):
                continue
            slot = self._slot(proof.height)
            if slot.decided is not None and proof.height <= self._commit_height:
                assert slot.decided.block_hash == proof.block_hash, (
                    f"new view {msg.view} re-proposes another block at committed {proof.height}"
                )
            slot.add_payload(proof.block_hash, proof.payload, trusted=True)
            self._accept(slot, proof.block_hash, out)
        self._deliver_decided(out)

    def _ask_new_view(self, view: int, out: list[Action]) -> None:
        if view == 0:
            return
        asked = self._asked_new_view_ms.get(view)
        if asked is not None and self._now_ms - asked < self.config.retransmit_interval_ms:
            return
        self._asked_new_view_ms = {view: self._now_ms}
        out.append(Send(self._q.primary(view), NewViewRequest(view)))

    def _on_new_view_request(self, sender: NodeId, msg: NewViewRequest, out: list[Action]) -> None:
        held = self._new_view
        if held is not None and held.view == msg.view and self._q.primary(msg.view) == self.node_id:
            out.append(Send(sender, held))

    # --- provided by the engine --------------------------------------------------------------

    def _in_window(self, height: int) -> bool:
        raise NotImplementedError

    def _slot(self, height: int) -> Slot:
        raise NotImplementedError

    def _accept(
        self,
        slot: Slot,
        block_hash: bytes,
        out: list[Action],
        announce: PrePrepare | None = None,
    ) -> None:
        raise NotImplementedError

    def _adopt_stable(self, proof: CheckpointProof, out: list[Action]) -> None:
        raise NotImplementedError

    def _deliver_decided(self, out: list[Action]) -> None:
        raise NotImplementedError

    def _lag_target(self) -> int:
        raise NotImplementedError

    @staticmethod
    def _persist(out: list[Action], records: list[Record]) -> None:
        if records:
            out.append(Persist(tuple(records)))
