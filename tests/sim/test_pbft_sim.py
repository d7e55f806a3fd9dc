"""PBFT under seeded chaos, with and without up to f Byzantine replicas.

Each seed runs a 4- or 7-node cluster through lossy, duplicating, reordering links, crashes
(some halfway through an action list), restarts from persisted records, and partitions; the
simulator checks after every engine call that no two honest replicas commit different blocks
at one height, that commits are contiguous and never change, and that at most one primary
holds each view. The run ends by healing everything and demanding a new commit and one agreed
chain among the honest replicas within a bounded time. In the Byzantine runs, up to f replicas
(chosen by the seed) equivocate as primary, vote for phantom blocks, fall silent, or replay old
messages, throughout and after the healing.

Replay one seed: `SIM_SEED=123 pytest tests/sim -k pbft`; more seeds: `SIM_SEEDS=2000`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from consensus.pbft_messages import PrePrepare
from tests.sim.byzantine import ConflictingVoter, Equivocator, Replayer, Silent, fool_half
from tests.sim.chaos import ChaosPlan, run_chaos
from tests.sim.pbft_cluster import pbft_factory, varied_pbft_config
from tests.sim.simulator import NetworkFaults, SimConfig, Simulator

HONEST_SEEDS = {4: 100, 7: 30}
BYZANTINE_SEEDS = {4: 50, 7: 20}


def _seeds(default: int) -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    base = int(os.environ.get("SIM_SEED_BASE", "0"))
    count = int(os.environ.get("SIM_SEEDS", str(default)))
    return list(range(base, base + count))


def _plan(variant: random.Random) -> ChaosPlan:
    faults = NetworkFaults(
        drop_rate=variant.choice((0.02, 0.1, 0.2)),
        duplicate_rate=0.05,
        delay_min_ms=1,
        delay_max_ms=variant.choice((20, 60, 120)),
    )
    # Views may have drifted apart under chaos: after healing, a view change or two (with
    # timeouts up to the configured maximum) may be needed before the first commit.
    return ChaosPlan(faults=faults, progress_bound_ms=15_000, converge_bound_ms=10_000)


def _cases(table: dict[int, int]) -> list[tuple[int, int]]:
    return [(n, seed) for n, count in table.items() for seed in _seeds(count)]


@pytest.mark.parametrize(("node_count", "seed"), _cases(HONEST_SEEDS))
def test_pbft_stays_safe_under_chaos_and_converges_after_healing(
    node_count: int, seed: int
) -> None:
    """Safety invariants hold throughout; after healing, a block commits and all converge."""
    variant = random.Random(f"pbft-config:{seed}:{node_count}")
    sim = Simulator(
        SimConfig(node_count=node_count), pbft_factory(varied_pbft_config(variant)), seed=seed
    )
    run_chaos(sim, _plan(variant))
    assert sim.converged()
    assert sim.stats.commits > 0


def _make_byzantine(sim: Simulator, rng: random.Random, count: int) -> list[str]:
    liars = rng.sample(sorted(sim.nodes), count)
    for node_id in liars:
        kind = rng.choice(("equivocate", "conflict", "silent", "silent-primary", "replay"))
        hook: Any
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
        sim.outgoing_hooks[node_id] = hook
        sim.byzantine.add(node_id)
    return liars


@pytest.mark.parametrize(("node_count", "seed"), _cases(BYZANTINE_SEEDS))
def test_pbft_with_f_byzantine_replicas_stays_safe_and_converges(
    node_count: int, seed: int
) -> None:
    """Up to f replicas lie (equivocate, vote for phantoms, fall silent, replay); the honest
    replicas never disagree, and after healing they commit and converge."""
    variant = random.Random(f"pbft-byzantine:{seed}:{node_count}")
    sim = Simulator(
        SimConfig(node_count=node_count), pbft_factory(varied_pbft_config(variant)), seed=seed
    )
    f = (node_count - 1) // 3
    _make_byzantine(sim, variant, variant.randint(1, f))
    run_chaos(sim, _plan(variant))
    assert sim.converged()
    honest = [n for n in sim.nodes.values() if n.node_id not in sim.byzantine]
    assert all(n.height > 0 for n in honest)
