"""Voucher and warehouse receipt records in binary: what a chain of state format 2 stores under
`voucher/v/<id>` and `warehouse_receipt/r/<id>`.

A voucher record in canonical JSON is about 590 bytes, more than half of it five to seven
64-character hex ids, and a voucher-mix tx writes two to three of them at random keys. LevelDB
rewrites each byte on every level it passes (about 20 times in a store of a few hundred MB), so
the record's size is most of what the compaction thread and the disk do for a voucher tx. Here
the ids are their 32 bytes, the integers fixed-width and the field names implied: 170-250
bytes. In-process (`bench/RESULTS.md`), voucher-mix wrote 13.6 instead of 24.3 KB per tx and
spent 41-44 instead of 73-79 µs per tx in compaction.

A warehouse receipt
record is about 730 bytes of JSON (five ids, its goods' texts), one written per tx of a trade.

Voucher layout (big-endian): tag 0x01 | amount u64 | created_ms u64 | maturity_ms u64 | seq u8 |
tier u16 | state u8 (index in STATES) | flags u8 (1: parent, 2: discount, 4: redeemed_ms) |
children u8 | id, core, holder, root 32 bytes each | redeemed_ms u64 if flagged | parent 32
bytes if flagged | each child 32 bytes | the discount's canonical JSON if flagged (the rest of
the value). A settled voucher's record has `redeemed_ms`; the others do not.

Receipt layout: tag 0x02 | quantity u64 | issued_ms u64 | state u8 (index in RECEIPT_STATES) |
flags u8 (1: parent, 2: pledge, 4: listing) | children u8 | id, root, warehouse, owner,
inspection_hash 32 bytes each | parent 32 bytes if flagged | each child 32 bytes | commodity,
unit, grade, location: each a u16 length and its UTF-8 | the pledge's canonical JSON with a u16
length if flagged | the listing's canonical JSON if flagged (the rest of the value).

`pack_voucher` and `pack_receipt` give None for any record they cannot hold exactly (another
set of fields, a text id, uppercase hex, an integer out of range, a text UTF-8 cannot carry): the
caller stores canonical JSON then, so every record reads back as the very value that was saved.
`unpack` gives what `decode` gives for that record's JSON, key order included. A canonical JSON
value never starts with byte 0x01 or 0x02, so a reader tells them apart by the first byte, and
a store may hold both.
"""

from __future__ import annotations

import struct
from typing import Any

from contracts.canonical import decode, encode

VOUCHER_TAG, RECEIPT_TAG = 0x01, 0x02
TAGS = (VOUCHER_TAG, RECEIPT_TAG)
# Where each contract keeps its `record_format` (genesis writes them from state format 2 on).
RECORD_FORMAT_KEYS = ("voucher/record_format", "warehouse_receipt/record_format")
BINARY_RECORDS = 2
_HEAD = struct.Struct(">BQQQBHBBB32s32s32s32s")
_PARENT, _DISCOUNT, _REDEEMED = 1, 2, 4
_U64_FIELD = struct.Struct(">Q")
_U64 = 2**64
# A record's state by its index: part of the format, so never reordered (voucher_state checks
# that each of its states is here).
STATES = ("ACTIVE", "DISCOUNT_PENDING", "REDEEMED", "OVERDUE", "SPLIT")
_FIELDS = frozenset((
    "amount", "children", "core", "created_ms", "discount", "holder", "id", "maturity_ms",
    "parent", "root", "seq", "state", "tier",
))
_SETTLED_FIELDS = _FIELDS | {"redeemed_ms"}

RECEIPT_STATES = ("ACTIVE", "LISTED", "PLEDGE_PENDING", "PLEDGED", "DEFAULTED",
                  "REDEEM_PENDING", "REDEEMED", "SPLIT")
