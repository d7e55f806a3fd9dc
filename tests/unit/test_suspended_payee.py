"""Suspension stops a member's own txs, not what it owes or is owed (DOMAIN.md, issue 13 part 6).

For every contract step that pays someone, the member being paid (or whose debt is being paid
back) is suspended first, then the step runs through the real executor on an in-memory chain:
the payment must go through and cash must be conserved. An account that is not a member is
still refused, a suspended sender still fails with MEMBER_SUSPENDED, and starting a new deal
with a suspended counterparty is still refused with the code docs/contracts.md lists.
"""

from __future__ import annotations

from tests.harness import DAY_MS, LocalChain
from tests.unit import test_voucher_scenario as vs
from tests.unit.trade_chain import doc, fails, interest, make_chain, ok

OF = "order_financing"
PP = "prepayment"
WR = "warehouse_receipt"


def suspend(chain: LocalChain, *names: str) -> None:
    for name in names:
        ok(chain.govern("suspend_member", account=chain.id(name)))


def total_cash(chain: LocalChain, names: list[str]) -> int:
    return sum(chain.balance(name) for name in names)


# ---------------------------------------------------------------------------------------------
# cash


def test_deposit_and_transfer_to_a_suspended_member_go_through() -> None:
    chain = vs.make_chain()
    suspend(chain, "t1")
    deposited = ok(chain.run("bank", "cash.deposit", account=chain.id("t1"), amount=500))
    assert deposited.event("Deposited")["account"] == chain.id("t1")
    ok(chain.run("core", "cash.transfer", to=chain.id("t1"), amount=250))
    assert chain.balance("t1") == 750
    supply = chain.query("cash.supply")
    assert supply["outstanding"] == supply["deposits"] - supply["withdrawals"]
    # Being paid does not lift the suspension: its own txs still fail.
    fails(chain, "t1", "cash.transfer", "MEMBER_SUSPENDED", to=chain.id("t2"), amount=1)
    # A financier may still debit it (money leaving the ledger is the financier's act).
    ok(chain.run("bank", "cash.withdraw", account=chain.id("t1"), amount=50))
    assert chain.balance("t1") == 700


def test_deposit_and_transfer_to_a_non_member_are_still_unknown_member() -> None:
    chain = vs.make_chain()
    stranger = chain.add_account("stranger")
    fails(chain, "bank", "cash.deposit", "UNKNOWN_MEMBER", account=stranger, amount=1)
    fails(chain, "core", "cash.transfer", "UNKNOWN_MEMBER", to=stranger, amount=1)


# ---------------------------------------------------------------------------------------------
# voucher


def test_suspended_core_is_topped_up_and_its_overdue_vouchers_are_paid() -> None:
    """The issue's scenario: the core is suspended with vouchers OVERDUE; a deposit to it
    (and a transfer to it) lets the block-end hook pay them, oldest first, whole."""
    chain = vs.make_chain(core_cash=0)
    vs.grant(chain)
    first = vs.issue(chain, 600, days=1, docs=("od-1",))
    second = vs.issue(chain, 400, days=2, docs=("od-2",), to="t2")
    suspend(chain, "core")
    chain.advance(2 * DAY_MS)
    assert vs.state_of(chain, first)["state"] == "OVERDUE"
    assert vs.state_of(chain, second)["state"] == "OVERDUE"
    assert chain.query("voucher.position", core=chain.id("core"))["overdue"] == 1_000

    deposit = ok(chain.run("bank", "cash.deposit", account=chain.id("core"), amount=700))
    assert ("VoucherRedeemed", first) in [
        (name, attrs.get("voucher")) for name, attrs in chain.end_block_events
    ]
    assert deposit.event("Deposited")["amount"] == 700
    assert vs.state_of(chain, first)["state"] == "REDEEMED"
    assert vs.state_of(chain, second)["state"] == "OVERDUE"  # 100 left does not cover 400
    assert (chain.balance("core"), chain.balance("t1")) == (100, 600)

    ok(chain.run("factor", "cash.transfer", to=chain.id("core"), amount=300))
    assert vs.state_of(chain, second)["state"] == "REDEEMED"
    assert (chain.balance("core"), chain.balance("t2")) == (0, 400)
    position = chain.query("voucher.position", core=chain.id("core"))
    assert (position["outstanding"], position["overdue"]) == (0, 0)
    # The core is still suspended: it cannot issue or pay anyone itself.
    fails(chain, "core", "cash.transfer", "MEMBER_SUSPENDED", to=chain.id("t1"), amount=1)


