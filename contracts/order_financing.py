"""Order financing: a supplier borrows against a core enterprise's confirmed purchase order.

Keys (namespace `order_financing/`):
  `o/<id>`             the order record, with its loan (if any) inside
  `doc/<hash>`         order id backed by an order document (one document, one order)
  `terms/<financier>`  {ratio_bps}: the most a financier lends, as a share of an order's value
  `party/<account>/<id>` orders by supplier, buyer and financier
  `due/<ms>/<id>`      orders with a disbursed loan whose payment falls due at ms

Order states: REGISTERED -> CONFIRMED (by the buyer) or DECLINED -> DELIVERED (supplier says)
-> ACCEPTED (buyer says) -> PAID. Loan states: APPLIED -> ACTIVE (disbursed) or REJECTED;
ACTIVE -> OVERDUE (flagged by the block-end hook at the payment due date) -> REPAID; an
application still APPLIED when the buyer pays LAPSES. The buyer's payment repays the financier
(principal plus interest to the day of payment) before the supplier receives the rest.
"""

from __future__ import annotations

from contracts.parties import LIST_MAX, PARTY_INDEX, add_party, listed, require_party
from contracts.runtime import (
    RATE_BPS_MAX,
    TIME_MS_MAX,
    Args,
    Context,
    Contract,
    ContractError,
    JsonValue,
    ReadContext,
    require_role,
)
from contracts.schedule import BPS, due_key, falling_due, interest
from contracts.visibility import ORDER, readable, require_readable

order_financing = Contract("order_financing")

REGISTERED = "REGISTERED"
CONFIRMED = "CONFIRMED"
DECLINED = "DECLINED"
DELIVERED = "DELIVERED"
ACCEPTED = "ACCEPTED"
PAID = "PAID"
ORDER_STATES = (REGISTERED, CONFIRMED, DECLINED, DELIVERED, ACCEPTED, PAID)
FINANCEABLE = (CONFIRMED, DELIVERED, ACCEPTED)  # confirmed by the buyer and not yet paid

APPLIED = "APPLIED"
ACTIVE = "ACTIVE"
OVERDUE = "OVERDUE"
REPAID = "REPAID"
REJECTED = "REJECTED"
LAPSED = "LAPSED"
LOAN_STATES = (APPLIED, ACTIVE, OVERDUE, REPAID, REJECTED, LAPSED)
OPEN_LOANS = (APPLIED, ACTIVE, OVERDUE, REPAID)  # a new application is refused while one is

DUE_PER_BLOCK_MAX = 256

Order = dict[str, JsonValue]


def _load(ctx: Context | ReadContext, order_id: str) -> Order:
    found = ctx.get(f"o/{order_id}")
    if found is None:
        raise ContractError("UNKNOWN_ORDER", f"no order {order_id[:16]}…")
    assert isinstance(found, dict) and found["state"] in ORDER_STATES
    return found


def _save(ctx: Context, order: Order) -> None:
    loan = order["loan"]
    assert order["state"] in ORDER_STATES
    if isinstance(loan, dict):
        assert loan["state"] in LOAN_STATES
        assert 0 < loan["principal"] <= order["amount"], "a loan never exceeds its order"
    ctx.put(f"o/{order['id']}", order)


def _require_state(order: Order, *states: str) -> None:
    if order["state"] not in states:
        raise ContractError(
            "WRONG_STATE", f"the order is {order['state']}; this needs {' or '.join(states)}"
        )


def _require_party(ctx: Context, order: Order, party: str) -> None:
    require_party(ctx, order, party, "order")


def _loan(order: Order, *states: str) -> dict[str, JsonValue]:
    loan = order["loan"]
    if not isinstance(loan, dict) or loan["state"] not in states:
        have = "none" if not isinstance(loan, dict) else loan["state"]
        raise ContractError("WRONG_STATE", f"the loan is {have}; this needs {' or '.join(states)}")
    return loan


@order_financing.method
def set_ratio(ctx: Context, args: Args) -> JsonValue:
    """A financier states the most it lends against an order, in bps of the order's value."""
    require_role(ctx, ctx.sender, "financier")
    ratio_bps = args.integer("ratio_bps", maximum=BPS)
    ctx.put(f"terms/{ctx.sender}", {"ratio_bps": ratio_bps})
    ctx.emit("FinancingRatioSet", financier=ctx.sender, ratio_bps=ratio_bps)
    return None


