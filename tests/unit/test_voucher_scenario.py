"""Voucher scenarios through the real executor on an in-memory chain.

The worked example of docs/contracts.md (core -> tier 1 -> tier 2 -> tier 3, one discount,
settlement at maturity) is checked balance by balance and state by state; then overdue
settlement (oldest first, whole vouchers only, paid as soon as the core's cash allows), the
queries, and the audit trail rebuilt from events.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tests.harness import DAY_MS, LocalChain

CORE_CASH = 10_000_000
BANK_CASH = 10_000_000


def doc(name: str) -> str:
    """The hash of a trade document (here: of its name)."""
    return hashlib.sha256(name.encode()).hexdigest()


def make_chain(core_cash: int = CORE_CASH) -> LocalChain:
    balances = {"bank": BANK_CASH, "factor": BANK_CASH}
    if core_cash:
        balances["core"] = core_cash
    return LocalChain(
        members={
            "admin": ("admin",),
            "bank": ("financier",),
            "factor": ("financier",),
            "core": ("core_enterprise",),
            "core2": ("core_enterprise",),
            "t1": ("supplier",),
            "t2": ("supplier",),
            "t3": ("supplier",),
            "auditor": ("auditor",),
        },
        balances=balances,
    )


def grant(chain: LocalChain, limit: int = 50_000_000, core: str = "core") -> None:
    receipt = chain.run(
        "bank", "voucher.grant_credit", core=chain.id(core), limit=limit,
        expiry_ms=chain.time_ms + 365 * DAY_MS,
    )
    assert receipt.ok, receipt.message


def issue(
    chain: LocalChain, amount: int, days: int = 90, docs: tuple[str, ...] = ("contract-1",),
    to: str = "t1", core: str = "core",
) -> str:
    receipt = chain.run(
        core, "voucher.issue", supplier=chain.id(to), amount=amount,
        maturity_ms=chain.time_ms + 1_000 + days * DAY_MS, documents=[doc(d) for d in docs],
    )
    assert receipt.ok, receipt.message
    return str(receipt.result["voucher"])


def state_of(chain: LocalChain, voucher_id: str) -> dict[str, Any]:
    found: dict[str, Any] = chain.query("voucher.get", voucher=voucher_id)
    return found


def test_worked_example_three_tiers_one_discount_settles_every_holder_at_maturity() -> None:
    """Core -> t1 -> t2 -> t3, t3 discounts at the bank, maturity pays every holder."""
    chain = make_chain()
    grant(chain)
    issued_ms = chain.time_ms + 1_000  # the issuing block's time
    root = issue(chain, 10_000_000, docs=("contract-1", "invoice-7"))
    maturity_ms = issued_ms + 90 * DAY_MS
    assert state_of(chain, root)["maturity_ms"] == maturity_ms

    # Tier 1 pays tier 2 with 6,000,000 of it: the root splits in two.
    receipt = chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2"), amount=6_000_000)
    assert receipt.ok, receipt.message
    to_t2, kept_t1 = receipt.result["voucher"], receipt.result["remainder_voucher"]
    assert receipt.event("VoucherSplit")["children"] == [
        {"voucher": to_t2, "amount": 6_000_000}, {"voucher": kept_t1, "amount": 4_000_000}
    ]
    # Tier 2 pays tier 3 with 2,500,000.
    receipt = chain.run("t2", "voucher.transfer", voucher=to_t2, to=chain.id("t3"),
                        amount=2_500_000)
    assert receipt.ok, receipt.message
    to_t3, kept_t2 = receipt.result["voucher"], receipt.result["remainder_voucher"]
    assert [state_of(chain, v)["tier"] for v in (root, kept_t1, kept_t2, to_t3)] == [1, 1, 2, 3]

    # Thirty days on, tier 3 sells its voucher to the bank at 6 % a year: 60 days to maturity.
    chain.advance(30 * DAY_MS)
    receipt = chain.run("t3", "voucher.apply_discount", voucher=to_t3,
                        financier=chain.id("bank"), rate_bps=600)
    assert receipt.ok, receipt.message
    assert state_of(chain, to_t3)["state"] == "DISCOUNT_PENDING"
    receipt = chain.run("bank", "voucher.approve_discount", voucher=to_t3)
    assert receipt.ok, receipt.message
    assert receipt.result == {"voucher": to_t3, "days": 60, "interest": 25_000,
                              "payout": 2_475_000}
    assert chain.balance("t3") == 2_475_000
    assert chain.balance("bank") == BANK_CASH - 2_475_000
    assert state_of(chain, to_t3)["holder"] == chain.id("bank")

    position = chain.query("voucher.position", core=chain.id("core"), at_ms=chain.time_ms)
    assert position["outstanding"] == 10_000_000
    assert position["remaining_credit"] == 40_000_000

    # Nothing happens the block before maturity; the first block at maturity settles.
    chain.advance(maturity_ms - chain.time_ms - 1)
    assert state_of(chain, kept_t1)["state"] == "ACTIVE"
    events = chain.advance(1)
    redeemed = [attrs for name, attrs in events if name == "VoucherRedeemed"]
    assert sorted((e["holder"], e["amount"]) for e in redeemed) == sorted(
        [(chain.id("t1"), 4_000_000), (chain.id("t2"), 3_500_000), (chain.id("bank"), 2_500_000)]
    )
    assert all(not e["overdue"] for e in redeemed)

    assert chain.balance("core") == 0
    assert chain.balance("t1") == 4_000_000
    assert chain.balance("t2") == 3_500_000
    assert chain.balance("t3") == 2_475_000
    assert chain.balance("bank") == BANK_CASH + 25_000
    assert chain.query("cash.supply")["outstanding"] == CORE_CASH + 2 * BANK_CASH

    tree = chain.query("voucher.lineage", root=root)
    assert tree["amount"] == 10_000_000 and tree["redeemed"] == 10_000_000 and tree["live"] == 0
    assert [(n["tier"], n["amount"], n["state"]) for n in tree["tree"]] == [
        (1, 10_000_000, "SPLIT"),
        (2, 6_000_000, "SPLIT"),
        (1, 4_000_000, "REDEEMED"),
        (3, 2_500_000, "REDEEMED"),
        (2, 3_500_000, "REDEEMED"),
    ]
    position = chain.query("voucher.position", core=chain.id("core"), at_ms=chain.time_ms)
    assert position["outstanding"] == 0 and position["remaining_credit"] == 50_000_000
    for name in ("t1", "t2", "t3", "bank"):
        assert chain.query("voucher.holdings", holder=chain.id(name))["vouchers"] == []


def test_partial_transfer_splits_voucher_and_conserves_amount() -> None:
    """A partial transfer leaves a SPLIT parent and two children adding up to it."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000)
    receipt = chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2"), amount=300)
    sent, kept = state_of(chain, receipt.result["voucher"]), state_of(
        chain, receipt.result["remainder_voucher"])
    assert (sent["amount"], sent["holder"], sent["parent"]) == (300, chain.id("t2"), root)
    assert (kept["amount"], kept["holder"]) == (700, chain.id("t1"))
    assert state_of(chain, root)["state"] == "SPLIT"
    assert state_of(chain, root)["children"] == [sent["id"], kept["id"]]


