"""Where a committed block's work runs (node/committer.py): execution on the event loop, the
write (it ends in an fsync) in a worker thread, so a slow disk never stops the loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from consensus.engine import Commit
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.storage import Storage
from proto import types_pb2
from tests.unit.test_replay import CHAIN, GENESIS, alice, bob, committer_of, open_store

WRITE_S = 0.3


class SlowDisk(Storage):
    """A store whose block writes take WRITE_S, as on a disk that stalls; notes their thread."""

    write_threads: list[int]

    def commit_block(self, *args: Any, **kwargs: Any) -> None:
        self.write_threads.append(threading.get_ident())
        time.sleep(WRITE_S)
        super().commit_block(*args, **kwargs)


def next_commit(head_height: int, head_hash: bytes, head_time_ms: int, prev_app_hash: bytes
                ) -> Commit:
    tx = alice.build_tx(CHAIN, "cash", "transfer", {"to": bob.account_id, "amount": 5}, nonce=1)
    header = types_pb2.BlockHeader(
        chain_id=CHAIN, height=head_height + 1, time_ms=head_time_ms + 1_000,
        parent_hash=head_hash, prev_app_hash=prev_app_hash,
        txs_hash=txs_hash([hashlib.sha256(tx.body).digest()]), proposer="node1",
    )
    block = types_pb2.Block(header=header, txs=[tx])
    return Commit(header.height, block_hash_of(header), block.SerializeToString())


def test_a_block_executes_on_the_loop_and_a_slow_write_leaves_the_loop_serving(
    tmp_path: Path,
) -> None:
    store = SlowDisk(str(tmp_path / "chain"), state_sync_interval_s=3600.0)
    store.write_threads = []
    store.init_genesis(bytes(32), *GENESIS.state_writes(), GENESIS.time_ms)
    committer = committer_of(store)
    execute_threads: list[int] = []
    execute = committer.executor.execute

    def noting_execute(*args: Any, **kwargs: Any) -> Any:
        execute_threads.append(threading.get_ident())
        return execute(*args, **kwargs)

    committer.executor.execute = noting_execute  # type: ignore[method-assign]
    head = committer.head

    async def scenario() -> tuple[int, int, float]:
        loop_thread = threading.get_ident()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        run_task = asyncio.create_task(committer.run())
        started = time.monotonic()
        await committer.enqueue(next_commit(
            head.height, head.block_hash, head.time_ms,
            committer.app_hash_at(app_hash_height(head.height + 1))))
        while committer.head.height == head.height:
            assert time.monotonic() - started < 10, "the block was not applied"
            await asyncio.sleep(0.01)
        took = time.monotonic() - started
        for task in (tick_task, run_task):
            task.cancel()
        await asyncio.gather(tick_task, run_task, return_exceptions=True)
        return loop_thread, ticks, took

    loop_thread, ticks, took = asyncio.run(scenario())
    assert committer.head.height == head.height + 1
    assert execute_threads == [loop_thread]
    assert len(store.write_threads) == 1 and store.write_threads[0] != loop_thread
    assert took >= WRITE_S
    # The loop kept running its other tasks through the write: about 30 ticks of 10 ms fit in
    # it, none would if the write held the loop.
    assert ticks >= 10, f"the loop ticked {ticks} times in a {took:.2f}-s write"
    store.close()


def test_the_stored_head_matches_after_a_block_applied_by_the_commit_loop(tmp_path: Path) -> None:
    store = open_store(tmp_path / "chain")
    store.init_genesis(bytes(32), *GENESIS.state_writes(), GENESIS.time_ms)
    committer = committer_of(store)
    head = committer.head

    async def scenario() -> None:
        run_task = asyncio.create_task(committer.run())
        await committer.enqueue(next_commit(
            head.height, head.block_hash, head.time_ms,
            committer.app_hash_at(app_hash_height(head.height + 1))))
        for _ in range(500):
            if committer.head.height > head.height:
                break
            await asyncio.sleep(0.01)
        run_task.cancel()
        await asyncio.gather(run_task, return_exceptions=True)

    asyncio.run(scenario())
    stored = store.head()
    assert (stored.height, stored.app_hash, stored.block_hash) == (
        committer.head.height, committer.head.app_hash, committer.head.block_hash)
    assert stored.height == head.height + 1
    block = store.get_block(stored.height)
    assert block is not None and block.receipts[0].status == types_pb2.SUCCESS
    store.close()
