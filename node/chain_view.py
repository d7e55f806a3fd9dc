"""What the client API may read of the node: the head, the engine's status, stored blocks, txs
and committed state, and the mempool's contents. Nothing here changes the node."""

from __future__ import annotations

from consensus.engine import Engine, EngineStatus
from node.mempool import Mempool
from node.proposer import ChainReader
from node.storage import ChainHead, CommittedView, Storage
from proto import types_pb2


class ChainView:
    def __init__(
        self,
        node_id: str,
        chain_id: str,
        storage: Storage,
        mempool: Mempool,
        engine: Engine,
        chain: ChainReader,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._storage = storage
        self._mempool = mempool
        self._engine = engine
        self._chain = chain

    @property
    def head(self) -> ChainHead:
        return self._chain.head

    @property
    def status(self) -> EngineStatus:
        return self._engine.status

    def is_leader(self) -> bool:
        return self._engine.status.leader == self.node_id

    def get_block(self, height: int) -> types_pb2.CommittedBlock | None:
        return self._storage.get_block(height)

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        return self._storage.tx_location(tx_id)

    def committed_view(self) -> CommittedView:
        """A snapshot of one committed height, for queries (never the execution cache)."""
        return self._storage.committed_view()

    def is_pending(self, tx_id: bytes) -> bool:
        return tx_id in self._mempool

    @property
    def mempool_size(self) -> int:
        return len(self._mempool)
