"""Raft's voter set as a function of block height, and the quorum rules that use it.

The node learns a change of the validator set by executing the block that made it (the
governance contract): `RaftEngine.reconfigure(effective_height, voters)` says that from height
`effective_height` on, `voters` vote. The contract puts `effective_height` at least 4 blocks
above the deciding block and refuses a second change until the first is in effect; this engine
adds the single-server rule: a change adds or removes at most ONE voter (else `ValueError`).

The rules (`RaftEngine` applies them):

1. Commit: entries are committed up to index N only if, for each entry newly committed, a
   majority of the voters in effect at its voting height holds N (usually one set; two when
   the range crosses a change). A block's voting height is its height; a no-op's is the height
   after the block it follows (the block its leader's term works towards, as in rule 2). The
   leader counts itself only if it is one of them.
2. Elections: a candidate counts votes among the voters in effect at the height after its last
   log height (the block it would propose): when two voters become one, the one left wins
   alone (counting in the set at its last height would need the removed one). It campaigns
   only if it is a voter at its last height or the next and not out (rule 4): a voter leaving
   at E that alone holds block E - 1 leads, commits it and hands over. CheckQuorum counts in
   the same set.
3. A node that holds an entry at height h knows the voters in effect up to h + 2 (invariant I).
   The proposer of a block at height h executed block h - 2 first (the app hash two blocks
   back is in the header), so it knew every change that takes effect at h + 2 or below
   (decided at h - 2 or below); each append carries the sender's known changes above the height
   of its `prev_index`, and a follower persists them with the entries, before it acknowledges.
   So knowledge never lags the log, although the node's execution may.
4. A leader that is not a voter at its next height proposes nothing more; once its log is
   committed it sends TimeoutNow to the voter whose log matches its own, steps down, and is out.
   A node is out when it is no voter from its commit height + 1 on (every voter set known from
   there): it neither votes nor campaigns, and others drop its messages (a message is taken
   only from a voter at the receiver's commit height or later). It still accepts entries from
   a leader that sends them: its acknowledgements may be needed to commit the last heights it
   voted on, when the leader that took over does not know they are committed.

Why two majorities cannot exist. Sets in effect at consecutive heights are equal or differ by
one voter, and then any two majorities share a member: with S' = S + {x} and |S| = n, a
majority of S has n // 2 + 1 members of S and a majority of S' at least (n + 1) // 2 of them,
n + 1 in all. Take a committed entry e at height h (held by a majority of the set at h, rule 1)
and a later candidate c whose log lacks e. Blocks are built on executed, hence committed,
blocks two heights below, so a log that lacks e ends within a height or two of h, and c counts
votes (rule 2) in a set in effect within three heights of h: the set at h, or one change away
(changes are at least 4 heights apart). Its voters' majority and e's share a
member, which holds e and refuses c (Raft's up-to-date check). A candidate whose log is older
still meets that refusal earlier: the block deciding each change sits at or above the previous
change's effective height, so a majority of the newer set holds it, and any majority of the
set before shares a member with that one. Counting in "the latest known set" instead would be
safe for the same reason (it is at most one change away), but a voter just added (still
replicating) would then be needed for elections before it holds anything.

Persisted as one record (`raft/membership`): the latest 32 changes at least, and every change
from the one in effect at the log's snapshot height on. Calls are idempotent: a repeated
identical change is a no-op, and a change whose effective height is at or below the commit
height is recorded as "already in effect" without the single-server check (the node restores
the stored set at start-up; the engine may have missed intermediate changes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from consensus.codec import CodecError
from consensus.engine import NodeId
from consensus.raft_log import RECORDS, RaftStateError, Record
from consensus.raft_messages import ConfigChange, is_well_formed_change

logger = logging.getLogger(__name__)

KEY_MEMBERSHIP = "raft/membership"
# Changes are at least 4 heights apart, so 32 span at least 128 heights: more than a crash
# can leave the block store behind the engine's records (one batch of commits).
CHANGES_KEPT = 32

RECORDS.register_class("raft.ConfigChange", ConfigChange)


@RECORDS.register("raft.Membership")
@dataclass(frozen=True, slots=True)
class MembershipRecord:
    changes: tuple[ConfigChange, ...]


def is_majority(voters: Iterable[NodeId], holds: Callable[[NodeId], bool]) -> bool:
    members = list(voters)
    return 2 * sum(1 for v in members if holds(v)) > len(members)


class Membership:
    """Known changes, sorted by effective height; the first is in effect from height 0 on (or
    from the snapshot height on, after pruning)."""

    def __init__(self, changes: Sequence[ConfigChange]) -> None:
        assert changes, "there is always a voter set"
        self._changes: list[ConfigChange] = list(changes)

    @classmethod
    def restore(cls, records: Mapping[str, bytes], initial: Sequence[NodeId]) -> Membership:
        """The persisted changes, or the initial (genesis) set in effect from height 0."""
        if KEY_MEMBERSHIP not in records:
            return cls([ConfigChange(0, tuple(sorted(initial)))])
        try:
            stored = RECORDS.decode(records[KEY_MEMBERSHIP], MembershipRecord)
        except CodecError as exc:
            raise RaftStateError(f"corrupt raft membership record: {exc}") from exc
        heights = [c.effective_height for c in stored.changes]
        if (
            not stored.changes
            or heights != sorted(set(heights))
            or not all(is_well_formed_change(c) for c in stored.changes)
        ):
            raise RaftStateError(f"raft membership record out of order: {stored}")
        return cls(stored.changes)

    def record(self) -> Record:
        return (KEY_MEMBERSHIP, RECORDS.encode(MembershipRecord(tuple(self._changes))))

    # --- queries -----------------------------------------------------------------------------

    @property
    def changes(self) -> tuple[ConfigChange, ...]:
        return tuple(self._changes)

    def _position_at(self, height: int) -> int:
        position = 0
        for i, change in enumerate(self._changes):
            if change.effective_height <= height:
                position = i
        return position

    def voters_at(self, height: int) -> tuple[NodeId, ...]:
        return self._changes[self._position_at(height)].voters

    def sets_between(self, low: int, high: int) -> list[tuple[NodeId, ...]]:
        """The distinct voter sets in effect at heights `low..high`."""
        first = self._position_at(low)
        sets = [self._changes[first].voters]
        for change in self._changes[first + 1 :]:
            if change.effective_height <= high:
                sets.append(change.voters)
        return sets

    def members_from(self, height: int) -> frozenset[NodeId]:
        """Every voter at `height` or at any later height known now."""
        members: set[NodeId] = set()
        for voters in self.sets_between(height, 2**62):
            members.update(voters)
        return frozenset(members)

    def changes_above(self, height: int) -> tuple[ConfigChange, ...]:
        return tuple(c for c in self._changes if c.effective_height > height)

    # --- updates -----------------------------------------------------------------------------

    def add(self, change: ConfigChange, commit_height: int) -> bool:
        """A change the node executed; True when it is new. Raises ValueError for a change of
        more than one voter, or one that contradicts a known change, unless it is already in
        effect (at or below `commit_height`): then the node's stored state is the truth."""
        if not is_well_formed_change(change):
            raise ValueError(f"voters must be distinct and non-empty: {change.voters!r}")
        known = self._at_exactly(change.effective_height)
        if known == change:
            return False
        in_effect = change.effective_height <= commit_height
        if known is not None and not in_effect:
            raise ValueError(
                f"voters from height {change.effective_height} are already {known.voters}, "
                f"not {change.voters}"
            )
        if not in_effect:
            before = set(self.voters_at(change.effective_height - 1))
            differ = sorted(before.symmetric_difference(change.voters))
            if len(differ) > 1:
                raise ValueError(
                    f"a change may add or remove one voter at a time; {sorted(before)} -> "
                    f"{list(change.voters)} changes {differ}"
                )
        self._insert(change)
        return True

    def learn(self, changes: Iterable[ConfigChange]) -> bool:
        """Changes a leader sent (it executed or learned them, as rule 3 says); True when any
        is new. A change contradicting a known one is impossible among correct nodes: it is
        logged and skipped rather than trusted."""
        learned = False
        for change in changes:
            known = self._at_exactly(change.effective_height)
            if known is None:
                self._insert(change)
                learned = True
            elif known != change:
                logger.error("conflicting voter-set change %s (known: %s) dropped", change, known)
        return learned

    def prune_below(self, height: int) -> bool:
        """Forget the oldest changes, superseded at `height` (the log's snapshot height), once
        more than CHANGES_KEPT are known; True when something was dropped. Not sooner: after a
        crash the block store may be behind the snapshot (the records of a batch are written
        before its blocks), and the engine asks about heights from the store's on."""
        drop = min(self._position_at(height), len(self._changes) - CHANGES_KEPT)
        if drop <= 0:
            return False
        del self._changes[:drop]
        return True

    def _at_exactly(self, effective_height: int) -> ConfigChange | None:
        for change in self._changes:
            if change.effective_height == effective_height:
                return change
        return None

    def _insert(self, change: ConfigChange) -> None:
        self._changes = sorted(
            [c for c in self._changes if c.effective_height != change.effective_height] + [change],
            key=lambda c: c.effective_height,
        )


