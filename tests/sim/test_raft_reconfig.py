"""Raft voter-set changes on the simulator: scripted changes, then changes under seeded faults.

The simulator checks after every engine call that there is at most one leader per term, at
most one block per height, and that commits are contiguous; here, in addition, every node must
use the set the chain decided at every height it works on (`check_voter_sets`), and at the end
the final voters must hold one chain that keeps every block ever committed.

Replay one seed: `SIM_SEED=123 pytest tests/sim/test_raft_reconfig.py`; more seeds:
`SIM_RECONFIG_SEEDS=2000` (default 150 per case).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from consensus.engine import NodeId
from consensus.raft import RaftEngine
from consensus.raft_messages import TimeoutNow
from tests.sim.chaos import _fault_event
from tests.sim.raft_cluster import (
    SIM_RAFT_CONFIG,
    ReconfigSimulator,
    SimGovernance,
    varied_raft_config,
)
from tests.sim.simulator import InvariantViolation, NetworkFaults, SimConfig

BOUND_MS = 5_000


def _seeds() -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    base = int(os.environ.get("SIM_SEED_BASE", "0"))
    return list(range(base, base + int(os.environ.get("SIM_RECONFIG_SEEDS", "150"))))


def _cluster(
    voters: int, spares: int = 0, seed: int = 7
) -> tuple[ReconfigSimulator, SimGovernance]:
    ids = [f"n{i}" for i in range(voters + spares)]
    governance = SimGovernance(tuple(ids[:voters]))
    sim = ReconfigSimulator(SimConfig(node_count=len(ids)), governance, seed, ids)
    assert sim.run_until(lambda: sim.leader() is not None, BOUND_MS), "no leader elected"
    return sim, governance


def _change(sim: ReconfigSimulator, voters: tuple[NodeId, ...]) -> int:
    """Decide a change in the next free block; return its effective height."""
    block = sim.governance.next_free_block(sim.max_height())
    return sim.governance.schedule(block, voters).effective_height


def _until(sim: ReconfigSimulator, done: Callable[[], bool], what: str) -> None:
    if not sim.run_until(done, BOUND_MS):
        sim.fail(what)
    sim.check_voter_sets(full=True)


def _commit_past(sim: ReconfigSimulator, height: int) -> None:
    _until(sim, lambda: sim.max_height() >= height, f"nothing committed up to {height}")


def _settle(sim: ReconfigSimulator) -> None:
    sim.proposing = False
    _until(sim, sim.voters_converged, "the voters did not converge")
    sim.check_voter_sets(full=True)


def _engine(sim: ReconfigSimulator, node_id: NodeId) -> RaftEngine:
    engine = sim.nodes[node_id].engine
    assert isinstance(engine, RaftEngine)
    return engine


def test_a_spare_node_is_voted_in_and_then_counts_for_commits() -> None:
    """n3 (an observer until then) is added at E: it replicates, and blocks from E on need 3 of
    4 acknowledgements, so with two of the old three down nothing commits, and with n3 up and
    one old node down blocks do."""
    sim, _ = _cluster(3, spares=1)
    assert _engine(sim, "n3").status.role == "observer"
    effective = _change(sim, ("n0", "n1", "n2", "n3"))
    _commit_past(sim, effective + 3)
    _settle(sim)
    assert _engine(sim, "n3").status.commit_height == sim.max_height()
    sim.proposing = True
    leader = sim.leader()
    assert leader is not None
    others = [n for n in ("n0", "n1", "n2") if n != leader]
    sim.crash(others[0])
    _commit_past(sim, sim.max_height() + 3)  # leader + n3 + one more of four: a majority
    sim.crash("n3")
    before = sim.max_height()
    sim.run_for(1_000)
    assert sim.max_height() <= before + 1  # leader + one of four: blocks stop (one may land)
    sim.restart("n3")
    sim.restart(others[0])
    _commit_past(sim, sim.max_height() + 2)
    _settle(sim)


def test_a_removed_follower_is_out_and_its_messages_are_ignored() -> None:
    """A follower removed at E stops voting and campaigning once the blocks below E are
    committed; the other two commit on without it, and its vote requests change nothing."""
    sim, _ = _cluster(3)
    leader = sim.leader()
    assert leader is not None
    removed = next(n for n in ("n0", "n1", "n2") if n != leader)
    effective = _change(sim, tuple(n for n in ("n0", "n1", "n2") if n != removed))
    _commit_past(sim, effective + 5)
    assert _engine(sim, removed).status.role == "observer"
    term = _engine(sim, leader).status.round
    sim.run_for(2_000)  # many election timeouts: the removed node must not campaign
    assert sim.leader() == leader and _engine(sim, leader).status.round == term
    _settle(sim)


def test_removing_the_leader_hands_over_without_an_election_timeout() -> None:
    """The leader stops proposing at E, sends TimeoutNow once everything below E is committed,
    and the most up-to-date remaining voter leads well within the election timeout."""
    sim, _ = _cluster(3)
    old = sim.leader()
    assert old is not None
    effective = _change(sim, tuple(n for n in ("n0", "n1", "n2") if n != old))
    _until(sim, lambda: sim.max_height() >= effective - 1, "blocks below E not committed")
    started = sim.now_ms
    _until(sim, lambda: sim.leader() not in (None, old), "no new leader")
    assert sim.now_ms - started < SIM_RAFT_CONFIG.election_timeout_min_ms
    new = sim.leader()
    assert new is not None
    _commit_past(sim, effective + 3)
    assert _engine(sim, old).status.role == "observer"
    _settle(sim)


def test_removing_the_leader_of_two_leaves_one_that_leads_alone() -> None:
    """From two voters to one, the remaining one wins its transfer election alone: its vote
    is a majority of the set that votes on its next block."""
    sim, _ = _cluster(2)
    old = sim.leader()
    assert old is not None
    remaining = "n1" if old == "n0" else "n0"
    effective = _change(sim, (remaining,))
    _commit_past(sim, effective + 3)
    assert sim.leader() == remaining
    _settle(sim)


def test_transfer_lost_falls_back_to_an_ordinary_election() -> None:
    """If the TimeoutNow is lost, the remaining voters elect a leader after their timeout."""
    sim, _ = _cluster(3)
    old = sim.leader()
    assert old is not None
    sim.outgoing_hooks[old] = lambda s, sender, to, msg: (
        () if isinstance(msg, TimeoutNow) else (msg,)
    )
    effective = _change(sim, tuple(n for n in ("n0", "n1", "n2") if n != old))
    _commit_past(sim, effective + 3)
    assert sim.leader() not in (None, old)
    _settle(sim)


def test_changes_one_after_another_grow_and_shrink_the_cluster() -> None:
    """1 -> 2 -> 3 -> 2 (the first leader removed) -> 3 (it comes back, stale): every node
    works with the chain's set at every height, and the final three converge."""
    sim, governance = _cluster(1, spares=2)
    for voters in (("n0", "n1"), ("n0", "n1", "n2"), ("n1", "n2"), ("n0", "n1", "n2")):
        effective = _change(sim, voters)
        _commit_past(sim, effective + 2)
        sim.check_voter_sets(full=True)
    _settle(sim)
    assert governance.voters_at(sim.max_height()) == ("n0", "n1", "n2")


