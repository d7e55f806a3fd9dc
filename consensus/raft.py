"""The Raft engine: a pure state machine that orders blocks among crash-fault validators.

Leader election with randomized timeouts, PreVote and CheckQuorum; log replication with
batching and pipelining; commit by majority of current-term entries only (Raft Figure 8);
durable term, vote and log through `Persist` actions that precede whatever depends on them;
log compaction behind the applied height; followers that need compacted entries fetch the
committed blocks through the driver (`RequestSync`) and adopt the leader's snapshot marker.
The voter set changes with block height (`reconfigure`; the rules and why they are safe are in
consensus/raft_membership.py).

Raft indices are not heights: a new leader appends a no-op entry (no block) so it can commit
entries of earlier terms. `commit_index` is Raft's (volatile); `commit_height` is the block
height the driver has applied, which survives restarts in the block store.

Driver contract beyond `consensus.engine`: rebuild with every record still persisted (keys
`raft/...`) and with the block store's applied height and tip hash; commits at or below that
height are never emitted again. On `RequestSync(peer, h)` fetch committed blocks from `h` on
(a partial batch is fine), apply them, then call `synced(top_height, top_hash)`; fetch nothing,
call nothing: the engine asks again after `sync_retry_ms`. Call `reconfigure` for a change
decided in block b before this node proposes block b + 2 (it must have executed b by then
anyway): a proposer must know the voters up to two heights above its block (rule 3 of
raft_membership.py); an engine built from the genesis set gets the stored set the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from consensus.engine import (
    Action,
    BlockProposal,
    Broadcast,
    EngineStatus,
    NodeId,
    Send,
    fills_offered_slot,
)
from consensus.raft_log import SnapshotMarker
from consensus.raft_membership import commit_point, is_majority
from consensus.raft_messages import (
    RAFT_MESSAGE_TYPES,
    AppendEntries,
    AppendResponse,
    ConfigChange,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    RequestVote,
    TimeoutNow,
    VoteResponse,
    entry_bytes,
    is_well_formed,
)
from consensus.raft_progress import Progress, ProgressState
from consensus.raft_state import (
    CANDIDATE,
    FOLLOWER,
    LEADER,
    OBSERVER,
    PRE_CANDIDATE,
    RaftState,
)

logger = logging.getLogger(__name__)


FROM_LEADER = (AppendEntries, Heartbeat, InstallSnapshot)


class RaftEngine(RaftState):
    """One validator's Raft state machine; see the module docstring for the contract."""

    # --- Engine interface --------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Action]:
        self._now_ms = now_ms
        self._started = True
        self._reset_election_timer()
        out: list[Action] = []
        self._persist(out, self._startup_records)
        self._startup_records = []
        logger.info(
            "node=%s raft start term=%d log=%d..%d commit_height=%d",
            self.node_id,
            self._term,
            self._log.first_index,
            self._log.last_index,
            self._commit_height,
        )
        self._maybe_request_sync(out)
        return out

    def tick(self, now_ms: int) -> list[Action]:
        self._now_ms = max(self._now_ms, now_ms)
        out: list[Action] = []
        if self._heard_leader:
            # The leader's messages since the last tick were handled at that tick's time; a
            # follower busy for a while (persisting a big append) would otherwise time out on
            # a leader it has just heard. Count the contact as now, as etcd's logical ticks do.
            self._heard_leader = False
            if self._role == FOLLOWER and self._leader is not None:
                self._leader_contact_ms = self._now_ms
                self._reset_election_timer()
        if self._role == LEADER:
            if self._now_ms >= self._heartbeat_deadline_ms:
                self._heartbeat_deadline_ms = self._now_ms + self.config.heartbeat_interval_ms
                self._broadcast_heartbeat(out)
            if self.config.check_quorum and self._now_ms >= self._check_quorum_deadline_ms:
                self._check_quorum(out)
            self._maybe_hand_over(out)
        elif self._is_out():
            pass  # no elections; a sync it asked for still goes out
        elif self._now_ms >= self._election_deadline_ms:
            if self._may_campaign():
                self._campaign(out, pre_vote=self.config.pre_vote)
            else:
                self._reset_election_timer()
        self._maybe_request_sync(out)
        return out

    def receive(self, sender: NodeId, msg: Any) -> list[Action]:
        if not isinstance(msg, RAFT_MESSAGE_TYPES):
            logger.debug("node=%s drops %s from %s", self.node_id, type(msg).__name__, sender)
            return []
        if not is_well_formed(msg, self.config.append_entries_max):
            logger.debug("node=%s drops malformed %s from %s", self.node_id, msg, sender)
            return []
        out: list[Action] = []
        changes = msg.changes if isinstance(msg, AppendEntries | Heartbeat | RequestVote) else ()
        if changes and self._members.learn(changes):
            # Before anything else: the entries may be at heights these changes govern (rule
            # 3), and a node voted in learns here that it votes (it may hear of it first here).
            self._members_changed(out)
        # A leader still hears a voter that left from a response until it drops its progress.
        tracked = sender in self._progress and isinstance(msg, AppendResponse | HeartbeatResponse)
        if sender == self.node_id or not (
            tracked or sender in self._members.members_from(self._commit_height)
        ):
            logger.debug("node=%s drops %s from non-voter %s", self.node_id, msg, sender)
            return out
        if self._role != LEADER and self._is_out() and not isinstance(msg, FROM_LEADER):
            # Out: no votes, no campaigns. It still follows a leader that sends it entries: it
            # holds them truly, and its acknowledgements may be what commits the last heights
            # it voted on (a leader that took over may not know they are committed).
            return out
        if not self._settle_term(sender, msg, out):
            return out
        match msg:
            case AppendEntries():
                self._on_append(sender, msg, out)
            case AppendResponse():
                self._on_append_response(sender, msg, out)
            case Heartbeat():
                self._on_heartbeat(sender, msg, out)
            case HeartbeatResponse():
                self._on_heartbeat_response(sender, out)
            case RequestVote():
                self._on_vote_request(sender, msg, out)
            case VoteResponse():
                self._on_vote_response(sender, msg, out)
            case InstallSnapshot():
                self._on_install_snapshot(sender, msg, out)
            case TimeoutNow():
                self._on_timeout_now(sender, out)
        self._maybe_request_sync(out)
        return out

    def propose(self, block: BlockProposal) -> list[Action]:
        if not fills_offered_slot(self.status, block):
            logger.debug("node=%s refuses proposal at height %d", self.node_id, block.height)
            return []
        out: list[Action] = []
        entry = Entry(
            self._term, self._log.last_index + 1, block.height, block.block_hash, block.payload
        )
        self._persist(out, self._log.append(entry))
        for peer in list(self._progress):
            self._send_append(peer, out)
        self._maybe_advance_commit(out)
        return out

    def synced(self, height: int, block_hash: bytes) -> list[Action]:
        out: list[Action] = []
        if height > self._commit_height:
            logger.info("node=%s synced to height %d", self.node_id, height)
            self._commit_height = height
            self._applied_hash = block_hash
            # Done, or a partial batch arrived: either way the next request may go out at once.
            self._sync_requested_ms = None
        marker = self._pending_snapshot
        if marker is not None and self._commit_height >= marker.height:
            self._pending_snapshot = None
            if marker.index > self._commit_index:
                self._adopt_snapshot(marker, out)
                leader = self._leader
                if leader is not None and leader != self.node_id:
                    out.append(Send(leader, AppendResponse(self._term, True, marker.index, 0)))
        self._apply_committed(out)
        self._maybe_request_sync(out)
        return out

    def reconfigure(self, effective_height: int, validators: tuple[NodeId, ...]) -> list[Action]:
        """From height `effective_height` on, `validators` vote. Idempotent; ValueError for a
        change of more than one voter (or one contradicting a known change) that is not yet
        in effect. Called before `start`, its records go out with `start`'s actions."""
        if len(set(validators)) != len(validators):
            raise ValueError(f"validators must be distinct: {validators!r}")
        change = ConfigChange(effective_height, tuple(sorted(validators)))
        if not self._members.add(change, self._commit_height):
            return []
        logger.info(
            "node=%s voters from height %d: %s (commit height %d)",
            self.node_id,
            effective_height,
            ",".join(change.voters),
            self._commit_height,
        )
        if not self._started:
            self._startup_records.append(self._members.record())
            return []
        out: list[Action] = []
        self._members_changed(out)
        return out

    def voters_at(self, height: int) -> tuple[NodeId, ...]:
        """The voters in effect at `height`, as far as this engine knows."""
        return self._members.voters_at(height)

    @property
    def status(self) -> EngineStatus:
        next_height: int | None = None
        next_parent: bytes | None = None
        in_flight = self._log.last_height - self._commit_height
        if (
            self._role == LEADER
            and 0 <= in_flight < self.config.proposals_in_flight_max
            and self.node_id in self._members.voters_at(self._log.last_height + 1)
        ):
            next_height = self._log.last_height + 1
            next_parent = self._log.last_block_hash
        role = CANDIDATE if self._role == PRE_CANDIDATE else self._role
        if self._role != LEADER and self._is_out():
            role = OBSERVER
        return EngineStatus(
            role=role,
            round=self._term,
            leader=self._leader,
            commit_height=self._commit_height,
            next_height=next_height,
            next_parent_hash=next_parent,
            proposals_in_flight=self.config.proposals_in_flight_max if self._role == LEADER else 0,
            extra={
                "phase": self._role,
                "commit_index": self._commit_index,
                "last_index": self._log.last_index,
                "snapshot_index": self._log.snapshot.index,
                "uncommitted_blocks": in_flight,
            },
        )

    # --- terms, roles and elections ----------------------------------------------------------

    def _settle_term(self, sender: NodeId, msg: Any, out: list[Action]) -> bool:
        """Apply the term rules; return False when the message needs no further handling."""
        from_leader = isinstance(msg, FROM_LEADER)
        if msg.term > self._term:
            if isinstance(msg, RequestVote):
                if self._in_lease() and not msg.transfer:
                    # CheckQuorum's lease: a live leader exists, so a disruptive (pre)candidate
                    # (e.g. one rejoining after a partition) is ignored.
                    return False
                if not msg.pre_vote:
                    self._become_follower(out, msg.term, None)
            elif isinstance(msg, VoteResponse) and msg.pre_vote and msg.granted:
                pass  # a granted pre-vote echoes the term we would campaign in
            else:
                self._become_follower(out, msg.term, sender if from_leader else None)
        elif msg.term < self._term:
            if from_leader:
                # Tell a stale leader about the newer term so it steps down.
                out.append(Send(sender, AppendResponse(self._term, False, 0, 0)))
            elif isinstance(msg, RequestVote) and msg.pre_vote:
                out.append(Send(sender, VoteResponse(self._term, False, True)))
            return False
        elif from_leader:
            if self._role == LEADER:
                # Impossible among correct validators (one leader per term; the simulator
                # checks it). A peer that claims it anyway is misbehaving: drop its message
                # rather than let one message stop this node.
                logger.error(
                    "node=%s leader of term %d got %s from %s claiming the same term; dropped",
                    self.node_id,
                    self._term,
                    type(msg).__name__,
                    sender,
                )
                return False
            if self._role != FOLLOWER or self._leader != sender:
                self._become_follower(out, self._term, sender)
        if from_leader:
            self._leader_contact_ms = self._now_ms
            self._reset_election_timer()
            self._heard_leader = True
        return True

    def _campaign(self, out: list[Action], pre_vote: bool, transfer: bool = False) -> None:
        self._reset_election_timer()
        self._leader = None
        self._votes = {self.node_id: True}
        # Rule 2: the set that votes on the block this node would propose next.
        self._election_voters = self._members.voters_at(self._log.last_height + 1)
        if pre_vote:
            self._role = PRE_CANDIDATE
            term = self._term + 1
        else:
            self._role = CANDIDATE
            self._term += 1
            self._voted_for = self.node_id
            self._persist(out, [self._hard_state_record()])
            term = self._term
        logger.info("node=%s %s for term %d", self.node_id, self._role, term)
        if is_majority(self._election_voters, self._votes.__contains__):
            self._won_votes(out)
            return
        last_index, last_term = self._log.last_index, self._log.last_term
        request = RequestVote(
            term, last_index, last_term, pre_vote, transfer, self._members.changes
        )
        out.append(Broadcast(request))

    def _on_vote_request(self, sender: NodeId, msg: RequestVote, out: list[Action]) -> None:
        up_to_date = self._log.is_up_to_date(msg.last_index, msg.last_term)
        if msg.pre_vote:
            granted = msg.term > self._term and up_to_date
            out.append(
                Send(sender, VoteResponse(msg.term if granted else self._term, granted, True))
            )
            return
        assert msg.term == self._term
        free = self._voted_for == sender or (self._voted_for is None and self._leader is None)
        granted = free and up_to_date
        if granted:
            if self._voted_for != sender:
                self._voted_for = sender
                self._persist(out, [self._hard_state_record()])
            self._reset_election_timer()
        out.append(Send(sender, VoteResponse(self._term, granted, False)))

    def _on_vote_response(self, sender: NodeId, msg: VoteResponse, out: list[Action]) -> None:
        if self._role == PRE_CANDIDATE:
            if not msg.pre_vote or (msg.granted and msg.term != self._term + 1):
                return
        elif self._role == CANDIDATE:
            if msg.pre_vote or msg.term != self._term:
                return
        else:
            return
        voters = self._election_voters
        if sender not in voters:
            return  # a vote from outside the set this election needs counts for nothing
        self._votes[sender] = msg.granted
        if is_majority(voters, lambda v: self._votes.get(v) is True):
            self._won_votes(out)
        elif not is_majority(voters, lambda v: self._votes.get(v) is not False):
            self._become_follower(out, self._term, None)  # a majority can no longer grant

    def _won_votes(self, out: list[Action]) -> None:
        if self._role == PRE_CANDIDATE:
            self._campaign(out, pre_vote=False)
        else:
            self._become_leader(out)

    def _become_leader(self, out: list[Action]) -> None:
        assert self._role == CANDIDATE
        self._role = LEADER
        self._leader = self.node_id
        self._votes = {}
        last = self._log.last_index
        self._progress = {p: Progress(match=0, next=last + 1) for p in sorted(self._targets())}
        logger.info("node=%s leader term=%d last_index=%d", self.node_id, self._term, last)
        noop = Entry(self._term, last + 1, self._log.last_height, self._log.last_block_hash, None)
        self._persist(out, self._log.append(noop))
        self._heartbeat_deadline_ms = self._now_ms + self.config.heartbeat_interval_ms
        self._check_quorum_deadline_ms = self._now_ms + self.config.election_timeout_min_ms
        for peer in list(self._progress):
            self._send_append(peer, out, allow_empty=True)
        self._maybe_advance_commit(out)

    # --- membership (rules in consensus/raft_membership.py) ----------------------------------

    def _members_changed(self, out: list[Action]) -> None:
        self._persist(out, [self._members.record()])
        self._refresh_progress(out)
        self._maybe_hand_over(out)

    def _refresh_progress(self, out: list[Action]) -> None:
        """A leader tracks a voter from the moment it hears of it (probing it as any follower,
        which a snapshot marker and block sync bring level if need be) and forgets a voter
        once every height it votes on is committed and it holds them."""
        if self._role != LEADER:
            return
        targets = self._targets()
        for peer, pr in list(self._progress.items()):
            if peer not in targets and pr.match >= self._commit_index:
                # A voter that left is forgotten only once it holds the whole committed log:
                # this last heartbeat lets it commit every height it voted on, so it knows it
                # is out (rather than waiting as a follower for a leader that ignores it).
                del self._progress[peer]
                out.append(Send(peer, Heartbeat(self._term, self._commit_index)))
        for peer in sorted(targets - self._progress.keys()):
            self._progress[peer] = Progress(match=0, next=self._log.last_index + 1)
            self._send_append(peer, out, allow_empty=True)

    def _maybe_hand_over(self, out: list[Action]) -> None:
        """Rule 4: a leader that is no voter at its next height hands over once its log is
        committed, to a voter holding all of it, which campaigns at once (no election timeout,
        no pre-vote); if none holds it yet, the next acknowledgement or tick tries again."""
        if self._role != LEADER or self._commit_index < self._log.last_index:
            return
        voters = self._members.voters_at(self._log.last_height + 1)
        if self.node_id in voters:
            return
        ready = [
            v
            for v in voters
            if v in self._progress and self._progress[v].match >= self._commit_index
        ]
        if not ready:
            return
        target = min(ready)
        logger.info(
            "node=%s leaves the voters at height %d: hands leadership to %s",
            self.node_id,
            self._log.last_height + 1,
            target,
        )
        out.append(Send(target, TimeoutNow(self._term)))
        self._become_follower(out, self._term, None)

    def _on_timeout_now(self, sender: NodeId, out: list[Action]) -> None:
        if self._role == LEADER or not self._may_campaign():
            return
        logger.info("node=%s takes over from %s in term %d", self.node_id, sender, self._term + 1)
        self._campaign(out, pre_vote=False, transfer=True)

    # --- replication: leader side ------------------------------------------------------------

    def _send_append(self, peer: NodeId, out: list[Action], allow_empty: bool = False) -> None:
        pr = self._progress.get(peer)
        if pr is None or pr.is_paused(
            self.config.appends_in_flight_max, self.config.appends_in_flight_bytes_max
        ):
            return
        snapshot = self._log.snapshot
        if pr.next <= snapshot.index:
            pr.become_snapshot(snapshot.index)
            self._send_snapshot(peer, out)
            return
        prev_index = pr.next - 1
        prev_term = self._log.term_at(prev_index)
        assert prev_term is not None
        entries: tuple[Entry, ...] = ()
        if pr.next <= self._log.last_index:
            entries = self._log.entries_from(
                pr.next, self.config.append_entries_max, self.config.append_entries_bytes_max
            )
        if not entries and not allow_empty:
            return
        prev_height = (
            self._log.entry(prev_index).height if prev_index > snapshot.index else snapshot.height
        )
        changes = self._members.changes_above(prev_height)  # rule 3
        msg = AppendEntries(self._term, prev_index, prev_term, entries, self._commit_index, changes)
        out.append(Send(peer, msg))
        pr.sent_append(
            prev_index + len(entries), len(entries), sum(entry_bytes(e) for e in entries)
        )

    def _on_append_response(self, sender: NodeId, msg: AppendResponse, out: list[Action]) -> None:
        pr = self._progress.get(sender)
        if self._role != LEADER or pr is None:
            return
        pr.recent_active = True
        if not msg.success:
            match_before = pr.match
            resend = pr.reject(msg.index, msg.hint_index)
            if pr.match < match_before:
                # A duplicated old rejection looks the same as a lost log tail; either way
                # probing from the follower's hint is safe (match only feeds commit counting,
                # and the commit index never moves back).
                logger.info(
                    "node=%s: %s rejects at or below its match %d (rejects %d): a stale reply "
                    "or a lost log tail; probing from its hint",
                    self.node_id,
                    sender,
                    match_before,
                    msg.index,
                )
            if resend:
                self._send_append(sender, out, allow_empty=True)
            return
        if msg.index > self._log.last_index:
            return  # not from this term's log: ignore rather than trust
        advanced = pr.acknowledge(msg.index)
        if pr.state is ProgressState.PROBE or (
            pr.state is ProgressState.SNAPSHOT and pr.match >= pr.snapshot_index
        ):
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            pr.become_probe()
        if advanced and self._maybe_advance_commit(out):
            # Tell everyone the new commit index now rather than at the next heartbeat.
            for peer in list(self._progress):
                self._send_append(peer, out, allow_empty=True)
            self._maybe_hand_over(out)
        for _ in range(self.config.appends_in_flight_max):
            before = len(out)
            self._send_append(sender, out)
            if len(out) == before:
                break
        self._refresh_progress(out)

    def _on_heartbeat_response(self, sender: NodeId, out: list[Action]) -> None:
        pr = self._progress.get(sender)
        if self._role != LEADER or pr is None:
            return
        pr.recent_active = True
        if pr.state is ProgressState.SNAPSHOT:
            self._send_snapshot(sender, out)
            return
        pr.heard_heartbeat()
        if pr.match < self._log.last_index:
            self._send_append(sender, out, allow_empty=True)

    def _maybe_advance_commit(self, out: list[Action]) -> bool:
        candidate = commit_point(
            self._members,
            self._commit_index,
            self._log.last_index,
            self._commit_height,
            self._voting_height,
            self._match_of,
        )
        # Figure 8: only an entry of the current term is committed by counting replicas.
        if candidate <= self._commit_index or self._log.term_at(candidate) != self._term:
            return False
        self._commit_to(candidate, out)
        self._refresh_progress(out)  # a voter that left may be forgotten now
        return True

    # --- replication: follower side ----------------------------------------------------------

    def _on_append(self, sender: NodeId, msg: AppendEntries, out: list[Action]) -> None:
        prev_index, prev_term = msg.prev_index, msg.prev_term
        entries = msg.entries
        if prev_index < self._commit_index:
            # The committed prefix already matches the leader's log: skip it.
            skip = self._commit_index - prev_index
            entries = entries[skip:]
            prev_index = self._commit_index
            committed_term = self._log.term_at(prev_index)
            assert committed_term is not None
            prev_term = committed_term
        if self._log.term_at(prev_index) != prev_term:
            hint = self._log.conflict_hint(min(prev_index, self._log.last_index), prev_term)
            out.append(Send(sender, AppendResponse(self._term, False, msg.prev_index, hint)))
            return
        self._persist(out, self._log.merge(entries, self._commit_index))
        last_new = max(prev_index + len(entries), self._commit_index)
        if min(msg.leader_commit, last_new) > self._commit_index:
            self._commit_to(min(msg.leader_commit, last_new), out)
        out.append(Send(sender, AppendResponse(self._term, True, last_new, 0)))

    def _on_heartbeat(self, sender: NodeId, msg: Heartbeat, out: list[Action]) -> None:
        commit = min(msg.commit, self._log.last_index)
        if commit > self._commit_index:
            self._commit_to(commit, out)
        out.append(Send(sender, HeartbeatResponse(self._term)))

    def _on_install_snapshot(self, sender: NodeId, msg: InstallSnapshot, out: list[Action]) -> None:
        marker = SnapshotMarker(msg.index, msg.snapshot_term, msg.height, msg.block_hash)
        if marker.index <= self._commit_index:
            out.append(Send(sender, AppendResponse(self._term, True, self._commit_index, 0)))
            return
        if self._commit_height >= marker.height:
            self._adopt_snapshot(marker, out)
            out.append(Send(sender, AppendResponse(self._term, True, marker.index, 0)))
            return
        # The blocks are only in block stores now: fetch them, then adopt the marker.
        self._pending_snapshot = marker
        self._want_sync(marker.height)
