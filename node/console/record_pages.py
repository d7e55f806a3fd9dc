"""What the record pages show, as JSON-ready documents: a member, a voucher with its lineage
tree, an order, a prepayment deal, a warehouse receipt with its lineage.

Every read is the console member's, so a section it may not see comes back as
`{"hidden": "<the node's reason>"}` instead of failing the page; the record a page is about
being hidden or missing fails the page (`ConsoleError`: 403, 404). History comes from the
events the console has seen (`ChainHistory`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from node.client.ledger import LedgerError
from node.console.approvals import pending_for
from node.console.chain_pages import ConsoleState, parse_id
from node.console.errors import ConsoleError, from_ledger
from node.console.history import ID_PATTERN, HistoryEntry

LIST_LIMIT = 500
CORES_MAX = 64  # a financier's credit lines: the cores asked about
ACTIVITY_MAX = 40
HIDDEN_STATUSES = frozenset({"PERMISSION_DENIED", "NOT_FOUND"})
VOUCHER_MONEY_EVENTS = frozenset({
    "DiscountApplied", "VoucherDiscounted", "DiscountRejected", "DiscountCancelled",
    "VoucherRedeemed", "VoucherOverdue",
})


async def _section(read: Awaitable[Any]) -> Any:
    """A part of a page: the view's answer, or {"hidden": reason} if the member may not see
    it (or it is not there)."""
    try:
        return await read
    except LedgerError as exc:
        if exc.status in HIDDEN_STATUSES:
            return {"hidden": exc.message or exc.status}
        raise from_ledger(exc, "a section of the page") from None


async def _record(read: Awaitable[Any], what: str) -> Any:
    try:
        return await read
    except LedgerError as exc:
        raise from_ledger(exc, what) from None


def _history(entries: list[HistoryEntry], limit: int | None = None) -> list[dict[str, Any]]:
    newest_first = [e.to_json() for e in reversed(entries)]
    return newest_first if limit is None else newest_first[:limit]


def _list(found: Any, key: str | None = None) -> list[Any]:
    """A list view's records ([] when the section is hidden)."""
    if isinstance(found, Mapping):
        if "hidden" in found:
            return []
        found = found.get(key or "", [])
    return list(found) if isinstance(found, list) else []


# ---------------------------------------------------------------------------------------------
# Member


async def member(state: ConsoleState, key: str) -> dict[str, Any]:
    await state.directory.refresh()
    text = key.strip()
    found = (state.directory.by_account(text.lower()) if ID_PATTERN.match(text.lower())
             else state.directory.by_name(text))
    if found is None:
        known = ", ".join(m.name for m in state.directory.members()[:30])
        raise ConsoleError(404, f"no member {text!r} in the consortium (members: {known})",
                           "NOT_FOUND")
    account, query = found.account, state.source.query
    cores = [m.account for m in state.directory.with_role("core_enterprise")][:CORES_MAX]
    is_financier = "financier" in found.roles
    (balance, holdings, orders, deals, receipts, discounts, position, *lines_by_core) = (
        await asyncio.gather(
            _section(query("cash", "balance", {"account": account})),
            _section(query("voucher", "holdings", {"holder": account, "limit": LIST_LIMIT})),
            _section(query("order_financing", "orders_of", {"account": account})),
            _section(query("prepayment", "deals_of", {"account": account})),
            _section(query("warehouse_receipt", "receipts_of", {"owner": account})),
            _section(query("voucher", "pending_discounts",
                           {"financier": account, "limit": LIST_LIMIT})
                     if is_financier else _none()),
            _section(query("voucher", "position", {"core": account})
                     if "core_enterprise" in found.roles else _none()),
            *(_section(query("voucher", "position", {"core": core}))
              for core in (cores if is_financier else [])),
        ))
    credit_lines: list[dict[str, Any]] = []
    if isinstance(position, Mapping) and "lines" in position:
        credit_lines = [{"core": account, **line} for line in position["lines"]]
    for core, core_position in zip(cores if is_financier else [], lines_by_core, strict=True):
        credit_lines += [{"core": core, **line} for line in _list(core_position, "lines")
                         if line.get("financier") == account]
    pending_receipts = await _receipts_waiting_on(state, account)
    pending = pending_for(
        account, orders=_list(orders), deals=_list(deals),
        receipts=[*_list(receipts), *pending_receipts],
        discounts=_list(discounts, "vouchers"))
    return {
        "member": found.to_json(),
        "is_reader": account == state.source.reader_account,
        "balance": balance,
        "vouchers": holdings,
        "position": position,
        "credit_lines": credit_lines,
        "orders": orders,
        "deals": deals,
        "receipts": receipts,
        "pending_discounts": discounts,
        "pending": [p.to_json() for p in pending],
        "activity": _history(state.history.of(account), ACTIVITY_MAX),
    }


