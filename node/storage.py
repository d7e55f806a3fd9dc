"""The node's durable store: three LevelDBs (plyvel), each with a prefix per kind of record.

The state database (the store's directory) holds, by prefix (docs/architecture.md): `s/`
contract state, `t/` tx id -> (height, index), `i/` height -> that block's indexed tx ids with
their indexes (what a state snapshot copies: one record per block, not one per tx), `a/` height
-> app hash, `m/` meta (height, app hash, last block hash, genesis id). The block database
(its `blocks/` subdirectory) holds `b/` committed blocks by height, with their receipts (one
copy of each byte, no separate `r/` prefix). Nothing reads a block by its hash, so blocks are
indexed by height only; `h/` keys found in a store are ignored. The consensus database
(`consensus/`) holds `c/` consensus records: the engine's synced writes (a Raft entry is a whole
block) go neither through the state's compactions nor behind a block commit's write.

Why apart: blocks are most of what a node writes (85 % of a cash-transfer store), and in one
database with the randomly keyed state and tx index every compaction rewrote them level after
level. Alone, their keys only ever grow, so LevelDB moves their tables down the levels without
rewriting them: the node writes each block about twice (log and table) instead of once per
level, and the compaction thread no longer spends its CPU on them (docs/architecture.md gives
the figures). A store written when blocks lived in the state database keeps those there and
reads them from it (`_blocks_in_state`). Its consensus records move into the consensus database
when it is opened.

A block commit writes the block to the block database, synced, and then one write batch to the
state database (state, index, app hash, new head), synced at most once a second
(`state_sync_interval_s`). The block is on disk before the head that names it, so after a crash
the state database holds either all of a block's effects or none of them, and the block
database holds every block up to the head. A power loss may take the last second of state
batches but not their blocks: those blocks are above the head, and the node executes them again
at start (`blocks_above_head`, node/committer.py: `replay_stored_blocks`); a block is only
written once decided, so they are the chain's. A process crash loses nothing unsynced (LevelDB
hands every write to the kernel). Reads never see a block above the head. Why not a sync per
state batch: it was a second `fdatasync` on every block's way to its receipts, and the disk's
stalls (a p99 of 80 ms, and seconds when it is busy) showed in every client's latency. Any synced
write to the state database (a prune, a restore, `sync_state`, the close) makes every batch
before it durable too: LevelDB's log is one file, written in order.

A catch-up applying a run of fetched blocks commits all but the last unsynced, and those keep
their block in the state batch, as before the split: unsynced, the two databases could each lose
a suffix of their writes on their own, and a head could outlive its block; a sync per block
instead took 0.16 -> 0.98 ms per 10-tx block.

A store restored from a state snapshot (node/state_sync.py) or pruned (`prune_below`) holds
blocks from its base height (`m/base_height`) on; the state and the whole tx id index are
always complete. A restore writes `m/restoring` first and removes it in the batch that sets the
new head: a store opened with the marker still there holds half a state, and
`discard_partial_restore` empties it so the restore starts again.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import plyvel

from node.config import STORE_COMPRESSIONS
from node.pagecache import page_out
from node.txfilter import TxIdFilter
from proto import types_pb2

log = logging.getLogger(__name__)

BLOCKS_DIR = "blocks"  # the block database, inside the store's directory
CONSENSUS_DIR = "consensus"  # the consensus log's database, inside it too
_STATE = b"s/"
_BLOCK = b"b/"
_TX = b"t/"
_CONSENSUS = b"c/"
_META = b"m/"
_APP_HASH = b"a/"  # height -> app hash after that block (headers carry it APP_HASH_LAG later)
_TX_IDS = b"i/"  # height -> (tx id | index u32) for each indexed tx of the block, in index order
# Set once every block's `i/` record is present: a store written before they existed is filled
# in from the tx index when opened.
_TX_IDS_COMPLETE = _META + b"tx_ids_by_height"
TX_ID_BYTES = 32
TX_ID_ENTRY_BYTES = TX_ID_BYTES + 4
_INDEX = struct.Struct(">I")


BLOCK_CACHE_BYTES = 64 * 1024 * 1024
# The state database's memtable (LevelDB's default is 4 MB): a larger one flushes fewer,
# larger tables and absorbs rewrites of hot keys (a core's position record, balances) before they
# reach a table, so compactions rewrite less. Bounded because LevelDB reads tables through mmap:
# a compaction's input files are resident in the node's RSS until it ends, and level-0 files are
# one memtable each. When blocks shared this database, 32 MB held 168-172 MB of table pages at
# once in a Raft-3 node at 5,000 tx/s (RSS 308-320 MB) and 8 MB 92 MB. Without the blocks, 16 MB
# peaks at 212 MB RSS there (8 MB: 208) and takes 5-16 % less CPU per voucher-mix tx (compaction
# ~66 against ~81 us per tx per node, Raft-3 pairs in bench/RESULTS.md).
WRITE_BUFFER_BYTES = 16 * 1024 * 1024
# Committed state values kept in memory for block execution (member records, balances, ...):
# a store read releases and re-takes the GIL, which under load means waiting for other threads.
STATE_CACHE_KEYS = 50_000
# The memtable of the block and consensus databases (LevelDB's default): their writes reach
# tables without merging (blocks only append; consensus records are few once deleted), so a
# larger one would only hold more memory.
SIDE_WRITE_BUFFER_BYTES = 4 * 1024 * 1024
# How often a block commit's state batch is synced (the module docstring says why not always).
STATE_SYNC_INTERVAL_S = 1.0
PRUNE_BATCH_BLOCKS = 256
DELETE_BATCH_KEYS = 10_000


class StorageError(Exception):
    """The store cannot be opened or written; the node must stop rather than diverge."""


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + struct.pack(">Q", height)


def _tx_id_entries(tx_ids: Iterable[tuple[bytes, int]]) -> bytes:
    """A block's `i/` record: each (tx id, index in the block), in the order given."""
    return b"".join(tx_id + _INDEX.pack(index) for tx_id, index in tx_ids)


