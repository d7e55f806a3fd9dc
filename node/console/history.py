"""What the console remembers of the blocks it has seen: the recent-block feed and an index of
events by the ids they name.

The chain's views answer the present (a voucher's state, a deal's figures); the history of a
record (issued, split, discounted, settled; pledged, sold, redeemed) lives in the blocks'
events. The console follows the chain (`node.console.follower`) and feeds every block it is
shown here: each event is filed under every record or account id it names, so a voucher page
lists its discounts and settlement and a member page its recent activity. Only what the
console's member may see ever arrives here (blocks come reduced), and everything is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from proto import types_pb2

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
RECENT_BLOCKS_MAX = 50  # the network page's feed, and what a reconnecting stream may replay
ENTRIES_PER_ID_MAX = 200  # the most recent events kept for one id
IDS_MAX = 50_000  # ids indexed; the least recently named are forgotten first
LISTENER_QUEUE_BLOCKS_MAX = 64  # a live page that falls this far behind is cut (it reconnects)
LISTENERS_MAX = 256
END_OF_BLOCK = -1  # the index of an end-of-block event (no tx)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event of one block, as filed under an id it names."""

    height: int
    time_ms: int
    tx_index: int  # END_OF_BLOCK for a block-end hook's event
    tx_id: str  # "" for an end-of-block event
    contract: str
    name: str
    attrs: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height, "time_ms": self.time_ms, "tx_index": self.tx_index,
            "tx_id": self.tx_id, "contract": self.contract, "name": self.name,
            "attrs": self.attrs,
        }


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """A block as the live feed shows it."""

    height: int
    time_ms: int
    proposer: str
    round: int
    block_hash: str
    txs: int
    visible_txs: int
    failed_txs: int
    events: int

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height, "time_ms": self.time_ms, "proposer": self.proposer,
            "round": self.round, "block_hash": self.block_hash, "txs": self.txs,
            "visible_txs": self.visible_txs, "failed_txs": self.failed_txs,
            "events": self.events,
        }


def summarize(committed: types_pb2.CommittedBlock) -> BlockSummary:
    header = committed.block.header
    visible = sum(1 for tx in committed.block.txs if tx.body)
    failed = sum(1 for r in committed.receipts if r.status == types_pb2.FAILED)
    events = sum(len(r.events) for r in committed.receipts) + len(committed.end_block_events)
    return BlockSummary(
        height=header.height, time_ms=header.time_ms, proposer=header.proposer,
        round=header.round, block_hash=committed.block_hash.hex(), txs=len(committed.receipts),
        visible_txs=visible, failed_txs=failed, events=events,
    )


def named_ids(value: Any, found: set[str] | None = None) -> set[str]:
    """Every 64-hex string in an event's attributes, also inside lists and objects."""
    found = set() if found is None else found
    if isinstance(value, str):
        if ID_PATTERN.match(value):
            found.add(value)
    elif isinstance(value, list):
        for item in value:
            named_ids(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            named_ids(item, found)
    return found


def _attrs(event: types_pb2.Event) -> dict[str, Any]:
    try:
        decoded = json.loads(event.attrs_json) if event.attrs_json else {}
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


class ChainHistory:
    """The recent blocks and the event index; `add_block` is called in height order."""

    def __init__(self, *, ids_max: int = IDS_MAX,
                 entries_per_id_max: int = ENTRIES_PER_ID_MAX) -> None:
        self._ids_max = ids_max
        self._entries_per_id_max = entries_per_id_max
        self._by_id: OrderedDict[str, deque[HistoryEntry]] = OrderedDict()
        self._recent: deque[BlockSummary] = deque(maxlen=RECENT_BLOCKS_MAX)
        self._listeners: set[asyncio.Queue[BlockSummary | None]] = set()
        self.head = 0  # the highest height added
        self.first = 0  # the lowest height added (0: none yet)

    def add_block(self, committed: types_pb2.CommittedBlock) -> BlockSummary | None:
        """File a block's events and tell the live pages; a height already seen is ignored
        (a resubscription may replay one). Returns its summary when it was new."""
        header = committed.block.header
        if header.height <= self.head:
            return None
        self.head = header.height
        self.first = self.first or header.height
        for receipt in committed.receipts:
            for event in receipt.events:
                self._file(HistoryEntry(
                    header.height, header.time_ms, receipt.index, receipt.tx_id.hex(),
                    event.contract, event.name, _attrs(event)))
        for event in committed.end_block_events:
            self._file(HistoryEntry(header.height, header.time_ms, END_OF_BLOCK, "",
                                    event.contract, event.name, _attrs(event)))
        summary = summarize(committed)
        self._recent.append(summary)
        self._tell(summary)
        return summary

    def _file(self, entry: HistoryEntry) -> None:
        for record_id in named_ids(entry.attrs):
            entries = self._by_id.get(record_id)
            if entries is None:
                entries = self._by_id[record_id] = deque(maxlen=self._entries_per_id_max)
                if len(self._by_id) > self._ids_max:
                    self._by_id.popitem(last=False)
            else:
                self._by_id.move_to_end(record_id)
            entries.append(entry)

    def of(self, record_id: str) -> list[HistoryEntry]:
        """The events naming an id, oldest first (what this console has seen)."""
        return list(self._by_id.get(record_id, ()))

    def ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Indexed ids starting with `prefix` (at most `limit`, in sorted order)."""
        return sorted(i for i in self._by_id if i.startswith(prefix))[:limit]

    def recent(self, after_height: int = 0) -> list[BlockSummary]:
        """The recent blocks above `after_height`, newest first."""
        return [b for b in reversed(self._recent) if b.height > after_height]

    # Live pages -------------------------------------------------------------------------

    def listen(self) -> asyncio.Queue[BlockSummary | None]:
        """A queue of new block summaries for one live page; None in it means "stream ends"
        (the page was too slow, or the console stops): the browser reconnects by itself."""
        if len(self._listeners) >= LISTENERS_MAX:
            raise OverflowError("too many live pages open")
        queue: asyncio.Queue[BlockSummary | None] = asyncio.Queue(LISTENER_QUEUE_BLOCKS_MAX)
        self._listeners.add(queue)
        return queue

    def unlisten(self, queue: asyncio.Queue[BlockSummary | None]) -> None:
        self._listeners.discard(queue)

    def _tell(self, summary: BlockSummary) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(summary)
            except asyncio.QueueFull:
                log.info("a live page fell %d blocks behind; ending its stream",
                         LISTENER_QUEUE_BLOCKS_MAX)
                self._listeners.discard(queue)
                queue.get_nowait()  # room for the end marker
                queue.put_nowait(None)

    def close(self) -> None:
        """End every live page's stream (the console stops)."""
        for queue in list(self._listeners):
            self._listeners.discard(queue)
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    @property
    def listeners(self) -> int:
        return len(self._listeners)
