"""The trade-finance worked examples against a real solo node over gRPC.

One node serves the module; each family has its own members, so the three tests never share a
balance. Each test runs its family's worked example from docs/contracts.md with signed txs,
checks balances, states and events from receipts and queries, and checks refused calls' error
codes. The due dates are a few seconds of block time ahead instead of 30 to 90 days, so the
node's own block-end hooks (pledge collection, overdue flag, buy-back) run within the test;
interest therefore counts the minimum of one day.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from node.client.ledger import LedgerClient, ReceiptView, event_dict
from node.ops.localnet import MemberSpec, NetworkLayout, write_network
from tests.e2e.conftest import Cluster, reading_client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
]

WR, OF, PP = "warehouse_receipt", "order_financing", "prepayment"

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("wh", ("warehouse",)),
    MemberSpec("exch", ("exchange",)),
    # warehouse receipts
    MemberSpec("wr_supplier", ("supplier",)),
    MemberSpec("wr_dealer", ("dealer",), balance=6_000_000),
    MemberSpec("wr_bank", ("financier",), balance=10_000_000),
    # order financing
    MemberSpec("of_core", ("core_enterprise",), balance=2_000_000),
    MemberSpec("of_supplier", ("supplier",)),
    MemberSpec("of_bank", ("financier",), balance=5_000_000),
    # prepayment
    MemberSpec("pp_dealer", ("dealer",), balance=8_000_000),
    MemberSpec("pp_core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("pp_bank", ("financier",), balance=10_000_000),
    # signs the reads: every record, balance and end-block event
    MemberSpec("auditor", ("auditor",)),
]


def doc(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def interest_one_day(principal: int, rate_bps: int) -> int:
    """docs/contracts.md's interest for the minimum of one day, written out independently."""
    return principal * rate_bps * 1 // (10_000 * 360)


def now_ms() -> int:
    return int(time.time() * 1000)


def event(receipt: ReceiptView, name: str) -> dict[str, Any]:
    found = [e for e in receipt.events if e["name"] == name]
    assert len(found) == 1, (name, [e["name"] for e in receipt.events])
    return found[0]


