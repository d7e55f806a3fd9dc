"""One test per voucher error code: the call fails with that stable code and changes nothing.

Each test builds the smallest situation that provokes the code through the executor and then
checks the state is byte-for-byte what it was before the failed tx.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import DAY_MS, LocalChain, Receipt
from tests.unit.test_voucher_scenario import doc, grant, issue, make_chain


def fails(chain: LocalChain, who: str, call: str, code: str, **args: Any) -> Receipt:
    """Run a tx that must fail with code and leave the state untouched."""
    before = dict(chain.state.items)
    receipt = chain.run(who, call, **args)
    assert not receipt.ok and receipt.code == code, (receipt.code, receipt.message)
    assert receipt.message
    assert chain.state.items == before
    return receipt


@pytest.fixture
def chain() -> LocalChain:
    chain = make_chain()
    grant(chain)
    return chain


def test_invalid_args_for_floats_negatives_zero_strings_and_absurd_values(
    chain: LocalChain,
) -> None:
    """Amounts, rates and times must be integers in range; ids must be lower-case hex."""
    supplier, docs = chain.id("t1"), [doc("d")]
    for amount in (0, -5, 1.5, "10", True, 10**30, None):
        fails(chain, "core", "voucher.issue", "INVALID_ARGS", supplier=supplier, amount=amount,
              maturity_ms=chain.time_ms + DAY_MS, documents=docs)
    for maturity in (1.0e15, 10**20, -1, 0):
        fails(chain, "core", "voucher.issue", "INVALID_ARGS", supplier=supplier, amount=10,
              maturity_ms=maturity, documents=docs)
    for documents in ([], ["xyz"], [doc("a"), doc("a")], [doc(str(i)) for i in range(17)]):
        fails(chain, "core", "voucher.issue", "INVALID_ARGS", supplier=supplier, amount=10,
              maturity_ms=chain.time_ms + DAY_MS, documents=documents)
    root = issue(chain, 100)
    for rate in (0, -1, 100_001, 2.5):
        fails(chain, "t1", "voucher.apply_discount", "INVALID_ARGS", voucher=root,
              financier=chain.id("bank"), rate_bps=rate)
    fails(chain, "t1", "voucher.transfer", "INVALID_ARGS", voucher=root.upper(),
          to=chain.id("t2"))
    fails(chain, "t1", "voucher.split", "INVALID_ARGS", voucher=root, amounts=[50, 0, 50])


def test_not_authorized_without_the_needed_role(chain: LocalChain) -> None:
    """Only financiers grant and decide discounts; only core enterprises issue."""
    fails(chain, "t1", "voucher.grant_credit", "NOT_AUTHORIZED", core=chain.id("core"),
          limit=10, expiry_ms=chain.time_ms + DAY_MS)
    fails(chain, "t1", "voucher.issue", "NOT_AUTHORIZED", supplier=chain.id("t2"), amount=10,
          maturity_ms=chain.time_ms + DAY_MS, documents=[doc("d")])
    root = issue(chain, 100)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    fails(chain, "auditor", "voucher.approve_discount", "NOT_AUTHORIZED", voucher=root)
    fails(chain, "core", "voucher.reject_discount", "NOT_AUTHORIZED", voucher=root)


def test_unknown_member_cannot_call(chain: LocalChain) -> None:
    """A key that is not a consortium member is refused before the contract runs."""
    chain.add_account("mallory")
    root = issue(chain, 100)
    fails(chain, "mallory", "voucher.transfer", "UNKNOWN_MEMBER", voucher=root,
          to=chain.id("t2"))


def test_member_suspended_cannot_move_its_voucher(chain: LocalChain) -> None:
    """A suspended holder can do nothing with what it holds."""
    root = issue(chain, 100)
    assert chain.govern("suspend_member", proposer="admin", account=chain.id("t1")).ok
    fails(chain, "t1", "voucher.transfer", "MEMBER_SUSPENDED", voucher=root, to=chain.id("t2"))


def test_unknown_voucher(chain: LocalChain) -> None:
    """An id that names no voucher."""
    fails(chain, "t1", "voucher.transfer", "UNKNOWN_VOUCHER", voucher=doc("nothing"),
          to=chain.id("t2"))


def test_not_holder_may_not_move_or_cancel(chain: LocalChain) -> None:
    """Only the holder moves a voucher or withdraws its discount application."""
    root = issue(chain, 100)
    fails(chain, "t2", "voucher.transfer", "NOT_HOLDER", voucher=root, to=chain.id("t3"))
    fails(chain, "core", "voucher.split", "NOT_HOLDER", voucher=root, amounts=[50, 50])
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    fails(chain, "t2", "voucher.cancel_discount", "NOT_HOLDER", voucher=root)


def test_voucher_frozen_while_discount_pending(chain: LocalChain) -> None:
    """A voucher under a discount application neither moves, splits nor re-applies."""
    root = issue(chain, 100)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    fails(chain, "t1", "voucher.transfer", "VOUCHER_FROZEN", voucher=root, to=chain.id("t2"))
    fails(chain, "t1", "voucher.split", "VOUCHER_FROZEN", voucher=root, amounts=[50, 50])
    fails(chain, "t1", "voucher.apply_discount", "VOUCHER_FROZEN", voucher=root,
          financier=chain.id("factor"), rate_bps=100)


def test_voucher_not_active_after_split_or_redemption(chain: LocalChain) -> None:
    """A SPLIT parent and a REDEEMED voucher cannot move."""
    root = issue(chain, 100, days=1)
    assert chain.run("t1", "voucher.split", voucher=root, amounts=[40, 60]).ok
    fails(chain, "t1", "voucher.transfer", "VOUCHER_NOT_ACTIVE", voucher=root, to=chain.id("t2"))
    child = chain.query("voucher.holdings", holder=chain.id("t1"))["vouchers"][0]["id"]
    chain.advance(DAY_MS)
    assert chain.query("voucher.get", voucher=child)["state"] == "REDEEMED"
    fails(chain, "t1", "voucher.split", "VOUCHER_NOT_ACTIVE", voucher=child, amounts=[1, 39])


def test_voucher_matured_in_the_block_that_reaches_maturity(chain: LocalChain) -> None:
    """Txs in the maturity block run before settlement and may no longer sell or move it."""
    root = issue(chain, 100, days=1)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    chain.time_ms += DAY_MS - 2_000  # the next block is exactly at maturity
    receipt = chain.run("bank", "voucher.approve_discount", voucher=root)
    assert receipt.code == "VOUCHER_MATURED" and receipt.message
    # The same block's settlement then pays the applicant, not the would-be buyer.
    assert chain.query("voucher.get", voucher=root)["state"] == "REDEEMED"
    assert chain.balance("t1") == 100 and chain.balance("bank") == 10_000_000

    other = make_chain()
    grant(other)
    root2 = issue(other, 100, days=1)
    other.time_ms += DAY_MS - 1_000
    receipt = other.run("t1", "voucher.transfer", voucher=root2, to=other.id("t2"))
    assert receipt.code == "VOUCHER_MATURED"
    assert other.balance("t1") == 100 and other.balance("t2") == 0


def test_document_already_used_backs_one_voucher_ever(chain: LocalChain) -> None:
    """A trade document hash cannot back a second voucher, even after the first is paid."""
    issue(chain, 100, days=1, docs=("invoice-1",))
    chain.advance(DAY_MS)
    fails(chain, "core", "voucher.issue", "DOCUMENT_ALREADY_USED", supplier=chain.id("t2"),
          amount=10, maturity_ms=chain.time_ms + DAY_MS,
          documents=[doc("invoice-2"), doc("invoice-1")])


def test_no_credit_line() -> None:
    """A core without any line, or naming a financier that gave it none, cannot issue."""
    chain = make_chain()
    args = {"supplier": chain.id("t1"), "amount": 10, "maturity_ms": chain.time_ms + DAY_MS,
            "documents": [doc("d")]}
    fails(chain, "core", "voucher.issue", "NO_CREDIT_LINE", **args)
    grant(chain)
    fails(chain, "core", "voucher.issue", "NO_CREDIT_LINE", financier=chain.id("factor"), **args)


def test_credit_line_expired(chain: LocalChain) -> None:
    """A named line past its expiry backs nothing new."""
    assert chain.run("factor", "voucher.grant_credit", core=chain.id("core"), limit=100,
                     expiry_ms=chain.time_ms + 5_000).ok
    chain.advance(10_000)
    fails(chain, "core", "voucher.issue", "CREDIT_LINE_EXPIRED", supplier=chain.id("t1"),
          amount=10, maturity_ms=chain.time_ms + DAY_MS, documents=[doc("d")],
          financier=chain.id("factor"))


def test_credit_exceeded(chain: LocalChain) -> None:
    """An issue beyond the remaining credit fails."""
    fails(chain, "core", "voucher.issue", "CREDIT_EXCEEDED", supplier=chain.id("t1"),
          amount=50_000_001, maturity_ms=chain.time_ms + DAY_MS, documents=[doc("d")])


def test_credit_below_used(chain: LocalChain) -> None:
    """A financier cannot cut a line below what it already backs."""
    issue(chain, 1_000)
    fails(chain, "bank", "voucher.grant_credit", "CREDIT_BELOW_USED", core=chain.id("core"),
          limit=999, expiry_ms=chain.time_ms + DAY_MS)
    assert chain.run("bank", "voucher.grant_credit", core=chain.id("core"), limit=1_000,
                     expiry_ms=chain.time_ms + DAY_MS).ok


def test_invalid_expiry(chain: LocalChain) -> None:
    """A line must expire after the granting block."""
    fails(chain, "bank", "voucher.grant_credit", "INVALID_EXPIRY", core=chain.id("core"),
          limit=10, expiry_ms=chain.time_ms)


def test_invalid_maturity(chain: LocalChain) -> None:
    """A voucher must mature after the issuing block."""
    fails(chain, "core", "voucher.issue", "INVALID_MATURITY", supplier=chain.id("t1"),
          amount=10, maturity_ms=chain.time_ms + 1_000, documents=[doc("d")])


def test_invalid_counterparty_roles_self_and_obligor(chain: LocalChain) -> None:
    """The other party must hold the right role, be active, not be the caller or the core."""
    fails(chain, "bank", "voucher.grant_credit", "INVALID_COUNTERPARTY", core=chain.id("t1"),
          limit=10, expiry_ms=chain.time_ms + DAY_MS)
    fails(chain, "core", "voucher.issue", "INVALID_COUNTERPARTY", supplier=chain.id("auditor"),
          amount=10, maturity_ms=chain.time_ms + DAY_MS, documents=[doc("d")])
    root = issue(chain, 100)
    for target in ("t1", "core", "auditor"):
        fails(chain, "t1", "voucher.transfer", "INVALID_COUNTERPARTY", voucher=root,
              to=chain.id(target))
    fails(chain, "t1", "voucher.apply_discount", "INVALID_COUNTERPARTY", voucher=root,
          financier=chain.id("t2"), rate_bps=100)
    assert chain.govern("suspend_member", proposer="admin", account=chain.id("t2")).ok
    fails(chain, "t1", "voucher.transfer", "INVALID_COUNTERPARTY", voucher=root,
          to=chain.id("t2"))


def test_invalid_amount_for_transfer_and_split(chain: LocalChain) -> None:
    """A transfer beyond the voucher, or split parts that do not add up, fail."""
    root = issue(chain, 100)
    fails(chain, "t1", "voucher.transfer", "INVALID_AMOUNT", voucher=root, to=chain.id("t2"),
          amount=101)
    fails(chain, "t1", "voucher.split", "INVALID_AMOUNT", voucher=root, amounts=[50, 49])
    fails(chain, "t1", "voucher.split", "INVALID_AMOUNT", voucher=root, amounts=[100])


def test_too_many_vouchers_under_one_root(chain: LocalChain) -> None:
    """A root may not fragment beyond its bound (settlement work per root is bounded)."""
    root = issue(chain, 10_000)
    current = root
    for _ in range(15):  # each 16-way split adds 16 vouchers: 1 + 15 * 16 = 241
        amount = chain.query("voucher.get", voucher=current)["amount"]
        receipt = chain.run("t1", "voucher.split", voucher=current,
                            amounts=[1] * 15 + [amount - 15])
        assert receipt.ok, receipt.message
        current = receipt.result["vouchers"][-1]
    assert chain.query("voucher.lineage", root=root)["vouchers"] == 241
    amount = chain.query("voucher.get", voucher=current)["amount"]
    fails(chain, "t1", "voucher.split", "TOO_MANY_VOUCHERS", voucher=current,
          amounts=[1] * 15 + [amount - 15])
    assert chain.run("t1", "voucher.split", voucher=current, amounts=[1] * 14 + [amount - 14]).ok


def test_discount_not_pending(chain: LocalChain) -> None:
    """Approve, reject or cancel need a pending application."""
    root = issue(chain, 100)
    fails(chain, "bank", "voucher.approve_discount", "DISCOUNT_NOT_PENDING", voucher=root)
    fails(chain, "bank", "voucher.reject_discount", "DISCOUNT_NOT_PENDING", voucher=root)
    fails(chain, "t1", "voucher.cancel_discount", "DISCOUNT_NOT_PENDING", voucher=root)


def test_not_discount_financier(chain: LocalChain) -> None:
    """Only the financier the holder applied to decides."""
    root = issue(chain, 100)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    fails(chain, "factor", "voucher.approve_discount", "NOT_DISCOUNT_FINANCIER", voucher=root)
    fails(chain, "factor", "voucher.reject_discount", "NOT_DISCOUNT_FINANCIER", voucher=root)


def test_discount_too_deep(chain: LocalChain) -> None:
    """A rate so high that interest eats the whole amount cannot be approved."""
    root = issue(chain, 100, days=360)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=10_000).ok
    fails(chain, "bank", "voucher.approve_discount", "DISCOUNT_TOO_DEEP", voucher=root)


def test_insufficient_funds_to_approve_a_discount(chain: LocalChain) -> None:
    """A financier without the cash to pay the holder cannot approve."""
    root = issue(chain, 20_000_000)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=100).ok
    fails(chain, "bank", "voucher.approve_discount", "INSUFFICIENT_FUNDS", voucher=root)


def test_too_many_lines_when_a_65th_financier_lends_to_one_core() -> None:
    """A core's credit lines live in its one position record: 64 financiers may open lines to
    it, a 65th is refused (nothing changes); the 64 may still change theirs, and an issue is
    backed by a line with room."""
    from contracts.voucher_state import LINES_PER_CORE_MAX

    banks = [f"bank{i:02d}" for i in range(LINES_PER_CORE_MAX + 1)]
    chain = LocalChain(
        members={"admin": ("admin",), "core": ("core_enterprise",), "t1": ("supplier",),
                 **{bank: ("financier",) for bank in banks}},
        balances={},
    )
    expiry_ms = chain.time_ms + 365 * DAY_MS
    for bank in banks[:-1]:
        receipt = chain.run(bank, "voucher.grant_credit", core=chain.id("core"), limit=1_000,
                            expiry_ms=expiry_ms)
        assert receipt.ok, receipt.message
    fails(chain, banks[-1], "voucher.grant_credit", "TOO_MANY_LINES", core=chain.id("core"),
          limit=1_000, expiry_ms=expiry_ms)
    assert chain.run(banks[0], "voucher.grant_credit", core=chain.id("core"), limit=2_000,
                     expiry_ms=expiry_ms).ok
    position = chain.query("voucher.position", core=chain.id("core"))
    assert len(position["lines"]) == LINES_PER_CORE_MAX
    assert position["credit_limit"] == 1_000 * (LINES_PER_CORE_MAX - 1) + 2_000
    issued = chain.run("core", "voucher.issue", supplier=chain.id("t1"), amount=1_500,
                       maturity_ms=chain.time_ms + 30 * DAY_MS, documents=[doc("lines")])
    assert issued.ok, issued.message
    backer = chain.query("voucher.lineage", root=issued.result["voucher"])["financier"]
    assert backer == chain.id(banks[0]), "the one line with room for 1,500 backs it"
