"""PBFT engines for the simulator: the factory, sim block parsing, sim signatures and timing.

Sim blocks are `height|parent hex|proposer|serial` with hash sha256(payload). Signatures are
keyed hashes, sha256(secret(node) || statement): a stand-in for Ed25519 that a test adversary
can produce for the nodes it controls (via `sim_sign`) and no one can forge for others by
accident. The engine never sees a key either way; it calls the injected functions.
"""

from __future__ import annotations

import hashlib
import random

from consensus.engine import Engine, NodeId
from consensus.pbft import PbftEngine
from consensus.pbft_config import BlockIdentity, PbftConfig
from tests.sim.simulator import EngineFactory, NodeBoot, block_payload

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
