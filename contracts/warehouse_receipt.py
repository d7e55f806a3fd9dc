"""Electronic warehouse receipts: title to goods in a warehouse, moved, sold, pledged, redeemed.

Records, states and keys live in contracts/warehouse_receipt_state.py.

Pledges come in two kinds. A loan pledge is agreed between the owner and a financier here; at its
due date a block-end hook collects principal and interest from the owner if the balance allows,
otherwise the receipt defaults and the financier may foreclose. A contract pledge (prepayment
goods) is made and released only by the contract that holds it, through internal methods.
"""

from __future__ import annotations

from contracts.parties import listed
from contracts.runtime import (
    AMOUNT_MAX,
    RATE_BPS_MAX,
    TIME_MS_MAX,
    Args,
    Context,
    Contract,
    ContractError,
    JsonValue,
    ReadContext,
    require_party_role,
    require_role,
)
from contracts.schedule import due_key, falling_due, interest
from contracts.visibility import (
    RECEIPT,
    partial_summary,
    pruned,
    readable,
    require_in_tree,
    require_lineage,
)
from contracts.warehouse_receipt_state import (
    ACTIVE,
    DEFAULTED,
    DUE_PER_BLOCK_MAX,
    HOLDER_ROLES,
    LIST_MAX,
    LISTED,
    LIVE_STATES,
    PLEDGE_PENDING,
    PLEDGED,
    PLEDGING_CONTRACTS,
    REDEEM_PENDING,
    REDEEMED,
    SPLIT_PARTS_MAX,
    Receipt,
    goods,
    load,
    new_receipt,
    owned,
    pledge_of,
    release,
    require_free,
    require_state,
    save,
    set_owner,
    split_receipt,
)

warehouse_receipt = Contract("warehouse_receipt")


# ---------------------------------------------------------------------------------------------
# Issue, transfer, split.


@warehouse_receipt.method
def issue(ctx: Context, args: Args) -> JsonValue:
    """A warehouse issues a receipt for goods it has taken in and inspected."""
    require_role(ctx, ctx.sender, "warehouse")
    owner = args.account("owner")
    require_role(ctx, owner, *HOLDER_ROLES)
    receipt = new_receipt(ctx, ctx.sender, owner, goods(args), None)
    return {"receipt_id": receipt["id"]}


@warehouse_receipt.method
def transfer(ctx: Context, args: Args) -> JsonValue:
    """The owner transfers all of a receipt, or part of it (a split into two children)."""
    receipt = owned(ctx, args)
    target = args.account("to")
    quantity = args.integer("quantity", default=int(receipt["quantity"]))
    if target == receipt["owner"]:
        raise ContractError("INVALID_ARGS", "cannot transfer a receipt to its owner")
    require_role(ctx, target, *HOLDER_ROLES)
    require_free(receipt)
    whole = int(receipt["quantity"])
    if quantity > whole:
        raise ContractError("QUANTITY_EXCEEDED", f"the receipt holds {whole}, not {quantity}")
    source = receipt["owner"]
    if quantity == whole:
        set_owner(ctx, receipt, target)
        save(ctx, receipt)
        moved = receipt
    else:
        parts = [(target, quantity, ACTIVE, None), (source, whole - quantity, ACTIVE, None)]
        moved, _ = split_receipt(ctx, receipt, parts)
    ctx.emit(
        "ReceiptTransferred",
        receipt_id=moved["id"],
        source_id=receipt["id"],
        sender=source,
        to=target,
        quantity=quantity,
    )
    return {"receipt_id": moved["id"]}


@warehouse_receipt.method
def split(ctx: Context, args: Args) -> JsonValue:
    """The owner splits a receipt into parts whose quantities sum to the receipt's."""
    receipt = owned(ctx, args)
    quantities = args.int_list("quantities", items_max=SPLIT_PARTS_MAX)
    if len(quantities) < 2:
        raise ContractError("INVALID_ARGS", "a split needs at least two parts")
    require_free(receipt)
    if sum(quantities) != receipt["quantity"]:
        raise ContractError(
            "QUANTITY_MISMATCH", f"parts sum to {sum(quantities)}, not {receipt['quantity']}"
        )
    owner = receipt["owner"]
    children = split_receipt(ctx, receipt, [(owner, q, ACTIVE, None) for q in quantities])
    return {"receipt_ids": [child["id"] for child in children]}


