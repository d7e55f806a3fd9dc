"""What a PBFT replica needs from the node: block identity, block validation, message signing.

The PBFT engine cannot read blocks or keys. This module gives it:
- `inspect_block`: a payload's (height, hash, parent) — and `None` unless the header's
  `txs_hash` matches the txs carried, since the block hash covers only the header: without
  that check a primary could ship one header with different txs to different backups;
- `BlockChecker.validate`: a backup's check of a proposal before it prepares it: well-formed,
  right chain, height and parent, header time after the parent's, `prev_app_hash` equal to this
  node's app hash `APP_HASH_LAG` blocks below (that block must be executed here first, and the
  parent executed or validated here, for its time: until then the answer is "not yet" and the
  engine asks again on its next tick), within the block limits,
  and every tx signature valid (ids admission already verified are skipped; the rest are
  checked in the node's signature worker processes, node/verify_pool.py, or on a small thread
  pool when there are none, as in tests);
- `signer`/`verifier`: Ed25519 over the engine's statements with the node key and the
  genesis validator keys.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from google.protobuf.message import DecodeError

from consensus.pbft_config import BlockIdentity, Sign, Verify
from node.admission import VerifiedCache
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.client.identity import Account, is_weak_public_key, tx_id_of, verify_signature
from node.genesis import Genesis
from node.storage import Storage
from node.verify_pool import VerifyPool, verify_chunk
from proto import types_pb2

log = logging.getLogger(__name__)

CLOCK_DRIFT_MS_MAX = 60_000
REJECTED_BLOCKS_MAX = 1_024
VALIDATED_TIMES_MAX = 64
VERIFY_CHUNK_MIN = 64


def _parse(payload: bytes) -> types_pb2.Block | None:
    block = types_pb2.Block()
    try:
        block.ParseFromString(payload)
    except DecodeError:
        return None
    return block if block.HasField("header") else None


def inspect_block(payload: bytes) -> BlockIdentity | None:
    block = _parse(payload)
    if block is None:
        return None
    header = block.header
    if header.txs_hash != txs_hash(tx_id_of(tx.body) for tx in block.txs):
        return None
    return BlockIdentity(header.height, block_hash_of(header), header.parent_hash)


class BlockChecker:
    """A backup's validation of proposed blocks; see the module docstring."""

    def __init__(
        self,
        genesis: Genesis,
        storage: Storage,
        verified: VerifiedCache | None,
        *,
        threads: int = 2,
        pool: VerifyPool | None = None,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.genesis = genesis
        self.storage = storage
        self.verified = verified if verified is not None else VerifiedCache(200_000)
        self.wall_clock_ms = wall_clock_ms
        self._threads = pool.workers if pool is not None else threads
        self._processes = pool
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pbft-verify")
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        # Header times of blocks this backup accepted: a proposal's parent may be committed
        # but not yet executed here, and its time must still be before the proposal's.
        self._times: OrderedDict[bytes, int] = OrderedDict()

    def _reject(self, block_hash: bytes, why: str) -> bool:
        log.warning("refusing proposed block %s: %s", block_hash.hex()[:16], why)
        self._rejected[block_hash] = None
        if len(self._rejected) > REJECTED_BLOCKS_MAX:
            self._rejected.popitem(last=False)
        return False

    def validate(self, height: int, parent_hash: bytes, payload: bytes) -> bool:
        block = _parse(payload)
        if block is None:
            return False
        header = block.header
        block_hash = block_hash_of(header)
        if block_hash in self._rejected:
            return False
        limits = self.genesis.block
        if header.height != height or header.parent_hash != parent_hash:
            return self._reject(block_hash, "wrong height or parent")
        if header.chain_id != self.genesis.chain_id:
            return self._reject(block_hash, f"chain {header.chain_id!r}")
        if len(block.txs) > limits.txs_max or len(payload) > limits.bytes_max + 4096:
            return self._reject(block_hash, "over the block limits")
        if header.txs_hash != txs_hash(tx_id_of(tx.body) for tx in block.txs):
            return self._reject(block_hash, "txs_hash does not match the txs")
        # Signatures first: checked ids are remembered, so this work overlaps the parent's
        # execution instead of following it.
        if not self._signatures_valid(block):
            return self._reject(block_hash, "a tx signature is invalid")
        head = self.storage.head()
        checked_height = app_hash_height(height)
        if head.height < checked_height or head.height >= height:
            return False  # the block whose app hash it carries is not executed here yet
        if head.height == height - 1:
            parent_time_ms: int | None = head.time_ms
        else:  # the parent is committed but still executing: we validated it, so know its time
            parent_time_ms = self._times.get(parent_hash)
        if parent_time_ms is None:
            return False  # not now, maybe later (once the parent is executed)
        ours = head.app_hash if head.height == checked_height else (
            self.storage.app_hash_at(checked_height)
        )
        if header.prev_app_hash != ours:
            return self._reject(block_hash, "prev_app_hash differs from ours")
        if header.time_ms <= parent_time_ms:
            return self._reject(block_hash, "time does not move forward")
        # From the future (or our clock is behind): not now, maybe later.
        if header.time_ms > self.wall_clock_ms() + CLOCK_DRIFT_MS_MAX:
            return False
        self._times[block_hash] = header.time_ms
        while len(self._times) > VALIDATED_TIMES_MAX:
            self._times.popitem(last=False)
        return True

    def _signatures_valid(self, block: types_pb2.Block) -> bool:
        todo: list[tuple[bytes, tuple[bytes, bytes, bytes]]] = []
        for tx in block.txs:
            tx_id = tx_id_of(tx.body)
            if tx_id in self.verified:
                continue
            body = types_pb2.TxBody()
            try:
                body.ParseFromString(tx.body)
            except DecodeError:
                return False
            if is_weak_public_key(body.sender):
                return False
            todo.append((tx_id, (body.sender, tx.signature, tx.body)))
        if not todo:
            return True
        chunk = max(VERIFY_CHUNK_MIN, -(-len(todo) // self._threads))
        groups = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        chunks = [[item for _, item in g] for g in groups]
        if self._processes is not None:
            results: Iterable[list[bool]] = self._processes.verify(chunks)
        else:
            results = self._pool.map(verify_chunk, chunks)
        for group, oks in zip(groups, results, strict=True):
            for (tx_id, _), ok in zip(group, oks, strict=True):
                if not ok:
                    return False
                self.verified.add(tx_id)
        return True


def signer(account: Account) -> Sign:
    return account.sign


def verifier(genesis: Genesis) -> Verify:
    keys = {v.node_id: v.public_key for v in genesis.validators}

    def verify(node_id: str, statement: bytes, signature: bytes) -> bool:
        key = keys.get(node_id)
        return key is not None and verify_signature(key, signature, statement)

    return verify