def test_discount_approval_pays_a_holder_suspended_after_applying() -> None:
    chain = vs.make_chain()
    vs.grant(chain)
    root = vs.issue(chain, 1_000_000)
    ok(chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                 rate_bps=600))
    suspend(chain, "t1")
    approved = ok(chain.run("bank", "voucher.approve_discount", voucher=root))
    payout = approved.result["payout"]
    assert payout > 0 and chain.balance("t1") == payout
    assert vs.state_of(chain, root)["holder"] == chain.id("bank")


def test_new_voucher_dealings_with_a_suspended_member_are_refused() -> None:
    """Starting something new needs an active counterparty: INVALID_COUNTERPARTY."""
    chain = vs.make_chain()
    vs.grant(chain)
    root = vs.issue(chain, 1_000)
    suspend(chain, "t2", "factor", "core2")
    fails(chain, "t1", "voucher.transfer", "INVALID_COUNTERPARTY", voucher=root,
          to=chain.id("t2"))
    fails(chain, "t1", "voucher.apply_discount", "INVALID_COUNTERPARTY", voucher=root,
          financier=chain.id("factor"), rate_bps=100)
    fails(chain, "bank", "voucher.grant_credit", "INVALID_COUNTERPARTY", core=chain.id("core2"),
          limit=1, expiry_ms=chain.time_ms + DAY_MS)
    fails(chain, "core", "voucher.issue", "INVALID_COUNTERPARTY", supplier=chain.id("t2"),
          amount=1, maturity_ms=chain.time_ms + DAY_MS, documents=[vs.doc("x")])


# ---------------------------------------------------------------------------------------------
# order financing


def _order(chain: LocalChain) -> str:
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=7_000))
    start = chain.time_ms + 1_000
    order_id = str(ok(chain.run(
        "supplier", f"{OF}.register_order", buyer=chain.id("core"), amount=1_000_000,
        delivery_due_ms=start + 30 * DAY_MS, payment_due_ms=start + 90 * DAY_MS,
        order_hash=doc("po-suspended"),
    )).result["order_id"])
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=700_000, rate_bps=720))
    return order_id


def test_loan_disbursement_and_order_payment_reach_suspended_supplier_and_financier() -> None:
    chain = make_chain(core=2_000_000, bank=5_000_000)
    names = ["core", "bank", "supplier"]
    start_total = total_cash(chain, names)
    order_id = _order(chain)
    suspend(chain, "supplier")
    ok(chain.run("bank", f"{OF}.approve_loan", order_id=order_id))  # pays the suspended supplier
    disbursed_ms = chain.time_ms
    assert chain.balance("supplier") == 700_000
    ok(chain.govern("reinstate_member", account=chain.id("supplier")))
    ok(chain.run("supplier", f"{OF}.record_delivery", order_id=order_id,
                 delivery_hash=doc("delivery")))
    ok(chain.run("core", f"{OF}.accept_delivery", order_id=order_id))
    suspend(chain, "supplier", "bank")
    chain.advance(disbursed_ms + 60 * DAY_MS - 1_000 - chain.time_ms)
    paid = ok(chain.run("core", f"{OF}.pay_order", order_id=order_id))
    owed = 700_000 + interest(700_000, 720, 60)
    assert paid.result == {"to_financier": owed, "to_supplier": 1_000_000 - owed}
    assert chain.balance("bank") == 5_000_000 - 700_000 + owed
    assert chain.balance("supplier") == 700_000 + 1_000_000 - owed
    assert total_cash(chain, names) == start_total


def test_supplier_repays_a_suspended_financier() -> None:
    chain = make_chain(core=2_000_000, bank=5_000_000, supplier=100_000)
    order_id = _order(chain)
    ok(chain.run("bank", f"{OF}.approve_loan", order_id=order_id))
    suspend(chain, "bank")
    repaid = ok(chain.run("supplier", f"{OF}.repay_loan", order_id=order_id))
    assert repaid.result["paid"] == 700_000 + interest(700_000, 720, 1)
    assert chain.balance("bank") == 5_000_000 - 700_000 + repaid.result["paid"]


