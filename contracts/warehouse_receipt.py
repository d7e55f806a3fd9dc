"""Electronic warehouse receipts: title to goods in a warehouse, moved, sold, pledged, redeemed.

Keys (namespace `warehouse_receipt/`):
  `r/<id>`            the receipt record
  `doc/<hash>`        receipt id backed by an inspection document (one document, one receipt)
  `root/<root>`       {issued, redeemed} quantities of a lineage (root = the issued receipt)
  `tree/<root>/<id>`  every receipt of a lineage, for the lineage view
  `own/<owner>/<id>`  live receipts by owner
  `due/<ms>/<id>`     pledged receipts whose loans fall due at ms (see contracts/schedule.py)

States: ACTIVE (free), LISTED (offered on an exchange), PLEDGE_PENDING, PLEDGED, DEFAULTED
(pledged and the loan unpaid at its due date), REDEEM_PENDING, REDEEMED (cancelled: goods
delivered), SPLIT (replaced by its children). Only an ACTIVE receipt moves, splits, is listed,
pledged or offered for redemption. Quantity is conserved: for every root, the quantities of live
receipts plus the redeemed quantity equal the issued quantity.

Pledges come in two kinds. A loan pledge is agreed between the owner and a financier here; at its
due date a block-end hook collects principal and interest from the owner if the balance allows,
otherwise the receipt defaults and the financier may foreclose. A contract pledge (prepayment
goods) is made and released only by the contract that holds it, through internal methods.
"""

from __future__ import annotations

