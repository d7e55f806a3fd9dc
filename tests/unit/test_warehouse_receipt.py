"""Electronic warehouse receipts through the real executor on an in-memory chain.

The worked example of docs/contracts.md is checked balance by balance and state by state
(issue, partial transfer, exchange sale, pledge repaid at its due date by the hook, redemption);
then default and foreclosure, delivery versus payment failing as a whole, one test per error
code, and a hypothesis state machine of random histories that checks, after every step, that
quantity is conserved per lineage, cash is conserved, a pledged receipt never moves and no
receipt is pledged twice.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.harness import DAY_MS, LocalChain
from tests.unit.trade_chain import doc, fails, interest, make_chain, ok

WR = "warehouse_receipt"


def issue(chain: LocalChain, quantity: int, owner: str = "supplier", name: str = "insp-1") -> str:
    receipt = ok(chain.run(
        "wh", f"{WR}.issue", owner=chain.id(owner), commodity="copper cathode",
        quantity=quantity, unit="tonne", grade="A", location="Shanghai bonded zone, bay 4",
        inspection_hash=doc(name),
    ))
    return str(receipt.result["receipt_id"])


def get(chain: LocalChain, receipt_id: str) -> dict[str, Any]:
    found: dict[str, Any] = chain.query(f"{WR}.receipt", receipt_id=receipt_id)
    return found


def pledge(chain: LocalChain, receipt_id: str, owner: str, principal: int, days: int) -> int:
    """Request and approve a pledge loan due `days` after approval; returns the due time."""
    due_ms = chain.time_ms + 2_000 + days * DAY_MS  # the approving block runs 2 s from now
    ok(chain.run(owner, f"{WR}.pledge", receipt_id=receipt_id, financier=chain.id("bank"),
                 principal=principal, rate_bps=720, due_ms=due_ms))
    ok(chain.run("bank", f"{WR}.approve_pledge", receipt_id=receipt_id))
    return due_ms


def test_worked_example_transfer_sale_pledge_repaid_at_due_date_and_redemption() -> None:
    """The docs' example: every balance, state and quantity after each step."""
    chain = make_chain(dealer=6_000_000, bank=10_000_000)
    root = issue(chain, 1_000)
    assert get(chain, root)["state"] == "ACTIVE"

    # The supplier transfers 300 t to the dealer: the receipt splits into 300 + 700.
    moved = ok(chain.run("supplier", f"{WR}.transfer", receipt_id=root, to=chain.id("dealer"),
                         quantity=300))
    part_a = moved.result["receipt_id"]
    split = moved.event("ReceiptSplit")
    part_b = split["children"][1]
    assert split["quantities"] == [300, 700]
    assert get(chain, root)["state"] == "SPLIT"
    assert (get(chain, part_a)["owner"], get(chain, part_b)["owner"]) == (
        chain.id("dealer"), chain.id("supplier"))

    # The supplier lists the 700 t on the exchange; the dealer buys them: DvP in one tx.
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=part_b, exchange=chain.id("exch"),
                 price=4_900_000))
    sold = ok(chain.run("dealer", f"{WR}.buy", receipt_id=part_b, price=4_900_000))
    assert sold.event("ReceiptSold")["buyer"] == chain.id("dealer")
    assert chain.balance("dealer") == 1_100_000 and chain.balance("supplier") == 4_900_000
    assert get(chain, part_b)["owner"] == chain.id("dealer")

    # The dealer pledges the 300 t for 1,000,000 at 720 bps for 30 days.
    due_ms = pledge(chain, part_a, "dealer", 1_000_000, 30)
    assert get(chain, part_a)["state"] == "PLEDGED"
    assert chain.balance("dealer") == 2_100_000 and chain.balance("bank") == 9_000_000
    fails(chain, "dealer", f"{WR}.transfer", "RECEIPT_PLEDGED", receipt_id=part_a,
          to=chain.id("supplier"))

    # At the due date the hook collects principal + 30 days' interest (6,000) from the dealer.
    events = chain.advance(due_ms - chain.time_ms)
    repaid = [attrs for name, attrs in events if name == "PledgeRepaid"]
    assert repaid == [{"receipt_id": part_a, "owner": chain.id("dealer"),
                       "financier": chain.id("bank"), "principal": 1_000_000,
                       "interest": interest(1_000_000, 720, 30), "automatic": True}]
    assert interest(1_000_000, 720, 30) == 6_000
    assert chain.balance("dealer") == 1_094_000 and chain.balance("bank") == 10_006_000
    assert get(chain, part_a)["state"] == "ACTIVE" and get(chain, part_a)["pledge"] is None

    # The dealer redeems the 300 t; the warehouse confirms delivery; the receipt is cancelled.
    ok(chain.run("dealer", f"{WR}.request_redemption", receipt_id=part_a))
    done = ok(chain.run("wh", f"{WR}.confirm_delivery", receipt_id=part_a))
    assert done.event("ReceiptRedeemed")["quantity"] == 300
    assert get(chain, part_a)["state"] == "REDEEMED"
    tree = chain.query(f"{WR}.lineage", root_id=root)
    assert (tree["issued"], tree["redeemed"], tree["live"]) == (1_000, 300, 700)
    mine = chain.query(f"{WR}.receipts_of", owner=chain.id("dealer"))
    assert [r["id"] for r in mine] == [part_b]
    assert chain.query("cash.supply")["outstanding"] == 16_000_000