# ---------------------------------------------------------------------------------------------
# Exchange: list, delist, buy (delivery versus payment in one tx).


@warehouse_receipt.method
def list_for_sale(ctx: Context, args: Args) -> JsonValue:
    receipt = owned(ctx, args)
    exchange = args.account("exchange")
    price = args.amount("price")
    require_role(ctx, exchange, "exchange")
    require_free(receipt)
    receipt["state"] = LISTED
    receipt["listing"] = {"exchange": exchange, "price": price}
    save(ctx, receipt)
    ctx.emit(
        "ReceiptListed", receipt_id=receipt["id"], owner=receipt["owner"], exchange=exchange,
        price=price, quantity=receipt["quantity"],
    )
    return None


@warehouse_receipt.method
def delist(ctx: Context, args: Args) -> JsonValue:
    """The owner or the listing exchange withdraws a listing."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    require_state(receipt, LISTED)
    listing = receipt["listing"]
    assert isinstance(listing, dict)
    if ctx.sender not in (receipt["owner"], listing["exchange"]):
        raise ContractError("NOT_AUTHORIZED", "only the owner or the listing exchange may delist")
    receipt["state"] = ACTIVE
    receipt["listing"] = None
    save(ctx, receipt)
    ctx.emit("ReceiptDelisted", receipt_id=receipt["id"], by=ctx.sender)
    return None


@warehouse_receipt.method
def buy(ctx: Context, args: Args) -> JsonValue:
    """Buy a listed receipt: the price is paid and the title passes in this one tx, or neither."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    price = args.amount("price")
    require_role(ctx, ctx.sender, *HOLDER_ROLES)
    require_state(receipt, LISTED)
    listing = receipt["listing"]
    assert isinstance(listing, dict)
    seller = receipt["owner"]
    if ctx.sender == seller:
        raise ContractError("INVALID_ARGS", "the owner cannot buy its own receipt")
    if price != listing["price"]:
        raise ContractError("PRICE_MISMATCH", f"the listing price is {listing['price']}")
    # Payment leg first: if it fails (INSUFFICIENT_FUNDS) the whole tx is discarded.
    ctx.call("cash", "move", {"from": ctx.sender, "to": seller, "amount": price,
                              "reason": "warehouse receipt sale"})
    receipt["state"] = ACTIVE
    receipt["listing"] = None
    set_owner(ctx, receipt, ctx.sender)
    save(ctx, receipt)
    ctx.emit(
        "ReceiptSold", receipt_id=receipt["id"], seller=seller, buyer=ctx.sender,
        exchange=listing["exchange"], price=price, quantity=receipt["quantity"],
    )
    return None


# ---------------------------------------------------------------------------------------------
# Loan pledges agreed here: request, approve (disburse), reject, repay, default, foreclose.


@warehouse_receipt.method
def pledge(ctx: Context, args: Args) -> JsonValue:
    """The owner asks a financier for a loan against the receipt; it is frozen meanwhile."""
    receipt = owned(ctx, args)
    financier = args.account("financier")
    principal = args.amount("principal")
    rate_bps = args.integer("rate_bps", minimum=0, maximum=RATE_BPS_MAX)
    due_ms = args.integer("due_ms", maximum=TIME_MS_MAX)
    if financier == receipt["owner"]:
        raise ContractError("INVALID_ARGS", "the owner cannot lend against its own receipt")
    require_role(ctx, financier, "financier")
    require_free(receipt)
    if due_ms <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the loan's due date must be after this block's time")
    receipt["state"] = PLEDGE_PENDING
    receipt["pledge"] = {
        "financier": financier, "controller": None, "principal": principal,
        "rate_bps": rate_bps, "due_ms": due_ms, "approved_ms": None,
    }
    save(ctx, receipt)
    ctx.emit(
        "PledgeRequested", receipt_id=receipt["id"], owner=receipt["owner"], financier=financier,
        principal=principal, rate_bps=rate_bps, due_ms=due_ms,
    )
    return None