from contracts.engine import (
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
from contracts.schedule import due_key, falling_due, interest

warehouse_receipt = Contract("warehouse_receipt")

ACTIVE = "ACTIVE"
LISTED = "LISTED"
PLEDGE_PENDING = "PLEDGE_PENDING"
PLEDGED = "PLEDGED"
DEFAULTED = "DEFAULTED"
REDEEM_PENDING = "REDEEM_PENDING"
REDEEMED = "REDEEMED"
SPLIT = "SPLIT"
STATES = (ACTIVE, LISTED, PLEDGE_PENDING, PLEDGED, DEFAULTED, REDEEM_PENDING, REDEEMED, SPLIT)
LIVE_STATES = (ACTIVE, LISTED, PLEDGE_PENDING, PLEDGED, DEFAULTED, REDEEM_PENDING)

HOLDER_ROLES = ("core_enterprise", "supplier", "dealer", "financier")
PLEDGING_CONTRACTS = ("contract:prepayment",)  # contracts allowed to hold pledges
SPLIT_PARTS_MAX = 16
RECEIPTS_PER_ROOT_MAX = 256  # bounds a lineage (and its view); splits beyond it are refused
DUE_PER_BLOCK_MAX = 256
LIST_MAX = 500

Receipt = dict[str, JsonValue]


# ---------------------------------------------------------------------------------------------
# Records and indexes.


def _load(ctx: Context | ReadContext, receipt_id: str) -> Receipt:
    found = ctx.get(f"r/{receipt_id}")
    if found is None:
        raise ContractError("UNKNOWN_RECEIPT", f"no warehouse receipt {receipt_id[:16]}…")
    assert isinstance(found, dict) and found["state"] in STATES
    return found


def _save(ctx: Context, receipt: Receipt) -> None:
    assert receipt["state"] in STATES and int(receipt["quantity"]) > 0
    assert (receipt["pledge"] is not None) == (
        receipt["state"] in (PLEDGE_PENDING, PLEDGED, DEFAULTED)
    ), "a receipt has a pledge exactly when it is pledged or pledge-pending"
    ctx.put(f"r/{receipt['id']}", receipt)


def _set_owner(ctx: Context, receipt: Receipt, owner: str) -> None:
    ctx.delete(f"own/{receipt['owner']}/{receipt['id']}")
    receipt["owner"] = owner
    ctx.put(f"own/{owner}/{receipt['id']}", 1)


def _owned(ctx: Context, args: Args) -> Receipt:
    receipt = _load(ctx, args.hex_id("receipt_id"))
    if receipt["owner"] != ctx.sender:
        raise ContractError("NOT_AUTHORIZED", "only the receipt's owner may do this")
    return receipt


def _require_free(receipt: Receipt) -> None:
    """Refuse unless the receipt is ACTIVE: pledged, listed, pending or closed ones do not move."""
    state = receipt["state"]
    if state == ACTIVE:
        return
    if state in (PLEDGE_PENDING, PLEDGED, DEFAULTED):
        raise ContractError("RECEIPT_PLEDGED", f"the receipt is {state}; it cannot move")
    if state == LISTED:
        raise ContractError("RECEIPT_LISTED", "the receipt is listed on an exchange; delist first")
    if state == REDEEM_PENDING:
        raise ContractError("REDEMPTION_PENDING", "the receipt is being redeemed for its goods")
    raise ContractError("RECEIPT_CLOSED", f"the receipt is {state} and no longer live")


def _require_state(receipt: Receipt, *states: str) -> None:
    if receipt["state"] not in states:
        raise ContractError(
            "WRONG_STATE", f"the receipt is {receipt['state']}; this needs {' or '.join(states)}"
        )


def _goods(args: Args) -> dict[str, JsonValue]:
    return {
        "commodity": args.text("commodity", chars_max=64),
        "quantity": args.amount("quantity"),
        "unit": args.text("unit", chars_max=16),
        "grade": args.text("grade", chars_max=32),
        "location": args.text("location", chars_max=128),
        "inspection_hash": args.hex_id("inspection_hash"),
    }


def _issue(
    ctx: Context, warehouse: str, owner: str, goods: dict[str, JsonValue], pledge: JsonValue
) -> Receipt:
    doc = goods["inspection_hash"]
    used = ctx.get(f"doc/{doc}")
    if used is not None:
        raise ContractError("DOCUMENT_USED", f"inspection document already backs receipt {used}")
    receipt_id = ctx.derive_id("warehouse_receipt")
    receipt: Receipt = {
        **goods,
        "id": receipt_id,
        "root": receipt_id,
        "parent": None,
        "children": [],
        "warehouse": warehouse,
        "owner": owner,
        "state": PLEDGED if pledge is not None else ACTIVE,
        "pledge": pledge,
        "listing": None,
        "issued_ms": ctx.time_ms,
    }
    ctx.put(f"doc/{doc}", receipt_id)
    ctx.put(f"root/{receipt_id}", {"issued": goods["quantity"], "redeemed": 0, "count": 1})
    ctx.put(f"tree/{receipt_id}/{receipt_id}", 1)
    ctx.put(f"own/{owner}/{receipt_id}", 1)
    _save(ctx, receipt)
    ctx.emit(
        "ReceiptIssued",
        receipt_id=receipt_id,
        warehouse=warehouse,
        owner=owner,
        commodity=goods["commodity"],
        quantity=goods["quantity"],
        unit=goods["unit"],
        grade=goods["grade"],
        location=goods["location"],
        inspection_hash=doc,
    )
    return receipt


def _split(
    ctx: Context, parent: Receipt, parts: list[tuple[str, int, str, JsonValue]]
) -> list[Receipt]:
    """Replace parent by children (owner, quantity, state, pledge); quantities sum to parent's."""
    assert sum(quantity for _, quantity, _, _ in parts) == parent["quantity"], "conservation"
    assert all(quantity > 0 for _, quantity, _, _ in parts)
    totals = ctx.get(f"root/{parent['root']}")
    assert isinstance(totals, dict)
    if totals["count"] + len(parts) > RECEIPTS_PER_ROOT_MAX:
        raise ContractError(
            "LINEAGE_FULL", f"a lineage holds at most {RECEIPTS_PER_ROOT_MAX} receipts"
        )
    totals["count"] += len(parts)
    ctx.put(f"root/{parent['root']}", totals)
    children: list[Receipt] = []
    for index, (owner, quantity, state, pledge) in enumerate(parts):
        child_id = ctx.derive_id("warehouse_receipt:split", parent["id"], index)
        assert ctx.get(f"r/{child_id}") is None, "derived ids never collide"
        child: Receipt = {
            **parent,
            "id": child_id,
            "parent": parent["id"],
            "children": [],
            "owner": owner,
            "quantity": quantity,
            "state": state,
            "pledge": pledge,
            "listing": None,
        }
        ctx.put(f"tree/{parent['root']}/{child_id}", 1)
        ctx.put(f"own/{owner}/{child_id}", 1)
        _save(ctx, child)
        children.append(child)
    ctx.delete(f"own/{parent['owner']}/{parent['id']}")
    parent["state"] = SPLIT
    parent["pledge"] = None
    parent["children"] = [child["id"] for child in children]
    _save(ctx, parent)
    ctx.emit(
        "ReceiptSplit",
        receipt_id=parent["id"],
        root=parent["root"],
        children=[child["id"] for child in children],
        owners=[child["owner"] for child in children],
        quantities=[child["quantity"] for child in children],
    )
    return children


# ---------------------------------------------------------------------------------------------
# Issue, transfer, split.


@warehouse_receipt.method
def issue(ctx: Context, args: Args) -> JsonValue:
    """A warehouse issues a receipt for goods it has taken in and inspected."""
    require_role(ctx, ctx.sender, "warehouse")
    owner = args.account("owner")
    require_role(ctx, owner, *HOLDER_ROLES)
    receipt = _issue(ctx, ctx.sender, owner, _goods(args), None)
    return {"receipt_id": receipt["id"]}


@warehouse_receipt.method
def transfer(ctx: Context, args: Args) -> JsonValue:
    """The owner transfers all of a receipt, or part of it (a split into two children)."""
    receipt = _owned(ctx, args)
    target = args.account("to")
    quantity = args.integer("quantity", default=int(receipt["quantity"]))
    if target == receipt["owner"]:
        raise ContractError("INVALID_ARGS", "cannot transfer a receipt to its owner")
    require_role(ctx, target, *HOLDER_ROLES)
    _require_free(receipt)
    whole = int(receipt["quantity"])
    if quantity > whole:
        raise ContractError("QUANTITY_EXCEEDED", f"the receipt holds {whole}, not {quantity}")
    source = receipt["owner"]
    if quantity == whole:
        _set_owner(ctx, receipt, target)
        _save(ctx, receipt)
        moved = receipt
    else:
        parts = [(target, quantity, ACTIVE, None), (source, whole - quantity, ACTIVE, None)]
        moved, _ = _split(ctx, receipt, parts)
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
    receipt = _owned(ctx, args)
    quantities = args.int_list("quantities", items_max=SPLIT_PARTS_MAX)
    if len(quantities) < 2:
        raise ContractError("INVALID_ARGS", "a split needs at least two parts")
    _require_free(receipt)
    if sum(quantities) != receipt["quantity"]:
        raise ContractError(
            "QUANTITY_MISMATCH", f"parts sum to {sum(quantities)}, not {receipt['quantity']}"
        )
    owner = receipt["owner"]
    children = _split(ctx, receipt, [(owner, q, ACTIVE, None) for q in quantities])
    return {"receipt_ids": [child["id"] for child in children]}


# ---------------------------------------------------------------------------------------------
# Exchange: list, delist, buy (delivery versus payment in one tx).


@warehouse_receipt.method
def list_for_sale(ctx: Context, args: Args) -> JsonValue:
    receipt = _owned(ctx, args)
    exchange = args.account("exchange")
    price = args.amount("price")
    require_role(ctx, exchange, "exchange")
    _require_free(receipt)
    receipt["state"] = LISTED
    receipt["listing"] = {"exchange": exchange, "price": price}
    _save(ctx, receipt)
    ctx.emit(
        "ReceiptListed", receipt_id=receipt["id"], owner=receipt["owner"], exchange=exchange,
        price=price, quantity=receipt["quantity"],
    )
    return None


@warehouse_receipt.method
def delist(ctx: Context, args: Args) -> JsonValue:
    """The owner or the listing exchange withdraws a listing."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    _require_state(receipt, LISTED)
    listing = receipt["listing"]
    assert isinstance(listing, dict)
    if ctx.sender not in (receipt["owner"], listing["exchange"]):
        raise ContractError("NOT_AUTHORIZED", "only the owner or the listing exchange may delist")
    receipt["state"] = ACTIVE
    receipt["listing"] = None
    _save(ctx, receipt)
    ctx.emit("ReceiptDelisted", receipt_id=receipt["id"], by=ctx.sender)
    return None


@warehouse_receipt.method
def buy(ctx: Context, args: Args) -> JsonValue:
    """Buy a listed receipt: the price is paid and the title passes in this one tx, or neither."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    price = args.amount("price")
    require_role(ctx, ctx.sender, *HOLDER_ROLES)
    _require_state(receipt, LISTED)
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
    _set_owner(ctx, receipt, ctx.sender)
    _save(ctx, receipt)
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
    receipt = _owned(ctx, args)
    financier = args.account("financier")
    principal = args.amount("principal")
    rate_bps = args.integer("rate_bps", minimum=0, maximum=RATE_BPS_MAX)
    due_ms = args.integer("due_ms", maximum=TIME_MS_MAX)
    if financier == receipt["owner"]:
        raise ContractError("INVALID_ARGS", "the owner cannot lend against its own receipt")
    require_role(ctx, financier, "financier")
    _require_free(receipt)
    if due_ms <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the loan's due date must be after this block's time")
    receipt["state"] = PLEDGE_PENDING
    receipt["pledge"] = {
        "financier": financier, "controller": None, "principal": principal,
        "rate_bps": rate_bps, "due_ms": due_ms, "approved_ms": None,
    }
    _save(ctx, receipt)
    ctx.emit(
        "PledgeRequested", receipt_id=receipt["id"], owner=receipt["owner"], financier=financier,
        principal=principal, rate_bps=rate_bps, due_ms=due_ms,
    )
    return None


def _pledge_of(receipt: Receipt) -> dict[str, JsonValue]:
    found = receipt["pledge"]
    if not isinstance(found, dict):
        raise ContractError("WRONG_STATE", f"the receipt is {receipt['state']}, not pledged")
    return found


@warehouse_receipt.method
def approve_pledge(ctx: Context, args: Args) -> JsonValue:
    """The financier approves: it pays the principal to the owner and holds the pledge."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    _require_state(receipt, PLEDGE_PENDING)
    terms = _pledge_of(receipt)
    if ctx.sender != terms["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the financier asked may approve")
    require_role(ctx, ctx.sender, "financier")
    if int(terms["due_ms"]) <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the loan's due date has passed; reject instead")
    ctx.call("cash", "move", {"from": ctx.sender, "to": receipt["owner"],
                              "amount": terms["principal"], "reason": "receipt pledge loan"})
    terms["approved_ms"] = ctx.time_ms
    receipt["state"] = PLEDGED
    _save(ctx, receipt)
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
    receipt = _load(ctx, args.hex_id("receipt_id"))
    _require_state(receipt, PLEDGE_PENDING)
    terms = _pledge_of(receipt)
    if ctx.sender not in (terms["financier"], receipt["owner"]):
        raise ContractError("NOT_AUTHORIZED", "only the financier or the owner may reject")
    receipt["state"] = ACTIVE
    receipt["pledge"] = None
    _save(ctx, receipt)
    ctx.emit("PledgeRejected", receipt_id=receipt["id"], financier=terms["financier"],
             by=ctx.sender)
    return None


def _loan_terms(receipt: Receipt) -> dict[str, JsonValue]:
    terms = _pledge_of(receipt)
    if terms["controller"] is not None:
        raise ContractError(
            "PLEDGE_HELD_BY_CONTRACT", f"the pledge is held by {terms['controller']}; act there"
        )
    return terms


def _release(ctx: Context, receipt: Receipt) -> None:
    receipt["state"] = ACTIVE
    receipt["pledge"] = None
    _save(ctx, receipt)


@warehouse_receipt.method
def repay_pledge(ctx: Context, args: Args) -> JsonValue:
    """The owner repays principal and interest to date; the receipt is released."""
    receipt = _owned(ctx, args)
    terms = _loan_terms(receipt)
    _require_state(receipt, PLEDGED, DEFAULTED)
    principal = int(terms["principal"])
    due = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]), ctx.time_ms)
    ctx.call("cash", "move", {"from": ctx.sender, "to": terms["financier"],
                              "amount": principal + due, "reason": "receipt pledge repayment"})
    if receipt["state"] == PLEDGED:
        ctx.delete(due_key(int(terms["due_ms"]), str(receipt["id"])))
    _release(ctx, receipt)
    ctx.emit(
        "PledgeRepaid", receipt_id=receipt["id"], owner=receipt["owner"],
        financier=terms["financier"], principal=principal, interest=due, automatic=False,
    )
    return {"paid": principal + due}


@warehouse_receipt.method
def foreclose(ctx: Context, args: Args) -> JsonValue:
    """At default the financier forecloses: it becomes the owner of the receipt, unpledged."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    terms = _loan_terms(receipt)
    if ctx.sender != terms["financier"]:
        raise ContractError("NOT_AUTHORIZED", "only the pledge's financier may foreclose")
    _require_state(receipt, DEFAULTED)
    borrower = str(receipt["owner"])
    principal = int(terms["principal"])
    accrued = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]),
                       int(terms["due_ms"]))
    _set_owner(ctx, receipt, ctx.sender)
    _release(ctx, receipt)
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
        receipt = _load(ctx, receipt_id)
        assert receipt["state"] == PLEDGED, "only pledged receipts are in the due index"
        terms = _pledge_of(receipt)
        assert terms["controller"] is None
        principal = int(terms["principal"])
        due = interest(principal, int(terms["rate_bps"]), int(terms["approved_ms"]),
                       int(terms["due_ms"]))
        owner = str(receipt["owner"])
        balance = ctx.call("cash", "balance_internal", {"account": owner})
        assert isinstance(balance, int)
        if balance >= principal + due:
            ctx.call("cash", "move", {"from": owner, "to": terms["financier"],
                                      "amount": principal + due, "reason": "receipt pledge due"})
            _release(ctx, receipt)
            ctx.emit(
                "PledgeRepaid", receipt_id=receipt_id, owner=owner, financier=terms["financier"],
                principal=principal, interest=due, automatic=True,
            )
        else:
            receipt["state"] = DEFAULTED
            _save(ctx, receipt)
            ctx.emit(
                "PledgeDefaulted", receipt_id=receipt_id, owner=owner,
                financier=terms["financier"], principal=principal, interest=due,
                balance=balance,
            )


