"""`contracts.ids.derive_id` is the id a contract's `Context.derive_id` gives, for any parts.

Clients (the bench) compute the ids of what their txs create with `contracts.ids`, while the
contracts derive them through `Context`; a difference would make every later call of a bench
run name an object that does not exist, so the two are compared here directly.
"""

from __future__ import annotations

import hashlib

import pytest

from bench.workloads import derive_id as bench_derive_id
from contracts import default_runtime
from contracts.ids import derive_id
from contracts.runtime import Context
from node.state import MemoryState

PARTS: list[tuple[str | int, ...]] = [
    (),
    ("order",),
    ("voucher", "issue"),
    ("warehouse_receipt", 0),
    ("split", 15, "child"),
]


@pytest.mark.parametrize("parts", PARTS, ids=repr)
def test_derive_id_matches_the_context_inside_the_tx(parts: tuple[str | int, ...]) -> None:
    tx_id = hashlib.sha256(repr(parts).encode()).digest()
    ctx = Context(runtime=default_runtime(), state=MemoryState(), sender="s",
                  tx_id=tx_id.hex(), height=1, time_ms=1)
    assert derive_id(tx_id.hex(), *parts) == ctx.derive_id(*parts)
    assert bench_derive_id(tx_id, *parts) == ctx.derive_id(*parts)


def test_derive_id_is_the_sha256_of_the_tx_id_and_parts_joined_by_colons() -> None:
    # Pinned: ids already on chains must keep resolving, so the formula itself may not drift.
    expected = hashlib.sha256(b"ab" * 32 + b":order:3").hexdigest()
    assert derive_id("ab" * 32, "order", 3) == expected
