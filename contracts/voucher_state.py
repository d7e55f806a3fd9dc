"""Voucher records and their indexes: the one place that knows the `voucher/` key layout.

Keys (under the contract's namespace `voucher/`; times are zero-padded so keys sort by time):

| key | value | why |
|---|---|---|
| `v/<id>` | the voucher record | one record per voucher, kept forever for audit |
| `root/<root>` | the root's summary (core, line, issued amount, redeemed) | conservation |
| `n/<root>` | vouchers under the root (absent: 1, the root alone) | next `seq`, the cap |
| `h/<holder>/<id>` | 1 | a holder's live vouchers (ACTIVE, DISCOUNT_PENDING, OVERDUE) |
| `doc/<hash>` | root id | one trade document backs one voucher, ever |
| `core/<core>` | {outstanding, overdue, lines: {financier: line}} | a core's position and lines |
| `due/<maturity:015>/<root>` | core | roots awaiting settlement, earliest first |
| `od/<core>/<maturity:015>/<id>` | amount | a core's overdue queue, oldest first |
| `odc/<core>` | 1 | cores that have an overdue queue |
| `pend/<financier>/<id>` | 1 | discount applications awaiting a financier |
| `record_format` | 2 | records are stored in binary (absent: canonical JSON) |

A line is {limit, used, expiry_ms, granted_ms}; a core's lines live in its position record,
so an issue reads and writes one record and scans nothing. A root's lineage is walked from the
root through each record's `children` (at most `VOUCHERS_PER_ROOT_MAX` records) and ordered by
`seq`, the creation order; no per-voucher lineage key is written. A split writes the root's
voucher count (`n/`, a small integer), not its summary.

Every amount is an integer in minor units; every time is a block time in milliseconds.

A chain's genesis chooses its state format (`state_format` in genesis.json): format 2 writes
`record_format`, and its voucher records are saved in binary (contracts/binary_records.py says
why), format 1 (a genesis without the field) keeps every record canonical JSON, as the chains
made before it executed their blocks. Reads take either.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as _json_text
from typing import Any

from contracts import binary_records
from contracts.runtime import (
    TIME_MS_MAX,
    Context,
    ContractError,
    ReadContext,
    encode,
    encode_text,
)

ACTIVE = "ACTIVE"
DISCOUNT_PENDING = "DISCOUNT_PENDING"
REDEEMED = "REDEEMED"
OVERDUE = "OVERDUE"
SPLIT = "SPLIT"
STATES = (ACTIVE, DISCOUNT_PENDING, REDEEMED, OVERDUE, SPLIT)
LIVE_STATES = (ACTIVE, DISCOUNT_PENDING, OVERDUE)  # states whose amount is still owed
assert set(STATES) <= set(binary_records.STATES)

VOUCHERS_PER_ROOT_MAX = 256  # bounds settlement work per maturing root and the lineage view
LINES_PER_CORE_MAX = 64  # financiers with a credit line to one core (the core's record holds them)
TIME_DIGITS = len(str(TIME_MS_MAX))  # 15: every valid time fits, zero-padded, in sorted keys

Record = dict[str, Any]
AnyContext = Context | ReadContext


def padded_ms(time_ms: int) -> str:
    assert 0 <= time_ms <= TIME_MS_MAX, time_ms
    return str(time_ms).zfill(TIME_DIGITS)


def load_voucher(ctx: AnyContext, voucher_id: str) -> Record:
    record = ctx.get(f"v/{voucher_id}")
    if record is None:
        raise ContractError("UNKNOWN_VOUCHER", f"no voucher {voucher_id[:16]}…")
    assert isinstance(record, dict) and record["state"] in STATES
    return record


def load_root(ctx: AnyContext, root_id: str) -> Record:
    summary = ctx.get(f"root/{root_id}")
    if summary is None:
        raise ContractError("UNKNOWN_VOUCHER", f"no root voucher {root_id[:16]}…")
    assert isinstance(summary, dict)
    return summary


def load_tree(ctx: AnyContext, root_id: str) -> list[Record]:
    """Every voucher of a root (the root first) in creation order: walked from the root
    through `children`, ordered by `seq`."""
    records: list[Record] = []
    pending = [root_id]
    while pending:
        record = load_voucher(ctx, pending.pop())
        records.append(record)
        pending.extend(record["children"])
        assert len(records) <= VOUCHERS_PER_ROOT_MAX
    records.sort(key=lambda record: int(record["seq"]))
    return records


def save_voucher(ctx: Context, record: Record) -> None:
    assert record["state"] in STATES
    assert isinstance(record["amount"], int) and record["amount"] > 0
    binary = ctx.get("record_format") == binary_records.BINARY_RECORDS
    raw = binary_records.pack_voucher(record) if binary else None
    ctx.put_encoded(f"v/{record['id']}", voucher_bytes(record) if raw is None else raw)


# The fields of a voucher record as `new_voucher` makes it, and its canonical JSON with the
# values left open (keys in sorted order, as `encode` writes them).
_FIELDS = frozenset((
    "amount", "children", "core", "created_ms", "discount", "holder", "id", "maturity_ms",
    "parent", "root", "seq", "state", "tier",
))
_JSON = (
    '{"amount":%d,"children":[%s],"core":%s,"created_ms":%d,"discount":%s,"holder":%s,'
    '"id":%s,"maturity_ms":%d,"parent":%s,"root":%s,"seq":%d,"state":%s,"tier":%d}'
)


def voucher_bytes(record: Record) -> bytes:
    """`encode(record)`, about twice as fast for a record of the usual shape and types: the
    generic encoder sorts and dispatches on every field of every record saved (two to three
    per transfer). Anything else (a settled record's `redeemed_ms`, an unexpected type) goes
    to `encode`; strings go through the encoder's own escaping, ints are written as it writes
    them (a bool or a float is not an int here, so they too take the generic path)."""
    if record.keys() != _FIELDS:
        return encode(record)
    amount, created_ms, maturity_ms = record["amount"], record["created_ms"], record["maturity_ms"]
    seq, tier, children = record["seq"], record["tier"], record["children"]
    core, holder, voucher_id = record["core"], record["holder"], record["id"]
    root, state, parent = record["root"], record["state"], record["parent"]
    discount = record["discount"]
    if not (
        type(amount) is int and type(created_ms) is int and type(maturity_ms) is int
        and type(seq) is int and type(tier) is int and type(children) is list
        and type(core) is str and type(holder) is str and type(voucher_id) is str
        and type(root) is str and type(state) is str
        and (parent is None or type(parent) is str)
        and all(type(child) is str for child in children)
    ):
        return encode(record)
    text = _JSON % (
        amount,
        ",".join(map(_json_text, children)),
        _json_text(core),
        created_ms,
        "null" if discount is None else encode_text(discount),
        _json_text(holder),
        _json_text(voucher_id),
        maturity_ms,
        "null" if parent is None else _json_text(parent),
        _json_text(root),
        seq,
        _json_text(state),
        tier,
    )
    return text.encode()


def index_holder(ctx: Context, record: Record) -> None:
    """Keep `h/<holder>/<id>` present exactly while the voucher is live."""
    key = f"h/{record['holder']}/{record['id']}"
    if record["state"] in LIVE_STATES:
        ctx.put(key, 1)
    else:
        ctx.delete(key)


def change_holder(ctx: Context, record: Record, holder: str) -> None:
    """Give a live voucher to a new holder, moving its holder index entry."""
    assert record["state"] in LIVE_STATES and holder != record["holder"]
    ctx.delete(f"h/{record['holder']}/{record['id']}")
    record["holder"] = holder
    save_voucher(ctx, record)
    index_holder(ctx, record)


def voucher_count(ctx: AnyContext, root_id: str) -> int:
    """How many vouchers a root has (itself included): the next child's `seq`."""
    found = ctx.get(f"n/{root_id}")
    return 1 if found is None else int(found)


def new_voucher(
    ctx: Context,
    *,
    root: str,
    core: str,
    maturity_ms: int,
    seq: int,
    voucher_id: str,
    parent: str | None,
    holder: str,
    amount: int,
    tier: int,
) -> Record:
    """Create a voucher under a root (the root itself, seq 0, or a child; the caller counts
    them in `n/<root>`) and index it."""
    # No read of `v/<voucher_id>` to check it is free: voucher ids come from `ctx.derive_id`,
    # the SHA-256 of this tx's id (a tx runs once: DUPLICATE_TX) and parts distinct within the
    # tx ("issue" for a root; the parent's id and the child's index for a split), so an id
    # already in use would take a SHA-256 collision. The read missed every time and cost a
    # store lookup per created voucher (about a tenth of a voucher-mix block's execution).
    assert 0 <= seq < VOUCHERS_PER_ROOT_MAX and (seq == 0) == (parent is None)
    record: Record = {
        "id": voucher_id,
        "root": root,
        "parent": parent,
        "seq": seq,
        "tier": tier,
        "core": core,
        "holder": holder,
        "amount": amount,
        "maturity_ms": maturity_ms,
        "state": ACTIVE,
        "created_ms": ctx.time_ms,
        "children": [],
        "discount": None,
    }
    save_voucher(ctx, record)
    index_holder(ctx, record)
    return record


def core_position(ctx: AnyContext, core: str) -> Record:
    """A core's {outstanding, overdue, lines: {financier: line}} (a fresh copy to change)."""
    found = ctx.get(f"core/{core}")
    if found is None:
        return {"outstanding": 0, "overdue": 0, "lines": {}}
    assert isinstance(found, dict)
    return found


def put_core_position(ctx: Context, core: str, position: Record) -> None:
    lines = position["lines"]
    assert position["outstanding"] >= position["overdue"] >= 0
    assert position["outstanding"] == sum(line["used"] for line in lines.values())
    assert len(lines) <= LINES_PER_CORE_MAX
    if position["outstanding"] == 0 and not lines:
        ctx.delete(f"core/{core}")
    else:
        ctx.put(f"core/{core}", position)


def release_credit(ctx: Context, summary: Record, amount: int, position: Record) -> None:
    """A paid voucher frees its amount on the root's credit line and the core's outstanding
    (in `position`, which the caller writes)."""
    line = position["lines"][summary["financier"]]
    assert line["used"] >= amount
    line["used"] -= amount
    position["outstanding"] -= amount
