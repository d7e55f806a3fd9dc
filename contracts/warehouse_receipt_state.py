"""Warehouse receipt records and indexes: the one place that knows the `warehouse_receipt/` keys.

Keys (namespace `warehouse_receipt/`):
  `r/<id>`            the receipt record
  `doc/<hash>`        receipt id backed by an inspection document (one document, one receipt)
  `root/<root>`       {issued, redeemed, count} of a lineage (root = the issued receipt)
  `tree/<root>/<id>`  every receipt of a lineage, for the lineage view
  `own/<owner>/<id>`  live receipts by owner
  `due/<ms>/<id>`     pledged receipts whose loans fall due at ms (see contracts/schedule.py)
  `record_format`     2: receipt records are stored in binary (a chain of state format 2,
                      contracts/binary_records.py); absent: canonical JSON

States: ACTIVE (free), LISTED (offered on an exchange), PLEDGE_PENDING, PLEDGED, DEFAULTED
(pledged and the loan unpaid at its due date), REDEEM_PENDING, REDEEMED (cancelled: goods
delivered), SPLIT (replaced by its children). Only an ACTIVE receipt moves, splits, is listed,
pledged or offered for redemption. Quantity is conserved: for every root, the quantities of live
receipts plus the redeemed quantity equal the issued quantity.
"""

from __future__ import annotations

from contracts import binary_records
from contracts.runtime import Args, Context, ContractError, JsonValue, ReadContext, encode

ACTIVE = "ACTIVE"
LISTED = "LISTED"
PLEDGE_PENDING = "PLEDGE_PENDING"
PLEDGED = "PLEDGED"
DEFAULTED = "DEFAULTED"
REDEEM_PENDING = "REDEEM_PENDING"
REDEEMED = "REDEEMED"
SPLIT = "SPLIT"
STATES = (ACTIVE, LISTED, PLEDGE_PENDING, PLEDGED, DEFAULTED, REDEEM_PENDING, REDEEMED, SPLIT)
assert set(STATES) <= set(binary_records.RECEIPT_STATES)
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


def load(ctx: Context | ReadContext, receipt_id: str) -> Receipt:
    found = ctx.get(f"r/{receipt_id}")
    if found is None:
        raise ContractError("UNKNOWN_RECEIPT", f"no warehouse receipt {receipt_id[:16]}…")
    assert isinstance(found, dict) and found["state"] in STATES
    return found


def save(ctx: Context, receipt: Receipt) -> None:
    assert receipt["state"] in STATES and int(receipt["quantity"]) > 0
    assert (receipt["pledge"] is not None) == (
        receipt["state"] in (PLEDGE_PENDING, PLEDGED, DEFAULTED)
    ), "a receipt has a pledge exactly when it is pledged or pledge-pending"
    binary = ctx.get("record_format") == binary_records.BINARY_RECORDS
    raw = binary_records.pack_receipt(receipt) if binary else None
    ctx.put_encoded(f"r/{receipt['id']}", encode(receipt) if raw is None else raw)


def set_owner(ctx: Context, receipt: Receipt, owner: str) -> None:
    ctx.delete(f"own/{receipt['owner']}/{receipt['id']}")
    receipt["owner"] = owner
    ctx.put(f"own/{owner}/{receipt['id']}", 1)


def owned(ctx: Context, args: Args) -> Receipt:
    receipt = load(ctx, args.hex_id("receipt_id"))
    if receipt["owner"] != ctx.sender:
        raise ContractError("NOT_AUTHORIZED", "only the receipt's owner may do this")
    return receipt


def require_free(receipt: Receipt) -> None:
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


def require_state(receipt: Receipt, *states: str) -> None:
    if receipt["state"] not in states:
        raise ContractError(
            "WRONG_STATE", f"the receipt is {receipt['state']}; this needs {' or '.join(states)}"
        )


def goods(args: Args) -> dict[str, JsonValue]:
    return {
        "commodity": args.text("commodity", chars_max=64),
        "quantity": args.amount("quantity"),
        "unit": args.text("unit", chars_max=16),
        "grade": args.text("grade", chars_max=32),
        "location": args.text("location", chars_max=128),
        "inspection_hash": args.hex_id("inspection_hash"),
    }


def new_receipt(
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
    save(ctx, receipt)
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


def split_receipt(
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
        # Not read to check it is free: the id is the SHA-256 of this tx's id (a tx runs once)
        # and the parent's id and index, distinct within the tx; a clash is a SHA-256 collision.
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
        save(ctx, child)
        children.append(child)
    ctx.delete(f"own/{parent['owner']}/{parent['id']}")
    parent["state"] = SPLIT
    parent["pledge"] = None
    parent["children"] = [child["id"] for child in children]
    save(ctx, parent)
    ctx.emit(
        "ReceiptSplit",
        receipt_id=parent["id"],
        root=parent["root"],
        children=[child["id"] for child in children],
        owners=[child["owner"] for child in children],
        quantities=[child["quantity"] for child in children],
    )
    return children


def pledge_of(receipt: Receipt) -> dict[str, JsonValue]:
    found = receipt["pledge"]
    if not isinstance(found, dict):
        raise ContractError("WRONG_STATE", f"the receipt is {receipt['state']}, not pledged")
    return found


def release(ctx: Context, receipt: Receipt) -> None:
    receipt["state"] = ACTIVE
    receipt["pledge"] = None
    save(ctx, receipt)
