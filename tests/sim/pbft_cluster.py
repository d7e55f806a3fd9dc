"""PBFT engines for the simulator: the factory, sim block parsing, sim signatures and timing.

Sim blocks are `height|parent hex|proposer|serial` with hash sha256(payload). Signatures are
keyed hashes, sha256(secret(node) || statement): a stand-in for Ed25519 that a test adversary
can produce for the nodes it controls (via `sim_sign`) and no one can forge for others by
accident. The engine never sees a key either way; it calls the injected functions.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from consensus.engine import Engine, EngineStatus, NodeId, Persist
from consensus.pbft import PbftEngine
from consensus.pbft_config import BlockIdentity, PbftConfig
from consensus.pbft_membership import Epoch
from node.effects import BatchEffects, ProposalSlots
from tests.sim.simulator import (
    CommittedBlock,
    EngineFactory,
    NodeBoot,
    SimConfig,
    SimNode,
    Simulator,
    block_payload,
)

SIM_PBFT_CONFIG = PbftConfig(
    checkpoint_interval_blocks=4,
    watermark_window_blocks=12,
    view_change_timeout_ms=300,
    view_change_timeout_max_ms=2_400,
    retransmit_interval_ms=60,
    sync_delay_ms=60,
    sync_retry_ms=200,
)


def sim_sign(node_id: NodeId, statement: bytes) -> bytes:
    return hashlib.sha256(b"sim-key:" + node_id.encode() + b"\x00" + statement).digest()


def sim_verify(node_id: NodeId, statement: bytes, signature: bytes) -> bool:
    return sim_sign(node_id, statement) == signature


def inspect_sim_block(payload: bytes) -> BlockIdentity | None:
    parts = payload.split(b"|")
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    try:
        parent = bytes.fromhex(parts[1].decode())
    except ValueError:
        return None
    return BlockIdentity(int(parts[0]), hashlib.sha256(payload).digest(), parent)


def validate_sim_block(height: int, parent_hash: bytes, payload: bytes) -> bool:
    identity = inspect_sim_block(payload)
    return (
        identity is not None and identity.height == height and (identity.parent_hash == parent_hash)
    )


def other_block(payload: bytes, salt: str) -> bytes:
    """Another valid block for the same height and parent (what an equivocator sends)."""
    height, parent, proposer, serial = payload.split(b"|")
    return (
        block_payload(
            int(height), bytes.fromhex(parent.decode()), proposer.decode(), int(serial) * 1000 + 7
        )
        + salt.encode()
    )


def pbft_factory(config: PbftConfig = SIM_PBFT_CONFIG) -> EngineFactory:
    def build(boot: NodeBoot) -> Engine:
        node_id = boot.node_id
        return PbftEngine(
            node_id,
            boot.validators,
            boot.restored,
            validate=validate_sim_block,
            inspect=inspect_sim_block,
            sign=lambda statement: sim_sign(node_id, statement),
            verify=sim_verify,
            config=config,
            commit_height=boot.commit_height,
            last_block_hash=boot.last_block_hash,
        )

    return build


def varied_pbft_config(rng: random.Random) -> PbftConfig:
    """A seed-chosen variant: tiny checkpoint intervals make GC and watermarks bite; short
    timeouts make view changes common."""
    interval = rng.choice((1, 2, 4))
    return PbftConfig(
        checkpoint_interval_blocks=interval,
        watermark_window_blocks=interval * rng.choice((2, 3, 6)),
        view_change_timeout_ms=rng.choice((200, 300, 500)),
        view_change_timeout_max_ms=2_400,
        retransmit_interval_ms=rng.choice((40, 60, 100)),
        sync_delay_ms=60,
        sync_retry_ms=200,
    )


# --- validator-set changes ------------------------------------------------------------------------

# As in contracts/governance.py: a change made by block h orders heights from h + 4 on.
VALIDATOR_CHANGE_DELAY_BLOCKS = 4


class ReconfigSimulator(Simulator):
    """A PBFT cluster whose validator set changes as the chain grows, the way the node does it.

    `changes` maps the height of a block whose execution changes the set to the new set; it is
    a function of the agreed chain, so every node learns the same change at the same height.
    A node calls `reconfigure(h + VALIDATOR_CHANGE_DELAY_BLOCKS, set)` when it stores block h
    (committed or synced) and again at every start for each change in its store, as the node
    does from its stored state. Every node of `node_ids` runs an engine from the start: those
    outside the genesis set follow as observers until a change adds them.

    Checked after every engine call besides the simulator's invariants: each honest node knows
    exactly the changes in its store (or, having just stored one, is being told it), in order
    and identical to everyone's, and at most one primary claims a (view, height) slot (the
    base check's one primary per view no longer holds: the rotation follows the set of the
    height, so in one view the primary of the old set's last height and of the new set's first
    may differ).
    """

    def __init__(
        self,
        config: SimConfig,
        seed: int,
        node_ids: Sequence[NodeId],
        genesis: Sequence[NodeId],
        changes: Mapping[int, Sequence[NodeId]],
        pbft: PbftConfig = SIM_PBFT_CONFIG,
    ) -> None:
        self.genesis = tuple(genesis)
        self.changes = {h: tuple(v) for h, v in sorted(changes.items())}
        self.expected = [Epoch(0, self.genesis)] + [
            Epoch(h + VALIDATOR_CHANGE_DELAY_BLOCKS, v) for h, v in self.changes.items()
        ]
        self.slot_primaries: dict[tuple[int, int], NodeId] = {}
        self._sets_checked: dict[NodeId, tuple[int, int, int]] = {}
        genesis_set = self.genesis

        def build(boot: NodeBoot) -> Engine:
            return pbft_factory(pbft)(replace(boot, validators=genesis_set))

        super().__init__(config, build, seed, node_ids)

    def validators_at(self, height: int) -> tuple[NodeId, ...]:
        return [e for e in self.expected if e.effective_height <= height][-1].validators

    def _tell(self, node: SimNode, changed_by: int) -> None:
        engine = node.engine
        if engine is None:
            return
        validators = self.changes[changed_by]
        assert isinstance(engine, PbftEngine)
        actions = engine.reconfigure(changed_by + VALIDATOR_CHANGE_DELAY_BLOCKS, validators)
        effects = BatchEffects.of(actions)
        # No crash in here: the store's own calls (sync) expect the engine still up after it.
        if effects.records:
            self._carry_out(node, Persist(effects.records))
        for step in effects.steps:
            self._carry_out(node, step)

    def _boot(self, node: SimNode) -> None:
        super()._boot(node)
        for changed_by in self.changes:
            if changed_by <= node.height:
                self._tell(node, changed_by)

    def _store(self, node: SimNode, block: CommittedBlock) -> None:
        super()._store(node, block)
        if block.height in self.changes:
            self._tell(node, block.height)

    def _check_engine(self, node: SimNode) -> None:
        engine = node.engine
        if engine is None or node.node_id in self.byzantine:
            return
        assert isinstance(engine, PbftEngine)
        status = engine.status
        if status.role == "primary":
            key = (status.round, status.commit_height + 1)
            holder = self.slot_primaries.setdefault(key, node.node_id)
            if holder != node.node_id:
                self._fail(f"two primaries of view {key[0]} at height {key[1]}")
            if node.node_id not in self.validators_at(key[1]):
                self._fail(f"{node.node_id} is primary at {key[1]} outside that height's set")
        known = engine._sets.epochs
        stored = 1 + sum(1 for h in self.changes if h <= node.height)
        # Sets are only ever appended: compare again only when an engine or its count is new.
        seen = (id(engine), len(known), stored)
        if self._sets_checked.get(node.node_id) != seen:
            if list(known) != self.expected[: len(known)] or len(known) < stored:
                self._fail(
                    f"{node.node_id} at height {node.height} runs validator sets {known}, "
                    f"expected {self.expected[:stored]}"
                )
            self._sets_checked[node.node_id] = seen
        if status.commit_height < node.last_commit_height:
            self._fail(f"{node.node_id} commit height went back to {status.commit_height}")
        if status.commit_height > node.height:
            self._fail(f"{node.node_id} claims height {status.commit_height} above its store")
        node.last_commit_height = status.commit_height


# --- deeper pipelines ---------------------------------------------------------------------------


class DeepSlots(ProposalSlots):
    """`ProposalSlots` with the app-hash lag as a parameter: sim blocks carry no app hash, so a
    primary may build block h once h - `lag_blocks` is stored (the node's rule is h - 2, which
    caps its pipeline at two heights; this lets the simulator drive the engine deeper)."""

    def __init__(self, node_id: NodeId, lag_blocks: int) -> None:
        super().__init__(node_id)
        self.lag_blocks = lag_blocks

    def free_slot(
        self, status: EngineStatus, head_height: int, head_time_ms: int
    ) -> tuple[int, bytes, int] | None:
        next_height, parent_hash = status.next_height, status.next_parent_hash
        if next_height is None or parent_hash is None:
            return None
        if (
            next_height - self.lag_blocks > head_height
            or next_height <= head_height
            or self._proposed == (status.round, next_height)
        ):
            return None
        if next_height == head_height + 1:
            return next_height, parent_hash, head_time_ms
        parent_time_ms = self._proposed_times.get(parent_hash)
        return None if parent_time_ms is None else (next_height, parent_hash, parent_time_ms)


class PipelineSimulator(Simulator):
    """A simulator whose proposers fill slots up to `lag_blocks` above their stored chain."""

    def __init__(
        self, config: SimConfig, factory: EngineFactory, seed: int, lag_blocks: int
    ) -> None:
        self.lag_blocks = lag_blocks
        super().__init__(config, factory, seed)

    def _boot(self, node: SimNode) -> None:
        super()._boot(node)
        node.slots = DeepSlots(node.node_id, self.lag_blocks)
