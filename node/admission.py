"""Admission: the gate between clients and the mempool. Nothing bad reaches consensus.

A batch is admitted whole or refused whole, with an `AdmissionError` naming the first bad tx:
size limits, parse, chain id, sender key, membership, duplicates (in the batch, the mempool and
the committed index), then Ed25519 signatures checked in worker processes (node/verify_pool.py;
a thread pool when there are none, as in tests and tools) and remembered, so each signature is
checked once per node.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from contracts.runtime import member_key
from node.client.identity import is_weak_public_key
from node.config import Limits
from node.mempool import Mempool, MempoolFull
from node.verify_pool import VerifyPool, verify_chunk
from proto import types_pb2

log = logging.getLogger(__name__)

NAME_CHARS_MAX = 64


def _name_problem(body: types_pb2.TxBody) -> str:
    """Why a tx's contract or method name is refused (only called for a refused one)."""
    for what, name in (("contract", body.contract), ("method", body.method)):
        if not name:
            return f"the {what} name is empty; name the {what} to call"
        if len(name) > NAME_CHARS_MAX:
            return f"the {what} name is {len(name)} characters long; at most {NAME_CHARS_MAX}"
    raise AssertionError("the contract and method names are fine")


def membership(get_state: Callable[[str], bytes | None]) -> Callable[[bytes], bool]:
    """Whether a sender's public key belongs to a registered member, read from committed state."""
    return lambda sender: get_state(member_key(sender.hex())) is not None


