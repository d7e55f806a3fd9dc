"""Prepayment financing through the real executor on an in-memory chain.

The worked example of docs/contracts.md (30 % margin, goods lodged as a pledged warehouse
receipt, two repayments releasing goods in proportion, the core's buy-back at the due date) is
checked balance by balance and receipt by receipt; then full repayment, a buy-back the core
cannot pay at once, goods never lodged, one test per error code, and a hypothesis state machine
of random deals that checks after every step that cash and goods are conserved, goods are never
released beyond repayment, and the pledged receipt always holds exactly the unreleased goods.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.harness import DAY_MS, LocalChain
from tests.unit.trade_chain import doc, fails, interest, make_chain, ok

PP = "prepayment"
WR = "warehouse_receipt"


def apply(
    chain: LocalChain, price: int = 10_000_000, margin: int = 3_000_000, quantity: int = 1_000,
    days: int = 90, rate_bps: int = 720,
) -> str:
    """Apply; the due date falls `days` after the approval two blocks later."""
    receipt = ok(chain.run(
        "dealer", f"{PP}.apply", core=chain.id("core"), financier=chain.id("bank"),
        warehouse=chain.id("wh"), commodity="hot-rolled steel coil", quantity=quantity,
        unit="tonne", price=price, margin=margin, rate_bps=rate_bps,
        due_ms=chain.time_ms + 3_000 + days * DAY_MS,
    ))
    return str(receipt.result["deal_id"])


def finance(chain: LocalChain, deal_id: str) -> None:
    ok(chain.run("core", f"{PP}.confirm", deal_id=deal_id))
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))


def lodge(chain: LocalChain, deal_id: str, name: str = "insp-steel") -> str:
    lodged = ok(chain.run("wh", f"{PP}.lodge_goods", deal_id=deal_id, grade="Q235B",
                          location="Tianjin port, yard 7", inspection_hash=doc(name)))
    return str(lodged.result["receipt_id"])


def deal(chain: LocalChain, deal_id: str) -> dict[str, Any]:
    found: dict[str, Any] = chain.query(f"{PP}.deal", deal_id=deal_id)
    return found


def receipt(chain: LocalChain, receipt_id: str) -> dict[str, Any]:
    found: dict[str, Any] = chain.query(f"{WR}.receipt", receipt_id=receipt_id)
    return found


def at_day(chain: LocalChain, start_ms: int, days: int) -> None:
    """Advance so that the next tx's block runs exactly `days` after start_ms."""
    chain.advance(start_ms + days * DAY_MS - 1_000 - chain.time_ms)


def test_worked_example_margin_repayments_release_goods_and_buy_back_at_due_date() -> None:
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=5_000_000)
    deal_id = apply(chain)
    finance(chain, deal_id)
    approved_ms = chain.time_ms
    assert deal(chain, deal_id)["state"] == "FINANCED"
    assert chain.balance("core") == 15_000_000
    assert chain.balance("dealer") == 5_000_000 and chain.balance("bank") == 3_000_000

    held = lodge(chain, deal_id)
    found = receipt(chain, held)
    assert (found["owner"], found["state"], found["quantity"]) == (chain.id("dealer"), "PLEDGED",
                                                                   1_000)
    assert found["pledge"]["financier"] == chain.id("bank")
    assert found["pledge"]["controller"] == "contract:prepayment"

    # Day 30: 2,800,000 of principal (40 %) with 16,800 interest releases 400 t.
    at_day(chain, approved_ms, 30)
    paid = ok(chain.run("dealer", f"{PP}.repay", deal_id=deal_id, principal=2_800_000))
    assert interest(2_800_000, 720, 30) == 16_800
    assert paid.result == {"interest": 16_800, "released": 400}
    released = paid.event("PledgeReleased")
    assert (released["quantity"], released["remaining"]) == (400, 600)
    assert receipt(chain, released["released_id"])["state"] == "ACTIVE"
    assert receipt(chain, released["released_id"])["owner"] == chain.id("dealer")

    # Day 60: 1,400,000 more (60 % in all) with 16,800 interest releases 200 t more.
    at_day(chain, approved_ms, 60)
    paid = ok(chain.run("dealer", f"{PP}.repay", deal_id=deal_id, principal=1_400_000))
    assert paid.result == {"interest": interest(1_400_000, 720, 60), "released": 200}
    state = deal(chain, deal_id)
    assert (state["repaid"], state["released"]) == (4_200_000, 600)
    assert receipt(chain, state["receipt_id"])["quantity"] == 400

    # Day 90: the core buys back the 2,800,000 outstanding plus 90 days' interest (50,400).
    events = chain.advance(approved_ms + 90 * DAY_MS - chain.time_ms)
    settled = [attrs for name, attrs in events if name == "BuybackSettled"]
    assert settled == [{"deal_id": deal_id, "core": chain.id("core"), "dealer": chain.id("dealer"),
                        "financier": chain.id("bank"), "principal": 2_800_000,
                        "interest": 50_400, "returned": 400}]
    last = receipt(chain, state["receipt_id"])
    assert (last["owner"], last["state"], last["quantity"]) == (chain.id("core"), "ACTIVE", 400)
    assert deal(chain, deal_id)["state"] == "BOUGHT_BACK"
    assert chain.balance("dealer") == 766_400
    assert chain.balance("bank") == 10_084_000
    assert chain.balance("core") == 12_149_600
    tree = chain.query(f"{WR}.lineage", root_id=held)
    assert (tree["issued"], tree["live"]) == (1_000, 1_000)


