"""PBFT view changes: leaving a view, view-change messages, the new-view and entering it.

`ViewChanger` is owned by `consensus.pbft.PbftEngine` and holds the view-change state: the view
this replica is in and whether it is active, the view changes collected per view, the last
new-view, the view timer (deadline and doublings) and the new-view requests sent. It sees the
rest of the engine only through `Replica`: the stable checkpoint and prepared certificates it
reports, and the few things a view change does to the log (adopt a stable checkpoint, drop
pending proposals, enter a new view's plan).

See `consensus.pbft` for the protocol; the rules here are: a replica whose timer fires leaves
its view; in a view change it moves on only with 2f + 1 view changes for its view or to the
lowest higher view someone is in; f + 1 view changes for higher views pull it along; the new
primary's new-view (2f + 1 signed view changes) is self-certifying, so anyone may relay it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from consensus.engine import Action, Broadcast, NodeId, Send
from consensus.pbft_config import PbftConfig, Sign
from consensus.pbft_log import (
    NewViewPlan,
    ViewRecord,
    new_view_record,
    persist,
    select_new_view,
    view_record,
)
from consensus.pbft_membership import Membership
from consensus.pbft_messages import (
    CheckpointProof,
    NewView,
    NewViewRequest,
    PreparedProof,
    ViewChange,
    view_change_statement,
)

logger = logging.getLogger(__name__)

TIMEOUT_DOUBLINGS_MAX = 16


class Replica(Protocol):
    """What a view change needs from the rest of the engine (its log of heights)."""

    @property
    def commit_height(self) -> int: ...

    @property
    def stable_checkpoint(self) -> CheckpointProof: ...

    def prepared_proofs(self) -> tuple[PreparedProof, ...]:
        """This replica's prepared certificates above its stable checkpoint, by height."""
        ...

    def catching_up(self) -> bool:
        """Whether the cluster is known to have committed above this replica."""
        ...

    def voted_from(self, height: int) -> bool:
        """Whether this replica sent a prepare (in any view) at some height >= `height` that
        is still above its stable checkpoint."""
        ...

    def adopt_stable(self, proof: CheckpointProof, out: list[Action]) -> None:
        """A verified stable checkpoint (ignored unless above the replica's own)."""
        ...

    def leave_view(self) -> None:
        """The view is left: proposals awaiting validation in it are void."""
        ...

    def enter_view(self, plan: NewViewPlan, out: list[Action]) -> None:
        """The view changer is now active in the new view: start from `plan`."""
        ...


