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
  pool when there are none, as in tests). It never waits: while the signatures are being
  checked the answer is "not yet" too, and the verdict is there on a later call;
- `BlockChecker.inspect`: `inspect_block` remembered per payload, for the engine's retries;
- `signer`/`verifier`: Ed25519 over the engine's statements with the node key and the
  genesis validator keys.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from consensus.pbft_config import BlockIdentity, Sign, Verify
from node.admission import VerifiedCache
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.chain_params import ChainParams
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
# Parsed blocks kept, by payload object: the engine's next-height proposal and a few more
# (its retries on every tick, the pre-prepares of the next heights). Bounded in payload bytes
# too, since a parsed block costs about its size again.
PARSED_BLOCKS_MAX = 8
PARSED_BYTES_MAX = 64 * 1024 * 1024
# Signature verdicts (or the check under way) by block hash.
SIGNATURE_VERDICTS_MAX = 64

# The txs whose signatures one block still needs checked: (tx id, body, signature).
Unchecked = list[tuple[bytes, bytes, bytes]]


def _parse(payload: bytes) -> types_pb2.Block | None:
    block = types_pb2.Block()
    try:
        block.ParseFromString(payload)
    except DecodeError:
        return None
    return block if block.HasField("header") else None


def inspect_block(payload: bytes) -> BlockIdentity | None:
    parsed = _Parsed.of(payload)
    return parsed.identity if parsed is not None and parsed.txs_match else None


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What the checks need of one payload, computed once."""

    payload: bytes
    block: types_pb2.Block
    identity: BlockIdentity
    tx_ids: tuple[bytes, ...]
    txs_match: bool  # the header's txs_hash covers the txs carried

    @staticmethod
    def of(payload: bytes) -> _Parsed | None:
        block = _parse(payload)
        if block is None:
            return None
        header = block.header
        tx_ids = tuple(tx_id_of(tx.body) for tx in block.txs)
        identity = BlockIdentity(header.height, block_hash_of(header), header.parent_hash)
        return _Parsed(payload, block, identity, tx_ids, header.txs_hash == txs_hash(tx_ids))


class BlockChecker:
    """A backup's validation of proposed blocks; see the module docstring.

    Called on the node's event loop (the engine runs there), so nothing here waits for
    signature checks: the first call for a block starts them on a thread (which hands them to
    the worker processes) and answers "not now"; the engine asks again on its next tick and
    gets the verdict once it is in. Parsed blocks and signature verdicts are remembered, so a
    retry costs dictionary lookups, not a parse and a hash of the whole block.
    """

    def __init__(
        self,
        genesis: Genesis,
        storage: Storage,
        verified: VerifiedCache | None,
        *,
        threads: int = 2,
        pool: VerifyPool | None = None,
        params: ChainParams | None = None,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.genesis = genesis
        self.storage = storage
        # Block limits as of each height (the committee may change them); genesis's by default.
        self.params = params or ChainParams(genesis.block, 0)
        self.verified = verified if verified is not None else VerifiedCache(200_000)
        self.wall_clock_ms = wall_clock_ms
        self._threads = pool.workers if pool is not None else threads
        self._processes = pool
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pbft-verify")
        # One block's signature checks at a time, off the event loop; it waits on the worker
        # processes (or `_pool`), so it must not be a thread of `_pool` itself.
        self._checks = ThreadPoolExecutor(1, thread_name_prefix="pbft-check")
        self._rejected: OrderedDict[bytes, None] = OrderedDict()
        # Header times of blocks this backup accepted: a proposal's parent may be committed
        # but not yet executed here, and its time must still be before the proposal's.
        self._times: OrderedDict[bytes, int] = OrderedDict()
        # Keyed by the payload object's id (the entry holds the object, so the id stays its
        # own): the engine passes the same bytes object on every retry, and hashing a 4 MB
        # key costs milliseconds where an id costs nothing.
        self._parsed: OrderedDict[int, _Parsed | None] = OrderedDict()
        self._parsed_payloads: dict[int, bytes] = {}
        self._parsed_bytes = 0
        self._signatures: OrderedDict[bytes, bool | Future[list[bytes] | None]] = OrderedDict()

    def inspect(self, payload: bytes) -> BlockIdentity | None:
        """`inspect_block`, remembered (the engine asks on every retry)."""
        parsed = self._lookup(payload)
        return parsed.identity if parsed is not None and parsed.txs_match else None

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until the signature checks started so far are done (for tests and tools)."""
        running = [f for f in self._signatures.values() if isinstance(f, Future)]
        futures.wait(running, timeout_s)

    def _lookup(self, payload: bytes) -> _Parsed | None:
        key = id(payload)
        if self._parsed_payloads.get(key) is payload:
            self._parsed.move_to_end(key)
            return self._parsed[key]
        parsed = _Parsed.of(payload)
        self._parsed_payloads[key] = payload
        self._parsed[key] = parsed
        self._parsed_bytes += len(payload)
        while len(self._parsed) > 1 and (
            len(self._parsed) > PARSED_BLOCKS_MAX or self._parsed_bytes > PARSED_BYTES_MAX
        ):
            old, _ = self._parsed.popitem(last=False)
            self._parsed_bytes -= len(self._parsed_payloads.pop(old))
        return parsed

    def _reject(self, block_hash: bytes, why: str) -> bool:
        log.warning("refusing proposed block %s: %s", block_hash.hex()[:16], why)
        self._rejected[block_hash] = None
        if len(self._rejected) > REJECTED_BLOCKS_MAX:
            self._rejected.popitem(last=False)
        return False

    def validate(self, height: int, parent_hash: bytes, payload: bytes) -> bool:
        """True: valid now. False: invalid (remembered, and said once) or not yet: signatures
        still being checked, or the parent not executed here (the engine asks again)."""
        parsed = self._lookup(payload)
        if parsed is None:
            return False
        header = parsed.block.header
        block_hash = parsed.identity.block_hash
        if block_hash in self._rejected:
            return False
        if header.height != height or header.parent_hash != parent_hash:
            return self._reject(block_hash, "wrong height or parent")
        if header.chain_id != self.genesis.chain_id:
            return self._reject(block_hash, f"chain {header.chain_id!r}")
        if not parsed.txs_match:
            return self._reject(block_hash, "txs_hash does not match the txs")
        # Signatures first: they are checked while the parent executes, not after it.
        signed = self._signatures_valid(parsed)
        if signed is None:
            return False  # still being checked
        if not signed:
            return self._reject(block_hash, "a tx signature is invalid")
        head = self.storage.head()
        checked_height = app_hash_height(height)
        if head.height < checked_height or head.height >= height:
            return False  # the block whose app hash it carries is not executed here yet
        # Only now: with the head at height - APP_HASH_LAG or above, every replica reads the
        # same limits for this height (node/chain_params.py).
        limits = self.params.limits_at(height)
        if len(parsed.tx_ids) > limits.txs_max or len(payload) > limits.bytes_max + 4096:
            return self._reject(block_hash, "over the block limits")
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

    def _signatures_valid(self, parsed: _Parsed) -> bool | None:
        """Every tx signature valid? None while the check runs (started on the first call)."""
        block_hash = parsed.identity.block_hash
        held = self._signatures.get(block_hash)
        if held is None:
            todo = [
                (tx_id, tx.body, tx.signature)
                for tx_id, tx in zip(parsed.tx_ids, parsed.block.txs, strict=True)
                if not self.verified.has(tx_id, tx.signature)  # admission checked it here
            ]
            held = self._checks.submit(self._check, todo) if todo else True
            self._signatures[block_hash] = held
            while len(self._signatures) > SIGNATURE_VERDICTS_MAX:
                self._signatures.popitem(last=False)
        if isinstance(held, bool):
            return held
        if not held.done():
            return None
        checked = held.result()
        if checked is None:
            del self._signatures[block_hash]  # remembered as rejected instead
            return False
        for tx_id, signature in checked:  # on the loop: the cache is not shared with the thread
            self.verified.add(tx_id, signature)
        self._signatures[block_hash] = True
        return True

    def _check(self, todo: Unchecked) -> list[tuple[bytes, bytes]] | None:
        """On the check thread: (tx id, signature) of `todo`, all signatures valid, or None."""
        items: list[tuple[bytes, tuple[bytes, bytes, bytes]]] = []
        for tx_id, raw, signature in todo:
            body = types_pb2.TxBody()
            try:
                body.ParseFromString(raw)
            except DecodeError:
                return None
            if is_weak_public_key(body.sender):
                return None
            items.append((tx_id, (body.sender, signature, raw)))
        chunk = max(VERIFY_CHUNK_MIN, -(-len(items) // self._threads))
        chunks = [[item for _, item in items[i : i + chunk]] for i in range(0, len(items), chunk)]
        if self._processes is not None:
            results: Iterable[list[bool]] = self._processes.verify(chunks)
        else:
            results = self._pool.map(verify_chunk, chunks)
        if not all(ok for oks in results for ok in oks):
            return None
        return [(tx_id, signature) for tx_id, (_, signature, _) in items]


def signer(account: Account) -> Sign:
    return account.sign


def verifier(genesis: Genesis) -> Verify:
    keys = {v.node_id: v.public_key for v in genesis.validators}

    def verify(node_id: str, statement: bytes, signature: bytes) -> bool:
        key = keys.get(node_id)
        return key is not None and verify_signature(key, signature, statement)

    return verify