@dataclass(frozen=True, slots=True)
class ChainHead:
    height: int
    app_hash: bytes
    block_hash: bytes
    time_ms: int


class CommittedView:
    """Committed contract state at one height, read from a LevelDB snapshot: for reads served to
    clients (queries), never for block execution.

    A block commit is one write batch, so a snapshot holds every key of exactly one height, and
    a view that reads several keys can never mix two heights, however many blocks commit while
    it runs. It reads the store only, never the execution cache, and so can never put a value in
    that cache that a commit has since replaced. Close it (or use `with`) to free the snapshot.
    """

    def __init__(self, snapshot: plyvel.Snapshot) -> None:
        self._snapshot = snapshot
        raw = snapshot.get(_META + b"height")
        self.height: int = 0 if raw is None else int(struct.unpack(">Q", raw)[0])

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._snapshot.get(_STATE + key.encode())
        return value

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        cut = len(_STATE)
        with self._snapshot.iterator(prefix=_STATE + prefix.encode()) as it:
            for key, value in it:
                yield key[cut:].decode(), value

    def close(self) -> None:
        self._snapshot.close()

    def __enter__(self) -> CommittedView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SnapshotReader:
    """The store at one height, for writing a state snapshot (node/snapshots.py)."""

    def __init__(self, snapshot: plyvel.Snapshot,
                 read_block: Callable[[int], bytes | None]) -> None:
        """`read_block`: a stored block by height. Blocks never change once written, so the
        block database needs no snapshot of its own."""
        self._snapshot = snapshot
        self._read_block = read_block
        raw = snapshot.get(_META + b"height")
        self.height: int = 0 if raw is None else int(struct.unpack(">Q", raw)[0])

    def state(self) -> Iterator[tuple[bytes, bytes]]:
        """Every state key (without its prefix) and value, in key order."""
        cut = len(_STATE)
        with self._snapshot.iterator(prefix=_STATE) as it:
            for key, value in it:
                yield key[cut:], value

    def tx_index(self) -> Iterator[tuple[bytes, bytes]]:
        """Every committed tx id and its packed (height, index), in tx id order."""
        cut = len(_TX)
        with self._snapshot.iterator(prefix=_TX) as it:
            for key, value in it:
                yield key[cut:], value

    def tx_ids_by_height(self, from_height: int = 0) -> Iterator[tuple[bytes, bytes]]:
        """(packed height, that block's `TX_ID_ENTRY_BYTES` entries) for every block from
        `from_height` up to the snapshot's height, in height order: the tx id index, a record
        per block."""
        cut = len(_TX_IDS)
        with self._snapshot.iterator(start=_height_key(_TX_IDS, from_height),
                                     stop=_TX_IDS[:-1] + bytes([_TX_IDS[-1] + 1])) as it:
            for key, value in it:
                yield key[cut:], value

    def block_raw(self, height: int) -> bytes | None:
        if height > self.height:
            return None
        return self._read_block(height)

    def app_hash_at(self, height: int) -> bytes | None:
        value: bytes | None = self._snapshot.get(_height_key(_APP_HASH, height))
        return value

    def close(self) -> None:
        self._snapshot.close()


