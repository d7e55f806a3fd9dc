"""Table pages a bulk scan maps into the node leave its resident set when the store releases them
(node/pagecache.py): at open, after a snapshot, and on request."""

from __future__ import annotations

import hashlib
import os

from node.pagecache import page_out, table_mappings
from node.storage import Storage
from proto import types_pb2

BLOCKS, IDS = 120, 1_000


def _resident_table_bytes(directory: str) -> int:
    """Resident bytes of this process's mappings of `directory`'s table files (smaps)."""
    prefix = os.path.join(os.path.realpath(directory), "")
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5].startswith(prefix) and fields[5].endswith(
                    ".ldb")
            elif inside and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
    return total


def _fill(path: str) -> None:
    storage = Storage(path)
    storage.init_genesis(b"g" * 32, {"genesis/x": b"1"}, b"a" * 32, 1_000)
    for height in range(1, BLOCKS + 1):
        header = types_pb2.BlockHeader(chain_id="pages", height=height, time_ms=1_000 + height)
        block = types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                         block_hash=hashlib.sha256(b"b%d" % height).digest(),
                                         app_hash=hashlib.sha256(b"a%d" % height).digest())
        tx_ids = [(hashlib.sha256(b"%d-%d" % (height, i)).digest(), i) for i in range(IDS)]
        storage.commit_block(block, {f"k/{height}": b"v"}, tx_ids)
    storage.close()


def test_a_scan_maps_table_pages_and_releasing_them_unmaps_them(tmp_path) -> None:
    path = str(tmp_path / "chain")
    _fill(path)
    storage = Storage(path)  # the open scans the tx index for the filter, then releases it
    try:
        assert table_mappings(path), "LevelDB maps its tables: nothing to measure"
        after_open = _resident_table_bytes(path)
        reader = storage.snapshot_reader()
        try:
            scanned = sum(len(value) for _, value in reader.tx_ids_by_height()) + sum(
                1 for _ in reader.tx_index())
        finally:
            reader.close()
        assert scanned >= BLOCKS
        after_scan = _resident_table_bytes(path)
        assert after_scan > 4 * 2**20, f"a full scan left only {after_scan} bytes resident"
        storage.release_scanned_pages()
        released = _resident_table_bytes(path)
        assert released < after_scan / 4, (after_scan, released)
        assert after_open < after_scan / 4, (after_open, after_scan)
        # what was paged out reads back the same
        assert storage.has_tx(hashlib.sha256(b"7-5").digest())
    finally:
        storage.close()


def test_page_out_of_a_directory_without_tables_does_nothing(tmp_path) -> None:
    paged = page_out(str(tmp_path))
    assert paged.mappings == 0
