"""What the client API may read of the node: the head, the engine's status, stored blocks, txs
and committed state, and the mempool's contents. Nothing here changes the node."""

from __future__ import annotations

from typing import Protocol

from consensus.engine import EngineStatus
from node.epochs import Epochs
from node.mempool import Mempool
from node.proposer import ChainReader
from node.storage import ChainHead, CommittedView, Storage
from proto import types_pb2


class StatusSource(Protocol):
    """An engine, or an observer's follower standing in for one."""

    @property
    def status(self) -> EngineStatus: ...


class Role:
    """Who answers for consensus on this node now: the engine while it is a validator, the
    follower while it is an observer (node/server.py switches at the height the set changes)."""

    def __init__(self, source: StatusSource, *, validator: bool) -> None:
        self.source = source
        self.validator = validator

    def use(self, source: StatusSource, *, validator: bool) -> None:
        self.source = source
        self.validator = validator

    @property
    def status(self) -> EngineStatus:
        return self.source.status


class ChainView:
    def __init__(
        self,
        node_id: str,
        chain_id: str,
        storage: Storage,
        mempool: Mempool,
        engine: StatusSource,
        chain: ChainReader,
        *,
        epochs: Epochs | None = None,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self._storage = storage
        self._mempool = mempool
        self._engine = engine
        self._chain = chain
        self._epochs = epochs

    @property
    def head(self) -> ChainHead:
        return self._chain.head

    @property
    def status(self) -> EngineStatus:
        return self._engine.status

    def is_leader(self) -> bool:
        return self._engine.status.leader == self.node_id

    @property
    def is_validator(self) -> bool:
        """Whether this node votes now (an observer does not)."""
        role = self._engine
        return role.validator if isinstance(role, Role) else True

    @property
    def validator_epoch(self) -> int:
        return self._epochs.state.epoch if self._epochs is not None else 0

    def validators(self) -> list[str] | None:
        """The validators voting on the next block, when the set is known here."""
        if self._epochs is None:
            return None
        return list(self._epochs.sets.ids_at(self._chain.head.height + 1))

    def get_block(self, height: int) -> types_pb2.CommittedBlock | None:
        return self._storage.get_block(height)

    def base_height(self) -> int:
        """The lowest height whose block this node holds (0: every block). A node restored
        from a state snapshot, or pruned, holds none below it."""
        return self._storage.base_height()

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
