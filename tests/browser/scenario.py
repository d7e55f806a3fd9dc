"""A small supply-chain-finance story on a live node, for the console's tests: a credit line;
a voucher split across three tiers with one discount done and one pending; an order with a
loan application; a prepayment deal financed with its goods lodged; a warehouse receipt split
and pledged. `seed` runs it and returns the ids the tests open pages for.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from node.client.ledger import LedgerClient
from node.ops.localnet import MemberSpec, NetworkLayout

DAY_MS = 86_400_000

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("core", ("core_enterprise",), balance=50_000_000),
    MemberSpec("t1", ("supplier",)),
    MemberSpec("t2", ("supplier",)),
    MemberSpec("t3", ("supplier",)),
    MemberSpec("bank", ("financier",), balance=100_000_000),
    MemberSpec("dealer", ("dealer",), balance=5_000_000),
    MemberSpec("warehouse", ("warehouse",)),
    MemberSpec("auditor", ("auditor",)),
]


@dataclass(frozen=True, slots=True)
class Story:
    root: str  # the root voucher (t1's, split)
    tier2: str  # t2's part of the root (split again)
    tier3: str  # t3's part, discounted with the bank
    pending: str  # t2's remainder, its discount application pending with the bank
    order: str
    deal: str
    deal_receipt: str
    receipt: str  # the dealer's receipt, split; one part pledged to the bank
    pledged: str
    tx: str  # the issue tx
    tx_height: int  # its block


def doc(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def seed(client: LedgerClient, net: NetworkLayout, tag: str = "") -> Story:
    ids = {m.name: net.account(m.name).account_id for m in MEMBERS}

    async def call(who: str, contract: str, method: str, **args: Any) -> Any:
        receipt = await client.call(net.account(who), net.chain_id, contract, method, args)
        assert receipt.ok, (contract, method, receipt.error_code, receipt.message)
        return receipt

    now_ms = int(time.time() * 1000)
    await call("bank", "voucher", "grant_credit", core=ids["core"], limit=50_000_000,
               expiry_ms=now_ms + 365 * DAY_MS)
    issued = await call("core", "voucher", "issue", supplier=ids["t1"], amount=10_000_000,
                        maturity_ms=now_ms + 90 * DAY_MS, documents=[doc("invoice" + tag)])
    root = issued.result["voucher"]
    tier2 = (await call("t1", "voucher", "transfer", voucher=root, to=ids["t2"],
                        amount=6_000_000)).result["voucher"]
    tier3 = (await call("t2", "voucher", "transfer", voucher=tier2, to=ids["t3"],
                        amount=2_500_000)).result["voucher"]
    await call("t3", "voucher", "apply_discount", voucher=tier3, financier=ids["bank"],
               rate_bps=600)
    await call("bank", "voucher", "approve_discount", voucher=tier3)
    lineage = await client.query("voucher", "lineage", {"root": root})
    pending = next(v["id"] for v in lineage["tree"]
                   if v["holder"] == ids["t2"] and v["state"] == "ACTIVE")
    await call("t2", "voucher", "apply_discount", voucher=pending, financier=ids["bank"],
               rate_bps=700)

    await call("bank", "order_financing", "set_ratio", ratio_bps=8000)
    order = (await call("t1", "order_financing", "register_order", buyer=ids["core"],
                        amount=1_000_000, delivery_due_ms=now_ms + 10 * DAY_MS,
                        payment_due_ms=now_ms + 20 * DAY_MS,
                        order_hash=doc("order" + tag))).result["order_id"]
    await call("core", "order_financing", "confirm_order", order_id=order)
    await call("t1", "order_financing", "apply_loan", order_id=order, financier=ids["bank"],
               principal=700_000, rate_bps=720)

    deal = (await call("dealer", "prepayment", "apply", core=ids["core"],
                       financier=ids["bank"], warehouse=ids["warehouse"], commodity="steel",
                       quantity=100, unit="t", price=2_000_000, margin=700_000, rate_bps=720,
                       due_ms=now_ms + 60 * DAY_MS)).result["deal_id"]
    await call("core", "prepayment", "confirm", deal_id=deal)
    await call("bank", "prepayment", "approve", deal_id=deal)
    lodged = await call("warehouse", "prepayment", "lodge_goods", deal_id=deal, grade="A",
                        location="Dock 4", inspection_hash=doc("inspection" + tag))
    deal_receipt = next(e["receipt_id"] for e in lodged.events if e["name"] == "GoodsLodged")

    receipt = (await call("warehouse", "warehouse_receipt", "issue", owner=ids["dealer"],
                          commodity="copper", quantity=50, unit="t", grade="B",
                          location="Shed 2", inspection_hash=doc("copper" + tag))
               ).result["receipt_id"]
    split = await call("dealer", "warehouse_receipt", "split", receipt_id=receipt,
                       quantities=[30, 20])
    children = next(e["children"] for e in split.events if e["name"] == "ReceiptSplit")
    pledged = children[0]
    await call("dealer", "warehouse_receipt", "pledge", receipt_id=pledged,
               financier=ids["bank"], principal=300_000, rate_bps=500,
               due_ms=now_ms + 30 * DAY_MS)
    return Story(root=root, tier2=tier2, tier3=tier3, pending=pending, order=order, deal=deal,
                 deal_receipt=deal_receipt, receipt=receipt, pledged=pledged,
                 tx=issued.tx_id, tx_height=issued.height)
