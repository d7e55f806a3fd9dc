"""Fixtures that start real node processes on free loopback ports and always stop them by PID."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, NodeLayout, write_network
from proto import ledger_pb2

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("supplier1", ("supplier",)),
    MemberSpec("supplier2", ("supplier",)),
    MemberSpec("auditor", ("auditor",)),  # signs the tests' reads: it sees every tx
]
HEALTHY_WITHIN_S = 30.0


class Cluster:
    """The end-to-end tests' view of a LocalCluster: its node processes as a list in node
    order, and a stop a fixture's `finally` can call without an event loop."""

    def __init__(self, net: NetworkLayout) -> None:
        self.net = net
        self.local = LocalCluster(net)
        self.procs = list(self.local.procs.values())

    async def start(self) -> None:
        await self.local.start(timeout_s=HEALTHY_WITHIN_S)

    def stop(self) -> None:
        self.local.stop_all()


@pytest.fixture
def solo_net(tmp_path) -> Iterator[Cluster]:
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="e2e-solo", block={"interval_ms": 20})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


def reading_client(net: NetworkLayout, addr: str, *, timeout_s: float = 60.0,
                   name: str = "auditor") -> LedgerClient:
    """A client of addr whose reads are signed by member `name` of net (reads are signed)."""
    return LedgerClient(addr, timeout_s=timeout_s, reader=net.account(name),
                        chain_id=net.chain_id)


async def chain_info(addr: str) -> ledger_pb2.ChainInfo:
    async with LedgerClient(addr, timeout_s=2.0) as client:
        return await client.chain_info()


async def wait_height(addr: str, height: int, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            if (await chain_info(addr)).height >= height:
                return
        except LedgerError:
            pass
        assert time.monotonic() < deadline, f"{addr} did not reach height {height}"
        await asyncio.sleep(0.1)


def add_validator_params(joined: NodeLayout) -> dict[str, Any]:
    """The `add_validator` proposal for a node `write_joining_node` made."""
    node_dir = os.path.dirname(joined.config_path)
    key = Account.load(os.path.join(node_dir, "node_key.pem"))
    with open(os.path.join(node_dir, "tls.crt")) as handle:
        cert_pem = handle.read()
    return {"node_id": joined.node_id, "public_key": key.public_key.hex(),
            "tls_cert_pem": cert_pem, "peer_addr": joined.peer_addr}


async def assert_converged(addrs: list[str], within_s: float,
                           reader: Account | None = None) -> int:
    """Every node reaches one height past the highest now, and all agree on that block and the
    app hash after it; returns the height. `reader` signs the block reads (None: the nodes
    serve unsigned reads)."""
    target = max([(await chain_info(a)).height for a in addrs]) + 1
    for addr in addrs:
        await wait_height(addr, target, within_s)
    seen = {}
    for addr in addrs:
        async with LedgerClient(addr, timeout_s=5.0, reader=reader) as client:
            block = await client.get_block(target)
        seen[addr] = (block.block_hash, block.app_hash)
    assert len(set(seen.values())) == 1, f"nodes disagree at height {target}: {seen}"
    return target
