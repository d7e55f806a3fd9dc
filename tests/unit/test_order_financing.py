"""Order financing through the real executor on an in-memory chain.

The worked example of docs/contracts.md (a 70 % loan on a confirmed order, repaid with
interest out of the buyer's payment before the supplier is paid) is checked balance by balance;
then the overdue flag at the payment due date, late payment and the supplier repaying itself,
one test per error code, and a hypothesis state machine of random order histories that checks
after every step that cash is conserved, no loan exceeds its financier's ratio, the due index
holds exactly the disbursed loans, and every payment pays the financier first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from node.state import Overlay
from tests.harness import DAY_MS, LocalChain
from tests.unit.trade_chain import doc, fails, interest, make_chain, ok

OF = "order_financing"


def register(
    chain: LocalChain, amount: int, pay_days: int = 90, name: str = "po-1",
    supplier: str = "supplier",
) -> str:
    start = chain.time_ms + 1_000
    receipt = ok(chain.run(
        supplier, f"{OF}.register_order", buyer=chain.id("core"), amount=amount,
        delivery_due_ms=start + min(30, pay_days) * DAY_MS,
        payment_due_ms=start + pay_days * DAY_MS, order_hash=doc(name),
    ))
    return str(receipt.result["order_id"])


def get(chain: LocalChain, order_id: str) -> dict[str, Any]:
    found: dict[str, Any] = chain.query(f"{OF}.order", order_id=order_id)
    return found


def financed_order(chain: LocalChain, amount: int, principal: int, pay_days: int = 90) -> str:
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=7_000))
    order_id = register(chain, amount, pay_days)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=principal, rate_bps=720))
    ok(chain.run("bank", f"{OF}.approve_loan", order_id=order_id))
    return order_id


def deliver(chain: LocalChain, order_id: str) -> None:
    ok(chain.run("supplier", f"{OF}.record_delivery", order_id=order_id,
                 delivery_hash=doc("delivery-note")))
    ok(chain.run("core", f"{OF}.accept_delivery", order_id=order_id))


def test_worked_example_loan_repaid_from_the_buyers_payment_before_the_supplier() -> None:
    """70 % of 1,000,000 lent at 720 bps; paid after 60 days: 708,400 to bank, rest to supplier."""
    chain = make_chain(core=2_000_000, bank=5_000_000)
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=7_000))
    order_id = register(chain, 1_000_000)
    assert get(chain, order_id)["state"] == "REGISTERED"
    fails(chain, "supplier", f"{OF}.apply_loan", "ORDER_NOT_CONFIRMED", order_id=order_id,
          financier=chain.id("bank"), principal=700_000, rate_bps=720)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    fails(chain, "supplier", f"{OF}.apply_loan", "RATIO_EXCEEDED", order_id=order_id,
          financier=chain.id("bank"), principal=700_001, rate_bps=720)
    applied = ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id,
                           financier=chain.id("bank"), principal=700_000, rate_bps=720))
    assert applied.event("LoanApplied")["limit"] == 700_000
    ok(chain.run("bank", f"{OF}.approve_loan", order_id=order_id))
    disbursed_ms = chain.time_ms
    assert chain.balance("supplier") == 700_000 and chain.balance("bank") == 4_300_000
    assert get(chain, order_id)["loan"]["state"] == "ACTIVE"

    deliver(chain, order_id)
    chain.advance(disbursed_ms + 60 * DAY_MS - 1_000 - chain.time_ms)
    paid = ok(chain.run("core", f"{OF}.pay_order", order_id=order_id))
    assert chain.time_ms == disbursed_ms + 60 * DAY_MS
    assert interest(700_000, 720, 60) == 8_400
    assert paid.result == {"to_financier": 708_400, "to_supplier": 291_600}
    repaid = paid.event("LoanRepaid")
    assert (repaid["principal"], repaid["interest"], repaid["shortfall"]) == (700_000, 8_400, 0)
    assert chain.balance("bank") == 5_008_400
    assert chain.balance("supplier") == 991_600
    assert chain.balance("core") == 1_000_000
    found = get(chain, order_id)
    assert (found["state"], found["loan"]["state"]) == ("PAID", "REPAID")
    assert [o["id"] for o in chain.query(f"{OF}.orders_of", account=chain.id("bank"))] == [
        order_id]
    assert not [k for k in chain.state.items if k.startswith(f"{OF}/due/")]


def test_unpaid_loan_is_flagged_overdue_at_the_payment_due_date_then_paid_late() -> None:
    """The hook flags the loan at the due date; a late payment pays interest to its day."""
    chain = make_chain(core=2_000_000, bank=5_000_000)
    order_id = financed_order(chain, 1_000_000, 500_000, pay_days=10)
    disbursed_ms = chain.time_ms
    deliver(chain, order_id)
    due_ms = get(chain, order_id)["payment_due_ms"]
    events = chain.advance(due_ms - 1 - chain.time_ms)
    assert not [n for n, _ in events if n == "LoanOverdue"]
    events = chain.advance(1)
    flagged = [attrs for name, attrs in events if name == "LoanOverdue"]
    assert flagged and flagged[0]["order_id"] == order_id
    assert get(chain, order_id)["loan"]["state"] == "OVERDUE"
    chain.advance(disbursed_ms + 20 * DAY_MS - 1_000 - chain.time_ms)
    paid = ok(chain.run("core", f"{OF}.pay_order", order_id=order_id))
    assert paid.result["to_financier"] == 500_000 + interest(500_000, 720, 20)
    assert chain.balance("bank") == 5_000_000 + interest(500_000, 720, 20)


def test_supplier_may_repay_the_loan_itself_and_then_receives_the_whole_payment() -> None:
    chain = make_chain(core=2_000_000, bank=5_000_000, supplier=10_000)
    order_id = financed_order(chain, 1_000_000, 600_000)
    repaid = ok(chain.run("supplier", f"{OF}.repay_loan", order_id=order_id))
    assert repaid.result == {"paid": 600_000 + interest(600_000, 720, 1)}
    deliver(chain, order_id)
    paid = ok(chain.run("core", f"{OF}.pay_order", order_id=order_id))
    assert paid.result == {"to_financier": 0, "to_supplier": 1_000_000}


def test_unfinanced_order_pays_the_supplier_and_lapses_a_pending_application() -> None:
    chain = make_chain(core=2_000_000)
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=5_000))
    order_id = register(chain, 80_000)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=40_000, rate_bps=100))
    deliver(chain, order_id)
    paid = ok(chain.run("core", f"{OF}.pay_order", order_id=order_id))
    assert paid.event("LoanLapsed")["financier"] == chain.id("bank")
    assert chain.balance("supplier") == 80_000
    assert get(chain, order_id)["loan"]["state"] == "LAPSED"


class CountingState:
    """A read-only view over the chain's state that counts the keys each scan yields."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.yielded: dict[str, int] = {}

    def get(self, key: str) -> bytes | None:
        found: bytes | None = self.base.get(key)
        return found

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for item in self.base.iter_prefix(prefix):
            self.yielded[prefix] = self.yielded.get(prefix, 0) + 1
            yield item


