"""Raft under seeded chaos: safety after every step, then convergence after healing.

Each seed runs a 3- or 5-node cluster through lossy, duplicating, reordering links, crashes
(some halfway through an action list), restarts from persisted records, and partitions; the
simulator checks the safety invariants after every engine call, and the run ends by healing
everything and demanding a new commit and one agreed chain within a bounded time.

Replay one seed: `SIM_SEED=123 pytest tests/sim -k raft`; more seeds: `SIM_SEEDS=2000`.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.sim.chaos import ChaosPlan, run_chaos
from tests.sim.raft_cluster import raft_factory, varied_raft_config
from tests.sim.simulator import InvariantViolation, NetworkFaults, SimConfig, Simulator


def _seeds() -> list[int]:
    if "SIM_SEED" in os.environ:
        return [int(os.environ["SIM_SEED"])]
    base = int(os.environ.get("SIM_SEED_BASE", "0"))
    return list(range(base, base + int(os.environ.get("SIM_SEEDS", "200"))))


@pytest.mark.parametrize("node_count", [3, 5])
@pytest.mark.parametrize("seed", _seeds())
def test_raft_stays_safe_under_chaos_and_converges_after_healing(
    node_count: int, seed: int
) -> None:
    """Safety invariants hold throughout; after healing, a block commits and all converge."""
    variant = random.Random(f"config:{seed}:{node_count}")
    factory = raft_factory(varied_raft_config(variant))
    faults = NetworkFaults(
        drop_rate=variant.choice((0.02, 0.1, 0.2)),
        duplicate_rate=0.05,
        delay_min_ms=1,
        delay_max_ms=variant.choice((20, 60, 120)),
    )
    sim = Simulator(SimConfig(node_count=node_count), factory, seed=seed)
    try:
        run_chaos(sim, ChaosPlan(faults=faults))
    except InvariantViolation:
        raise
    except AssertionError as exc:  # an engine's own invariant: still print how to replay
        sim.fail(f"engine assertion failed: {exc!r}")
    assert sim.converged()
    assert sim.stats.commits > 0
