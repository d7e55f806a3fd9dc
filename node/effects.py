"""What a node does with an engine's output, and in which order, without any I/O.

The driver's parts and the consensus simulator (tests/sim/simulator.py) share these: actions
are carried out in the order of `BatchEffects`, commits are applied under `is_next_commit`, and
offered slots are filled under `ProposalSlots`, so the seeded simulation runs exercise the
rules the node ships with (the simulator keeps its own network, disk and crash model).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from consensus.engine import Action, Broadcast, Commit, EngineStatus, Persist, RequestSync, Send
from node.chain import app_hash_height

Step = Send | Broadcast | Commit | RequestSync
PROPOSED_TIMES_MAX = 64


class FatalError(Exception):
    """The node must stop: continuing could corrupt or fork the ledger."""


@dataclass(frozen=True, slots=True)
class BatchEffects:
    """The actions of one batch of engine calls, in the order they take effect: every record
    to persist, written in one synced write before anything else (so a crash never forgets a
    vote that was sent), then the other actions in the engine's order."""

    records: tuple[tuple[str, bytes | None], ...]
    steps: tuple[Step, ...]

    @classmethod
    def of(cls, actions: Iterable[Action]) -> BatchEffects:
        records: list[tuple[str, bytes | None]] = []
        steps: list[Step] = []
        for action in actions:
            if isinstance(action, Persist):
                records.extend(action.records)
            else:
                steps.append(action)
        return cls(tuple(records), tuple(steps))


def is_next_commit(height: int, head_height: int) -> bool:
    """Whether a committed height is the one to apply next; False if it is applied already
    (before a restart, or by a catch-up). A gap means the engine and the store disagree."""
    if height <= head_height:
        return False
    if height != head_height + 1:
        raise FatalError(f"commit of height {height} while the chain is at {head_height}")
    return True


class ProposalSlots:
    """Which slot the engine offers this node may fill now, and the time of its parent.

    Blocks are pipelined: a header carries the app hash of height h - APP_HASH_LAG, so that
    block must be executed here while the parent may still be executing; then the parent's
    time is known only if this node proposed it (hence `_proposed_times`). One proposal per
    (round, height): a new round may re-propose an abandoned height.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._proposed: tuple[int, int] = (-1, 0)  # (round, height) of our last proposal
        self._proposed_times: OrderedDict[bytes, int] = OrderedDict()  # block hash -> time
        self._was_proposer = False

    def follow_leader(self, leader: str | None) -> bool:
        """Track the proposer role (not a free slot: PBFT offers one slot at a time); True when
        this node has just lost it."""
        is_proposer = leader == self.node_id
        lost = self._was_proposer and not is_proposer
        if lost:
            # What we proposed may never commit (a new PBFT view drops an unprepared block):
            # if this node proposes again, it must be able to fill the same height.
            self._proposed = (-1, 0)
        self._was_proposer = is_proposer
        return lost

    def free_slot(
        self, status: EngineStatus, head_height: int, head_time_ms: int
    ) -> tuple[int, bytes, int] | None:
        """(height, parent hash, parent's time) of the slot to fill now over an executed head,
        if any."""
        next_height, parent_hash = status.next_height, status.next_parent_hash
        if next_height is None or parent_hash is None:
            return None
        if (
            app_hash_height(next_height) > head_height
            or next_height <= head_height
            or self._proposed == (status.round, next_height)
        ):
            return None
        if next_height == head_height + 1:
            parent_time_ms: int | None = head_time_ms
        else:
            parent_time_ms = self._proposed_times.get(parent_hash)
        if parent_time_ms is None:
            return None
        return next_height, parent_hash, parent_time_ms

    def proposed(self, round: int, height: int, block_hash: bytes, time_ms: int) -> None:
        self._proposed = (round, height)
        self._proposed_times[block_hash] = time_ms
        while len(self._proposed_times) > PROPOSED_TIMES_MAX:
            self._proposed_times.popitem(last=False)