def test_overdue_hook_reads_only_what_falls_due_not_every_loan() -> None:
    """Twenty loans due later and two due now: the hook reads the two and one key past them."""
    chain = make_chain(core=10_000_000, bank=10_000_000)
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=7_000))
    for index in range(22):
        order_id = register(chain, 1_000, pay_days=2 if index < 2 else 50, name=f"po-{index}")
        ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
        ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id,
                     financier=chain.id("bank"), principal=700, rate_bps=0))
        ok(chain.run("bank", f"{OF}.approve_loan", order_id=order_id))
    counting = CountingState(chain.state)
    events = chain.runtime.end_block(Overlay(counting), tx_id="00" * 32, height=chain.height + 1,
                                    time_ms=chain.time_ms + 3 * DAY_MS)
    assert [event.name for event in events].count("LoanOverdue") == 2
    assert counting.yielded[f"{OF}/due/"] == 3


# ---------------------------------------------------------------------------------------------
# One test per error code.


def test_invalid_args_for_bad_amounts_dates_and_ratios() -> None:
    chain = make_chain()
    start = chain.time_ms + 1_000
    for amount in (0, -1, 1.5, "9", 10**30):
        fails(chain, "supplier", f"{OF}.register_order", "INVALID_ARGS", buyer=chain.id("core"),
              amount=amount, delivery_due_ms=start + DAY_MS, payment_due_ms=start + 2 * DAY_MS,
              order_hash=doc("x"))
    fails(chain, "supplier", f"{OF}.register_order", "INVALID_ARGS", buyer=chain.id("core"),
          amount=5, delivery_due_ms=start + 3 * DAY_MS, payment_due_ms=start + 2 * DAY_MS,
          order_hash=doc("x"))
    for ratio in (0, 10_001, 0.7):
        fails(chain, "bank", f"{OF}.set_ratio", "INVALID_ARGS", ratio_bps=ratio)