def test_full_repayment_releases_every_unit_and_nothing_falls_due() -> None:
    chain = make_chain(dealer=1_000_000, bank=1_000_000, core=0)
    deal_id = apply(chain, price=1_000, margin=300, quantity=7, days=10)
    finance(chain, deal_id)
    held = lodge(chain, deal_id)
    paid = ok(chain.run("dealer", f"{PP}.repay", deal_id=deal_id, principal=699))
    assert paid.result["released"] == 6  # 7 * 699 // 700: never more than repaid for
    paid = ok(chain.run("dealer", f"{PP}.repay", deal_id=deal_id, principal=1))
    assert paid.result["released"] == 1 and paid.event("DealRepaid")["deal_id"] == deal_id
    assert deal(chain, deal_id)["state"] == "REPAID"
    events = chain.advance(20 * DAY_MS)
    assert not [n for n, _ in events if n.startswith("Buyback")]
    mine = chain.query(f"{WR}.receipts_of", owner=chain.id("dealer"))
    assert sum(r["quantity"] for r in mine if r["root"] == held) == 7


def test_core_short_of_cash_at_due_date_owes_the_buy_back_until_it_pays() -> None:
    chain = make_chain(dealer=300, bank=700, core=0)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10, days=5, rate_bps=0)
    finance(chain, deal_id)
    lodge(chain, deal_id)
    ok(chain.run("core", "cash.transfer", to=chain.id("supplier"), amount=1_000))
    events = chain.advance(6 * DAY_MS)
    short = [attrs for name, attrs in events if name == "BuybackShortfall"]
    assert short and short[0]["principal"] == 700 and short[0]["balance"] == 0
    assert deal(chain, deal_id)["state"] == "BUYBACK_DUE"
    fails(chain, "dealer", f"{PP}.repay", "WRONG_STATE", deal_id=deal_id, principal=1)
    fails(chain, "core", f"{PP}.buy_back", "INSUFFICIENT_FUNDS", deal_id=deal_id)
    ok(chain.run("supplier", "cash.transfer", to=chain.id("core"), amount=1_000))
    ok(chain.run("core", f"{PP}.buy_back", deal_id=deal_id))
    assert chain.balance("bank") == 700 and chain.balance("core") == 300
    assert deal(chain, deal_id)["returned"] == 10


def test_goods_never_lodged_are_bought_back_without_a_receipt() -> None:
    chain = make_chain(dealer=300, bank=700, core=100)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10, days=5, rate_bps=0)
    finance(chain, deal_id)
    chain.advance(6 * DAY_MS)
    found = deal(chain, deal_id)
    assert (found["state"], found["returned"], found["receipt_id"]) == ("BOUGHT_BACK", 0, None)
    assert chain.balance("bank") == 700 and chain.balance("core") == 400


