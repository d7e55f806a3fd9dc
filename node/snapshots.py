"""State snapshots: what a node writes every `snapshot_interval` blocks and serves to peers.

A snapshot after block h holds the whole contract state and the whole committed tx id index
(replay protection needs every tx id ever committed, and block execution asks for it), as
records `kind (1 byte) | key length (u32) | key | value length (u32) | value`: `s` records
(state key, value) in key order, then one `i` record per block up to h in height order (the
height as u64, then for each of its indexed txs the tx id and its index in the block as u32: the
store's `i/` record, node/storage.py). Copying the index a block at a time keeps writing a
snapshot cheap however many txs the chain holds: a record per tx cost 1.5 s of one core (and of
the GIL, beside block execution, on every node at the same height) at 1.5 million tx ids.
Records are cut into chunks of about CHUNK_BYTES: a chunk ends after the record that takes it to
CHUNK_BYTES or beyond, and the `i` records start a chunk of their own. The state at h is the
same on every honest node, so every honest node's chunks, their hashes and the manifest are the
same bytes, and a joining node can ask several peers for them.

The tx id chunks depend only on the chain's blocks, not on the state, so a tx id chunk that was
complete in one snapshot is the same bytes in every later one: the node links it from its
previous snapshot instead of reading and writing it again. Without that, each snapshot wrote
the whole index (36 bytes per tx ever committed): 43 MB on every node every 15 s after 1.2
million txs at 5,000 tx/s, growing with the chain.

The manifest (`peer.proto` SnapshotManifest) names the height, the app hash after h and
after h - 1, the block at h (without its commit certificate, which differs between nodes) and
each chunk's sha256; the serving node signs ("scfchain-snapshot",
chain id, sha256(manifest)). Files, under `<data_dir>/snapshots/<height>/`: `manifest.pb`,
`manifest.sig` (a SignedManifest) and `chunk-<index>`; a snapshot is written into
`<height>.partial` and renamed when complete, so a listed snapshot is always whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from node.client.identity import Account, verify_signature
from node.storage import TX_ID_ENTRY_BYTES, SnapshotReader, Storage
from proto import peer_pb2, types_pb2

log = logging.getLogger(__name__)

# 1: a `t` record per tx id, in id order; 2: the `i` records could share a chunk with `s` records
FORMAT = 3
CHUNK_BYTES = 4 * 1024 * 1024
KIND_STATE = b"s"
KIND_BLOCK_TXS = b"i"
M = TypeVar("M")
_LEN = struct.Struct(">I")


class SnapshotError(ValueError):
    """A snapshot that is malformed, or does not match its manifest."""


def signing_statement(chain_id: str, manifest: bytes) -> bytes:
    return b"scfchain-snapshot\x00" + chain_id.encode() + b"\x00" + hashlib.sha256(
        manifest).digest()


def encode_record(kind: bytes, key: bytes, value: bytes) -> bytes:
    return kind + _LEN.pack(len(key)) + key + _LEN.pack(len(value)) + value


def decode_chunk(data: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """A chunk's state records and per-block tx id records; SnapshotError when malformed."""
    state: list[tuple[bytes, bytes]] = []
    block_txs: list[tuple[bytes, bytes]] = []
    at, end = 0, len(data)
    try:
        while at < end:
            kind = data[at:at + 1]
            (key_len,) = _LEN.unpack_from(data, at + 1)
            key = data[at + 5:at + 5 + key_len]
            at += 5 + key_len
            (value_len,) = _LEN.unpack_from(data, at)
            value = data[at + 4:at + 4 + value_len]
            at += 4 + value_len
            if at > end or len(key) != key_len:
                raise SnapshotError("a record runs past the chunk's end")
            if kind == KIND_STATE:
                state.append((key, value))
            elif kind == KIND_BLOCK_TXS:
                if len(key) != 8 or len(value) % TX_ID_ENTRY_BYTES:
                    raise SnapshotError("a block's tx id record has the wrong size")
                block_txs.append((key, value))
            else:
                raise SnapshotError(f"unknown record kind {kind!r}")
    except struct.error as exc:
        raise SnapshotError(f"truncated record: {exc}") from None
    return state, block_txs


