"""Fixtures that start real node processes on free loopback ports and always stop them by PID."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, write_network

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("supplier1", ("supplier",)),
    MemberSpec("supplier2", ("supplier",)),
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