def test_full_transfer_keeps_the_id_and_moves_up_a_tier() -> None:
    """Transferring the whole amount changes holder and tier, not the voucher id."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000)
    receipt = chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2"))
    assert receipt.ok and receipt.result == {"voucher": root, "remainder_voucher": None}
    record = state_of(chain, root)
    assert (record["holder"], record["tier"], record["state"]) == (chain.id("t2"), 2, "ACTIVE")
    assert [v["id"] for v in chain.query("voucher.holdings", holder=chain.id("t2"))["vouchers"]] \
        == [root]
    assert chain.query("voucher.holdings", holder=chain.id("t1"))["vouchers"] == []


def test_split_creates_children_held_by_the_holder() -> None:
    """An explicit split gives the holder several vouchers adding up to the parent."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000)
    receipt = chain.run("t1", "voucher.split", voucher=root, amounts=[100, 200, 700])
    assert receipt.ok, receipt.message
    children = [state_of(chain, v) for v in receipt.result["vouchers"]]
    assert [c["amount"] for c in children] == [100, 200, 700]
    assert {c["holder"] for c in children} == {chain.id("t1")}
    holdings = chain.query("voucher.holdings", holder=chain.id("t1"))
    assert holdings["total"] == 1_000 and len(holdings["vouchers"]) == 3


