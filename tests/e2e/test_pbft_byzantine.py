"""A 4-node PBFT cluster started by the launcher with node1 (the first primary) in the test-only
equivocating mode (`--byzantine node1`): its pre-prepares reach one backup with a different
block. Under load sent to the honest nodes, the honest replicas keep agreeing and committing,
every acknowledged tx is on every honest node, and their app hashes are equal.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from node.client.ledger import LedgerClient, LedgerError
from node.ops.launcher import prepare_cluster, start_cluster, stop_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HONEST = ("node2", "node3", "node4")


async def test_equivocating_primary_cannot_split_the_honest_replicas(tmp_path) -> None:
    cluster, _ = prepare_cluster(
        str(tmp_path / "net"),
        nodes=4,
        consensus="pbft",
        chain_id="e2e-byzantine",
        consensus_params={"view_change_timeout_ms": 2_000},
    )
    try:
        await start_cluster(cluster, timeout_s=60, byzantine=frozenset({"node1"}))
        addrs = {n.id: n.client_addr for n in cluster.nodes}
        core = cluster.account("core")
        payee = cluster.account_id("tier1a")
        nonce = itertools.count()
        acknowledged: list[str] = []
        deadline = time.monotonic() + 40
        turn = itertools.cycle(HONEST)
        while len(acknowledged) < 600 and time.monotonic() < deadline:
            txs = [core.build_tx(cluster.chain_id, "cash", "transfer",
                                 {"to": payee, "amount": 1}, nonce=next(nonce))
                   for _ in range(50)]
            try:
                async with LedgerClient(addrs[next(turn)], timeout_s=10,
                                        tls=cluster.client_tls()) as client:
                    receipts = await client.submit_and_wait(txs, timeout_ms=8_000)
            except LedgerError:
                await asyncio.sleep(0.2)  # a view change away from the liar may be under way
                continue
            assert all(r.ok for r in receipts), receipts[0]
            acknowledged += [r.tx_id for r in receipts]
        assert len(acknowledged) >= 300, f"only {len(acknowledged)} txs committed with a liar"

        with open(cluster.node("node1").log_file) as handle:
            assert "BYZANTINE: pre-prepare" in handle.read(), "node1 never equivocated"

        target = 0
        for node_id in HONEST:
            async with LedgerClient(addrs[node_id], tls=cluster.client_tls()) as client:
                target = max(target, (await client.chain_info()).height)
        hashes = set()
        for node_id in HONEST:  # reads are signed: the sample consortium's auditor reads
            async with LedgerClient(addrs[node_id], reader=cluster.auditor(),
                                    chain_id=cluster.chain_id,
                                    tls=cluster.client_tls()) as client:
                until = time.monotonic() + 30
                while (await client.chain_info()).height < target:
                    assert time.monotonic() < until, f"{node_id} stuck below {target}"
                    await asyncio.sleep(0.2)
                hashes.add((await client.get_block(target)).app_hash)
                for tx_id in acknowledged:
                    found = await client.get_tx(bytes.fromhex(tx_id))
                    assert found.receipt.status == 1, (node_id, tx_id)
        assert len(hashes) == 1, "honest replicas disagree"
    finally:
        stop_cluster(cluster, grace_s=5)