def record_chunks(records: Iterable[tuple[bytes, M]], chunk_bytes: int = CHUNK_BYTES
                  ) -> Iterator[tuple[bytes, list[M], bool]]:
    """Records joined into chunks of about `chunk_bytes` (see the module docstring): each chunk
    with what came with its records, and whether it is complete (cut by size, not by the end
    of the records)."""
    parts: list[bytes] = []
    tags: list[M] = []
    size = 0
    for record, tag in records:
        parts.append(record)
        tags.append(tag)
        size += len(record)
        if size >= chunk_bytes:
            yield b"".join(parts), tags, True
            parts, tags, size = [], [], 0
    if parts:
        yield b"".join(parts), tags, False


def chunks_of(records: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Records joined into chunks of about `chunk_bytes` (see the module docstring)."""
    for data, _, _ in record_chunks(((record, None) for record in records), chunk_bytes):
        yield data


@dataclass(frozen=True, slots=True)
class _TxChunk:
    """A complete tx id chunk of the newest snapshot written: reused by the next one."""

    last_height: int
    digest: bytes
    size: int
    tx_ids: int
    path: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A verified signed manifest: the parsed manifest, its bytes, who signed it."""

    manifest: peer_pb2.SnapshotManifest
    manifest_bytes: bytes
    node: str
    signature: bytes

    @property
    def height(self) -> int:
        return int(self.manifest.height)

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.manifest_bytes).digest()


def parse_signed(signed: peer_pb2.SignedManifest, chain_id: str,
                 public_key: Callable[[str], bytes | None]) -> Snapshot:
    """A peer's signed manifest, checked: format, chain, the block it names, the signature by
    the key this node knows for `signed.node`."""
    manifest = peer_pb2.SnapshotManifest()
    try:
        manifest.ParseFromString(signed.manifest)
    except Exception as exc:  # protobuf's DecodeError, or worse
        raise SnapshotError(f"manifest does not parse: {exc}") from None
    if manifest.format != FORMAT:
        raise SnapshotError(f"manifest format {manifest.format}, this node reads {FORMAT}")
    if manifest.chain_id != chain_id:
        raise SnapshotError(f"manifest of chain {manifest.chain_id!r}")
    block = types_pb2.CommittedBlock()
    try:
        block.ParseFromString(manifest.block)
    except Exception as exc:
        raise SnapshotError(f"the manifest's block does not parse: {exc}") from None
    if (block.block.header.height != manifest.height or block.app_hash != manifest.app_hash
            or block.block_hash != manifest.block_hash):
        raise SnapshotError("the manifest's block does not match its height and hashes")
    if not manifest.chunk_hashes or any(len(h) != 32 for h in manifest.chunk_hashes):
        raise SnapshotError("the manifest lists no chunks, or a malformed chunk hash")
    key = public_key(signed.node)
    if key is None or not verify_signature(key, signed.signature,
                                           signing_statement(chain_id, signed.manifest)):
        raise SnapshotError(f"the manifest is not signed by {signed.node!r}")
    return Snapshot(manifest, bytes(signed.manifest), signed.node, bytes(signed.signature))


def check_chunk(snapshot: Snapshot, index: int, data: bytes) -> None:
    expected = snapshot.manifest.chunk_hashes[index]
    if hashlib.sha256(data).digest() != expected:
        raise SnapshotError(f"chunk {index} does not match its hash in the manifest")