@warehouse_receipt.method
def approve_pledge(ctx: Context, args: Args) -> JsonValue:
    """The financier approves: it pays the principal to the owner and holds the pledge."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    require_state(receipt, PLEDGE_PENDING)
    terms = pledge_of(receipt)
    if ctx.sender != terms["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the financier asked may approve")
    require_role(ctx, ctx.sender, "financier")
    if int(terms["due_ms"]) <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the loan's due date has passed; reject instead")
    ctx.call("cash", "move", {"from": ctx.sender, "to": receipt["owner"],
                              "amount": terms["principal"], "reason": "receipt pledge loan"})
    terms["approved_ms"] = ctx.time_ms
    receipt["state"] = PLEDGED
    save(ctx, receipt)
    ctx.put(due_key(int(terms["due_ms"]), str(receipt["id"])), 1)
    ctx.emit(
        "PledgeApproved", receipt_id=receipt["id"], owner=receipt["owner"],
        financier=ctx.sender, principal=terms["principal"], rate_bps=terms["rate_bps"],
        due_ms=terms["due_ms"],
    )
    return None


@warehouse_receipt.method
def reject_pledge(ctx: Context, args: Args) -> JsonValue:
    """The financier rejects a pledge request, or the owner withdraws it."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    require_state(receipt, PLEDGE_PENDING)
    terms = pledge_of(receipt)
    if ctx.sender not in (terms["financier"], receipt["owner"]):
        raise ContractError("NOT_AUTHORIZED", "only the financier or the owner may reject")
    receipt["state"] = ACTIVE
    receipt["pledge"] = None
    save(ctx, receipt)
    ctx.emit("PledgeRejected", receipt_id=receipt["id"], financier=terms["financier"],
             by=ctx.sender)
    return None


def _loan_terms(receipt: Receipt) -> dict[str, JsonValue]:
    terms = pledge_of(receipt)
    if terms["controller"] is not None:
        raise ContractError(
            "PLEDGE_HELD_BY_CONTRACT", f"the pledge is held by {terms['controller']}; act there"
        )
    return terms


@warehouse_receipt.method
def repay_pledge(ctx: Context, args: Args) -> JsonValue:
    """The owner repays principal and interest to date; the receipt is released."""
    receipt = owned(ctx, args)
    terms = _loan_terms(receipt)
    require_state(receipt, PLEDGED, DEFAULTED)
    principal = int(terms["principal"])
    due = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]), ctx.time_ms)
    ctx.call("cash", "move", {"from": ctx.sender, "to": terms["financier"],
                              "amount": principal + due, "reason": "receipt pledge repayment"})
    if receipt["state"] == PLEDGED:
        ctx.delete(due_key(int(terms["due_ms"]), str(receipt["id"])))
    release(ctx, receipt)
    ctx.emit(
        "PledgeRepaid", receipt_id=receipt["id"], owner=receipt["owner"],
        financier=terms["financier"], principal=principal, interest=due, automatic=False,
    )
    return {"paid": principal + due}


