"""The voucher worked example against a real solo node over gRPC.

Core -> tier 1 -> tier 2 -> tier 3 with signed txs, one discount, and settlement by the node's
own block-end hook once wall-clock block time reaches maturity (a few seconds ahead, so the
discount counts the minimum of one day). Balances, states and the lineage come from queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from node.ops.localnet import MemberSpec, write_network
from tests.e2e.conftest import Cluster, reading_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=10_000_000),
    MemberSpec("t1", ("supplier",)),
    MemberSpec("t2", ("supplier",)),
    MemberSpec("t3", ("supplier",)),
    MemberSpec("auditor", ("auditor",)),  # reads every balance and the whole lineage
]


@pytest.fixture
def voucher_net(tmp_path: Any) -> Iterator[Cluster]:
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="e2e-voucher", block={"interval_ms": 20})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_worked_example_over_grpc_settles_at_maturity(voucher_net: Cluster) -> None:
    """Three tiers, one discount, automatic settlement: every balance and state checked."""
    await voucher_net.start()
    net, node = voucher_net.net, voucher_net.procs[0]
    ids = {m.name: net.account(m.name).account_id for m in MEMBERS}
    async with reading_client(net, node.layout.client_addr) as client:

        async def call(who: str, method: str, **args: Any) -> Any:
            receipt = await client.call(net.account(who), net.chain_id, "voucher", method, args)
            assert receipt.ok, (method, receipt.error_code, receipt.message)
            return receipt.result

        async def balance(name: str) -> int:
            found = await client.query("cash", "balance", {"account": ids[name]})
            return int(found["balance"])

        now_ms = int(time.time() * 1000)
        await call("bank", "grant_credit", core=ids["core"], limit=50_000_000,
                   expiry_ms=now_ms + 365 * 86_400_000)
        maturity_ms = int(time.time() * 1000) + 6_000
        documents = [hashlib.sha256(b"contract-e2e").hexdigest(),
                     hashlib.sha256(b"invoice-e2e").hexdigest()]
        root = (await call("core", "issue", supplier=ids["t1"], amount=10_000_000,
                           maturity_ms=maturity_ms, documents=documents))["voucher"]
        again = await client.call(net.account("core"), net.chain_id, "voucher", "issue",
                                  {"supplier": ids["t2"], "amount": 1,
                                   "maturity_ms": maturity_ms, "documents": documents[1:]})
        assert again.error_code == "DOCUMENT_ALREADY_USED"

        to_t2 = (await call("t1", "transfer", voucher=root, to=ids["t2"],
                            amount=6_000_000))["voucher"]
        to_t3 = (await call("t2", "transfer", voucher=to_t2, to=ids["t3"],
                            amount=2_500_000))["voucher"]
        await call("t3", "apply_discount", voucher=to_t3, financier=ids["bank"], rate_bps=600)
        terms = await call("bank", "approve_discount", voucher=to_t3)
        assert terms == {"voucher": to_t3, "days": 1, "interest": 416, "payout": 2_499_584}
        assert await balance("t3") == 2_499_584

        deadline = time.monotonic() + 30
        while True:
            tree = await client.query("voucher", "lineage", {"root": root})
            if tree["redeemed"] == 10_000_000 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert [(n["tier"], n["amount"], n["state"]) for n in tree["tree"]] == [
            (1, 10_000_000, "SPLIT"),
            (2, 6_000_000, "SPLIT"),
            (1, 4_000_000, "REDEEMED"),
            (3, 2_500_000, "REDEEMED"),
            (2, 3_500_000, "REDEEMED"),
        ]
        assert [await balance(n) for n in ("core", "t1", "t2", "t3", "bank")] == [
            0, 4_000_000, 3_500_000, 2_499_584, 10_000_416]
        position = await client.query("voucher", "position", {"core": ids["core"]})
        assert position["outstanding"] == 0 and position["overdue"] == 0
