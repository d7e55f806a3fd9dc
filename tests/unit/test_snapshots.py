"""State snapshots (node/snapshots.py) and the store's restore (node/storage.py): every honest
node writes the same chunks and manifest for a height; a restore from them gives the same
state, tx index and head; a tampered chunk, a manifest of another chain or block, or a wrong
signature is refused; a restore cut short is detected on the next open and emptied."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct

import plyvel
import pytest

from bench.state_sync import restore_figures
from node.client.identity import Account
from node.config import ConfigError, Snapshots, parse_config
from node.snapshots import (
    SnapshotError,
    SnapshotStore,
    Snapshotter,
    check_chunk,
    chunks_of,
    decode_chunk,
    parse_signed,
    signing_statement,
)
from node.state_sync import signers_needed
from node.storage import Storage
from proto import peer_pb2, types_pb2

CHAIN = "snap-test"
SIGNER = Account.from_seed(b"node1")


def _fill(path: str, blocks: int = 30, keys_per_block: int = 40) -> Storage:
    storage = Storage(path)
    storage.init_genesis(b"g" * 32, {"genesis/x": b"1"}, b"a" * 32, 1_000)
    _extend(storage, blocks, keys_per_block)
    return storage


def _extend(storage: Storage, blocks: int, keys_per_block: int = 40) -> None:
    first = storage.head().height + 1
    for height in range(first, first + blocks):
        writes: dict[str, bytes | None] = {
            f"k/{height:04d}/{i:03d}": os.urandom(8) + bytes([height])
            for i in range(keys_per_block)
        }
        if height > 2:
            writes[f"k/{height - 2:04d}/000"] = None  # deletes too
        header = types_pb2.BlockHeader(chain_id=CHAIN, height=height, time_ms=1_000 + height)
        app_hash = hashlib.sha256(b"app%d" % height).digest()
        block = types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                         block_hash=hashlib.sha256(b"b%d" % height).digest(),
                                         app_hash=app_hash)
        tx_ids = [(hashlib.sha256(b"tx%d-%d" % (height, i)).digest(), i) for i in range(5)]
        storage.commit_block(block, writes, tx_ids)


def _contents(storage: Storage) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    reader = storage.snapshot_reader()
    try:
        return list(reader.state()), list(reader.tx_index())
    finally:
        reader.close()


def _store(tmp_path, name: str = "snaps", chunk_bytes: int = 2_000) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / name), CHAIN, "node1", SIGNER, keep=2,
                         chunk_bytes=chunk_bytes)


def _keys(node: str) -> bytes | None:
    return SIGNER.public_key if node == "node1" else None


def test_a_restore_gives_the_same_state_index_and_head(tmp_path) -> None:
    source = _fill(str(tmp_path / "a"))
    store = _store(tmp_path)
    reader = source.snapshot_reader()
    signed = store.write(reader)
    reader.close()
    snapshot = parse_signed(signed, CHAIN, _keys)
    manifest = snapshot.manifest
    assert manifest.height == 30 and len(manifest.chunk_hashes) > 5
    assert manifest.tx_ids == 150 and manifest.app_hash == source.app_hash_at(30)

    target = Storage(str(tmp_path / "b"))
    target.init_genesis(b"g" * 32, {"genesis/x": b"1", "stale": b"x"}, b"a" * 32, 1_000)
    target.begin_restore(30)
    for index in range(len(manifest.chunk_hashes)):
        data = store.chunk(30, index)
        assert data is not None
        check_chunk(snapshot, index, data)
        target.restore_records(*decode_chunk(data))
    block = types_pb2.CommittedBlock.FromString(manifest.block)
    target.finish_restore(block, manifest.prev_app_hash)
    assert _contents(target) == _contents(source)
    assert target.head() == source.head() and target.base_height() == 30
    assert target.app_hash_at(29) == source.app_hash_at(29)
    assert target.get_block(29) is None and target.get_block(30) == source.get_block(30)
    tx = hashlib.sha256(b"tx3-4").digest()
    assert target.has_tx(tx) and target.tx_location(tx) == (3, 4)
    assert target.restore_pending() is None
    # The restored node serves the very same snapshot in turn (its per-block tx id records
    # came with the restore).
    again = target.snapshot_reader()
    assert _store(tmp_path, "again").write(again).manifest == signed.manifest
    again.close()


def _drop_tx_id_records(path: str) -> None:
    """Make a store look like one written before the per-block tx id records existed."""
    db = plyvel.DB(path)
    with db.iterator(prefix=b"i/", include_value=False) as it:
        keys = list(it)
    assert keys, "the store had no per-block tx id records to drop"
    with db.write_batch() as batch:
        for key in keys:
            batch.delete(key)
        batch.delete(b"m/tx_ids_by_height")
    db.close()


def test_an_older_store_gets_its_per_block_tx_ids_from_the_index_once_opened(tmp_path) -> None:
    path = str(tmp_path / "a")
    storage = _fill(path)
    # One block with a duplicate skipped: indexes need not be contiguous.
    header = types_pb2.BlockHeader(chain_id=CHAIN, height=31, time_ms=2_000)
    storage.commit_block(types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                                  block_hash=bytes(32), app_hash=bytes(32)),
                         {}, [(b"\x01" * 32, 0), (b"\x02" * 32, 2)])
    reader = storage.snapshot_reader()
    before = _store(tmp_path, "before").write(reader)
    reader.close()
    storage.close()
    _drop_tx_id_records(path)
    reopened = Storage(path)
    reader = reopened.snapshot_reader()
    assert _store(tmp_path, "after").write(reader).manifest == before.manifest
    reader.close()
    assert parse_signed(before, CHAIN, _keys).manifest.tx_ids == 152


def test_two_nodes_write_the_same_manifest_bytes_for_a_height(tmp_path) -> None:
    storage = _fill(str(tmp_path / "a"))
    first, second = _store(tmp_path, "one"), _store(tmp_path, "two")
    signed = []
    for store in (first, second):
        reader = storage.snapshot_reader()
        signed.append(store.write(reader))
        reader.close()
    assert signed[0].manifest == signed[1].manifest


def _write(store: SnapshotStore, storage: Storage) -> peer_pb2.SignedManifest:
    reader = storage.snapshot_reader()
    try:
        return store.write(reader)
    finally:
        reader.close()


def test_a_later_snapshot_links_the_tx_id_chunks_of_the_one_before(tmp_path) -> None:
    """The tx id chunks complete at height 30 are linked, not written again, into the snapshot
    at 60, which is still the same bytes as a fresh node's; and they outlive the snapshot they
    came from."""
    storage = _fill(str(tmp_path / "a"))
    store = _store(tmp_path)
    at_30 = parse_signed(_write(store, storage), CHAIN, _keys).manifest
    _extend(storage, 30)
    at_60 = parse_signed(_write(store, storage), CHAIN, _keys).manifest
    fresh = parse_signed(_write(_store(tmp_path, "fresh"), storage), CHAIN, _keys).manifest
    assert at_60 == fresh and at_60.height == 60 and at_60.tx_ids == 300

    def kinds(height: int, index: int) -> tuple[bool, bool]:
        state, txs = decode_chunk(store.chunk(height, index) or b"")
        return bool(state), bool(txs)

    # The state has chunks of its own; the tx id chunks follow.
    kinds_30 = [kinds(30, i) for i in range(len(at_30.chunk_hashes))]
    assert (True, True) not in kinds_30 and kinds_30[0] == (True, False)
    first_tx = kinds_30.index((False, True))
    tx_chunks_30 = len(at_30.chunk_hashes) - first_tx
    assert tx_chunks_30 >= 2  # so at least one complete chunk to link
    first_tx_60 = [kinds(60, i) for i in range(len(at_60.chunk_hashes))].index((False, True))
    linked = [
        i for i in range(len(at_60.chunk_hashes))
        if os.stat(tmp_path / "snaps" / "60" / f"chunk-{i:06d}").st_nlink == 2
    ]
    # Every tx id chunk of height 30 but its last (cut short by the height) is linked.
    assert linked == list(range(first_tx_60, first_tx_60 + tx_chunks_30 - 1))
    # A third snapshot drops the first (keep=2); what was linked from it is still whole.
    _extend(storage, 30)
    at_90 = parse_signed(_write(store, storage), CHAIN, _keys)
    assert store.heights() == [90, 60]
    for index in range(len(at_90.manifest.chunk_hashes)):
        check_chunk(at_90, index, store.chunk(90, index) or b"")
    assert at_90.manifest == parse_signed(
        _write(_store(tmp_path, "fresh90"), storage), CHAIN, _keys).manifest


def test_a_snapshot_whose_chunks_to_link_are_gone_writes_them_again(tmp_path, caplog) -> None:
    storage = _fill(str(tmp_path / "a"))
    store = _store(tmp_path)
    _write(store, storage)
    shutil.rmtree(tmp_path / "snaps" / "30")  # an operator cleared it by hand
    _extend(storage, 30)
    again = parse_signed(_write(store, storage), CHAIN, _keys)
    assert again.manifest == parse_signed(
        _write(_store(tmp_path, "fresh"), storage), CHAIN, _keys).manifest
    for index in range(len(again.manifest.chunk_hashes)):
        check_chunk(again, index, store.chunk(60, index) or b"")
    assert "cannot link" in caplog.text and "writing every tx id chunk" in caplog.text


def test_records_are_cut_at_the_first_record_past_the_chunk_size() -> None:
    records = [bytes([i]) * 400 for i in range(10)]
    chunks = list(chunks_of(records, 1_000))
    assert [len(c) for c in chunks] == [1_200, 1_200, 1_200, 400]
    assert b"".join(chunks) == b"".join(records)


def test_tampering_is_refused(tmp_path) -> None:
    storage = _fill(str(tmp_path / "a"), blocks=6)
    store = _store(tmp_path)
    reader = storage.snapshot_reader()
    signed = store.write(reader)
    reader.close()
    snapshot = parse_signed(signed, CHAIN, _keys)
    data = store.chunk(6, 0)
    assert data is not None
    with pytest.raises(SnapshotError, match="chunk 0 does not match"):
        check_chunk(snapshot, 0, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SnapshotError, match="chain"):
        parse_signed(signed, "another-chain", _keys)
    forged = peer_pb2.SignedManifest()
    forged.CopyFrom(signed)
    forged.node = "node2"
    with pytest.raises(SnapshotError, match="not signed by 'node2'"):
        parse_signed(forged, CHAIN, _keys)
    manifest = peer_pb2.SnapshotManifest.FromString(signed.manifest)
    manifest.app_hash = b"\x00" * 32  # no longer the app hash of the block it carries
    forged.manifest = manifest.SerializeToString()
    with pytest.raises(SnapshotError, match="does not match its height and hashes"):
        parse_signed(forged, CHAIN, _keys)
    with pytest.raises(SnapshotError):
        decode_chunk(b"s" + struct.pack(">I", 99) + b"short")
    with pytest.raises(SnapshotError, match="kind"):
        decode_chunk(b"x" + struct.pack(">I", 1) + b"k" + struct.pack(">I", 1) + b"v")
    with pytest.raises(SnapshotError, match="wrong size"):  # an entry cut short
        decode_chunk(b"i" + struct.pack(">I", 8) + bytes(8) + struct.pack(">I", 35) + bytes(35))
    old_format = peer_pb2.SnapshotManifest.FromString(signed.manifest)
    old_format.format = 2
    forged.manifest = old_format.SerializeToString()
    forged.node = "node1"
    forged.signature = SIGNER.sign(signing_statement(CHAIN, forged.manifest))
    with pytest.raises(SnapshotError, match="format 2, this node reads 3"):
        parse_signed(forged, CHAIN, _keys)


def test_a_restore_cut_short_is_seen_on_the_next_open_and_emptied(tmp_path) -> None:
    path = str(tmp_path / "a")
    storage = _fill(path, blocks=4)
    storage.begin_restore(40)
    storage.restore_records([(b"half", b"state")], [])
    storage.close()
    reopened = Storage(path)
    assert reopened.restore_pending() == 40
    reopened.discard_partial_restore()
    assert reopened.genesis_id() is None and reopened.restore_pending() is None
    assert _contents(reopened) == ([], []) and reopened.head().height == 0


def test_the_store_keeps_the_newest_snapshots_and_the_snapshotter_takes_them_on_interval(
    tmp_path,
) -> None:
    storage = _fill(str(tmp_path / "a"), blocks=3)
    store = _store(tmp_path)
    snapshotter = Snapshotter(store, storage, interval=2)
    for height in range(4, 11):
        header = types_pb2.BlockHeader(chain_id=CHAIN, height=height, time_ms=2_000 + height)
        block = types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                         block_hash=bytes(32), app_hash=bytes([height]) * 32)
        storage.commit_block(block, {f"x/{height}": b"v"}, [])
        snapshotter.block_stored(height)
        assert snapshotter.wait_idle(10)
    assert store.heights() == [10, 8]
    reopened = _store(tmp_path)
    assert [parse_signed(s, CHAIN, _keys).height for s in reopened.signed_manifests()] == [10, 8]
    assert reopened.chunk(6, 0) is None and reopened.chunk(10, 999) is None


def test_signers_needed_is_f_plus_one_under_pbft_and_one_under_raft() -> None:
    assert [signers_needed("pbft", n) for n in (4, 5, 7)] == [2, 2, 3]
    assert signers_needed("raft", 3) == 1


def test_the_snapshots_table_of_the_node_config() -> None:
    base = {"node_id": "n1", "data_dir": "d", "genesis": "g.json", "signing_key": "k.pem",
            "client_addr": "127.0.0.1:7000", "peer_addr": "127.0.0.1:7001"}
    assert parse_config(base, "/x").snapshots == Snapshots()
    config = parse_config({**base, "snapshots": {"interval": 0, "state_sync": False}}, "/x")
    assert config.snapshots.interval == 0 and config.snapshots.state_sync is False
    for bad, match in (({"intervall": 5}, "unknown"), ({"keep": 0}, "keep"),
                       ({"chunk_bytes": 10}, "chunk_bytes"), ({"interval": "5"}, "integers")):
        with pytest.raises(ConfigError, match=match):
            parse_config({**base, "snapshots": bad}, "/x")


def test_the_join_benchmark_reads_the_restore_from_the_log() -> None:
    log = ("... state sync: restoring height 500 from node1,node2: 12 chunks, 45.3 MB, "
           "30 state keys, 1000000 tx ids\n... state sync: restored height 500 in 6.2 s; ...")
    assert restore_figures(log) == {"height": 500, "chunks": 12, "megabytes": 45.3,
                                    "state_keys": 30, "tx_ids": 1_000_000, "restore_s": 6.2}
    assert restore_figures("following the chain as an observer") is None