@warehouse_receipt.method
def foreclose(ctx: Context, args: Args) -> JsonValue:
    """At default the financier forecloses: it becomes the owner of the receipt, unpledged."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    terms = _loan_terms(receipt)
    if ctx.sender != terms["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the pledge's financier may foreclose")
    require_state(receipt, DEFAULTED)
    borrower = str(receipt["owner"])
    principal = int(terms["principal"])
    accrued = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]),
                       int(terms["due_ms"]))
    set_owner(ctx, receipt, ctx.sender)
    release(ctx, receipt)
    ctx.emit(
        "ReceiptForeclosed", receipt_id=receipt["id"], borrower=borrower, financier=ctx.sender,
        principal=principal, interest=accrued, quantity=receipt["quantity"],
    )
    return None


@warehouse_receipt.hook
def settle_due_pledges(ctx: Context) -> None:
    """Loans falling due: collect from the owner if the balance allows, else mark DEFAULTED."""
    for key, receipt_id in falling_due(ctx, ctx.time_ms, DUE_PER_BLOCK_MAX):
        ctx.delete(key)
        receipt = load(ctx, receipt_id)
        assert receipt["state"] == PLEDGED, "only pledged receipts are in the due index"
        terms = pledge_of(receipt)
        assert terms["controller"] is None
        principal = int(terms["principal"])
        due = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]),
                       int(terms["due_ms"]))
        owner = str(receipt["owner"])
        balance = ctx.call("cash", "balance_internal", {"account": owner})
        assert isinstance(balance, int)
        if balance >= principal + due and principal + due <= AMOUNT_MAX:  # one move pays it
            ctx.call("cash", "move", {"from": owner, "to": terms["financier"],
                                      "amount": principal + due, "reason": "receipt pledge due"})
            release(ctx, receipt)
            ctx.emit(
                "PledgeRepaid", receipt_id=receipt_id, owner=owner, financier=terms["financier"],
                principal=principal, interest=due, automatic=True,
            )
        else:
            receipt["state"] = DEFAULTED
            save(ctx, receipt)
            ctx.emit(
                "PledgeDefaulted", receipt_id=receipt_id, owner=owner,
                financier=terms["financier"], principal=principal, interest=due,
                balance=balance,
            )


# ---------------------------------------------------------------------------------------------
# Redemption: the owner asks for the goods, the warehouse confirms delivery, the receipt ends.


@warehouse_receipt.method
def request_redemption(ctx: Context, args: Args) -> JsonValue:
    receipt = owned(ctx, args)
    require_free(receipt)
    receipt["state"] = REDEEM_PENDING
    save(ctx, receipt)
    ctx.emit("RedemptionRequested", receipt_id=receipt["id"], owner=receipt["owner"],
             warehouse=receipt["warehouse"], quantity=receipt["quantity"])
    return None


@warehouse_receipt.method
def cancel_redemption(ctx: Context, args: Args) -> JsonValue:
    receipt = load(ctx, args.hex_id("receipt_id"))
    if ctx.sender not in (receipt["owner"], receipt["warehouse"]):
        raise ContractError("NOT_AUTHORIZED", "only the owner or the warehouse may cancel")
    require_state(receipt, REDEEM_PENDING)
    receipt["state"] = ACTIVE
    save(ctx, receipt)
    ctx.emit("RedemptionCancelled", receipt_id=receipt["id"], by=ctx.sender)
    return None


@warehouse_receipt.method
def confirm_delivery(ctx: Context, args: Args) -> JsonValue:
    """The issuing warehouse confirms it delivered the goods; the receipt is cancelled."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    if ctx.sender != receipt["warehouse"]:
        raise ContractError("NOT_AUTHORIZED", "only the issuing warehouse confirms delivery")
    require_state(receipt, REDEEM_PENDING)
    totals = ctx.get(f"root/{receipt['root']}")
    assert isinstance(totals, dict)
    totals["redeemed"] += receipt["quantity"]
    assert totals["redeemed"] <= totals["issued"], "conservation"
    ctx.put(f"root/{receipt['root']}", totals)
    ctx.delete(f"own/{receipt['owner']}/{receipt['id']}")
    receipt["state"] = REDEEMED
    save(ctx, receipt)
    ctx.emit(
        "ReceiptRedeemed", receipt_id=receipt["id"], owner=receipt["owner"],
        warehouse=ctx.sender, commodity=receipt["commodity"], quantity=receipt["quantity"],
    )
    return None


# ---------------------------------------------------------------------------------------------
# Contract pledges: internal methods for contracts that hold goods as collateral (prepayment).


def _require_pledging_contract(ctx: Context) -> None:
    if ctx.sender not in PLEDGING_CONTRACTS:
        raise ContractError("NOT_AUTHORIZED", f"{ctx.sender} may not hold receipt pledges")


