"""A 3-node Raft cluster of real processes on loopback, with load running: SIGKILL the leader,
then a follower; restart both. Every acknowledged tx must be on every node, all app hashes must
agree, and a new leader must serve within a few seconds of the leader's death.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from node.client.ledger import LedgerClient, LedgerError
from node.ops.localnet import write_network
from tests.e2e.conftest import MEMBERS, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

NEW_LEADER_WITHIN_S = 5.0


async def leader_of(cluster: Cluster, skip: set[str] = frozenset()) -> str | None:
    for proc in cluster.procs:
        if proc.layout.node_id in skip or not proc.alive():
            continue
        try:
            async with LedgerClient(proc.layout.client_addr, timeout_s=1) as client:
                info = await client.chain_info()
        except LedgerError:
            continue
        if info.leader and info.leader not in skip:
            return info.leader
    return None


async def wait_leader(cluster: Cluster, skip: set[str], within_s: float) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        leader = await leader_of(cluster, skip)
        if leader is not None:
            return leader, time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"no leader among the living within {within_s}s")


class Load:
    """Clients submitting batches to every live node; remembers what was acknowledged."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.acknowledged: list[str] = []
        self.refused = 0
        self._nonce = itertools.count()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        net = self.cluster.net
        core, s1 = net.account("core"), net.account("supplier1")
        turn = itertools.count()
        while not self._stop.is_set():
            proc = self.cluster.procs[next(turn) % len(self.cluster.procs)]
            if not proc.alive():
                await asyncio.sleep(0.01)
                continue
            txs = [core.build_tx(net.chain_id, "cash", "transfer",
                                 {"to": s1.account_id, "amount": 1}, nonce=next(self._nonce))
                   for _ in range(50)]
            try:
                async with LedgerClient(proc.layout.client_addr, timeout_s=8) as client:
                    receipts = await client.submit_and_wait(txs, timeout_ms=5_000)
            except LedgerError:
                self.refused += 1
                await asyncio.sleep(0.05)
                continue
            assert all(r.ok for r in receipts), receipts[0]
            self.acknowledged += [r.tx_id for r in receipts]

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def raft3(tmp_path):
    net = write_network(str(tmp_path), nodes=3, consensus="raft", members=MEMBERS,
                        chain_id="e2e-raft", block={"interval_ms": 20})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_kill_leader_then_follower_loses_nothing(raft3) -> None:
    cluster = raft3
    await cluster.start()
    first, _ = await wait_leader(cluster, set(), 15)
    load = Load(cluster)
    runner = asyncio.create_task(load.run())
    try:
        await asyncio.sleep(2)
        by_id = {p.layout.node_id: p for p in cluster.procs}
        by_id[first].kill()
        second, took = await wait_leader(cluster, {first}, NEW_LEADER_WITHIN_S)
        assert second != first and took < NEW_LEADER_WITHIN_S
        await asyncio.sleep(2)
        follower = next(n for n in by_id if n not in (first, second))
        by_id[follower].kill()
        await asyncio.sleep(1)
        for node_id in (first, follower):
            by_id[node_id].start()
        for node_id in (first, follower):
            await by_id[node_id].wait_healthy()
        await asyncio.sleep(2)
    finally:
        load.stop()
        await runner
    assert len(load.acknowledged) > 500, (len(load.acknowledged), load.refused)

    # Every node reaches the height the cluster had when the load stopped, with equal hashes.
    target = 0
    for proc in cluster.procs:
        async with LedgerClient(proc.layout.client_addr) as client:
            target = max(target, (await client.chain_info()).height)
    deadline = time.monotonic() + 30
    hashes = set()
    for proc in cluster.procs:
        async with LedgerClient(proc.layout.client_addr) as client:
            while (await client.chain_info()).height < target:
                assert time.monotonic() < deadline, f"{proc.layout.node_id} is behind {target}"
                await asyncio.sleep(0.2)
            hashes.add((await client.get_block(target)).app_hash)
    assert len(hashes) == 1
    for proc in cluster.procs:
        async with LedgerClient(proc.layout.client_addr) as client:
            for tx_id in load.acknowledged:
                found = await client.get_tx(bytes.fromhex(tx_id))
                assert found.receipt.status == 1, (proc.layout.node_id, tx_id)
            balance = await client.query(
                "cash", "balance", {"account": cluster.net.account("supplier1").account_id}
            )
            assert balance["balance"] >= len(load.acknowledged)