async def _none() -> None:
    return None


async def _receipts_waiting_on(state: ConsoleState, account: str) -> list[Any]:
    """Receipts the member does not own but must act on (a pledge asked of it, a delivery
    to confirm), found through the events that named it."""
    ids = sorted({
        str(e.attrs.get("receipt_id")) for e in state.history.of(account)
        if e.name in ("PledgeRequested", "RedemptionRequested") and e.attrs.get("receipt_id")
    })[:LIST_LIMIT // 10]
    found = await asyncio.gather(*(
        _section(state.source.query("warehouse_receipt", "receipt", {"receipt_id": rid}))
        for rid in ids))
    return [r for r in found if isinstance(r, Mapping) and "hidden" not in r]


# ---------------------------------------------------------------------------------------------
# Lineage trees


def tree_rows(records: list[Mapping[str, Any]], root: str,
              child_key: str = "children") -> list[dict[str, Any]]:
    """A lineage as rows in drawing order (depth first), each with the guides that draw the
    tree's lines: per level above it "pipe" (a sibling follows further down) or "blank",
    then "tee" (more siblings follow) or "elbow" (the last one). Iterative: a lineage may be
    256 records deep."""
    by_id = {str(r["id"]): r for r in records}
    if root not in by_id:
        return []
    rows: list[dict[str, Any]] = []
    stack: list[tuple[str, list[str], bool, int]] = [(root, [], True, 0)]
    seen: set[str] = set()
    while stack:
        record_id, guides, last, depth = stack.pop()
        if record_id in seen:
            continue
        seen.add(record_id)
        record = by_id[record_id]
        own = guides + ([] if depth == 0 else ["elbow" if last else "tee"])
        rows.append({**record, "depth": depth, "guides": own})
        below = guides + ([] if depth == 0 else ["blank" if last else "pipe"])
        children = [str(c) for c in record.get(child_key) or [] if str(c) in by_id]
        for index in range(len(children) - 1, -1, -1):
            stack.append((children[index], below, index == len(children) - 1, depth + 1))
    return rows


# ---------------------------------------------------------------------------------------------
# Voucher


async def voucher(state: ConsoleState, text: str) -> dict[str, Any]:
    voucher_id = parse_id("voucher", text)
    query = state.source.query
    record = await _record(query("voucher", "get", {"voucher": voucher_id}),
                           f"voucher {voucher_id[:16]}…")
    root = str(record["root"])
    lineage = await _section(query("voucher", "lineage", {"root": root}))
    rows = tree_rows(lineage["tree"], root) if "tree" in lineage else []
    root_events = state.history.of(root)
    return {
        "voucher": record,
        "lineage": {k: v for k, v in lineage.items() if k != "tree"},
        "tree": rows,
        "descendants": max(0, len(rows) - 1),
        "tiers": max((r["tier"] for r in rows), default=0),
        "history": _history(state.history.of(voucher_id)),
        "money_history": _history([e for e in root_events if e.name in VOUCHER_MONEY_EVENTS]),
    }


# ---------------------------------------------------------------------------------------------
# Order, deal, receipt


async def order(state: ConsoleState, text: str) -> dict[str, Any]:
    order_id = parse_id("order", text)
    record = await _record(
        state.source.query("order_financing", "order", {"order_id": order_id}),
        f"order {order_id[:16]}…")
    return {"order": record, "history": _history(state.history.of(order_id))}


async def deal(state: ConsoleState, text: str) -> dict[str, Any]:
    deal_id = parse_id("deal", text)
    record = await _record(state.source.query("prepayment", "deal", {"deal_id": deal_id}),
                           f"deal {deal_id[:16]}…")
    return {"deal": record, "history": _history(state.history.of(deal_id))}


async def receipt(state: ConsoleState, text: str) -> dict[str, Any]:
    receipt_id = parse_id("receipt", text)
    query = state.source.query
    record = await _record(query("warehouse_receipt", "receipt", {"receipt_id": receipt_id}),
                           f"receipt {receipt_id[:16]}…")
    root = str(record["root"])
    lineage = await _section(query("warehouse_receipt", "lineage", {"root_id": root}))
    rows = tree_rows(lineage["receipts"], root) if "receipts" in lineage else []
    return {
        "receipt": record,
        "lineage": {k: v for k, v in lineage.items() if k != "receipts"},
        "tree": rows,
        "history": _history(state.history.of(receipt_id)),
        "lineage_history": _history(state.history.of(root)),
    }
