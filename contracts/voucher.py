"""The voucher contract: electronic claim vouchers that carry a core enterprise's credit upstream.

A financier grants a core enterprise a credit line; the core issues a voucher (a claim on
itself, due at a maturity date, backed by trade documents that can back no other voucher) to a
tier-1 supplier; holders transfer all or part of it upstream or split it; a holder may sell it
to a financier at a discount; at maturity the block-end hook in `voucher_settlement` pays every
current holder from the core's cash. Key layout and records live in `voucher_state`.

Tier: the root is tier 1; every transfer to another party (full, or the transferred part of a
partial transfer) adds one; a split or a discount keeps the tier.
"""

from __future__ import annotations

from typing import Any

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
    roles_of,
)
from contracts.visibility import (
    VOUCHER,
    may_read,
    partial_summary,
    pruned,
    require_in_tree,
    require_lineage,
    visible_lines,
)
from contracts.voucher_settlement import settle_block
from contracts.voucher_state import (
    ACTIVE,
    DISCOUNT_PENDING,
    LINES_PER_CORE_MAX,
    LIVE_STATES,
    SPLIT,
    VOUCHERS_PER_ROOT_MAX,
    Record,
    change_holder,
    core_position,
    index_holder,
    load_root,
    load_tree,
    load_voucher,
    new_voucher,
    padded_ms,
    put_core_position,
    save_voucher,
    voucher_count,
)

voucher = Contract("voucher")
voucher.hook(settle_block)

DAY_MS = 86_400_000
DOCUMENTS_MAX = 16  # trade documents per voucher (contract, invoices, statements)
SPLIT_PARTS_MAX = 16
PAGE_MAX = 500  # vouchers per page of the holdings and pending-discounts views
RECIPIENT_ROLES = ("supplier", "dealer", "financier")  # who may be paid with a voucher