def test_a_crash_of_the_added_node_and_the_leader_during_the_change() -> None:
    """The leader and the node being added crash between the deciding block and E; both
    restart from their records (the node also restores the stored set) and all converge."""
    sim, _ = _cluster(3, spares=1)
    leader = sim.leader()
    assert leader is not None
    effective = _change(sim, ("n0", "n1", "n2", "n3"))
    _until(sim, lambda: sim.max_height() >= effective - 3, "deciding block not committed")
    sim.crash(leader)
    sim.crash("n3")
    sim.run_for(500)
    sim.restart("n3")
    sim.run_for(300)
    sim.restart(leader)
    _commit_past(sim, effective + 3)
    _settle(sim)


def test_a_partition_during_the_change_keeps_one_chain() -> None:
    """The old leader, being removed, is cut off with one other node right after the deciding
    block: the side with the majority of the sets around E carries the change through."""
    sim, _ = _cluster(4)
    old = sim.leader()
    assert old is not None
    others = [n for n in ("n0", "n1", "n2", "n3") if n != old]
    effective = _change(sim, tuple(others))
    _until(sim, lambda: sim.max_height() >= effective - 3, "deciding block not committed")
    sim.partition([[old, others[0]], others[1:]])
    sim.run_for(1_500)
    sim.heal()
    _commit_past(sim, effective + 3)
    _settle(sim)


