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
    assert again.get_block(1).block_hash == bytes([1]) * 32
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


def test_has_tx_never_misses_a_committed_id_through_filter_growth_and_reopen(
    tmp_path, monkeypatch
) -> None:
    """The in-memory tx id filter grows past its capacity (rebuilt from the index) and is
    rebuilt on reopen; a committed id is always found, and most unknown ids never reach
    LevelDB."""
    import hashlib

    import node.txfilter as txfilter

    monkeypatch.setattr(txfilter, "CAPACITY_MIN", 64)
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    ids = [hashlib.sha256(b"tx%d" % i).digest() for i in range(600)]
    for height in range(1, 7):
        chunk = ids[(height - 1) * 100 : height * 100]
        store.commit_block(committed(height, bytes([height]) * 32), {},
                           [(tx_id, i) for i, tx_id in enumerate(chunk)])
        assert all(store.has_tx(tx_id) for tx_id in ids[: height * 100])
    assert store._tx_filter.capacity >= 600  # grew from 64
    unknown = [hashlib.sha256(b"new%d" % i).digest() for i in range(2000)]
    assert not any(store.has_tx(tx_id) for tx_id in unknown)
    maybes = sum(store._tx_filter.might_contain(tx_id) for tx_id in unknown)
    assert maybes < 100  # ~1 % false positives expected; each only costs a store read
    store.close()
    again = Storage(str(tmp_path))
    assert all(again.has_tx(tx_id) for tx_id in ids)
    assert not any(again.has_tx(tx_id) for tx_id in unknown)
    again.close()


def test_execution_state_cache_follows_every_committed_write_and_delete(tmp_path) -> None:
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {"a": b"1", "b": b"2"}, b"h0" * 16, 1000)
    assert store.get_state_for_execution("a") == b"1"
    assert store.get_state_for_execution("c") is None  # a miss is remembered too
    store.commit_block(committed(1, b"h1" * 16), {"a": None, "c": b"3", "d": b"4"}, [])
    for read in (store.get_state, store.get_state_for_execution):
        assert (read("a"), read("b"), read("c"), read("d")) == (None, b"2", b"3", b"4")
    store.close()
    again = Storage(str(tmp_path))
    assert again.get_state_for_execution("a") is None and again.get_state("c") == b"3"
    again.close()


@pytest.mark.parametrize(("first", "then"), [("snappy", "none"), ("none", "snappy")])
def test_a_store_reopens_with_the_other_compression(tmp_path, first: str, then: str) -> None:
    """Tables record their own compression, so an operator may switch either way."""
    value = b'{"holder":"' + b"ab" * 2000 + b'"}'  # compressible, spans LevelDB blocks
    store = Storage(str(tmp_path), compression=first)
    store.init_genesis(b"g" * 32, {"v/1": value}, b"h0" * 16, 1000)
    store._db.compact_range()  # into a table written with `first`
    store.close()
    again = Storage(str(tmp_path), compression=then)
    again.commit_block(committed(1, b"h1" * 16), {"v/2": value}, [(b"t" * 32, 0)])
    again._db.compact_range()
    assert again.get_state("v/1") == value and again.get_state("v/2") == value
    again.close()


def test_an_unknown_compression_is_refused(tmp_path) -> None:
    with pytest.raises(StorageError, match="choose none or snappy"):
        Storage(str(tmp_path), compression="zstd")