def test_new_order_dealings_with_a_suspended_member_are_refused() -> None:
    chain = make_chain(core=2_000_000, bank=5_000_000)
    ok(chain.run("bank2", f"{OF}.set_ratio", ratio_bps=7_000))
    order_id = _order(chain)
    ok(chain.run("bank", f"{OF}.reject_loan", order_id=order_id))
    suspend(chain, "bank2", "core")
    fails(chain, "supplier", f"{OF}.apply_loan", "NOT_AUTHORIZED", order_id=order_id,
          financier=chain.id("bank2"), principal=1, rate_bps=0)
    start = chain.time_ms + 1_000
    fails(chain, "supplier", f"{OF}.register_order", "NOT_AUTHORIZED", buyer=chain.id("core"),
          amount=1, delivery_due_ms=start + DAY_MS, payment_due_ms=start + DAY_MS,
          order_hash=doc("po-2"))


# ---------------------------------------------------------------------------------------------
# prepayment


def _financed_deal(chain: LocalChain, days: int = 90) -> str:
    deal_id = str(ok(chain.run(
        "dealer", f"{PP}.apply", core=chain.id("core"), financier=chain.id("bank"),
        warehouse=chain.id("wh"), commodity="coil", quantity=1_000, unit="tonne",
        price=10_000_000, margin=3_000_000, rate_bps=720,
        due_ms=chain.time_ms + 3_000 + days * DAY_MS,
    )).result["deal_id"])
    ok(chain.run("core", f"{PP}.confirm", deal_id=deal_id))
    return deal_id


def test_prepayment_pays_and_serves_suspended_parties_through_to_the_buy_back() -> None:
    """Approval pays a suspended core from a suspended dealer; goods are lodged for a
    suspended financier; the dealer's repayment reaches it; the hook's buy-back runs with
    core, dealer and financier all suspended."""
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=5_000_000)
    names = ["dealer", "bank", "core"]
    start_total = total_cash(chain, names)
    deal_id = _financed_deal(chain)
    suspend(chain, "dealer", "core")
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))
    approved_ms = chain.time_ms
    assert chain.balance("core") == 15_000_000
    suspend(chain, "bank")
    lodged = ok(chain.run("wh", f"{PP}.lodge_goods", deal_id=deal_id, grade="Q235B",
                          location="yard 7", inspection_hash=doc("insp-suspended")))
    held = lodged.result["receipt_id"]
    assert chain.query(f"{WR}.receipt", receipt_id=held)["state"] == "PLEDGED"

    ok(chain.govern("reinstate_member", account=chain.id("dealer")))
    chain.advance(approved_ms + 30 * DAY_MS - 1_000 - chain.time_ms)
    repaid = ok(chain.run("dealer", f"{PP}.repay", deal_id=deal_id, principal=2_800_000))
    assert repaid.result == {"interest": interest(2_800_000, 720, 30), "released": 400}
    suspend(chain, "dealer")

    chain.advance(approved_ms + 90 * DAY_MS - chain.time_ms)
    assert "BuybackSettled" in [name for name, _ in chain.end_block_events]
    found = chain.query(f"{PP}.deal", deal_id=deal_id)
    assert (found["state"], found["returned"]) == ("BOUGHT_BACK", 600)
    bought_back = 4_200_000 + interest(4_200_000, 720, 90)
    assert chain.balance("bank") == (
        3_000_000 + 2_800_000 + interest(2_800_000, 720, 30) + bought_back
    )
    assert total_cash(chain, names) == start_total


def test_new_prepayment_deal_with_a_suspended_party_is_refused() -> None:
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=5_000_000)
    suspend(chain, "wh")
    fails(chain, "dealer", f"{PP}.apply", "NOT_AUTHORIZED", core=chain.id("core"),
          financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="coil",
          quantity=1, unit="t", price=10, margin=5, rate_bps=0,
          due_ms=chain.time_ms + DAY_MS)


