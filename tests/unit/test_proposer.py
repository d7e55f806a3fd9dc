"""The proposer's rules: one proposal per (round, height), pipelining only onto a parent whose
time we know and no deeper than APP_HASH_LAG allows, leadership lost puts txs back and hands
them on, a few txs at once when nothing is in flight and after `interval_ms` otherwise, empty
blocks only after `empty_block_interval_ms`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from consensus.engine import BlockProposal, EngineStatus
from node.chain import block_hash_of
from node.chain_params import ChainParams
from node.genesis import BlockLimits
from node.mempool import Mempool
from node.proposer import Proposer
from node.storage import ChainHead
from proto import types_pb2

GENESIS_HASH = bytes(32)
HEAD_TIME_MS = 1_000


@dataclass
class Chain:
    head: ChainHead = field(default_factory=lambda: ChainHead(0, b"a0", GENESIS_HASH, HEAD_TIME_MS))

    def app_hash_at(self, height: int) -> bytes:
        return f"a{height}".encode()


@dataclass
class HandOffs:
    leaders: list[str | None] = field(default_factory=list)

    def maybe_hand_off(self, leader: str | None) -> None:
        self.leaders.append(leader)


@dataclass
class Clock:
    now_ms: int = 5_000

    def __call__(self) -> int:
        return self.now_ms


def make(*, empty_block_interval_ms: int = 0, txs: int = 3) -> tuple[Proposer, Mempool, Clock,
                                                                      HandOffs]:
    mempool = Mempool(100, 1_000_000)
    mempool.add_batch(
        (bytes([i]) * 32, types_pb2.SignedTx(body=bytes([i]), signature=b"s")) for i in range(txs)
    )
    clock, hand_offs = Clock(), HandOffs()
    params = ChainParams(BlockLimits(txs_max=10, interval_ms=50), empty_block_interval_ms)
    proposer = Proposer(
        "n1", "chain", params, mempool, Chain(), hand_offs, wall_clock_ms=clock,
    )
    return proposer, mempool, clock, hand_offs


def status(height: int | None, parent: bytes | None = GENESIS_HASH, *, round: int = 1,
           leader: str = "n1") -> EngineStatus:
    return EngineStatus(role="leader", round=round, leader=leader, commit_height=0,
                        next_height=height, next_parent_hash=parent)


def header_of(proposal: BlockProposal) -> types_pb2.BlockHeader:
    block = types_pb2.Block()
    block.ParseFromString(proposal.payload)
    return block.header


def test_a_proposal_carries_the_slot_our_app_hash_and_the_pending_txs() -> None:
    proposer, mempool, clock, _ = make()
    proposal = proposer.offer(status(1))
    assert proposal is not None
    header = header_of(proposal)
    assert (header.height, header.parent_hash, header.round) == (1, GENESIS_HASH, 1)
    assert header.time_ms == clock.now_ms and header.prev_app_hash == b"a0"
    assert proposal.block_hash == block_hash_of(header)
    assert mempool.pending_count == 0 and len(mempool) == 3  # in flight until committed


def test_one_proposal_per_round_and_height() -> None:
    proposer, mempool, clock, _ = make()
    assert proposer.offer(status(1)) is not None
    mempool.requeue_in_flight()
    clock.now_ms += 1_000
    assert proposer.offer(status(1)) is None  # same round and height
    assert proposer.offer(status(1, round=2)) is not None  # a new round may re-propose it


def test_pipelining_needs_our_own_parent_and_stops_at_the_app_hash_lag() -> None:
    proposer, _, clock, _ = make(txs=30)
    first = proposer.offer(status(1))
    assert first is not None
    clock.now_ms -= 100  # a clock step back: the child's time still follows the parent's
    assert proposer.offer(status(2, b"someone else's")) is None  # parent time unknown
    second = proposer.offer(status(2, first.block_hash))
    assert second is not None
    assert header_of(second).time_ms == header_of(first).time_ms + 1
    # Height 3 carries the app hash after block 1, which is not executed yet.
    assert proposer.offer(status(3, second.block_hash)) is None


def test_losing_the_proposer_role_requeues_in_flight_txs_and_hands_pending_ones_on() -> None:
    proposer, mempool, clock, hand_offs = make()
    assert proposer.offer(status(1)) is not None
    assert mempool.pending_count == 0
    assert proposer.offer(status(None, None, leader="n2")) is None
    assert mempool.pending_count == 3 and hand_offs.leaders == ["n2"]
    clock.now_ms += 1_000
    # Leading again in the same round: the abandoned height may be filled again.
    assert proposer.offer(status(1)) is not None


def test_with_the_pipeline_idle_a_few_txs_go_at_once() -> None:
    proposer, _, clock, _ = make(txs=2)
    clock.now_ms = 40  # less than interval_ms since the last proposal (at 0)
    # The slot sits on the executed head: nothing of ours is in flight, so waiting gains nothing.
    assert proposer.offer(status(1)) is not None


def test_few_txs_wait_for_the_block_interval_while_a_block_is_in_flight() -> None:
    proposer, mempool, clock, _ = make(txs=20)
    clock.now_ms = 40
    first = proposer.offer(status(1))  # a full block's worth: at once
    assert first is not None and mempool.pending_count == 10
    mempool.take(8, 1_000_000)  # leave 2 pending: fewer than a block
    clock.now_ms = 40 + 49  # block 1 is not executed yet: the slot at 2 is not on the head
    assert proposer.offer(status(2, first.block_hash)) is None
    clock.now_ms = 40 + 50
    second = proposer.offer(status(2, first.block_hash))
    assert second is not None and len(types_pb2.Block.FromString(second.payload).txs) == 2


def test_empty_blocks_only_after_the_empty_block_interval_and_never_when_it_is_zero() -> None:
    never, _, clock, _ = make(txs=0)
    clock.now_ms = HEAD_TIME_MS + 10**9
    assert never.offer(status(1)) is None
    proposer, _, clock, _ = make(txs=0, empty_block_interval_ms=1_000)
    clock.now_ms = HEAD_TIME_MS + 999
    assert proposer.offer(status(1)) is None
    clock.now_ms = HEAD_TIME_MS + 1_000
    proposal = proposer.offer(status(1))
    assert proposal is not None and not types_pb2.Block.FromString(proposal.payload).txs


def test_the_block_limits_are_the_params_in_force_at_the_slots_height() -> None:
    mempool = Mempool(100, 1_000_000)
    mempool.add_batch(
        (bytes([i]) * 32, types_pb2.SignedTx(body=bytes([i]), signature=b"s")) for i in range(12)
    )
    # Decided in block 0: from height 2 on, blocks hold at most 4 txs.
    doc = {"block_txs_max": 4, "block_bytes_max": 1_000_000, "empty_block_interval_ms": 0,
           "effective_height": 2, "earlier": [{"from_height": 0, "block_txs_max": 6,
                                              "block_bytes_max": 1_000_000,
                                              "empty_block_interval_ms": 0}]}
    params = ChainParams(BlockLimits(txs_max=10, interval_ms=50), 0,
                         lambda key: json.dumps(doc).encode())
    clock = Clock()
    proposer = Proposer("n1", "chain", params, mempool, Chain(), HandOffs(), wall_clock_ms=clock)
    first = proposer.offer(status(1))
    assert first is not None
    clock.now_ms += 100
    second = proposer.offer(status(2, first.block_hash))
    assert second is not None
    sizes = [len(types_pb2.Block.FromString(p.payload).txs) for p in (first, second)]
    assert sizes == [6, 4]