def test_unpaid_pledge_defaults_at_due_date_and_financier_forecloses() -> None:
    """No cash at the due date: the receipt defaults; the bank forecloses and owns it."""
    chain = make_chain(bank=5_000_000)
    receipt_id = issue(chain, 50, owner="dealer")
    due_ms = pledge(chain, receipt_id, "dealer", 800_000, 10)
    ok(chain.run("dealer", "cash.transfer", to=chain.id("core"), amount=800_000))
    fails(chain, "bank", f"{WR}.foreclose", "WRONG_STATE", receipt_id=receipt_id)
    events = chain.advance(due_ms - chain.time_ms)
    defaulted = [attrs for name, attrs in events if name == "PledgeDefaulted"]
    assert defaulted and defaulted[0]["balance"] == 0
    assert get(chain, receipt_id)["state"] == "DEFAULTED"
    fails(chain, "dealer", f"{WR}.request_redemption", "RECEIPT_PLEDGED", receipt_id=receipt_id)
    closed = ok(chain.run("bank", f"{WR}.foreclose", receipt_id=receipt_id))
    assert closed.event("ReceiptForeclosed")["borrower"] == chain.id("dealer")
    found = get(chain, receipt_id)
    assert (found["owner"], found["state"], found["pledge"]) == (chain.id("bank"), "ACTIVE", None)
    assert chain.balance("bank") == 4_200_000


def test_defaulted_pledge_may_still_be_repaid_before_foreclosure() -> None:
    """After default the owner can still repay, with interest counted to the day it pays."""
    chain = make_chain(bank=5_000_000, core=10_000)
    receipt_id = issue(chain, 50, owner="dealer")
    due_ms = pledge(chain, receipt_id, "dealer", 360_000, 10)
    ok(chain.run("dealer", "cash.transfer", to=chain.id("core"), amount=360_000))
    chain.advance(due_ms - chain.time_ms + 5 * DAY_MS - 2_000)
    assert get(chain, receipt_id)["state"] == "DEFAULTED"
    ok(chain.run("core", "cash.transfer", to=chain.id("dealer"), amount=361_080))
    paid = ok(chain.run("dealer", f"{WR}.repay_pledge", receipt_id=receipt_id))
    assert paid.result == {"paid": 360_000 + interest(360_000, 720, 15)}
    assert get(chain, receipt_id)["state"] == "ACTIVE"


def test_exchange_sale_without_funds_moves_neither_cash_nor_title() -> None:
    """Delivery versus payment: a buyer short of cash gets nothing and pays nothing."""
    chain = make_chain(dealer=99)
    receipt_id = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=receipt_id,
                 exchange=chain.id("exch"), price=100))
    fails(chain, "dealer", f"{WR}.buy", "INSUFFICIENT_FUNDS", receipt_id=receipt_id, price=100)
    assert get(chain, receipt_id)["owner"] == chain.id("supplier")
    assert chain.balance("dealer") == 99
    ok(chain.run("exch", f"{WR}.delist", receipt_id=receipt_id))
    assert get(chain, receipt_id)["state"] == "ACTIVE"