@order_financing.method
def register_order(ctx: Context, args: Args) -> JsonValue:
    """A supplier registers a purchase order from a core enterprise, backed by its document."""
    require_role(ctx, ctx.sender, "supplier")
    buyer = args.account("buyer")
    amount = args.amount()
    delivery_due_ms = args.integer("delivery_due_ms", maximum=TIME_MS_MAX)
    payment_due_ms = args.integer("payment_due_ms", maximum=TIME_MS_MAX)
    order_hash = args.hex_id("order_hash")
    require_role(ctx, buyer, "core_enterprise")
    if buyer == ctx.sender:
        raise ContractError("INVALID_ARGS", "a supplier cannot order from itself")
    if delivery_due_ms > payment_due_ms:
        raise ContractError("INVALID_ARGS", "delivery must fall due no later than payment")
    if payment_due_ms <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the payment due date must be after this block's time")
    used = ctx.get(f"doc/{order_hash}")
    if used is not None:
        raise ContractError("DOCUMENT_USED", f"the order document already backs order {used}")
    order_id = ctx.derive_id("order")
    order: Order = {
        "id": order_id, "supplier": ctx.sender, "buyer": buyer, "amount": amount,
        "delivery_due_ms": delivery_due_ms, "payment_due_ms": payment_due_ms,
        "order_hash": order_hash, "state": REGISTERED, "loan": None,
        "registered_ms": ctx.time_ms, "delivery_hash": None,
    }
    ctx.put(f"doc/{order_hash}", order_id)
    add_party(ctx, ctx.sender, order_id)
    add_party(ctx, buyer, order_id)
    _save(ctx, order)
    ctx.emit(
        "OrderRegistered", order_id=order_id, supplier=ctx.sender, buyer=buyer, amount=amount,
        delivery_due_ms=delivery_due_ms, payment_due_ms=payment_due_ms, order_hash=order_hash,
    )
    return {"order_id": order_id}


def _buyer_decides(ctx: Context, args: Args, state: str, event: str) -> JsonValue:
    order = _load(ctx, args.hex_id("order_id"))
    _require_party(ctx, order, "buyer")
    _require_state(order, REGISTERED)
    order["state"] = state
    _save(ctx, order)
    ctx.emit(event, order_id=order["id"], buyer=ctx.sender, supplier=order["supplier"],
             amount=order["amount"])
    return None


@order_financing.method
def confirm_order(ctx: Context, args: Args) -> JsonValue:
    return _buyer_decides(ctx, args, CONFIRMED, "OrderConfirmed")


@order_financing.method
def decline_order(ctx: Context, args: Args) -> JsonValue:
    return _buyer_decides(ctx, args, DECLINED, "OrderDeclined")


@order_financing.method
def apply_loan(ctx: Context, args: Args) -> JsonValue:
    """The supplier asks a financier for up to its ratio of a confirmed order's value."""
    order = _load(ctx, args.hex_id("order_id"))
    financier = args.account("financier")
    principal = args.amount("principal")
    rate_bps = args.integer("rate_bps", minimum=0, maximum=RATE_BPS_MAX)
    _require_party(ctx, order, "supplier")
    require_role(ctx, financier, "financier")
    if financier in (order["supplier"], order["buyer"]):
        raise ContractError("INVALID_ARGS", "the financier must be a third party")
    if order["state"] == REGISTERED:
        raise ContractError("ORDER_NOT_CONFIRMED", "the buyer has not confirmed the order")
    _require_state(order, *FINANCEABLE)
    loan = order["loan"]
    if isinstance(loan, dict) and loan["state"] in OPEN_LOANS:
        raise ContractError("LOAN_EXISTS", f"the order already has a loan ({loan['state']})")
    if int(order["payment_due_ms"]) <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the order's payment is already due")
    terms = ctx.get(f"terms/{financier}")
    if not isinstance(terms, dict):
        raise ContractError("NO_TERMS", "the financier has not set a financing ratio")
    limit = int(order["amount"]) * int(terms["ratio_bps"]) // BPS
    if principal > limit:
        raise ContractError(
            "RATIO_EXCEEDED",
            f"{principal} is more than {terms['ratio_bps']} bps of {order['amount']} ({limit})",
        )
    order["loan"] = {
        "financier": financier, "principal": principal, "rate_bps": rate_bps,
        "state": APPLIED, "applied_ms": ctx.time_ms, "disbursed_ms": None,
    }
    add_party(ctx, financier, str(order["id"]))
    _save(ctx, order)
    ctx.emit(
        "LoanApplied", order_id=order["id"], supplier=ctx.sender, financier=financier,
        principal=principal, rate_bps=rate_bps, limit=limit,
    )
    return None