def test_lodging_goods_still_needs_parties_with_their_roles() -> None:
    """Suspension is ignored at lodging, roles are not: a dealer that lost its holder roles
    cannot be given the pledged receipt (NOT_AUTHORIZED)."""
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=5_000_000)
    deal_id = _financed_deal(chain)
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))
    ok(chain.govern("set_roles", account=chain.id("dealer"), roles=["auditor"]))
    fails(chain, "wh", f"{PP}.lodge_goods", "NOT_AUTHORIZED", deal_id=deal_id, grade="A",
          location="yard", inspection_hash=doc("insp-roles"))


# ---------------------------------------------------------------------------------------------
# warehouse receipts


def _receipt(chain: LocalChain, owner: str, name: str) -> str:
    return str(ok(chain.run(
        "wh", f"{WR}.issue", owner=chain.id(owner), commodity="copper", quantity=100,
        unit="tonne", grade="A", location="bay 4", inspection_hash=doc(name),
    )).result["receipt_id"])


def test_exchange_sale_pays_a_seller_suspended_after_listing() -> None:
    chain = make_chain(dealer=1_000_000)
    receipt_id = _receipt(chain, "supplier", "insp-sale")
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=receipt_id,
                 exchange=chain.id("exch"), price=900_000))
    suspend(chain, "supplier", "exch")
    ok(chain.run("dealer", f"{WR}.buy", receipt_id=receipt_id, price=900_000))
    assert chain.balance("supplier") == 900_000
    assert chain.query(f"{WR}.receipt", receipt_id=receipt_id)["owner"] == chain.id("dealer")


def test_pledge_loan_is_paid_out_to_and_repaid_to_suspended_parties() -> None:
    chain = make_chain(bank=1_000_000, dealer=100_000)
    receipt_id = _receipt(chain, "dealer", "insp-pledge")
    due_ms = chain.time_ms + 2_000 + 30 * DAY_MS
    ok(chain.run("dealer", f"{WR}.pledge", receipt_id=receipt_id, financier=chain.id("bank"),
                 principal=500_000, rate_bps=720, due_ms=due_ms))
    suspend(chain, "dealer")
    ok(chain.run("bank", f"{WR}.approve_pledge", receipt_id=receipt_id))  # pays the dealer
    approved_ms = chain.time_ms
    assert chain.balance("dealer") == 600_000
    ok(chain.govern("reinstate_member", account=chain.id("dealer")))
    suspend(chain, "bank")
    chain.advance(approved_ms + 10 * DAY_MS - 1_000 - chain.time_ms)
    repaid = ok(chain.run("dealer", f"{WR}.repay_pledge", receipt_id=receipt_id))
    assert repaid.result["paid"] == 500_000 + interest(500_000, 720, 10)
    assert chain.balance("bank") == 500_000 + repaid.result["paid"]
    assert chain.query(f"{WR}.receipt", receipt_id=receipt_id)["state"] == "ACTIVE"


def test_due_pledge_is_collected_from_a_suspended_owner_for_a_suspended_financier() -> None:
    chain = make_chain(bank=1_000_000, dealer=100_000)
    receipt_id = _receipt(chain, "dealer", "insp-due")
    due_ms = chain.time_ms + 2_000 + 30 * DAY_MS
    ok(chain.run("dealer", f"{WR}.pledge", receipt_id=receipt_id, financier=chain.id("bank"),
                 principal=50_000, rate_bps=720, due_ms=due_ms))
    ok(chain.run("bank", f"{WR}.approve_pledge", receipt_id=receipt_id))
    suspend(chain, "dealer", "bank")
    chain.advance(due_ms - chain.time_ms)
    assert "PledgeRepaid" in [name for name, _ in chain.end_block_events]
    assert chain.balance("bank") == 1_000_000 + interest(50_000, 720, 30)


def test_redemption_completes_for_an_owner_suspended_after_asking() -> None:
    chain = make_chain()
    receipt_id = _receipt(chain, "supplier", "insp-redeem")
    ok(chain.run("supplier", f"{WR}.request_redemption", receipt_id=receipt_id))
    suspend(chain, "supplier")
    ok(chain.run("wh", f"{WR}.confirm_delivery", receipt_id=receipt_id))
    assert chain.query(f"{WR}.receipt", receipt_id=receipt_id)["state"] == "REDEEMED"


