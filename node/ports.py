"""The interfaces the daemon's parts are wired through, so each part can be replaced from outside.

`PeerTransport` is how the parts reach other validators (node/transport.py implements it; a
test wrapper may rewrite what goes out); `SnapshotSource` is what the node serves of its state
snapshots (a test wrapper may corrupt it). `NodeObserver` is told of the moments a crash would
hurt most; the node runs with `NullObserver`, and node/faults/ plugs in observers that crash
the process there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from proto import peer_pb2, types_pb2


class Forwarder(Protocol):
    """Hands a batch of admitted txs to the validator that proposes now."""

    async def forward(self, to: str, txs: list[types_pb2.SignedTx]) -> None: ...


class PeerTransport(Forwarder, Protocol):
    """How the driver's parts reach other validators."""

    def send(self, to: str, msg: Any) -> None: ...

    def broadcast(self, msg: Any) -> None: ...

    def fetch_blocks(self, peer: str, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        ...


class Roster(Protocol):
    """Who votes now, and every validator's key (node/epochs.py, node/validator_set.py)."""

    def voters(self) -> frozenset[str]: ...

    def public_key(self, node_id: str) -> bytes | None: ...


class SnapshotSource(Protocol):
    """The state snapshots a node serves its peers (node/snapshots.py `SnapshotStore`)."""

    def signed_manifests(self) -> list[peer_pb2.SignedManifest]: ...

    def chunk(self, height: int, index: int) -> bytes | None: ...


class PeerMetrics(Protocol):
    """Where the transport counts bytes per peer (node/metrics.py)."""

    def sent(self, peer: str, size: int) -> None: ...

    def received(self, peer: str, size: int) -> None: ...


class BlockMetrics(Protocol):
    """Where the committer counts what it commits and how long it took (node/metrics.py)."""

    def block_committed(self, txs: int, execute_s: float, commit_s: float) -> None: ...


class NodeObserver(Protocol):
    """Moments in the life of a node, called from the thread that reaches them."""

    def consensus_persisted(self) -> None:
        """The engine's records of one batch are synced; none of its messages is sent yet."""

    def block_executed(self, height: int) -> None:
        """A block is executed; its write batch is not written yet."""

    def block_written(self, height: int) -> None:
        """A block's write batch is synced; no waiting client has its receipt yet."""

    def block_synced(self, height: int) -> None:
        """A block fetched from a peer is applied; the rest of the catch-up is not."""

    def snapshot_chunk_restored(self, index: int) -> None:
        """A state snapshot's chunk is written to the store; the restore is not finished."""


class NullObserver:
    """The observer of a node that nobody watches."""

    def consensus_persisted(self) -> None:
        pass

    def block_executed(self, height: int) -> None:
        pass

    def block_written(self, height: int) -> None:
        pass

    def block_synced(self, height: int) -> None:
        pass

    def snapshot_chunk_restored(self, index: int) -> None:
        pass