def test_pledged_goods_cannot_move_or_be_repaid_at_the_warehouse_contract() -> None:
    """The receipt is held by prepayment: warehouse_receipt refuses to act on its pledge."""
    chain = make_chain(dealer=300, bank=700)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    finance(chain, deal_id)
    held = lodge(chain, deal_id)
    fails(chain, "dealer", f"{WR}.transfer", "RECEIPT_PLEDGED", receipt_id=held,
          to=chain.id("core"))
    fails(chain, "dealer", f"{WR}.repay_pledge", "PLEDGE_HELD_BY_CONTRACT", receipt_id=held)
    fails(chain, "bank", f"{WR}.foreclose", "PLEDGE_HELD_BY_CONTRACT", receipt_id=held)


# ---------------------------------------------------------------------------------------------
# One test per error code.


def test_invalid_args_for_bad_amounts_margin_at_or_above_price_and_repeated_parties() -> None:
    chain = make_chain()
    base: dict[str, Any] = dict(
        core=chain.id("core"), financier=chain.id("bank"), warehouse=chain.id("wh"),
        commodity="x", quantity=5, unit="t", price=100, margin=30, rate_bps=0,
        due_ms=chain.time_ms + DAY_MS,
    )
    for change in ({"price": 0}, {"margin": -1}, {"quantity": 1.5}, {"rate_bps": 10**9},
                   {"margin": 100}, {"core": chain.id("dealer")}, {"due_ms": "soon"}):
        args = {**base, **change}
        code = "NOT_AUTHORIZED" if change.get("core") else "INVALID_ARGS"
        fails(chain, "dealer", f"{PP}.apply", code, **args)
    fails(chain, "admin", f"{PP}.configure", "INVALID_ARGS", margin_bps_min=10_000)


def test_not_authorized_for_wrong_role_or_party() -> None:
    chain = make_chain(dealer=300, bank=700)
    fails(chain, "supplier", f"{PP}.apply", "NOT_AUTHORIZED", core=chain.id("core"),
          financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="x", quantity=5,
          unit="t", price=100, margin=30, rate_bps=0, due_ms=chain.time_ms + DAY_MS)
    fails(chain, "bank", f"{PP}.configure", "NOT_AUTHORIZED", margin_bps_min=1_000)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    fails(chain, "bank", f"{PP}.confirm", "NOT_AUTHORIZED", deal_id=deal_id)
    ok(chain.run("core", f"{PP}.confirm", deal_id=deal_id))
    fails(chain, "bank2", f"{PP}.approve", "NOT_AUTHORIZED", deal_id=deal_id)
    fails(chain, "dealer", f"{PP}.reject", "NOT_AUTHORIZED", deal_id=deal_id)
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))
    fails(chain, "wh2", f"{PP}.lodge_goods", "NOT_AUTHORIZED", deal_id=deal_id, grade="A",
          location="L", inspection_hash=doc("i"))
    lodge(chain, deal_id)
    fails(chain, "supplier", f"{PP}.repay", "NOT_AUTHORIZED", deal_id=deal_id, principal=1)


def test_unknown_deal() -> None:
    chain = make_chain()
    fails(chain, "core", f"{PP}.confirm", "UNKNOWN_DEAL", deal_id=doc("none"))


def test_margin_too_low_against_the_configured_share() -> None:
    """30 % by default; an admin may raise it and the floor follows."""
    chain = make_chain()
    assert chain.query(f"{PP}.config") == {"margin_bps_min": 3_000}
    fails(chain, "dealer", f"{PP}.apply", "MARGIN_TOO_LOW", core=chain.id("core"),
          financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="x", quantity=5,
          unit="t", price=1_000, margin=299, rate_bps=0, due_ms=chain.time_ms + DAY_MS)
    apply(chain, price=1_000, margin=300)
    ok(chain.run("admin", f"{PP}.configure", margin_bps_min=4_000))
    fails(chain, "dealer", f"{PP}.apply", "MARGIN_TOO_LOW", core=chain.id("core"),
          financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="x", quantity=5,
          unit="t", price=1_000, margin=300, rate_bps=0, due_ms=chain.time_ms + DAY_MS)


