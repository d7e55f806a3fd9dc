"""Scripted Raft regressions on the simulator: the fault sequences chaos finds only rarely.

Each test drives a fault-free cluster into one situation with partitions, crashes and
outgoing-message hooks, then checks the outcome; the simulator's safety invariants are checked
after every engine call throughout, and `converged()` means every node holds the same chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from consensus.engine import NodeId
from consensus.raft_config import RaftConfig
from consensus.raft_log import ENTRY_KEY_PREFIX, RECORDS
from consensus.raft_messages import AppendEntries, Entry
from tests.sim.raft_cluster import SIM_RAFT_CONFIG, raft_factory
from tests.sim.simulator import SimConfig, Simulator

BOUND_MS = 5_000


def _cluster(node_count: int = 3, config: RaftConfig = SIM_RAFT_CONFIG, seed: int = 7) -> Simulator:
    sim = Simulator(SimConfig(node_count=node_count), raft_factory(config), seed=seed)
    assert sim.run_until(lambda: sim.leader() is not None, BOUND_MS), "no leader elected"
    return sim


def _term(sim: Simulator, node_id: NodeId) -> int:
    engine = sim.nodes[node_id].engine
    assert engine is not None
    return engine.status.round


def _commit_more(sim: Simulator, node_id: NodeId, blocks: int) -> None:
    target = sim.nodes[node_id].height + blocks
    assert sim.run_until(lambda: sim.nodes[node_id].height >= target, BOUND_MS)


def _drop_appends_to(targets: set[NodeId]) -> Any:
    def hook(sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        return () if isinstance(msg, AppendEntries) and to in targets else (msg,)

    return hook


def test_rejoining_partitioned_follower_does_not_depose_the_leader_with_pre_vote() -> None:
    """An isolated follower keeps failing pre-votes without raising its term, so after the
    partition heals the leader and its term are unchanged and the follower catches up."""
    sim = _cluster()
    leader = sim.leader()
    assert leader is not None
    term = _term(sim, leader)
    loner = next(node_id for node_id in sim.nodes if node_id != leader)
    sim.partition([[loner], [n for n in sim.nodes if n != loner]])
    sim.run_for(2_000)  # many election timeouts
    assert _term(sim, loner) == term
    sim.heal()
    sim.run_for(1_000)
    assert sim.leader() == leader
    assert _term(sim, leader) == term
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS)


def test_rejoining_partitioned_follower_disrupts_the_leader_without_pre_vote() -> None:
    """The contrast that shows the test above measures PreVote: without it, the loner's term
    climbs while isolated and its first reply after healing forces a new election."""
    config = replace(SIM_RAFT_CONFIG, pre_vote=False)
    sim = _cluster(config=config)
    leader = sim.leader()
    assert leader is not None
    term = _term(sim, leader)
    loner = next(node_id for node_id in sim.nodes if node_id != leader)
    sim.partition([[loner], [n for n in sim.nodes if n != loner]])
    sim.run_for(2_000)
    assert _term(sim, loner) > term
    sim.heal()
    sim.run_for(1_000)
    new_leader = sim.leader()
    assert new_leader is not None and _term(sim, new_leader) > term


def test_follower_restarting_with_a_shorter_log_catches_up_from_the_leader_log() -> None:
    """A follower down while 20 blocks commit restarts with its persisted (shorter) log and is
    brought level by appends alone: nothing is compacted, so no block sync is needed."""
    sim = _cluster()
    leader = sim.leader()
    assert leader is not None
    follower = next(node_id for node_id in sim.nodes if node_id != leader)
    _commit_more(sim, leader, 3)
    sim.crash(follower)
    _commit_more(sim, leader, 20)
    behind = sim.nodes[follower].height
    sim.restart(follower)
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS)
    assert sim.nodes[follower].height >= behind + 20
    assert sim.stats.sync_requests == 0


def test_follower_that_lost_acknowledged_entries_is_probed_below_its_old_match() -> None:
    """A damaged write-ahead log loses a follower entries it had acknowledged (outside Raft's
    fault model, but a real disk does it). The leader's record of what the follower holds is
    then too high; probing must walk below it, or the follower is never sent another entry."""
    sim = _cluster()
    leader = sim.leader()
    assert leader is not None
    follower = next(node_id for node_id in sim.nodes if node_id != leader)
    _commit_more(sim, leader, 12)
    node = sim.nodes[follower]
    sim.crash(follower)
    entries = sorted(key for key in node.durable if key.startswith(ENTRY_KEY_PREFIX))
    assert len(entries) > 6, "the follower's log should hold the recent entries"
    lost = entries[-6:]
    first_lost = RECORDS.decode(node.durable[lost[0]], Entry)
    for key in lost:
        del node.durable[key]  # the damaged tail, dropped when the node restarts
    del node.blocks[first_lost.height - 1 :]
    sim.restart(follower)
    _commit_more(sim, leader, 5)
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS), "the follower never caught up"
    assert sim.nodes[follower].blocks == sim.nodes[leader].blocks


def test_leader_crashing_mid_replication_keeps_committed_blocks_and_drops_its_divergent_tail() -> (
    None
):
    """A leader whose last appends reach no one crashes with an uncommitted tail. The others
    elect a new leader and commit different blocks at those heights; when the old leader
    restarts, its tail is overwritten and every node converges on the new chain."""
    sim = _cluster(node_count=5)
    old = sim.leader()
    assert old is not None
    _commit_more(sim, old, 5)
    committed_before = dict(sim.committed)
    others = {node_id for node_id in sim.nodes if node_id != old}
    sim.outgoing_hooks[old] = _drop_appends_to(others)
    engine = sim.nodes[old].engine
    assert engine is not None
    assert sim.run_until(lambda: int(engine.status.extra["uncommitted_blocks"]) >= 2, BOUND_MS)
    sim.crash(old)
    del sim.outgoing_hooks[old]
    assert sim.run_until(lambda: sim.leader() not in (None, old), BOUND_MS)
    new = sim.leader()
    assert new is not None
    _commit_more(sim, new, 5)
    sim.restart(old)
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS)
    assert all(sim.committed[h] == block_hash for h, block_hash in committed_before.items())
    assert sim.nodes[old].blocks == sim.nodes[new].blocks


def test_follower_behind_a_compacted_log_syncs_blocks_then_follows_the_leader() -> None:
    """With a tiny log, a follower down while 40 blocks commit needs entries the leader has
    compacted: it gets an InstallSnapshot, requests the blocks (RequestSync), adopts the
    snapshot marker and then replicates normally."""
    config = replace(SIM_RAFT_CONFIG, log_compaction_entries=6, log_retained_entries=1)
    sim = _cluster(config=config)
    leader = sim.leader()
    assert leader is not None
    follower = next(node_id for node_id in sim.nodes if node_id != leader)
    sim.crash(follower)
    _commit_more(sim, leader, 40)
    sim.restart(follower)
    _commit_more(sim, leader, 5)
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS)
    assert sim.stats.sync_requests >= 1
    assert sim.stats.blocks_synced >= 30
    engine = sim.nodes[follower].engine
    assert engine is not None and int(engine.status.extra["snapshot_index"]) > 0


def test_isolated_leader_steps_down_by_check_quorum_and_the_majority_elects_another() -> None:
    """A leader cut off from everyone stops claiming leadership within an election timeout;
    the majority side elects a new leader and keeps committing."""
    sim = _cluster(node_count=5)
    old = sim.leader()
    assert old is not None
    sim.partition([[old], [n for n in sim.nodes if n != old]])
    sim.run_for(2 * SIM_RAFT_CONFIG.election_timeout_max_ms)
    engine = sim.nodes[old].engine
    assert engine is not None and engine.status.role != "leader"
    new = sim.leader()
    assert new is not None and new != old
    _commit_more(sim, new, 3)
