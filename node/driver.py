"""The driver: the engine loop. It feeds the consensus engine and carries out its actions.

One task owns the engine. It takes every input that is ready (ticks, peer messages, catch-up
results) from the inbox in one batch, calls the engine for each, offers the proposer a slot,
then carries out all resulting actions in order: persist (one synced write for the whole
batch) before any send, so a crash never forgets a vote. Commits go to the committer, which
applies them in its own task; a RequestSync starts a catch-up in the syncer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from consensus.engine import Action, Broadcast, Commit, Engine, RequestSync, Send
from node.committer import Committer
from node.effects import BatchEffects, FatalError
from node.inbox import STALL_WARN_MS, Inbox, Message, Reconfigure, Synced
from node.notifier import Notifier
from node.ports import NodeObserver, PeerTransport
from node.proposer import Proposer
from node.syncer import Syncer

log = logging.getLogger(__name__)


class ConsensusStore(Protocol):
    def put_consensus(self, records: Iterable[tuple[str, bytes | None]]) -> None: ...


class Driver:
    def __init__(
        self,
        engine: Engine,
        inbox: Inbox,
        proposer: Proposer,
        committer: Committer,
        store: ConsensusStore,
        transport: PeerTransport | None,
        syncer: Syncer | None,
        notifier: Notifier,
        observer: NodeObserver,
    ) -> None:
        self.engine = engine
        self.inbox = inbox
        self.proposer = proposer
        self.committer = committer
        self.store = store
        self.transport = transport
        self.syncer = syncer
        self.notifier = notifier
        self.observer = observer

    async def run(self) -> None:
        actions = self.engine.start(self._now_ms())
        await self._carry_out(actions)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.inbox.run_ticker(), name="ticker")
                group.create_task(self._engine_loop(), name="engine")
                group.create_task(self.committer.run(), name="commit")
                if self.syncer is not None:
                    group.create_task(self.syncer.run(), name="sync")
        finally:
            self.notifier.close()  # subscribers' streams end with the node

    @staticmethod
    def _now_ms() -> int:
        return int(time.monotonic() * 1000)

    async def _engine_loop(self) -> None:
        engine = self.engine
        while True:
            batch = await self.inbox.next_batch()
            actions: list[Action] = []
            for item in batch:
                if isinstance(item, Message):
                    actions += engine.receive(item.sender, item.msg)
                elif isinstance(item, Synced):
                    actions += engine.synced(item.height, item.block_hash)
                elif isinstance(item, Reconfigure):
                    actions += self._reconfigure(item)
            if self.inbox.take_tick_due():
                # After the messages: after a long persist, the messages that queued meanwhile
                # (a leader's heartbeats, votes) count before any timer fires.
                actions += engine.tick(self._now_ms())
            proposal = self.proposer.offer(engine.status)
            if proposal is not None:
                actions += engine.propose(proposal)
            await self._carry_out(actions)

    def _reconfigure(self, item: Reconfigure) -> list[Action]:
        try:
            return self.engine.reconfigure(item.effective_height, item.validators)
        except ValueError as exc:
            # The chain decided a set this engine cannot run (the contract refuses such
            # changes, so only a contract/engine mismatch gets here): voting on with the old
            # set would split this node from the others.
            raise FatalError(
                f"the chain changed the validators from height {item.effective_height} to "
                f"{','.join(item.validators)}, which this engine refuses: {exc}"
            ) from exc

    async def _carry_out(self, actions: list[Action]) -> None:
        effects = BatchEffects.of(actions)
        records = effects.records
        if records:
            started = time.monotonic()
            await asyncio.to_thread(self.store.put_consensus, records)
            took_ms = (time.monotonic() - started) * 1000
            if took_ms >= STALL_WARN_MS:
                log.warning("persisting %d consensus records took %.0f ms", len(records), took_ms)
            self.observer.consensus_persisted()
        for step in effects.steps:
            match step:
                case Send(to, msg):
                    if self.transport is not None:
                        self.transport.send(to, msg)
                case Broadcast(msg):
                    if self.transport is not None:
                        self.transport.broadcast(msg)
                case Commit():
                    await self.committer.enqueue(step)
                case RequestSync(from_node, from_height):
                    if self.syncer is not None:
                        self.syncer.start(from_node, from_height)
