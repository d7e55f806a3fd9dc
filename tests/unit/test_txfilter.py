"""The committed tx id filter: no false negatives, a bounded false-positive rate however many
layers it grows, and growth that never goes back to the store's index (issue 13: a rebuild at
each doubling paused a node for a time that grew with the chain)."""

from __future__ import annotations

import hashlib

import node.txfilter as txfilter
from node.storage import Storage
from node.txfilter import TxIdFilter


def _ids(prefix: bytes, count: int) -> list[bytes]:
    return [hashlib.sha256(prefix + b"%d" % i).digest() for i in range(count)]


def test_filter_grows_by_layers_keeping_every_id_and_false_positives_under_two_percent(
    monkeypatch,
) -> None:
    monkeypatch.setattr(txfilter, "CAPACITY_MIN", 256)
    tx_filter = TxIdFilter(0)
    added = _ids(b"in", 60_000)
    for tx_id in added:
        tx_filter.add(tx_id)
    assert tx_filter.layer_count >= 8  # 256, 512, ... : grew many times
    assert tx_filter.count == len(added)
    assert all(tx_filter.might_contain(tx_id) for tx_id in added)
    unknown = _ids(b"out", 50_000)
    false_positives = sum(tx_filter.might_contain(tx_id) for tx_id in unknown)
    assert false_positives < 0.02 * len(unknown), false_positives


def test_storage_never_rebuilds_the_filter_from_the_index_while_running(
    tmp_path, monkeypatch
) -> None:
    from tests.unit.test_storage import committed

    monkeypatch.setattr(txfilter, "CAPACITY_MIN", 64)
    store = Storage(str(tmp_path))
    store.init_genesis(b"g" * 32, {}, b"h0" * 16, 1000)

    def no_rebuild() -> TxIdFilter:
        raise AssertionError("the running node re-read the whole tx index")

    monkeypatch.setattr(store, "_build_tx_filter", no_rebuild)
    ids = _ids(b"tx", 2_000)
    for height in range(1, 11):
        chunk = ids[(height - 1) * 200 : height * 200]
        store.commit_block(
            committed(height, bytes([height]) * 32), {}, [(t, i) for i, t in enumerate(chunk)]
        )
    assert store._tx_filter.layer_count > 1
    assert all(store.has_tx(tx_id) for tx_id in ids)
    store.close()


def test_building_from_the_index_sets_the_same_bits_as_adding_one_by_one() -> None:
    ids = [hashlib.sha256(b"%d" % i).digest() for i in range(150_000)]
    for hint in (len(ids), 1_000):  # sized right, and too small: layers open on the way
        built = TxIdFilter.of(ids, hint)
        added = TxIdFilter(2 * hint)
        for tx_id in ids:
            added.add(tx_id)
        assert built.count == added.count == len(ids)
        assert built.layer_count == added.layer_count
        assert all(built.might_contain(tx_id) for tx_id in ids[::97])
        assert [bytes(layer._bits) for layer in built._layers] == [
            bytes(layer._bits) for layer in added._layers]


def test_blocks_of_ids_added_in_batches_set_the_same_bits_as_one_by_one(monkeypatch) -> None:
    monkeypatch.setattr(txfilter, "CAPACITY_MIN", 1_024)  # so the batches open layers too
    ids = _ids(b"block", 10_620)
    batched, single = TxIdFilter(0), TxIdFilter(0)
    at = 0
    for size in [5, 31, 32, 33, 430] * 20:  # both sides of BATCH_IDS_MIN
        batch, at = ids[at:at + size], at + size
        batched.add_batch(batch)
        for tx_id in batch:
            single.add(tx_id)
    assert batched.count == single.count == at and batched.layer_count > 1
    assert [bytes(layer._bits) for layer in batched._layers] == [
        bytes(layer._bits) for layer in single._layers]