class SnapshotStore:
    """This node's snapshots on disk: write, list, read chunks, keep the newest `keep`."""

    def __init__(self, directory: str, chain_id: str, node_id: str, signer: Account,
                 keep: int = 2, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.directory = directory
        self.chain_id = chain_id
        self.node_id = node_id
        self.signer = signer
        self.keep = keep
        self.chunk_bytes = chunk_bytes
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):  # a write a crash interrupted
            if name.endswith(".partial"):
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        self._lock = threading.Lock()
        # The complete tx id chunks of the newest snapshot written since start (a restart
        # writes its first snapshot whole). Only `write` uses it, one at a time.
        self._tx_chunks: list[_TxChunk] = []
        self._signed: dict[int, peer_pb2.SignedManifest] = {}
        for height in self.heights():
            self._signed[height] = self._read_signed(height)

    def heights(self) -> list[int]:
        """The complete snapshots held, newest first."""
        return sorted((int(n) for n in os.listdir(self.directory) if n.isdigit()), reverse=True)

    def _path(self, height: int) -> str:
        return os.path.join(self.directory, str(height))

    def _read_signed(self, height: int) -> peer_pb2.SignedManifest:
        with open(os.path.join(self._path(height), "manifest.sig"), "rb") as handle:
            return peer_pb2.SignedManifest.FromString(handle.read())

    def signed_manifests(self) -> list[peer_pb2.SignedManifest]:
        with self._lock:
            return [self._signed[h] for h in sorted(self._signed, reverse=True)]

    def chunk(self, height: int, index: int) -> bytes | None:
        with self._lock:
            signed = self._signed.get(height)
        if signed is None:
            return None
        manifest = peer_pb2.SnapshotManifest.FromString(signed.manifest)
        if not 0 <= index < len(manifest.chunk_hashes):
            return None
        try:
            with open(os.path.join(self._path(height), f"chunk-{index:06d}"), "rb") as handle:
                return handle.read()
        except FileNotFoundError:  # pruned meanwhile
            return None

    def write(self, reader: SnapshotReader) -> peer_pb2.SignedManifest:
        """Write the snapshot `reader` sees (its height), sign it, drop the oldest beyond
        `keep`. Runs in a background thread: reads come from a LevelDB snapshot."""
        height = reader.height
        started = time.monotonic()
        block_raw = reader.block_raw(height)
        app_hash, prev_app_hash = reader.app_hash_at(height), reader.app_hash_at(height - 1)
        if block_raw is None or app_hash is None or prev_app_hash is None:
            raise SnapshotError(f"the store does not hold block {height} and its app hashes")
        block = types_pb2.CommittedBlock.FromString(block_raw)
        # The commit certificate is each node's own set of 2f + 1 votes: left out, so every
        # honest node's manifest is the same bytes.
        block.ClearField("certificate")
        block_raw = block.SerializeToString(deterministic=True)
        partial = self._path(height) + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        state_keys = 0

        def state_records() -> Iterator[bytes]:
            nonlocal state_keys
            for key, value in reader.state():
                state_keys += 1
                yield encode_record(KIND_STATE, key, value)

        hashes: list[bytes] = []
        total = written = 0

        def chunk_path(index: int) -> str:
            return os.path.join(partial, f"chunk-{index:06d}")

        def put(data: bytes) -> None:
            nonlocal total, written
            with open(chunk_path(len(hashes)), "wb") as handle:
                handle.write(data)
            hashes.append(hashlib.sha256(data).digest())
            total += len(data)
            written += len(data)

        for data in chunks_of(state_records(), self.chunk_bytes):
            put(data)
        # The tx id chunks: those complete in the previous snapshot, linked; then the blocks
        # after them, read from the store and chunked as a fresh snapshot would.
        first_tx = len(hashes)
        reused = [c for c in self._tx_chunks if c.last_height < height]
        try:
            for index, chunk in enumerate(reused):
                os.link(chunk.path, chunk_path(first_tx + index))
        except OSError as exc:  # e.g. an operator removed the snapshot: write them all again
            log.warning("snapshot at height %d: cannot link %s (%s); writing every tx id chunk",
                        height, chunk.path, exc)
            for index in range(len(reused)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(chunk_path(first_tx + index))
            reused = []
        for chunk in reused:
            hashes.append(chunk.digest)
            total += chunk.size
        # (last height, bytes, tx ids) of every complete tx id chunk, in order
        complete = [(c.last_height, c.size, c.tx_ids) for c in reused]
        tx_ids = sum(c.tx_ids for c in reused)
        from_height = reused[-1].last_height + 1 if reused else 0
        blocks = (
            (encode_record(KIND_BLOCK_TXS, location, entries),
             (location, len(entries) // TX_ID_ENTRY_BYTES))
            for location, entries in reader.tx_ids_by_height(from_height)
        )
        for data, tags, whole in record_chunks(blocks, self.chunk_bytes):
            put(data)
            ids = sum(count for _, count in tags)
            tx_ids += ids
            if whole:
                complete.append((int(struct.unpack(">Q", tags[-1][0])[0]), len(data), ids))
        manifest = peer_pb2.SnapshotManifest(
            format=FORMAT, chain_id=self.chain_id, height=height, app_hash=app_hash,
            block_hash=block.block_hash, prev_app_hash=prev_app_hash, chunk_hashes=hashes,
            total_bytes=total, state_keys=state_keys, tx_ids=tx_ids,
            block=block_raw,
        )
        manifest_bytes = manifest.SerializeToString(deterministic=True)
        signed = peer_pb2.SignedManifest(
            manifest=manifest_bytes, node=self.node_id,
            signature=self.signer.sign(signing_statement(self.chain_id, manifest_bytes)),
        )
        with open(os.path.join(partial, "manifest.sig"), "wb") as handle:
            handle.write(signed.SerializeToString())
            handle.flush()
            os.fsync(handle.fileno())
        shutil.rmtree(self._path(height), ignore_errors=True)
        os.rename(partial, self._path(height))
        final = self._path(height)
        self._tx_chunks = [
            _TxChunk(last, hashes[first_tx + i], chunk_size, ids,
                     os.path.join(final, f"chunk-{first_tx + i:06d}"))
            for i, (last, chunk_size, ids) in enumerate(complete)
        ]
        with self._lock:
            self._signed[height] = signed
            dropped = sorted(self._signed, reverse=True)[self.keep:]
            for old in dropped:
                del self._signed[old]
        for old in dropped:
            shutil.rmtree(self._path(old), ignore_errors=True)
        log.info("snapshot at height %d: %d state keys, %d tx ids, %d chunks (%d linked from "
                 "the previous snapshot), %.1f MB (%.1f MB written) in %.1f s",
                 height, state_keys, tx_ids, len(hashes), len(reused), total / 1e6,
                 written / 1e6, time.monotonic() - started)
        return signed


class Snapshotter:
    """Takes a snapshot every `interval` blocks, in one background thread, never more than
    one at a time (a height that comes while one is being written is skipped)."""

    def __init__(self, store: SnapshotStore, storage: Storage, interval: int) -> None:
        self.store = store
        self.storage = storage
        self.interval = interval
        self._busy = threading.Lock()

    def block_stored(self, height: int) -> None:
        """Called by the thread that stored block `height`, right after."""
        if self.interval <= 0 or height % self.interval or not self._busy.acquire(False):
            return
        # The LevelDB snapshot is taken here, at exactly this height, before the next block.
        reader = self.storage.snapshot_reader()
        threading.Thread(target=self._write, args=(reader,), name="snapshot",
                         daemon=True).start()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for a snapshot being written (the store must stay open until it ends)."""
        if not self._busy.acquire(timeout=timeout_s):
            return False
        self._busy.release()
        return True

    def _write(self, reader: SnapshotReader) -> None:
        try:
            self.store.write(reader)
        except Exception:  # a failed snapshot must never stop the node: log it, try next time
            log.exception("snapshot at height %d failed", reader.height)
        finally:
            reader.close()
            # The snapshot read every block's tx ids and all of the state.
            self.storage.release_scanned_pages()
            self._busy.release()
