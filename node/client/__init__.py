"""The Python client SDK: `LedgerClient` (one node), `QuorumClient` (f + 1 matching answers from
PBFT nodes) and `Account` (keys, signing, building txs).

    from node.client import Account, LedgerClient
"""

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError, ReceiptView, event_dict
from node.client.quorum import QuorumClient

__all__ = ["Account", "LedgerClient", "LedgerError", "QuorumClient", "ReceiptView", "event_dict"]
