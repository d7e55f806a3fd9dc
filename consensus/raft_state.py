"""The Raft engine's state and the mechanics every path shares: stepping down (a newer term,
CheckQuorum), heartbeats, who counts as a voter when, committing and applying log entries
(emitting `Commit` in height order), compacting the log, asking the driver for blocks it
lacks, and persisting. `RaftEngine` (consensus/raft.py) builds the protocol on it: the `Engine`
interface, elections, replication and voter-set changes. Split from raft.py only to keep each
file readable; the two are one state machine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from consensus.engine import Action, Commit, NodeId, Persist, RequestSync, Send
from consensus.raft_config import RaftConfig
from consensus.raft_log import HardState, RaftLog, Record, SnapshotMarker, hard_state_record
from consensus.raft_membership import Membership, is_majority
from consensus.raft_messages import Heartbeat, InstallSnapshot
from consensus.raft_progress import Progress

logger = logging.getLogger("consensus.raft")  # one logger for the whole engine

FOLLOWER = "follower"
PRE_CANDIDATE = "pre_candidate"
CANDIDATE = "candidate"
LEADER = "leader"
OBSERVER = "observer"  # status only: no voter from the next height on (rule 4)


class RandomSource(Protocol):
    """What the engine needs of the injected `random.Random` (no `random` import here)."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


