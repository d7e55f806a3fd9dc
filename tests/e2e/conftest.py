"""Fixtures that start real node processes on free loopback ports and always stop them by PID."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from node.ops.localnet import MemberSpec, NetworkLayout, NodeProcess, write_network

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("supplier1", ("supplier",)),
    MemberSpec("supplier2", ("supplier",)),
]


class Cluster:
    def __init__(self, net: NetworkLayout) -> None:
        self.net = net
        self.procs = [NodeProcess(layout) for layout in net.nodes]

    async def start(self) -> None:
        for proc in self.procs:
            proc.start()
        for proc in self.procs:
            await proc.wait_healthy()

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(grace_s=5)
            if proc.pid is not None:  # nothing may survive the test
                try:
                    os.kill(proc.pid, 0)
                except ProcessLookupError:
                    continue
                os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def solo_net(tmp_path) -> Iterator[Cluster]:
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="e2e-solo", block={"interval_ms": 20})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()
