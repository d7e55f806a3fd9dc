"""Scripted PBFT regressions on the simulator: each Byzantine behaviour, view changes, GC.

Each test drives a cluster into one situation with crashes, partitions and outgoing-message
hooks, then checks the outcome; throughout, the simulator checks after every engine call that
no two honest replicas commit different blocks at a height and that commits never change.
One test gives the adversary f + 1 replicas and expects the checker to catch the fork.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from consensus.engine import BlockProposal, Engine
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig
from consensus.pbft_messages import Checkpoint, CommitVote, PrePrepare
from tests.sim.byzantine import ConflictingVoter, Equivocator, Replayer, Silent, Twins
from tests.sim.pbft_cluster import SIM_PBFT_CONFIG, other_block, pbft_factory
from tests.sim.simulator import InvariantViolation, NodeBoot, NodeId, SimConfig, Simulator

BOUND_MS = 10_000


def _cluster(node_count: int = 4, config: PbftConfig = SIM_PBFT_CONFIG, seed: int = 5) -> Simulator:
    return Simulator(SimConfig(node_count=node_count), pbft_factory(config), seed=seed)


def _engine(sim: Simulator, node_id: NodeId) -> PbftEngine:
    engine = sim.nodes[node_id].engine
    assert isinstance(engine, PbftEngine)
    return engine


def _honest(sim: Simulator) -> list[NodeId]:
    return [n for n in sim.nodes if n not in sim.byzantine]


def _grow(sim: Simulator, blocks: int, nodes: Sequence[NodeId] | None = None) -> None:
    """Every listed (default: honest, up) replica commits `blocks` more blocks in time."""
    watched = list(nodes) if nodes is not None else [n for n in _honest(sim) if sim.nodes[n].is_up]
    targets = {n: sim.nodes[n].height + blocks for n in watched}
    ok = sim.run_until(lambda: all(sim.nodes[n].height >= t for n, t in targets.items()), BOUND_MS)
    assert ok, {n: sim.nodes[n].height for n in watched}


def _converge(sim: Simulator) -> None:
    sim.proposing = False
    assert sim.run_until(sim.converged, BOUND_MS), {n: x.height for n, x in sim.nodes.items()}


def _drop(kinds: tuple[type[Any], ...], unless_to: set[NodeId] = frozenset()) -> Any:
    def hook(sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        return () if isinstance(msg, kinds) and to not in unless_to else (msg,)

    return hook


# --- Byzantine replicas ------------------------------------------------------------------------


def test_silent_primary_is_replaced_by_a_view_change_and_commits_resume() -> None:
    sim = _cluster()
    _grow(sim, 3)
    assert sim.leader() == "n0"
    sim.outgoing_hooks["n0"] = Silent()
    sim.byzantine.add("n0")
    _grow(sim, 5)
    views = {_engine(sim, n).status.round for n in _honest(sim)}
    assert min(views) >= 1 and sim.leader() != "n0"
    _converge(sim)


def test_primary_that_only_withholds_pre_prepares_is_voted_out() -> None:
    sim = _cluster()
    _grow(sim, 2)
    sim.outgoing_hooks["n0"] = Silent((PrePrepare,))
    sim.byzantine.add("n0")
    _grow(sim, 4)
    assert all(_engine(sim, n).status.round >= 1 for n in _honest(sim))


@pytest.mark.parametrize("double_vote", [False, True])
def test_equivocating_primary_cannot_split_the_honest_replicas(double_vote: bool) -> None:
    """n0 sends one block to n1 and another to n2 and n3 (and with `double_vote` prepares and
    commits each to whoever got it). Honest replicas never disagree and keep committing."""
    sim = _cluster()
    _grow(sim, 2)
    sim.outgoing_hooks["n0"] = Equivocator(lambda to: to in ("n2", "n3"), double_vote)
    sim.byzantine.add("n0")
    _grow(sim, 8)
    _converge(sim)


def test_equivocation_forces_a_view_change_that_reproposes_the_prepared_block() -> None:
    """With n2 and n3 fooled and n0 voting for the fake block to them, the fake block is
    prepared at n2 and n3 but cannot commit (n1 and n0's own engine back the real one): the
    view change must carry n2's and n3's prepared certificate and commit that very block."""
    sim = _cluster()
    _grow(sim, 2)
    height = sim.nodes["n1"].height + 1
    equivocator = Equivocator(lambda to: to in ("n2", "n3"), double_vote=True)
    sim.outgoing_hooks["n0"] = equivocator
    sim.byzantine.add("n0")
    _grow(sim, 3)
    prepared = _engine(sim, "n2")._slots.get(height)
    committed = sim.nodes["n1"].blocks[height - 1].block_hash
    if prepared is not None and prepared.prepared is not None:
        assert prepared.prepared.block_hash == committed
    assert max(_engine(sim, n).status.round for n in _honest(sim)) >= 1
    _converge(sim)


def test_conflicting_votes_from_one_replica_do_not_break_agreement() -> None:
    sim = _cluster(node_count=7)
    sim.outgoing_hooks["n3"] = ConflictingVoter(lambda to: to in ("n0", "n1", "n2"))
    sim.outgoing_hooks["n5"] = ConflictingVoter(lambda to: to in ("n4", "n6"), also_honest=False)
    sim.byzantine.update({"n3", "n5"})
    _grow(sim, 10)
    _converge(sim)


def test_replayed_old_messages_are_ignored() -> None:
    sim = _cluster()
    sim.outgoing_hooks["n2"] = Replayer(rate=0.8)
    sim.byzantine.add("n2")
    _grow(sim, 6)
    sim.crash("n0")  # replays from older views reach the others during the view change
    _grow(sim, 4, ["n1", "n3"])
    sim.restart("n0")
    _converge(sim)


def _other_proposal(block: BlockProposal) -> BlockProposal:
    payload = other_block(block.payload, "twin")
    return replace(block, block_hash=hashlib.sha256(payload).digest(), payload=payload)


def test_twins_with_one_identity_and_key_cannot_split_the_honest_replicas() -> None:
    """n0 (the first primary) runs as two engines with one key: the second twin hears only
    n3 and proposes its own block for every height the first proposes, so n0 pre-prepares and
    votes for two blocks at once. Honest replicas never disagree and the cluster moves on."""
    honest_build = pbft_factory()

    def build(boot: NodeBoot) -> Engine:
        if boot.node_id != "n0":
            return honest_build(boot)
        second = honest_build(replace(boot, restored={}))
        twins = Twins(honest_build(boot), second, lambda s: s == "n3", _other_proposal)
        return twins  # type: ignore[return-value]

    sim = Simulator(SimConfig(node_count=4), build, seed=11)
    sim.byzantine.add("n0")
    proposed: dict[tuple[int, int], set[bytes]] = {}

    def spy(sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if isinstance(msg, PrePrepare):
            proposed.setdefault((msg.view, msg.height), set()).add(msg.block_hash)
        return (msg,)

    sim.outgoing_hooks["n0"] = spy
    _grow(sim, 6)
    assert any(len(hashes) > 1 for hashes in proposed.values()), "the twins never diverged"
    sim.crash("n1")
    _grow(sim, 3, ["n2", "n3"])
    sim.restart("n1")
    _converge(sim)


def test_checker_catches_the_fork_when_f_plus_one_replicas_collude() -> None:
    """The adversary gets f + 1 = 2 of 4: n0 (primary) and n1 show n2 one block and n3
    another, voting for each; n2 and n3 then commit different blocks at one height, and the
    simulator's agreement check must say so."""
    sim = _cluster()
    _grow(sim, 2)
    shared: dict[bytes, bytes] = {}
    for liar in ("n0", "n1"):
        sim.outgoing_hooks[liar] = Equivocator(lambda to: to == "n3", True, shared)
        sim.byzantine.add(liar)
    with pytest.raises(InvariantViolation, match=r"where .* was committed"):
        sim.run_for(BOUND_MS)


# --- view changes, checkpoints and state transfer -----------------------------------------------


def test_view_change_keeps_a_block_that_was_prepared_everywhere_but_committed_nowhere() -> None:
    sim = _cluster()
    _grow(sim, 3)
    for node_id in sim.nodes:
        sim.outgoing_hooks[node_id] = _drop((CommitVote,))
    sim.run_for(500)
    height = sim.nodes["n1"].height + 1
    slot = _engine(sim, "n1")._slots[height]
    assert slot.prepared is not None, "the next block should be prepared by now"
    sim.outgoing_hooks.clear()
    sim.crash("n0")
    _grow(sim, 2, ["n1", "n2", "n3"])
    assert sim.nodes["n1"].blocks[height - 1].block_hash == slot.prepared.block_hash
    sim.restart("n0")
    _converge(sim)


def test_restart_during_a_view_change_resumes_it_from_the_persisted_view() -> None:
    sim = _cluster()
    _grow(sim, 3)
    sim.crash("n0")
    sim.partition([["n1"], ["n2", "n3"]])  # no quorum: the view change cannot finish
    assert sim.run_until(lambda: not _engine(sim, "n2")._active, BOUND_MS)
    view = _engine(sim, "n2").status.round
    sim.crash("n2")
    sim.restart("n2")
    restarted = _engine(sim, "n2")
    assert restarted.status.round == view and not restarted._active
    sim.heal()
    _grow(sim, 3, ["n1", "n2", "n3"])
    sim.restart("n0")
    _converge(sim)


def test_view_change_when_only_f_replicas_hold_the_latest_stable_checkpoint() -> None:
    """Checkpoints reach only n1, so only n1 (f = 1) holds the latest stable checkpoint; when
    the primary dies, the new view starts from it and the others adopt it."""
    config = replace(SIM_PBFT_CONFIG, watermark_window_blocks=400)
    sim = _cluster(config=config)
    for node_id in sim.nodes:
        sim.outgoing_hooks[node_id] = _drop((Checkpoint,), unless_to={"n1"})
    _grow(sim, 10)
    stable = _engine(sim, "n1")._stable.height
    assert stable >= 4 and _engine(sim, "n2")._stable.height == 0
    sim.crash("n0")
    _grow(sim, 3, ["n1", "n2", "n3"])
    assert all(_engine(sim, n)._stable.height >= stable for n in ("n1", "n2", "n3"))
    sim.outgoing_hooks.clear()
    sim.restart("n0")
    _converge(sim)


def test_stable_checkpoint_arriving_after_a_view_change_request_is_adopted() -> None:
    sim = _cluster()
    for node_id in sim.nodes:
        sim.outgoing_hooks[node_id] = _drop((Checkpoint,), unless_to={"n1", "n3"})
    _grow(sim, 6)
    assert _engine(sim, "n2")._stable.height == 0
    sim.crash("n0")
    assert sim.run_until(lambda: not _engine(sim, "n2")._active, BOUND_MS)
    sim.outgoing_hooks.clear()  # the checkpoints now reach n2, in the middle of its view change
    _grow(sim, 3, ["n1", "n2", "n3"])
    assert _engine(sim, "n2")._stable.height >= 4
    sim.restart("n0")
    _converge(sim)


def test_replica_lagging_past_garbage_collection_catches_up_by_state_transfer() -> None:
    sim = _cluster()
    _grow(sim, 2)
    sim.partition([["n3"], ["n0", "n1", "n2"]])
    _grow(sim, 3 * SIM_PBFT_CONFIG.watermark_window_blocks, ["n0", "n1", "n2"])
    assert _engine(sim, "n0")._stable.height > sim.nodes["n3"].height
    synced_before = sim.stats.blocks_synced
    sim.heal()
    _grow(sim, 3)
    assert sim.stats.blocks_synced > synced_before
    _converge(sim)
