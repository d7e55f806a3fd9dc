"""An observer joins a running 4-node PBFT cluster, follows the head and serves clients; the
committee then votes it in, it votes (its signature appears in commit certificates), and the
five-node cluster keeps committing after node1 is killed; node1 restarts and all five converge.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from consensus.codec import MESSAGES
from consensus.pbft_messages import CommitCertificate
from node.client.ledger import LedgerClient
from node.ops.localnet import NodeProcess, write_joining_node, write_network
from tests.e2e.conftest import (
    MEMBERS,
    Cluster,
    add_validator_params,
    assert_converged,
    chain_info,
    reading_client,
    wait_height,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FOLLOWS_WITHIN_S = 15.0


@pytest.fixture
def pbft4(tmp_path):
    net = write_network(
        str(tmp_path),
        nodes=4,
        consensus="pbft",
        members=MEMBERS,
        chain_id="e2e-observer",
        block={"interval_ms": 20},
        consensus_params={"view_change_timeout_ms": 2_000},
    )
    # The committee checks a new validator's certificate against the consortium CA's.
    with open(net.genesis_path) as handle:
        genesis = json.load(handle)
    if "ca_cert_pem" not in genesis:
        with open(os.path.join(str(tmp_path), "ca", "ca.crt")) as handle:
            genesis["ca_cert_pem"] = handle.read()
        with open(net.genesis_path, "w") as handle:
            json.dump(genesis, handle, indent=2)
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


def _signers(block) -> set[str]:  # type: ignore[no-untyped-def]
    cert = MESSAGES.decode(block.certificate, CommitCertificate)
    return {vote.node for vote in cert.votes}


async def test_an_observer_follows_serves_is_voted_in_and_votes(pbft4: Cluster) -> None:
    cluster = pbft4
    net = cluster.net
    await cluster.start()
    await cluster.local.wait_ready(timeout_s=30)
    node1 = cluster.local.addr("node1")

    joined = write_joining_node(net.root, "node5", genesis_path=net.genesis_path,
                                consensus="pbft")
    node5 = NodeProcess(joined)
    node5.start()
    try:
        await node5.wait_healthy(30)
        addr5 = joined.client_addr

        # It follows the head as an observer.
        head = (await chain_info(node1)).height
        await wait_height(addr5, head + 2, FOLLOWS_WITHIN_S)
        info5 = await chain_info(addr5)
        assert not info5.validator and info5.role == "observer"
        assert "node5" not in info5.validators

        # It serves clients: a transfer submitted to it commits, and it answers queries.
        bank, payee = net.account("bank"), net.account("supplier1")
        async with reading_client(net, addr5, name="supplier1") as client:
            receipt = await client.call(bank, net.chain_id, "cash", "transfer",
                                        {"to": payee.account_id, "amount": 1_234})
            assert receipt.ok, receipt
            balance = await client.query("cash", "balance", {"account": payee.account_id})
        async with reading_client(net, node1, name="supplier1") as client:
            assert await client.query("cash", "balance", {"account": payee.account_id}) == (
                balance
            )

        # The committee (the admin alone here) votes it in.
        params = add_validator_params(joined)
        async with LedgerClient(node1) as client:
            receipt = await client.call(net.account("admin"), net.chain_id, "governance",
                                        "propose", {"action": "add_validator",
                                                    "params": params})
        assert receipt.ok, receipt

        deadline = time.monotonic() + 30
        while not (await chain_info(addr5)).validator:
            assert time.monotonic() < deadline, "node5 never became a validator"
            await asyncio.sleep(0.2)
        info5 = await chain_info(addr5)
        assert "node5" in info5.validators and info5.validator_epoch == 1

        # It votes: its signature shows up in commit certificates.
        async def wait_signed_by_node5(within_s: float) -> None:
            deadline = time.monotonic() + within_s
            seen = (await chain_info(addr5)).height
            async with reading_client(net, addr5) as client:
                while time.monotonic() < deadline:
                    height = (await client.chain_info()).height
                    for h in range(seen + 1, height + 1):
                        if "node5" in _signers(await client.get_block(h)):
                            return
                    seen = height
                    await asyncio.sleep(0.2)
            raise AssertionError("no commit certificate carries node5's vote")

        await wait_signed_by_node5(30)

        # Five validators survive one crash: kill node1, the rest (node5 among them) commit.
        cluster.local.kill("node1")
        node2 = cluster.local.addr("node2")
        start = (await chain_info(node2)).height
        await wait_height(node2, start + 3, 30)
        await wait_height(addr5, start + 3, 30)
        async with LedgerClient(node2) as client:
            receipt = await client.call(bank, net.chain_id, "cash", "transfer",
                                        {"to": payee.account_id, "amount": 1})
            assert receipt.ok, receipt
        await wait_signed_by_node5(20)

        # node1 comes back and catches up: all five agree on the same blocks and state.
        await cluster.local.restart("node1")
        addrs = [cluster.local.addr(f"node{i}") for i in range(1, 5)] + [addr5]
        await assert_converged(addrs, 30, net.account("auditor"))
        assert (await chain_info(node1)).validator_epoch == 1
    finally:
        node5.stop()