class Ledger:
    """Calls by member name on the module's node."""

    def __init__(self, net: NetworkLayout, client: LedgerClient) -> None:
        self.net = net
        self.client = client
        self.ids = {m.name: net.account(m.name).account_id for m in MEMBERS}

    async def send(self, who: str, contract: str, method: str, **args: Any) -> ReceiptView:
        return await self.client.call(self.net.account(who), self.net.chain_id, contract,
                                      method, args)

    async def ok(self, who: str, contract: str, method: str, **args: Any) -> ReceiptView:
        receipt = await self.send(who, contract, method, **args)
        assert receipt.ok, (method, receipt.error_code, receipt.message)
        return receipt

    async def refused(self, code: str, who: str, contract: str, method: str, **args: Any) -> None:
        receipt = await self.send(who, contract, method, **args)
        assert not receipt.ok and receipt.error_code == code, (
            method, receipt.error_code, receipt.message)
        assert receipt.message and not receipt.events

    async def query(self, contract: str, view: str, **args: Any) -> Any:
        return await self.client.query(contract, view, args)

    async def balances(self, *names: str) -> list[int]:
        found = [await self.query("cash", "balance", account=self.ids[n]) for n in names]
        return [int(f["balance"]) for f in found]

    async def hook_events(self, after: ReceiptView, name: str) -> list[dict[str, Any]]:
        """End-block events called `name` of the blocks after `after`'s, with their block time."""
        head = (await self.client.chain_info()).height
        found = []
        for height in range(after.height + 1, head + 1):
            block = await self.client.get_block(height)
            found += [{**event_dict(e), "block_ms": block.block.header.time_ms}
                      for e in block.end_block_events if e.name == name]
        return found

    async def until(self, probe: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
        """Poll until probe() holds (a block-end hook has run), or fail after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not await probe():
            assert time.monotonic() < deadline, "the block-end hook did not run in time"
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ledger(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ledger]:
    root = tmp_path_factory.mktemp("trade-e2e")
    net = write_network(str(root), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="e2e-trade", block={"interval_ms": 20},
                        consensus_params={"empty_block_interval_ms": 250})
    cluster = Cluster(net)
    try:
        await cluster.start()
        async with reading_client(net, net.nodes[0].client_addr) as client:
            yield Ledger(net, client)
    finally:
        cluster.stop()


async def test_warehouse_receipt_sale_pledge_collected_at_due_date_and_redemption(
    ledger: Ledger,
) -> None:
    """Issue, partial transfer, exchange sale (DvP), pledge collected by the hook, redemption."""
    ids = ledger.ids

    async def receipt(receipt_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await ledger.query(WR, "receipt", receipt_id=receipt_id)
        return found

    goods = {"commodity": "copper cathode", "unit": "tonne", "grade": "A",
             "location": "Shanghai bonded zone, bay 4"}
    issued = await ledger.ok("wh", WR, "issue", owner=ids["wr_supplier"], quantity=1_000,
                             inspection_hash=doc("e2e-insp-copper"), **goods)
    root = issued.result["receipt_id"]
    assert event(issued, "ReceiptIssued")["quantity"] == 1_000
    await ledger.refused("DOCUMENT_USED", "wh", WR, "issue", owner=ids["wr_dealer"],
                         quantity=1, inspection_hash=doc("e2e-insp-copper"), **goods)

    # The supplier transfers 300 t to the dealer: R splits into A (300 t) and B (700 t).
    moved = await ledger.ok("wr_supplier", WR, "transfer", receipt_id=root,
                            to=ids["wr_dealer"], quantity=300)
    part_a = moved.result["receipt_id"]
    split = event(moved, "ReceiptSplit")
    assert split["quantities"] == [300, 700] and split["children"][0] == part_a
    part_b = split["children"][1]
    assert (await receipt(root))["state"] == "SPLIT"

    # B is listed on the exchange and sold to the dealer: cash and title in one tx.
    await ledger.ok("wr_supplier", WR, "list_for_sale", receipt_id=part_b,
                    exchange=ids["exch"], price=4_900_000)
    await ledger.refused("PRICE_MISMATCH", "wr_dealer", WR, "buy", receipt_id=part_b,
                         price=4_800_000)
    sold = await ledger.ok("wr_dealer", WR, "buy", receipt_id=part_b, price=4_900_000)
    assert event(sold, "ReceiptSold")["buyer"] == ids["wr_dealer"]
    assert event(sold, "Transferred")["amount"] == 4_900_000
    found_b = await receipt(part_b)
    assert (found_b["owner"], found_b["state"]) == (ids["wr_dealer"], "ACTIVE")
    assert await ledger.balances("wr_dealer", "wr_supplier") == [1_100_000, 4_900_000]

    # The dealer pledges A to the bank for 1,000,000 at 720 bps, due a few seconds ahead.
    due_ms = now_ms() + 3_000
    await ledger.ok("wr_dealer", WR, "pledge", receipt_id=part_a, financier=ids["wr_bank"],
                    principal=1_000_000, rate_bps=720, due_ms=due_ms)
    approved = await ledger.ok("wr_bank", WR, "approve_pledge", receipt_id=part_a)
    assert event(approved, "PledgeApproved")["due_ms"] == due_ms
    assert (await receipt(part_a))["state"] == "PLEDGED"
    assert await ledger.balances("wr_dealer", "wr_bank") == [2_100_000, 9_000_000]
    frozen: list[tuple[str, dict[str, Any]]] = [
        ("transfer", {"to": ids["wr_supplier"]}),
        ("split", {"quantities": [100, 200]}),
        ("list_for_sale", {"exchange": ids["exch"], "price": 1}),
        ("pledge", {"financier": ids["wr_bank"], "principal": 1, "rate_bps": 1,
                    "due_ms": due_ms + 60_000}),
        ("request_redemption", {}),
    ]
    for method, args in frozen:
        await ledger.refused("RECEIPT_PLEDGED", "wr_dealer", WR, method, receipt_id=part_a,
                             **args)
    await ledger.refused("WRONG_STATE", "wr_bank", WR, "foreclose", receipt_id=part_a)

    # At the due date the node's hook collects principal + one day's interest from the dealer.
    async def released() -> bool:
        return bool((await receipt(part_a))["state"] == "ACTIVE")

    await ledger.until(released)
    assert interest_one_day(1_000_000, 720) == 200
    [collected] = await ledger.hook_events(approved, "PledgeRepaid")
    assert collected.pop("block_ms") >= due_ms
    assert collected == {"contract": WR, "name": "PledgeRepaid", "receipt_id": part_a,
                         "owner": ids["wr_dealer"], "financier": ids["wr_bank"],
                         "principal": 1_000_000, "interest": 200, "automatic": True}
    assert (await receipt(part_a))["pledge"] is None
    assert await ledger.balances("wr_dealer", "wr_bank") == [1_099_800, 10_000_200]

    # Redemption: the dealer asks, the warehouse confirms delivery, A is cancelled.
    await ledger.refused("NOT_AUTHORIZED", "wr_dealer", WR, "confirm_delivery",
                         receipt_id=part_a)
    await ledger.ok("wr_dealer", WR, "request_redemption", receipt_id=part_a)
    done = await ledger.ok("wh", WR, "confirm_delivery", receipt_id=part_a)
    assert event(done, "ReceiptRedeemed")["quantity"] == 300
    assert (await receipt(part_a))["state"] == "REDEEMED"
    tree = await ledger.query(WR, "lineage", root_id=root)
    assert (tree["issued"], tree["redeemed"], tree["live"]) == (1_000, 300, 700)
    mine = await ledger.query(WR, "receipts_of", owner=ids["wr_dealer"])
    assert [r["id"] for r in mine] == [part_b]
    assert await ledger.balances("wr_supplier", "wr_dealer", "wr_bank") == [
        4_900_000, 1_099_800, 10_000_200]


async def test_order_loan_flagged_overdue_then_repaid_from_the_buyers_payment_first(
    ledger: Ledger,
) -> None:
    """A 70 % loan on a confirmed order; the hook flags it at the due date; the buyer's payment
    repays the bank (principal + interest) before the supplier."""
    ids = ledger.ids

    async def order(order_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await ledger.query(OF, "order", order_id=order_id)
        return found

    await ledger.ok("of_bank", OF, "set_ratio", ratio_bps=7_000)
    assert (await ledger.query(OF, "terms", financier=ids["of_bank"]))["ratio_bps"] == 7_000
    payment_due_ms = now_ms() + 3_000
    registered = await ledger.ok(
        "of_supplier", OF, "register_order", buyer=ids["of_core"], amount=1_000_000,
        delivery_due_ms=payment_due_ms, payment_due_ms=payment_due_ms,
        order_hash=doc("e2e-po-1"))
    order_id = registered.result["order_id"]
    assert (await order(order_id))["state"] == "REGISTERED"
    loan = {"order_id": order_id, "financier": ids["of_bank"], "rate_bps": 720}
    await ledger.refused("ORDER_NOT_CONFIRMED", "of_supplier", OF, "apply_loan",
                         principal=700_000, **loan)
    await ledger.ok("of_core", OF, "confirm_order", order_id=order_id)
    await ledger.refused("RATIO_EXCEEDED", "of_supplier", OF, "apply_loan",
                         principal=700_001, **loan)
    applied = await ledger.ok("of_supplier", OF, "apply_loan", principal=700_000, **loan)
    assert event(applied, "LoanApplied")["limit"] == 700_000
    await ledger.refused("NOT_AUTHORIZED", "of_supplier", OF, "approve_loan", order_id=order_id)
    disbursed = await ledger.ok("of_bank", OF, "approve_loan", order_id=order_id)
    assert event(disbursed, "LoanDisbursed")["principal"] == 700_000
    assert await ledger.balances("of_supplier", "of_bank") == [700_000, 4_300_000]
    assert (await order(order_id))["loan"]["state"] == "ACTIVE"

    # Nothing paid by the payment due date: the node's hook flags the loan.
    async def flagged() -> bool:
        return bool((await order(order_id))["loan"]["state"] == "OVERDUE")

    await ledger.until(flagged)
    [overdue] = await ledger.hook_events(disbursed, "LoanOverdue")
    assert overdue["block_ms"] >= payment_due_ms
    assert (overdue["order_id"], overdue["financier"], overdue["principal"]) == (
        order_id, ids["of_bank"], 700_000)
    await ledger.refused("WRONG_STATE", "of_core", OF, "pay_order", order_id=order_id)

    await ledger.ok("of_supplier", OF, "record_delivery", order_id=order_id,
                    delivery_hash=doc("e2e-delivery-note"))
    await ledger.ok("of_core", OF, "accept_delivery", order_id=order_id)
    paid = await ledger.ok("of_core", OF, "pay_order", order_id=order_id)
    owed = 700_000 + interest_one_day(700_000, 720)
    assert owed == 700_140
    assert paid.result == {"to_financier": owed, "to_supplier": 1_000_000 - owed}
    repaid = event(paid, "LoanRepaid")
    assert (repaid["principal"], repaid["interest"], repaid["shortfall"]) == (700_000, 140, 0)
    assert [e["name"] for e in paid.events if e["contract"] == OF] == ["LoanRepaid", "OrderPaid"]
    found = await order(order_id)
    assert (found["state"], found["loan"]["state"]) == ("PAID", "REPAID")
    assert await ledger.balances("of_bank", "of_supplier", "of_core") == [
        5_000_140, 999_860, 1_000_000]
    mine = await ledger.query(OF, "orders_of", account=ids["of_bank"])
    assert [o["id"] for o in mine] == [order_id]


async def test_prepayment_margin_repayments_release_goods_and_buy_back_at_due_date(
    ledger: Ledger,
) -> None:
    """30 % margin, goods pledged to the bank through the receipt contract, two repayments
    releasing goods in proportion, the core's buy-back by the node's hook at the due date."""
    ids = ledger.ids

    async def deal(deal_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await ledger.query(PP, "deal", deal_id=deal_id)
        return found

    async def receipt(receipt_id: str) -> dict[str, Any]:
        found: dict[str, Any] = await ledger.query(WR, "receipt", receipt_id=receipt_id)
        return found

    due_ms = now_ms() + 3_000
    terms = {"core": ids["pp_core"], "financier": ids["pp_bank"], "warehouse": ids["wh"],
             "commodity": "hot-rolled steel coil", "quantity": 1_000, "unit": "tonne",
             "price": 10_000_000, "rate_bps": 720, "due_ms": due_ms}
    await ledger.refused("MARGIN_TOO_LOW", "pp_dealer", PP, "apply", margin=2_999_999, **terms)
    applied = await ledger.ok("pp_dealer", PP, "apply", margin=3_000_000, **terms)
    deal_id = applied.result["deal_id"]
    await ledger.refused("WRONG_STATE", "pp_bank", PP, "approve", deal_id=deal_id)
    await ledger.ok("pp_core", PP, "confirm", deal_id=deal_id)
    financed = await ledger.ok("pp_bank", PP, "approve", deal_id=deal_id)
    assert [e["amount"] for e in financed.events if e["name"] == "Transferred"] == [
        3_000_000, 7_000_000]
    assert (await deal(deal_id))["state"] == "FINANCED"
    assert await ledger.balances("pp_dealer", "pp_bank", "pp_core") == [
        5_000_000, 3_000_000, 15_000_000]

    # The warehouse lodges the goods: a receipt owned by the dealer, pledged to the bank and
    # held by the prepayment contract.
    lodged = await ledger.ok("wh", PP, "lodge_goods", deal_id=deal_id, grade="Q235B",
                             location="Tianjin port, yard 7", inspection_hash=doc("e2e-steel"))
    held = lodged.result["receipt_id"]
    found = await receipt(held)
    assert (found["owner"], found["state"], found["quantity"]) == (ids["pp_dealer"], "PLEDGED",
                                                                   1_000)
    assert found["pledge"]["financier"] == ids["pp_bank"]
    assert found["pledge"]["controller"] == "contract:prepayment"
    await ledger.refused("RECEIPT_PLEDGED", "pp_dealer", WR, "transfer", receipt_id=held,
                         to=ids["pp_core"])
    await ledger.refused("PLEDGE_HELD_BY_CONTRACT", "pp_dealer", WR, "repay_pledge",
                         receipt_id=held)

    # Two repayments, each with one day's interest, release 400 t and then 200 t more.
    paid = await ledger.ok("pp_dealer", PP, "repay", deal_id=deal_id, principal=2_800_000)
    assert paid.result == {"interest": interest_one_day(2_800_000, 720), "released": 400}
    release = event(paid, "PledgeReleased")
    assert (release["quantity"], release["remaining"]) == (400, 600)
    free = await receipt(release["released_id"])
    assert (free["owner"], free["state"], free["quantity"]) == (ids["pp_dealer"], "ACTIVE", 400)
    paid = await ledger.ok("pp_dealer", PP, "repay", deal_id=deal_id, principal=1_400_000)
    assert paid.result == {"interest": interest_one_day(1_400_000, 720), "released": 200}
    await ledger.refused("REPAYMENT_EXCEEDED", "pp_dealer", PP, "repay", deal_id=deal_id,
                         principal=2_800_001)
    state = await deal(deal_id)
    assert (state["repaid"], state["released"]) == (4_200_000, 600)
    pledged = state["receipt_id"]  # what is still pledged, split off the lodged receipt
    found = await receipt(pledged)
    assert (found["state"], found["quantity"]) == ("PLEDGED", 400)
    assert await ledger.balances("pp_dealer", "pp_bank") == [799_160, 7_200_840]

    # At the due date the node's hook runs the core's buy-back of the 2,800,000 outstanding.
    async def bought_back() -> bool:
        return bool((await deal(deal_id))["state"] == "BOUGHT_BACK")

    await ledger.until(bought_back)
    assert interest_one_day(2_800_000, 720) == 560
    [settled] = await ledger.hook_events(paid, "BuybackSettled")
    assert settled.pop("block_ms") >= due_ms
    assert settled == {"contract": PP, "name": "BuybackSettled", "deal_id": deal_id,
                       "core": ids["pp_core"], "dealer": ids["pp_dealer"],
                       "financier": ids["pp_bank"], "principal": 2_800_000, "interest": 560,
                       "returned": 400}
    last = await receipt(pledged)
    assert (last["owner"], last["state"], last["quantity"]) == (ids["pp_core"], "ACTIVE", 400)
    assert last["pledge"] is None
    assert await ledger.balances("pp_dealer", "pp_bank", "pp_core") == [
        799_160, 10_001_400, 12_199_440]
    assert 799_160 + 10_001_400 + 12_199_440 == 23_000_000
    tree = await ledger.query(WR, "lineage", root_id=held)
    assert (tree["issued"], tree["live"], tree["redeemed"]) == (1_000, 1_000, 0)
    await ledger.refused("WRONG_STATE", "pp_dealer", PP, "repay", deal_id=deal_id, principal=1)
