"""Raft voter-set changes driven by hand: a few engines joined by a lossless, in-order pump.

These pin down the rules of consensus/raft_membership.py one at a time: a voter added at E
is tracked at once and counts for blocks from E on; a removed follower's acknowledgements and
votes count for nothing once its heights are committed; a leader that leaves hands over with
TimeoutNow and the successor wins without waiting out an election timeout (voters in
CheckQuorum's lease still vote for it); the set survives a restart and repeated calls are
harmless; and a change of more than one voter at a time is refused.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from typing import Any

import pytest

from consensus.engine import (
    GENESIS_HASH,
    Action,
    BlockProposal,
    Broadcast,
    Commit,
    Persist,
    Send,
)
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig
from consensus.raft_membership import KEY_MEMBERSHIP
from consensus.raft_messages import (
    AppendEntries,
    AppendResponse,
    ConfigChange,
    RequestVote,
    TimeoutNow,
    VoteResponse,
)
from consensus.solo import SoloEngine

CONFIG = RaftConfig(
    election_timeout_min_ms=100, election_timeout_max_ms=200, heartbeat_interval_ms=20
)
LATER_MS = 10_000  # past any election timeout


class Pump:
    """Engines that hear each other at once and in order, unless a link is cut."""

    def __init__(self, genesis: tuple[str, ...], nodes: tuple[str, ...]) -> None:
        self.genesis = genesis
        self.records: dict[str, dict[str, bytes]] = {n: {} for n in nodes}
        self.commits: dict[str, list[int]] = {n: [] for n in nodes}
        self.engines = {n: self._build(n) for n in nodes}
        self.cut: set[str] = set()  # nodes whose messages (both ways) are lost
        self.sent: list[tuple[str, str, Any]] = []
        self.now_ms = 0
        for node, engine in self.engines.items():
            self.run(node, engine.start(0))

    def _build(
        self, node: str, commit_height: int = 0, last_hash: bytes = GENESIS_HASH
    ) -> RaftEngine:
        return RaftEngine(
            node,
            self.genesis,
            dict(self.records[node]),
            random.Random(node),
            CONFIG,
            commit_height=commit_height,
            last_block_hash=last_hash,
        )

    def restart(self, node: str) -> RaftEngine:
        height = len(self.commits[node])
        engine = self._build(node, height, _hash(height) if height else GENESIS_HASH)
        self.engines[node] = engine
        return engine

    def run(self, node: str, actions: list[Action]) -> None:
        queue: deque[tuple[str, list[Action]]] = deque([(node, actions)])
        while queue:
            sender, batch = queue.popleft()
            for action in batch:
                if isinstance(action, Persist):
                    for key, value in action.records:
                        if value is None:
                            self.records[sender].pop(key, None)
                        else:
                            self.records[sender][key] = value
                elif isinstance(action, Commit):
                    self.commits[sender].append(action.height)
                elif isinstance(action, Send | Broadcast):
                    targets = [action.to] if isinstance(action, Send) else list(self.engines)
                    for to in targets:
                        if to == sender or to in self.cut or sender in self.cut:
                            continue
                        if to not in self.engines:
                            continue  # a node with no engine here: as good as down
                        self.sent.append((sender, to, action.msg))
                        queue.append((to, self.engines[to].receive(sender, action.msg)))

    def tick(self, node: str, now_ms: int) -> None:
        self.now_ms = max(self.now_ms, now_ms)
        self.run(node, self.engines[node].tick(now_ms))

    def elect(self, node: str) -> None:
        self.tick(node, LATER_MS)
        assert self.engines[node].status.role == "leader"

    def propose(self, node: str) -> int:
        status = self.engines[node].status
        assert status.next_height is not None and status.next_parent_hash is not None
        height: int = status.next_height
        payload = f"block-{height}".encode()
        block = BlockProposal(height, status.next_parent_hash, _hash(height), payload)
        self.run(node, self.engines[node].propose(block))
        return height

    def reconfigure(self, effective_height: int, voters: tuple[str, ...]) -> None:
        for node, engine in self.engines.items():
            self.run(node, engine.reconfigure(effective_height, voters))


def _hash(height: int) -> bytes:
    return hashlib.sha256(f"block-{height}".encode()).digest()


def test_an_added_voter_is_tracked_at_once_and_counts_from_its_height() -> None:
    """d joins at height 3: the leader probes it as soon as it hears of the change, with the
    change attached; block 3 then needs 3 of the 4 voters, so b alone is not enough."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c", "d"))
    assert pump.engines["d"].status.role == "observer"
    pump.elect("a")
    pump.cut = {"c", "d"}
    # The leader hears first (the others once they execute the deciding block).
    actions = pump.engines["a"].reconfigure(3, ("a", "b", "c", "d"))
    probes = [a for a in actions if isinstance(a, Send) and a.to == "d"]
    assert probes and isinstance(probes[0].msg, AppendEntries)
    assert probes[0].msg.changes == (ConfigChange(3, ("a", "b", "c", "d")),)
    persisted = [k for a in actions if isinstance(a, Persist) for k, _ in a.records]
    assert KEY_MEMBERSHIP in persisted
    pump.run("a", actions)
    for _ in range(3):
        pump.propose("a")
    assert pump.commits["a"] == [1, 2]  # a + b of {a, b, c}; block 3 needs three of four
    pump.cut = {"c"}
    pump.tick("a", LATER_MS + 50)  # heartbeats reach d, which learns the change and catches up
    assert pump.commits["a"] == [1, 2, 3]
    assert pump.engines["d"].status.role == "follower"
    assert pump.engines["d"].voters_at(3) == ("a", "b", "c", "d")


