"""A 4-node PBFT cluster of real processes on loopback, with load running: SIGKILL the primary;
a new primary must serve within a few seconds; restart the old one. Every acknowledged tx must
be on every node with a SUCCESS receipt, and all app hashes must agree.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from node.client.ledger import LedgerClient
from node.ops.localnet import write_network
from tests.e2e.conftest import MEMBERS, Cluster, reading_client
from tests.e2e.test_raft_cluster import Load, check_each_tx_applied_once, wait_leader

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

# No commit for this long starts a view change (the node makes an empty block every second
# when idle, so this must stay above that interval).
VIEW_CHANGE_TIMEOUT_MS = 2_000
NEW_PRIMARY_WITHIN_S = 6.0


@pytest.fixture
def pbft4(tmp_path):
    net = write_network(
        str(tmp_path),
        nodes=4,
        consensus="pbft",
        members=MEMBERS,
        chain_id="e2e-pbft",
        block={"interval_ms": 20},
        consensus_params={"view_change_timeout_ms": VIEW_CHANGE_TIMEOUT_MS},
    )
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def _height(client: LedgerClient) -> int:
    return int((await client.chain_info()).height)


async def test_kill_primary_new_view_serves_and_nothing_acknowledged_is_lost(pbft4) -> None:
    cluster = pbft4
    await cluster.start()
    first, _ = await wait_leader(cluster, set(), 15)
    load = Load(cluster)
    load.start()
    by_id = {p.layout.node_id: p for p in cluster.procs}
    try:
        # Every phase must commit under its fault: the load grows after each one.
        await load.commits_more("before the kill")
        by_id[first].kill()
        second, took = await wait_leader(cluster, {first}, NEW_PRIMARY_WITHIN_S)
        assert second != first and took < NEW_PRIMARY_WITHIN_S
        # The new primary serves: the acknowledged count grows again within a few seconds.
        await load.commits_more(f"under the new primary {second}", NEW_PRIMARY_WITHIN_S)
        by_id[first].start()
        await by_id[first].wait_healthy()
        await load.commits_more(f"after {first} restarted")
    finally:
        await load.stop()

    target = 0
    for proc in cluster.procs:
        async with LedgerClient(proc.layout.client_addr) as client:
            target = max(target, await _height(client))
    deadline = time.monotonic() + 30
    app_hashes, block_hashes = set(), set()
    for proc in cluster.procs:
        async with reading_client(cluster.net, proc.layout.client_addr) as client:
            while await _height(client) < target:
                assert time.monotonic() < deadline, f"{proc.layout.node_id} is behind {target}"
                await asyncio.sleep(0.2)
            block = await client.get_block(target)
            app_hashes.add(block.app_hash)
            block_hashes.add(block.block_hash)
    assert len(app_hashes) == 1 and len(block_hashes) == 1
    for proc in cluster.procs:
        async with reading_client(cluster.net, proc.layout.client_addr) as client:
            for start in range(0, len(load.acknowledged), 200):
                chunk = load.acknowledged[start : start + 200]
                found = await asyncio.gather(*(client.get_tx(bytes.fromhex(t)) for t in chunk))
                for tx_id, response in zip(chunk, found, strict=True):
                    assert response.receipt.status == 1, (proc.layout.node_id, tx_id)
    await check_each_tx_applied_once(cluster, load.acknowledged)