def discount_terms(amount: int, rate_bps: int, maturity_ms: int, now_ms: int) -> dict[str, int]:
    """days = ceil((maturity - now) / day), at least 1; interest rounds down (docs/contracts.md)."""
    assert amount > 0 and rate_bps > 0 and maturity_ms > now_ms
    days = max(1, -(-(maturity_ms - now_ms) // DAY_MS))
    interest = amount * rate_bps * days // (10_000 * 360)
    return {"days": days, "interest": interest, "payout": amount - interest}


# ---------------------------------------------------------------------------------------------
# Checks shared by the methods.


def _require_counterparty(ctx: Context, account: str, roles: tuple[str, ...], what: str) -> None:
    """The other party must be an active member with one of roles, and not the caller."""
    held = roles_of(ctx, account)
    if account == ctx.sender:
        raise ContractError("INVALID_COUNTERPARTY", f"the {what} cannot be yourself")
    if not any(role in held for role in roles):
        raise ContractError(
            "INVALID_COUNTERPARTY",
            f"the {what} {account[:16]}… must be an active member with role "
            f"{' or '.join(roles)} (has {list(held) or 'none'})",
        )


def _require_before_maturity(ctx: Context, record: Record) -> None:
    if ctx.time_ms >= record["maturity_ms"]:
        raise ContractError(
            "VOUCHER_MATURED",
            f"voucher {record['id'][:16]}… matured at {record['maturity_ms']}; "
            "it is settled, not moved",
        )


def _holder_movable(ctx: Context, voucher_id: str) -> Record:
    """A voucher the caller holds, ACTIVE and before maturity: the precondition to move it."""
    record = load_voucher(ctx, voucher_id)
    if record["holder"] != ctx.sender:
        raise ContractError("NOT_HOLDER", f"only the holder may act on {voucher_id[:16]}…")
    if record["state"] == DISCOUNT_PENDING:
        raise ContractError(
            "VOUCHER_FROZEN", f"voucher {voucher_id[:16]}… is frozen by a discount application"
        )
    if record["state"] != ACTIVE:
        raise ContractError(
            "VOUCHER_NOT_ACTIVE", f"voucher {voucher_id[:16]}… is {record['state']}"
        )
    _require_before_maturity(ctx, record)
    return record


def _split_into(
    ctx: Context, record: Record, parts: list[tuple[str, int, int]]
) -> list[Record]:
    """Mark record SPLIT and create children (holder, amount, tier); conserves the amount."""
    assert sum(amount for _, amount, _ in parts) == record["amount"] and len(parts) >= 2
    assert record["state"] == ACTIVE
    # An ACTIVE root (seq 0) has never been split (SPLIT is final, and a root's first split
    # is its own), so its count is 1 and `n/<root>` is absent: no read for that miss.
    count = 1 if record["seq"] == 0 else voucher_count(ctx, record["root"])
    if count + len(parts) > VOUCHERS_PER_ROOT_MAX:
        raise ContractError(
            "TOO_MANY_VOUCHERS",
            f"root {record['root'][:16]}… would exceed {VOUCHERS_PER_ROOT_MAX} vouchers",
        )
    children = [
        new_voucher(
            ctx,
            root=record["root"],
            core=record["core"],
            maturity_ms=record["maturity_ms"],
            seq=count + index,
            voucher_id=ctx.derive_id("voucher", record["id"], index),
            parent=record["id"],
            holder=holder,
            amount=amount,
            tier=tier,
        )
        for index, (holder, amount, tier) in enumerate(parts)
    ]
    ctx.put(f"n/{record['root']}", count + len(parts))
    record["state"] = SPLIT
    record["children"] = [child["id"] for child in children]
    save_voucher(ctx, record)
    index_holder(ctx, record)
    ctx.emit(
        "VoucherSplit",
        voucher=record["id"],
        root=record["root"],
        holder=record["holder"],
        amount=record["amount"],
        children=[{"voucher": c["id"], "amount": c["amount"]} for c in children],
    )
    return children


# ---------------------------------------------------------------------------------------------
# Credit lines and issue.


@voucher.method
def grant_credit(ctx: Context, args: Args) -> JsonValue:
    """A financier grants (or changes) its reverse-factoring line to a core enterprise."""
    require_role(ctx, ctx.sender, "financier")
    core = args.account("core")
    limit = args.amount("limit")
    expiry_ms = args.integer("expiry_ms", minimum=1, maximum=TIME_MS_MAX)
    _require_counterparty(ctx, core, ("core_enterprise",), "core enterprise")
    if expiry_ms <= ctx.time_ms:
        raise ContractError("INVALID_EXPIRY", f"expiry {expiry_ms} is not after now {ctx.time_ms}")
    position = core_position(ctx, core)
    lines = position["lines"]
    line = lines.get(ctx.sender)
    used = 0 if line is None else int(line["used"])
    if limit < used:
        raise ContractError(
            "CREDIT_BELOW_USED", f"the line already backs {used}; the limit cannot be {limit}"
        )
    if line is None and len(lines) >= LINES_PER_CORE_MAX:
        raise ContractError(
            "TOO_MANY_LINES", f"the core already has {LINES_PER_CORE_MAX} credit lines"
        )
    lines[ctx.sender] = {
        "limit": limit, "used": used, "expiry_ms": expiry_ms, "granted_ms": ctx.time_ms
    }
    put_core_position(ctx, core, position)
    ctx.emit(
        "CreditGranted",
        core=core,
        financier=ctx.sender,
        limit=limit,
        expiry_ms=expiry_ms,
        used=used,
    )
    return {"core": core, "financier": ctx.sender, "limit": limit, "used": used}


def _choose_line(ctx: Context, lines: dict[str, Any], amount: int, financier: str | None) -> str:
    """The financier whose unexpired line backs the new voucher (named, or the first in
    account order that fits)."""
    if financier is not None:
        line = lines.get(financier)
        if line is None:
            raise ContractError("NO_CREDIT_LINE", f"no credit line from {financier[:16]}…")
        if line["expiry_ms"] <= ctx.time_ms:
            raise ContractError("CREDIT_LINE_EXPIRED", f"the line expired at {line['expiry_ms']}")
        room = line["limit"] - line["used"]
        if room < amount:
            raise ContractError("CREDIT_EXCEEDED", f"{amount} exceeds the line's remaining {room}")
        return financier
    open_lines = [
        (name, lines[name]) for name in sorted(lines) if lines[name]["expiry_ms"] > ctx.time_ms
    ]
    if not open_lines:
        raise ContractError("NO_CREDIT_LINE", "the core has no unexpired credit line")
    for name, line in open_lines:
        if line["limit"] - line["used"] >= amount:
            return name
    room = max(line["limit"] - line["used"] for _, line in open_lines)
    raise ContractError("CREDIT_EXCEEDED", f"{amount} exceeds every line (most room: {room})")


@voucher.method
def issue(ctx: Context, args: Args) -> JsonValue:
    """The core issues a voucher on itself to a supplier, backed by unused trade documents."""
    require_role(ctx, ctx.sender, "core_enterprise")
    supplier = args.account("supplier")
    amount = args.amount()
    maturity_ms = args.integer("maturity_ms", minimum=1, maximum=TIME_MS_MAX)
    documents = args.hex_list("documents", items_max=DOCUMENTS_MAX)
    financier = args.account("financier") if "financier" in args.raw() else None
    _require_counterparty(ctx, supplier, ("supplier",), "supplier")
    if maturity_ms <= ctx.time_ms:
        raise ContractError(
            "INVALID_MATURITY", f"maturity {maturity_ms} is not after now {ctx.time_ms}"
        )
    for document in documents:
        used_by = ctx.get(f"doc/{document}")
        if used_by is not None:
            raise ContractError(
                "DOCUMENT_ALREADY_USED",
                f"document {document[:16]}… already backs voucher {str(used_by)[:16]}…",
            )
    totals = core_position(ctx, ctx.sender)
    backer = _choose_line(ctx, totals["lines"], amount, financier)
    line = totals["lines"][backer]
    line["used"] += amount
    assert line["used"] <= line["limit"]
    totals["outstanding"] += amount
    put_core_position(ctx, ctx.sender, totals)

    root_id = ctx.derive_id("voucher", "issue")
    summary: Record = {
        "root": root_id,
        "core": ctx.sender,
        "financier": backer,
        "amount": amount,
        "redeemed": 0,
        "maturity_ms": maturity_ms,
        "issued_ms": ctx.time_ms,
        "documents": documents,
    }
    new_voucher(
        ctx,
        root=root_id,
        core=ctx.sender,
        maturity_ms=maturity_ms,
        seq=0,
        voucher_id=root_id,
        parent=None,
        holder=supplier,
        amount=amount,
        tier=1,
    )
    ctx.put(f"root/{root_id}", summary)
    for document in documents:
        ctx.put(f"doc/{document}", root_id)
    ctx.put(f"due/{padded_ms(maturity_ms)}/{root_id}", ctx.sender)
    ctx.emit(
        "VoucherIssued",
        voucher=root_id,
        root=root_id,
        core=ctx.sender,
        holder=supplier,
        amount=amount,
        maturity_ms=maturity_ms,
        documents=documents,
        financier=backer,
        tier=1,
    )
    return {"voucher": root_id}


# ---------------------------------------------------------------------------------------------
# Transfer and split.


@voucher.method
def transfer(ctx: Context, args: Args) -> JsonValue:
    """The holder pays with all of a voucher, or part of it (which splits it in two)."""
    voucher_id = args.hex_id("voucher")
    target = args.account("to")
    record = _holder_movable(ctx, voucher_id)
    amount = args.integer("amount", default=record["amount"])
    if amount > record["amount"]:
        raise ContractError(
            "INVALID_AMOUNT", f"{amount} is more than the voucher's {record['amount']}"
        )
    _require_counterparty(ctx, target, RECIPIENT_ROLES, "recipient")
    if target == record["core"]:
        raise ContractError("INVALID_COUNTERPARTY", "a voucher cannot be paid to its own obligor")
    tier = record["tier"] + 1
    if amount == record["amount"]:
        record["tier"] = tier
        change_holder(ctx, record, target)
        sent_id, remainder_id, remainder = voucher_id, None, 0
    else:
        sent, kept = _split_into(
            ctx,
            record,
            [(target, amount, tier), (ctx.sender, record["amount"] - amount, record["tier"])],
        )
        sent_id, remainder_id, remainder = sent["id"], kept["id"], kept["amount"]
    ctx.emit(
        "VoucherTransferred",
        voucher=sent_id,
        parent=voucher_id if remainder_id else record["parent"],
        root=record["root"],
        sender=ctx.sender,
        to=target,
        amount=amount,
        tier=tier,
        remainder_voucher=remainder_id,
        remainder=remainder,
    )
    return {"voucher": sent_id, "remainder_voucher": remainder_id}


@voucher.method
def split(ctx: Context, args: Args) -> JsonValue:
    """The holder splits a voucher into several it keeps (amounts must add up exactly)."""
    voucher_id = args.hex_id("voucher")
    amounts = args.int_list("amounts", items_max=SPLIT_PARTS_MAX)
    record = _holder_movable(ctx, voucher_id)
    if len(amounts) < 2 or sum(amounts) != record["amount"]:
        raise ContractError(
            "INVALID_AMOUNT",
            f"split needs 2..{SPLIT_PARTS_MAX} parts adding up to {record['amount']}, "
            f"got {len(amounts)} adding up to {sum(amounts)}",
        )
    children = _split_into(
        ctx, record, [(ctx.sender, amount, record["tier"]) for amount in amounts]
    )
    return {"vouchers": [child["id"] for child in children]}


# ---------------------------------------------------------------------------------------------
# Discount.


def _pending_for(ctx: Context, voucher_id: str) -> tuple[Record, dict[str, Any]]:
    """A voucher with a pending discount application addressed to the calling financier."""
    record = load_voucher(ctx, voucher_id)
    if record["state"] != DISCOUNT_PENDING:
        raise ContractError(
            "DISCOUNT_NOT_PENDING", f"voucher {voucher_id[:16]}… is {record['state']}"
        )
    discount = record["discount"]
    assert isinstance(discount, dict)
    return record, discount


def _unfreeze(ctx: Context, record: Record, discount: dict[str, Any]) -> None:
    ctx.delete(f"pend/{discount['financier']}/{record['id']}")
    record["state"] = ACTIVE
    record["discount"] = None
    save_voucher(ctx, record)


@voucher.method
def apply_discount(ctx: Context, args: Args) -> JsonValue:
    """The holder asks a financier to buy the voucher at a discount; it is frozen meanwhile."""
    voucher_id = args.hex_id("voucher")
    financier = args.account("financier")
    rate_bps = args.integer("rate_bps", minimum=1, maximum=RATE_BPS_MAX)
    record = _holder_movable(ctx, voucher_id)
    _require_counterparty(ctx, financier, ("financier",), "financier")
    record["state"] = DISCOUNT_PENDING
    record["discount"] = {"financier": financier, "rate_bps": rate_bps, "applied_ms": ctx.time_ms}
    save_voucher(ctx, record)
    ctx.put(f"pend/{financier}/{voucher_id}", 1)
    ctx.emit(
        "DiscountApplied",
        voucher=voucher_id,
        root=record["root"],
        holder=ctx.sender,
        financier=financier,
        amount=record["amount"],
        rate_bps=rate_bps,
    )
    return {"voucher": voucher_id, "state": DISCOUNT_PENDING}


@voucher.method
def approve_discount(ctx: Context, args: Args) -> JsonValue:
    """The financier pays the discounted amount to the holder and becomes the holder."""
    require_role(ctx, ctx.sender, "financier")
    voucher_id = args.hex_id("voucher")
    record, discount = _pending_for(ctx, voucher_id)
    if discount["financier"] != ctx.sender:
        raise ContractError("NOT_DISCOUNT_FINANCIER", "the application is to another financier")
    _require_before_maturity(ctx, record)
    terms = discount_terms(
        record["amount"], discount["rate_bps"], record["maturity_ms"], ctx.time_ms
    )
    if terms["payout"] < 1:
        raise ContractError(
            "DISCOUNT_TOO_DEEP",
            f"interest {terms['interest']} over {terms['days']} days leaves nothing to pay",
        )
    seller = record["holder"]
    ctx.call(
        "cash",
        "move",
        {"from": ctx.sender, "to": seller, "amount": terms["payout"], "reason": "voucher discount"},
    )
    # Unfrozen and handed over in one save of the record.
    ctx.delete(f"pend/{discount['financier']}/{record['id']}")
    record["state"] = ACTIVE
    record["discount"] = None
    change_holder(ctx, record, ctx.sender)
    ctx.emit(
        "VoucherDiscounted",
        voucher=voucher_id,
        root=record["root"],
        seller=seller,
        financier=ctx.sender,
        amount=record["amount"],
        rate_bps=discount["rate_bps"],
        **terms,
    )
    return {"voucher": voucher_id, **terms}


@voucher.method
def reject_discount(ctx: Context, args: Args) -> JsonValue:
    """The financier declines the application; the voucher is active again."""
    require_role(ctx, ctx.sender, "financier")
    voucher_id = args.hex_id("voucher")
    reason = args.text("reason", default="", chars_max=128)  # a given reason is never empty
    record, discount = _pending_for(ctx, voucher_id)
    if discount["financier"] != ctx.sender:
        raise ContractError("NOT_DISCOUNT_FINANCIER", "the application is to another financier")
    _unfreeze(ctx, record, discount)
    ctx.emit(
        "DiscountRejected",
        voucher=voucher_id,
        root=record["root"],
        holder=record["holder"],
        financier=ctx.sender,
        amount=record["amount"],
        **({"reason": reason} if reason else {}),  # no reason given, no attribute
    )
    return {"voucher": voucher_id, "state": ACTIVE}


@voucher.method
def cancel_discount(ctx: Context, args: Args) -> JsonValue:
    """The holder withdraws its application (a financier that never answers cannot freeze it)."""
    voucher_id = args.hex_id("voucher")
    record, discount = _pending_for(ctx, voucher_id)
    if record["holder"] != ctx.sender:
        raise ContractError("NOT_HOLDER", f"only the holder may act on {voucher_id[:16]}…")
    _unfreeze(ctx, record, discount)
    ctx.emit(
        "DiscountCancelled",
        voucher=voucher_id,
        root=record["root"],
        holder=ctx.sender,
        financier=discount["financier"],
        amount=record["amount"],
        reason="holder",
    )
    return {"voucher": voucher_id, "state": ACTIVE}


# ---------------------------------------------------------------------------------------------
# Views.


@voucher.view
def get(ctx: ReadContext, args: Args) -> JsonValue:
    """One voucher's record, for a reader who may see it (contracts/visibility.py)."""
    record = load_voucher(ctx, args.hex_id("voucher"))
    return require_in_tree(ctx, VOUCHER, record, lambda: _tree(ctx, record["root"]))


def _tree(ctx: ReadContext, root_id: str) -> list[Record]:
    """Every voucher of a root in creation order, read from state (not through a view)."""
    return load_tree(ctx, root_id)


def _page(ctx: ReadContext, prefix: str, args: Args) -> tuple[list[Record], str | None]:
    """Vouchers under prefix after `after` that the reader may see, at most `limit`, and the
    cursor for the next page (hidden vouchers are skipped, never counted or named)."""
    limit = args.integer("limit", minimum=1, maximum=PAGE_MAX, default=PAGE_MAX)
    after = args.hex_id("after") if "after" in args.raw() else ""
    found: list[Record] = []
    for key, _ in ctx.scan(prefix):
        voucher_id = key[len(prefix):]
        if voucher_id <= after:
            continue
        record = load_voucher(ctx, voucher_id)
        if not may_read(ctx.reader, VOUCHER, record):
            continue
        if len(found) == limit:
            return found, found[-1]["id"]
        found.append(record)
    return found, None


@voucher.view
def holdings(ctx: ReadContext, args: Args) -> JsonValue:
    """A holder's live vouchers (ACTIVE, DISCOUNT_PENDING, OVERDUE), paged by voucher id; those
    the reader may see (all for the holder itself and the auditor)."""
    holder = args.account("holder")
    vouchers, cursor = _page(ctx, f"h/{holder}/", args)
    return {
        "holder": holder,
        "vouchers": vouchers,
        "total": sum(v["amount"] for v in vouchers),
        "next_after": cursor,
    }


@voucher.view
def pending_discounts(ctx: ReadContext, args: Args) -> JsonValue:
    """The discount applications awaiting a financier, paged by id (those the reader may see)."""
    financier = args.account("financier")
    vouchers, cursor = _page(ctx, f"pend/{financier}/", args)
    return {"financier": financier, "vouchers": vouchers, "next_after": cursor}


@voucher.view
def lineage(ctx: ReadContext, args: Args) -> JsonValue:
    """The whole tree of a root in creation order: who holds what at which tier, and states.
    A reader other than the core and the auditor gets its vouchers and their paths to the root
    (`"partial": true`, without the root's totals)."""
    root_id = args.hex_id("root")
    summary = load_root(ctx, root_id)
    records = _tree(ctx, root_id)
    shown = require_lineage(ctx, VOUCHER, root_id, records)
    live = sum(record["amount"] for record in records if record["state"] in LIVE_STATES)
    assert live + summary["redeemed"] == summary["amount"], "per-root conservation"
    fields = ("id", "parent", "tier", "holder", "amount", "state", "children")
    nodes = [
        pruned({key: record[key] for key in fields}, shown)
        for record in records
        if shown is None or record["id"] in shown
    ]
    summary = {**summary, "vouchers": len(records)}
    assert len(records) == voucher_count(ctx, root_id)
    if shown is not None:
        return {**partial_summary(VOUCHER, summary), "tree": nodes}
    return {**summary, "live": live, "tree": nodes}


@voucher.view
def document(ctx: ReadContext, args: Args) -> JsonValue:
    """Which root voucher a trade document backs (null if none): the double-financing check.
    Public: asking needs the document's hash, and the root it names stays protected."""
    document_hash = args.hex_id("document")
    return {"document": document_hash, "root": ctx.get(f"doc/{document_hash}")}


@voucher.view
def position(ctx: ReadContext, args: Args) -> JsonValue:
    """A core's outstanding and overdue totals and its credit lines.

    Views have no block time, so `at_ms` says when to judge line expiry; without it every line
    counts as open. Remaining credit = sum over open lines of (limit - used). A financier
    other than the auditor gets its own lines only, without the core's totals.
    """
    core = args.account("core")
    at_ms = args.integer("at_ms", minimum=0, maximum=TIME_MS_MAX, default=0)
    totals = core_position(ctx, core)
    lines = []
    remaining = limit_total = used_total = 0
    for financier, line in sorted(totals["lines"].items()):
        is_open = at_ms == 0 or line["expiry_ms"] > at_ms
        lines.append({"financier": financier, **line, "open": is_open})
        limit_total += line["limit"]
        used_total += line["used"]
        if is_open:
            remaining += line["limit"] - line["used"]
    assert used_total == totals["outstanding"] <= limit_total
    own = visible_lines(ctx, core, lines)
    if own is not None:
        return {
            "core": core,
            "credit_limit": sum(line["limit"] for line in own),
            "remaining_credit": sum(line["limit"] - line["used"] for line in own if line["open"]),
            "lines": own,
            "partial": True,
        }
    return {
        "core": core,
        "outstanding": totals["outstanding"],
        "overdue": totals["overdue"],
        "credit_limit": limit_total,
        "remaining_credit": remaining,
        "lines": lines,
    }