def test_not_authorized_for_wrong_role_or_party() -> None:
    """Suppliers register, the buyer confirms, only the named financier decides."""
    chain = make_chain(bank=1_000)
    start = chain.time_ms + 1_000
    fails(chain, "dealer", f"{OF}.register_order", "NOT_AUTHORIZED", buyer=chain.id("core"),
          amount=5, delivery_due_ms=start + DAY_MS, payment_due_ms=start + 2 * DAY_MS,
          order_hash=doc("x"))
    fails(chain, "supplier", f"{OF}.register_order", "NOT_AUTHORIZED", buyer=chain.id("dealer"),
          amount=5, delivery_due_ms=start + DAY_MS, payment_due_ms=start + 2 * DAY_MS,
          order_hash=doc("x"))
    fails(chain, "supplier", f"{OF}.set_ratio", "NOT_AUTHORIZED", ratio_bps=5_000)
    order_id = register(chain, 1_000)
    fails(chain, "supplier2", f"{OF}.confirm_order", "NOT_AUTHORIZED", order_id=order_id)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=5_000))
    fails(chain, "supplier2", f"{OF}.apply_loan", "NOT_AUTHORIZED", order_id=order_id,
          financier=chain.id("bank"), principal=5, rate_bps=0)
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=5, rate_bps=0))
    fails(chain, "bank2", f"{OF}.approve_loan", "NOT_AUTHORIZED", order_id=order_id)
    fails(chain, "core", f"{OF}.reject_loan", "NOT_AUTHORIZED", order_id=order_id)


def test_unknown_order() -> None:
    chain = make_chain()
    fails(chain, "core", f"{OF}.confirm_order", "UNKNOWN_ORDER", order_id=doc("none"))


def test_document_used_once_only() -> None:
    chain = make_chain()
    register(chain, 1_000, name="po-9")
    start = chain.time_ms + 1_000
    fails(chain, "supplier2", f"{OF}.register_order", "DOCUMENT_USED", buyer=chain.id("core"),
          amount=5, delivery_due_ms=start + DAY_MS, payment_due_ms=start + 2 * DAY_MS,
          order_hash=doc("po-9"))


def test_order_not_confirmed_and_declined_orders_get_no_loan() -> None:
    chain = make_chain()
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=5_000))
    order_id = register(chain, 1_000)
    fails(chain, "supplier", f"{OF}.apply_loan", "ORDER_NOT_CONFIRMED", order_id=order_id,
          financier=chain.id("bank"), principal=5, rate_bps=0)
    ok(chain.run("core", f"{OF}.decline_order", order_id=order_id))
    fails(chain, "supplier", f"{OF}.apply_loan", "WRONG_STATE", order_id=order_id,
          financier=chain.id("bank"), principal=5, rate_bps=0)


def test_ratio_exceeded_by_one_unit() -> None:
    chain = make_chain()
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=3_333))
    order_id = register(chain, 1_000)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    fails(chain, "supplier", f"{OF}.apply_loan", "RATIO_EXCEEDED", order_id=order_id,
          financier=chain.id("bank"), principal=334, rate_bps=0)
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=333, rate_bps=0))