def test_explicit_split_conserves_quantity_and_keeps_provenance() -> None:
    """A split's children sum to the parent and keep its root, warehouse and document."""
    chain = make_chain()
    root = issue(chain, 100)
    parts = ok(chain.run("supplier", f"{WR}.split", receipt_id=root, quantities=[10, 20, 70]))
    children = [get(chain, c) for c in parts.result["receipt_ids"]]
    assert [c["quantity"] for c in children] == [10, 20, 70]
    assert {(c["root"], c["parent"], c["inspection_hash"], c["warehouse"]) for c in children} == {
        (root, root, doc("insp-1"), chain.id("wh"))}
    assert chain.query(f"{WR}.lineage", root_id=root)["live"] == 100


# ---------------------------------------------------------------------------------------------
# One test per error code.


def test_invalid_args_for_bad_quantities_ids_rates_and_lists() -> None:
    """Quantities and prices must be positive integers in range; ids lower-case hex."""
    chain = make_chain()
    for quantity in (0, -1, 2.5, "3", True, 10**30):
        fails(chain, "wh", f"{WR}.issue", "INVALID_ARGS", owner=chain.id("supplier"),
              commodity="x", quantity=quantity, unit="t", grade="A", location="L",
              inspection_hash=doc("q"))
    root = issue(chain, 10)
    fails(chain, "supplier", f"{WR}.transfer", "INVALID_ARGS", receipt_id=root.upper(),
          to=chain.id("dealer"))
    fails(chain, "supplier", f"{WR}.transfer", "INVALID_ARGS", receipt_id=root,
          to=chain.id("supplier"))
    fails(chain, "supplier", f"{WR}.split", "INVALID_ARGS", receipt_id=root, quantities=[10])
    fails(chain, "supplier", f"{WR}.pledge", "INVALID_ARGS", receipt_id=root,
          financier=chain.id("bank"), principal=5, rate_bps=-1, due_ms=chain.time_ms + DAY_MS)


def test_not_authorized_for_wrong_role_or_wrong_party() -> None:
    """Only warehouses issue; only owners move; only the named financier/warehouse decides."""
    chain = make_chain(dealer=1_000)
    fails(chain, "supplier", f"{WR}.issue", "NOT_AUTHORIZED", owner=chain.id("supplier"),
          commodity="x", quantity=1, unit="t", grade="A", location="L", inspection_hash=doc("a"))
    fails(chain, "wh", f"{WR}.issue", "NOT_AUTHORIZED", owner=chain.id("auditor"),
          commodity="x", quantity=1, unit="t", grade="A", location="L", inspection_hash=doc("a"))
    root = issue(chain, 10)
    fails(chain, "dealer", f"{WR}.transfer", "NOT_AUTHORIZED", receipt_id=root,
          to=chain.id("dealer"))
    fails(chain, "supplier", f"{WR}.list_for_sale", "NOT_AUTHORIZED", receipt_id=root,
          exchange=chain.id("bank"), price=5)
    ok(chain.run("supplier", f"{WR}.pledge", receipt_id=root, financier=chain.id("bank"),
                 principal=5, rate_bps=0, due_ms=chain.time_ms + DAY_MS))
    fails(chain, "bank2", f"{WR}.approve_pledge", "NOT_AUTHORIZED", receipt_id=root)
    ok(chain.run("supplier", f"{WR}.reject_pledge", receipt_id=root))
    ok(chain.run("supplier", f"{WR}.request_redemption", receipt_id=root))
    fails(chain, "wh2", f"{WR}.confirm_delivery", "NOT_AUTHORIZED", receipt_id=root)
    fails(chain, "auditor", f"{WR}.cancel_redemption", "NOT_AUTHORIZED", receipt_id=root)


def test_unknown_receipt() -> None:
    chain = make_chain()
    fails(chain, "supplier", f"{WR}.request_redemption", "UNKNOWN_RECEIPT",
          receipt_id=doc("none"))


def test_document_used_once_only() -> None:
    """One inspection document backs one receipt, even at another warehouse."""
    chain = make_chain()
    issue(chain, 10, name="insp-x")
    fails(chain, "wh2", f"{WR}.issue", "DOCUMENT_USED", owner=chain.id("dealer"), commodity="x",
          quantity=1, unit="t", grade="A", location="L", inspection_hash=doc("insp-x"))


