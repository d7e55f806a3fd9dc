"""What LevelDB writes to disk per tx for a node's block stream, with the blocks in the same
database as the tx index and the state (as node/storage.py keeps them) and in one of their own.

    python -m bench.store_writes [--blocks 6000] [--txs-per-block 150] [--block-bytes 70000]

Each block writes what `Storage.commit_block` writes for a cash-transfer block: a `t/` entry per
tx (random keys), the block's `i/` record, a few balances, the head and app hash, and the block
itself (`--block-bytes`, a sequential key). Synthetic and unsynced, to see write amplification
alone: the figures are the process's `write_bytes` (WAL, memtable flushes, compactions) and
its CPU time with LevelDB's compaction thread, measured after a 3-s settle.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import tempfile
import time

import plyvel

from node.storage import BLOCK_CACHE_BYTES, WRITE_BUFFER_BYTES


def _written_bytes() -> int:
    with open("/proc/self/io") as handle:
        fields = dict(line.split(": ") for line in handle.read().splitlines())
    return int(fields["write_bytes"])


def _open(path: str) -> plyvel.DB:
    return plyvel.DB(path, create_if_missing=True, bloom_filter_bits=10,
                     lru_cache_size=BLOCK_CACHE_BYTES, write_buffer_size=WRITE_BUFFER_BYTES,
                     compression=None)


def run(blocks: int, txs: int, block_bytes: int, *, split: bool) -> tuple[float, float]:
    """(bytes written per tx, CPU seconds) for `blocks` blocks."""
    root = tempfile.mkdtemp(prefix="bench-store-writes-")
    main_db = _open(os.path.join(root, "chain"))
    block_db = _open(os.path.join(root, "blocks")) if split else main_db
    body = os.urandom(block_bytes)
    written, cpu = _written_bytes(), time.process_time()
    try:
        for height in range(1, blocks + 1):
            location = struct.pack(">Q", height)
            batch = main_db.write_batch()
            for i in range(txs):
                batch.put(b"t/" + hashlib.sha256(b"%d-%d" % (height, i)).digest(),
                          location + struct.pack(">I", i))
            batch.put(b"i/" + location, os.urandom(36 * txs))
            for k in range(4):
                batch.put(b"s/cash/bal/%04d" % ((height * 4 + k) % 300), b"x" * 40)
            batch.put(b"a/" + location, os.urandom(32))
            batch.put(b"m/height", location)
            if split:
                block_db.put(b"b/" + location, body + location)
            else:
                batch.put(b"b/" + location, body + location)
            batch.write()
        time.sleep(3)  # compactions the last writes started
        return (_written_bytes() - written) / (blocks * txs), time.process_time() - cpu
    finally:
        main_db.close()
        if split:
            block_db.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6_000)
    parser.add_argument("--txs-per-block", type=int, default=150)
    parser.add_argument("--block-bytes", type=int, default=70_000)
    args = parser.parse_args()
    txs = args.blocks * args.txs_per_block
    for split in (False, True):
        per_tx, cpu = run(args.blocks, args.txs_per_block, args.block_bytes, split=split)
        where = "blocks in a database of their own" if split else "one database (as stored now)"
        print(f"{where}: {per_tx * txs / 1e6:,.0f} MB written for {txs:,} txs "
              f"({per_tx:,.0f} B per tx), {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