def test_no_terms_until_the_financier_sets_a_ratio() -> None:
    chain = make_chain()
    order_id = register(chain, 1_000)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    fails(chain, "supplier", f"{OF}.apply_loan", "NO_TERMS", order_id=order_id,
          financier=chain.id("bank2"), principal=5, rate_bps=0)


def test_loan_exists_refuses_a_second_loan_on_one_order() -> None:
    """No double financing: one open or repaid loan per order; a rejected one may be retried."""
    chain = make_chain(bank=10_000, bank2=10_000)
    order_id = financed_order(chain, 1_000, 700)
    ok(chain.run("bank2", f"{OF}.set_ratio", ratio_bps=7_000))
    fails(chain, "supplier", f"{OF}.apply_loan", "LOAN_EXISTS", order_id=order_id,
          financier=chain.id("bank2"), principal=10, rate_bps=0)


def test_wrong_state_for_steps_out_of_order() -> None:
    chain = make_chain(core=10_000)
    order_id = register(chain, 1_000)
    fails(chain, "supplier", f"{OF}.record_delivery", "WRONG_STATE", order_id=order_id,
          delivery_hash=doc("d"))
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    fails(chain, "core", f"{OF}.confirm_order", "WRONG_STATE", order_id=order_id)
    fails(chain, "core", f"{OF}.pay_order", "WRONG_STATE", order_id=order_id)
    fails(chain, "bank", f"{OF}.approve_loan", "WRONG_STATE", order_id=order_id)
    fails(chain, "supplier", f"{OF}.repay_loan", "WRONG_STATE", order_id=order_id)


def test_due_passed_for_past_dates_and_late_applications() -> None:
    chain = make_chain()
    start = chain.time_ms + 1_000
    fails(chain, "supplier", f"{OF}.register_order", "DUE_PASSED", buyer=chain.id("core"),
          amount=5, delivery_due_ms=start, payment_due_ms=start, order_hash=doc("x"))
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=5_000))
    order_id = register(chain, 1_000, pay_days=1)
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    chain.advance(DAY_MS)
    fails(chain, "supplier", f"{OF}.apply_loan", "DUE_PASSED", order_id=order_id,
          financier=chain.id("bank"), principal=5, rate_bps=0)


def test_insufficient_funds_for_disbursement_and_payment() -> None:
    chain = make_chain(bank=699, core=999)
    order_id = register(chain, 1_000)
    ok(chain.run("bank", f"{OF}.set_ratio", ratio_bps=7_000))
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=700, rate_bps=0))
    fails(chain, "bank", f"{OF}.approve_loan", "INSUFFICIENT_FUNDS", order_id=order_id)
    deliver(chain, order_id)
    fails(chain, "core", f"{OF}.pay_order", "INSUFFICIENT_FUNDS", order_id=order_id)


# ---------------------------------------------------------------------------------------------
# Random histories.


