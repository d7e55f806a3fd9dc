"""Raft engines for the simulator: the factory and the timing used by the sim tests, and the
node's side of voter-set changes (a governance model by height, and a simulator that tells each
engine of a change right after storing the block that decided it)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from consensus.engine import Commit, Engine, NodeId, Persist
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig
from consensus.raft_messages import ConfigChange
from node.effects import BatchEffects
from tests.sim.simulator import (
    CommittedBlock,
    EngineFactory,
    NodeBoot,
    SimConfig,
    SimNode,
    Simulator,
)

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


# --- voter-set changes (issue 15) ------------------------------------------------------------

CHANGE_DELAY_BLOCKS = 4  # contracts/governance.py's VALIDATOR_CHANGE_DELAY_BLOCKS
OBSERVER_FETCH_MS = 200


class SimGovernance:
    """What the governance contract decides, by height: the block at height `b` (whichever block
    ends up there) changes the voters to `voters` from `b + CHANGE_DELAY_BLOCKS` on. One change
    at a time, as the contract allows: a change's block is at or above the previous change's
    effective height."""

    def __init__(self, initial: tuple[NodeId, ...]) -> None:
        self.initial = tuple(sorted(initial))
        self.by_block: dict[int, ConfigChange] = {}

    def schedule(self, block_height: int, voters: tuple[NodeId, ...]) -> ConfigChange:
        last = self.latest()
        assert last is None or block_height >= last.effective_height, "one change at a time"
        change = ConfigChange(block_height + CHANGE_DELAY_BLOCKS, tuple(sorted(voters)))
        self.by_block[block_height] = change
        return change

    def latest(self) -> ConfigChange | None:
        return self.by_block[max(self.by_block)] if self.by_block else None

    def decided_by(self, block_height: int) -> ConfigChange | None:
        return self.by_block.get(block_height)

    def stored(self, height: int) -> ConfigChange | None:
        """The set a node that stored blocks up to `height` reads from its state."""
        decided = [b for b in self.by_block if b <= height]
        return self.by_block[max(decided)] if decided else None

    def voters_at(self, height: int) -> tuple[NodeId, ...]:
        voters = self.initial
        for block in sorted(self.by_block):
            change = self.by_block[block]
            if change.effective_height <= height:
                voters = change.voters
        return voters

    def next_free_block(self, above: int) -> int:
        """The lowest height above `above` where a new change may be decided."""
        last = self.latest()
        return max(above + 1, last.effective_height if last else 0)


def reconfig_raft_factory(
    governance: SimGovernance, config: RaftConfig = SIM_RAFT_CONFIG
) -> EngineFactory:
    """Engines built as the node builds them: from the genesis set, then told the stored set."""

    def build(boot: NodeBoot) -> Engine:
        engine = RaftEngine(
            boot.node_id,
            governance.initial,
            boot.restored,
            boot.rng,
            config,
            commit_height=boot.commit_height,
            last_block_hash=boot.last_block_hash,
        )
        stored = governance.stored(boot.commit_height)
        if stored is not None:
            assert engine.reconfigure(stored.effective_height, stored.voters) == []
        return engine

    return build


class ReconfigSimulator(Simulator):
    """The simulator with the node's half of a voter-set change: after storing the block that
    decides a change (committed or synced), the node tells its engine, before it stores (and
    so before it can build on) anything else, as the committer does."""

    def __init__(
        self,
        config: SimConfig,
        governance: SimGovernance,
        seed: int,
        node_ids: Sequence[NodeId],
        raft_config: RaftConfig = SIM_RAFT_CONFIG,
    ) -> None:
        self.governance = governance
        self.reconfigure_calls = 0
        super().__init__(config, reconfig_raft_factory(governance, raft_config), seed, node_ids)

    def _store(self, node: SimNode, block: CommittedBlock) -> None:
        super()._store(node, block)
        change = self.governance.decided_by(block.height)
        engine = node.engine
        if change is None or engine is None:
            return
        assert isinstance(engine, RaftEngine)
        self.reconfigure_calls += 1
        self._note(f"{node.node_id} reconfigures: {change}")
        actions = engine.reconfigure(change.effective_height, change.voters)
        # Carried out in the driver's order, but with no injected crash: this runs inside the
        # carrying out of another batch (a crash here is the same as one just before it).
        effects = BatchEffects.of(actions)
        if effects.records:
            self._carry_out(node, Persist(effects.records))
        for step in effects.steps:
            if isinstance(step, Commit):
                self._fail(f"{node.node_id} commits from reconfigure (the node can't order it)")
            self._carry_out(node, step)
        # No engine check here: the batch being carried out may hold later commits; the
        # simulator checks the engine once that batch is done.

    def step(self) -> None:
        super().step()
        if self.now_ms % OBSERVER_FETCH_MS == 0:
            self._observers_fetch()

    def _observers_fetch(self) -> None:
        """A node out of the voter set follows the chain by fetching committed blocks from a
        validator, as the node's observer mode does; executing them is how it learns it was
        voted (back) in, when no leader can tell it (one needs its vote first)."""
        for node in self.up_nodes():
            assert node.engine is not None
            if node.engine.status.role != "observer":
                continue
            sources = sorted(set(self.nodes) - {node.node_id})
            source = sources[self.rng.randrange(len(sources))]
            self._push(
                self.config.sync_delay_ms,
                "sync",
                source,
                node.node_id,
                node.height + 1,
                node.incarnation,
            )

    # --- checks ------------------------------------------------------------------------------

    def check_voter_sets(self, full: bool = False) -> None:
        """Every node uses the set the chain decided at every height it works on: its next
        height and the four after (changes it executed), and (`full`) the height of every
        entry in its log and the two after the last (changes it learned with the entries)."""
        for node in self.up_nodes():
            engine = node.engine
            assert isinstance(engine, RaftEngine)
            heights = set(range(node.height + 1, node.height + 1 + CHANGE_DELAY_BLOCKS))
            if full:
                log = engine._log
                heights.update(
                    log.entry(i).height for i in range(log.first_index, log.last_index + 1)
                )
                heights.update((log.last_height + 1, log.last_height + 2))
            for height in sorted(heights):
                if height < 1:
                    continue
                got, want = engine.voters_at(height), self.governance.voters_at(height)
                if got != want:
                    self._fail(f"{node.node_id} has voters {got} at height {height}, not {want}")

    def voters_converged(self) -> bool:
        """The voters from the next height on are up, hold one chain, and their engines agree;
        everyone else holds a prefix of it (checked on every store)."""
        top = self.max_height()
        voters = self.governance.voters_at(top + 1)
        nodes = [self.nodes[v] for v in voters]
        if not all(n.is_up for n in nodes):
            return False
        heights = {n.height for n in nodes}
        engines = {n.engine.status.commit_height for n in nodes if n.engine is not None}
        return heights == {top} and engines == heights
