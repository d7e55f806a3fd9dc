"""What waits on a member: the approvals and confirmations its records ask of it.

Pure functions over the records the member's views returned (orders, deals, receipts, pending
discounts), so the rules are read and tested in one place. Each names the record, the step the
member may take next (the contract method) and a link to the record's page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Record = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Pending:
    kind: str  # voucher | order | deal | receipt
    record_id: str
    action: str  # the contract method the member would call, e.g. "approve_discount"
    what: str  # a sentence for people
    amount: int | None = None

    @property
    def path(self) -> str:
        return f"/{self.kind}/{self.record_id}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.record_id, "action": self.action,
                "what": self.what, "amount": self.amount, "path": self.path}


def _loan(order: Record) -> Record:
    loan = order.get("loan")
    return loan if isinstance(loan, Mapping) else {}


def order_steps(account: str, orders: Iterable[Record]) -> list[Pending]:
    found = []
    for order in orders:
        oid, state = str(order.get("id", "")), order.get("state")
        buyer = order.get("buyer") == account
        if state == "REGISTERED" and buyer:
            found.append(Pending("order", oid, "confirm_order", "confirm the order",
                                 order.get("amount")))
        if state == "DELIVERED" and buyer:
            found.append(Pending("order", oid, "accept_delivery", "accept the delivery"))
        if state == "ACCEPTED" and buyer:
            found.append(Pending("order", oid, "pay_order", "pay the order", order.get("amount")))
        loan = _loan(order)
        if loan.get("state") == "APPLIED" and loan.get("financier") == account:
            found.append(Pending("order", oid, "approve_loan", "approve or reject the loan",
                                 loan.get("principal")))
    return found


DEAL_STEPS = {  # state -> (the party who acts, method, what)
    "APPLIED": ("core", "confirm", "confirm the prepayment deal"),
    "CONFIRMED": ("financier", "approve", "approve the financing"),
    "FINANCED": ("warehouse", "lodge_goods", "lodge the goods"),
    "BUYBACK_DUE": ("core", "buy_back", "buy back the goods"),
}


def deal_steps(account: str, deals: Iterable[Record]) -> list[Pending]:
    found = []
    for deal in deals:
        step = DEAL_STEPS.get(str(deal.get("state")))
        if step is not None and deal.get(step[0]) == account:
            found.append(Pending("deal", str(deal.get("id", "")), step[1], step[2],
                                 deal.get("financed") if step[1] == "approve" else None))
    return found


def receipt_steps(account: str, receipts: Iterable[Record]) -> list[Pending]:
    found = []
    for receipt in receipts:
        rid, state = str(receipt.get("id", "")), receipt.get("state")
        pledge = receipt.get("pledge")
        if (state == "PLEDGE_PENDING" and isinstance(pledge, Mapping)
                and pledge.get("financier") == account):
            found.append(Pending("receipt", rid, "approve_pledge", "approve or reject the pledge",
                                 pledge.get("principal")))
        if state == "REDEEM_PENDING" and receipt.get("warehouse") == account:
            found.append(Pending("receipt", rid, "confirm_delivery",
                                 "confirm the delivery of the goods"))
    return found


def discount_steps(vouchers: Iterable[Record]) -> list[Pending]:
    """`voucher.pending_discounts` of the member as financier: each awaits its decision."""
    return [Pending("voucher", str(v.get("id", "")), "approve_discount",
                    "approve or reject the discount", v.get("amount")) for v in vouchers]


def pending_for(account: str, *, orders: Iterable[Record] = (), deals: Iterable[Record] = (),
                receipts: Iterable[Record] = (),
                discounts: Iterable[Record] = ()) -> list[Pending]:
    seen: set[tuple[str, str, str]] = set()
    found = []
    for item in [*discount_steps(discounts), *order_steps(account, orders),
                 *deal_steps(account, deals), *receipt_steps(account, receipts)]:
        key = (item.kind, item.record_id, item.action)
        if key not in seen:
            seen.add(key)
            found.append(item)
    return found
