"""Raft engines for the simulator: the factory and the timing used by the sim tests."""

from __future__ import annotations

import random

from consensus.engine import Engine
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig
from tests.sim.simulator import EngineFactory, NodeBoot

SIM_RAFT_CONFIG = RaftConfig(
    election_timeout_min_ms=150,
    election_timeout_max_ms=300,
    heartbeat_interval_ms=30,
    append_entries_max=8,
    appends_in_flight_max=4,
    proposals_in_flight_max=4,
    log_compaction_entries=24,
    log_retained_entries=8,
    sync_retry_ms=200,
)


def raft_factory(config: RaftConfig = SIM_RAFT_CONFIG) -> EngineFactory:
    def build(boot: NodeBoot) -> Engine:
        return RaftEngine(
            boot.node_id,
            boot.validators,
            boot.restored,
            boot.rng,
            config,
            commit_height=boot.commit_height,
            last_block_hash=boot.last_block_hash,
        )

    return build


def varied_raft_config(rng: random.Random) -> RaftConfig:
    """A seed-chosen variant of the sim timing: one entry per append and no pipelining make
    the rare interleavings (Figure 8, divergent suffixes) likelier; tiny logs force syncs;
    narrow election timeout ranges make competing candidates (split votes) common."""
    entries_max = rng.choice((1, 2, 8))
    compaction = rng.choice(((24, 8), (6, 1), (200, 50)))
    election_min_ms = rng.choice((100, 150))  # a narrow range makes split votes common
    return RaftConfig(
        election_timeout_min_ms=election_min_ms,
        election_timeout_max_ms=election_min_ms + rng.choice((15, 150)),
        heartbeat_interval_ms=30,
        append_entries_max=entries_max,
        appends_in_flight_max=rng.choice((1, 4)),
        proposals_in_flight_max=rng.choice((1, 4)),
        log_compaction_entries=compaction[0],
        log_retained_entries=compaction[1],
        sync_retry_ms=200,
    )
