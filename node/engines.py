"""The engine factory: the only place outside consensus/ that knows which engines exist."""

from __future__ import annotations

from consensus.engine import Engine
from consensus.solo import SoloEngine
from node.config import ConfigError, NodeConfig
from node.genesis import Genesis
from node.storage import Storage


def build_engine(config: NodeConfig, genesis: Genesis, storage: Storage) -> Engine:
    head = storage.head()
    if genesis.consensus == "solo":
        return SoloEngine(config.node_id, head.height, head.block_hash)
    raise ConfigError(f"consensus {genesis.consensus!r} is not available in this build")