_RECEIPT_HEAD = struct.Struct(">BQQBBB32s32s32s32s32s")
_PLEDGE, _LISTING = 2, 4
_U16 = struct.Struct(">H")
_RECEIPT_FIELDS = frozenset((
    "children", "commodity", "grade", "id", "inspection_hash", "issued_ms", "listing",
    "location", "owner", "parent", "pledge", "quantity", "root", "state", "unit", "warehouse",
))
_TEXTS = ("commodity", "unit", "grade", "location")


def _id_bytes(value: Any) -> bytes | None:
    """The 32 bytes of a lowercase 64-hex-digit id; None for anything else."""
    if type(value) is not str or len(value) != 64:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if raw.hex() == value else None


def _lineage(parent: Any, children: list[Any]) -> list[bytes | None]:
    """The parent's id (if any), then each child's: the part both layouts share."""
    ids = [_id_bytes(child) for child in children]
    return ids if parent is None else [_id_bytes(parent), *ids]


def _read_lineage(raw: bytes, at: int, flags: int, count: int
                  ) -> tuple[str | None, list[str], int]:
    """The parent (None when not flagged) and `count` children from `at`; where they end."""
    parent = None
    if flags & _PARENT:
        parent = raw[at:at + 32].hex()
        at += 32
    children = [raw[i:i + 32].hex() for i in range(at, at + 32 * count, 32)]
    return parent, children, at + 32 * count


def seed_record_formats(state: Any, state_format: int) -> None:
    """Genesis (`state` a StateView): from state format 2 on, records are stored in binary."""
    if state_format >= BINARY_RECORDS:
        for key in RECORD_FORMAT_KEYS:
            state.set(key, encode(BINARY_RECORDS))


def pack_voucher(record: dict[str, Any]) -> bytes | None:
    """The binary voucher record, or None when it cannot be held exactly (store JSON then)."""
    keys = record.keys()
    if keys == _FIELDS:
        redeemed_ms = None
    elif keys == _SETTLED_FIELDS:
        redeemed_ms = record["redeemed_ms"]
        if not (type(redeemed_ms) is int and 0 <= redeemed_ms < _U64):
            return None
    else:
        return None
    amount, created_ms, maturity_ms = record["amount"], record["created_ms"], record["maturity_ms"]
    seq, tier, state = record["seq"], record["tier"], record["state"]
    children, parent, discount = record["children"], record["parent"], record["discount"]
    if not (
        type(amount) is int and 0 <= amount < _U64
        and type(created_ms) is int and 0 <= created_ms < _U64
        and type(maturity_ms) is int and 0 <= maturity_ms < _U64
        and type(seq) is int and 0 <= seq < 256
        and type(tier) is int and 0 <= tier < 65536
        and type(state) is str and state in STATES
        and type(children) is list and len(children) < 256
        and (discount is None or type(discount) is dict)
    ):
        return None
    ids = [_id_bytes(record[name]) for name in ("id", "core", "holder", "root")]
    tail = _lineage(parent, children)
    flags = 0 if parent is None else _PARENT
    if redeemed_ms is not None:
        tail.insert(0, _U64_FIELD.pack(redeemed_ms))
        flags |= _REDEEMED
    if None in ids or None in tail:
        return None
    if discount is not None:
        flags |= _DISCOUNT
        tail.append(encode(discount))  # raises on a float, as JSON would
    head = _HEAD.pack(VOUCHER_TAG, amount, created_ms, maturity_ms, seq, tier, STATES.index(state),
                      flags, len(children), *ids)
    return head + b"".join(tail)  # type: ignore[arg-type]


def unpack(raw: bytes) -> dict[str, Any]:
    """The record `pack_voucher` or `pack_receipt` wrote, as `decode` gives its JSON (keys in
    sorted order)."""
    return _unpack_voucher(raw) if raw[0] == VOUCHER_TAG else _unpack_receipt(raw)


