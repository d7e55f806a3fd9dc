"""A 3-node Raft cluster of real processes on loopback, with load running: SIGKILL the leader,
then a follower; restart both. Every acknowledged tx must be on every node, all app hashes must
agree, and a new leader must serve within a few seconds of the leader's death.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest

from node.client.ledger import LedgerClient, LedgerError
from node.ops.localnet import write_network
from proto import types_pb2
from tests.e2e.conftest import MEMBERS, Cluster, reading_client
from tests.e2e.reliability import LedgerReader, read_chain

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

NEW_LEADER_WITHIN_S = 5.0
# A phase under load must commit at least one batch within this long; generous, since it
# bounds a wait for progress rather than measuring speed.
COMMIT_WITHIN_S = 20.0


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

    BATCH_TXS = 50

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.acknowledged: list[str] = []
        self.refused = 0
        self._nonce = itertools.count()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

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
                   for _ in range(self.BATCH_TXS)]
            try:
                async with LedgerClient(proc.layout.client_addr, timeout_s=8) as client:
                    receipts = await client.submit_and_wait(txs, timeout_ms=5_000)
            except LedgerError:
                self.refused += 1
                await asyncio.sleep(0.05)
                continue
            assert all(r.ok for r in receipts), receipts[0]
            self.acknowledged += [r.tx_id for r in receipts]

    async def commits_more(self, what: str, within_s: float = COMMIT_WITHIN_S) -> int:
        """Waits until a batch more than now is acknowledged; returns the new count.

        A phase of a fault test ends when the cluster has visibly committed under it, not after
        a time that only means progress on a machine as fast as the one it was tuned on.
        """
        start = len(self.acknowledged)
        deadline = time.monotonic() + within_s
        while len(self.acknowledged) <= start:
            if self._task is not None and self._task.done():
                self._task.result()  # the load failed: raise its error, not a timeout
                raise AssertionError(f"the load stopped before {what}")
            assert time.monotonic() < deadline, (
                f"nothing committed within {within_s:.0f} s {what} "
                f"({start} acknowledged, {self.refused} batches refused)"
            )
            await asyncio.sleep(0.05)
        return len(self.acknowledged)


async def _balance_at_head(client: LedgerClient, account_id: str) -> tuple[int, int]:
    """(height, balance) read at one height: a block committing in between makes it try again."""
    for _ in range(100):
        height = int((await client.chain_info()).height)
        found = await client.query("cash", "balance", {"account": account_id})
        if int((await client.chain_info()).height) == height:
            return height, int(found["balance"])
    raise AssertionError("the head kept moving while the balance was read")


async def check_each_tx_applied_once(
    cluster: Cluster, acknowledged: list[str], payee: str = "supplier1"
) -> None:
    """Each node's payee balance is exactly what the chain's successful transfers paid it.

    Sums the payee's `Transferred` amounts of every successful tx in blocks 1..h (read from the
    first node), refusing a tx id that succeeded twice, and compares that sum with each node's
    balance read at its height h: equality, since a `>=` would hide a tx applied twice. Every
    acknowledged tx must be one of those payments. The load sends 1-unit transfers, so the sum
    is also the number of distinct transfer txs.
    """
    payee_id = cluster.net.account(payee).account_id
    as_payee = LedgerReader(cluster.net.account(payee), cluster.net.chain_id)  # sees its pay
    balances: dict[str, tuple[int, int]] = {}
    for proc in cluster.procs:
        async with as_payee.client(proc.layout.client_addr, timeout_s=60) as client:
            balances[proc.layout.node_id] = await _balance_at_head(client, payee_id)
    top = max(height for height, _ in balances.values())
    paid: dict[bytes, tuple[int, int]] = {}  # tx id -> (height, amount paid to the payee)
    for block in await read_chain(cluster.procs[0].layout.client_addr, top, as_payee):
        for receipt in block.receipts:
            if receipt.status != types_pb2.SUCCESS:
                continue
            assert receipt.tx_id not in paid, f"tx {receipt.tx_id.hex()} succeeded twice"
            amount = 0
            for event in receipt.events:
                attrs = json.loads(event.attrs_json)
                if (event.contract, event.name) == ("cash", "Transferred") and (
                    attrs["to"] == payee_id
                ):
                    amount += int(attrs["amount"])
            paid[receipt.tx_id] = (block.block.header.height, amount)
    missing = {bytes.fromhex(t) for t in acknowledged} - {t for t, (_, a) in paid.items() if a}
    assert not missing, f"{len(missing)} acknowledged txs paid nothing, e.g. {missing.pop().hex()}"
    genesis_balance = next(m.balance for m in MEMBERS if m.name == payee)
    for node_id, (height, balance) in balances.items():
        expected = genesis_balance + sum(a for h, a in paid.values() if h <= height)
        assert balance == expected, (node_id, height, balance, expected)


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
    load.start()
    try:
        # Every phase must commit under its fault: the load grows after each one.
        await load.commits_more("with all three nodes up")
        by_id = {p.layout.node_id: p for p in cluster.procs}
        by_id[first].kill()
        second, took = await wait_leader(cluster, {first}, NEW_LEADER_WITHIN_S)
        assert second != first and took < NEW_LEADER_WITHIN_S
        await load.commits_more(f"under the new leader {second}")
        follower = next(n for n in by_id if n not in (first, second))
        by_id[follower].kill()
        # The leader alone is no majority: nothing can commit during this outage, whose length
        # is the fault itself (the load keeps trying), not a wait for anything to happen.
        await asyncio.sleep(1)
        for node_id in (first, follower):
            by_id[node_id].start()
        for node_id in (first, follower):
            await by_id[node_id].wait_healthy()
        await load.commits_more("after both restarted")
    finally:
        await load.stop()

    # Every node reaches the height the cluster had when the load stopped, with equal hashes.
    target = 0
    for proc in cluster.procs:
        async with LedgerClient(proc.layout.client_addr) as client:
            target = max(target, (await client.chain_info()).height)
    deadline = time.monotonic() + 30
    hashes = set()
    for proc in cluster.procs:
        async with reading_client(cluster.net, proc.layout.client_addr) as client:
            while (await client.chain_info()).height < target:
                assert time.monotonic() < deadline, f"{proc.layout.node_id} is behind {target}"
                await asyncio.sleep(0.2)
            hashes.add((await client.get_block(target)).app_hash)
    assert len(hashes) == 1
    for proc in cluster.procs:
        async with reading_client(cluster.net, proc.layout.client_addr) as client:
            for tx_id in load.acknowledged:
                found = await client.get_tx(bytes.fromhex(tx_id))
                assert found.receipt.status == 1, (proc.layout.node_id, tx_id)
    await check_each_tx_applied_once(cluster, load.acknowledged)
