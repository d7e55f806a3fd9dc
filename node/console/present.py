"""How the pages show values to people: money, times, ids, members (Jinja filters).

Amounts are integers in minor units (`node.ops.sample_consortium.money`), times block times in
milliseconds (shown in UTC), ids 64 hex digits (shown short, linked, whole on hover).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from node.ops.sample_consortium import money as money_text

MONEY_KEYS = frozenset({
    "amount", "balance", "limit", "used", "payout", "interest", "principal", "paid",
    "remainder", "redeemed", "live", "total", "outstanding", "overdue", "price", "margin",
    "financed", "repaid", "interest_paid", "returned", "shortfall", "to_financier",
    "to_supplier", "credit_limit", "remaining_credit",
})
ID_KINDS = {  # event attribute -> the page its id opens
    "voucher": "voucher", "root": "", "receipt_id": "receipt", "released_id": "receipt",
    "pledged_id": "receipt", "source_id": "receipt", "order_id": "order", "deal_id": "deal",
    "proposal_id": "",
}


def money(amount: Any) -> str:
    if isinstance(amount, bool) or not isinstance(amount, int):
        return "—" if amount is None else str(amount)
    return money_text(amount)


def when(time_ms: Any) -> str:
    if not isinstance(time_ms, int) or time_ms <= 0:
        return "—"
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short(value: Any) -> str:
    text = str(value)
    return text[:12] + "…" if len(text) == 64 else text


def make_filters(names: Callable[[], dict[str, str]]) -> dict[str, Callable[..., Any]]:
    """The filters, reading member names through `names` (the directory, as of now)."""

    def who(account: Any) -> Markup:
        """A member's name linked to its page; an unknown account shown short."""
        text = str(account)
        name = names().get(text)
        if name is not None:
            return Markup('<a class="member" href="/member/{0}" title="{1}">{0}</a>').format(
                name, text)
        if text.startswith("contract:"):
            return Markup('<span class="contract">{0}</span>').format(text)
        return Markup('<span class="id" title="{0}">{1}</span>').format(text, short(text))

    def link(record_id: Any, kind: str) -> Markup:
        text = str(record_id)
        if not record_id:
            return Markup("—")
        return Markup('<a class="id" href="/{0}/{1}" title="{1}">{2}</a>').format(
            kind, text, short(text))

    def value(item: Any, key: str = "") -> Markup:
        """Any attribute value: money for amounts, names for accounts, links for ids."""
        if isinstance(item, int) and not isinstance(item, bool) and key in MONEY_KEYS:
            return Markup('<span class="money">{0}</span>').format(money(item))
        if isinstance(item, int) and key.endswith("_ms"):
            return Markup('<span class="time">{0}</span>').format(when(item))
        if isinstance(item, str) and len(item) == 64:
            if item in names():
                return who(item)
            kind = ID_KINDS.get(key)
            if kind:
                return link(item, kind)
            return Markup('<a class="id" href="/search?q={0}" title="{0}">{1}</a>').format(
                item, short(item))
        if isinstance(item, list):
            return Markup(", ").join(value(i, key) for i in item) or Markup("[]")
        if isinstance(item, dict):
            return Markup("{") + Markup(", ").join(
                Markup("{0}: {1}").format(k, value(v, k)) for k, v in item.items()
            ) + Markup("}")
        if item is None:
            return Markup("—")
        return escape(json.dumps(item) if isinstance(item, bool) else str(item))

    def attrs(event: dict[str, Any]) -> Markup:
        """An event's attributes, contract and name left out."""
        return Markup(" ").join(
            Markup('<span class="attr"><span class="k">{0}</span>={1}</span>').format(
                k, value(v, k))
            for k, v in event.items() if k not in ("contract", "name"))

    return {"money": money, "when": when, "short": short, "who": who, "link": link,
            "value": value, "attrs": attrs, "pretty": _pretty}


def _pretty(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)


def environment(names: Callable[[], dict[str, str]]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("node.console", "templates"),
        autoescape=True, undefined=jinja2.ChainableUndefined, trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(make_filters(names))
    return env