class ViewChanger:
    """One replica's view and the changes to the next; see the module docstring."""

    def __init__(
        self,
        node_id: NodeId,
        config: PbftConfig,
        membership: Membership,
        sign: Sign,
        replica: Replica,
        restored_view: ViewRecord,
        restored_new_view: NewView | None,
    ) -> None:
        self._node_id = node_id
        self._config = config
        self._sets = membership
        self._sign = sign
        self._replica = replica
        self._view = restored_view.view
        self._active = restored_view.active
        self._new_view = restored_new_view
        self._held: dict[int, dict[NodeId, ViewChange]] = {}  # view changes collected, by view
        self._now_ms = 0
        self._timeout_doublings = 0
        self._deadline_ms = 0
        self._asked_new_view_ms: dict[int, int] = {}

    @property
    def view(self) -> int:
        return self._view

    @property
    def active(self) -> bool:
        """False while a view change to `view` is under way."""
        return self._active

    # --- driven by the engine ----------------------------------------------------------------

    def start(self, now_ms: int, out: list[Action]) -> None:
        self._now_ms = now_ms
        self.restart_timer()
        if not self._active:
            self._send_view_change(out)

    def tick(self, now_ms: int, out: list[Action]) -> None:
        self._now_ms = now_ms
        if self._now_ms >= self._deadline_ms:
            self._on_timeout(out)

    def restart_timer(self) -> None:
        """The primary shows it is alive (a valid proposal): a full timeout from now."""
        self._deadline_ms = self._now_ms + self._timeout_ms()

    def progress(self) -> None:
        """A commit: the view works, so the timeout is back to its base."""
        self._timeout_doublings = 0
        self.restart_timer()

    def retransmit(self, out: list[Action]) -> None:
        """In a view change, resend this replica's view change."""
        if self._active:
            return
        if not self._may_vote():
            return
        held = self._held.get(self._view, {}).get(self._node_id)
        out.append(Broadcast(held if held is not None else self._own_view_change()))

    def ask_new_view(self, view: int, out: list[Action]) -> None:
        """Traffic of `view`, which this replica has not entered: ask its primary for the
        new-view (at most once a retransmit interval)."""
        if view == 0:
            return
        asked = self._asked_new_view_ms.get(view)
        if asked is not None and self._now_ms - asked < self._config.retransmit_interval_ms:
            return
        self._asked_new_view_ms = {view: self._now_ms}
        out.append(Send(self._primary(view), NewViewRequest(view)))

    # --- messages ----------------------------------------------------------------------------

    def on_view_change(self, sender: NodeId, msg: ViewChange, out: list[Action]) -> None:
        if msg.node != sender:
            return
        if msg.view < self._view or (msg.view == self._view and self._active):
            # A straggler: hand it the new-view of our view (new-views are self-certifying).
            if self._new_view is not None and self._new_view.view == self._view and self._active:
                out.append(Send(sender, self._new_view))
            return
        if self._held.get(msg.view, {}).get(sender) == msg:
            return  # a retransmission of one we hold
        if not self._sets.view_change_ok(msg, self._config.watermark_window_blocks):
            logger.info("node=%s drops an invalid view change from %s", self._node_id, sender)
            return
        for view in [v for v in self._held if v < self._view]:
            del self._held[view]
        for held in self._held.values():  # one view change per sender: its latest
            if sender in held and held[sender].view < msg.view:
                del held[sender]
        self._held.setdefault(msg.view, {})[sender] = msg
        # A verified stable checkpoint we may be behind.
        self._replica.adopt_stable(msg.checkpoint, out)
        # f + 1 replicas of the set ordering our next height want a higher view: at least one
        # is honest, so join the lowest of them (members of other sets are not counted: their
        # liars are not bounded by this set's f).
        current = self._sets.at(self._replica.commit_height + 1)
        higher = sorted(
            vc.view
            for held in self._held.values()
            for vc in held.values()
            if vc.view > self._view and vc.node in current.members
        )
        if len(higher) >= current.f + 1 and self._may_vote():
            self._start_view_change(higher[-(current.f + 1)], out)
        self._maybe_send_new_view(out)

    def on_new_view(self, sender: NodeId, msg: NewView, out: list[Action]) -> None:
        # Any replica may relay a new-view: its view changes are signed and the plan follows
        # from them deterministically. (Two different valid new-views for one view are no worse
        # than an equivocating primary: at most one block per height gathers 2f + 1 prepares.)
        if msg.view < self._view or (msg.view == self._view and self._active):
            return
        # A later set may lack its quorum where this replica never prepared: a replica added
        # after the cluster entered this view joins it without another view change (see
        # `consensus.pbft_membership`, the exemption and why it is safe).
        window = self._config.watermark_window_blocks
        if not self._sets.new_view_ok(msg, window, self._replica.voted_from):
            logger.info("node=%s drops an invalid new-view from %s", self._node_id, sender)
            return
        persist(out, [new_view_record(msg)])
        self._install_new_view(msg, out)

    def on_new_view_request(self, sender: NodeId, msg: NewViewRequest, out: list[Action]) -> None:
        # Whoever holds the asked view's new-view answers: it is self-certifying, and after a
        # change of the set the asker may think another replica is that view's primary.
        held = self._new_view
        if held is not None and held.view == msg.view:
            out.append(Send(sender, held))

    # --- leaving and entering views ----------------------------------------------------------

    def _primary(self, view: int) -> NodeId:
        """The primary of `view` for the next height to order here: the rotation follows the
        set of the height, so across a change of the set it may be another replica."""
        return self._sets.at(self._replica.commit_height + 1).primary(view)

    def _may_vote(self) -> bool:
        """A validator of some height above our stable checkpoint (which a view change may
        re-propose): a removed replica until its checkpoint passes its last height, an added
        one from the moment it knows of the change."""
        low = self._replica.stable_checkpoint.height + 1
        return any(self._node_id in q.members for q in self._sets.from_height(low))

    def _timeout_ms(self) -> int:
        timeout = self._config.view_change_timeout_ms << min(
            self._timeout_doublings, TIMEOUT_DOUBLINGS_MAX
        )
        return min(timeout, self._config.view_change_timeout_max_ms)

    def _on_timeout(self, out: list[Action]) -> None:
        """No commit in time: leave the view. In a view change, move on only with 2f + 1 view
        changes for this view (the new primary had its chance) or, lacking them, to the lowest
        higher view someone is in: replicas whose views drifted apart (partitions, restarts,
        a liar feeding only some) must meet rather than climb side by side for ever."""
        if not self._may_vote():
            # Not a validator of any height this view change could decide (removed, or not yet
            # added): follow the views others enter, never start one.
            self.restart_timer()
            return
        if self._active and self._replica.catching_up():
            # The cluster commits without us: this replica is catching up (restarted, or cut
            # off for a while), which says nothing about the primary. A view change here made
            # a replica restarted after 5 minutes leave the view the others were working in.
            self.restart_timer()
            return
        if self._active:
            self._start_view_change(self._view + 1, out)
            return
        if self._sets.view_changes_suffice(self._held.get(self._view, {}).values()):
            self._start_view_change(self._view + 1, out)
            return
        higher = [
            vc.view for held in self._held.values() for vc in held.values() if vc.view > self._view
        ]
        if higher:
            self._start_view_change(min(higher), out)
        else:
            self.restart_timer()

    def _start_view_change(self, view: int, out: list[Action]) -> None:
        assert view > self._view or (view == self._view and self._active), "views only go up"
        logger.info(
            "node=%s view change %d -> %d at height %d",
            self._node_id,
            self._view,
            view,
            self._replica.commit_height,
        )
        self._view = view
        self._active = False
        self._timeout_doublings += 1
        self.restart_timer()
        persist(out, [view_record(view, False)])
        self._replica.leave_view()
        self._send_view_change(out)

    def _own_view_change(self) -> ViewChange:
        unsigned = ViewChange(
            self._view,
            self._replica.stable_checkpoint,
            self._replica.prepared_proofs(),
            self._node_id,
            b"",
        )
        return ViewChange(
            unsigned.view,
            unsigned.checkpoint,
            unsigned.prepared,
            unsigned.node,
            self._sign(view_change_statement(unsigned)),
        )

    def _send_view_change(self, out: list[Action]) -> None:
        if not self._may_vote():
            return
        msg = self._own_view_change()
        self._held.setdefault(self._view, {})[self._node_id] = msg
        out.append(Broadcast(msg))
        self._maybe_send_new_view(out)

    def _maybe_send_new_view(self, out: list[Action]) -> None:
        if self._active or self._primary(self._view) != self._node_id:
            return
        held = self._held.get(self._view, {})
        if self._node_id not in held or not self._sets.view_changes_suffice(held.values()):
            return
        # All of them: around a change of the set a new-view needs a quorum of each set that
        # orders a height above its checkpoint, and more view changes only add information.
        msg = NewView(self._view, tuple(held[node] for node in sorted(held)))
        persist(out, [new_view_record(msg)])
        out.append(Broadcast(msg))
        self._install_new_view(msg, out)

    def _install_new_view(self, msg: NewView, out: list[Action]) -> None:
        plan = select_new_view(msg.view_changes, self._sets.inspect)
        logger.info(
            "node=%s enters view %d (primary %s) re-proposing %d blocks above %d",
            self._node_id,
            msg.view,
            self._primary(msg.view),
            len(plan.reproposals),
            plan.checkpoint.height,
        )
        self._view = msg.view
        self._active = True
        self._new_view = msg
        self.restart_timer()
        persist(out, [view_record(msg.view, True)])
        for view in [v for v in self._held if v <= msg.view]:
            del self._held[view]
        self._replica.enter_view(plan, out)
