"""Where the console reads the chain from: the `ChainSource` protocol and its gRPC implementation.

The web app never talks gRPC itself; it is handed a `ChainSource` at construction. In service
that is `GrpcChainSource`: one `LedgerClient` per node, every read signed by the member the
console runs as (so a page shows exactly what that member may see), reads going to the first
node that answers. Tests hand the app a stub with the same methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient, LedgerError
from proto import ledger_pb2, types_pb2

log = logging.getLogger(__name__)

CHAIN_INFO_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 10.0
FAILOVER_STATUSES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


@dataclass(frozen=True, slots=True)
class NodeTarget:
    """One node the console may read from."""

    node_id: str  # as the operator names it ("" when only an address is known)
    client_addr: str
    tls: ClientTls | None = None


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What one node says of itself (GetChainInfo), or why it said nothing."""

    node_id: str
    client_addr: str
    reachable: bool
    height: int = 0
    role: str = ""
    round: int = 0
    leader: str = ""
    consensus: str = ""
    validator: bool = False
    mempool_size: int = 0
    base_height: int = 0
    validators: tuple[str, ...] = ()
    app_hash: str = ""
    error: str = ""

    @classmethod
    def of(cls, target: NodeTarget, info: ledger_pb2.ChainInfo) -> NodeStatus:
        return cls(
            node_id=info.node_id or target.node_id,
            client_addr=target.client_addr,
            reachable=True,
            height=info.height,
            role=info.role,
            round=info.round,
            leader=info.leader,
            consensus=info.consensus,
            validator=info.validator,
            mempool_size=info.mempool_size,
            base_height=info.base_height,
            validators=tuple(info.validators),
            app_hash=info.app_hash.hex(),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id, "client_addr": self.client_addr,
            "reachable": self.reachable, "height": self.height, "role": self.role,
            "round": self.round, "leader": self.leader, "consensus": self.consensus,
            "validator": self.validator, "mempool_size": self.mempool_size,
            "base_height": self.base_height, "validators": list(self.validators),
            "app_hash": self.app_hash, "error": self.error,
        }


class ChainSource(Protocol):
    """The reads the console needs, all as one member (`reader_account`)."""

    @property
    def chain_id(self) -> str: ...

    @property
    def reader_account(self) -> str: ...

    async def node_statuses(self) -> list[NodeStatus]: ...

    async def query(self, contract: str, view: str, args: dict[str, Any]) -> Any: ...

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse: ...

    async def get_block(self, height: int) -> types_pb2.CommittedBlock: ...

    def subscribe(self, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]: ...

    async def close(self) -> None: ...


class GrpcChainSource:
    """Reads through the nodes' gRPC API, signed by `reader`; the first node that answers
    serves a read, and a node that is down is skipped (the next read tries it again)."""

    def __init__(self, targets: Sequence[NodeTarget], reader: Account, chain_id: str) -> None:
        assert targets, "at least one node to read from"
        self._targets = list(targets)
        self._reader = reader
        self._chain_id = chain_id
        self._clients = [
            LedgerClient(t.client_addr, timeout_s=READ_TIMEOUT_S, reader=reader,
                         chain_id=chain_id, tls=t.tls)
            for t in self._targets
        ]
        self._preferred = 0

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def reader_account(self) -> str:
        return self._reader.account_id

    @property
    def targets(self) -> list[NodeTarget]:
        return list(self._targets)

    async def node_statuses(self) -> list[NodeStatus]:
        async def one(target: NodeTarget, client: LedgerClient) -> NodeStatus:
            try:
                info = await client.chain_info(timeout_s=CHAIN_INFO_TIMEOUT_S)
            except LedgerError as exc:
                return NodeStatus(target.node_id, target.client_addr, reachable=False,
                                  error=f"{exc.status}: {exc.message}")
            return NodeStatus.of(target, info)

        return list(await asyncio.gather(
            *(one(t, c) for t, c in zip(self._targets, self._clients, strict=True))
        ))

    def _order(self) -> list[int]:
        count = len(self._clients)
        return [(self._preferred + step) % count for step in range(count)]

    async def _read(self, call: Any) -> Any:
        """Run `call(client)` on the preferred node, moving on while nodes are unreachable."""
        last: LedgerError | None = None
        for index in self._order():
            try:
                result = await call(self._clients[index])
            except LedgerError as exc:
                if exc.status not in FAILOVER_STATUSES:
                    raise
                log.info("node %s unavailable (%s); trying the next",
                         self._targets[index].client_addr, exc.status)
                last = exc
                continue
            self._preferred = index
            return result
        assert last is not None
        raise last

    async def query(self, contract: str, view: str, args: dict[str, Any]) -> Any:
        return await self._read(lambda client: client.query(contract, view, args))

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse:
        response: ledger_pb2.GetTxResponse = await self._read(
            lambda client: client.get_tx(tx_id))
        return response

    async def get_block(self, height: int) -> types_pb2.CommittedBlock:
        block: types_pb2.CommittedBlock = await self._read(
            lambda client: client.get_block(height))
        return block

    async def subscribe(self, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        """Blocks from `from_height` on, from the preferred node (its stream ending or failing
        ends this iterator; the follower resubscribes, maybe to another node)."""
        index = self._preferred
        self._preferred = (index + 1) % len(self._clients)  # the next try goes elsewhere
        async for block in self._clients[index].subscribe(from_height=from_height):
            self._preferred = index
            yield block

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
