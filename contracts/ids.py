"""Ids of the things a tx creates: derived from the tx id, so every node and client agrees.

`Context.derive_id` (which calls this) gives a contract the id of what its tx creates; a
client that builds the tx (e.g. the bench, whose later calls name what earlier ones created)
computes the same id here from the tx id alone, without running the contract.
"""

from __future__ import annotations

import hashlib


def derive_id(tx_id_hex: str, *parts: str | int) -> str:
    """sha256 of the hex tx id and the parts (e.g. a child index), joined by ':', as hex."""
    text = ":".join([tx_id_hex, *(str(p) for p in parts)])
    return hashlib.sha256(text.encode()).hexdigest()
