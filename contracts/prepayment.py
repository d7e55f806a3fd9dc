"""Prepayment financing: a financier pays a core for a dealer's goods, held as its collateral.

Keys (namespace `prepayment/`):
  `d/<id>`               the deal record
  `config`               {margin_bps_min}: the least margin, as a share of the price (admin sets)
  `party/<account>/<id>` deals by dealer, core, financier and warehouse
  `due/<ms>/<id>`        financed deals whose repayment falls due at ms

States: APPLIED (dealer) -> CONFIRMED (core sells and guarantees buy-back) or REJECTED ->
FINANCED (financier approves: the dealer's margin and the financier's share pay the core) ->
GOODS_HELD (the warehouse lodges the goods as a receipt pledged to the financier, held by this
contract through warehouse_receipt's internal methods) -> REPAID (dealer repaid everything).
At the due date a block-end hook runs the core's buy-back: it pays the financier the outstanding
principal plus interest and the remaining goods go to the core (BOUGHT_BACK); if the core cannot
pay yet, the deal is BUYBACK_DUE until the core calls `buy_back`.

Each repayment of principal pays its interest (from approval to that day) and releases
`quantity * repaid // financed` goods in total, rounded down: never more than repaid for.
"""

from __future__ import annotations

from contracts.parties import LIST_MAX, PARTY_INDEX, add_party, listed, require_party
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
    require_role,
)
from contracts.schedule import BPS, due_key, falling_due, interest
from contracts.visibility import DEAL, readable, require_readable

prepayment = Contract("prepayment")

APPLIED = "APPLIED"
CONFIRMED = "CONFIRMED"
REJECTED = "REJECTED"
FINANCED = "FINANCED"
GOODS_HELD = "GOODS_HELD"
REPAID = "REPAID"
BUYBACK_DUE = "BUYBACK_DUE"
BOUGHT_BACK = "BOUGHT_BACK"
STATES = (APPLIED, CONFIRMED, REJECTED, FINANCED, GOODS_HELD, REPAID, BUYBACK_DUE, BOUGHT_BACK)

MARGIN_BPS_MIN_DEFAULT = 3_000  # 30 % until an admin configures otherwise
DUE_PER_BLOCK_MAX = 128  # each settlement may call cash and warehouse_receipt

Deal = dict[str, JsonValue]


def _load(ctx: Context | ReadContext, deal_id: str) -> Deal:
    found = ctx.get(f"d/{deal_id}")
    if found is None:
        raise ContractError("UNKNOWN_DEAL", f"no prepayment deal {deal_id[:16]}…")
    assert isinstance(found, dict) and found["state"] in STATES
    return found


def _save(ctx: Context, deal: Deal) -> None:
    financed, repaid = int(deal["financed"]), int(deal["repaid"])
    quantity, released = int(deal["quantity"]), int(deal["released"])
    returned = int(deal["returned"])
    assert deal["state"] in STATES
    assert 0 <= repaid <= financed and min(released, returned) >= 0
    assert released + returned <= quantity, "goods are conserved"
    assert released * financed <= repaid * quantity, "goods never released beyond repayment"
    assert deal["state"] != REPAID or released == quantity, "full repayment releases all goods"
    assert returned == 0 or deal["state"] == BOUGHT_BACK, "only a buy-back returns goods"
    ctx.put(f"d/{deal['id']}", deal)


def _require_state(deal: Deal, *states: str) -> None:
    if deal["state"] not in states:
        raise ContractError(
            "WRONG_STATE", f"the deal is {deal['state']}; this needs {' or '.join(states)}"
        )


def _require_party(ctx: Context, deal: Deal, party: str) -> None:
    require_party(ctx, deal, party, "deal")


def _margin_bps_min(ctx: Context | ReadContext) -> int:
    found = ctx.get("config")
    return MARGIN_BPS_MIN_DEFAULT if found is None else int(found["margin_bps_min"])


