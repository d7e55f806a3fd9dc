"""Who may see what (DOMAIN.md): the one place that says which member may read which record.

Every view runs for a `Reader` (`ReadContext.reader`): a member's account, or a reader that
sees everything (a member with the `auditor` role, and `Reader.internal()` for node internals,
tools and tests). The API builds a member's reader with `reader_of(state, account)`, which
refuses a stranger or a suspended member with `PERMISSION_DENIED`.

Two rules for views (`VIEW_ACCESS` lists every view and its rule; docs/visibility.md explains):

- a **single read** (a voucher, an order, a deal, a receipt, a lineage, a balance, a core's
  position) the reader may not see is refused: `ContractError("PERMISSION_DENIED", "<member>
  may not read <what>: <why>")`. The API maps it to gRPC `PERMISSION_DENIED`.
- a **list view** (holdings, pending discounts, orders_of, deals_of, receipts_of) never fails
  for visibility: it leaves out what the reader may not see, and pages over what it may.

A lineage (a voucher's root, a receipt's root) is one record for the core (or the warehouse)
that created it and for the auditor; any other reader gets its part of it: the records it is a
party to and their ancestors up to the root (`visible_in_tree`), with hidden records left out
of every `children` list and the lineage's aggregates (which add up records it may not see)
left out, marked `"partial": true`. Holders in the path are shown; siblings' holders are not.

Block contents: the node shows a reader the txs `tx_visible` accepts, decoded as

    tx_visible(reader, sender, events, contract=tx_contract) -> bool

- `sender`: the tx's sender account (hex), `contract`: the contract the tx calls (its body);
- `events`: the tx's receipt events as `(contract, name, attrs)` with `attrs` the decoded
  `attrs_json` object (a failed tx has none).

True when the reader sees everything, sent the tx, the tx calls a public contract
(`PUBLIC_CONTRACTS`: governance and the member directory, which every member may read), or an
event names the reader: an attribute value equal to its account id, also inside lists and
objects. A visible tx is shown whole (args, receipt, every event). A block's end-block events
(no sender) are shown one by one with `event_visible(reader, event)`.

This is access control at the API of a node, nothing more: a validator's operator can read its
own node's store (docs/visibility.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.runtime import (
    Context,
    ContractError,
    JsonValue,
    ReadContext,
    StateView,
    decode,
    member_key,
)

PERMISSION_DENIED = "PERMISSION_DENIED"
AUDITOR_ROLE = "auditor"
INTERNAL_ACCOUNT = "internal"  # never a member's account (those are 64 hex chars)

Record = Mapping[str, Any]
EventTuple = tuple[str, str, Mapping[str, JsonValue]]


@dataclass(frozen=True, slots=True)
class Reader:
    """Who is reading: a member's account id (hex, as in state), and whether it sees everything
    (the auditor role; `Reader.internal()` for node internals)."""

    account: str
    everything: bool = False

    @classmethod
    def internal(cls) -> Reader:
        """The node itself (block execution, tools, tests): every record, unfiltered."""
        return cls(INTERNAL_ACCOUNT, True)

    def is_any(self, *accounts: object) -> bool:
        """Sees everything, or is one of accounts."""
        return self.everything or self.account in accounts


def reader_of(source: StateView | Context | ReadContext, account: str) -> Reader:
    """The reader for a member's account, from the consortium's member record.

    Refuses (`PERMISSION_DENIED`) an account that is not a member, and a suspended member.
    """
    state = source.state if isinstance(source, Context | ReadContext) else source
    raw = state.get(member_key(account)) if _is_account(account) else None
    if raw is None:
        raise ContractError(
            PERMISSION_DENIED,
            f"account {_short(account)} is not a consortium member; only members may read",
        )
    member: Any = decode(raw)
    if member.get("suspended"):
        raise ContractError(
            PERMISSION_DENIED,
            f"member {member.get('name')} is suspended; a suspended member may read nothing",
        )
    return Reader(account, AUDITOR_ROLE in member.get("roles", ()))


# ---------------------------------------------------------------------------------------------
# Which views follow which rule (a test checks that every view of every contract is here).

PUBLIC = "public"  # any member: directory, governance, consortium-wide rules and totals
OWN = "own"  # a member's own record only (refused otherwise)
PARTY = "party"  # a single record for its parties (refused otherwise)
LINEAGE = "lineage"  # a tree: whole for its creator, the reader's part for a party
FILTER = "filter"  # a list: what the reader may see, never refused

VIEW_ACCESS: Mapping[tuple[str, str], str] = {
    ("cash", "balance"): OWN,
    ("cash", "supply"): PUBLIC,
    ("consortium", "member"): PUBLIC,
    ("consortium", "members"): PUBLIC,
    ("consortium", "by_name"): PUBLIC,
    ("governance", "proposal"): PUBLIC,
    ("governance", "proposals"): PUBLIC,
    ("governance", "committee"): PUBLIC,
    ("governance", "validators"): PUBLIC,
    ("governance", "params"): PUBLIC,
    ("governance", "config"): PUBLIC,
    ("voucher", "get"): LINEAGE,
    ("voucher", "lineage"): LINEAGE,
    ("voucher", "holdings"): FILTER,
    ("voucher", "pending_discounts"): FILTER,
    ("voucher", "position"): PARTY,
    ("voucher", "document"): PUBLIC,
    ("order_financing", "order"): PARTY,
    ("order_financing", "orders_of"): FILTER,
    ("order_financing", "terms"): PUBLIC,
    ("prepayment", "deal"): PARTY,
    ("prepayment", "deals_of"): FILTER,
    ("prepayment", "config"): PUBLIC,
    ("warehouse_receipt", "receipt"): LINEAGE,
    ("warehouse_receipt", "lineage"): LINEAGE,
    ("warehouse_receipt", "receipts_of"): FILTER,
}

# Txs calling these contracts, and their events, are shown to every member: the committee's
# proposals and votes and the member directory are consortium-wide (the views are public too).
PUBLIC_CONTRACTS = frozenset({"governance", "consortium"})


# ---------------------------------------------------------------------------------------------
# The parties of each kind of record.


def _field(record: Record, outer: str, inner: str) -> object:
    """record[outer][inner], or None when record[outer] is not an object (no loan, no pledge)."""
    found = record.get(outer)
    return found.get(inner) if isinstance(found, Mapping) else None


def _voucher_parties(voucher: Record) -> tuple[object, ...]:
    # The financier of a pending discount application: "the applications made to it".
    return voucher["core"], voucher["holder"], _field(voucher, "discount", "financier")


def _receipt_parties(receipt: Record) -> tuple[object, ...]:
    return (
        receipt["warehouse"],
        receipt["owner"],
        _field(receipt, "pledge", "financier"),
        _field(receipt, "listing", "exchange"),
    )


def _order_parties(order: Record) -> tuple[object, ...]:
    # Only the current loan's financier: a bank whose application was rejected must not read
    # the order once it carries a competitor's application.
    return order["supplier"], order["buyer"], _field(order, "loan", "financier")


def _deal_parties(deal: Record) -> tuple[object, ...]:
    # The warehouse is named in the deal and lodges its goods (it sees the deal's events too).
    return deal["dealer"], deal["core"], deal["financier"], deal["warehouse"]


def _line_parties(line: Record) -> tuple[object, ...]:
    return line["core"], line["financier"]


@dataclass(frozen=True, slots=True)
class Rule:
    what: str  # the record, in words
    parties: Callable[[Record], tuple[object, ...]]
    why: str  # who may read it, for the refusal
    overseer: str = ""  # lineages: the field naming who sees the whole tree
    aggregates: tuple[str, ...] = ()  # lineage totals a partial reader does not get


VOUCHER = Rule(
    "voucher", _voucher_parties,
    "a voucher is read by its core, its holder, the financier asked to discount it, the "
    "holders of vouchers split from it, and the auditor",
    overseer="core", aggregates=("redeemed", "live", "vouchers"),
)
RECEIPT = Rule(
    "warehouse receipt", _receipt_parties,
    "a receipt is read by its warehouse, its owner, its pledgee, its listing exchange, the "
    "owners of receipts split from it, and the auditor",
    overseer="warehouse", aggregates=("redeemed", "count", "live"),
)
ORDER = Rule(
    "order", _order_parties,
    "an order is read by its supplier, its buyer, the financier of its loan application, and "
    "the auditor",
)
DEAL = Rule(
    "prepayment deal", _deal_parties,
    "a deal is read by its dealer, core, financier and warehouse, and the auditor",
)
CREDIT_LINE = Rule(
    "credit line", _line_parties,
    "a core's position is read by the core, the financiers of its credit lines (their own "
    "lines only), and the auditor",
)


def may_read(reader: Reader, rule: Rule, record: Record) -> bool:
    return reader.everything or reader.account in rule.parties(record)


def readable(reader: Reader, rule: Rule, records: Iterable[Record]) -> list[Record]:
    """A list view's records the reader may see, in the given order."""
    if reader.everything:
        return list(records)
    return [record for record in records if reader.account in rule.parties(record)]