def _random_change(sim: ReconfigSimulator, rng: random.Random) -> tuple[NodeId, ...] | None:
    """A single-server change: add a non-voter, remove a voter (often the leader), keeping 1-5."""
    governance = sim.governance
    latest = governance.latest()
    current = latest.voters if latest is not None else governance.initial
    outside = sorted(set(sim.nodes) - set(current))
    leader = sim.leader()
    if outside and (len(current) < 2 or rng.random() < 0.5):
        return tuple(sorted((*current, rng.choice(outside))))
    if len(current) <= 1:
        return None
    gone = leader if leader in current and rng.random() < 0.4 else rng.choice(current)
    return tuple(v for v in current if v != gone)


@pytest.mark.parametrize("voters", [3, 4])
@pytest.mark.parametrize("seed", _seeds())
def test_raft_reconfiguration_under_faults_stays_safe_and_converges(voters: int, seed: int) -> None:
    """Changes decided one after another while nodes crash (some halfway through an action
    list), restart, and partitions come and go on a lossy network; safety is checked after
    every step, the voter sets every 10 ms; after healing, the final voters must commit and
    converge on one chain."""
    variant = random.Random(f"reconfig:{seed}:{voters}")
    ids = [f"n{i}" for i in range(voters + 1)]
    governance = SimGovernance(tuple(ids[:voters]))
    config = varied_raft_config(variant)
    sim = ReconfigSimulator(SimConfig(node_count=len(ids)), governance, seed, ids, config)
    sim.faults = NetworkFaults(
        drop_rate=variant.choice((0.02, 0.1)),
        duplicate_rate=0.05,
        delay_min_ms=1,
        delay_max_ms=variant.choice((20, 60)),
    )
    sim.mid_action_crash_rate = 0.005
    sim.bounce_after_send_rate = 0.02
    try:
        end_ms = sim.now_ms + 2_500
        while sim.now_ms < end_ms:
            if sim.rng.random() < 0.03:
                _fault_event(sim)
            if sim.rng.random() < 0.02:
                change = _random_change(sim, sim.rng)
                block = governance.next_free_block(sim.max_height())
                if change is not None and block <= sim.max_height() + 2:
                    governance.schedule(block, change)
            sim.step()
            sim.check_voter_sets(full=sim.rng.random() < 0.05)
        sim.faults = NetworkFaults()
        sim.mid_action_crash_rate = sim.bounce_after_send_rate = 0.0
        sim.heal()
        for node_id, node in sim.nodes.items():
            if not node.is_up:
                sim.restart(node_id)
        base = sim.max_height()
        latest = governance.latest()
        target = max(base, latest.effective_height if latest else 0) + 1
        if not sim.run_until(lambda: sim.max_height() >= target, 3 * BOUND_MS):
            sim.fail(f"no block up to {target} within {3 * BOUND_MS} ms of healing")
        sim.proposing = False
        if not sim.run_until(sim.voters_converged, BOUND_MS):
            heights = {n: node.height for n, node in sim.nodes.items()}
            sim.fail(f"the voters did not converge: {heights}")
        sim.check_voter_sets(full=True)
    except InvariantViolation:
        raise
    except AssertionError as exc:  # an engine's own assertion: still print how to replay
        sim.fail(f"assertion failed: {exc!r}")
