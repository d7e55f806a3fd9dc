"""A real solo node process: signed txs over gRPC, receipts, queries, the Subscribe stream,
SIGKILL and restart with every acknowledged tx and the same app hash.
"""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client.ledger import LedgerClient, LedgerError
from proto import types_pb2
from tests.e2e.conftest import reading_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_submit_query_subscribe_kill_restart(solo_net) -> None:
    await solo_net.start()
    net, node = solo_net.net, solo_net.procs[0]
    core, s1 = net.account("core"), net.account("supplier1")
    # Reads are signed: supplier1 reads, the payee of every transfer here.
    async with reading_client(net, node.layout.client_addr, name="supplier1") as client:
        info = await client.chain_info()
        assert info.chain_id == "e2e-solo" and info.role == "solo" and info.leader == "node1"
        start = info.height + 1

        stream = client.subscribe(from_height=start)
        first_block = asyncio.ensure_future(stream.__anext__())

        txs = [core.build_tx(net.chain_id, "cash", "transfer",
                             {"to": s1.account_id, "amount": 10}, nonce=i) for i in range(300)]
        receipts = await client.submit_and_wait(txs)
        assert all(r.ok for r in receipts), receipts[0]
        acknowledged = [r.tx_id for r in receipts]

        failed = await client.call(s1, net.chain_id, "cash", "transfer",
                                   {"to": core.account_id, "amount": 10**9})
        assert not failed.ok and failed.error_code == "INSUFFICIENT_FUNDS"

        balance = await client.query("cash", "balance", {"account": s1.account_id})
        assert balance["balance"] == 3_000

        block = await asyncio.wait_for(first_block, 10)
        assert block.block.header.height == start
        seen = {r.tx_id for r in block.receipts}
        async for more in stream:
            seen |= {r.tx_id for r in more.receipts}
            if {bytes.fromhex(t) for t in acknowledged} <= seen:
                break
        await stream.aclose()

        with pytest.raises(LedgerError) as info_err:
            await client.submit(txs[:1])
        assert info_err.value.status == "ALREADY_EXISTS"
        with pytest.raises(LedgerError) as info_err:
            await client.query("cash", "nope", {})
        assert info_err.value.status == "NOT_FOUND"
        before = await client.chain_info()

    node.kill()
    node.start()
    await node.wait_healthy()
    async with reading_client(net, node.layout.client_addr, name="supplier1") as client:
        after = await client.chain_info()
        assert after.height >= before.height
        assert (await client.get_block(before.height)).app_hash == before.app_hash
        for tx_id in acknowledged:
            found = await client.get_tx(bytes.fromhex(tx_id))
            assert found.receipt.status == types_pb2.SUCCESS
        balance = await client.query("cash", "balance", {"account": s1.account_id})
        assert balance["balance"] == 3_000


async def test_health_and_reflection_services_answer(solo_net) -> None:
    await solo_net.start()
    addr = solo_net.procs[0].layout.client_addr
    async with grpc.aio.insecure_channel(addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="scfchain.Ledger"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def one():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for response in stub.ServerReflectionInfo(one()):
            names = {s.name for s in response.list_services_response.service}
            assert "scfchain.Ledger" in names
            break


async def test_the_node_serves_prometheus_metrics_and_healthz(solo_net) -> None:
    await solo_net.start()
    net, layout = solo_net.net, solo_net.procs[0].layout
    assert layout.metrics_addr
    bank, payee = net.account("bank"), net.account("supplier1")
    async with LedgerClient(layout.client_addr) as client:
        receipt = await client.call(bank, net.chain_id, "cash", "transfer",
                                    {"to": payee.account_id, "amount": 5})
        assert receipt.ok, receipt
        height = (await client.chain_info()).height

    def get(path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://{layout.metrics_addr}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()

    status, text = await asyncio.to_thread(get, "/metrics")
    assert status == 200
    values = {line.split(" ")[0]: float(line.split(" ")[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values["scfchain_block_height"] >= height
    assert values["scfchain_txs_committed_total"] >= 1
    assert values["scfchain_mempool_txs"] == 0
    assert values['scfchain_consensus_role{role="solo"}'] == 1
    assert values["scfchain_store_bytes"] > 0
    assert await asyncio.to_thread(get, "/healthz") == (200, "ok\n")


async def test_sigterm_stops_the_node_cleanly(solo_net) -> None:
    await solo_net.start()
    assert solo_net.procs[0].stop(grace_s=10) == 0
