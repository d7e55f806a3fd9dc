"""A live 3-node Raft cluster changes its voters: node4 joins as a learner (it follows, never
votes), the committee votes it in, the four-node cluster survives node1's crash and converges
when node1 returns; then the committee removes the current leader, who hands leadership over
and stays on as an observer that keeps following the chain.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node.client.ledger import LedgerClient
from node.ops.localnet import NodeProcess, write_joining_node, write_network
from tests.e2e.conftest import (
    MEMBERS,
    Cluster,
    add_validator_params,
    assert_converged,
    chain_info,
    wait_height,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def raft3(tmp_path):  # type: ignore[no-untyped-def]
    net = write_network(str(tmp_path), nodes=3, consensus="raft", members=MEMBERS,
                        chain_id="e2e-raft-membership", block={"interval_ms": 20})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def _govern(cluster: Cluster, addr: str, action: str, params: dict[str, Any]) -> None:
    """The sample e2e committee is the admin alone: its proposal executes at once."""
    net = cluster.net
    async with LedgerClient(addr) as client:
        receipt = await client.call(net.account("admin"), net.chain_id, "governance", "propose",
                                    {"action": action, "params": params})
    assert receipt.ok, receipt
    assert any(e["name"] == "proposal_executed" for e in receipt.events), receipt.events


async def _transfer(cluster: Cluster, addr: str) -> None:
    net = cluster.net
    async with LedgerClient(addr) as client:
        receipt = await client.call(net.account("bank"), net.chain_id, "cash", "transfer",
                                    {"to": net.account("supplier1").account_id, "amount": 1})
    assert receipt.ok, receipt


async def _until(check, within_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_learner_is_voted_in_survives_a_crash_and_the_leader_is_voted_out(
    raft3: Cluster,
) -> None:
    cluster = raft3
    net = cluster.net
    await cluster.start()
    await cluster.local.wait_ready(timeout_s=30)
    node1 = cluster.local.addr("node1")

    joined = write_joining_node(net.root, "node4", genesis_path=net.genesis_path,
                                consensus="raft")
    node4 = NodeProcess(joined)
    node4.start()
    try:
        await node4.wait_healthy(30)
        addr4 = joined.client_addr
        # A learner: it follows the head and serves reads, and is nobody's voter.
        await wait_height(addr4, (await chain_info(node1)).height + 1, 15)
        info4 = await chain_info(addr4)
        assert not info4.validator and "node4" not in info4.validators

        await _govern(cluster, node1, "add_validator", add_validator_params(joined))

        async def node4_votes() -> bool:
            await _transfer(cluster, node1)  # blocks come with txs: keep some coming
            info = await chain_info(addr4)
            return info.validator and "node4" in info.validators

        await _until(node4_votes, 30, "node4 never became a voter")
        assert (await chain_info(node1)).validators == ["node1", "node2", "node3", "node4"]

        # Four voters survive one crash (a majority is 3): kill node1, the rest commit.
        cluster.local.kill("node1")
        node2 = cluster.local.addr("node2")
        await _until(lambda: _transfer_ok(cluster, node2), 30, "no commit without node1")
        await cluster.local.restart("node1")
        addrs = [cluster.local.addr(f"node{i}") for i in (1, 2, 3)] + [addr4]
        await assert_converged(addrs, 30, cluster.net.account("auditor"))

        # The committee removes whoever leads now: it hands leadership to another voter,
        # commits go on, and it stays on as an observer that follows the chain.
        async def current_leader() -> str:
            return (await chain_info(node2)).leader

        leader = await _until(current_leader, 20, "no leader after node1's return")
        others = {f"node{i}": cluster.local.addr(f"node{i}") for i in (1, 2, 3)} | {
            "node4": addr4}
        leader_addr = others.pop(leader)
        survivor = next(iter(others.values()))
        await _govern(cluster, survivor, "remove_validator", {"node_id": leader})

        async def new_leader() -> str | None:
            # Right after the change a node may still name the leaving leader and refuse to
            # forward to it ("retry"): keep sending until a new leader answers.
            await _transfer_ok(cluster, survivor)
            info = await chain_info(survivor)
            return info.leader if info.leader and info.leader != leader and (
                leader not in info.validators) else None

        successor = await _until(new_leader, 30, f"{leader} kept leading after its removal")
        assert successor in others
        head = (await chain_info(survivor)).height
        await wait_height(leader_addr, head, 20)  # still following
        gone = await chain_info(leader_addr)
        assert not gone.validator and leader not in gone.validators, gone
        # It forwards txs like any observer (once a block of the new leader names it).
        await _until(lambda: _transfer_ok(cluster, leader_addr), 30, "the observer's tx failed")
        await assert_converged([*others.values(), leader_addr], 30,
                               cluster.net.account("auditor"))
    finally:
        node4.stop()


async def _transfer_ok(cluster: Cluster, addr: str) -> bool:
    try:
        await _transfer(cluster, addr)
    except Exception:  # no leader yet: the caller retries until its deadline
        return False
    return True
