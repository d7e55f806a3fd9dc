"""The mempool's order and its byte and count accounting through every way a tx leaves."""

from __future__ import annotations

import pytest

from node.mempool import Mempool, MempoolFull
from proto import types_pb2


def tx(i: int, body_bytes: int = 10) -> tuple[bytes, types_pb2.SignedTx]:
    return bytes([i]) * 32, types_pb2.SignedTx(body=bytes([i]) * body_bytes, signature=b"s" * 64)


SIZE = 10 + 64


def test_bytes_follow_add_take_remove_and_requeue() -> None:
    pool = Mempool(100, 1_000_000)
    pool.add_batch(tx(i) for i in range(6))
    assert (len(pool), pool.pending_count, pool.bytes) == (6, 6, 6 * SIZE)
    taken = pool.take(4, 1_000_000)
    assert [tx_id for tx_id, _ in taken] == [tx(i)[0] for i in range(4)]
    assert (len(pool), pool.pending_count, pool.bytes) == (6, 2, 6 * SIZE)
    pool.remove_committed([tx(1)[0], tx(5)[0], b"\x99" * 32])  # in flight, pending, unknown
    assert (len(pool), pool.pending_count, pool.bytes) == (4, 1, 4 * SIZE)
    assert tx(1)[0] not in pool and tx(5)[0] not in pool and tx(0)[0] in pool
    assert pool.requeue_in_flight() == 3
    again = pool.take(10, 1_000_000)
    assert [tx_id for tx_id, _ in again] == [tx(i)[0] for i in (0, 2, 3, 4)]
    pool.remove_committed(tx_id for tx_id, _ in again)
    assert (len(pool), pool.bytes) == (0, 0)


def test_take_stops_at_the_byte_limit_and_keeps_the_rest_first() -> None:
    pool = Mempool(100, 1_000_000)
    pool.add_batch(tx(i) for i in range(5))
    first = pool.take(10, 2 * SIZE + 1)
    assert [tx_id for tx_id, _ in first] == [tx(0)[0], tx(1)[0]]
    assert [tx_id for tx_id, _ in pool.take(1, 1_000_000)] == [tx(2)[0]]
    assert pool.bytes == 5 * SIZE


def test_a_batch_that_does_not_fit_adds_nothing() -> None:
    pool = Mempool(3, 1_000_000)
    pool.add_batch([tx(0)])
    with pytest.raises(MempoolFull):
        pool.add_batch(tx(i) for i in range(1, 4))
    assert (len(pool), pool.bytes) == (1, SIZE)
    by_bytes = Mempool(100, 3 * SIZE)
    with pytest.raises(MempoolFull):
        by_bytes.add_batch(tx(i) for i in range(4))
    assert (len(by_bytes), by_bytes.bytes) == (0, 0)


def test_drain_pending_frees_its_bytes_and_leaves_in_flight_alone() -> None:
    pool = Mempool(100, 1_000_000)
    pool.add_batch(tx(i) for i in range(5))
    pool.take(2, 1_000_000)
    drained = pool.drain_pending(2)
    assert [tx_id for tx_id, _ in drained] == [tx(2)[0], tx(3)[0]]
    assert drained[0][1].body == tx(2)[1].body
    assert (len(pool), pool.pending_count, pool.bytes) == (3, 1, 3 * SIZE)


def test_a_tx_already_held_is_not_counted_twice() -> None:
    pool = Mempool(100, 1_000_000)
    pool.add_batch([tx(0), tx(1)])
    pool.add_batch([tx(1), tx(2)])
    assert (len(pool), pool.bytes) == (3, 3 * SIZE)