def test_wrong_state_for_steps_out_of_order() -> None:
    chain = make_chain(dealer=300, bank=700)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    fails(chain, "bank", f"{PP}.approve", "WRONG_STATE", deal_id=deal_id)
    fails(chain, "wh", f"{PP}.lodge_goods", "WRONG_STATE", deal_id=deal_id, grade="A",
          location="L", inspection_hash=doc("i"))
    finance(chain, deal_id)
    fails(chain, "dealer", f"{PP}.repay", "WRONG_STATE", deal_id=deal_id, principal=1)
    fails(chain, "core", f"{PP}.buy_back", "WRONG_STATE", deal_id=deal_id)
    fails(chain, "core", f"{PP}.reject", "WRONG_STATE", deal_id=deal_id)


def test_due_passed_for_past_due_dates_and_late_approvals() -> None:
    chain = make_chain(dealer=300, bank=700)
    fails(chain, "dealer", f"{PP}.apply", "DUE_PASSED", core=chain.id("core"),
          financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="x", quantity=5,
          unit="t", price=1_000, margin=300, rate_bps=0, due_ms=chain.time_ms + 1_000)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10, days=1)
    ok(chain.run("core", f"{PP}.confirm", deal_id=deal_id))
    chain.advance(DAY_MS)
    fails(chain, "bank", f"{PP}.approve", "DUE_PASSED", deal_id=deal_id)


def test_repayment_exceeded_beyond_outstanding_principal() -> None:
    chain = make_chain(dealer=2_000, bank=700)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    finance(chain, deal_id)
    lodge(chain, deal_id)
    fails(chain, "dealer", f"{PP}.repay", "REPAYMENT_EXCEEDED", deal_id=deal_id, principal=701)


def test_insufficient_funds_for_margin_financing_or_repayment() -> None:
    chain = make_chain(dealer=299, bank=700)
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    ok(chain.run("core", f"{PP}.confirm", deal_id=deal_id))
    fails(chain, "bank", f"{PP}.approve", "INSUFFICIENT_FUNDS", deal_id=deal_id)
    ok(chain.run("bank", "cash.deposit", account=chain.id("dealer"), amount=1))
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))
    lodge(chain, deal_id)
    fails(chain, "dealer", f"{PP}.repay", "INSUFFICIENT_FUNDS", deal_id=deal_id, principal=1)


def test_document_used_when_lodging_with_an_inspection_document_already_used() -> None:
    chain = make_chain(dealer=300, bank=700)
    ok(chain.run("wh", f"{WR}.issue", owner=chain.id("supplier"), commodity="x", quantity=1,
                 unit="t", grade="A", location="L", inspection_hash=doc("used")))
    deal_id = apply(chain, price=1_000, margin=300, quantity=10)
    finance(chain, deal_id)
    fails(chain, "wh", f"{PP}.lodge_goods", "DOCUMENT_USED", deal_id=deal_id, grade="A",
          location="L", inspection_hash=doc("used"))


# ---------------------------------------------------------------------------------------------
# Random histories.