class OrderMachine(RuleBasedStateMachine):
    """Random orders, confirmations, loans, deliveries, payments, repayments and time."""

    def __init__(self) -> None:
        super().__init__()
        self.chain = make_chain(core=3_000_000, bank=2_000_000, bank2=2_000_000, supplier=50_000)
        self.supply = self.chain.query("cash.supply")["outstanding"]
        self.orders: list[str] = []
        self.ratios = {"bank": 7_000, "bank2": 4_000}

    @initialize(amounts=st.lists(st.integers(1, 500_000), min_size=3, max_size=3))
    def set_ratios_and_open_orders(self, amounts: list[int]) -> None:
        for bank, ratio in self.ratios.items():
            ok(self.chain.run(bank, f"{OF}.set_ratio", ratio_bps=ratio))
        for days, amount in enumerate(amounts, start=1):
            self.register(amount, 10 * days, 1)

    def pick(self, index: int, *states: str) -> dict[str, Any] | None:
        found = [get(self.chain, o) for o in self.orders]
        found = [o for o in found if not states or o["state"] in states]
        return found[index % len(found)] if found else None

    @rule(amount=st.integers(1, 500_000), days=st.integers(1, 60), confirm=st.integers(0, 3))
    def register(self, amount: int, days: int, confirm: int) -> None:
        self.orders.append(register(self.chain, amount, days, name=f"po-{len(self.orders)}"))
        if confirm:  # three times in four
            ok(self.chain.run("core", f"{OF}.confirm_order", order_id=self.orders[-1]))

    @rule(index=st.integers(0, 99), bank=st.sampled_from(("bank", "bank2")),
          share=st.integers(1, 8_000), rate_bps=st.integers(0, 20_000), approve=st.integers(0, 3))
    def finance(self, index: int, bank: str, share: int, rate_bps: int, approve: int) -> None:
        found = self.pick(index, "REGISTERED", "CONFIRMED", "DELIVERED", "ACCEPTED")
        if found is None:
            return
        principal = max(1, found["amount"] * share // 10_000)
        applied = self.chain.run("supplier", f"{OF}.apply_loan", order_id=found["id"],
                                 financier=self.chain.id(bank), principal=principal,
                                 rate_bps=rate_bps)
        if principal > found["amount"] * self.ratios[bank] // 10_000:
            assert not applied.ok
        if applied.ok:
            self.chain.run(bank, f"{OF}.approve_loan" if approve else f"{OF}.reject_loan",
                           order_id=found["id"])

    @rule(index=st.integers(0, 99))
    def deliver_and_accept(self, index: int) -> None:
        found = self.pick(index, "CONFIRMED")
        if found is not None:
            deliver(self.chain, found["id"])

    @rule(index=st.integers(0, 99), accepted=st.integers(0, 3))
    def pay(self, index: int, accepted: int) -> None:
        found = self.pick(index, "ACCEPTED") if accepted else self.pick(index)
        if found is None:
            return
        banks = {self.chain.id(b): b for b in self.ratios}
        before = {b: self.chain.balance(b) for b in self.ratios}
        paid = self.chain.run("core", f"{OF}.pay_order", order_id=found["id"])
        assert paid.ok == (found["state"] == "ACCEPTED")
        loan = found["loan"]
        if paid.ok and loan is not None and loan["state"] in ("ACTIVE", "OVERDUE"):
            days = max(1, -(-(self.chain.time_ms - loan["disbursed_ms"]) // DAY_MS))
            owed = loan["principal"] + interest(loan["principal"], loan["rate_bps"], days)
            to_bank = min(owed, found["amount"])
            assert paid.result["to_financier"] == to_bank
            bank = banks[loan["financier"]]
            assert self.chain.balance(bank) == before[bank] + to_bank

    @rule(index=st.integers(0, 99))
    def supplier_repays(self, index: int) -> None:
        found = self.pick(index, "CONFIRMED", "DELIVERED", "ACCEPTED")
        if found is not None:
            self.chain.run("supplier", f"{OF}.repay_loan", order_id=found["id"])

    @rule(days=st.integers(1, 20))
    def time_passes(self, days: int) -> None:
        self.chain.advance(days * DAY_MS)

    @invariant()
    def cash_is_conserved(self) -> None:
        names = ("core", "bank", "bank2", "supplier")
        balances = [self.chain.balance(n) for n in names]
        assert min(balances) >= 0 and sum(balances) == self.supply

    @invariant()
    def loans_respect_ratio_and_due_index_holds_active_loans(self) -> None:
        due = {k.rsplit("/", 1)[1] for k in self.chain.state.items if k.startswith(f"{OF}/due/")}
        active = set()
        for order_id in self.orders:
            found = get(self.chain, order_id)
            loan = found["loan"]
            if loan is None:
                continue
            bank = "bank" if loan["financier"] == self.chain.id("bank") else "bank2"
            assert loan["principal"] * 10_000 <= found["amount"] * self.ratios[bank]
            if loan["state"] == "ACTIVE":
                active.add(order_id)
                assert self.chain.time_ms < found["payment_due_ms"]
            if loan["state"] == "OVERDUE":
                assert self.chain.time_ms >= found["payment_due_ms"]
        assert due == active


OrderMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_order_histories_conserve_cash_and_pay_the_financier_first = OrderMachine.TestCase