class RaftState:
    """Fields and shared mechanics of `RaftEngine`; not an engine by itself."""

    def __init__(
        self,
        node_id: NodeId,
        validators: Sequence[NodeId],
        restored: Mapping[str, bytes],
        rng: RandomSource,
        config: RaftConfig | None = None,
        commit_height: int = 0,
        last_block_hash: bytes = bytes(32),
    ) -> None:
        # `validators` is the genesis set; a node added later is built with it too, and is an
        # observer until the persisted records or `reconfigure` say otherwise.
        assert validators and len(set(validators)) == len(validators), "distinct validators"
        assert commit_height >= 0
        self.node_id = node_id
        self.config = config or RaftConfig()
        self._rng = rng
        self._members = Membership.restore(restored, validators)
        self._election_voters: tuple[NodeId, ...] = ()
        self._started = False
        fresh = SnapshotMarker(0, 0, commit_height, last_block_hash)
        hard, self._log, self._startup_records = RaftLog.restore(restored, fresh)
        self._term = hard.term
        self._voted_for = hard.voted_for
        self._commit_index = self._log.snapshot.index
        self._applied_index = self._log.snapshot.index
        self._commit_height = commit_height
        self._applied_hash = last_block_hash
        self._role = FOLLOWER
        self._leader: NodeId | None = None
        self._now_ms = 0
        self._election_deadline_ms = 0
        self._leader_contact_ms: int | None = None
        self._heard_leader = False  # a leader message since the last tick
        self._heartbeat_deadline_ms = 0
        self._check_quorum_deadline_ms = 0
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        # Catch-up from the block store of a peer: blocks up to `_sync_height` are needed.
        self._sync_height = self._log.snapshot.height
        self._sync_requested_ms: int | None = None
        self._pending_snapshot: SnapshotMarker | None = None
        self._sync_logged_height = -1

    # --- stepping down, heartbeats -----------------------------------------------------------

    def _in_lease(self) -> bool:
        if not self.config.check_quorum or self._leader is None:
            return False
        if self._role == LEADER:
            return True
        contact = self._leader_contact_ms
        return contact is not None and self._now_ms - contact < self.config.election_timeout_min_ms

    def _become_follower(self, out: list[Action], term: int, leader: NodeId | None) -> None:
        assert term >= self._term, "terms never go back"
        if term > self._term:
            self._term = term
            self._voted_for = None
            self._persist(out, [self._hard_state_record()])
        if self._role != FOLLOWER or self._leader != leader:
            logger.info("node=%s follower term=%d leader=%s", self.node_id, term, leader)
        self._role = FOLLOWER
        self._leader = leader
        self._progress = {}
        self._votes = {}
        self._reset_election_timer()

    def _check_quorum(self, out: list[Action]) -> None:
        voters = self._members.voters_at(self._log.last_height + 1)  # as elections count
        active = {peer for peer, pr in self._progress.items() if pr.recent_active}
        active.add(self.node_id)
        targets = self._targets()
        for peer, pr in list(self._progress.items()):
            pr.recent_active = False
            if peer not in targets and peer not in active:
                del self._progress[peer]  # left the voters and silent: it is down, or out
        self._check_quorum_deadline_ms = self._now_ms + self.config.election_timeout_min_ms
        if not is_majority(voters, active.__contains__):
            logger.info(
                "node=%s steps down: only %d of %d voters active",
                self.node_id,
                len(active.intersection(voters)),
                len(voters),
            )
            self._become_follower(out, self._term, None)

    def _send_snapshot(self, peer: NodeId, out: list[Action]) -> None:
        s = self._log.snapshot
        out.append(Send(peer, InstallSnapshot(self._term, s.index, s.term, s.height, s.block_hash)))

    def _broadcast_heartbeat(self, out: list[Action]) -> None:
        for peer, pr in self._progress.items():
            changes = self._members.changes if pr.match < self._commit_index else ()
            out.append(
                Send(peer, Heartbeat(self._term, min(pr.match, self._commit_index), changes))
            )

    # --- membership (rules in consensus/raft_membership.py) ----------------------------------

    def _targets(self) -> frozenset[NodeId]:
        """Whom a leader replicates to: every voter from the next height on (a voter leaving at
        E is sent entries until everything below E is committed)."""
        return self._members.members_from(self._commit_height + 1) - {self.node_id}

    def _is_out(self) -> bool:
        return self.node_id not in self._members.members_from(self._commit_height + 1)

    def _may_campaign(self) -> bool:
        # A voter at the height after its log (it may lead into it) or at its last height: a
        # voter leaving at E that alone holds block E - 1 must be able to lead, commit it and
        # hand over, or nobody could win (its log is more up to date than anyone's).
        last = self._log.last_height
        return any(self.node_id in self._members.voters_at(h) for h in (last, last + 1))

    def _reset_election_timer(self) -> None:
        low = self.config.election_timeout_min_ms
        high = self.config.election_timeout_max_ms
        self._election_deadline_ms = self._now_ms + self._rng.randrange(low, high)

    def _voting_height(self, index: int) -> int:
        # A no-op belongs to its leader's term, which works towards the next block: elections
        # count in the set of that block (rule 2), so its no-op counts there too. Else a voter
        # removed at E would be needed to commit the no-op of the leader that took over at E.
        entry = self._log.entry(index)
        return entry.height if entry.is_block else entry.height + 1

    def _match_of(self, node: NodeId) -> int:
        if node == self.node_id:
            return self._log.last_index
        pr = self._progress.get(node)
        return pr.match if pr is not None else 0

    # --- commit, apply, compact, sync, persist -----------------------------------------------

    def _adopt_snapshot(self, marker: SnapshotMarker, out: list[Action]) -> None:
        assert marker.height <= self._commit_height and marker.index > self._commit_index
        logger.info(
            "node=%s adopts snapshot index=%d height=%d", self.node_id, marker.index, marker.height
        )
        self._persist(out, self._log.install_snapshot(marker))
        self._commit_index = marker.index
        self._applied_index = max(self._applied_index, marker.index)

    def _commit_to(self, index: int, out: list[Action]) -> None:
        assert index > self._commit_index, "the commit index only moves forward"
        assert index <= self._log.last_index
        self._commit_index = index
        self._apply_committed(out)

    def _apply_committed(self, out: list[Action]) -> None:
        while self._applied_index < self._commit_index:
            index = self._applied_index + 1
            entry = self._log.entry(index)
            if entry.is_block and entry.height > self._commit_height:
                if entry.height != self._commit_height + 1:
                    self._want_sync(entry.height - 1)
                    break
                assert entry.payload is not None
                out.append(Commit(entry.height, entry.block_hash, entry.payload))
                self._commit_height = entry.height
                self._applied_hash = entry.block_hash
            elif entry.is_block and entry.height == self._commit_height:
                assert entry.block_hash == self._applied_hash, (
                    f"committed entry {index} disagrees with applied block {entry.height}"
                )
            self._applied_index = index
        self._maybe_compact(out)

    def _maybe_compact(self, out: list[Action]) -> None:
        if self._applied_index - self._log.snapshot.index <= self.config.log_compaction_entries:
            return
        index = self._applied_index - self.config.log_retained_entries
        entry = self._log.entry(index)
        assert entry.height <= self._commit_height
        marker = SnapshotMarker(index, entry.term, entry.height, entry.block_hash)
        logger.debug("node=%s compacts log to %d", self.node_id, index)
        self._persist(out, self._log.compact_to(marker))
        if self._members.prune_below(marker.height):
            self._persist(out, [self._members.record()])

    def _want_sync(self, height: int) -> None:
        self._sync_height = max(self._sync_height, height)

    def _maybe_request_sync(self, out: list[Action]) -> None:
        if self._commit_height >= self._sync_height:
            return
        requested = self._sync_requested_ms
        if requested is not None and self._now_ms - requested < self.config.sync_retry_ms:
            return
        source = self._leader
        if source is None or source == self.node_id:
            peers = sorted(self._members.members_from(self._commit_height) - {self.node_id})
            if not peers:
                return
            source = peers[self._rng.randrange(len(peers))]
        self._sync_requested_ms = self._now_ms
        # A long sync is asked for again every sync_retry_ms while it runs; say so once.
        repeat = self._sync_logged_height == self._commit_height
        self._sync_logged_height = self._commit_height
        logger.log(
            logging.DEBUG if repeat else logging.INFO,
            "node=%s requests sync from %s at height %d",
            self.node_id,
            source,
            self._commit_height + 1,
        )
        out.append(RequestSync(source, self._commit_height + 1))

    def _hard_state_record(self) -> Record:
        return hard_state_record(HardState(self._term, self._voted_for))

    @staticmethod
    def _persist(out: list[Action], records: list[Record]) -> None:
        if records:
            out.append(Persist(tuple(records)))