def test_core_without_cash_goes_overdue_and_is_paid_oldest_first_after_deposit() -> None:
    """Unpaid vouchers become OVERDUE; deposits pay whole vouchers, earliest maturity first."""
    chain = make_chain(core_cash=0)
    grant(chain)
    older = issue(chain, 5_000, days=10, docs=("a",))
    newer = issue(chain, 1_000, days=20, docs=("b",))
    events = chain.advance(10 * DAY_MS)
    assert [n for n, _ in events] == ["VoucherOverdue"]
    assert state_of(chain, older)["state"] == "OVERDUE"
    events = chain.advance(10 * DAY_MS)
    assert state_of(chain, newer)["state"] == "OVERDUE"
    position = chain.query("voucher.position", core=chain.id("core"))
    assert position["overdue"] == 6_000 and position["outstanding"] == 6_000

    # 3,000 covers the newer voucher but not the older: nothing jumps the queue.
    assert chain.run("bank", "cash.deposit", account=chain.id("core"), amount=3_000).ok
    assert state_of(chain, newer)["state"] == "OVERDUE"
    # 5,000 more covers the older one; the 3,000 left then covers the newer one too.
    receipts = chain.run_block([chain.tx("bank", "cash.deposit", account=chain.id("core"),
                                         amount=5_000)])
    assert receipts[0].ok
    redeemed = [attrs for name, attrs in chain.end_block_events if name == "VoucherRedeemed"]
    assert [(e["voucher"], e["overdue"]) for e in redeemed] == [(older, True), (newer, True)]
    assert chain.balance("core") == 2_000 and chain.balance("t1") == 6_000
    assert chain.query("voucher.position", core=chain.id("core"))["outstanding"] == 0
    assert chain.raw(f"voucher/odc/{chain.id('core')}") is None


def test_maturing_vouchers_queue_behind_older_overdue_ones() -> None:
    """A voucher maturing while an older one is overdue is not paid ahead of it."""
    chain = make_chain(core_cash=0)
    grant(chain)
    older = issue(chain, 5_000, days=10, docs=("a",))
    newer = issue(chain, 1_000, days=20, docs=("b",))
    chain.advance(10 * DAY_MS)
    assert chain.run("bank", "cash.deposit", account=chain.id("core"), amount=1_000).ok
    chain.advance(10 * DAY_MS)
    assert state_of(chain, older)["state"] == "OVERDUE"
    assert state_of(chain, newer)["state"] == "OVERDUE"
    assert chain.balance("core") == 1_000


def test_pending_discount_is_cancelled_and_holder_paid_at_maturity() -> None:
    """A discount application still pending at maturity is cancelled; the holder is paid."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000, days=1)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=500).ok
    assert chain.query("voucher.pending_discounts", financier=chain.id("bank"))["vouchers"]
    events = chain.advance(DAY_MS)
    assert [n for n, _ in events] == ["DiscountCancelled", "Transferred", "VoucherRedeemed"]
    assert state_of(chain, root)["state"] == "REDEEMED" and chain.balance("t1") == 1_000
    assert chain.query("voucher.pending_discounts", financier=chain.id("bank"))["vouchers"] == []


def test_rejected_or_cancelled_discount_unfreezes_the_voucher() -> None:
    """Reject (by the financier) and cancel (by the holder) both return the voucher to ACTIVE."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 1_000)
    args = {"voucher": root, "financier": chain.id("bank"), "rate_bps": 500}
    assert chain.run("t1", "voucher.apply_discount", **args).ok
    receipt = chain.run("bank", "voucher.reject_discount", voucher=root, reason="no appetite")
    assert receipt.ok and receipt.event("DiscountRejected")["reason"] == "no appetite"
    assert state_of(chain, root)["state"] == "ACTIVE"
    assert chain.run("t1", "voucher.apply_discount", **args).ok
    assert chain.run("t1", "voucher.cancel_discount", voucher=root).ok
    assert state_of(chain, root)["state"] == "ACTIVE" and state_of(chain, root)["discount"] is None
    assert chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2")).ok