class DealMachine(RuleBasedStateMachine):
    """Random deals, approvals, lodging, repayments, core cash and time."""

    def __init__(self) -> None:
        super().__init__()
        self.chain = make_chain(dealer=2_000_000, bank=2_000_000, core=200_000)
        self.supply = self.chain.query("cash.supply")["outstanding"]
        self.deals: list[str] = []

    def pick(self, index: int, *states: str) -> dict[str, Any] | None:
        found = [d for d in (deal(self.chain, i) for i in self.deals) if d["state"] in states]
        return found[index % len(found)] if found else None

    @initialize(quantity=st.integers(1, 1_000), price=st.integers(10, 200_000))
    def open_one(self, quantity: int, price: int) -> None:
        self.open(quantity, price, 3_000, 20, True, True)

    @rule(quantity=st.integers(1, 1_000), price=st.integers(10, 200_000),
          margin_bps=st.integers(3_000, 9_000), days=st.integers(1, 40),
          approve=st.booleans(), goods=st.booleans())
    def open(
        self, quantity: int, price: int, margin_bps: int, days: int, approve: bool, goods: bool
    ) -> None:
        margin = -(-price * margin_bps // 10_000)
        if margin >= price:
            return
        deal_id = apply(self.chain, price, margin, quantity, days, rate_bps=3_600)
        self.deals.append(deal_id)
        ok(self.chain.run("core", f"{PP}.confirm", deal_id=deal_id))
        if approve and self.chain.run("bank", f"{PP}.approve", deal_id=deal_id).ok and goods:
            lodge(self.chain, deal_id, name=f"insp-{len(self.deals)}")

    @rule(index=st.integers(0, 99), share=st.integers(1, 12_000))
    def repay(self, index: int, share: int) -> None:
        found = self.pick(index, "GOODS_HELD")
        if found is None:
            return
        outstanding = found["financed"] - found["repaid"]
        principal = max(1, outstanding * share // 10_000)  # above 10,000: too much
        paid = self.chain.run("dealer", f"{PP}.repay", deal_id=found["id"], principal=principal)
        if paid.ok:
            target = found["quantity"] * (found["repaid"] + principal) // found["financed"]
            assert paid.result["released"] == target - found["released"]

    @rule(index=st.integers(0, 99))
    def lodge_late(self, index: int) -> None:
        found = self.pick(index, "FINANCED")
        if found is not None:
            lodge(self.chain, found["id"], name=f"late-{found['id']}")

    @rule(share=st.integers(1, 10_000), to_core=st.booleans(), everything=st.booleans())
    def core_cash_moves(self, share: int, to_core: bool, everything: bool) -> None:
        """Some or all of one side's cash moves between the core and a supplier."""
        source, target = ("supplier", "core") if to_core else ("core", "supplier")
        amount = self.chain.balance(source) * (10_000 if everything else share) // 10_000
        if amount:
            ok(self.chain.run(source, "cash.transfer", to=self.chain.id(target), amount=amount))

    @rule(index=st.integers(0, 99))
    def core_buys_back(self, index: int) -> None:
        found = self.pick(index, "BUYBACK_DUE")
        if found is not None:
            self.chain.run("core", f"{PP}.buy_back", deal_id=found["id"])

    @rule(days=st.integers(1, 20), core_spends=st.booleans())
    def time_passes(self, days: int, core_spends: bool) -> None:
        if core_spends:  # the core spends its cash first: buy-backs falling due now fall short
            self.core_cash_moves(10_000, False, True)
        self.chain.advance(days * DAY_MS)

    @invariant()
    def cash_is_conserved(self) -> None:
        balances = [self.chain.balance(n) for n in ("dealer", "bank", "core", "supplier")]
        assert min(balances) >= 0 and sum(balances) == self.supply

    @invariant()
    def goods_follow_repayment_and_are_conserved(self) -> None:
        for deal_id in self.deals:
            found = deal(self.chain, deal_id)
            assert found["released"] * found["financed"] <= found["repaid"] * found["quantity"]
            if found["state"] in ("GOODS_HELD", "BUYBACK_DUE") and found["receipt_id"]:
                held = receipt(self.chain, found["receipt_id"])
                assert held["state"] == "PLEDGED"
                assert held["quantity"] == found["quantity"] - found["released"]
                tree = self.chain.query(f"{WR}.lineage", root_id=held["root"])
                assert tree["live"] == tree["issued"] == found["quantity"]
                to_dealer = sum(r["quantity"] for r in tree["receipts"]
                                if r["state"] == "ACTIVE" and r["owner"] == self.chain.id("dealer"))
                assert to_dealer == found["released"]
            if found["state"] == "REPAID":
                assert found["released"] == found["quantity"]


DealMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_deal_histories_never_release_beyond_repayment = DealMachine.TestCase
