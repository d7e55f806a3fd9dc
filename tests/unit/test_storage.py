"""Storage: one atomic synced batch per block, and a reopened store has the same head and state.

Uses a real plyvel store in a temporary directory.
"""

from __future__ import annotations

import pytest

from node.storage import Storage, StorageError
from proto import types_pb2


def committed(height: int, app_hash: bytes) -> types_pb2.CommittedBlock:
    header = types_pb2.BlockHeader(chain_id="c", height=height, time_ms=1000 + height)
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header),
        block_hash=bytes([height]) * 32,
        app_hash=app_hash,
    )


def test_reopen_keeps_height_app_hash_state_and_indexes(tmp_path) -> None:
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {"cash/bal/a": b"5"}, b"h0" * 16, 1000)
    store.commit_block(committed(1, b"h1" * 16), {"cash/bal/a": None, "cash/bal/b": b"5"},
                       [(b"t" * 32, 0)])
    store.put_consensus([("raft/term", b"3")])
    store.close()
    again = Storage(str(tmp_path))
    head = again.head()
    assert (head.height, head.app_hash, head.time_ms) == (1, b"h1" * 16, 1001)
    assert again.get_state("cash/bal/a") is None and again.get_state("cash/bal/b") == b"5"
    assert again.tx_location(b"t" * 32) == (1, 0)
    assert again.height_of_hash(bytes([1]) * 32) == 1
    assert again.get_block(1).app_hash == b"h1" * 16
    assert again.consensus_records() == {"raft/term": b"3"}
    assert again.genesis_id() == b"g" * 32
    again.close()


def test_commit_out_of_order_is_refused_and_writes_nothing(tmp_path) -> None:
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    with pytest.raises(StorageError):
        store.commit_block(committed(2, b"x" * 32), {"k": b"v"}, [])
    assert store.get_state("k") is None and store.head().height == 0
    with pytest.raises(StorageError):
        store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    store.close()


def test_iter_state_is_sorted_and_bounded_by_prefix(tmp_path) -> None:
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {"v/b": b"2", "v/a": b"1", "w/a": b"3"}, b"h" * 32, 1)
    assert list(store.iter_state("v/")) == [("v/a", b"1"), ("v/b", b"2")]
    store.close()