def require_readable(ctx: ReadContext, rule: Rule, record: Record) -> Record:
    """A single record for a party of it; PERMISSION_DENIED for anyone else."""
    if not may_read(ctx.reader, rule, record):
        raise refusal(ctx, f"{rule.what} {_short(record['id'])}", rule.why)
    return record


def require_own_balance(ctx: ReadContext, account: str) -> None:
    if not ctx.reader.is_any(account):
        raise refusal(
            ctx, f"the balance of {_short(account)}",
            "a member reads its own balance; only the auditor reads another's",
        )


def visible_lines(ctx: ReadContext, core: str, lines: Sequence[Record]) -> list[Record] | None:
    """A core's credit lines: None when the reader sees the core's whole position, else the
    reader's own lines (a financier's); refused when it has none."""
    if ctx.reader.is_any(core):
        return None
    own = [line for line in lines if may_read(ctx.reader, CREDIT_LINE, {"core": core, **line})]
    if not own:
        raise refusal(ctx, f"the position of core {_short(core)}", CREDIT_LINE.why)
    return own


# ---------------------------------------------------------------------------------------------
# Lineages: the reader's records and the path from each to the root.


def visible_in_tree(reader: Reader, rule: Rule, tree: Sequence[Record]) -> frozenset[str] | None:
    """The ids of a lineage the reader may see: None for all of it (the auditor, the core or
    warehouse that created it), else the records it is a party to and their ancestors."""
    if reader.everything or (tree and tree[0][rule.overseer] == reader.account):
        return None
    by_id = {record["id"]: record for record in tree}
    seen: set[str] = set()
    for record in tree:
        if reader.account not in rule.parties(record):
            continue
        current: Record | None = record
        while current is not None and current["id"] not in seen:
            seen.add(current["id"])
            current = by_id.get(current["parent"]) if current["parent"] else None
    return frozenset(seen)