def test_a_removed_followers_acknowledgements_and_votes_count_for_nothing() -> None:
    """c leaves at height 3. Blocks 1-2 commit with c's help (it still votes there); block 3
    needs both a and b; once c's heights are committed, c is out and its vote requests are
    dropped unanswered."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.reconfigure(3, ("a", "b"))
    pump.cut = {"b"}
    for _ in range(3):
        pump.propose("a")
    assert pump.commits["a"] == [1, 2]  # a + c: a majority of {a, b, c}; not of {a, b}
    pump.cut = set()
    pump.tick("a", LATER_MS + 50)
    assert pump.commits["a"] == [1, 2, 3]
    assert pump.engines["c"].status.role == "observer"
    replies = pump.engines["b"].receive("c", RequestVote(99, 50, 99, False))
    assert replies == []
    assert pump.engines["b"].status.round == 1  # c's higher term was not even looked at
    before = pump.commits["a"][:]
    leader = pump.engines["a"]
    assert leader.receive("c", AppendResponse(1, True, 99, 0)) == []
    assert pump.commits["a"] == before


def test_a_candidate_counts_only_votes_of_the_set_it_would_propose_into() -> None:
    """b campaigns with a log ending below E = 3 where c leaves: it counts votes in the set
    at its next height, {a, b, c} — but once its log reaches height 2, in {a, b}, where c's
    granted vote is worth nothing."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.reconfigure(3, ("a", "b"))
    pump.propose("a")
    pump.propose("a")
    pump.cut = {"a", "b", "c"}  # nobody hears anybody: drive b by hand
    b = pump.engines["b"]
    b.tick(LATER_MS)  # counts the leader's last messages as heard now
    b.tick(LATER_MS * 2)  # pre-vote
    term = b.status.round
    b.receive("c", VoteResponse(term + 1, True, True))
    assert b.status.extra["phase"] == "pre_candidate"  # c's grant is not a majority of {a, b}
    b.receive("a", VoteResponse(term + 1, True, True))
    assert b.status.extra["phase"] == "candidate"


def test_removing_the_leader_hands_over_with_timeout_now() -> None:
    """a leaves at 3: it proposes up to 2 only, and once both are committed and b holds them
    it sends b a TimeoutNow and steps down; b campaigns at once (no pre-vote, term + 1) and
    c, in its lease after hearing a, still grants that transfer vote."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.reconfigure(3, ("b", "c"))
    pump.propose("a")
    pump.propose("a")
    assert pump.engines["a"].status.next_height is None  # not a voter at 3: no slot
    pump.tick("a", LATER_MS + 50)
    transfers = [(s, to, m) for s, to, m in pump.sent if isinstance(m, TimeoutNow)]
    assert transfers and transfers[0][:2] == ("a", "b")
    requests = [m for s, _, m in pump.sent if s == "b" and isinstance(m, RequestVote)]
    assert requests and requests[0].transfer and not requests[0].pre_vote
    assert pump.engines["b"].status.role == "leader"
    assert pump.engines["b"].status.round == 2
    assert pump.engines["a"].status.role == "observer"
    assert pump.propose("b") == 3
    assert pump.commits["b"][-1] == 3 and pump.commits["c"][-1] == 3


def test_a_plain_vote_request_is_still_refused_in_the_lease() -> None:
    """The lease bypass is for a transfer only: an ordinary candidate is ignored while the
    leader was heard recently (CheckQuorum), exactly as before."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.propose("a")
    c = pump.engines["c"]
    last_index = int(c.status.extra["last_index"])
    assert c.receive("b", RequestVote(2, last_index, 1, False)) == []
    granted = c.receive("b", RequestVote(2, last_index, 1, False, transfer=True))
    assert any(isinstance(a, Send) and a.msg == VoteResponse(2, True, False) for a in granted)


