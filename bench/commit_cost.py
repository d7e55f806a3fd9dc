"""Wall time per block of `Storage.commit_block`, as a catch-up or as the commit loop calls it.

    python -m bench.commit_cost [--blocks 2000] [--block-txs 10] [--live]

A catch-up applies a run of fetched blocks and syncs only the last of the run, so its store
writes cost what LevelDB's buffered writes cost; a sync per block would add the disk's
`fdatasync` latency to each. `--live` commits every block as the commit loop does (the block
synced; the state batch synced once a second, node/storage.py) and prints the distribution per
block, the figure a client waits on. Synthetic blocks (300-byte bodies), a few state writes
each, in a fresh store under the temporary directory; the figures include memtable flushes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time

from node.storage import Storage
from proto import types_pb2


def run(blocks: int, block_txs: int) -> float:
    """Seconds per block over `blocks` commits of `block_txs` txs each, as a catch-up's run."""
    times = _commit(blocks, block_txs, live=False)
    return sum(times) / blocks


def run_live(blocks: int, block_txs: int) -> list[float]:
    """Seconds of each of `blocks` commits, as the commit loop makes them."""
    return _commit(blocks, block_txs, live=True)


def _commit(blocks: int, block_txs: int, *, live: bool) -> list[float]:
    path = tempfile.mkdtemp(prefix="scfchain-commit-cost-")
    store = Storage(path)
    times: list[float] = []
    try:
        store.init_genesis(b"g" * 32, {}, b"h" * 32, 1)
        tx = types_pb2.SignedTx(body=b"x" * 300, signature=b"s" * 64)
        for height in range(1, blocks + 1):
            header = types_pb2.BlockHeader(chain_id="c", height=height, time_ms=height)
            block = types_pb2.CommittedBlock(
                block=types_pb2.Block(header=header, txs=[tx] * block_txs),
                block_hash=height.to_bytes(32, "big"), app_hash=b"a" * 32)
            tx_ids = [(hashlib.sha256(b"%d/%d" % (height, i)).digest(), i)
                      for i in range(block_txs)]
            started = time.perf_counter()
            store.commit_block(block, {f"k/{height % 500}": b"v" * 80}, tx_ids,
                               sync=live or height == blocks)
            times.append(time.perf_counter() - started)
        return times
    finally:
        store.close()
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2_000)
    parser.add_argument("--block-txs", type=int, default=10)
    parser.add_argument("--live", action="store_true",
                        help="every block committed as the commit loop does")
    args = parser.parse_args()
    if args.live:
        times = sorted(run_live(args.blocks, args.block_txs))
        ms = [t * 1000 for t in times]
        print(f"{args.blocks} blocks of {args.block_txs} txs, as the commit loop commits: "
              f"mean {sum(ms) / len(ms):.2f} / p50 {ms[len(ms) // 2]:.2f} / "
              f"p99 {ms[int(len(ms) * 0.99)]:.2f} / max {ms[-1]:.2f} ms per block")
        return
    per_block = run(args.blocks, args.block_txs)
    print(f"{args.blocks} blocks of {args.block_txs} txs, unsynced but the last: "
          f"{per_block * 1000:.2f} ms per block")


if __name__ == "__main__":
    main()
