"""One Raft engine driven by hand: exact messages in, exact actions out.

These pin down rules a simulation hits only by luck: Figure 8 (no commit of an old-term entry
by counting replicas), votes persisted before they are sent and remembered after a restart,
the snapshot-then-sync handshake, commits never re-emitted after a restart, the lease against
disruptive pre-votes, and malformed input dropped. Engines are built from hand-made persisted
records, exactly as a driver rebuilds them after a crash.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from consensus.engine import (
    GENESIS_HASH,
    Action,
    BlockProposal,
    Broadcast,
    Commit,
    Persist,
    RequestSync,
    Send,
)
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig, RaftConfigError
from consensus.raft_log import RECORDS, HardState, RaftStateError, entry_key, hard_state_record
from consensus.raft_messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    Heartbeat,
    InstallSnapshot,
    RequestVote,
    VoteResponse,
)

FIVE = ["a", "b", "c", "d", "e"]
THREE = ["a", "b", "c"]
CONFIG = RaftConfig(
    election_timeout_min_ms=100, election_timeout_max_ms=200, heartbeat_interval_ms=20
)
LATER_MS = 10_000  # past any election timeout


def _hash(n: int) -> bytes:
    return bytes([n]) * 32


def _records(term: int, voted_for: str | None, entries: list[Entry]) -> dict[str, bytes]:
    key, value = hard_state_record(HardState(term, voted_for))
    assert value is not None
    records = {key: value}
    for entry in entries:
        records[entry_key(entry.index)] = RECORDS.encode(entry)
    return records


def _apply(records: dict[str, bytes], actions: list[Action]) -> None:
    """What a driver does with Persist actions."""
    for action in actions:
        if isinstance(action, Persist):
            for key, value in action.records:
                if value is None:
                    records.pop(key, None)
                else:
                    records[key] = value


def _of(kind: type[Any], actions: list[Action]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def _sent(actions: list[Action], kind: type[Any]) -> list[tuple[str, Any]]:
    return [(a.to, a.msg) for a in actions if isinstance(a, Send) and isinstance(a.msg, kind)]


def _elect(engine: RaftEngine, voters: list[str]) -> list[Action]:
    """Time out, win the pre-vote and the vote from `voters`; return every action."""
    actions = engine.tick(LATER_MS)
    pre = [a.msg for a in actions if isinstance(a, Broadcast)]
    assert pre and isinstance(pre[0], RequestVote) and pre[0].pre_vote
    for voter in voters:
        actions += engine.receive(voter, VoteResponse(pre[0].term, True, True))
    term = engine.status.round
    for voter in voters:
        actions += engine.receive(voter, VoteResponse(term, True, False))
    assert engine.status.role == "leader"
    return actions


def test_config_refuses_inconsistent_timings() -> None:
    """Relations between settings are checked when the config is built."""
    with pytest.raises(RaftConfigError):
        RaftConfig(election_timeout_min_ms=300, election_timeout_max_ms=300)
    with pytest.raises(RaftConfigError):
        RaftConfig(heartbeat_interval_ms=200, election_timeout_min_ms=300)
    with pytest.raises(RaftConfigError):
        RaftConfig(log_compaction_entries=10, log_retained_entries=10)
    with pytest.raises(RaftConfigError):
        RaftConfig(appends_in_flight_max=0)


def test_figure_8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    """Leader `a` of term 4 holds block 1 from term 2 at index 2. Index 2 reaching a majority
    must not commit it (a term-3 leader could still overwrite it); once the term-4 no-op at
    index 3 is on a majority, both commit and block 1 is emitted once."""
    entries = [Entry(1, 1, 0, GENESIS_HASH, None), Entry(2, 2, 1, _hash(1), b"block-1")]
    engine = RaftEngine("a", FIVE, _records(3, None, entries), random.Random(1), CONFIG)
    engine.start(0)
    _elect(engine, ["b", "c"])
    assert engine.status.round == 4
    actions: list[Action] = []
    for peer in ("b", "c", "d"):
        actions += engine.receive(peer, AppendResponse(4, True, 2, 0))
    assert _of(Commit, actions) == []
    assert engine.status.commit_height == 0
    # Why: `e`, holding a term-3 entry at index 2, can still win votes from replicas of it.
    replica = RaftEngine("c", FIVE, _records(4, "a", entries), random.Random(2), CONFIG)
    replica.start(0)
    vote = replica.receive("e", RequestVote(5, 2, 3, False))
    assert _sent(vote, VoteResponse) == [("e", VoteResponse(5, True, False))]
    for peer in ("b", "c"):
        actions += engine.receive(peer, AppendResponse(4, True, 3, 0))
    assert _of(Commit, actions) == [Commit(1, _hash(1), b"block-1")]
    assert engine.status.commit_height == 1


def test_vote_is_persisted_before_it_is_sent_and_survives_a_restart() -> None:
    """A granted vote is in a Persist that precedes the VoteResponse; an engine rebuilt from
    the records refuses a second candidate in that term but repeats the grant to the first."""
    records = _records(5, None, [])
    engine = RaftEngine("a", THREE, records, random.Random(2), CONFIG)
    engine.start(0)
    actions = engine.receive("b", RequestVote(6, 0, 0, False))
    persist_at = max(i for i, a in enumerate(actions) if isinstance(a, Persist))
    send_at = next(i for i, a in enumerate(actions) if isinstance(a, Send))
    assert persist_at < send_at
    assert _sent(actions, VoteResponse) == [("b", VoteResponse(6, True, False))]
    _apply(records, actions)
    restarted = RaftEngine("a", THREE, records, random.Random(3), CONFIG)
    restarted.start(0)
    assert _sent(restarted.receive("c", RequestVote(6, 0, 0, False)), VoteResponse) == [
        ("c", VoteResponse(6, False, False))
    ]
    assert _sent(restarted.receive("b", RequestVote(6, 0, 0, False)), VoteResponse) == [
        ("b", VoteResponse(6, True, False))
    ]


def test_vote_is_refused_to_a_candidate_with_a_less_up_to_date_log() -> None:
    """A candidate whose last term is older than ours gets no vote (election restriction)."""
    entries = [Entry(1, 1, 0, GENESIS_HASH, None), Entry(2, 2, 1, _hash(1), b"block-1")]
    engine = RaftEngine("a", THREE, _records(2, None, entries), random.Random(4), CONFIG)
    engine.start(0)
    refused = engine.receive("b", RequestVote(3, 5, 1, False))
    assert _sent(refused, VoteResponse) == [("b", VoteResponse(3, False, False))]


def test_follower_in_lease_ignores_a_pre_vote_from_a_rejoining_node() -> None:
    """Having just heard from its leader, a follower does not answer a pre-vote at all."""
    engine = RaftEngine("a", THREE, _records(4, None, []), random.Random(5), CONFIG)
    engine.start(0)
    engine.receive("b", Heartbeat(4, 0))
    assert engine.receive("c", RequestVote(5, 9, 4, True)) == []
    engine.tick(1)  # the leader's contact counts from the first tick after it
    engine.tick(CONFIG.election_timeout_min_ms + 2)  # lease over, no election yet
    granted = engine.receive("c", RequestVote(5, 9, 4, True))
    assert _sent(granted, VoteResponse) == [("c", VoteResponse(5, True, True))]
    assert engine.status.round == 4  # a pre-vote changes no state


def test_follower_busy_for_longer_than_an_election_timeout_does_not_campaign_on_a_leader_it_heard(
) -> None:
    """A follower stalled (e.g. persisting a big append) handles the leader's queued heartbeat
    and then a tick far in the future: the heartbeat counts as heard at that tick, so no
    election starts; with the leader silent after it, one does."""
    engine = RaftEngine("a", THREE, _records(4, None, []), random.Random(5), CONFIG)
    engine.start(0)
    engine.receive("b", Heartbeat(4, 0))
    busy_until = 10 * CONFIG.election_timeout_max_ms
    engine.receive("b", Heartbeat(4, 0))  # queued while busy, handled before the tick
    actions = engine.tick(busy_until)
    assert _of(Broadcast, actions) == [] and engine.status.leader == "b"
    actions = engine.tick(busy_until + CONFIG.election_timeout_max_ms)
    assert [type(a.msg) for a in _of(Broadcast, actions)] == [RequestVote]


def test_appends_to_a_lagging_follower_are_bounded_by_bytes_and_always_carry_an_entry() -> None:
    """Big blocks: each AppendEntries carries entries up to the byte budget (one entry even when
    it alone is over it), and the unacknowledged appends to a follower stay within the
    in-flight byte bound (plus the one append that crossed it)."""
    mib = 1024 * 1024
    config = RaftConfig(
        election_timeout_min_ms=100, election_timeout_max_ms=200, heartbeat_interval_ms=20,
        append_entries_bytes_max=8 * mib, appends_in_flight_bytes_max=8 * mib,
    )
    sizes = [3 * mib] * 5 + [10 * mib]
    entries = [Entry(1, 1, 0, GENESIS_HASH, None)] + [
        Entry(1, i + 2, i + 1, _hash(i + 1), bytes(size)) for i, size in enumerate(sizes)
    ]
    engine = RaftEngine("a", THREE, _records(1, None, entries), random.Random(3), config)
    engine.start(0)
    _elect(engine, ["b"])
    term, last = engine.status.round, len(entries) + 1  # the new leader's no-op
    actions = engine.receive("b", AppendResponse(term, False, last - 1, 0))
    outstanding = [m for _, m in _sent(actions, AppendEntries)]
    delivered: list[int] = []
    while outstanding:
        sizes_now = [sum(len(e.payload or b"") for e in m.entries) for m in outstanding]
        assert sum(sizes_now[:-1]) < 8 * mib, sizes_now  # paused once the bound is reached
        msg = outstanding.pop(0)
        payload = [len(e.payload or b"") for e in msg.entries]
        assert len(msg.entries) >= 1
        assert len(msg.entries) == 1 or sum(payload) <= 8 * mib, payload
        assert msg.prev_index == (delivered[-1] if delivered else 0)
        delivered += [e.index for e in msg.entries]
        acked = engine.receive("b", AppendResponse(term, True, delivered[-1], 0))
        outstanding += [m for to, m in _sent(acked, AppendEntries) if to == "b" and m.entries]
    assert delivered == list(range(1, last + 1))


def test_single_validator_commits_its_proposals_and_not_again_after_restart() -> None:
    """One validator elects itself and commits each proposal; rebuilt with the store's height,
    it emits no commit at or below that height and offers the next slot after the tip."""
    records: dict[str, bytes] = {}
    engine = RaftEngine("a", ["a"], records, random.Random(6), CONFIG)
    _apply(records, engine.start(0))
    _apply(records, engine.tick(LATER_MS))
    commits: list[Commit] = []
    for height in (1, 2, 3):
        status = engine.status
        assert status.next_height == height and status.next_parent_hash is not None
        actions = engine.propose(
            BlockProposal(height, status.next_parent_hash, _hash(height), b"p%d" % height)
        )
        _apply(records, actions)
        commits += _of(Commit, actions)
    assert [c.height for c in commits] == [1, 2, 3]
    restarted = RaftEngine(
        "a", ["a"], records, random.Random(7), CONFIG, commit_height=3, last_block_hash=_hash(3)
    )
    actions = restarted.start(0) + restarted.tick(LATER_MS)
    assert _of(Commit, actions) == []
    assert restarted.status.next_height == 4
    assert restarted.status.next_parent_hash == _hash(3)


def test_restart_behind_the_log_reemits_the_unapplied_commits_in_order() -> None:
    """If the driver applied only block 1 of 3 committed ones before crashing, the rebuilt
    engine emits commits 2 and 3 (once each, in order) when it learns they are committed."""
    records: dict[str, bytes] = {}
    engine = RaftEngine("a", ["a"], records, random.Random(8), CONFIG)
    _apply(records, engine.start(0) + engine.tick(LATER_MS))
    for height in (1, 2, 3):
        status = engine.status
        assert status.next_parent_hash is not None
        _apply(
            records,
            engine.propose(
                BlockProposal(height, status.next_parent_hash, _hash(height), b"p%d" % height)
            ),
        )
    restarted = RaftEngine(
        "a", ["a"], records, random.Random(9), CONFIG, commit_height=1, last_block_hash=_hash(1)
    )
    actions = restarted.start(0) + restarted.tick(LATER_MS)
    assert [(c.height, c.block_hash) for c in _of(Commit, actions)] == [
        (2, _hash(2)),
        (3, _hash(3)),
    ]


def test_follower_behind_a_snapshot_requests_sync_then_adopts_the_marker() -> None:
    """InstallSnapshot beyond our blocks gives RequestSync to the leader; after `synced` the
    marker is persisted, the leader hears success at the marker, and replication resumes."""
    records = _records(1, None, [])
    engine = RaftEngine("a", THREE, records, random.Random(10), CONFIG)
    engine.start(0)
    actions = engine.receive("b", InstallSnapshot(2, 50, 2, 40, _hash(40)))
    assert _of(RequestSync, actions) == [RequestSync("b", 1)]
    assert _sent(actions, AppendResponse) == []
    after_sync = engine.synced(40, _hash(40))
    assert _of(Persist, after_sync)
    assert _sent(after_sync, AppendResponse) == [("b", AppendResponse(2, True, 50, 0))]
    append = AppendEntries(2, 50, 2, (Entry(2, 51, 41, _hash(41), b"block-41"),), 51)
    assert _of(Commit, engine.receive("b", append)) == [Commit(41, _hash(41), b"block-41")]
    assert engine.status.commit_height == 41


def test_follower_rejects_a_gap_and_hints_where_its_log_ends() -> None:
    """An append whose previous entry we lack is refused with our last index as the hint."""
    entries = [Entry(1, 1, 0, GENESIS_HASH, None)]
    engine = RaftEngine("a", THREE, _records(1, None, entries), random.Random(11), CONFIG)
    engine.start(0)
    reply = engine.receive("b", AppendEntries(2, 5, 2, (), 0))
    assert _sent(reply, AppendResponse) == [("b", AppendResponse(2, False, 5, 1))]


def test_leader_pipelines_up_to_the_proposal_bound() -> None:
    """A leader offers slot after slot on its own uncommitted blocks, then stops offering."""
    config = RaftConfig(
        election_timeout_min_ms=100,
        election_timeout_max_ms=200,
        heartbeat_interval_ms=20,
        proposals_in_flight_max=3,
    )
    engine = RaftEngine("a", THREE, {}, random.Random(12), config)
    engine.start(0)
    _elect(engine, ["b"])
    for height in (1, 2, 3):
        status = engine.status
        assert status.next_height == height and status.next_parent_hash is not None
        actions = engine.propose(
            BlockProposal(height, status.next_parent_hash, _hash(height), b"x")
        )
        assert _of(Persist, actions)
        assert status.proposals_in_flight == 3
    assert engine.status.next_height is None
    stale = engine.propose(BlockProposal(4, _hash(3), _hash(4), b"x"))
    assert stale == []


def test_malformed_or_foreign_messages_are_dropped() -> None:
    """Non-contiguous entries, unknown senders and foreign types produce no action."""
    engine = RaftEngine("a", THREE, {}, random.Random(13), CONFIG)
    engine.start(0)
    gap = AppendEntries(1, 0, 0, (Entry(1, 2, 1, _hash(1), b"x"),), 0)
    assert engine.receive("b", gap) == []
    assert engine.receive("mallory", Heartbeat(1, 0)) == []
    assert engine.receive("b", "not a message") == []
    assert engine.receive("b", Heartbeat(-1, 0)) == []
    assert engine.status.round == 0


def test_corrupt_persisted_records_stop_the_engine_loudly() -> None:
    """Undecodable records raise RaftStateError instead of starting from a guess."""
    with pytest.raises(RaftStateError):
        RaftEngine("a", THREE, {"raft/hard_state": b"\xc1garbage"}, random.Random(14), CONFIG)