def test_discount_days_round_up_and_are_at_least_one() -> None:
    """Less than a day before maturity still counts one day of interest."""
    chain = make_chain()
    grant(chain)
    root = issue(chain, 3_600_000, days=1)
    chain.advance(DAY_MS - 60_000)
    assert chain.run("t1", "voucher.apply_discount", voucher=root, financier=chain.id("bank"),
                     rate_bps=10_000).ok
    receipt = chain.run("bank", "voucher.approve_discount", voucher=root)
    assert receipt.ok, receipt.message
    assert receipt.result["days"] == 1 and receipt.result["interest"] == 10_000


def test_credit_line_bounds_issuance_and_is_released_by_settlement() -> None:
    """Outstanding never exceeds the line; settlement frees the line for new vouchers."""
    chain = make_chain()
    grant(chain, limit=1_000)
    issue(chain, 600, days=1, docs=("a",))
    receipt = chain.run("core", "voucher.issue", supplier=chain.id("t1"), amount=500,
                        maturity_ms=chain.time_ms + DAY_MS, documents=[doc("b")])
    assert receipt.code == "CREDIT_EXCEEDED"
    chain.advance(DAY_MS)
    issue(chain, 1_000, docs=("b",))
    position = chain.query("voucher.position", core=chain.id("core"), at_ms=chain.time_ms)
    assert position["outstanding"] == 1_000 and position["remaining_credit"] == 0


def test_second_line_backs_issue_when_first_is_full_and_expired_line_does_not() -> None:
    """Without a named financier, the first open line with room backs the voucher."""
    chain = make_chain()
    grant(chain, limit=100)
    assert chain.run("factor", "voucher.grant_credit", core=chain.id("core"), limit=1_000,
                     expiry_ms=chain.time_ms + 2 * DAY_MS).ok
    root = issue(chain, 500, days=30)
    assert chain.query("voucher.lineage", root=root)["financier"] == chain.id("factor")
    chain.advance(3 * DAY_MS)
    position = chain.query("voucher.position", core=chain.id("core"), at_ms=chain.time_ms)
    assert position["remaining_credit"] == 100 and position["credit_limit"] == 1_100


def test_events_rebuild_the_audit_trail_of_a_voucher() -> None:
    """Issue, split, transfer, discount and settlement events name ids, parties and amounts."""
    chain = make_chain()
    grant(chain)
    receipt = chain.run("core", "voucher.issue", supplier=chain.id("t1"), amount=900,
                        maturity_ms=chain.time_ms + DAY_MS, documents=[doc("x")])
    issued = receipt.event("VoucherIssued")
    assert issued["holder"] == chain.id("t1") and issued["documents"] == [doc("x")]
    root = issued["voucher"]
    moved = chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2"), amount=400)
    event = moved.event("VoucherTransferred")
    assert (event["sender"], event["to"], event["amount"], event["parent"]) == (
        chain.id("t1"), chain.id("t2"), 400, root)
    assert chain.run("t2", "voucher.apply_discount", voucher=event["voucher"],
                     financier=chain.id("bank"), rate_bps=100).ok
    sold = chain.run("bank", "voucher.approve_discount", voucher=event["voucher"])
    discounted = sold.event("VoucherDiscounted")
    assert discounted["seller"] == chain.id("t2") and discounted["payout"] == 400 - 400 * 100 // (
        10_000 * 360)
    events = chain.advance(DAY_MS)
    assert {(a["voucher"], a["holder"], a["amount"]) for n, a in events
            if n == "VoucherRedeemed"} == {
        (event["voucher"], chain.id("bank"), 400),
        (event["remainder_voucher"], chain.id("t1"), 500),
    }
    assert chain.query("voucher.document", document=doc("x"))["root"] == root