def _open_db(path: str, **options: Any) -> plyvel.DB:
    try:
        return plyvel.DB(path, create_if_missing=True, **options)
    except plyvel.Error as exc:
        raise StorageError(f"cannot open the store at {path}: {exc}") from exc


class Storage:
    """plyvel behind the few operations the node needs; safe to call from worker threads."""

    def __init__(
        self,
        path: str,
        *,
        compression: str = "none",
        state_sync_interval_s: float = STATE_SYNC_INTERVAL_S,
    ) -> None:
        """`compression`: "none" or "snappy" for the tables LevelDB writes from now on (a store
        holds tables of either kind, so a change needs no conversion).
        `state_sync_interval_s`: a block commit's state batch is synced when this long has
        passed since the last synced one (0: every one)."""
        if compression not in STORE_COMPRESSIONS:
            raise StorageError(f"store compression {compression!r}: choose none or snappy")
        os.makedirs(path, exist_ok=True)
        codec = None if compression == "none" else "snappy"
        # A Bloom filter makes the frequent "is this tx id committed?" miss cheap. The block
        # database is read by height, of blocks it holds: no filter, and a small cache (what is
        # read most, the newest blocks, is still in its memtable).
        self._db = _open_db(path, bloom_filter_bits=10, lru_cache_size=BLOCK_CACHE_BYTES,
                            write_buffer_size=WRITE_BUFFER_BYTES, compression=codec)
        opened = [self._db]
        try:
            self._blocks = _open_db(os.path.join(path, BLOCKS_DIR),
                                    write_buffer_size=SIDE_WRITE_BUFFER_BYTES, compression=codec)
            opened.append(self._blocks)
            self._log = _open_db(os.path.join(path, CONSENSUS_DIR),
                                 write_buffer_size=SIDE_WRITE_BUFFER_BYTES, compression=codec)
        except StorageError:
            for db in opened:
                db.close()
            raise
        self.path = path
        # Blocks in the state database (a catch-up's unsynced commits, or a store written before
        # the block database) stay there and are read from it; a store without any never looks.
        with self._db.iterator(prefix=_BLOCK, include_value=False) as it:
            self._blocks_in_state = next(it, None) is not None
        self._write_lock = threading.Lock()
        self._state_sync_interval_s = state_sync_interval_s
        self._state_synced_at = time.monotonic()
        self._closed = False
        self._state_cache: dict[str, bytes | None] = {}
        self._move_consensus_records()
        if self._db.get(_META + b"genesis") is not None and self._db.get(
                _TX_IDS_COMPLETE) is None:
            self._fill_tx_ids_by_height()
        self._tx_filter = self._build_tx_filter()
        self.release_scanned_pages()

    def _fill_tx_ids_by_height(self) -> None:
        """Write the `i/` record of every block from the tx index, once, for a store written
        before those records existed (or one whose restore came from an older snapshot)."""
        by_height: dict[int, list[tuple[int, bytes]]] = {}
        with self._db.iterator(prefix=_TX) as it:
            cut = len(_TX)
            for key, value in it:
                height, index = struct.unpack(">QI", value)
                by_height.setdefault(height, []).append((index, key[cut:]))
        batch = self._db.write_batch(sync=True)
        for height, entries in by_height.items():
            entries.sort()
            batch.put(_height_key(_TX_IDS, height),
                      _tx_id_entries((tx_id, index) for index, tx_id in entries))
        batch.put(_TX_IDS_COMPLETE, b"\x01")
        self._write(batch)
        log.info("store: wrote the per-block tx id records of %d blocks (%d tx ids)",
                 len(by_height), sum(len(e) for e in by_height.values()))

    def _build_tx_filter(self) -> TxIdFilter:
        """Every committed tx id, from the store's index (one pass to count, one to add); only at
        open, before the node serves, so its cost never pauses a running node."""
        with self._db.iterator(prefix=_TX, include_value=False) as it:
            count = sum(1 for _ in it)
        cut = len(_TX)
        with self._db.iterator(prefix=_TX, include_value=False) as it:
            built = TxIdFilter.of((key[cut:] for key in it), count)
        if count:
            log.info("tx id filter: %d committed tx ids, capacity %d", count, built.capacity)
        return built

    def release_scanned_pages(self) -> None:
        """After a scan of much of the store (the open, a snapshot): its table pages leave the
        node's resident set (node/pagecache.py says why and how)."""
        if self._closed:
            return
        paged = page_out(self.path)
        if paged.resident_before - paged.resident_after >= 2**20:
            log.info("store: paged out %d mapped tables (file pages %.0f -> %.0f MB)",
                     paged.mappings, paged.resident_before / 2**20, paged.resident_after / 2**20)

    def close(self) -> None:
        if not self._closed:
            self.sync_state()
            self._closed = True
            self._log.close()
            self._blocks.close()
            self._db.close()

    # --- meta -------------------------------------------------------------------------------

    def head(self) -> ChainHead:
        height = self._db.get(_META + b"height")
        if height is None:
            return ChainHead(0, b"", b"", 0)
        return ChainHead(
            struct.unpack(">Q", height)[0],
            self._db.get(_META + b"app_hash", b""),
            self._db.get(_META + b"block_hash", b""),
            struct.unpack(">Q", self._db.get(_META + b"time_ms", bytes(8)))[0],
        )

    def base_height(self) -> int:
        """The lowest height whose block this store holds (0: all of them; genesis has none)."""
        raw = self._db.get(_META + b"base_height")
        return 0 if raw is None else int(struct.unpack(">Q", raw)[0])

    def genesis_id(self) -> bytes | None:
        value: bytes | None = self._db.get(_META + b"genesis")
        return value

    def init_genesis(
        self, genesis_id: bytes, writes: Mapping[str, bytes | None], app_hash: bytes, time_ms: int
    ) -> None:
        """Write the genesis state (height 0) once, atomically."""
        with self._write_lock:
            if self._db.get(_META + b"genesis") is not None:
                raise StorageError("the store already holds a chain")
            batch = self._db.write_batch(sync=True)
            self._put_state(batch, writes)
            batch.put(_META + b"genesis", genesis_id)
            batch.put(_height_key(_APP_HASH, 0), app_hash)
            batch.put(_META + b"height", struct.pack(">Q", 0))
            batch.put(_META + b"app_hash", app_hash)
            batch.put(_META + b"block_hash", bytes(32))
            batch.put(_META + b"time_ms", struct.pack(">Q", time_ms))
            batch.put(_TX_IDS_COMPLETE, b"\x01")
            self._write(batch)

    # --- state ------------------------------------------------------------------------------

    def get_state(self, key: str) -> bytes | None:
        """Committed value of `key` (from the execution cache when it holds the key, which this
        never writes). One key only: a reader of several keys takes a `committed_view`."""
        try:
            return self._state_cache[key]
        except KeyError:
            value: bytes | None = self._db.get(_STATE + key.encode())
            return value

    def get_state_for_execution(self, key: str) -> bytes | None:
        """`get_state` that also remembers what it read. Only block execution may call it (the
        commit loop or a sync, one at a time): the cache is filled and updated by that one
        writer, so a reader on another thread can never store a value a commit replaced."""
        cache = self._state_cache
        try:
            return cache[key]
        except KeyError:
            value: bytes | None = self._db.get(_STATE + key.encode())
            if len(cache) >= STATE_CACHE_KEYS:
                cache.clear()
            cache[key] = value
            return value

    def committed_view(self) -> CommittedView:
        """The committed state as of now, frozen at one height (see `CommittedView`)."""
        return CommittedView(self._db.snapshot())

    def iter_state(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        cut = len(_STATE)
        with self._db.iterator(prefix=_STATE + prefix.encode()) as it:
            for key, value in it:
                yield key[cut:].decode(), value

    # --- blocks -----------------------------------------------------------------------------

    def commit_block(
        self,
        committed: types_pb2.CommittedBlock,
        state_writes: Mapping[str, bytes | None],
        tx_ids: Iterable[tuple[bytes, int]],
        *,
        sync: bool = True,
    ) -> None:
        """The block with its receipts (synced, to the block database), then one atomic batch:
        state writes, indexes, new head. Synced (fsync) unless `sync` is False, which a catch-up
        applying a run of fetched blocks uses for all but the last: the block then goes in the
        batch, and a crash may lose a suffix of them (LevelDB keeps the write order), never half
        a block, and the node fetches them again."""
        header = committed.block.header
        height = header.height
        location = struct.pack(">Q", height)
        tx_ids = list(tx_ids)  # iterated three times: the index, the `i/` record, the filter
        with self._write_lock:
            current = self.head().height
            if height != current + 1:
                raise StorageError(f"commit of height {height} on top of height {current}")
            raw = committed.SerializeToString()
            batch = self._db.write_batch(sync=sync and self._state_sync_due())
            if sync:
                self._put_block(height, raw)
            else:  # atomic with its head, in the one write-ordered log (module docstring)
                batch.put(_height_key(_BLOCK, height), raw)
                self._blocks_in_state = True
            self._put_state(batch, state_writes)
            for tx_id, index in tx_ids:
                batch.put(_TX + tx_id, location + _INDEX.pack(index))
            if tx_ids:
                batch.put(_height_key(_TX_IDS, height), _tx_id_entries(tx_ids))
            batch.put(_META + b"height", location)
            batch.put(_META + b"app_hash", committed.app_hash)
            batch.put(_META + b"block_hash", committed.block_hash)
            batch.put(_META + b"time_ms", struct.pack(">Q", header.time_ms))
            batch.put(_height_key(_APP_HASH, height), committed.app_hash)
            self._write(batch)
            self._after_block_written(state_writes, tx_ids)

    def _state_sync_due(self) -> bool:
        now = time.monotonic()
        if now - self._state_synced_at < self._state_sync_interval_s:
            return False
        self._state_synced_at = now
        return True

    def sync_state(self) -> None:
        """Make every state batch written so far durable: one synced write (of the head as it
        is) syncs LevelDB's log, which holds them all in order."""
        with self._write_lock:
            if self._closed:
                return
            height = self._db.get(_META + b"height")
            if height is not None:
                self._db.put(_META + b"height", height, sync=True)
            self._state_synced_at = time.monotonic()

    def blocks_above_head(self) -> Iterator[types_pb2.CommittedBlock]:
        """The blocks the block database holds from the head up, in order, to the first gap:
        blocks whose state batches a power loss took (the module docstring). Each is read
        when the one before it has been applied."""
        height = self.head().height + 1
        while (raw := self._blocks.get(_height_key(_BLOCK, height))) is not None:
            block = types_pb2.CommittedBlock()
            block.ParseFromString(raw)
            yield block
            height += 1

    def _after_block_written(
        self, state_writes: Mapping[str, bytes | None], tx_ids: Iterable[tuple[bytes, int]]
    ) -> None:
        """Bring the in-memory views level with what the batch just made durable."""
        cache = self._state_cache
        if len(cache) + len(state_writes) > STATE_CACHE_KEYS:
            cache.clear()
        cache.update(state_writes)
        # Grows by a layer when full: no pass over the index.
        self._tx_filter.add_batch([tx_id for tx_id, _ in tx_ids])

    def get_block(self, height: int) -> types_pb2.CommittedBlock | None:
        """None when the store does not hold it: above the head, or below the base height."""
        raw = self.get_block_raw(height)
        if raw is None:
            return None
        block = types_pb2.CommittedBlock()
        block.ParseFromString(raw)
        return block

    def app_hash_at(self, height: int) -> bytes:
        """The app hash after block `height` (0: the genesis state's) of the stored chain."""
        value: bytes | None = self._db.get(_height_key(_APP_HASH, height))
        if value is None:
            raise StorageError(f"no app hash stored for height {height}")
        return value

    def get_block_raw(self, height: int) -> bytes | None:
        raw = self._db.get(_META + b"height")
        if raw is None or height > struct.unpack(">Q", raw)[0]:
            return None  # written before a crash or ahead of its head: not the chain's yet
        return self._read_block(height)

    def _read_block(self, height: int) -> bytes | None:
        key = _height_key(_BLOCK, height)
        value: bytes | None = self._blocks.get(key)
        if value is None and self._blocks_in_state:
            value = self._db.get(key)
        return value

    def _put_block(self, height: int, raw: bytes) -> None:
        try:
            self._blocks.put(_height_key(_BLOCK, height), raw, sync=True)
        except plyvel.Error as exc:
            log.critical("block write failed at %s: %s", self.path, exc)
            raise StorageError(f"write to {self.path}/{BLOCKS_DIR} failed: {exc}") from exc

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        raw = self._db.get(_TX + tx_id)
        if raw is None:
            return None
        height, index = struct.unpack(">QI", raw)
        return int(height), int(index)

    def has_tx(self, tx_id: bytes) -> bool:
        if not self._tx_filter.might_contain(tx_id):
            return False  # never committed: no store read (and no wait for the GIL)
        return self._db.get(_TX + tx_id) is not None

    # --- pruning ----------------------------------------------------------------------------

    def prune_below(self, height: int, *, progress: Callable[[int], None] | None = None) -> int:
        """Delete the blocks (and their app-hash entries) below `height`, keeping the tx index
        (replay protection needs every tx id ever committed); returns the new base height. The
        base height is written first, so a crash half-way leaves a store that says it holds
        less than it does, never more."""
        head = self.head().height
        if not 0 < height <= head:
            raise StorageError(f"prune below {height}: the height must be in 1..{head}")
        old_base = self.base_height()
        if height <= old_base:
            return old_base
        with self._write_lock:
            self._db.put(_META + b"base_height", struct.pack(">Q", height), sync=True)
        start = max(old_base, 1)
        for first in range(start, height, PRUNE_BATCH_BLOCKS):
            last = min(first + PRUNE_BATCH_BLOCKS, height)
            with self._write_lock:
                blocks = self._blocks.write_batch()
                batch = self._db.write_batch()
                for h in range(first, last):
                    blocks.delete(_height_key(_BLOCK, h))
                    if self._blocks_in_state:
                        batch.delete(_height_key(_BLOCK, h))
                    if h < height - 1:  # the app hash below the base stays for the next header
                        batch.delete(_height_key(_APP_HASH, h))
                self._write(blocks)
                self._write(batch)
            if progress is not None:
                progress(last)
        span = {"start": _height_key(_BLOCK, 0), "stop": _height_key(_BLOCK, height)}
        self._blocks.compact_range(**span)
        if self._blocks_in_state:
            self._db.compact_range(**span)
        return height

    # --- restoring a state snapshot ---------------------------------------------------------

    def restore_pending(self) -> int | None:
        """The height of a restore that did not finish (the store holds half a state)."""
        raw = self._db.get(_META + b"restoring")
        return None if raw is None else int(struct.unpack(">Q", raw)[0])

    def begin_restore(self, height: int) -> None:
        """Mark the store as being restored to `height` and drop its state, blocks and index
        (a node restores only when far behind: what it holds is a prefix of the chain)."""
        with self._write_lock:
            self._db.put(_META + b"restoring", struct.pack(">Q", height), sync=True)
        for prefix in (_STATE, _TX, _TX_IDS, _BLOCK, _APP_HASH):
            self._delete_prefix(self._db, prefix)
        self._delete_prefix(self._blocks, _BLOCK)
        self._blocks_in_state = False
        self._state_cache.clear()

    def restore_records(self, state: Iterable[tuple[bytes, bytes]],
                        tx_ids_by_height: Iterable[tuple[bytes, bytes]]) -> None:
        """One chunk's records (state key -> value; packed height -> that block's tx id
        entries, each also written to the tx id index), not synced: the finishing batch is, and
        a crash before it restarts the restore."""
        with self._write_lock:
            batch = self._db.write_batch()
            for key, value in state:
                batch.put(_STATE + key, value)
            for location, entries in tx_ids_by_height:
                batch.put(_TX_IDS + location, entries)
                for at in range(0, len(entries), TX_ID_ENTRY_BYTES):
                    middle, end = at + TX_ID_BYTES, at + TX_ID_ENTRY_BYTES
                    batch.put(_TX + entries[at:middle], location + entries[middle:end])
            self._write(batch)

    def finish_restore(
        self,
        block: types_pb2.CommittedBlock,
        previous_app_hash: bytes,
    ) -> None:
        """The restored head is `block` (its height, app hash and hash); the app hash of the
        block before it is what the next block's header carries. One synced batch that also
        removes the restore marker."""
        header = block.block.header
        height = header.height
        location = struct.pack(">Q", height)
        with self._write_lock:
            self._put_block(height, block.SerializeToString())
            batch = self._db.write_batch(sync=True)
            batch.put(_height_key(_APP_HASH, height), block.app_hash)
            batch.put(_height_key(_APP_HASH, height - 1), previous_app_hash)
            batch.put(_META + b"height", location)
            batch.put(_META + b"app_hash", block.app_hash)
            batch.put(_META + b"block_hash", block.block_hash)
            batch.put(_META + b"time_ms", struct.pack(">Q", header.time_ms))
            batch.put(_META + b"base_height", location)
            batch.put(_TX_IDS_COMPLETE, b"\x01")
            batch.delete(_META + b"restoring")
            self._write(batch)
        self._state_cache.clear()
        self._tx_filter = self._build_tx_filter()

    def discard_partial_restore(self) -> None:
        """Empty a store whose restore did not finish (every key: genesis is written again)."""
        for prefix in (_STATE, _TX, _TX_IDS, _BLOCK, _APP_HASH, _CONSENSUS, _META):
            self._delete_prefix(self._db, prefix)
        self._delete_prefix(self._blocks, _BLOCK)
        self._delete_prefix(self._log, _CONSENSUS)
        self._blocks_in_state = False
        self._state_cache.clear()
        self._tx_filter = self._build_tx_filter()

    def snapshot_reader(self) -> SnapshotReader:
        """Everything a state snapshot holds, frozen at one height (a LevelDB snapshot: commits
        go on while it is read). Close it when done."""
        return SnapshotReader(self._db.snapshot(), self._read_block)

    def _delete_prefix(self, db: plyvel.DB, prefix: bytes) -> None:
        while True:
            with db.iterator(prefix=prefix, include_value=False) as it:
                keys = [key for key, _ in zip(it, range(DELETE_BATCH_KEYS), strict=False)]
            if not keys:
                return
            with self._write_lock:
                batch = db.write_batch()
                for key in keys:
                    batch.delete(key)
                self._write(batch)

    # --- consensus records ------------------------------------------------------------------

    def put_consensus(self, records: Iterable[tuple[str, bytes | None]]) -> None:
        """Synced: the engine acts on these only after they are on disk. Their own database:
        not behind a block commit's write, nor in the state's compactions (a Raft entry holds
        a whole block, lives a few hundred blocks and is deleted)."""
        batch = self._log.write_batch(sync=True)
        for key, value in records:
            full = _CONSENSUS + key.encode()
            if value is None:
                batch.delete(full)
            else:
                batch.put(full, value)
        self._write(batch)

    def consensus_records(self) -> dict[str, bytes]:
        cut = len(_CONSENSUS)
        with self._log.iterator(prefix=_CONSENSUS) as it:
            return {key[cut:].decode(): value for key, value in it}

    def _move_consensus_records(self) -> None:
        """Into the consensus database, once, from a store that kept them in the state
        database: copied (synced) first, then deleted, so a crash in between leaves a copy."""
        with self._db.iterator(prefix=_CONSENSUS) as it:
            records = list(it)
        if not records:
            return
        with self._log.iterator(prefix=_CONSENSUS, include_value=False) as it:
            moved_before = next(it, None) is not None
        if not moved_before:  # else a crash came between the copy and the delete
            batch = self._log.write_batch(sync=True)
            for key, value in records:
                batch.put(key, value)
            self._write(batch)
        self._delete_prefix(self._db, _CONSENSUS)
        log.info("store: moved %d consensus records into %s/", len(records), CONSENSUS_DIR)

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _put_state(batch: plyvel.WriteBatch, writes: Mapping[str, bytes | None]) -> None:
        for key, value in writes.items():
            full = _STATE + key.encode()
            if value is None:
                batch.delete(full)
            else:
                batch.put(full, value)

    def _write(self, batch: plyvel.WriteBatch) -> None:
        try:
            batch.write()
        except plyvel.Error as exc:
            log.critical("store write failed at %s: %s", self.path, exc)
            raise StorageError(f"write to {self.path} failed: {exc}") from exc
