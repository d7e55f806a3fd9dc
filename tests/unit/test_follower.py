"""An observer's status: txs go to the proposer of its head block, unless that proposer is the
observer itself or was voted out (then no leader is known, and Submit says "retry"); pending
txs are handed to the leader it knows."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.follower import Follower
from node.storage import ChainHead
from proto import types_pb2


@dataclass
class Chain:
    head: ChainHead = field(default_factory=lambda: ChainHead(5, b"a", b"h", 1_000))

    def app_hash_at(self, height: int) -> bytes:
        return b"a"


@dataclass
class Sets:
    voters: tuple[str, ...]

    def is_voter(self, node_id: str, height: int) -> bool:
        return node_id in self.voters

    def ids_at(self, height: int) -> tuple[str, ...]:
        return self.voters


@dataclass
class Epochs:
    sets: Sets


@dataclass
class HandOffs:
    leaders: list[str | None] = field(default_factory=list)

    def maybe_hand_off(self, leader: str | None) -> None:
        self.leaders.append(leader)


def _follower(proposer: str, voters: tuple[str, ...]) -> Follower:
    block = types_pb2.CommittedBlock(
        block=types_pb2.Block(header=types_pb2.BlockHeader(height=5, proposer=proposer, round=3))
    )
    return Follower("n4", None, Chain(), Epochs(Sets(voters)),  # type: ignore[arg-type]
                    lambda height: block, HandOffs())


def test_txs_go_to_the_proposer_of_the_head_block() -> None:
    status = _follower("n2", ("n1", "n2", "n3")).status
    assert (status.role, status.leader, status.round, status.commit_height) == (
        "observer", "n2", 3, 5)


def test_no_leader_while_the_head_was_proposed_by_a_removed_validator_or_this_node() -> None:
    assert _follower("n2", ("n1", "n3")).status.leader is None
    assert _follower("n4", ("n1", "n3", "n4")).status.leader is None
