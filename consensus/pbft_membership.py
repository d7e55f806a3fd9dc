"""PBFT's validator sets over time: which set orders which height, and the checks that depend
on it (view changes and new-views, which may span two sets).

The set is a function of the height, identical on every honest replica: the genesis set orders
heights from 1, and each `reconfigure(effective_height, validators)` (the node calls it when a
committed block changes the set, at least `VALIDATOR_CHANGE_DELAY_BLOCKS` above that block)
hands heights >= `effective_height` to a new set. So a certificate for height h (prepared,
commit, checkpoint) is checked against `at(h)`: its quorum, its members, and the primary of
view v at h is `at(h).validators[v % n]`. Views are not reset at a boundary; only the rotation
and the quorum follow the height. The whole history is kept (and persisted) because a
replica syncing old blocks checks each block's commit certificate against the set of its
height.

View changes span sets: a new view re-proposes every height above the highest stable
checkpoint c among its view changes, and any of those heights may have committed with a
quorum of its own set. So a new-view must hold, for every set that orders a height above c
(`at(c + 1)` and every later set this replica knows), a quorum of valid view changes from
members of that set: then each such commit quorum meets the view changes in f + 1 replicas,
one of them honest, whose prepared certificate carries the block into the new view (the classic
PBFT argument, once per set). A view change counts only from a member of a set ordering a
height above its own checkpoint, so a removed replica still helps finish view changes over the
last heights of its set, and is ignored once its checkpoint passes them.

One exemption, for the replica that receives a new-view (never for the primary counting view
changes): a set S starting at E may lack its quorum when E > H + 1, H the highest height any of
the view changes reports (checkpoint or prepared), and this replica holds no prepare of its own
at a height >= E. Without it, a replica added after the cluster entered view v could never enter
v: v's new-view was made before its set existed (the demo: view 1's new-view holds three view
changes of the four, the five need four), so it dropped it and never voted until the next view
change. Why it is safe: say block B committed at height h in a view w < v, and a block B' != B
gets a prepared certificate at h in a view v' >= v. Both need a quorum of S(h), and two quorums
of one set share an honest replica z, which prepared B in w and then B' in v' > w, so it entered
v' through a new-view after preparing B: its slot at h still held that prepare (a slot is only
dropped below the stable checkpoint, and nothing at or below it is prepared again), so z
exempted no set starting at or below h and checked the quorums of every set ordering a height
in (c, h]: the classic argument above applies and that new-view carries B at h, so z prepares
only B there (by induction over the views between w and v'). A replica that exempts S, on the
other hand, prepared nothing at S's heights, so its later prepares there never meet an earlier
one of its own; at worst it votes for a block that cannot gather a quorum. The condition
E > H + 1 is not needed for that argument: it keeps the exemption to sets the new-view cannot
be about (a node prepares h only once it has executed h - 2, whose app hash h carries, and S
is learned by executing block E - 4, so the view changes of a new-view formed before S existed
report nothing at E - 1 or above; an engine pipelined deeper than the app-hash lag, as in the
simulator, may report more and then waits for the next view change), so that a replica with an
empty log (a restart from a snapshot) is not moved by a new-view lacking the sets it covers.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from consensus.codec import CodecError
from consensus.engine import NodeId
from consensus.pbft_config import BlockIdentity, BlockInspector, Verify
from consensus.pbft_log import RECORDS, PbftStateError, Quorum, Record, Slot
from consensus.pbft_messages import NewView, ViewChange, view_change_statement

KEY_VALIDATORS = "pbft/validators"
# Below this n, f = 0: one liar decides alone. Genesis may still start a one-validator chain
# (a development setup); a change may not take a live set below it.
VALIDATORS_MIN = 4


@RECORDS.register("pbft.Epoch")
@dataclass(frozen=True, slots=True)
class Epoch:
    effective_height: int  # the first height this set orders
    validators: tuple[str, ...]


@RECORDS.register("pbft.EpochHistory")
@dataclass(frozen=True, slots=True)
class EpochHistory:
    epochs: tuple[Epoch, ...]


class Membership:
    """Every validator set this replica knows, by the first height it orders."""

    def __init__(
        self,
        genesis: Sequence[NodeId],
        restored: Mapping[str, bytes],
        verify: Verify,
        inspect: BlockInspector,
    ) -> None:
        self._verify = verify
        self._inspect = inspect
        epochs = [Epoch(0, tuple(genesis))]
        if KEY_VALIDATORS in restored:
            try:
                history = RECORDS.decode(restored[KEY_VALIDATORS], EpochHistory)
            except CodecError as exc:
                raise PbftStateError(f"corrupt PBFT validator history: {exc}") from exc
            if not history.epochs or history.epochs[0].effective_height != 0:
                raise PbftStateError("PBFT validator history does not start at height 0")
            # The persisted history wins: it holds every set learned, the constructor only
            # the one the node started the chain with.
            epochs = list(history.epochs)
        self._epochs: list[Epoch] = []
        self._starts: list[int] = []  # effective heights, ascending (every message looks here)
        self._quorums: list[Quorum] = []
        self._everyone: frozenset[NodeId] = frozenset()
        for epoch in epochs:
            self._append(epoch)

    def _append(self, epoch: Epoch) -> None:
        self._epochs.append(epoch)
        self._starts.append(epoch.effective_height)
        self._quorums.append(Quorum(epoch.validators, self._verify, self._inspect))
        self._everyone = frozenset(node for q in self._quorums for node in q.members)

    # --- the history -------------------------------------------------------------------------

    @property
    def epochs(self) -> tuple[Epoch, ...]:
        return tuple(self._epochs)

    def epoch_index(self, height: int) -> int:
        return max(0, bisect_right(self._starts, height) - 1)

    def at(self, height: int) -> Quorum:
        """The set that orders `height`."""
        return self._quorums[self.epoch_index(height)]

    def from_height(self, height: int) -> list[Quorum]:
        """Every set that orders some height >= `height`: the one at it and all later ones."""
        first = self.epoch_index(height)
        return self._quorums[first:]

    def inspect(self, payload: bytes) -> BlockIdentity | None:
        """The identity of a block payload (height, hash, parent), or None if malformed."""
        return self._inspect(payload)

    def known(self, node: NodeId) -> bool:
        return node in self._everyone

    @property
    def votes_max(self) -> int:
        """Bound on votes in a certificate and view changes in a new-view: every validator."""
        return len(self._everyone)

    def record(self) -> Record:
        return (KEY_VALIDATORS, RECORDS.encode(EpochHistory(tuple(self._epochs))))

    def add(self, effective_height: int, validators: Sequence[NodeId]) -> bool:
        """Learn that `validators` order heights >= `effective_height`. False when this very
        change is known already (the node repeats it at start-up); ValueError when it would
        make a set PBFT cannot run with or contradicts the history."""
        epoch = Epoch(effective_height, tuple(validators))
        if len(set(epoch.validators)) != len(epoch.validators):
            raise ValueError(f"validators must be distinct: {list(validators)}")
        if len(epoch.validators) < VALIDATORS_MIN:
            raise ValueError(
                f"PBFT needs at least {VALIDATORS_MIN} validators, got {len(epoch.validators)}"
            )
        if effective_height < 1:
            raise ValueError(f"effective height must be >= 1, got {effective_height}")
        if epoch in self._epochs:
            return False
        last = self._epochs[-1]
        if effective_height <= last.effective_height:
            raise ValueError(
                f"validator change at {effective_height} is not after the last one "
                f"(at {last.effective_height}) and differs from every change known"
            )
        self._append(epoch)
        return True

    # --- view changes across sets ------------------------------------------------------------

    def view_change_ok(self, msg: ViewChange, window_blocks: int) -> bool:
        """Signed by its node, which orders some height above its checkpoint; a valid stable
        checkpoint; prepared certificates of earlier views, one per height, above the checkpoint
        and inside the watermark window, each checked against the set of its height."""
        low = msg.checkpoint.height
        if not any(msg.node in q.members for q in self.from_height(low + 1)):
            return False
        if not self._verify(msg.node, view_change_statement(msg), msg.signature):
            return False
        if not self.at(low).checkpoint_ok(msg.checkpoint):
            return False
        heights: set[int] = set()
        for proof in msg.prepared:
            if proof.view >= msg.view or proof.height in heights:
                return False
            if not low < proof.height <= low + window_blocks:
                return False
            if not self.at(proof.height).prepared_ok(proof):
                return False
            heights.add(proof.height)
        return True

    def view_changes_suffice(
        self,
        view_changes: Iterable[ViewChange],
        voted_from: Callable[[int], bool] | None = None,
    ) -> bool:
        """A quorum of senders of every set that orders a height above the highest checkpoint
        among them (see the module docstring for why every such set). With `voted_from`
        (whether this replica prepared at some height >= its argument), a set may lack its
        quorum when it starts above every height the view changes report + 1 and this replica
        prepared nothing from its start on: the module docstring's exemption."""
        held = list(view_changes)
        if not held:
            return False
        low = max(vc.checkpoint.height for vc in held)
        reported = max([low, *(proof.height for vc in held for proof in vc.prepared)])
        senders = {vc.node for vc in held}
        first = self.epoch_index(low + 1)
        for epoch, quorum in zip(self._epochs[first:], self._quorums[first:], strict=True):
            if len(senders & quorum.members) >= quorum.size:
                continue
            start = epoch.effective_height
            if voted_from is None or start <= reported + 1 or voted_from(start):
                return False
        return True

    def new_view_ok(
        self,
        msg: NewView,
        window_blocks: int,
        voted_from: Callable[[int], bool] | None = None,
    ) -> bool:
        nodes = {vc.node for vc in msg.view_changes}
        if len(nodes) != len(msg.view_changes):
            return False
        if not all(vc.view == msg.view for vc in msg.view_changes):
            return False
        if not self.view_changes_suffice(msg.view_changes, voted_from):
            return False
        return all(self.view_change_ok(vc, window_blocks) for vc in msg.view_changes)


def resettle(slots: Mapping[int, Slot], sets: Membership, from_height: int) -> list[int]:
    """A set was learned for heights >= `from_height`: in those slots keep only votes of its
    members and re-derive what they prove. Returns the heights whose decision no longer
    holds under the new set (the engine says which of those it had already committed)."""
    undone: list[int] = []
    for height, slot in slots.items():
        if height < from_height:
            continue
        quorum = sets.at(height)
        for table in (slot.prepares, slot.commits):
            for key in list(table):
                kept = {n: sig for n, sig in table[key].items() if n in quorum.members}
                if kept:
                    table[key] = kept
                else:
                    del table[key]
        if slot.prepared is not None and not quorum.prepared_ok(slot.prepared):
            slot.prepared = None  # a view change carrying it would be refused as a whole
        if slot.decided is not None and not quorum.commit_certificate_ok(slot.decided):
            slot.decided = None
            undone.append(height)
        slot.check_decided(quorum.size)
    return sorted(undone)
