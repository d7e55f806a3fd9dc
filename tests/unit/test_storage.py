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


def _keys(path, prefix: bytes) -> list[bytes]:
    import plyvel

    db = plyvel.DB(str(path))
    try:
        return [key for key, _ in db.iterator(prefix=prefix)]
    finally:
        db.close()


def _chain(store: Storage, heights: range) -> None:
    for height in heights:
        store.commit_block(committed(height, bytes([height]) * 32), {f"k/{height}": b"v"},
                           [(bytes([height]) * 32, 0)])


def test_blocks_live_in_their_own_database_and_the_state_database_holds_none(tmp_path) -> None:
    """Blocks alone in a database only ever append, so LevelDB moves their tables down the
    levels without rewriting them; the state database keeps the rest."""
    from node.storage import BLOCKS_DIR

    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    _chain(store, range(1, 4))
    store.close()
    assert _keys(tmp_path, b"b/") == []
    assert len(_keys(tmp_path / BLOCKS_DIR, b"b/")) == 3
    again = Storage(str(tmp_path))
    assert [again.get_block(h).block_hash for h in (1, 2, 3)] == [bytes([h]) * 32
                                                                   for h in (1, 2, 3)]
    assert again.get_block(4) is None
    again.close()


def test_a_block_written_before_a_crash_above_the_head_is_not_read_and_is_written_again(
    tmp_path
) -> None:
    """The block is synced before the batch that moves the head: a crash between the two
    leaves a block above the head, which no read returns and the next commit overwrites."""
    import plyvel

    from node.storage import BLOCKS_DIR

    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    _chain(store, range(1, 3))
    store.close()
    stray = committed(3, b"stray" * 6 + b"xx")
    blocks = plyvel.DB(str(tmp_path / BLOCKS_DIR))
    blocks.put(b"b/" + (3).to_bytes(8, "big"), stray.SerializeToString(), sync=True)
    blocks.close()
    again = Storage(str(tmp_path))
    assert again.head().height == 2
    assert again.get_block(3) is None and again.get_block_raw(3) is None
    reader = again.snapshot_reader()
    assert reader.block_raw(3) is None and reader.block_raw(2) is not None
    reader.close()
    _chain(again, range(3, 4))
    assert again.get_block(3).app_hash == bytes([3]) * 32
    again.close()


def test_a_store_whose_blocks_are_in_the_state_database_reads_prunes_and_restores_them(
    tmp_path
) -> None:
    """Stores written before the block database keep their blocks where they are: they are
    read from there, pruned there, and new blocks go to the block database."""
    import shutil

    import plyvel

    from node.storage import BLOCKS_DIR

    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    _chain(store, range(1, 5))
    store.close()
    blocks = plyvel.DB(str(tmp_path / BLOCKS_DIR))
    old = list(blocks.iterator(prefix=b"b/"))
    blocks.close()
    shutil.rmtree(tmp_path / BLOCKS_DIR)
    state = plyvel.DB(str(tmp_path))
    for key, value in old:
        state.put(key, value)
    state.close()

    legacy = Storage(str(tmp_path))
    assert [legacy.get_block(h).app_hash for h in (1, 2, 3, 4)] == [bytes([h]) * 32
                                                                     for h in (1, 2, 3, 4)]
    _chain(legacy, range(5, 7))
    assert legacy.get_block(6).app_hash == bytes([6]) * 32
    assert legacy.prune_below(3) == 3
    assert legacy.get_block(2) is None and legacy.get_block(3) is not None
    legacy.close()
    assert [int.from_bytes(k[2:], "big") for k in _keys(tmp_path, b"b/")] == [3, 4]
    assert [int.from_bytes(k[2:], "big") for k in _keys(tmp_path / BLOCKS_DIR, b"b/")] == [5, 6]

    restored = Storage(str(tmp_path))
    restored.begin_restore(9)
    assert _keys_of(restored) == ([], [])
    restored.close()


def _keys_of(store: Storage) -> tuple[list[bytes], list[bytes]]:
    """The block keys in the state database and in the block database."""
    return ([k for k, _ in store._db.iterator(prefix=b"b/")],
            [k for k, _ in store._blocks.iterator(prefix=b"b/")])


def test_consensus_records_move_once_from_the_state_database_into_their_own(tmp_path) -> None:
    """A store that kept consensus records in the state database has them copied into the
    consensus database and then deleted, and a crash between the two loses nothing."""
    import shutil

    import plyvel

    from node.storage import CONSENSUS_DIR

    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    store.put_consensus([("raft/term", b"3"), ("raft/entry/1", b"e1")])
    store.close()
    shutil.rmtree(tmp_path / CONSENSUS_DIR)
    state = plyvel.DB(str(tmp_path))
    state.put(b"c/raft/term", b"3")
    state.put(b"c/raft/entry/1", b"e1")
    state.close()

    moved = Storage(str(tmp_path))
    assert moved.consensus_records() == {"raft/term": b"3", "raft/entry/1": b"e1"}
    moved.put_consensus([("raft/entry/1", None), ("raft/entry/2", b"e2")])
    moved.close()
    assert _keys(tmp_path, b"c/") == []

    # A crash after the copy, before the delete: the state database still holds the old
    # records, and the consensus database the newer ones, which win.
    state = plyvel.DB(str(tmp_path))
    state.put(b"c/raft/entry/1", b"e1")
    state.close()
    again = Storage(str(tmp_path))
    assert again.consensus_records() == {"raft/term": b"3", "raft/entry/2": b"e2"}
    again.close()
    assert _keys(tmp_path, b"c/") == []


def test_a_catch_ups_unsynced_commits_keep_their_blocks_with_their_head(tmp_path) -> None:
    """Unsynced, the two databases could each lose a suffix on their own: those blocks go in
    the state batch, atomic with their head, and are read and pruned from there."""
    from node.storage import BLOCKS_DIR

    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)
    _chain(store, range(1, 3))
    for height in (3, 4, 5):
        store.commit_block(committed(height, bytes([height]) * 32), {}, [],
                           sync=height == 5)
    assert [store.get_block(h).app_hash for h in range(1, 6)] == [bytes([h]) * 32
                                                                   for h in range(1, 6)]
    store.close()
    as_height = lambda keys: [int.from_bytes(k[2:], "big") for k in keys]  # noqa: E731
    assert as_height(_keys(tmp_path, b"b/")) == [3, 4]
    assert as_height(_keys(tmp_path / BLOCKS_DIR, b"b/")) == [1, 2, 5]
    again = Storage(str(tmp_path))
    assert again.get_block(4).app_hash == bytes([4]) * 32
    assert again.prune_below(5) == 5
    assert [again.get_block(h) for h in (1, 3, 4)] == [None, None, None]
    again.close()
    assert _keys(tmp_path, b"b/") == [] and as_height(_keys(tmp_path / BLOCKS_DIR, b"b/")) == [5]
