"""What a node's periodic state snapshot costs as the chain grows.

    python -m bench.snapshot_write [--blocks 10000] [--txs-per-block 120] [--interval 500]

Fills a store with `--blocks` blocks of `--txs-per-block` tx ids (the cash-transfer state: a
few hundred keys), writes a snapshot, commits `--interval` more blocks and writes the next, as
a node does every interval. Prints, for the second, its wall and CPU time, the MB it wrote and
the MB it linked from the first, and the same for a store with no earlier snapshot (what every
snapshot cost when each one wrote the whole tx id index).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time

from node.client.identity import Account
from node.snapshots import SnapshotStore
from node.storage import Storage
from proto import types_pb2

CHAIN = "bench-snap"


def _commit(storage: Storage, blocks: int, txs: int) -> None:
    first = storage.head().height + 1
    for height in range(first, first + blocks):
        header = types_pb2.BlockHeader(chain_id=CHAIN, height=height, time_ms=1_000 + height)
        block = types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                         block_hash=hashlib.sha256(b"b%d" % height).digest(),
                                         app_hash=hashlib.sha256(b"a%d" % height).digest())
        writes: dict[str, bytes | None] = {f"cash/bal/{height % 300:04d}": b"%d" % height}
        tx_ids = [(hashlib.sha256(b"%d-%d" % (height, i)).digest(), i) for i in range(txs)]
        storage.commit_block(block, writes, tx_ids, sync=False)


def _timed_write(store: SnapshotStore, storage: Storage) -> tuple[float, float, int]:
    reader = storage.snapshot_reader()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        signed = store.write(reader)
    finally:
        reader.close()
    del signed
    return time.perf_counter() - wall, time.process_time() - cpu, reader.height


def _written_mb(directory: str, height: int) -> tuple[float, float]:
    """(MB in files of this snapshot only, MB in files shared with another snapshot)."""
    own = shared = 0
    path = os.path.join(directory, str(height))
    for name in os.listdir(path):
        st = os.stat(os.path.join(path, name))
        if st.st_nlink > 1:
            shared += st.st_size
        else:
            own += st.st_size
    return own / 1e6, shared / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--txs-per-block", type=int, default=120)
    parser.add_argument("--interval", type=int, default=500)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-snapshot-")
    signer = Account.from_seed(b"bench-snapshot")
    try:
        storage = Storage(os.path.join(root, "chain"))
        storage.init_genesis(b"g" * 32, {"cash/bal/init": b"1"}, b"a" * 32, 1_000)
        _commit(storage, args.blocks, args.txs_per_block)
        node = SnapshotStore(os.path.join(root, "snaps"), CHAIN, "node1", signer)
        _timed_write(node, storage)
        _commit(storage, args.interval, args.txs_per_block)
        wall, cpu, height = _timed_write(node, storage)
        own, linked = _written_mb(node.directory, height)
        fresh = SnapshotStore(os.path.join(root, "fresh"), CHAIN, "node1", signer)
        fresh_wall, fresh_cpu, _ = _timed_write(fresh, storage)
        fresh_own, _ = _written_mb(fresh.directory, height)
        ids = height * args.txs_per_block
        print(f"snapshot at height {height:,} ({ids:,} tx ids), {args.interval} blocks after "
              f"the one before: {wall:.3f} s wall, {cpu:.3f} s CPU, {own:.1f} MB written, "
              f"{linked:.1f} MB linked")
        print(f"the same snapshot with no earlier one: {fresh_wall:.3f} s wall, "
              f"{fresh_cpu:.3f} s CPU, {fresh_own:.1f} MB written")
        storage.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