def test_receipt_pledged_cannot_move_be_pledged_again_split_listed_or_redeemed() -> None:
    chain = make_chain(bank=1_000)
    root = issue(chain, 10)
    pledge(chain, root, "supplier", 100, 30)
    for call, extra in (
        ("transfer", {"to": chain.id("dealer")}),
        ("split", {"quantities": [5, 5]}),
        ("list_for_sale", {"exchange": chain.id("exch"), "price": 1}),
        ("pledge", {"financier": chain.id("bank2"), "principal": 1, "rate_bps": 0,
                    "due_ms": chain.time_ms + DAY_MS}),
        ("request_redemption", {}),
    ):
        fails(chain, "supplier", f"{WR}.{call}", "RECEIPT_PLEDGED", receipt_id=root, **extra)


def test_receipt_listed_does_not_move_until_delisted() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=root, exchange=chain.id("exch"),
                 price=50))
    fails(chain, "supplier", f"{WR}.transfer", "RECEIPT_LISTED", receipt_id=root,
          to=chain.id("dealer"))


def test_redemption_pending_freezes_the_receipt() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.request_redemption", receipt_id=root))
    fails(chain, "supplier", f"{WR}.split", "REDEMPTION_PENDING", receipt_id=root,
          quantities=[1, 9])
    ok(chain.run("supplier", f"{WR}.cancel_redemption", receipt_id=root))
    ok(chain.run("supplier", f"{WR}.split", receipt_id=root, quantities=[1, 9]))


def test_receipt_closed_after_split_or_redemption() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.split", receipt_id=root, quantities=[4, 6]))
    fails(chain, "supplier", f"{WR}.transfer", "RECEIPT_CLOSED", receipt_id=root,
          to=chain.id("dealer"))


def test_quantity_exceeded_on_partial_transfer() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    fails(chain, "supplier", f"{WR}.transfer", "QUANTITY_EXCEEDED", receipt_id=root,
          to=chain.id("dealer"), quantity=11)


def test_quantity_mismatch_on_split() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    fails(chain, "supplier", f"{WR}.split", "QUANTITY_MISMATCH", receipt_id=root,
          quantities=[4, 5])


def test_price_mismatch_protects_the_buyer() -> None:
    chain = make_chain(dealer=1_000)
    root = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=root, exchange=chain.id("exch"),
                 price=500))
    fails(chain, "dealer", f"{WR}.buy", "PRICE_MISMATCH", receipt_id=root, price=400)


def test_wrong_state_for_steps_that_do_not_apply() -> None:
    """Buying an unlisted receipt, approving nothing, repaying an unpledged one, etc."""
    chain = make_chain(dealer=1_000)
    root = issue(chain, 10)
    fails(chain, "dealer", f"{WR}.buy", "WRONG_STATE", receipt_id=root, price=1)
    fails(chain, "bank", f"{WR}.approve_pledge", "WRONG_STATE", receipt_id=root)
    fails(chain, "supplier", f"{WR}.repay_pledge", "WRONG_STATE", receipt_id=root)
    fails(chain, "wh", f"{WR}.confirm_delivery", "WRONG_STATE", receipt_id=root)
    fails(chain, "supplier", f"{WR}.delist", "WRONG_STATE", receipt_id=root)


def test_due_passed_for_a_pledge_due_now_or_before() -> None:
    chain = make_chain()
    root = issue(chain, 10)
    fails(chain, "supplier", f"{WR}.pledge", "DUE_PASSED", receipt_id=root,
          financier=chain.id("bank"), principal=5, rate_bps=0, due_ms=chain.time_ms + 1_000)


def test_insufficient_funds_when_the_financier_cannot_disburse() -> None:
    chain = make_chain(bank=4)
    root = issue(chain, 10)
    ok(chain.run("supplier", f"{WR}.pledge", receipt_id=root, financier=chain.id("bank"),
                 principal=5, rate_bps=0, due_ms=chain.time_ms + DAY_MS))
    fails(chain, "bank", f"{WR}.approve_pledge", "INSUFFICIENT_FUNDS", receipt_id=root)


