"""Test-only Byzantine behaviour for a real node: `SCFCHAIN_BYZANTINE=equivocate`.

A node started with it equivocates whenever it is the PBFT primary: its pre-prepare for a
height reaches the last of its peers (in id order) with a different block — same height and
parent, a later timestamp, so a different hash — while the other peers get the real one. The
transport signs both, as a lying primary with a valid key would. The honest replicas must keep
agreeing and committing (end-to-end tests; `scfchain cluster up --byzantine NODE`).
`python -m node.faults` reads the variable (`mode()`) and wraps the node's transport in
`EquivocatingTransport`; `scfchain node` never looks at it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Any, Protocol

from consensus.pbft_messages import PrePrepare
from node.chain import block_hash_of
from node.ports import PeerTransport
from proto import types_pb2

log = logging.getLogger(__name__)

ENV = "SCFCHAIN_BYZANTINE"
MODES = ("equivocate", "bad-snapshot-chunk", "wrong-snapshot")  # the last two: snapshot_lies.py


def mode() -> str:
    value = os.environ.get(ENV, "")
    if value and value not in MODES:
        raise ValueError(f"{ENV}: unknown mode {value!r}; known: {MODES}")
    return value


def mutate(peers: list[str], to: str, msg: Any) -> Any:
    """The message this Byzantine node sends to `to` instead of `msg`."""
    if not isinstance(msg, PrePrepare) or not peers or to != max(peers):
        return msg
    block = types_pb2.Block()
    block.ParseFromString(msg.payload)
    block.header.time_ms += 1
    forged = PrePrepare(
        view=msg.view,
        height=msg.height,
        block_hash=block_hash_of(block.header),
        payload=block.SerializeToString(),
    )
    log.warning("BYZANTINE: pre-prepare for height %d to %s carries another block", msg.height, to)
    return forged


class _Peers(PeerTransport, Protocol):
    @property
    def peer_ids(self) -> list[str]: ...


class EquivocatingTransport:
    """A `PeerTransport` that sends through `inner` (which signs every message), with each
    broadcast expanded per peer so that `mutate` can tell one peer something else."""

    def __init__(self, inner: _Peers) -> None:
        self.inner = inner
        self._sorted_peers = sorted(inner.peer_ids)
        log.warning("BYZANTINE MODE 'equivocate': this node will lie (tests only)")

    def send(self, to: str, msg: Any) -> None:
        if to in self._sorted_peers:
            msg = mutate(self._sorted_peers, to, msg)
        self.inner.send(to, msg)

    def broadcast(self, msg: Any) -> None:
        for peer in self.inner.peer_ids:
            self.send(peer, msg)

    async def forward(self, to: str, txs: list[types_pb2.SignedTx]) -> None:
        await self.inner.forward(to, txs)

    def fetch_blocks(self, peer: str, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        return self.inner.fetch_blocks(peer, from_height)
