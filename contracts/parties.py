"""Records listed by party: the index and view the trade-finance contracts share.

A contract that lists its records by account keeps one marker key per (account, record),
`<index>/<account>/<record id>` with value 1, in its own namespace (`party/` for orders and
deals, `own/` for receipts; a receipt lineage uses the same shape under `tree/<root>/`). A
listing view scans one account's markers in key order, so the records come in id order and a
page holds the first `limit` of them, the same on every node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from contracts.runtime import Context, ContractError, JsonValue, ReadContext

PARTY_INDEX = "party"
LIST_MAX = 500  # records per listing view; bounds a query's work

R = TypeVar("R")


def index_key(index: str, account: str, record_id: str) -> str:
    return f"{index}/{account}/{record_id}"


def add_party(ctx: Context, account: str, record_id: str, index: str = PARTY_INDEX) -> None:
    """Lists a record under an account (writing it again for the same pair changes nothing)."""
    ctx.put(index_key(index, account, record_id), 1)


def listed(
    ctx: ReadContext,
    index: str,
    account: str,
    load: Callable[[ReadContext, str], R],
    limit: int = LIST_MAX,
) -> list[R]:
    """The records listed under an account (at most `limit`), in id order, each via `load`."""
    prefix = f"{index}/{account}/"
    return [load(ctx, key[len(prefix):]) for key, _ in ctx.scan(prefix, limit)]


def require_party(
    ctx: Context, record: dict[str, JsonValue], party: str, record_name: str
) -> None:
    """Only the account the record names as `party` (e.g. its buyer) may take this step."""
    if ctx.sender != record[party]:
        raise ContractError("NOT_AUTHORIZED", f"only the {record_name}'s {party} may do this")