def test_lineage_full_bounds_the_receipts_of_one_root() -> None:
    """Splitting stops once a lineage would exceed 256 receipts."""
    chain = make_chain()
    root = issue(chain, 10_000)
    children = ok(chain.run("supplier", f"{WR}.split", receipt_id=root,
                            quantities=[625] * 16)).result["receipt_ids"]
    for child in children[:14]:  # 1 + 16 + 14 * 16 = 241 receipts
        ok(chain.run("supplier", f"{WR}.split", receipt_id=child, quantities=[39] * 15 + [40]))
    fails(chain, "supplier", f"{WR}.split", "LINEAGE_FULL", receipt_id=children[14],
          quantities=[39] * 15 + [40])
    assert chain.query(f"{WR}.lineage", root_id=root)["live"] == 10_000


def test_internal_methods_are_not_reachable_by_tx() -> None:
    """issue_pledged and release_pledge answer only to contracts (UNKNOWN_METHOD by tx)."""
    chain = make_chain()
    root = issue(chain, 10)
    fails(chain, "wh", f"{WR}.release_pledge", "UNKNOWN_METHOD", receipt_id=root, quantity=1,
          to=chain.id("wh"))


# ---------------------------------------------------------------------------------------------
# Random histories.

NAMES = ("supplier", "dealer", "core")