def _unpack_voucher(raw: bytes) -> dict[str, Any]:
    (_, amount, created_ms, maturity_ms, seq, tier, state, flags, count,
     voucher_id, core, holder, root) = _HEAD.unpack_from(raw)
    at = _HEAD.size
    redeemed_ms = None
    if flags & _REDEEMED:
        (redeemed_ms,) = _U64_FIELD.unpack_from(raw, at)
        at += 8
    parent, children, at = _read_lineage(raw, at, flags, count)
    discount = decode(raw[at:]) if flags & _DISCOUNT else None
    record = {
        "amount": amount, "children": children, "core": core.hex(), "created_ms": created_ms,
        "discount": discount, "holder": holder.hex(), "id": voucher_id.hex(),
        "maturity_ms": maturity_ms, "parent": parent,
    }
    if redeemed_ms is not None:  # its place in sorted key order
        record["redeemed_ms"] = redeemed_ms
    record.update(root=root.hex(), seq=seq, state=STATES[state], tier=tier)
    return record


def _length_prefixed(raw: bytes) -> bytes | None:
    return _U16.pack(len(raw)) + raw if len(raw) < 65536 else None


def pack_receipt(record: dict[str, Any]) -> bytes | None:
    """The binary warehouse receipt record, or None when it cannot be held exactly."""
    if record.keys() != _RECEIPT_FIELDS:
        return None
    quantity, issued_ms, state = record["quantity"], record["issued_ms"], record["state"]
    children, parent = record["children"], record["parent"]
    pledge, listing = record["pledge"], record["listing"]
    if not (
        type(quantity) is int and 0 <= quantity < _U64
        and type(issued_ms) is int and 0 <= issued_ms < _U64
        and type(state) is str and state in RECEIPT_STATES
        and type(children) is list and len(children) < 256
        and (pledge is None or type(pledge) is dict)
        and (listing is None or type(listing) is dict)
    ):
        return None
    ids = [_id_bytes(record[name])
           for name in ("id", "root", "warehouse", "owner", "inspection_hash")]
    tail = _lineage(parent, children)
    flags = 0 if parent is None else _PARENT
    for name in _TEXTS:
        text = record[name]
        if type(text) is not str:
            return None
        try:
            tail.append(_length_prefixed(text.encode()))
        except UnicodeEncodeError:  # a lone surrogate: JSON holds it, UTF-8 does not
            return None
    if pledge is not None:
        flags |= _PLEDGE
        tail.append(_length_prefixed(encode(pledge)))
    if listing is not None:
        flags |= _LISTING
        tail.append(encode(listing))
    if None in ids or None in tail:
        return None
    head = _RECEIPT_HEAD.pack(RECEIPT_TAG, quantity, issued_ms, RECEIPT_STATES.index(state),
                              flags, len(children), *ids)
    return head + b"".join(tail)  # type: ignore[arg-type]


def _unpack_receipt(raw: bytes) -> dict[str, Any]:
    (_, quantity, issued_ms, state, flags, count,
     receipt_id, root, warehouse, owner, inspection) = _RECEIPT_HEAD.unpack_from(raw)
    at = _RECEIPT_HEAD.size
    parent, children, at = _read_lineage(raw, at, flags, count)
    texts = []
    for _ in _TEXTS:
        (size,) = _U16.unpack_from(raw, at)
        texts.append(raw[at + 2:at + 2 + size].decode())
        at += 2 + size
    commodity, unit, grade, location = texts
    pledge = None
    if flags & _PLEDGE:
        (size,) = _U16.unpack_from(raw, at)
        pledge = decode(raw[at + 2:at + 2 + size])
        at += 2 + size
    listing = decode(raw[at:]) if flags & _LISTING else None
    return {
        "children": children, "commodity": commodity, "grade": grade, "id": receipt_id.hex(),
        "inspection_hash": inspection.hex(), "issued_ms": issued_ms, "listing": listing,
        "location": location, "owner": owner.hex(), "parent": parent, "pledge": pledge,
        "quantity": quantity, "root": root.hex(), "state": RECEIPT_STATES[state], "unit": unit,
        "warehouse": warehouse.hex(),
    }
