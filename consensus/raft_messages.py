"""The Raft wire vocabulary: log entries and peer messages, registered on the message codec.

Each message carries the sender's term first; the engine checks shapes (non-negative indices,
contiguous entries) with `is_well_formed` before acting, since the codec checks only types.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import MESSAGES


@MESSAGES.register("raft.Entry")
@dataclass(frozen=True, slots=True)
class Entry:
    """One Raft log slot. A block entry carries a block; a no-op (`payload is None`), appended by
    a new leader so it can commit earlier terms' entries, carries the latest block's height and
    hash so every index knows the chain tip it ends on."""

    term: int
    index: int
    height: int
    block_hash: bytes
    payload: bytes | None

    @property
    def is_block(self) -> bool:
        return self.payload is not None


ENTRY_OVERHEAD_BYTES = 96  # term, index, height, hash and msgpack framing, rounded up


def entry_bytes(entry: Entry) -> int:
    """An entry's share of an encoded AppendEntries: what byte budgets count."""
    return ENTRY_OVERHEAD_BYTES + (len(entry.payload) if entry.payload is not None else 0)


@MESSAGES.register("raft.ConfigChange")
@dataclass(frozen=True, slots=True)
class ConfigChange:
    """From block height `effective_height` on, `voters` (sorted, distinct) vote. A fact the
    node derived from an executed block, so every node that knows it knows the same one."""

    effective_height: int
    voters: tuple[str, ...]


@MESSAGES.register("raft.AppendEntries")
@dataclass(frozen=True, slots=True)
class AppendEntries:
    """`changes`: the leader's known voter-set changes above the height of `prev_index`, so a
    follower that stores an entry at height h knows the voters in effect at h even when it has
    not executed the block that made the change (consensus/raft_membership.py)."""

    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    changes: tuple[ConfigChange, ...] = ()


@MESSAGES.register("raft.AppendResponse")
@dataclass(frozen=True, slots=True)
class AppendResponse:
    """`index` is the last index now matching (success) or the rejected `prev_index` (failure);
    on failure `hint_index` is where the follower suggests the leader retry from (its guess of
    the last index that may match)."""

    term: int
    success: bool
    index: int
    hint_index: int


@MESSAGES.register("raft.Heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """`commit` is min(follower match, leader commit): safe for the follower to commit to.
    `changes`: to a follower that is behind, every voter-set change the leader keeps, so a node
    that was out and is voted back in learns it (it answers nothing else while it is out)."""

    term: int
    commit: int
    changes: tuple[ConfigChange, ...] = ()


@MESSAGES.register("raft.HeartbeatResponse")
@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    term: int


@MESSAGES.register("raft.RequestVote")
@dataclass(frozen=True, slots=True)
class RequestVote:
    """A vote or, with `pre_vote`, a pre-vote: "would you vote for me in `term`?" (no state
    change on either side)."""

    term: int
    last_index: int
    last_term: int
    pre_vote: bool
    # Sent on a TimeoutNow: the leader handed over, so voters' CheckQuorum lease (which ignores
    # candidates while a leader was recently heard) must not hold this election up.
    transfer: bool = False
    # The candidate's known voter-set changes: a voter that lags (it has not executed the block
    # that added the candidate) would otherwise drop its request as from a stranger, and the
    # candidate may need its vote before any leader can bring it up to date.
    changes: tuple[ConfigChange, ...] = ()


@MESSAGES.register("raft.VoteResponse")
@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    granted: bool
    pre_vote: bool


@MESSAGES.register("raft.InstallSnapshot")
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """The leader has compacted the entries the follower needs. Blocks are not shipped here:
    the follower fetches committed blocks through the driver (`RequestSync`) up to `height`,
    then adopts (`index`, `snapshot_term`) as its log's base."""

    term: int
    index: int
    snapshot_term: int
    height: int
    block_hash: bytes


@MESSAGES.register("raft.TimeoutNow")
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """A leader leaving the voter set hands over: the receiver campaigns at once, without
    pre-vote (etcd's MsgTimeoutNow)."""

    term: int


RaftMessage = (
    AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | RequestVote
    | VoteResponse
    | InstallSnapshot
    | TimeoutNow
)

RAFT_MESSAGE_TYPES: tuple[type[RaftMessage], ...] = (
    AppendEntries,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    VoteResponse,
    InstallSnapshot,
    TimeoutNow,
)

INDEX_MAX = 2**62
HASH_BYTES_MAX = 64
CHANGES_MAX = 64  # voter-set changes one append may carry
VOTERS_MAX = 1024
NODE_ID_BYTES_MAX = 256


def _ok(*numbers: int) -> bool:
    return all(0 <= n < INDEX_MAX for n in numbers)


def is_well_formed_change(change: ConfigChange) -> bool:
    voters = change.voters
    return (
        _ok(change.effective_height)
        and 0 < len(voters) <= VOTERS_MAX
        and all(0 < len(v) <= NODE_ID_BYTES_MAX for v in voters)
        and list(voters) == sorted(set(voters))
    )


def _changes_ok(changes: tuple[ConfigChange, ...]) -> bool:
    return len(changes) <= CHANGES_MAX and all(is_well_formed_change(c) for c in changes)


def is_well_formed(msg: RaftMessage, entries_max: int) -> bool:
    """Shape checks the codec cannot express; a peer's malformed message is dropped."""
    match msg:
        case AppendEntries():
            if not _ok(msg.term, msg.prev_index, msg.prev_term, msg.leader_commit):
                return False
            if len(msg.entries) > entries_max or not _changes_ok(msg.changes):
                return False
            expected = msg.prev_index + 1
            last_term = msg.prev_term
            for entry in msg.entries:
                if entry.index != expected or not _ok(entry.term, entry.height):
                    return False
                if entry.term < last_term or entry.term > msg.term:
                    return False
                if len(entry.block_hash) > HASH_BYTES_MAX:
                    return False
                expected += 1
                last_term = entry.term
            return True
        case AppendResponse():
            return _ok(msg.term, msg.index, msg.hint_index)
        case Heartbeat():
            return _ok(msg.term, msg.commit) and _changes_ok(msg.changes)
        case HeartbeatResponse():
            return _ok(msg.term)
        case RequestVote():
            return _ok(msg.term, msg.last_index, msg.last_term) and _changes_ok(msg.changes)
        case VoteResponse():
            return _ok(msg.term)
        case InstallSnapshot():
            return _ok(msg.term, msg.index, msg.snapshot_term, msg.height) and (
                len(msg.block_hash) <= HASH_BYTES_MAX
            )
        case TimeoutNow():
            return _ok(msg.term)
    return False