def test_two_voters_to_one_the_one_left_leads_alone() -> None:
    pump = Pump(("a", "b"), ("a", "b"))
    pump.elect("a")
    pump.reconfigure(3, ("b",))
    pump.propose("a")
    pump.propose("a")
    pump.tick("a", LATER_MS + 50)
    assert pump.engines["b"].status.role == "leader"
    pump.cut = {"a"}
    assert pump.propose("b") == 3
    assert pump.commits["b"][-1] == 3


def test_the_set_survives_a_restart_and_repeated_calls_are_harmless() -> None:
    """The engine persists its known changes; rebuilt from the genesis set and its records it
    knows them, the node's repeated call changes nothing, and a stored set already in effect
    is accepted however far it is from what the engine knew."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.reconfigure(3, ("a", "b", "c", "d"))
    for _ in range(3):
        pump.propose("a")
    pump.tick("a", LATER_MS + 50)
    engine = pump.restart("b")
    assert engine.voters_at(2) == ("a", "b", "c")
    assert engine.voters_at(3) == ("a", "b", "c", "d")
    assert engine.reconfigure(3, ("a", "b", "c", "d")) == []  # before start: the node's call
    engine.start(LATER_MS)
    assert engine.reconfigure(3, ("d", "c", "b", "a")) == []  # any order
    # Stored state two changes ahead of what the engine knew, already in effect: accepted.
    pump.commits["c"] = [1, 2, 3, 4, 5, 6, 7]
    pump.records["c"].pop(KEY_MEMBERSHIP, None)
    fresh = pump.restart("c")
    assert fresh.voters_at(3) == ("a", "b", "c")
    assert fresh.reconfigure(7, ("b", "c", "e")) == []  # records wait for start()
    started = fresh.start(LATER_MS)
    persisted = [k for a in started if isinstance(a, Persist) for k, _ in a.records]
    assert KEY_MEMBERSHIP in persisted
    assert fresh.voters_at(7) == ("b", "c", "e")


def test_a_change_of_more_than_one_voter_is_refused() -> None:
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    engine = pump.engines["a"]
    with pytest.raises(ValueError, match="one voter at a time"):
        engine.reconfigure(5, ("a",))  # removes two
    with pytest.raises(ValueError, match="one voter at a time"):
        engine.reconfigure(5, ("a", "b", "d"))  # a swap: removes c and adds d
    with pytest.raises(ValueError, match="one voter at a time"):
        engine.reconfigure(5, ("a", "b", "c", "d", "e"))
    with pytest.raises(ValueError, match="distinct"):
        engine.reconfigure(5, ("a", "a", "b"))
    engine.reconfigure(5, ("a", "b"))
    with pytest.raises(ValueError, match="already"):
        engine.reconfigure(5, ("a", "c"))  # contradicts the known change at 5
    assert engine.voters_at(5) == ("a", "b")
    solo = SoloEngine("a", 0, GENESIS_HASH)
    assert solo.reconfigure(1, ("a",)) == []
    with pytest.raises(ValueError, match="fixed"):
        solo.reconfigure(1, ("a", "b"))


def test_a_follower_persists_changes_learned_with_entries_before_it_acknowledges() -> None:
    """Rule 3: the leader's append carries the change; the follower's Persist of it precedes
    its acknowledgement, so a restart never leaves it holding entries whose voters it does not
    know."""
    pump = Pump(("a", "b", "c"), ("a", "b", "c"))
    pump.elect("a")
    pump.engines["a"].reconfigure(3, ("a", "b"))  # only the leader has executed the change
    pump.cut = {"a", "b", "c"}
    msg = AppendEntries(1, 1, 1, (), 1, (ConfigChange(3, ("a", "b")),))
    actions = pump.engines["c"].receive("a", msg)
    persist_at = next(i for i, a in enumerate(actions) if isinstance(a, Persist))
    ack_at = next(i for i, a in enumerate(actions) if isinstance(a, Send))
    assert persist_at < ack_at
    assert pump.engines["c"].voters_at(3) == ("a", "b")
