"""The consensus interface: the `Engine` protocol and the plain data it speaks.

An engine is a pure state machine. Time comes in as `now_ms`; randomness as an injected
`random.Random`; durable state comes back at construction as the records it asked to persist.
Output is a list of actions that the driver (a real node, or the simulator) carries out in
order: `Persist` before any later `Send`/`Broadcast`, so a crash never forgets a vote.

Blocks are opaque to engines: `payload` is the serialized block, `block_hash` its identity.
Whatever must check a block's contents (PBFT backups validating a proposal) is given a
`BlockValidator` function at construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

NodeId = str


@dataclass(frozen=True, slots=True)
class BlockProposal:
    """A block the driver built on the slot the engine offered (`EngineStatus.next_height`)."""

    height: int
    parent_hash: bytes
    block_hash: bytes
    payload: bytes


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    to: NodeId
    msg: Any  # an engine message: a frozen dataclass from the engine's module


@dataclass(frozen=True, slots=True)
class Broadcast:
    msg: Any  # sent to every other validator


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable records in the engine's namespace; `None` deletes. Synced before later actions.

    The driver hands every record back (as `restored`) when the engine is rebuilt after a
    restart; the engine encodes its own values (e.g. with `consensus.codec`).
    """

    records: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Commit:
    """Block `height` is decided. Emitted once per height, in height order."""

    height: int
    block_hash: bytes
    block: bytes
    certificate: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestSync:
    """Ask the driver to fetch committed blocks from `from_height` on from `from_node`.

    The driver fetches, verifies and executes them, then calls `Engine.synced(height)`.
    """

    from_node: NodeId
    from_height: int


Action = Send | Broadcast | Persist | Commit | RequestSync


@dataclass(frozen=True, slots=True)
class EngineStatus:
    role: str  # "leader" | "follower" | "candidate" | "primary" | "backup" | "solo"
    round: int  # Raft term or PBFT view
    leader: NodeId | None  # who proposes now, if known
    commit_height: int  # highest height this engine has emitted a Commit for
    # The slot a proposal should fill, when this node may propose now; else None.
    next_height: int | None = None
    next_parent_hash: bytes | None = None
    # How many proposals may be in flight before the driver should wait (pipelining bound).
    proposals_in_flight: int = 0
    extra: Mapping[str, int | str] = field(default_factory=dict)


def fills_offered_slot(status: EngineStatus, block: BlockProposal) -> bool:
    """Whether a proposal is for the slot the engine offers now (height and parent)."""
    return (
        status.next_height is not None
        and block.height == status.next_height
        and block.parent_hash == status.next_parent_hash
    )


# Given (height, parent_hash, payload), is this proposal acceptable? (PBFT backups.) False means
# "not now": the block is bad, or its checks (the parent's execution, signature checks running off
# the event loop) are not finished; the engine asks again on a later tick, so a validator never
# waits for a verdict.
BlockValidator = Callable[[int, bytes, bytes], bool]


class Engine(Protocol):
    """What every consensus engine offers; see the module docstring for the contract."""

    def start(self, now_ms: int) -> list[Action]: ...

    def tick(self, now_ms: int) -> list[Action]: ...

    def receive(self, sender: NodeId, msg: Any) -> list[Action]: ...

    def propose(self, block: BlockProposal) -> list[Action]: ...

    def synced(self, height: int, block_hash: bytes) -> list[Action]:
        """The driver applied committed blocks up to `height` obtained by sync."""
        ...

    def reconfigure(self, effective_height: int, validators: tuple[NodeId, ...]) -> list[Action]:
        """From height `effective_height` on, `validators` are the voting validators.

        The node calls it right after executing (and storing) the block whose execution changed
        the set (so `effective_height` is at least 4 above that block), in epoch order, on
        validators and observers alike, and again at start-up with the stored set: a repeated
        identical call is a no-op, and an `effective_height` at or below the commit height means
        "already in effect". An engine refuses a change it cannot apply safely (ValueError).
        """
        ...

    @property
    def status(self) -> EngineStatus: ...


GENESIS_HASH = bytes(32)
