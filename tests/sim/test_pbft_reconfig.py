"""PBFT validator-set changes on the simulator, under faults around the boundary.

Each seed grows a chain on lossy, duplicating, reordering links; a block near the start
changes the set (adds n4 to four validators, removes one of five, or adds then removes: two
changes in a row); while the change is being committed and takes effect, a fault strikes: a
crash (sometimes halfway through an action list) with a later restart from the persisted
records, or a partition that heals later, and in the Byzantine runs one liar (equivocating
primary, phantom votes, silence, replays; sometimes the very replica being removed) keeps lying
throughout. Then every honest node must order blocks well past the last boundary, and after
healing all converge on one chain.

Checked after every engine call (`ReconfigSimulator` and the simulator): at most one block per
height, commits contiguous and never changed (nothing committed is lost, even across restarts),
every honest node runs the same validator sets at the same heights, one primary per view and
height, and that primary is a validator of that height. At the end: the added replica voted
after its effective height, and a removed replica sent no vote for a height after its own.

Replay one seed: `SIM_SEED=123 pytest tests/sim/test_pbft_reconfig.py`; more seeds:
`SIM_SEEDS=2000` (as for the other simulations) or `SIM_RECONFIG_SEEDS=2000` for these alone.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from consensus.pbft_messages import CommitVote, NewView, Prepare, PrePrepare
from tests.sim.byzantine import ConflictingVoter, Equivocator, Replayer, Silent, fool_half
from tests.sim.chaos import ChaosPlan, heal_and_converge
from tests.sim.pbft_cluster import (
    VALIDATOR_CHANGE_DELAY_BLOCKS,
    ReconfigSimulator,
    varied_pbft_config,
)
from tests.sim.simulator import NetworkFaults, NodeId, OutgoingHook, SimConfig, Simulator

SEEDS = {"honest": 100, "byzantine": 60}
FOUR = ("n0", "n1", "n2", "n3")
FIVE = (*FOUR, "n4")
GROW_BOUND_MS = 20_000


def _seeds(default: int) -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    base = int(os.environ.get("SIM_SEED_BASE", "0"))
    count = os.environ.get("SIM_RECONFIG_SEEDS") or os.environ.get("SIM_SEEDS") or default
    return list(range(base, base + int(count)))


@dataclass
class Spy:
    """Notes the votes (prepares, commits) each node sends, by height, before its own hook."""

    inner: OutgoingHook | None = None
    votes: dict[NodeId, set[int]] = field(default_factory=dict)

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if isinstance(msg, Prepare | CommitVote):
            self.votes.setdefault(sender, set()).add(msg.height)
        return self.inner(sim, sender, to, msg) if self.inner else (msg,)


@dataclass(frozen=True)
class Scenario:
    genesis: tuple[NodeId, ...]
    changes: dict[int, tuple[NodeId, ...]]
    added: NodeId | None
    removed: NodeId | None


def _scenario(rng: random.Random) -> Scenario:
    first = rng.randint(2, 7)
    kind = rng.choice(("add", "remove", "add-then-remove"))
    if kind == "add":
        return Scenario(FOUR, {first: FIVE}, "n4", None)
    if kind == "remove":
        leaving = rng.choice(FIVE)
        return Scenario(FIVE, {first: tuple(n for n in FIVE if n != leaving)}, None, leaving)
    # One change at a time: the second is made once the first is in effect.
    second = first + VALIDATOR_CHANGE_DELAY_BLOCKS + rng.randint(0, 3)
    leaving = rng.choice(FOUR)
    return Scenario(
        FOUR, {first: FIVE, second: tuple(n for n in FIVE if n != leaving)}, "n4", leaving
    )


def _liar(sim: ReconfigSimulator, rng: random.Random, scenario: Scenario) -> OutgoingHook:
    """One liar: f = 1 in every set here. It is a member of every set (else a set could hold
    two faults: it and a crashed replica), or, sometimes, the replica being removed (then the
    only liar of the old set, and of no concern to the new one)."""
    everywhere = [n for n in scenario.genesis if all(n in s for s in scenario.changes.values())]
    candidates = everywhere + ([scenario.removed] * 2 if scenario.removed else [])
    liar = rng.choice(candidates)
    sim.byzantine.add(liar)
    kind = rng.choice(("equivocate", "conflict", "silent", "silent-primary", "replay"))
    hook: OutgoingHook
    if kind == "equivocate":
        hook = Equivocator(fool_half(rng.randrange(1000)), double_vote=rng.random() < 0.5)
    elif kind == "conflict":
        hook = ConflictingVoter(fool_half(rng.randrange(1000)), also_honest=rng.random() < 0.5)
    elif kind == "silent":
        hook = Silent()
    elif kind == "silent-primary":
        hook = Silent((PrePrepare,))
    else:
        hook = Replayer()
    return hook


def _honest_heights_reach(sim: Simulator, height: int) -> bool:
    return all(n.height >= height for n in sim.nodes.values() if n.node_id not in sim.byzantine)


def _fault_around_the_boundary(sim: ReconfigSimulator, rng: random.Random) -> None:
    """A crash or a partition while the change is committed and takes effect, for a while."""
    kind = rng.choice(("crash", "crash", "partition", "bounces"))
    outage_ms = rng.randint(100, 1_500)
    if kind == "crash":
        victim = rng.choice(sorted(sim.nodes))
        sim.crash(victim)
        sim.run_for(outage_ms)
        sim.restart(victim)
    elif kind == "partition":
        shuffled = sorted(sim.nodes)
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(shuffled))
        sim.partition([shuffled[:cut], shuffled[cut:]])
        sim.run_for(outage_ms)
        sim.heal()
    else:
        # Crashes halfway through action lists and restarts right after speaking.
        sim.mid_action_crash_rate = 0.02
        sim.bounce_after_send_rate = 0.05
        sim.run_for(outage_ms)
        sim.mid_action_crash_rate = 0.0
        sim.bounce_after_send_rate = 0.0
        for node_id, node in sim.nodes.items():
            if not node.is_up:
                sim.restart(node_id)


def run_reconfiguration(seed: int, byzantine: bool) -> ReconfigSimulator:
    rng = random.Random(f"pbft-reconfig:{seed}:{byzantine}")
    scenario = _scenario(rng)
    # Messages go through the wire codec in a quarter of the seeds (the other simulations
    # always do): it is most of a run's cost, and these runs are about the sets.
    sim = ReconfigSimulator(
        SimConfig(node_count=len(FIVE), wire_codec=rng.random() < 0.25),
        seed,
        FIVE,
        scenario.genesis,
        scenario.changes,
        varied_pbft_config(rng),
    )
    spy = Spy()
    if byzantine:
        liar_hook = _liar(sim, rng, scenario)
        liar = next(iter(sim.byzantine))
        liar_spy = Spy(liar_hook, spy.votes)
        sim.outgoing_hooks[liar] = liar_spy
    for node_id in FIVE:
        sim.outgoing_hooks.setdefault(node_id, spy)
    sim.faults = NetworkFaults(
        drop_rate=rng.choice((0.0, 0.05, 0.1)),
        duplicate_rate=0.05,
        delay_min_ms=1,
        delay_max_ms=rng.choice((10, 30, 60)),
    )
    first = min(scenario.changes)
    trigger = first + rng.randint(-1, VALIDATOR_CHANGE_DELAY_BLOCKS + 1)
    if not sim.run_until(lambda: sim.max_height(honest_only=True) >= trigger, GROW_BOUND_MS):
        sim.fail(f"no honest node reached height {trigger}")
    _fault_around_the_boundary(sim, rng)
    last_effective = max(scenario.changes) + VALIDATOR_CHANGE_DELAY_BLOCKS
    target = last_effective + 3
    if not sim.run_until(lambda: _honest_heights_reach(sim, target), GROW_BOUND_MS):
        heights = {n: x.height for n, x in sim.nodes.items()}
        sim.fail(f"honest nodes did not all reach {target} past the change: {heights}")
    # Everyone back: a few more blocks, so a replica that was down through the boundary (and
    # caught up by state transfer) votes in the new set too.
    sim.heal()
    for node_id, node in sim.nodes.items():
        if not node.is_up:
            sim.restart(node_id)
    more = sim.max_height(honest_only=True) + 3
    if not sim.run_until(lambda: _honest_heights_reach(sim, more), GROW_BOUND_MS):
        sim.fail(f"honest nodes did not all reach {more} once healed")
    heal_and_converge(sim, ChaosPlan(progress_bound_ms=15_000, converge_bound_ms=10_000))
    _check_votes(sim, scenario, spy)
    return sim


def _check_votes(sim: ReconfigSimulator, scenario: Scenario, spy: Spy) -> None:
    if scenario.added is not None and scenario.added not in sim.byzantine:
        joined = min(h for h, s in scenario.changes.items() if scenario.added in s)
        effective = joined + VALIDATOR_CHANGE_DELAY_BLOCKS
        votes = spy.votes.get(scenario.added, set())
        if any(h < effective for h in votes):
            sim.fail(f"{scenario.added} voted before its effective height {effective}")
        if not any(h >= effective for h in votes):
            sim.fail(f"{scenario.added} never voted after its effective height {effective}")
    if scenario.removed is not None and scenario.removed not in sim.byzantine:
        left = max(scenario.changes) + VALIDATOR_CHANGE_DELAY_BLOCKS
        late = sorted(h for h in spy.votes.get(scenario.removed, set()) if h >= left)
        if late:
            sim.fail(f"{scenario.removed} voted at {late} after leaving at {left}")


@pytest.mark.parametrize("seed", _seeds(SEEDS["honest"]))
def test_pbft_reconfiguration_under_a_crash_or_partition_stays_safe_and_converges(
    seed: int,
) -> None:
    sim = run_reconfiguration(seed, byzantine=False)
    assert sim.converged()


@pytest.mark.parametrize("seed", _seeds(SEEDS["byzantine"]))
def test_pbft_reconfiguration_with_a_byzantine_replica_around_the_boundary(seed: int) -> None:
    sim = run_reconfiguration(seed, byzantine=True)
    assert sim.converged()


def test_a_replica_added_while_the_cluster_is_past_view_0_votes_in_that_view() -> None:
    """The demo's case on the simulator: the primary of view 0 crashes, the other three move to
    view 1 and go on; block 6 then adds n4 (from height 10). n4 was down meanwhile (as a node
    outside the set runs no engine: it must not see view 1's new-view before it knows of the
    five), so its engine comes back in view 0 and catches up. With n0 down, every height from
    10 needs n4's votes (4 of the five): the chain grows past it with no view change after
    view 1, n4 voting from height 10."""
    sim = ReconfigSimulator(SimConfig(node_count=len(FIVE)), 7, FIVE, FOUR, {6: FIVE})

    def no_new_view_before_the_change(
        sim: Simulator, sender: NodeId, to: NodeId, msg: Any
    ) -> Sequence[Any]:
        # The simulator runs n4's engine all along; the node builds it only once it knows of
        # the change, so before that n4 hears no new-view (it would check it by the four).
        if to == "n4" and isinstance(msg, NewView) and sim.nodes["n4"].height < 6:
            return ()
        return (msg,)

    spy = Spy(no_new_view_before_the_change)
    for node_id in FIVE:
        sim.outgoing_hooks[node_id] = spy
    if not sim.run_until(lambda: sim.nodes["n1"].height >= 2, GROW_BOUND_MS):
        sim.fail("no start")
    sim.crash("n0")
    sim.crash("n4")
    effective = 6 + VALIDATOR_CHANGE_DELAY_BLOCKS
    old = ("n1", "n2", "n3")
    if not sim.run_until(lambda: all(sim.nodes[n].height >= effective - 1 for n in old), 20_000):
        sim.fail("the three did not reach the height before the change")
    sim.restart("n4")
    rest = (*old, "n4")
    target = effective + 4
    if not sim.run_until(lambda: all(sim.nodes[n].height >= target for n in rest), GROW_BOUND_MS):
        sim.fail(f"did not reach {target}: { {n: sim.nodes[n].height for n in rest} }")
    views: dict[NodeId, int] = {}
    for node_id in rest:
        engine = sim.nodes[node_id].engine
        assert engine is not None
        views[node_id] = engine.status.round
    assert views == dict.fromkeys(rest, 1)  # without the fix: all in view 2
    assert any(h >= effective for h in spy.votes["n4"])
    assert not any(h < effective for h in spy.votes.get("n4", set()))
