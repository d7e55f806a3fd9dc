"""What the chain-wide pages show, as JSON-ready documents: the network, a block, a tx, and
where a search leads.

Each function reads through the `ChainSource` (as the console's member) and returns a plain
dict; the HTML templates and the /api/ endpoints show the same document. Bad input and
refusals raise `ConsoleError`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from node.client.ledger import LedgerError, event_dict
from node.console.directory import Directory
from node.console.errors import ConsoleError, bad_id, from_ledger
from node.console.follower import ChainFollower
from node.console.history import ID_PATTERN, ChainHistory
from node.console.source import ChainSource
from proto import types_pb2

HEIGHT_DIGITS_MAX = 19
SEARCH_TEXT_MAX = 200
SEARCH_MATCHES_MAX = 20
PREFIX_CHARS_MIN = 6


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """The collaborators every page reads with, made once by the app."""

    source: ChainSource
    directory: Directory
    history: ChainHistory
    follower: ChainFollower | None
    reader_name: str  # how the operator named the member ("" when started with a key)


def parse_id(kind: str, text: str) -> str:
    value = text.strip().lower()
    if not ID_PATTERN.match(value):
        raise bad_id(kind, text)
    return value


def parse_height(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > HEIGHT_DIGITS_MAX or int(value) < 1:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ConsoleError(400, f"{shown!r} is not a block height: a height is a whole "
                                "number from 1", "INVALID_ARGUMENT")
    return int(value)


async def reader_document(state: ConsoleState) -> dict[str, Any]:
    member = state.directory.by_account(state.source.reader_account)
    return {"account": state.source.reader_account,
            "name": member.name if member else state.reader_name,
            "roles": list(member.roles) if member else [],
            "member": member is not None}


# ---------------------------------------------------------------------------------------------
# Network


async def network(state: ConsoleState) -> dict[str, Any]:
    statuses = await state.source.node_statuses()
    reachable = [s for s in statuses if s.reachable]
    if not reachable:
        raise ConsoleError(503, "no node answers: " + "; ".join(
            f"{s.node_id or s.client_addr}: {s.error}" for s in statuses), "UNAVAILABLE")
    head = max(reachable, key=lambda s: s.height)
    validators = list(head.validators)
    observers = [s.node_id for s in reachable if not s.validator and s.node_id]
    return {
        "chain_id": state.source.chain_id,
        "consensus": head.consensus,
        "height": head.height,
        "leader": head.leader,
        "round": head.round,
        "validators": validators,
        "observers": observers,
        "nodes": [s.to_json() for s in statuses],
        "recent_blocks": [b.to_json() for b in state.history.recent()],
        "history_from": state.history.first,
        "follower_error": state.follower.last_error if state.follower else "",
        "members": [m.to_json() for m in state.directory.members()],
    }


# ---------------------------------------------------------------------------------------------
# Blocks and txs


def _decode_args(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def tx_document(tx: types_pb2.SignedTx, receipt: types_pb2.Receipt) -> dict[str, Any]:
    """A tx and its receipt; a tx the reader may not see comes reduced (no body)."""
    doc: dict[str, Any] = {
        "tx_id": receipt.tx_id.hex(),
        "height": receipt.height,
        "index": receipt.index,
        "status": types_pb2.TxStatus.Name(receipt.status),
        "visible": bool(tx.body),
    }
    if not tx.body:
        return doc
    try:
        body = types_pb2.TxBody.FromString(tx.body)
    except DecodeError:
        return doc | {"visible": False}
    return doc | {
        "sender": body.sender.hex(),
        "contract": body.contract,
        "method": body.method,
        "args": _decode_args(body.args),
        "nonce": body.nonce,
        "error_code": receipt.error_code,
        "message": receipt.message,
        "result": json.loads(receipt.result_json) if receipt.result_json else None,
        "events": [event_dict(e) for e in receipt.events],
    }


async def block(state: ConsoleState, height_text: str) -> dict[str, Any]:
    height = parse_height(height_text)
    try:
        committed = await state.source.get_block(height)
    except LedgerError as exc:
        raise from_ledger(exc, f"block {height}") from None
    header = committed.block.header
    txs = [tx_document(tx, receipt)
           for tx, receipt in zip(committed.block.txs, committed.receipts, strict=True)]
    return {
        "height": header.height,
        "time_ms": header.time_ms,
        "proposer": header.proposer,
        "round": header.round,
        "chain_id": header.chain_id,
        "block_hash": committed.block_hash.hex(),
        "parent_hash": header.parent_hash.hex(),
        "app_hash": committed.app_hash.hex(),
        "prev_app_hash": header.prev_app_hash.hex(),
        "txs_hash": header.txs_hash.hex(),
        "certificate_bytes": len(committed.certificate),
        "txs": txs,
        "hidden_txs": sum(1 for tx in txs if not tx["visible"]),
        "end_block_events": [event_dict(e) for e in committed.end_block_events],
    }


async def tx(state: ConsoleState, tx_id_text: str) -> dict[str, Any]:
    tx_id = parse_id("tx", tx_id_text)
    try:
        found = await state.source.get_tx(bytes.fromhex(tx_id))
    except LedgerError as exc:
        raise from_ledger(exc, f"tx {tx_id[:16]}…") from None
    return tx_document(found.tx, found.receipt)


# ---------------------------------------------------------------------------------------------
# Search

RECORD_LOOKUPS = (  # kind, contract, view, argument name
    ("voucher", "voucher", "get", "voucher"),
    ("receipt", "warehouse_receipt", "receipt", "receipt_id"),
    ("order", "order_financing", "order", "order_id"),
    ("deal", "prepayment", "deal", "deal_id"),
    ("member", "consortium", "member", "account"),
)


async def _exists(state: ConsoleState, kind: str, contract: str, view: str, arg: str,
                  record_id: str) -> bool:
    """Whether the id names a record of this kind: found, or refused (it exists, hidden)."""
    try:
        if kind == "tx":
            await state.source.get_tx(bytes.fromhex(record_id))
        else:
            await state.source.query(contract, view, {arg: record_id})
    except LedgerError as exc:
        if exc.status == "PERMISSION_DENIED" and "not a consortium member" not in exc.message:
            return True
        if exc.status in ("NOT_FOUND", "INVALID_ARGUMENT"):
            return False
        raise from_ledger(exc, f"{kind} {record_id[:16]}…") from None
    return True


async def search(state: ConsoleState, text: str) -> dict[str, Any]:
    """Where `text` leads: {"query", "matches": [{kind, id, label, path}]}; one match is
    where the HTML search redirects."""
    query = text.strip()
    if not query:
        raise ConsoleError(400, "type a tx id, a voucher, receipt, order or deal id, a block "
                                "height or a member's name", "INVALID_ARGUMENT")
    if len(query) > SEARCH_TEXT_MAX:
        raise ConsoleError(400, f"the search text is {len(query)} characters long; at most "
                                f"{SEARCH_TEXT_MAX}", "INVALID_ARGUMENT")
    matches: list[dict[str, str]] = []

    def add(kind: str, record_id: str, label: str) -> None:
        path = f"/search?q={record_id}" if kind == "id" else f"/{kind}/{record_id}"
        matches.append({"kind": kind, "id": record_id, "label": label, "path": path})

    lowered = query.lower()
    if query.isdigit() and len(query) <= HEIGHT_DIGITS_MAX:
        add("block", str(int(query)), f"block {int(query)}")
    if ID_PATTERN.match(lowered):
        kinds = [("tx", "", "", ""), *RECORD_LOOKUPS]
        found = await asyncio.gather(*(
            _exists(state, kind, contract, view, arg, lowered)
            for kind, contract, view, arg in kinds))
        for (kind, *_), hit in zip(kinds, found, strict=True):
            if hit:
                add(kind, lowered, f"{kind} {lowered[:16]}…")
    elif re.fullmatch(r"[0-9a-f]+", lowered) and len(lowered) >= PREFIX_CHARS_MIN:
        for record_id in state.history.ids_with_prefix(lowered, SEARCH_MATCHES_MAX):
            member = state.directory.by_account(record_id)
            if member is not None:
                add("member", member.name, f"member {member.name}")
            else:
                events = len(state.history.of(record_id))
                add("id", record_id, f"{record_id[:16]}… (named in {events} events)")
    await state.directory.refresh()
    exact = state.directory.by_name(query)
    if exact is not None:
        add("member", exact.name, f"member {exact.name} ({', '.join(exact.roles)})")
    else:
        for member in state.directory.members():
            if lowered in member.name.lower() and len(matches) < SEARCH_MATCHES_MAX:
                add("member", member.name, f"member {member.name} ({', '.join(member.roles)})")
    return {"query": query, "matches": matches[:SEARCH_MATCHES_MAX]}