@warehouse_receipt.internal_method
def issue_pledged(ctx: Context, args: Args) -> JsonValue:
    """Issue a receipt born pledged to a financier and held by the calling contract.

    The tx's signer (origin) is the warehouse that took the goods in.
    """
    _require_pledging_contract(ctx)
    require_role(ctx, ctx.origin, "warehouse")
    owner = args.account("owner")
    financier = args.account("financier")
    # The holding contract's deal is already made and financed: a party suspended since is
    # still served (the financier gets its collateral), so roles are checked, not suspension.
    require_party_role(ctx, owner, *HOLDER_ROLES)
    require_party_role(ctx, financier, "financier")
    terms = {"financier": financier, "controller": ctx.sender, "principal": None,
             "rate_bps": None, "due_ms": None, "approved_ms": ctx.time_ms}
    receipt = new_receipt(ctx, ctx.origin, owner, goods(args), terms)
    ctx.emit("ReceiptPledged", receipt_id=receipt["id"], owner=owner, financier=financier,
             controller=ctx.sender, quantity=receipt["quantity"])
    return {"receipt_id": receipt["id"]}


@warehouse_receipt.internal_method
def release_pledge(ctx: Context, args: Args) -> JsonValue:
    """Release quantity of a contract-held pledge to `to`; the rest stays pledged (a split)."""
    receipt = load(ctx, args.hex_id("receipt_id"))
    quantity = args.amount("quantity")
    target = args.account("to")
    terms = pledge_of(receipt)
    if ctx.sender != terms["controller"]:
        raise ContractError("NOT_AUTHORIZED", "only the contract holding the pledge releases it")
    require_state(receipt, PLEDGED)
    # No role check on `to`: the holding contract chose its parties when the deal was made, and
    # a block-end hook (a buy-back) must not fail because a party was suspended since.
    whole = int(receipt["quantity"])
    if quantity > whole:
        raise ContractError("QUANTITY_EXCEEDED", f"the receipt holds {whole}, not {quantity}")
    if quantity == whole:
        released, still_pledged = receipt, None
        if target != receipt["owner"]:
            set_owner(ctx, receipt, target)
        release(ctx, receipt)
    else:
        released, still_pledged = split_receipt(
            ctx, receipt,
            [(target, quantity, ACTIVE, None),
             (str(receipt["owner"]), whole - quantity, PLEDGED, terms)],
        )
    ctx.emit(
        "PledgeReleased", receipt_id=receipt["id"], released_id=released["id"], to=target,
        quantity=quantity, financier=terms["financier"],
        pledged_id=None if still_pledged is None else still_pledged["id"],
        remaining=whole - quantity,
    )
    return {
        "released_id": released["id"],
        "pledged_id": None if still_pledged is None else still_pledged["id"],
    }


# ---------------------------------------------------------------------------------------------
# Views.


@warehouse_receipt.view
def receipt(ctx: ReadContext, args: Args) -> JsonValue:
    """A receipt, for a reader who may see it (contracts/visibility.py)."""
    found = load(ctx, args.hex_id("receipt_id"))
    return require_in_tree(ctx, RECEIPT, found, lambda: _tree(ctx, str(found["root"])))


def _tree(ctx: ReadContext, root: str) -> list[Receipt]:
    """Every receipt of a lineage in id order, read from state (not through a view)."""
    return listed(ctx, "tree", root, load, LIST_MAX)


@warehouse_receipt.view
def receipts_of(ctx: ReadContext, args: Args) -> JsonValue:
    """An owner's live receipts (at most 500), in id order; those the reader may see."""
    return readable(ctx.reader, RECEIPT, listed(ctx, "own", args.account("owner"), load, LIST_MAX))


@warehouse_receipt.view
def lineage(ctx: ReadContext, args: Args) -> JsonValue:
    """A root's issued and redeemed quantities and every receipt descended from it. A reader
    other than the warehouse and the auditor gets its receipts and their paths to the root
    (`"partial": true`, without the lineage's totals)."""
    root = args.hex_id("root_id")
    totals = ctx.get(f"root/{root}")
    if totals is None:
        raise ContractError("UNKNOWN_RECEIPT", f"no receipt lineage rooted at {root[:16]}…")
    members = _tree(ctx, root)
    shown = require_lineage(ctx, RECEIPT, root, members)
    if shown is not None:
        receipts = [pruned(r, shown) for r in members if r["id"] in shown]
        return {**partial_summary(RECEIPT, {"root_id": root, **totals}), "receipts": receipts}
    live = sum(int(r["quantity"]) for r in members if r["state"] in LIVE_STATES)
    return {"root_id": root, **totals, "live": live, "receipts": members}