class ReceiptMachine(RuleBasedStateMachine):
    """Random issue/transfer/split/list/buy/pledge/repay/redeem/time steps on one chain."""

    def __init__(self) -> None:
        super().__init__()
        self.chain = make_chain(supplier=3_000, dealer=3_000, core=3_000, bank=10_000)
        self.supply = self.chain.query("cash.supply")["outstanding"]
        self.roots: list[str] = []
        self.docs = 0

    def live(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in (*NAMES, "bank"):
            out.extend(self.chain.query(f"{WR}.receipts_of", owner=self.chain.id(name)))
        return sorted(out, key=lambda r: str(r["id"]))

    def pick(self, index: int, *states: str) -> dict[str, Any] | None:
        found = [r for r in self.live() if r["state"] in states]
        return found[index % len(found)] if found else None

    def owner_name(self, record: dict[str, Any]) -> str:
        return next(n for n in (*NAMES, "bank") if self.chain.id(n) == record["owner"])

    @initialize(quantities=st.lists(st.integers(1, 500), min_size=3, max_size=3))
    def issue_one_each(self, quantities: list[int]) -> None:
        for owner, quantity in zip(NAMES, quantities, strict=True):
            self.issue(owner, quantity)

    @rule(owner=st.sampled_from(NAMES), quantity=st.integers(1, 500))
    def issue(self, owner: str, quantity: int) -> None:
        self.docs += 1
        self.roots.append(issue(self.chain, quantity, owner, name=f"doc-{self.docs}"))

    @rule(index=st.integers(0, 99), to=st.sampled_from(NAMES), part=st.integers(1, 600))
    def transfer(self, index: int, to: str, part: int) -> None:
        found = self.pick(index, "ACTIVE", "PLEDGED", "LISTED")
        if found is not None:
            quantity = part if part > 500 else 1 + part % found["quantity"]  # > 500: too much
            receipt = self.chain.run(self.owner_name(found), f"{WR}.transfer",
                                     receipt_id=found["id"], to=self.chain.id(to),
                                     quantity=quantity)
            movable = found["state"] == "ACTIVE" and found["owner"] != self.chain.id(to)
            assert receipt.ok == (movable and quantity <= found["quantity"]), receipt.code

    @rule(index=st.integers(0, 99), cut=st.integers(1, 600))
    def split(self, index: int, cut: int) -> None:
        found = self.pick(index, "ACTIVE", "PLEDGED")
        if found is not None and found["quantity"] > 1:
            cut = 1 + cut % (found["quantity"] - 1)
            receipt = self.chain.run(self.owner_name(found), f"{WR}.split",
                                     receipt_id=found["id"],
                                     quantities=[cut, found["quantity"] - cut])
            assert receipt.ok == (found["state"] == "ACTIVE"), "a pledged receipt never splits"

    @rule(index=st.integers(0, 99), price=st.integers(1, 4_000))
    def list_for_sale(self, index: int, price: int) -> None:
        found = self.pick(index, "ACTIVE")
        if found is not None:
            self.chain.run(self.owner_name(found), f"{WR}.list_for_sale", receipt_id=found["id"],
                           exchange=self.chain.id("exch"), price=price)

    @rule(index=st.integers(0, 99), buyer=st.sampled_from(NAMES))
    def buy(self, index: int, buyer: str) -> None:
        found = self.pick(index, "LISTED")
        if found is not None:
            self.chain.run(buyer, f"{WR}.buy", receipt_id=found["id"],
                           price=found["listing"]["price"])

    @rule(index=st.integers(0, 99), principal=st.integers(1, 3_000), days=st.integers(1, 20),
          approve=st.booleans(), squander=st.booleans())
    def pledge(
        self, index: int, principal: int, days: int, approve: bool, squander: bool
    ) -> None:
        found = self.pick(index, "ACTIVE", "PLEDGED", "PLEDGE_PENDING")
        if found is None:
            return
        before = found["state"]
        receipt = self.chain.run(
            self.owner_name(found), f"{WR}.pledge", receipt_id=found["id"],
            financier=self.chain.id("bank"), principal=principal, rate_bps=3_600,
            due_ms=self.chain.time_ms + 2_000 + days * DAY_MS,
        )
        own_lender = found["owner"] == self.chain.id("bank")  # after a foreclosure
        assert receipt.ok == (before == "ACTIVE" and not own_lender), "no double pledge"
        if receipt.ok:
            self.chain.run("bank", f"{WR}.approve_pledge" if approve else f"{WR}.reject_pledge",
                           receipt_id=found["id"])
        owner = self.owner_name(found)
        if squander and self.chain.balance(owner):  # the borrower spends it all: likely default
            self.spend(owner, self.chain.balance(owner))

    @rule(index=st.integers(0, 99))
    def repay(self, index: int) -> None:
        found = self.pick(index, "PLEDGED", "DEFAULTED")
        if found is not None:
            self.chain.run(self.owner_name(found), f"{WR}.repay_pledge", receipt_id=found["id"])

    @rule(index=st.integers(0, 99))
    def foreclose(self, index: int) -> None:
        found = self.pick(index, "DEFAULTED")
        if found is not None:
            ok(self.chain.run("bank", f"{WR}.foreclose", receipt_id=found["id"]))

    @rule(index=st.integers(0, 99))
    def redeem(self, index: int) -> None:
        found = self.pick(index, "ACTIVE")
        if found is not None:
            ok(self.chain.run(self.owner_name(found), f"{WR}.request_redemption",
                              receipt_id=found["id"]))
            ok(self.chain.run("wh", f"{WR}.confirm_delivery", receipt_id=found["id"]))

    @rule(who=st.sampled_from(NAMES), amount=st.integers(1, 3_000))
    def spend(self, who: str, amount: int) -> None:
        """Cash leaves a party (to the warehouse, as fees), so pledges can default."""
        self.chain.run(who, "cash.transfer", to=self.chain.id("wh"), amount=amount)

    @precondition(lambda self: bool(self.roots))
    @rule(days=st.integers(1, 15), foreclose=st.booleans())
    def time_passes(self, days: int, foreclose: bool) -> None:
        self.chain.advance(days * DAY_MS)
        if foreclose:
            self.foreclose(0)

    @invariant()
    def quantity_is_conserved_per_lineage(self) -> None:
        for root in self.roots:
            tree = self.chain.query(f"{WR}.lineage", root_id=root)
            assert tree["live"] + tree["redeemed"] == tree["issued"]
            splits = [r for r in tree["receipts"] if r["state"] == "SPLIT"]
            by_id = {r["id"]: r for r in tree["receipts"]}
            for parent in splits:
                assert sum(by_id[c]["quantity"] for c in parent["children"]) == parent["quantity"]

    @invariant()
    def cash_is_conserved_and_never_negative(self) -> None:
        names = (*NAMES, "bank", "exch", "wh")
        balances = [self.chain.balance(n) for n in names]
        assert min(balances) >= 0 and sum(balances) == self.supply

    @invariant()
    def pledges_match_states_and_the_due_index(self) -> None:
        due = {key.rsplit("/", 1)[1] for key in self.chain.state.items
               if key.startswith(f"{WR}/due/")}
        live = self.live()
        assert due == {r["id"] for r in live if r["state"] == "PLEDGED"}
        for record in live:
            pledged = record["state"] in ("PLEDGE_PENDING", "PLEDGED", "DEFAULTED")
            assert (record["pledge"] is not None) == pledged


ReceiptMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
test_receipt_histories_conserve_quantity_and_cash = ReceiptMachine.TestCase