@order_financing.method
def approve_loan(ctx: Context, args: Args) -> JsonValue:
    """The financier disburses; the order's payment is assigned to it up to what it is owed."""
    order = _load(ctx, args.hex_id("order_id"))
    loan = _loan(order, APPLIED)
    if ctx.sender != loan["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the financier applied to may approve")
    require_role(ctx, ctx.sender, "financier")
    _require_state(order, *FINANCEABLE)
    if int(order["payment_due_ms"]) <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the order's payment is already due; reject instead")
    ctx.call("cash", "move", {"from": ctx.sender, "to": order["supplier"],
                              "amount": loan["principal"], "reason": "order financing loan"})
    loan["state"] = ACTIVE
    loan["disbursed_ms"] = ctx.time_ms
    _save(ctx, order)
    ctx.put(due_key(int(order["payment_due_ms"]), str(order["id"])), 1)
    ctx.emit(
        "LoanDisbursed", order_id=order["id"], supplier=order["supplier"], financier=ctx.sender,
        principal=loan["principal"], rate_bps=loan["rate_bps"],
        payment_due_ms=order["payment_due_ms"],
    )
    return None


@order_financing.method
def reject_loan(ctx: Context, args: Args) -> JsonValue:
    order = _load(ctx, args.hex_id("order_id"))
    loan = _loan(order, APPLIED)
    if ctx.sender != loan["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the financier applied to may reject")
    loan["state"] = REJECTED
    _save(ctx, order)
    ctx.emit("LoanRejected", order_id=order["id"], supplier=order["supplier"],
             financier=ctx.sender, principal=loan["principal"])
    return None


@order_financing.method
def record_delivery(ctx: Context, args: Args) -> JsonValue:
    """The supplier records that the goods were delivered (with the delivery note's hash)."""
    order = _load(ctx, args.hex_id("order_id"))
    delivery_hash = args.hex_id("delivery_hash")
    _require_party(ctx, order, "supplier")
    _require_state(order, CONFIRMED)
    order["state"] = DELIVERED
    order["delivery_hash"] = delivery_hash
    _save(ctx, order)
    ctx.emit("DeliveryRecorded", order_id=order["id"], supplier=ctx.sender,
             buyer=order["buyer"], delivery_hash=delivery_hash)
    return None


@order_financing.method
def accept_delivery(ctx: Context, args: Args) -> JsonValue:
    order = _load(ctx, args.hex_id("order_id"))
    _require_party(ctx, order, "buyer")
    _require_state(order, DELIVERED)
    order["state"] = ACCEPTED
    _save(ctx, order)
    ctx.emit("DeliveryAccepted", order_id=order["id"], buyer=ctx.sender,
             supplier=order["supplier"])
    return None


def _owed(loan: dict[str, JsonValue], now_ms: int) -> tuple[int, int]:
    principal = int(loan["principal"])
    return principal, interest(principal, int(loan["rate_bps"]), int(loan["disbursed_ms"]), now_ms)


def _close_loan(ctx: Context, order: Order, loan: dict[str, JsonValue]) -> None:
    if loan["state"] == ACTIVE:  # an OVERDUE loan has already left the due index
        ctx.delete(due_key(int(order["payment_due_ms"]), str(order["id"])))
    loan["state"] = REPAID