def pruned(record: Record, shown: frozenset[str] | None) -> dict[str, Any]:
    """record with the children the reader may not see left out of `children`."""
    if shown is None or not record.get("children"):
        return dict(record)
    return {**record, "children": [c for c in record["children"] if c in shown]}


def require_in_tree(
    ctx: ReadContext, rule: Rule, record: Record, tree: Callable[[], Sequence[Record]]
) -> dict[str, Any]:
    """One record of a lineage, for a reader who may see it (`tree` loads the whole lineage,
    called only when the record alone cannot decide)."""
    reader = ctx.reader
    if reader.everything or record[rule.overseer] == reader.account:
        return dict(record)
    if not record.get("children") and reader.account in rule.parties(record):
        return dict(record)
    shown = visible_in_tree(reader, rule, tree())
    if shown is not None and record["id"] not in shown:
        raise refusal(ctx, f"{rule.what} {_short(record['id'])}", rule.why)
    return pruned(record, shown)


def require_lineage(
    ctx: ReadContext, rule: Rule, root: str, tree: Sequence[Record]
) -> frozenset[str] | None:
    """Which records of a lineage the reader gets (None: all); refused when none."""
    shown = visible_in_tree(ctx.reader, rule, tree)
    if shown is not None and not shown:
        raise refusal(
            ctx, f"the lineage of {rule.what} {_short(root)}",
            f"no {rule.what} of it is the reader's; {rule.why}",
        )
    return shown


def partial_summary(rule: Rule, summary: Record) -> dict[str, Any]:
    """A lineage's summary for a partial reader: no totals over records it may not see."""
    return {
        **{k: v for k, v in summary.items() if k not in rule.aggregates},
        "partial": True,
    }


# ---------------------------------------------------------------------------------------------
# Refusals.


def refusal(ctx: ReadContext, what: str, why: str) -> ContractError:
    """PERMISSION_DENIED naming the reader: "<member> may not read <what>: <why>"."""
    return ContractError(PERMISSION_DENIED, f"{_who(ctx)} may not read {what}: {why}")


def _who(ctx: ReadContext) -> str:
    account = ctx.reader.account
    summary = ctx.runtime.member_summary(ctx.state, account) if _is_account(account) else None
    return f"member {account[:16]}…" if summary is None else f"member {summary.name}"


def _short(account: object) -> str:
    text = str(account)
    return f"{text[:16]}…" if len(text) > 16 else text


def _is_account(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# ---------------------------------------------------------------------------------------------
# Block contents.


def names(value: JsonValue, account: str) -> bool:
    """Whether account appears as a value in value: itself, or inside lists and objects."""
    stack: list[JsonValue] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item == account:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
    return False


def event_visible(reader: Reader, event: EventTuple) -> bool:
    """One event (e.g. an end-block event): the reader sees everything, the event is from a
    public contract, or one of its attributes names the reader."""
    contract, _name, attrs = event
    return reader.everything or contract in PUBLIC_CONTRACTS or names(attrs, reader.account)


def tx_visible(
    reader: Reader, sender: str, events: Iterable[EventTuple], *, contract: str
) -> bool:
    """Whether a block's tx is shown to reader (see the module docstring)."""
    if reader.everything or sender == reader.account or contract in PUBLIC_CONTRACTS:
        return True
    return any(event_visible(reader, event) for event in events)
