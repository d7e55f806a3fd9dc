"""Cluster status: each node's process and chain state, and app-hash divergence between nodes.

`scfchain cluster status` shows these; a node is up when its recorded process runs and answers.
Whether a node is a validator comes from the node itself (ChainInfo `validator`,
`validator_epoch`); a node that is down, or that serves no such field, is placed by the
validator set an up node reports (ChainInfo `validators`), or else by genesis. `base_height` is
the lowest height whose block a node holds (ChainInfo `base_height`; 0: every block): a node
restored from a state snapshot or pruned holds none below it.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from node.client.ledger import LedgerClient, LedgerError
from node.ops.launcher import (
    Cluster,
    ClusterError,
    ClusterNode,
    genesis_validator_ids,
    running_pids,
)
from node.ops.localcluster import reports_validator
from proto import ledger_pb2


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
    validator: bool = False
    validator_epoch: int | None = None  # None: the node does not say (down, or an older node)
    base_height: int = 0  # lowest height whose block the node holds; 0: every block (or down)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def node_statuses(cluster: Cluster, *, timeout_s: float = 2.0) -> list[NodeStatus]:
    """Every node's process and chain state (a node is up when its process answers)."""
    pids = running_pids(cluster)

    async def ask(node: ClusterNode) -> ledger_pb2.ChainInfo | str | None:
        if node.id not in pids:
            return None
        try:
            async with LedgerClient(node.client_addr, timeout_s=timeout_s,
                                    tls=node.client_tls()) as client:
                return await client.chain_info()
        except LedgerError as exc:
            return str(exc)

    answers = await asyncio.gather(*(ask(node) for node in cluster.nodes))
    infos = [a for a in answers if isinstance(a, ledger_pb2.ChainInfo)]
    validators = validator_set(cluster, infos)
    return [
        node_status(node, pids.get(node.id), answer, node.id in validators)
        for node, answer in zip(cluster.nodes, answers, strict=True)
    ]


def validator_set(cluster: Cluster, infos: list[ledger_pb2.ChainInfo]) -> set[str]:
    """The validator set as the highest up node lists it, or genesis's when none lists one."""
    for info in sorted(infos, key=lambda i: i.height, reverse=True):
        if info.validators:
            return set(info.validators)
    try:
        return set(genesis_validator_ids(cluster))
    except ClusterError:  # status must still show the nodes when genesis cannot be read
        return set()


def node_status(
    node: ClusterNode, pid: int | None, answer: ledger_pb2.ChainInfo | str | None,
    in_validator_set: bool,
) -> NodeStatus:
    """One node's status from its ChainInfo (or the error it gave, or None: not running)."""
    if not isinstance(answer, ledger_pb2.ChainInfo):
        return NodeStatus(node.id, False, pid, node.client_addr,
                          error=answer or "not running", validator=in_validator_set)
    said = reports_validator(answer)
    fields = answer.DESCRIPTOR.fields_by_name
    epoch = int(getattr(answer, "validator_epoch")) if "validator_epoch" in fields else None  # noqa: B009
    return NodeStatus(
        id=node.id,
        up=True,
        pid=pid,
        client_addr=node.client_addr,
        height=answer.height,
        app_hash=answer.app_hash.hex(),
        role=answer.role,
        round=answer.round,
        leader=answer.leader,
        mempool_size=answer.mempool_size,
        validator=in_validator_set if said is None else said,
        validator_epoch=epoch,
        base_height=answer.base_height,
    )


async def app_hash_divergence(cluster: Cluster, statuses: list[NodeStatus]) -> str | None:
    """A warning when up nodes disagree on the app hash at the highest height they share."""
    up = [status for status in statuses if status.up]
    if len(up) < 2:
        return None
    common = min(status.height for status in up)
    if common == 0:
        return None
    hashes: dict[str, str] = {}
    reader = cluster.any_reader()  # a block's app hash shows whatever the reader may see
    for status in up:
        try:
            async with LedgerClient(status.client_addr, timeout_s=2.0, reader=reader,
                                    chain_id=cluster.chain_id,
                                    tls=cluster.client_tls()) as client:
                block = await client.get_block(common)
        except LedgerError:
            continue
        hashes[status.id] = block.app_hash.hex()
    if len(set(hashes.values())) <= 1:
        return None
    listing = ", ".join(f"{node_id} {value[:16]}…" for node_id, value in sorted(hashes.items()))
    return f"app hashes differ at height {common}: {listing}"