@order_financing.method
def pay_order(ctx: Context, args: Args) -> JsonValue:
    """The buyer pays the order: the financier first (principal + interest), the supplier the rest.

    If what the financier is owed exceeds the order's value, it receives the whole payment and
    the event records the shortfall (a claim on the supplier outside this contract).
    """
    order = _load(ctx, args.hex_id("order_id"))
    _require_party(ctx, order, "buyer")
    _require_state(order, ACCEPTED)
    amount = int(order["amount"])
    loan = order["loan"]
    to_financier = principal = accrued = shortfall = 0
    if isinstance(loan, dict) and loan["state"] in (ACTIVE, OVERDUE):
        principal, accrued = _owed(loan, ctx.time_ms)
        to_financier = min(principal + accrued, amount)
        shortfall = principal + accrued - to_financier
    to_supplier = amount - to_financier
    assert to_financier + to_supplier == amount and to_supplier >= 0
    balance = ctx.call("cash", "balance_internal", {"account": ctx.sender})
    assert isinstance(balance, int)
    if balance < amount:
        raise ContractError("INSUFFICIENT_FUNDS", f"balance {balance} is less than {amount}")
    if to_financier:
        assert isinstance(loan, dict)
        ctx.call("cash", "move", {"from": ctx.sender, "to": loan["financier"],
                                  "amount": to_financier, "reason": "order payment to financier"})
        _close_loan(ctx, order, loan)
        ctx.emit(
            "LoanRepaid", order_id=order["id"], financier=loan["financier"],
            supplier=order["supplier"], principal=principal, interest=accrued,
            paid=to_financier, shortfall=shortfall, by=ctx.sender,
        )
    elif isinstance(loan, dict) and loan["state"] == APPLIED:
        loan["state"] = LAPSED
        ctx.emit("LoanLapsed", order_id=order["id"], financier=loan["financier"])
    if to_supplier:
        ctx.call("cash", "move", {"from": ctx.sender, "to": order["supplier"],
                                  "amount": to_supplier, "reason": "order payment to supplier"})
    order["state"] = PAID
    order["paid_ms"] = ctx.time_ms
    _save(ctx, order)
    ctx.emit(
        "OrderPaid", order_id=order["id"], buyer=ctx.sender, supplier=order["supplier"],
        amount=amount, to_financier=to_financier, to_supplier=to_supplier,
    )
    return {"to_financier": to_financier, "to_supplier": to_supplier}


@order_financing.method
def repay_loan(ctx: Context, args: Args) -> JsonValue:
    """The supplier repays the loan itself (e.g. when overdue); the buyer then pays it in full."""
    order = _load(ctx, args.hex_id("order_id"))
    _require_party(ctx, order, "supplier")
    loan = _loan(order, ACTIVE, OVERDUE)
    principal, accrued = _owed(loan, ctx.time_ms)
    ctx.call("cash", "move", {"from": ctx.sender, "to": loan["financier"],
                              "amount": principal + accrued, "reason": "order loan repayment"})
    _close_loan(ctx, order, loan)
    _save(ctx, order)
    ctx.emit(
        "LoanRepaid", order_id=order["id"], financier=loan["financier"], supplier=ctx.sender,
        principal=principal, interest=accrued, paid=principal + accrued, shortfall=0,
        by=ctx.sender,
    )
    return {"paid": principal + accrued}


@order_financing.hook
def flag_overdue_loans(ctx: Context) -> None:
    """At an order's payment due date, a disbursed loan still unpaid is flagged OVERDUE."""
    for key, order_id in falling_due(ctx, ctx.time_ms, DUE_PER_BLOCK_MAX):
        ctx.delete(key)
        order = _load(ctx, order_id)
        loan = order["loan"]
        assert isinstance(loan, dict) and loan["state"] == ACTIVE, "index holds active loans"
        loan["state"] = OVERDUE
        _save(ctx, order)
        principal, accrued = _owed(loan, ctx.time_ms)
        ctx.emit(
            "LoanOverdue", order_id=order_id, supplier=order["supplier"], buyer=order["buyer"],
            financier=loan["financier"], principal=principal, interest=accrued,
        )


@order_financing.view
def order(ctx: ReadContext, args: Args) -> JsonValue:
    """An order, for its supplier, buyer, current loan's financier and the auditor."""
    return require_readable(ctx, ORDER, _load(ctx, args.hex_id("order_id")))


@order_financing.view
def orders_of(ctx: ReadContext, args: Args) -> JsonValue:
    """Orders where the account is supplier, buyer or financier (at most 500), in id order;
    those the reader may see (an earlier financier whose application ended sees it no more)."""
    found = listed(ctx, PARTY_INDEX, args.account("account"), _load, LIST_MAX)
    return readable(ctx.reader, ORDER, found)


@order_financing.view
def terms(ctx: ReadContext, args: Args) -> JsonValue:
    """A financier's ratio: a public offer, so suppliers know what they may ask for."""
    financier = args.account("financier")
    found = ctx.get(f"terms/{financier}")
    return {"financier": financier, "ratio_bps": None if found is None else found["ratio_bps"]}