@prepayment.method
def configure(ctx: Context, args: Args) -> JsonValue:
    """An admin sets the least margin a dealer must pay, in bps of the price."""
    require_role(ctx, ctx.sender, "admin")
    margin_bps_min = args.integer("margin_bps_min", minimum=0, maximum=BPS - 1)
    ctx.put("config", {"margin_bps_min": margin_bps_min})
    ctx.emit("PrepaymentConfigured", margin_bps_min=margin_bps_min, by=ctx.sender)
    return None


@prepayment.method
def apply(ctx: Context, args: Args) -> JsonValue:
    """A dealer applies to buy goods from a core with a margin, the financier paying the rest."""
    require_role(ctx, ctx.sender, "dealer")
    core = args.account("core")
    financier = args.account("financier")
    warehouse = args.account("warehouse")
    commodity = args.text("commodity", chars_max=64)
    quantity = args.amount("quantity")
    unit = args.text("unit", chars_max=16)
    price = args.amount("price")
    margin = args.amount("margin")
    rate_bps = args.integer("rate_bps", minimum=0, maximum=RATE_BPS_MAX)
    due_ms = args.integer("due_ms", maximum=TIME_MS_MAX)
    require_role(ctx, core, "core_enterprise")
    require_role(ctx, financier, "financier")
    require_role(ctx, warehouse, "warehouse")
    if len({ctx.sender, core, financier, warehouse}) != 4:
        raise ContractError("INVALID_ARGS", "dealer, core, financier and warehouse must differ")
    if margin >= price:
        raise ContractError("INVALID_ARGS", "the margin must be less than the price")
    least = _margin_bps_min(ctx)
    if margin * BPS < price * least:
        raise ContractError(
            "MARGIN_TOO_LOW", f"the margin must be at least {least} bps of {price}"
        )
    if due_ms <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the due date must be after this block's time")
    deal_id = ctx.derive_id("prepayment")
    deal: Deal = {
        "id": deal_id, "dealer": ctx.sender, "core": core, "financier": financier,
        "warehouse": warehouse, "commodity": commodity, "quantity": quantity, "unit": unit,
        "price": price, "margin": margin, "financed": price - margin, "rate_bps": rate_bps,
        "due_ms": due_ms, "state": APPLIED, "approved_ms": None, "receipt_id": None,
        "repaid": 0, "interest_paid": 0, "released": 0, "returned": 0,
    }
    for party in (ctx.sender, core, financier, warehouse):
        add_party(ctx, party, deal_id)
    _save(ctx, deal)
    ctx.emit(
        "DealApplied", deal_id=deal_id, dealer=ctx.sender, core=core, financier=financier,
        warehouse=warehouse, commodity=commodity, quantity=quantity, price=price,
        margin=margin, rate_bps=rate_bps, due_ms=due_ms,
    )
    return {"deal_id": deal_id}


@prepayment.method
def confirm(ctx: Context, args: Args) -> JsonValue:
    """The core agrees to sell and guarantees to buy back what the dealer does not repay."""
    deal = _load(ctx, args.hex_id("deal_id"))
    _require_party(ctx, deal, "core")
    _require_state(deal, APPLIED)
    deal["state"] = CONFIRMED
    _save(ctx, deal)
    ctx.emit("DealConfirmed", deal_id=deal["id"], core=ctx.sender, dealer=deal["dealer"])
    return None


@prepayment.method
def reject(ctx: Context, args: Args) -> JsonValue:
    """The core or the financier turns an application down before it is financed."""
    deal = _load(ctx, args.hex_id("deal_id"))
    if ctx.sender not in (deal["core"], deal["financier"]):
        raise ContractError("NOT_AUTHORIZED", "only the deal's core or financier may reject")
    _require_state(deal, APPLIED, CONFIRMED)
    deal["state"] = REJECTED
    _save(ctx, deal)
    ctx.emit("DealRejected", deal_id=deal["id"], by=ctx.sender, dealer=deal["dealer"])
    return None


