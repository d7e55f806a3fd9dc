"""Cluster status: each node's process and chain state, and app-hash divergence between nodes.

`scfchain cluster status` shows these; a node is up when its recorded process runs and answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from node.client.ledger import LedgerClient, LedgerError
from node.ops.launcher import Cluster, ClusterNode, running_pids


@dataclass(frozen=True, slots=True)
class NodeStatus:
    id: str
    up: bool
    pid: int | None
    client_addr: str
    height: int = 0
    app_hash: str = ""
    role: str = ""
    round: int = 0
    leader: str = ""
    mempool_size: int = 0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def node_statuses(cluster: Cluster, *, timeout_s: float = 2.0) -> list[NodeStatus]:
    """Every node's process and chain state (a node is up when its process answers)."""
    pids = running_pids(cluster)

    async def one(node: ClusterNode) -> NodeStatus:
        pid = pids.get(node.id)
        if pid is None:
            return NodeStatus(node.id, False, None, node.client_addr, error="not running")
        try:
            async with LedgerClient(node.client_addr, timeout_s=timeout_s) as client:
                info = await client.chain_info()
        except LedgerError as exc:
            return NodeStatus(node.id, False, pid, node.client_addr, error=str(exc))
        return NodeStatus(
            id=node.id,
            up=True,
            pid=pid,
            client_addr=node.client_addr,
            height=info.height,
            app_hash=info.app_hash.hex(),
            role=info.role,
            round=info.round,
            leader=info.leader,
            mempool_size=info.mempool_size,
        )

    return list(await asyncio.gather(*(one(node) for node in cluster.nodes)))


async def app_hash_divergence(cluster: Cluster, statuses: list[NodeStatus]) -> str | None:
    """A warning when up nodes disagree on the app hash at the highest height they share."""
    up = [status for status in statuses if status.up]
    if len(up) < 2:
        return None
    common = min(status.height for status in up)
    if common == 0:
        return None
    hashes: dict[str, str] = {}
    for status in up:
        try:
            async with LedgerClient(status.client_addr, timeout_s=2.0) as client:
                block = await client.get_block(common)
        except LedgerError:
            continue
        hashes[status.id] = block.app_hash.hex()
    if len(set(hashes.values())) <= 1:
        return None
    listing = ", ".join(f"{node_id} {value[:16]}…" for node_id, value in sorted(hashes.items()))
    return f"app hashes differ at height {common}: {listing}"
