"""PBFT view changes, through the engine and on their own: the timer, joining higher views,
the new primary's new-view, stragglers, restarts, and what `ViewChanger` asks of the replica.

Four engines (f = 1) exchange messages by hand here, with no loss or delay; the simulator
(tests/sim) runs the same rules under faults.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from consensus.engine import Action, BlockProposal, Broadcast, Persist, Send
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig
from consensus.pbft_log import (
    GENESIS_CHECKPOINT,
    KEY_VIEW,
    RECORDS,
    NewViewPlan,
    ViewRecord,
)
from consensus.pbft_membership import Membership
from consensus.pbft_messages import (
    CheckpointProof,
    NewView,
    NewViewRequest,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
)
from consensus.pbft_view_change import ViewChanger
from tests.sim.pbft_cluster import inspect_sim_block, sim_sign, sim_verify, validate_sim_block
from tests.sim.simulator import block_payload

NODES = ("n0", "n1", "n2", "n3")
CONFIG = PbftConfig()
TIMEOUT = CONFIG.view_change_timeout_ms


def _engine(node_id: str, restored: dict[str, bytes] | None = None, validate=None) -> PbftEngine:
    return PbftEngine(
        node_id,
        NODES,
        restored or {},
        validate=validate or validate_sim_block,
        inspect=inspect_sim_block,
        sign=lambda statement: sim_sign(node_id, statement),
        verify=sim_verify,
        config=CONFIG,
    )


class Cluster:
    """Engines that hand each other every message at once (a perfect network)."""

    def __init__(self, down: Iterable[str] = ()) -> None:
        self.engines = {n: _engine(n) for n in NODES}
        self.down = set(down)
        self.sent: list[tuple[str, str, Any]] = []  # (sender, to, msg)
        for node, engine in self.engines.items():
            self.run(node, engine.start(0))

    def run(self, sender: str, actions: list[Action]) -> None:
        queue = [(sender, a) for a in actions]
        while queue:
            sender, action = queue.pop(0)
            match action:
                case Broadcast(msg):
                    targets = [n for n in NODES if n != sender]
                case Send(to, msg):
                    targets = [to]
                case _:
                    continue
            for to in targets:
                self.sent.append((sender, to, msg))
                if to not in self.down and sender not in self.down:
                    queue += [(to, a) for a in self.engines[to].receive(sender, msg)]

    def tick(self, now_ms: int, nodes: Iterable[str] = NODES) -> None:
        """Every clock reads `now_ms` before any timer fires (as with a node's frequent ticks,
        and unlike ticking one engine after another)."""
        nodes = list(nodes)
        for node in nodes:
            self.run(node, self.engines[node].tick(now_ms - 1))
        for node in nodes:
            self.run(node, self.engines[node].tick(now_ms))

    def views(self) -> dict[str, tuple[int, str]]:
        return {
            n: (e.status.round, str(e.status.extra["phase"]))
            for n, e in self.engines.items()
            if n not in self.down
        }


def _broadcasts(actions: list[Action], kind: type) -> list[Any]:
    return [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, kind)]


def _timed_out(node: str) -> ViewChange:
    """The view change a fresh replica sends when its first view times out."""
    engine = _engine(node)
    engine.start(0)
    engine.tick(TIMEOUT - 1)
    [view_change] = _broadcasts(engine.tick(TIMEOUT), ViewChange)
    return view_change


def test_a_silent_view_times_out_into_a_view_change_persisted_before_it_is_sent() -> None:
    engine = _engine("n2")
    engine.start(0)
    assert not engine.tick(TIMEOUT - 1)
    actions = engine.tick(TIMEOUT)
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("Persist") < kinds.index("Broadcast")
    records = dict(r for a in actions if isinstance(a, Persist) for r in a.records)
    assert RECORDS.decode(records[KEY_VIEW], ViewRecord) == ViewRecord(1, False)
    [view_change] = _broadcasts(actions, ViewChange)
    assert (view_change.view, view_change.node) == (1, "n2")
    assert engine.status.round == 1 and engine.status.extra["phase"] == "view-change"
    assert engine.status.leader is None
    # Resent on retransmit until the view change completes.
    again = engine.tick(TIMEOUT + CONFIG.retransmit_interval_ms)
    assert _broadcasts(again, ViewChange) == [view_change]


def test_timeouts_move_everyone_to_the_next_primary_which_sends_the_new_view() -> None:
    cluster = Cluster()
    cluster.tick(TIMEOUT)
    assert cluster.views() == {n: (1, "normal") for n in NODES}
    new_views = [m for s, _, m in cluster.sent if isinstance(m, NewView)]
    assert new_views and all(m.view == 1 for m in new_views)
    assert {s for s, _, m in cluster.sent if isinstance(m, NewView)} == {"n1"}
    assert cluster.engines["n1"].status.role == "primary"
    assert cluster.engines["n1"].status.next_height == 1


def test_with_the_next_primary_down_the_timeout_doubles_and_the_view_after_it_takes_over() -> None:
    cluster = Cluster(down=["n1"])
    up = ("n0", "n2", "n3")
    cluster.tick(TIMEOUT, up)
    assert cluster.views() == {n: (1, "view-change") for n in up}
    cluster.tick(TIMEOUT + 2 * TIMEOUT - 10, up)  # the second timeout is twice the first
    assert cluster.views() == {n: (1, "view-change") for n in up}
    cluster.tick(TIMEOUT + 2 * TIMEOUT + 10, up)
    assert cluster.views() == {n: (2, "normal") for n in up}
    assert cluster.engines["n2"].status.role == "primary"


def test_f_plus_one_view_changes_for_a_higher_view_pull_a_replica_along() -> None:
    cluster = Cluster()
    quiet = cluster.engines["n0"]
    votes = {node: _timed_out(node) for node in ("n2", "n3")}
    assert not quiet.receive("n2", votes["n2"])  # one may be a liar
    assert quiet.status.round == 0 and quiet.status.extra["phase"] == "normal"
    [own] = _broadcasts(quiet.receive("n3", votes["n3"]), ViewChange)
    assert own.view == 1 and own.node == "n0"
    assert quiet.status.round == 1 and quiet.status.extra["phase"] == "view-change"


def test_a_straggler_is_handed_the_new_view_and_a_new_view_request_is_answered() -> None:
    cluster = Cluster()
    cluster.tick(TIMEOUT)
    primary = cluster.engines["n1"]
    late = _engine("n3")
    late.start(0)
    answer = primary.receive("n3", _timed_out("n3"))
    [new_view] = [a.msg for a in answer if isinstance(a, Send) and a.to == "n3"]
    assert isinstance(new_view, NewView) and new_view.view == 1
    late.receive("n1", new_view)
    assert late.status.round == 1 and late.status.extra["phase"] == "normal"
    assert [a.msg for a in primary.receive("n0", NewViewRequest(1))] == [new_view]
    # Any holder answers (a new-view is self-certifying; across a change of the validator set
    # the asker may take another replica for the view's primary); one without it stays quiet.
    assert [a.msg for a in cluster.engines["n2"].receive("n0", NewViewRequest(1))] == [new_view]
    assert not cluster.engines["n2"].receive("n0", NewViewRequest(2))


def test_traffic_of_a_view_not_entered_asks_its_primary_for_the_new_view_once_a_while() -> None:
    engine = _engine("n3")
    engine.start(0)
    payload = block_payload(1, bytes(32), "n1", 1)
    block_hash = hashlib.sha256(payload).digest()
    pre_prepare = PrePrepare(1, 1, block_hash, payload)
    asked = [a for a in engine.receive("n1", pre_prepare) if isinstance(a, Send)]
    assert [(a.to, a.msg) for a in asked] == [("n1", NewViewRequest(1))]
    assert not engine.receive("n1", pre_prepare)  # not again within a retransmit interval
    engine.tick(CONFIG.retransmit_interval_ms)
    assert [a.msg for a in engine.receive("n1", pre_prepare)] == [NewViewRequest(1)]


def test_a_replica_restarted_in_a_view_change_resumes_it() -> None:
    engine = _engine("n2")
    engine.start(0)
    actions = engine.tick(TIMEOUT)
    records = {k: v for a in actions if isinstance(a, Persist) for k, v in a.records if v}
    restarted = _engine("n2", records)
    assert restarted.status.round == 1 and restarted.status.extra["phase"] == "view-change"
    [view_change] = _broadcasts(restarted.start(50_000), ViewChange)
    assert view_change.view == 1


def test_a_prepared_block_survives_the_view_change_and_is_proposed_again() -> None:
    """n0 proposes, everyone prepares, the commits are lost: the new view re-proposes it."""
    cluster = Cluster()
    payload = block_payload(1, bytes(32), "n0", 1)
    block_hash = hashlib.sha256(payload).digest()
    proposal = BlockProposal(1, bytes(32), block_hash, payload)
    cluster.down = {"n0", "n1", "n2", "n3"}  # deliver by hand: prepares only
    actions = {n: [] for n in NODES}
    actions["n0"] = cluster.engines["n0"].propose(proposal)
    for node in ("n1", "n2", "n3"):
        actions[node] = cluster.engines[node].receive("n0", PrePrepare(0, 1, block_hash, payload))
    for sender in NODES:
        for prepare in _broadcasts(actions[sender], Prepare):
            for to in NODES:
                if to != sender:
                    cluster.engines[to].receive(sender, prepare)
    assert all(e.status.commit_height == 0 for e in cluster.engines.values())
    cluster.down = set()
    cluster.tick(TIMEOUT)
    assert cluster.views() == {n: (1, "normal") for n in NODES}
    assert all(e.status.commit_height == 1 for e in cluster.engines.values())


class FakeReplica:
    """The replica side of the view changer's interface, recording what it is asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.behind = False
        self.proof = PreparedProof(0, 1, b"h" * 32, b"block", ())

    @property
    def commit_height(self) -> int:
        return 0

    @property
    def stable_checkpoint(self) -> CheckpointProof:
        return GENESIS_CHECKPOINT

    def prepared_proofs(self) -> tuple[PreparedProof, ...]:
        return (self.proof,)

    def catching_up(self) -> bool:
        return self.behind

    def adopt_stable(self, proof: CheckpointProof, out: list[Action]) -> None:
        self.calls.append(f"adopt_stable {proof.height}")

    def leave_view(self) -> None:
        self.calls.append("leave_view")

    def enter_view(self, plan: NewViewPlan, out: list[Action]) -> None:
        self.calls.append(f"enter_view {len(plan.reproposals)}")


def test_the_view_changer_reaches_the_log_only_through_its_replica_interface() -> None:
    replica = FakeReplica()
    sets = Membership(NODES, {}, sim_verify, inspect_sim_block)
    views = ViewChanger(
        "n2",
        CONFIG,
        sets,
        lambda statement: sim_sign("n2", statement),
        replica,
        ViewRecord(0, True),
        None,
    )
    out: list[Action] = []
    views.start(0, out)
    replica.behind = True  # catching up: the timer fires without a view change
    views.tick(TIMEOUT, out)
    assert not out and views.active and replica.calls == []
    replica.behind = False
    views.tick(2 * TIMEOUT, out)
    assert replica.calls == ["leave_view"]
    [view_change] = _broadcasts(out, ViewChange)
    assert view_change.prepared == (replica.proof,)
    assert view_change.checkpoint == GENESIS_CHECKPOINT
    assert (views.view, views.active) == (1, False)
