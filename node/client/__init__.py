"""The Python client SDK: `LedgerClient` (one node), `QuorumClient` (f + 1 matching answers from
PBFT nodes) and `Account` (keys, signing, building txs).

    from node.client import Account, LedgerClient

The names are imported when first used (PEP 562), so importing one light module of the package
(`node.client.sigcheck`, which a node's signature workers import) does not bring in gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.client.identity import Account
    from node.client.ledger import LedgerClient, LedgerError, ReceiptView, event_dict
    from node.client.quorum import QuorumClient

_WHERE = {
    "Account": "node.client.identity",
    "LedgerClient": "node.client.ledger",
    "LedgerError": "node.client.ledger",
    "ReceiptView": "node.client.ledger",
    "event_dict": "node.client.ledger",
    "QuorumClient": "node.client.quorum",
}

__all__ = ["Account", "LedgerClient", "LedgerError", "QuorumClient", "ReceiptView", "event_dict"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'node.client' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
