"""The driver's parts in isolation: the engine loop's effect order (every record of a batch
persisted, and the observer told, before any message leaves), commit-height contiguity, the
inbox's tick flag and wake-ups, and the notifier's waiters and bounded subscriptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensus.engine import Action, Broadcast, Commit, Persist, RequestSync, Send
from node.driver import Driver
from node.effects import FatalError, is_next_commit
from node.inbox import INBOX_BATCH_MAX, Inbox, Message, Synced, Tick
from node.notifier import Notifier
from node.storage import ChainHead
from node.syncer import Syncer
from proto import types_pb2


class Recorder:
    """Stands in for the store, transport, committer, syncer and observer; logs every call."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def put_consensus(self, records: Any) -> None:
        self.events.append(("persist", list(records)))

    def consensus_persisted(self) -> None:
        self.events.append(("observed",))

    def send(self, to: str, msg: Any) -> None:
        self.events.append(("send", to, msg))

    def broadcast(self, msg: Any) -> None:
        self.events.append(("broadcast", msg))

    async def enqueue(self, commit: Commit) -> None:
        self.events.append(("commit", commit.height))

    def start(self, peer: str, from_height: int) -> None:
        self.events.append(("sync", peer, from_height))


async def test_a_batch_persists_every_record_before_its_first_message() -> None:
    rec = Recorder()
    unused: Any = None
    part: Any = rec
    driver = Driver(unused, Inbox(10), unused, part, part, part, part, Notifier(), part)
    actions: list[Action] = [
        Send("n2", "vote"),
        Persist((("k1", b"1"),)),
        Broadcast("append"),
        Commit(1, b"h", b"block", b""),
        RequestSync("n3", 5),
        Persist((("k2", None),)),
    ]
    await driver._carry_out(actions)
    assert rec.events == [
        ("persist", [("k1", b"1"), ("k2", None)]),
        ("observed",),
        ("send", "n2", "vote"),
        ("broadcast", "append"),
        ("commit", 1),
        ("sync", "n3", 5),
    ]


async def test_a_batch_without_records_neither_writes_nor_tells_the_observer() -> None:
    rec = Recorder()
    unused: Any = None
    part: Any = rec
    driver = Driver(unused, Inbox(10), unused, part, part, None, None, Notifier(), part)
    await driver._carry_out([Send("n2", "vote"), RequestSync("n3", 5)])
    assert rec.events == []  # no transport, no syncer (a node without peers): nothing to do


def test_commits_apply_in_height_order_and_a_gap_stops_the_node() -> None:
    assert is_next_commit(5, 4)
    assert not is_next_commit(4, 4)  # applied before a restart, or by a catch-up
    assert not is_next_commit(1, 4)
    with pytest.raises(FatalError, match="commit of height 6 while the chain is at 4"):
        is_next_commit(6, 4)


async def test_the_inbox_batches_and_keeps_a_due_tick_as_a_flag() -> None:
    inbox = Inbox(10)
    assert not inbox.take_tick_due()
    for i in range(INBOX_BATCH_MAX + 1):
        assert inbox.deliver("n2", i)
    inbox.synced(3, b"h")
    inbox.wake()  # not idle: no tick queued
    batch = await inbox.next_batch()
    assert len(batch) == INBOX_BATCH_MAX and batch[0] == Message("n2", 0)
    assert await inbox.next_batch() == [Message("n2", INBOX_BATCH_MAX), Synced(3, b"h")]
    inbox.wake()
    assert await inbox.next_batch() == [Tick()]


async def test_the_ticker_marks_a_tick_due_once() -> None:
    inbox = Inbox(1)
    ticker = asyncio.create_task(inbox.run_ticker())
    await inbox.next_batch()
    ticker.cancel()
    assert inbox.take_tick_due()
    assert not inbox.take_tick_due()


def committed(height: int, tx_ids: list[bytes]) -> types_pb2.CommittedBlock:
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=types_pb2.BlockHeader(height=height)),
        receipts=[types_pb2.Receipt(tx_id=tx_id) for tx_id in tx_ids],
    )


async def test_publishing_answers_waiters_and_forgotten_waiters_are_dropped() -> None:
    notifier = Notifier()
    first, second = notifier.wait_for([b"a", b"b"])
    notifier.forget_waiters([b"b"])  # nothing done yet: both stay registered
    notifier.publish(committed(1, [b"a"]))
    assert first.done() and first.result().tx_id == b"a" and not second.done()
    second.cancel()
    notifier.forget_waiters([b"b"])
    notifier.publish(committed(2, [b"b"]))  # no one waits any more: nothing to set
    assert second.cancelled()


async def test_a_slow_subscription_overflows_and_the_stream_ends_at_close() -> None:
    notifier = Notifier()
    slow, fast = notifier.subscribe(1), notifier.subscribe(3)
    for height in (1, 2, 3):
        notifier.publish(committed(height, []))
    assert slow.overflowed and slow.queue.qsize() == 1
    assert not fast.overflowed and fast.queue.qsize() == 3
    fast.queue.get_nowait()
    notifier.close()
    assert [fast.queue.get_nowait() for _ in range(3)][-1] is None
    assert notifier.subscriber_count == 2
    notifier.unsubscribe(slow)
    assert notifier.subscriber_count == 1


class _OneBlockPeer:
    async def fetch_blocks(self, peer: str, from_height: int) -> Any:
        yield committed(from_height, [b"\x01" * 32])


class _DivergedCommitter:
    """A committer whose state differs from the block fetched: applying raises FatalError."""

    head = ChainHead(0, b"", b"", 0)

    async def apply_fetched(self, peer: str, run: Any, accept: Any) -> bool:
        raise FatalError(f"block 1 from {peer}: app hash differs from ours")


async def test_a_fatal_error_during_catch_up_ends_the_syncer_run() -> None:
    syncer = Syncer(_OneBlockPeer(), _DivergedCommitter(), Inbox(10), None)  # type: ignore[arg-type]
    syncer.start("node2", 1)
    with pytest.raises(FatalError, match="app hash differs"):
        await asyncio.wait_for(syncer.run(), 5)