@prepayment.method
def approve(ctx: Context, args: Args) -> JsonValue:
    """The financier finances: the dealer's margin and the financier's share pay the core."""
    deal = _load(ctx, args.hex_id("deal_id"))
    _require_party(ctx, deal, "financier")
    require_role(ctx, ctx.sender, "financier")
    _require_state(deal, CONFIRMED)
    if int(deal["due_ms"]) <= ctx.time_ms:
        raise ContractError("DUE_PASSED", "the deal's due date has passed; reject instead")
    ctx.call("cash", "move", {"from": deal["dealer"], "to": deal["core"],
                              "amount": deal["margin"], "reason": "prepayment margin"})
    ctx.call("cash", "move", {"from": ctx.sender, "to": deal["core"],
                              "amount": deal["financed"], "reason": "prepayment financing"})
    deal["state"] = FINANCED
    deal["approved_ms"] = ctx.time_ms
    _save(ctx, deal)
    ctx.put(due_key(int(deal["due_ms"]), str(deal["id"])), 1)
    ctx.emit(
        "DealFinanced", deal_id=deal["id"], dealer=deal["dealer"], core=deal["core"],
        financier=ctx.sender, price=deal["price"], margin=deal["margin"],
        financed=deal["financed"], due_ms=deal["due_ms"],
    )
    return None


@prepayment.method
def lodge_goods(ctx: Context, args: Args) -> JsonValue:
    """The named warehouse takes the goods in: a receipt to the dealer, pledged to the financier."""
    deal = _load(ctx, args.hex_id("deal_id"))
    _require_party(ctx, deal, "warehouse")
    _require_state(deal, FINANCED)
    found = ctx.call("warehouse_receipt", "issue_pledged", {
        "owner": deal["dealer"], "financier": deal["financier"],
        "commodity": deal["commodity"], "quantity": deal["quantity"], "unit": deal["unit"],
        "grade": args.text("grade", chars_max=32),
        "location": args.text("location", chars_max=128),
        "inspection_hash": args.hex_id("inspection_hash"),
    })
    assert isinstance(found, dict)
    deal["receipt_id"] = found["receipt_id"]
    deal["state"] = GOODS_HELD
    _save(ctx, deal)
    ctx.emit("GoodsLodged", deal_id=deal["id"], receipt_id=found["receipt_id"],
             warehouse=ctx.sender, financier=deal["financier"], quantity=deal["quantity"])
    return {"receipt_id": found["receipt_id"]}


def _release(ctx: Context, deal: Deal, quantity: int, to: str) -> None:
    """Release quantity of the held goods to `to` through warehouse_receipt."""
    if quantity == 0:
        return
    assert deal["receipt_id"] is not None
    found = ctx.call("warehouse_receipt", "release_pledge",
                     {"receipt_id": deal["receipt_id"], "quantity": quantity, "to": to})
    assert isinstance(found, dict)
    deal["receipt_id"] = found["pledged_id"]


@prepayment.method
def repay(ctx: Context, args: Args) -> JsonValue:
    """The dealer repays principal (with its interest); goods are released in proportion."""
    deal = _load(ctx, args.hex_id("deal_id"))
    principal = args.amount("principal")
    _require_party(ctx, deal, "dealer")
    _require_state(deal, GOODS_HELD)
    financed, repaid = int(deal["financed"]), int(deal["repaid"])
    if principal > financed - repaid:
        raise ContractError(
            "REPAYMENT_EXCEEDED", f"only {financed - repaid} of principal is outstanding"
        )
    accrued = interest(principal, int(deal["rate_bps"]), int(deal["approved_ms"]), ctx.time_ms)
    ctx.call("cash", "move", {"from": ctx.sender, "to": deal["financier"],
                              "amount": principal + accrued, "reason": "prepayment repayment"})
    repaid += principal
    deal["repaid"] = repaid
    deal["interest_paid"] = int(deal["interest_paid"]) + accrued
    quantity = int(deal["quantity"])
    release = quantity * repaid // financed - int(deal["released"])
    _release(ctx, deal, release, ctx.sender)
    deal["released"] = int(deal["released"]) + release
    if repaid == financed:
        deal["state"] = REPAID
        ctx.delete(due_key(int(deal["due_ms"]), str(deal["id"])))
    _save(ctx, deal)
    ctx.emit(
        "DealRepayment", deal_id=deal["id"], dealer=ctx.sender, financier=deal["financier"],
        principal=principal, interest=accrued, repaid=repaid, outstanding=financed - repaid,
        released=release, released_total=deal["released"], receipt_id=deal["receipt_id"],
    )
    if repaid == financed:
        ctx.emit("DealRepaid", deal_id=deal["id"], dealer=ctx.sender,
                 financier=deal["financier"], interest_paid=deal["interest_paid"])
    return {"interest": accrued, "released": release}


