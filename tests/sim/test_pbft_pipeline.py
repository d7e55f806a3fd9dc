"""PBFT with several heights in flight (`pipeline_depth_blocks`), on the simulator.

The chaos runs drive 4- and 7-node clusters whose primaries keep up to `depth` heights in
flight (`PipelineSimulator`: a proposer may build block h once h - depth is stored, deeper than
the node's app-hash lag of 2 allows) through lossy, duplicating, reordering links, crashes
(some halfway through an action list), restarts and partitions, with and without up to f
Byzantine replicas; the simulator checks after every engine call that no two honest replicas
commit different blocks at a height and that commits are contiguous, each on its parent. Each
run also records how many heights a primary had in flight, and the tests demand that the
pipeline was really used (depth 1: never more than one).

The scripted scenarios: a primary crashed with several heights prepared but not committed
(the new view re-proposes every one of them and they commit unchanged), and a Byzantine primary
that forks the chain within the window (half the backups get a second, self-consistent chain).

Replay one seed: `SIM_SEED=123 pytest tests/sim/test_pbft_pipeline.py`; more: `SIM_SEEDS=500`.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from consensus.engine import NodeId
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig
from consensus.pbft_log import select_new_view
from consensus.pbft_messages import (
    CommitVote,
    NewView,
    Prepare,
    PrePrepare,
    commit_statement,
    prepare_statement,
)
from tests.sim.byzantine import fool_half
from tests.sim.chaos import ChaosPlan, run_chaos
from tests.sim.pbft_cluster import (
    SIM_PBFT_CONFIG,
    PipelineSimulator,
    inspect_sim_block,
    pbft_factory,
    sim_sign,
)
from tests.sim.simulator import NetworkFaults, SimConfig, SimNode, block_payload
from tests.sim.test_pbft_sim import _make_byzantine

BOUND_MS = 15_000


def _seeds(default: int) -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    base = int(os.environ.get("SIM_SEED_BASE", "0"))
    return list(range(base, base + int(os.environ.get("SIM_SEEDS", str(default)))))


def _engine(sim: PipelineSimulator, node_id: NodeId) -> PbftEngine:
    engine = sim.nodes[node_id].engine
    assert isinstance(engine, PbftEngine)
    return engine


class MeasuredSimulator(PipelineSimulator):
    """Records the deepest slot any honest primary offered: `next_height - commit_height` is
    how many heights it has in flight once it fills that slot (a new view's re-proposals are
    not offered slots: they may lie further above a lagging primary's commit height)."""

    most_in_flight = 0

    def _check_engine(self, node: SimNode) -> None:
        super()._check_engine(node)
        engine = node.engine
        if engine is None or node.node_id in self.byzantine:
            return
        status = engine.status
        if status.next_height is not None:
            depth = status.next_height - status.commit_height
            self.most_in_flight = max(self.most_in_flight, depth)


def pipelined_config(rng: random.Random, depth: int) -> PbftConfig:
    interval = rng.choice((2, 4))
    return PbftConfig(
        checkpoint_interval_blocks=interval,
        watermark_window_blocks=max(interval * rng.choice((2, 3, 6)), depth),
        view_change_timeout_ms=rng.choice((300, 500)),
        view_change_timeout_max_ms=2_400,
        retransmit_interval_ms=rng.choice((40, 60, 100)),
        sync_delay_ms=60,
        sync_retry_ms=200,
        pipeline_depth_blocks=depth,
    )


def _plan(rng: random.Random) -> ChaosPlan:
    faults = NetworkFaults(
        drop_rate=rng.choice((0.02, 0.1, 0.2)),
        duplicate_rate=0.05,
        delay_min_ms=1,
        delay_max_ms=rng.choice((20, 60, 120)),
    )
    return ChaosPlan(faults=faults, progress_bound_ms=15_000, converge_bound_ms=10_000)


def _chaos_run(seed: int, node_count: int, depth: int, byzantine: bool) -> MeasuredSimulator:
    rng = random.Random(f"pbft-pipeline:{seed}:{node_count}:{depth}:{byzantine}")
    sim = MeasuredSimulator(
        SimConfig(node_count=node_count, propose_rate=0.8, proposals_per_tick_max=4),
        pbft_factory(pipelined_config(rng, depth)),
        seed,
        lag_blocks=depth,
    )
    if byzantine:
        _make_byzantine(sim, rng, rng.randint(1, (node_count - 1) // 3))
    run_chaos(sim, _plan(rng))
    return sim


CHAOS_CASES = [(n, depth, seed) for n, depth, count in ((4, 4, 60), (7, 3, 20), (4, 8, 20))
               for seed in _seeds(count)]


@pytest.mark.parametrize(("node_count", "depth", "seed"), CHAOS_CASES)
def test_pipelined_pbft_stays_safe_under_chaos_and_converges(
    node_count: int, depth: int, seed: int
) -> None:
    sim = _chaos_run(seed, node_count, depth, byzantine=False)
    assert sim.converged()
    assert sim.stats.commits > 0
    assert sim.most_in_flight <= depth


@pytest.mark.parametrize(("node_count", "depth", "seed"), CHAOS_CASES[::2])
def test_pipelined_pbft_with_f_byzantine_replicas_stays_safe_and_converges(
    node_count: int, depth: int, seed: int
) -> None:
    sim = _chaos_run(seed, node_count, depth, byzantine=True)
    assert sim.converged()
    honest = [n for n in sim.nodes.values() if n.node_id not in sim.byzantine]
    assert all(n.height > 0 for n in honest)


def _calm_run(depth: int) -> MeasuredSimulator:
    sim = MeasuredSimulator(
        SimConfig(
            node_count=4,
            propose_rate=1.0,
            proposals_per_tick_max=8,
            faults=NetworkFaults(delay_min_ms=20, delay_max_ms=30),
        ),
        pbft_factory(replace(SIM_PBFT_CONFIG, pipeline_depth_blocks=depth)),
        seed=3,
        lag_blocks=depth,
    )
    sim.run_for(3_000)
    return sim


def test_the_primary_keeps_up_to_depth_heights_in_flight_and_the_chain_grows_faster() -> None:
    """A calm network with 20-30 ms links: the pipeline fills to its depth and never beyond
    (depth 1 is the one-block-at-a-time engine). One height takes three one-way hops
    (pre-prepare, prepare, commit); with more in flight, heights overlap (a backup prepares a
    block once its parent is prepared: one hop behind it, not three)."""
    runs = {depth: _calm_run(depth) for depth in (1, 2, 4)}
    assert {d: sim.most_in_flight for d, sim in runs.items()} == {1: 1, 2: 2, 4: 4}
    heights = {d: sim.max_height() for d, sim in runs.items()}
    assert heights[2] >= 1.6 * heights[1], heights
    assert heights[4] >= 1.3 * heights[2], heights


# --- a primary crashed with several heights prepared --------------------------------------------


@dataclass
class HoldCommits:
    """Drops every commit vote while `holding`; records the new-views' re-proposals."""

    holding: bool = True
    reproposed: list[tuple[int, ...]] = field(default_factory=list)

    def __call__(self, sim: Any, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if isinstance(msg, NewView):
            plan = select_new_view(msg.view_changes, inspect_sim_block)
            self.reproposed.append(tuple(p.height for p in plan.reproposals))
        if self.holding and isinstance(msg, CommitVote):
            return ()
        return (msg,)


@pytest.mark.parametrize("seed", _seeds(10))
def test_a_primary_crashed_mid_pipeline_has_every_prepared_height_reproposed(seed: int) -> None:
    depth = 4
    config = replace(
        SIM_PBFT_CONFIG,
        pipeline_depth_blocks=depth,
        watermark_window_blocks=16,
        view_change_timeout_ms=1_500,  # no view change while the pipeline fills
        view_change_timeout_max_ms=6_000,
    )
    sim = PipelineSimulator(
        SimConfig(node_count=4, faults=NetworkFaults(delay_min_ms=2, delay_max_ms=15)),
        pbft_factory(config),
        seed,
        lag_blocks=depth,
    )
    assert sim.run_until(lambda: sim.max_height() >= 3, BOUND_MS)
    hook = HoldCommits()
    for node_id in sim.nodes:
        sim.outgoing_hooks[node_id] = hook
    sim.run_for(100)  # commit votes sent before the hook went in land meanwhile
    base = sim.max_height()

    def prepared_everywhere() -> dict[int, bytes]:
        """Heights above every backup's chain that every backup holds a prepared certificate
        for, by block."""
        found: dict[int, bytes] = {}
        stored = max(sim.nodes[n].height for n in ("n1", "n2", "n3"))
        for height in range(stored + 1, base + 2 * depth + 1):
            proofs = set()
            for node_id in ("n1", "n2", "n3"):
                slot = _engine(sim, node_id)._slots.get(height)
                proofs.add(slot.prepared.block_hash if slot and slot.prepared else None)
            if len(proofs) == 1 and None not in proofs:
                found[height] = proofs.pop()
        return found

    # Commits are held back, so the primary fills its pipeline with prepared heights.
    assert sim.run_until(lambda: len(prepared_everywhere()) >= 2, BOUND_MS)
    sim.proposing = False
    sim.run_for(200)
    prepared = prepared_everywhere()
    assert len(prepared) >= 2 and max(prepared) - min(prepared) + 1 == len(prepared)
    sim.crash("n0")
    # Commits stay held until every backup has left view 0 (they would decide there on their
    # resent commit votes otherwise): the prepared heights must travel through a view change.
    backups = [_engine(sim, n) for n in ("n1", "n2", "n3")]
    assert sim.run_until(lambda: all(e.status.round >= 1 for e in backups), BOUND_MS)
    hook.holding = False
    sim.proposing = True
    top = max(prepared)
    assert sim.run_until(
        lambda: all(sim.nodes[n].height >= top for n in ("n1", "n2", "n3")), BOUND_MS
    ), {n: x.height for n, x in sim.nodes.items()}
    # The new view re-proposed each prepared height, and each committed with its block.
    assert any(set(prepared) <= set(heights) for heights in hook.reproposed), hook.reproposed
    for height, block_hash in prepared.items():
        assert sim.committed[height] == block_hash
    sim.restart("n0")
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS)


# --- a Byzantine primary forking the chain within the window ------------------------------------


@dataclass
class ChainForker:
    """As primary, sends the fooled backups a second chain: each pre-prepared block replaced
    by another one on the *fooled* chain's parent, so their view is self-consistent; with
    `double_vote` it prepares and commits whichever block each recipient got."""

    fooled: Any
    double_vote: bool = True
    forks: dict[bytes, bytes] = field(default_factory=dict)  # real hash -> fork payload

    def __call__(self, sim: Any, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if not self.fooled(to):
            return (msg,)
        if isinstance(msg, PrePrepare):
            fork = self.forks.get(msg.block_hash)
            if fork is None:
                identity = inspect_sim_block(msg.payload)
                assert identity is not None
                parent = identity.parent_hash
                fork_parent = self.forks.get(parent)
                parent = hashlib.sha256(fork_parent).digest() if fork_parent else parent
                fork = block_payload(msg.height, parent, sender, 10**9 + msg.height)
                self.forks[msg.block_hash] = fork
            return (PrePrepare(msg.view, msg.height, hashlib.sha256(fork).digest(), fork),)
        if self.double_vote and isinstance(msg, Prepare | CommitVote):
            fork = self.forks.get(msg.block_hash)
            if fork is not None:
                fork_hash = hashlib.sha256(fork).digest()
                if isinstance(msg, Prepare):
                    statement = prepare_statement(msg.view, msg.height, fork_hash)
                    return (Prepare(msg.view, msg.height, fork_hash, sim_sign(sender, statement)),)
                statement = commit_statement(msg.view, msg.height, fork_hash)
                return (CommitVote(msg.view, msg.height, fork_hash, sim_sign(sender, statement)),)
        return (msg,)


@pytest.mark.parametrize(("node_count", "seed"), [(n, s) for n in (4, 7) for s in _seeds(8)])
def test_a_byzantine_primary_forking_the_chain_in_the_window_forks_no_honest_replica(
    node_count: int, seed: int
) -> None:
    depth = 4
    config = replace(SIM_PBFT_CONFIG, pipeline_depth_blocks=depth, watermark_window_blocks=16)
    sim = MeasuredSimulator(
        SimConfig(
            node_count=node_count,
            propose_rate=0.8,
            proposals_per_tick_max=4,
            faults=NetworkFaults(drop_rate=0.05, duplicate_rate=0.05, delay_max_ms=30),
        ),
        pbft_factory(config),
        seed,
        lag_blocks=depth,
    )
    liar = "n0"  # the primary of view 0, and of every view n0's turn comes round again
    forker = ChainForker(fool_half(seed), double_vote=seed % 2 == 0)
    sim.outgoing_hooks[liar] = forker
    sim.byzantine.add(liar)
    sim.run_for(4_000)
    honest = [n for n in sim.nodes if n not in sim.byzantine]
    if any(forker.fooled(n) for n in honest):
        assert len(forker.forks) >= 2  # a second chain, several heights deep, went out
    assert min(sim.nodes[n].height for n in honest) > 0
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS), {n: x.height for n, x in sim.nodes.items()}
