"""Network faults through a TCP proxy on every peer link of a live cluster under load.

In turn: blackhole a follower, isolate the leader, 50 % loss on every link, 75 +- 50 ms delay on
every link, each followed by heal. Throughout, an auditor compares the block hash every node
holds at the lowest common height (agreement: no two nodes ever commit different blocks). After
each heal, every node must reach the height the cluster had at healing time, with the same block
hash, within 20 s. At the end the ledger checks run (nothing acknowledged lost, nothing twice,
equal app hashes).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from node.client.ledger import LedgerClient, LedgerError
from tests.e2e.reliability import (
    FaultCluster,
    Load,
    check_ledger,
    consensuses,
    heads,
    make_cluster,
    reader,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

CONVERGE_AFTER_HEAL_S = 20.0
FAULT_S = 3.0


class Auditor:
    """Checks agreement every 0.3 s while faults come and go."""

    def __init__(self, cluster: FaultCluster) -> None:
        self.cluster = cluster
        self.checks = 0
        self.disagreements: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        found = {n: h for n, h in (await heads(self.cluster)).items() if h is not None}
        if len(found) < 2:
            return
        height = min(h[0] for h in found.values())
        if height == 0:
            return
        hashes = {}
        as_payee = reader(self.cluster.net)
        for node_id in found:
            try:
                async with as_payee.client(self.cluster.addr(node_id), timeout_s=2) as client:
                    hashes[node_id] = (await client.get_block(height)).block_hash
            except LedgerError:
                continue
        if len(set(hashes.values())) > 1:
            self.disagreements.append(f"height {height}: {hashes}")
        self.checks += 1

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(0.3)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def max_height(cluster: FaultCluster) -> int:
    return max((h[0] for h in (await heads(cluster)).values() if h is not None), default=0)


async def converged_past(cluster: FaultCluster, target: int) -> float:
    """Seconds until every node holds block `target` with one and the same hash."""
    started = time.monotonic()

    async def done() -> bool:
        found = await heads(cluster, cluster.ids)
        if any(h is None or h[0] < target for h in found.values()):
            return False
        hashes = set()
        for node_id in cluster.ids:
            async with reader(cluster.net).client(cluster.addr(node_id), timeout_s=2) as client:
                hashes.add((await client.get_block(target)).block_hash)
        return len(hashes) == 1

    await wait_until(done, CONVERGE_AFTER_HEAL_S, f"every node at height {target} after heal")
    return time.monotonic() - started


async def committing(cluster: FaultCluster, load: Load, what: str) -> None:
    """The fault lasts at least FAULT_S, and new txs are acknowledged during it (clients
    stuck on a cut-off node time out first, so allow up to 15 s)."""
    before = len(load.acknowledged)
    started = time.monotonic()
    await asyncio.sleep(FAULT_S)

    async def more() -> bool:
        return len(load.acknowledged) > before

    await wait_until(more, 15 - FAULT_S, f"new txs committed during {what}")
    assert time.monotonic() - started >= FAULT_S


async def run_faults(cluster: FaultCluster, auditor: Auditor, load: Load,
                     report: dict[str, float]) -> None:
    faults, nodes = cluster.faults, cluster.ids
    await cluster.start()
    leader = await cluster.wait_leader()
    auditor.start()
    load.start(workers=3)  # one worker stuck on a cut-off node must not stall the rest
    await asyncio.sleep(1.0)

    # 1. blackhole a follower: the majority keeps committing.
    follower = next(n for n in nodes if n != leader)
    faults.isolate(follower, nodes)
    await committing(cluster, load, f"blackhole of {follower}")
    target = await max_height(cluster)
    faults.heal()
    report["blackhole_follower"] = await converged_past(cluster, target)

    # 2. isolate the leader/primary: the others move on without it and keep committing.
    leader = await cluster.wait_leader()
    faults.isolate(leader, nodes)
    others = [n for n in nodes if n != leader]

    async def new_leader() -> bool:
        for node_id in others:
            async with LedgerClient(cluster.addr(node_id), timeout_s=2) as client:
                info = await client.chain_info()
            if info.leader and info.leader != leader:
                return True
        return False

    await wait_until(new_leader, 20, "a new leader among the majority")
    await committing(cluster, load, f"isolation of the leader {leader}")
    target = await max_height(cluster)
    faults.heal()
    report["isolate_leader"] = await converged_past(cluster, target)

    # 3. 50 % loss on every link. Progress is not promised here (each lost segment costs a
    # 200 ms retransmission, longer than Raft's heartbeat); safety and recovery are.
    faults.set_default(loss=0.5)
    before = len(load.acknowledged)
    await asyncio.sleep(FAULT_S)
    report["loss_50_acknowledged_during"] = len(load.acknowledged) - before
    target = await max_height(cluster)
    faults.heal()
    report["loss_50"] = await converged_past(cluster, target)

    # 4. 75 +- 50 ms delay on every link.
    faults.set_default(delay_ms=75, jitter_ms=50)
    await committing(cluster, load, "75 +- 50 ms delay")
    target = await max_height(cluster)
    faults.heal()
    report["delay_75"] = await converged_past(cluster, target)
    await load.stop()
    await auditor.stop()


@pytest.mark.parametrize("consensus", consensuses())
async def test_partitions_loss_and_delay_keep_agreement_and_converge(tmp_path,
                                                                     consensus) -> None:
    cluster = await make_cluster(str(tmp_path), consensus, proxied=True)
    auditor = Auditor(cluster)
    load = Load(cluster)
    report: dict[str, float] = {}
    try:
        await run_faults(cluster, auditor, load, report)
        assert not auditor.disagreements, auditor.disagreements
        assert auditor.checks > 10
        figures = await check_ledger(cluster, load)
    finally:
        await load.stop()
        await auditor.stop()
        await cluster.stop()  # always, by PID, whatever failed above
    print(f"\nnetwork faults ({consensus}): converged after heal (s) {report}; {figures}; "
          f"agreement checks {auditor.checks}; proxied connections "
          f"{sum(p.connections for p in cluster.proxies.values())}")
