"""The engine factory: the only place outside consensus/ that knows which engines exist."""

from __future__ import annotations

import dataclasses
import random

from consensus.engine import Engine
from consensus.raft import RaftEngine
from consensus.raft_config import RaftConfig, RaftConfigError
from consensus.solo import SoloEngine
from node.config import ConfigError, NodeConfig
from node.genesis import Genesis
from node.storage import Storage

# Consensus params the node itself reads (not the engine).
NODE_PARAMS = ("empty_block_interval_ms",)


def _engine_params(genesis: Genesis, allowed: set[str]) -> dict[str, int]:
    params = {k: v for k, v in genesis.consensus_params.items() if k not in NODE_PARAMS}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"genesis: unknown {genesis.consensus} params {unknown}")
    return params


def signs_messages(genesis: Genesis) -> bool:
    """Whether peer messages must carry the sender's signature (Byzantine engines)."""
    return genesis.consensus == "pbft"


def build_engine(config: NodeConfig, genesis: Genesis, storage: Storage) -> Engine:
    head = storage.head()
    validators = [v.node_id for v in genesis.validators]
    if genesis.consensus == "solo":
        return SoloEngine(config.node_id, head.height, head.block_hash)
    if genesis.consensus == "raft":
        fields = {f.name for f in dataclasses.fields(RaftConfig)}
        try:
            raft_config = RaftConfig(**_engine_params(genesis, fields))  # type: ignore[arg-type]
        except RaftConfigError as exc:
            raise ConfigError(f"genesis: raft params: {exc}") from exc
        return RaftEngine(
            config.node_id,
            validators,
            storage.consensus_records(),
            random.Random(),
            raft_config,
            commit_height=head.height,
            last_block_hash=head.block_hash,
        )
    raise ConfigError(f"consensus {genesis.consensus!r} is not available in this build")