def commit_point(
    membership: Membership,
    commit_index: int,
    last_index: int,
    committed_height: int,
    height_at: Callable[[int], int],
    match_of: Callable[[NodeId], int],
) -> int:
    """The highest index N > `commit_index` that rule 1 allows, or `commit_index`.

    `height_at(i)` is the voting height of log entry i (uncommitted, so present); `match_of`
    how much of the leader's log a node holds (the leader: `last_index`; unknown nodes: 0).
    Entries voting at or below `committed_height` need no count: the leader's block store holds
    that height, and a leader's log holds every committed entry (Raft's Leader Completeness)
    with one block per height, so they precede a committed block in its log. Without this, a
    leader restarted with an old commit index would need the acknowledgements of voters long
    gone to commit anything."""
    if commit_index >= last_index:
        return commit_index
    low = max(height_at(commit_index + 1), committed_height + 1)
    voters = {v for s in membership.sets_between(low, height_at(last_index)) for v in s}
    candidates = sorted({min(match_of(v), last_index) for v in voters} | {last_index}, reverse=True)
    for n in candidates:
        if n <= commit_index:
            break

        def holds(voter: NodeId, n: int = n) -> bool:
            return match_of(voter) >= n

        high = height_at(n)
        sets = membership.sets_between(low, high) if high >= low else []
        if all(is_majority(s, holds) for s in sets):
            return n
    return commit_index