def _buyback_owed(deal: Deal) -> tuple[int, int]:
    outstanding = int(deal["financed"]) - int(deal["repaid"])
    assert outstanding > 0, "a deal falling due still owes principal"
    accrued = interest(outstanding, int(deal["rate_bps"]), int(deal["approved_ms"]),
                       int(deal["due_ms"]))
    return outstanding, accrued


def _settle_buyback(ctx: Context, deal: Deal, outstanding: int, accrued: int) -> None:
    """The core pays the financier what is outstanding; the remaining goods go to the core."""
    ctx.call("cash", "move", {"from": deal["core"], "to": deal["financier"],
                              "amount": outstanding + accrued, "reason": "prepayment buy-back"})
    returned = 0  # if the goods were never lodged, the core never parted with them
    if deal["receipt_id"] is not None:
        returned = int(deal["quantity"]) - int(deal["released"])
        _release(ctx, deal, returned, str(deal["core"]))
        assert deal["receipt_id"] is None, "every remaining unit went back to the core"
    deal["returned"] = returned
    deal["state"] = BOUGHT_BACK
    _save(ctx, deal)
    ctx.emit(
        "BuybackSettled", deal_id=deal["id"], core=deal["core"], dealer=deal["dealer"],
        financier=deal["financier"], principal=outstanding, interest=accrued,
        returned=returned,
    )


@prepayment.method
def buy_back(ctx: Context, args: Args) -> JsonValue:
    """The core settles a buy-back it could not pay at the due date."""
    deal = _load(ctx, args.hex_id("deal_id"))
    _require_party(ctx, deal, "core")
    _require_state(deal, BUYBACK_DUE)
    outstanding, accrued = _buyback_owed(deal)
    _settle_buyback(ctx, deal, outstanding, accrued)
    return {"paid": outstanding + accrued}


@prepayment.hook
def run_due_buybacks(ctx: Context) -> None:
    """At the due date the core buys back what the dealer has not repaid, if it can pay."""
    for key, deal_id in falling_due(ctx, ctx.time_ms, DUE_PER_BLOCK_MAX):
        ctx.delete(key)
        deal = _load(ctx, deal_id)
        assert deal["state"] in (FINANCED, GOODS_HELD), "index holds financed deals"
        outstanding, accrued = _buyback_owed(deal)
        balance = ctx.call("cash", "balance_internal", {"account": deal["core"]})
        assert isinstance(balance, int)
        if balance >= outstanding + accrued and outstanding + accrued <= AMOUNT_MAX:
            _settle_buyback(ctx, deal, outstanding, accrued)
        else:
            deal["state"] = BUYBACK_DUE
            _save(ctx, deal)
            ctx.emit(
                "BuybackShortfall", deal_id=deal_id, core=deal["core"], dealer=deal["dealer"],
                financier=deal["financier"], principal=outstanding, interest=accrued,
                balance=balance,
            )


@prepayment.view
def deal(ctx: ReadContext, args: Args) -> JsonValue:
    """A deal, for its dealer, core, financier and warehouse, and the auditor."""
    return require_readable(ctx, DEAL, _load(ctx, args.hex_id("deal_id")))


@prepayment.view
def deals_of(ctx: ReadContext, args: Args) -> JsonValue:
    """Deals where the account is dealer, core, financier or warehouse (at most 500); those
    the reader may see."""
    found = listed(ctx, PARTY_INDEX, args.account("account"), _load, LIST_MAX)
    return readable(ctx.reader, DEAL, found)


@prepayment.view
def config(ctx: ReadContext, args: Args) -> JsonValue:
    """The least margin: a consortium-wide rule, public."""
    return {"margin_bps_min": _margin_bps_min(ctx)}