# ---------------------------------------------------------------------------------------------
# Redemption: the owner asks for the goods, the warehouse confirms delivery, the receipt ends.


@warehouse_receipt.method
def request_redemption(ctx: Context, args: Args) -> JsonValue:
    receipt = _owned(ctx, args)
    _require_free(receipt)
    receipt["state"] = REDEEM_PENDING
    _save(ctx, receipt)
    ctx.emit("RedemptionRequested", receipt_id=receipt["id"], owner=receipt["owner"],
             warehouse=receipt["warehouse"], quantity=receipt["quantity"])
    return None


@warehouse_receipt.method
def cancel_redemption(ctx: Context, args: Args) -> JsonValue:
    receipt = _load(ctx, args.hex_id("receipt_id"))
    if ctx.sender not in (receipt["owner"], receipt["warehouse"]):
        raise ContractError("NOT_AUTHORIZED", "only the owner or the warehouse may cancel")
    _require_state(receipt, REDEEM_PENDING)
    receipt["state"] = ACTIVE
    _save(ctx, receipt)
    ctx.emit("RedemptionCancelled", receipt_id=receipt["id"], by=ctx.sender)
    return None


@warehouse_receipt.method
def confirm_delivery(ctx: Context, args: Args) -> JsonValue:
    """The issuing warehouse confirms it delivered the goods; the receipt is cancelled."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    if ctx.sender != receipt["warehouse"]:
        raise ContractError("NOT_AUTHORIZED", "only the issuing warehouse confirms delivery")
    _require_state(receipt, REDEEM_PENDING)
    totals = ctx.get(f"root/{receipt['root']}")
    assert isinstance(totals, dict)
    totals["redeemed"] += receipt["quantity"]
    assert totals["redeemed"] <= totals["issued"], "conservation"
    ctx.put(f"root/{receipt['root']}", totals)
    ctx.delete(f"own/{receipt['owner']}/{receipt['id']}")
    receipt["state"] = REDEEMED
    _save(ctx, receipt)
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
    require_role(ctx, owner, *HOLDER_ROLES)
    require_role(ctx, financier, "financier")
    terms = {"financier": financier, "controller": ctx.sender, "principal": None,
             "rate_bps": None, "due_ms": None, "approved_ms": ctx.time_ms}
    receipt = _issue(ctx, ctx.origin, owner, _goods(args), terms)
    ctx.emit("ReceiptPledged", receipt_id=receipt["id"], owner=owner, financier=financier,
             controller=ctx.sender, quantity=receipt["quantity"])
    return {"receipt_id": receipt["id"]}


@warehouse_receipt.internal_method
def release_pledge(ctx: Context, args: Args) -> JsonValue:
    """Release quantity of a contract-held pledge to `to`; the rest stays pledged (a split)."""
    receipt = _load(ctx, args.hex_id("receipt_id"))
    quantity = args.amount("quantity")
    target = args.account("to")
    terms = _pledge_of(receipt)
    if ctx.sender != terms["controller"]:
        raise ContractError("NOT_AUTHORIZED", "only the contract holding the pledge releases it")
    _require_state(receipt, PLEDGED)
    # No role check on `to`: the holding contract chose its parties when the deal was made, and
    # a block-end hook (a buy-back) must not fail because a party was suspended since.
    whole = int(receipt["quantity"])
    if quantity > whole:
        raise ContractError("QUANTITY_EXCEEDED", f"the receipt holds {whole}, not {quantity}")
    if quantity == whole:
        released, still_pledged = receipt, None
        if target != receipt["owner"]:
            _set_owner(ctx, receipt, target)
        _release(ctx, receipt)
    else:
        released, still_pledged = _split(
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
    return _load(ctx, args.hex_id("receipt_id"))


@warehouse_receipt.view
def receipts_of(ctx: ReadContext, args: Args) -> JsonValue:
    """An owner's live receipts (at most 500), in id order."""
    owner = args.account("owner")
    prefix = f"own/{owner}/"
    return [_load(ctx, key[len(prefix):]) for key, _ in ctx.scan(prefix, LIST_MAX)]


@warehouse_receipt.view
def lineage(ctx: ReadContext, args: Args) -> JsonValue:
    """A root's issued and redeemed quantities and every receipt descended from it."""
    root = args.hex_id("root_id")
    totals = ctx.get(f"root/{root}")
    if totals is None:
        raise ContractError("UNKNOWN_RECEIPT", f"no receipt lineage rooted at {root[:16]}…")
    prefix = f"tree/{root}/"
    members = [_load(ctx, key[len(prefix):]) for key, _ in ctx.scan(prefix, LIST_MAX)]
    live = sum(int(r["quantity"]) for r in members if r["state"] in LIVE_STATES)
    return {"root_id": root, **totals, "live": live, "receipts": members}
