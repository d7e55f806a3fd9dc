"""One live solo node per test module, shared by the hostile-input tests to keep CI time down.

The node runs with small limits (so "oversized" is cheap to build) and no empty blocks (so the
app hash moves only when a tx commits). Its process is stopped by PID when the module ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from node.client.ledger import LedgerClient
from node.ops.localcluster import STOP_GRACE_S, LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, NodeProcess, write_network

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("supplier1", ("supplier",)),
    MemberSpec("supplier2", ("supplier",), balance=1_000),
    MemberSpec("suspended", ("supplier",), balance=1_000),
    MemberSpec("auditor", ("auditor",)),  # signs the reads of node.client(): sees everything
]

LIMITS = {
    "limits.request_txs_max": 1_000,
    "limits.request_bytes_max": 1_048_576,
    "limits.tx_bytes_max": 65_536,
    "limits.verified_cache_max": 10_000,
    "limits.query_args_bytes_max": 4_096,
    "limits.subscribers_max": 600,
}


def kill_by_pid(proc: NodeProcess) -> None:
    """Stop a node by its PID, whatever state it is in: SIGTERM, SIGKILL after the grace period,
    and wait until it is gone."""
    proc.stop(grace_s=STOP_GRACE_S)


@dataclass
class LiveNode:
    net: NetworkLayout
    proc: NodeProcess

    @property
    def addr(self) -> str:
        return self.proc.layout.client_addr

    def client(self, timeout_s: float = 20, *, as_: str | None = "auditor") -> LedgerClient:
        """A client whose reads are signed by member `as_` (None: unsigned reads)."""
        reader = self.net.account(as_) if as_ is not None else None
        return LedgerClient(self.addr, timeout_s=timeout_s, reader=reader,
                            chain_id=self.net.chain_id)


async def _suspend_member(node: LiveNode) -> None:
    net = node.net
    admin, suspended = net.account("admin"), net.account("suspended")
    async with node.client() as client:
        # Genesis names no committee, so the admin alone is the committee: its proposal
        # executes at once.
        receipt = await client.call(admin, net.chain_id, "governance", "propose",
                                    {"action": "suspend_member",
                                     "params": {"account": suspended.account_id}})
    assert receipt.ok, receipt


@pytest.fixture(scope="module")
def live_node(tmp_path_factory) -> Iterator[LiveNode]:
    root = str(tmp_path_factory.mktemp("secnode"))
    net = write_network(root, nodes=1, consensus="solo", members=MEMBERS, chain_id="sec-solo",
                        block={"interval_ms": 20},
                        consensus_params={"empty_block_interval_ms": 0},
                        node_options=LIMITS)
    cluster = LocalCluster(net)
    node = LiveNode(net, cluster.procs[net.nodes[0].node_id])
    try:
        asyncio.run(cluster.start(timeout_s=30))
        asyncio.run(_suspend_member(node))
        yield node
    finally:
        cluster.stop_all()