def test_new_receipt_dealings_with_a_suspended_member_are_refused() -> None:
    """Issuing to, transferring to, listing on or pledging to a suspended member: NOT_AUTHORIZED."""
    chain = make_chain()
    receipt_id = _receipt(chain, "supplier", "insp-new")
    suspend(chain, "dealer", "exch", "bank")
    fails(chain, "wh", f"{WR}.issue", "NOT_AUTHORIZED", owner=chain.id("dealer"),
          commodity="copper", quantity=1, unit="t", grade="A", location="bay",
          inspection_hash=doc("insp-other"))
    fails(chain, "supplier", f"{WR}.transfer", "NOT_AUTHORIZED", receipt_id=receipt_id,
          to=chain.id("dealer"))
    fails(chain, "supplier", f"{WR}.list_for_sale", "NOT_AUTHORIZED", receipt_id=receipt_id,
          exchange=chain.id("exch"), price=1)
    fails(chain, "supplier", f"{WR}.pledge", "NOT_AUTHORIZED", receipt_id=receipt_id,
          financier=chain.id("bank"), principal=1, rate_bps=0, due_ms=chain.time_ms + DAY_MS)


def test_late_buy_back_by_the_core_pays_a_suspended_financier() -> None:
    """The core could not pay at the due date; it pays later while financier and dealer are
    suspended, and the remaining goods come back to it."""
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=1)
    deal_id = _financed_deal(chain, days=30)
    ok(chain.run("bank", f"{PP}.approve", deal_id=deal_id))
    approved_ms = chain.time_ms
    ok(chain.run("wh", f"{PP}.lodge_goods", deal_id=deal_id, grade="A", location="yard",
                 inspection_hash=doc("insp-late")))
    ok(chain.run("core", "cash.transfer", to=chain.id("dealer"), amount=10_000_001))
    chain.advance(approved_ms + 30 * DAY_MS - chain.time_ms)
    assert chain.query(f"{PP}.deal", deal_id=deal_id)["state"] == "BUYBACK_DUE"
    suspend(chain, "bank", "dealer")
    ok(chain.run("bank2", "cash.deposit", account=chain.id("core"), amount=8_000_000))
    paid = ok(chain.run("core", f"{PP}.buy_back", deal_id=deal_id))
    assert paid.result["paid"] == 7_000_000 + interest(7_000_000, 720, 30)
    assert chain.balance("bank") == 3_000_000 + paid.result["paid"]
    assert chain.query(f"{PP}.deal", deal_id=deal_id)["returned"] == 1_000


def test_new_prepayment_deal_with_a_suspended_core_or_financier_is_refused() -> None:
    chain = make_chain(dealer=8_000_000, bank=10_000_000, core=5_000_000)
    for name in ("core", "bank"):
        suspend(chain, name)
        fails(chain, "dealer", f"{PP}.apply", "NOT_AUTHORIZED", core=chain.id("core"),
              financier=chain.id("bank"), warehouse=chain.id("wh"), commodity="coil",
              quantity=1, unit="t", price=10, margin=5, rate_bps=0,
              due_ms=chain.time_ms + DAY_MS)
        ok(chain.govern("reinstate_member", account=chain.id(name)))


def test_financier_forecloses_on_a_suspended_borrower() -> None:
    chain = make_chain(bank=1_000_000)
    receipt_id = _receipt(chain, "dealer", "insp-foreclose")
    due_ms = chain.time_ms + 2_000 + 10 * DAY_MS
    ok(chain.run("dealer", f"{WR}.pledge", receipt_id=receipt_id, financier=chain.id("bank"),
                 principal=500_000, rate_bps=720, due_ms=due_ms))
    ok(chain.run("bank", f"{WR}.approve_pledge", receipt_id=receipt_id))
    ok(chain.run("dealer", "cash.transfer", to=chain.id("core"), amount=500_000))
    suspend(chain, "dealer")
    chain.advance(due_ms - chain.time_ms)
    assert chain.query(f"{WR}.receipt", receipt_id=receipt_id)["state"] == "DEFAULTED"
    ok(chain.run("bank", f"{WR}.foreclose", receipt_id=receipt_id))
    found = chain.query(f"{WR}.receipt", receipt_id=receipt_id)
    assert (found["owner"], found["state"]) == (chain.id("bank"), "ACTIVE")
