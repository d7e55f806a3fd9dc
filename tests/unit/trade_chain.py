"""A small consortium for the trade-finance contract tests (orders, prepayment, receipts).

Members: admin, a core enterprise, two suppliers, a dealer, two financiers, two warehouses, an
exchange and an auditor; `fails` runs a tx that must fail with a code and change nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from node.genesis import STATE_FORMAT_LATEST
from tests.harness import LocalChain, Receipt

MEMBERS: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "core": ("core_enterprise",),
    "supplier": ("supplier",),
    "supplier2": ("supplier",),
    "dealer": ("dealer",),
    "bank": ("financier",),
    "bank2": ("financier",),
    "wh": ("warehouse",),
    "wh2": ("warehouse",),
    "exch": ("exchange",),
    "auditor": ("auditor",),
}


def make_chain(state_format: int = STATE_FORMAT_LATEST, **balances: int) -> LocalChain:
    """The consortium with starting cash by member name (zero means none)."""
    return LocalChain(
        members=dict(MEMBERS), balances={name: cash for name, cash in balances.items() if cash},
        state_format=state_format,
    )


def doc(text: str) -> str:
    """A document hash (hex sha-256) standing for a trade document."""
    return hashlib.sha256(text.encode()).hexdigest()


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, (receipt.code, receipt.message)
    return receipt


def fails(chain: LocalChain, who: str, call: str, code: str, **args: Any) -> Receipt:
    """Run a tx that must fail with code and leave the state byte-for-byte untouched."""
    before = dict(chain.state.items)
    receipt = chain.run(who, call, **args)
    assert not receipt.ok and receipt.code == code, (receipt.code, receipt.message)
    assert receipt.message
    assert chain.state.items == before
    return receipt


def interest(principal: int, rate_bps: int, days: int) -> int:
    """docs/contracts.md's formula, written out independently of the contracts."""
    return principal * rate_bps * days // (10_000 * 360)