class AdmissionError(Exception):
    """A refused submission; `status` is the gRPC status name the API answers with."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Checked:
    tx_id: bytes
    tx: types_pb2.SignedTx
    sender: bytes


class VerifiedCache:
    """(tx id, signature) pairs this node has checked (bounded, oldest forgotten first).

    Keyed by the signature too, not the tx id alone: a tx id is the hash of the body only, so
    a body once seen with a valid signature must not let the same body through with another
    (forged) signature — the chain would hold a tx whose signature no one can verify."""

    def __init__(self, size_max: int) -> None:
        self._ids: OrderedDict[bytes, None] = OrderedDict()
        self._size_max = size_max

    def has(self, tx_id: bytes, signature: bytes) -> bool:
        return tx_id + signature in self._ids

    def add(self, tx_id: bytes, signature: bytes) -> None:
        self._ids[tx_id + signature] = None
        if len(self._ids) > self._size_max:
            self._ids.popitem(last=False)


class SignatureVerifier:
    """Batched Ed25519 checks, in worker processes (`processes`, what a node uses) or on a
    thread pool (tests, tools); remembers what passed."""

    def __init__(self, threads: int, cache_max: int, processes: VerifyPool | None = None) -> None:
        # The thread pool exists only when there are no worker processes to check on.
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="verify") if processes is None else None
        )
        self._threads = processes.workers if processes is not None else threads
        self.processes = processes
        self.cache = VerifiedCache(cache_max)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            self.processes.close()

    async def verify(self, items: Sequence[tuple[bytes, bytes, bytes, bytes]]) -> list[bool]:
        """items: (tx_id, public_key, signature, body). Returns validity per item."""
        results = [True] * len(items)
        todo = [i for i, item in enumerate(items) if not self.cache.has(item[0], item[2])]
        if not todo:
            return results
        loop = asyncio.get_running_loop()
        chunk = max(64, -(-len(todo) // self._threads))
        groups = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        chunks = [[(items[i][1], items[i][2], items[i][3]) for i in group] for group in groups]
        processes = self.processes
        futures = [
            asyncio.wrap_future(processes.submit(chunk))
            if processes is not None
            else loop.run_in_executor(self._pool, verify_chunk, chunk)
            for chunk in chunks
        ]
        for group, oks in zip(groups, await asyncio.gather(*futures), strict=True):
            for index, ok in zip(group, oks, strict=True):
                results[index] = ok
                if ok:
                    self.cache.add(items[index][0], items[index][2])
        return results


class Admission:
    def __init__(
        self,
        chain_id: str,
        limits: Limits,
        mempool: Mempool,
        verifier: SignatureVerifier,
        is_committed: Callable[[bytes], bool],
        is_member: Callable[[bytes], bool],
        on_refused: Callable[[str, int], None] = lambda code, txs: None,
    ) -> None:
        self.chain_id = chain_id
        self.on_refused = on_refused  # (gRPC status name, txs in the request): for metrics
        self.limits = limits
        self.mempool = mempool
        self.verifier = verifier
        self.is_committed = is_committed
        self.is_member = is_member

    def check_request_size(self, txs: Sequence[types_pb2.SignedTx]) -> None:
        if not txs:
            raise AdmissionError("INVALID_ARGUMENT", "the request carries no txs")
        if len(txs) > self.limits.request_txs_max:
            raise AdmissionError(
                "RESOURCE_EXHAUSTED",
                f"{len(txs)} txs in one request; at most {self.limits.request_txs_max}",
            )

    def parse(self, txs: Sequence[types_pb2.SignedTx]) -> list[Checked]:
        """Everything but signatures; raises on the first bad tx."""
        self.check_request_size(txs)
        checked: list[Checked] = []
        seen: set[bytes] = set()
        # Hot loop (every submitted tx): protobuf fields are read once each (every read of a
        # bytes field copies it), and messages are only formatted for a refusal.
        tx_bytes_max, chain_id = self.limits.tx_bytes_max, self.chain_id
        mempool, is_committed, is_member = self.mempool, self.is_committed, self.is_member
        sha256 = hashlib.sha256
        for index, tx in enumerate(txs):
            raw, signature = tx.body, tx.signature
            size = len(raw) + len(signature)
            if size > tx_bytes_max:
                raise AdmissionError(
                    "RESOURCE_EXHAUSTED", f"tx {index} is {size} bytes; at most {tx_bytes_max}"
                )
            body = types_pb2.TxBody()
            try:
                body.ParseFromString(raw)
            except DecodeError:
                raise AdmissionError(
                    "INVALID_ARGUMENT", f"tx {index}: body is not a TxBody"
                ) from None
            if body.chain_id != chain_id:
                raise AdmissionError(
                    "INVALID_ARGUMENT",
                    f"tx {index} is for chain {body.chain_id!r}; this is {chain_id!r}",
                )
            sender = body.sender
            if is_weak_public_key(sender):
                raise AdmissionError(
                    "INVALID_ARGUMENT", f"tx {index}: sender must be a valid 32-byte Ed25519 key"
                )
            if len(signature) != 64:
                raise AdmissionError("INVALID_ARGUMENT", f"tx {index}: signature must be 64 bytes")
            contract, method = body.contract, body.method
            if not (0 < len(contract) <= NAME_CHARS_MAX and 0 < len(method) <= NAME_CHARS_MAX):
                raise AdmissionError("INVALID_ARGUMENT", f"tx {index}: {_name_problem(body)}")
            tx_id = sha256(raw).digest()
            if tx_id in seen:
                raise AdmissionError("ALREADY_EXISTS", f"tx {index} repeats a tx in the batch")
            seen.add(tx_id)
            if tx_id in mempool or is_committed(tx_id):
                raise AdmissionError(
                    "ALREADY_EXISTS", f"tx {index} ({tx_id.hex()}) was already submitted"
                )
            if not is_member(sender):
                raise AdmissionError(
                    "PERMISSION_DENIED",
                    f"tx {index}: sender {sender.hex()[:16]}… is not a consortium member",
                )
            checked.append(Checked(tx_id, tx, sender))
        return checked

    async def check(
        self, txs: Sequence[types_pb2.SignedTx], *, signatures_checked: bool = False
    ) -> list[Checked]:
        """`_check`, counting a refusal."""
        try:
            return await self._check(txs, signatures_checked=signatures_checked)
        except AdmissionError as exc:
            self.on_refused(exc.status, len(txs))
            raise

    async def admit(
        self, txs: Sequence[types_pb2.SignedTx], *, signatures_checked: bool = False
    ) -> list[bytes]:
        """`_admit`, counting a refusal."""
        try:
            return await self._admit(txs, signatures_checked=signatures_checked)
        except AdmissionError as exc:
            self.on_refused(exc.status, len(txs))
            raise

    async def _check(
        self, txs: Sequence[types_pb2.SignedTx], *, signatures_checked: bool = False
    ) -> list[Checked]:
        """Parse and verify signatures; raises AdmissionError on the first bad tx.

        `signatures_checked`: a crash-fault peer (Raft, authenticated by mutual TLS) already
        verified these signatures when its client submitted them; they are not checked again.
        """
        checked = self.parse(txs)
        if signatures_checked:
            for item in checked:
                self.verifier.cache.add(item.tx_id, item.tx.signature)
            return checked
        oks = await self.verifier.verify(
            [(c.tx_id, c.sender, c.tx.signature, c.tx.body) for c in checked]
        )
        for index, ok in enumerate(oks):
            if not ok:
                raise AdmissionError(
                    "INVALID_ARGUMENT", f"tx {index}: the signature does not match the body"
                )
        return checked

    async def _admit(
        self, txs: Sequence[types_pb2.SignedTx], *, signatures_checked: bool = False
    ) -> list[bytes]:
        # Refuse what cannot fit before spending CPU on signatures: under a flood, a full
        # mempool would otherwise cost a signature check per refused tx.
        self.check_request_size(txs)
        if len(self.mempool) + len(txs) > self.mempool.txs_max:
            raise AdmissionError(
                "RESOURCE_EXHAUSTED",
                f"the mempool is full ({len(self.mempool)} of {self.mempool.txs_max} txs); "
                "retry later",
            )
        checked = await self._check(txs, signatures_checked=signatures_checked)
        # Re-check duplicates: another request may have admitted the same tx meanwhile.
        for index, item in enumerate(checked):
            if item.tx_id in self.mempool:
                raise AdmissionError("ALREADY_EXISTS", f"tx {index} was already submitted")
        try:
            self.mempool.add_batch((c.tx_id, c.tx) for c in checked)
        except MempoolFull as exc:
            raise AdmissionError("RESOURCE_EXHAUSTED", f"{exc}; retry later") from None
        return [c.tx_id for c in checked]
