"""A flood of txs at a live node with a small mempool (`mempool_txs_max = 2000`) and blocks
capped at 100 txs per 200 ms, so the flood outruns the chain and the mempool fills.

20,000 txs from one member key, 20,000 from 1,000 member keys, and 5,000 from 1,000 strangers'
keys arrive as fast as four clients can send them, without waiting. Checks: the mempool never
holds more than its limit; the node's memory stays bounded; overflow is refused with
RESOURCE_EXHAUSTED (strangers with PERMISSION_DENIED); an honest client's tx, retried on
RESOURCE_EXHAUSTED as the status invites, commits during the flood; and every admitted flood tx
commits (the mempool drains to empty), none twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections import Counter

import psutil
import pytest

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError
from node.ops.localnet import MemberSpec, NodeProcess, write_network
from tests.security.conftest import kill_by_pid

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MEMPOOL_TXS_MAX = 2_000
FLOOD_KEYS = 1_000
RSS_BYTES_MAX = 1_200 * 1024 * 1024
BATCH_TXS = 500


@pytest.fixture
def flood_node(tmp_path):
    members = [MemberSpec("admin", ("admin",)),
               MemberSpec("core", ("core_enterprise",), balance=1_000_000),
               MemberSpec("supplier1", ("supplier",)),
               MemberSpec("auditor", ("auditor",)),  # reads every tx at the end
               *(MemberSpec(f"flood{i:04d}", ("supplier",)) for i in range(FLOOD_KEYS))]
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=members,
                        chain_id="flood", block={"interval_ms": 200, "txs_max": 100},
                        consensus_params={"empty_block_interval_ms": 0},
                        node_options={"limits.mempool_txs_max": MEMPOOL_TXS_MAX,
                                      "limits.request_txs_max": 1_000})
    proc = NodeProcess(net.nodes[0])
    try:
        proc.start()
        asyncio.run(proc.wait_healthy())
        yield net, proc
    finally:
        kill_by_pid(proc)


async def test_flood_keeps_mempool_and_memory_bounded_and_honest_tx_commits(flood_node) -> None:
    net, proc = flood_node
    addr = proc.layout.client_addr
    core, s1 = net.account("core"), net.account("supplier1")
    one = net.account("flood0000")
    many = [net.account(f"flood{i:04d}") for i in range(FLOOD_KEYS)]
    strangers = [Account.generate() for _ in range(FLOOD_KEYS)]

    def txs(accounts, count, first_nonce):
        cycle = itertools.cycle(accounts)
        return [next(cycle).build_tx(net.chain_id, "cash", "transfer",
                                     {"to": s1.account_id, "amount": 1}, nonce=first_nonce + n)
                for n in range(count)]

    floods = {"one_key": txs([one], 20_000, 0), "many_keys": txs(many, 20_000, 10**6),
              "strangers": txs(strangers, 5_000, 0)}
    batches = [(name, flood[i:i + BATCH_TXS]) for name, flood in floods.items()
               for i in range(0, len(flood), BATCH_TXS)]
    pending = list(reversed(batches))
    outcomes: Counter[tuple[str, str]] = Counter()
    admitted: set[bytes] = set()
    stats = {"mempool_max": 0, "rss_max": 0}
    node = psutil.Process(proc.pid)
    rss_start = node.memory_info().rss
    flooding = True

    async def flooder() -> None:
        async with LedgerClient(addr, timeout_s=30) as client:
            while pending:
                name, batch = pending.pop()
                try:
                    response = await client.submit(batch)
                    admitted.update(response.tx_ids)
                    outcomes[(name, "OK")] += 1
                except LedgerError as exc:
                    outcomes[(name, exc.status)] += 1

    async def monitor() -> None:
        async with LedgerClient(addr, timeout_s=10) as client:
            while flooding:
                info = await client.chain_info()
                stats["mempool_max"] = max(stats["mempool_max"], info.mempool_size)
                stats["rss_max"] = max(stats["rss_max"], node.memory_info().rss)
                await asyncio.sleep(0.05)

    async def honest() -> float:
        await asyncio.sleep(0.5)  # the flood is on
        started = time.monotonic()
        tx = core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id,
                                                              "amount": 12_345})
        async with LedgerClient(addr, timeout_s=30) as client:
            while True:
                try:
                    (receipt,) = await client.submit_and_wait([tx], timeout_ms=20_000)
                    assert receipt.ok, receipt
                    return time.monotonic() - started
                except LedgerError as exc:
                    assert exc.status == "RESOURCE_EXHAUSTED", exc
                    assert time.monotonic() - started < 30, "the honest tx never got in"
                    await asyncio.sleep(0.2)

    watcher = asyncio.create_task(monitor())
    started = time.monotonic()
    try:
        results = await asyncio.gather(honest(), *(flooder() for _ in range(4)))
        honest_s = results[0]
        flood_s = time.monotonic() - started

        async def drained() -> bool:
            async with LedgerClient(addr) as client:
                return (await client.chain_info()).mempool_size == 0

        deadline = time.monotonic() + 60
        while not await drained():
            assert time.monotonic() < deadline, "the mempool never drained"
            await asyncio.sleep(0.2)
    finally:
        flooding = False
        await watcher
    print(f"\nflood: {dict(outcomes)}; admitted {len(admitted)}; mempool max "
          f"{stats['mempool_max']}; rss {rss_start >> 20} -> max {stats['rss_max'] >> 20} MiB; "
          f"honest tx committed after {honest_s:.2f}s; flood sent in {flood_s:.1f}s")
    assert stats["mempool_max"] <= MEMPOOL_TXS_MAX
    assert stats["rss_max"] < RSS_BYTES_MAX
    # Strangers are refused as strangers, or earlier still when the mempool is full.
    assert sum(n for (name, _), n in outcomes.items() if name == "strangers") == len(
        floods["strangers"]) // BATCH_TXS
    assert ("strangers", "OK") not in outcomes
    refused = sum(n for (name, status), n in outcomes.items() if status == "RESOURCE_EXHAUSTED")
    assert refused > 0, "the flood never filled the mempool: the test proved nothing"
    assert {status for (_, status) in outcomes} <= {"OK", "RESOURCE_EXHAUSTED",
                                                    "PERMISSION_DENIED"}
    # Every admitted flood tx committed, once.
    async with LedgerClient(addr, timeout_s=30, reader=net.account("auditor"),
                            chain_id=net.chain_id) as client:
        for tx in floods["one_key"][:50] + floods["many_keys"][:50]:
            tx_id = hashlib.sha256(tx.body).digest()
            if tx_id in admitted:
                got = await client.get_tx(tx_id)
                assert got.receipt.tx_id == tx_id
        info = await client.chain_info()
        seen = Counter()
        stream = client.subscribe(from_height=1)
        async for block in stream:
            seen.update(r.tx_id for r in block.receipts)
            if block.block.header.height >= info.height:
                break
        await stream.aclose()
    assert admitted <= set(seen), "an admitted tx never committed"
    assert max(seen.values()) == 1
    assert proc.alive()
