"""Byzantine behaviours for PBFT sim tests, as outgoing-message hooks on the simulator.

A Byzantine node runs an honest engine whose outgoing messages a hook rewrites, drops or
multiplies per recipient (after broadcasts are expanded), re-signing what it changes with the
node's own sim key: it can lie only as itself, as a real Byzantine node could.

- `Equivocator`: as primary, sends another valid block to some backups, and (optionally)
  prepares and commits whichever block each recipient got;
- `ConflictingVoter`: sends some recipients prepares and commits for a block that does not
  exist, besides (or instead of) its honest votes;
- `Silent`: sends nothing (or nothing of some kinds: a silent primary);
- `Replayer`: also sends, at random, messages it sent long ago;
- `Twins`: two engines with one identity and key, hearing different parts of the cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.engine import Broadcast, NodeId, Send
from consensus.pbft_messages import (
    CommitVote,
    Prepare,
    PrePrepare,
    commit_statement,
    prepare_statement,
)
from tests.sim.pbft_cluster import other_block, sim_sign
from tests.sim.simulator import Simulator


def _revote(msg: Prepare | CommitVote, sender: NodeId, block_hash: bytes) -> Any:
    if isinstance(msg, Prepare):
        signature = sim_sign(sender, prepare_statement(msg.view, msg.height, block_hash))
        return Prepare(msg.view, msg.height, block_hash, signature)
    signature = sim_sign(sender, commit_statement(msg.view, msg.height, block_hash))
    return CommitVote(msg.view, msg.height, block_hash, signature)


@dataclass
class Equivocator:
    """Recipients for whom `fooled(to)` holds get another block than the rest, and, with
    `double_vote`, this node's prepares and commits for that block too. Several colluding
    equivocators share one `alternatives` map so they fool the same replicas the same way."""

    fooled: Callable[[NodeId], bool]
    double_vote: bool = True
    alternatives: dict[bytes, bytes] = field(default_factory=dict)  # real hash -> alt payload

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if not self.fooled(to):
            return (msg,)
        if isinstance(msg, PrePrepare):
            alt = self.alternatives.setdefault(
                msg.block_hash, other_block(msg.payload, f"{sender}:{msg.view}")
            )
            return (PrePrepare(msg.view, msg.height, hashlib.sha256(alt).digest(), alt),)
        if self.double_vote and isinstance(msg, Prepare | CommitVote):
            alt_payload = self.alternatives.get(msg.block_hash)
            if alt_payload is not None:
                return (_revote(msg, sender, hashlib.sha256(alt_payload).digest()),)
        return (msg,)


@dataclass
class ConflictingVoter:
    """Votes for a phantom block to recipients for whom `fooled(to)` holds; with `also_honest`
    it sends them its honest vote as well (two conflicting votes on one slot)."""

    fooled: Callable[[NodeId], bool]
    also_honest: bool = True

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if not isinstance(msg, Prepare | CommitVote) or not self.fooled(to):
            return (msg,)
        phantom = hashlib.sha256(b"phantom" + msg.block_hash).digest()
        lie = _revote(msg, sender, phantom)
        return (lie, msg) if self.also_honest else (lie,)


@dataclass
class Silent:
    """Drops every message, or only those of the given kinds (e.g. `(PrePrepare,)`)."""

    kinds: tuple[type[Any], ...] = ()

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        if not self.kinds or isinstance(msg, self.kinds):
            return ()
        return (msg,)


@dataclass
class Replayer:
    """Sends what it should, and with probability `rate` also an old message of its own."""

    rate: float = 0.3
    sent: list[Any] = field(default_factory=list)
    kept_max: int = 500

    def __call__(self, sim: Simulator, sender: NodeId, to: NodeId, msg: Any) -> Sequence[Any]:
        out = [msg]
        if self.sent and sim.rng.random() < self.rate:
            out.append(self.sent[sim.rng.randrange(len(self.sent))])
        if len(self.sent) < self.kept_max:
            self.sent.append(msg)
        return out


def fool_half(seed: int) -> Callable[[NodeId], bool]:
    """A fixed, seed-chosen half of the node ids."""
    return lambda node_id: hashlib.sha256(f"{seed}:{node_id}".encode()).digest()[0] % 2 == 0


class Twins:
    """Two engines running one node's identity and key (a cloned validator). The first twin
    hears everyone and its commits and records are the node's; the second hears only
    `second_hears` and its votes go out too, so the node contradicts itself whenever the twins'
    views of the cluster diverge. Build it in an engine factory for the twinned node id."""

    def __init__(
        self,
        first: Any,
        second: Any,
        second_hears: Callable[[NodeId], bool],
        second_proposes: Callable[[Any], Any] | None = None,
    ) -> None:
        self.first = first
        self.second = second
        self.second_hears = second_hears
        # When the node may propose, the second twin proposes `second_proposes(block)` too.
        self.second_proposes = second_proposes

    @staticmethod
    def _speech(actions: list[Any]) -> list[Any]:
        return [a for a in actions if isinstance(a, Send | Broadcast)]

    def start(self, now_ms: int) -> list[Any]:
        return [*self.first.start(now_ms), *self._speech(self.second.start(now_ms))]

    def tick(self, now_ms: int) -> list[Any]:
        return [*self.first.tick(now_ms), *self._speech(self.second.tick(now_ms))]

    def receive(self, sender: NodeId, msg: Any) -> list[Any]:
        out = self.first.receive(sender, msg)
        if self.second_hears(sender):
            out = [*out, *self._speech(self.second.receive(sender, msg))]
        return out

    def propose(self, block: Any) -> list[Any]:
        out = self.first.propose(block)
        if self.second_proposes is not None:
            out = [*out, *self._speech(self.second.propose(self.second_proposes(block)))]
        return out

    def synced(self, height: int, block_hash: bytes) -> list[Any]:
        return [
            *self.first.synced(height, block_hash),
            *self._speech(self.second.synced(height, block_hash)),
        ]

    @property
    def status(self) -> Any:
        return self.first.status
