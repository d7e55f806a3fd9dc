"""A client for Byzantine-tolerant networks: one node's receipt is only as honest as that node.

`QuorumClient` submits through one node (the next one if it refuses or is down), then asks the
nodes for each receipt (`GetTx`) and accepts it only once f + 1 different nodes return matching
receipts — same status, error code, result, events and height — so at least one honest node
vouches for it. With n = 3f + 1 validators, f defaults to (n - 1) // 3. `GetTx` is a signed
read: give the `reader` (usually the sender) for clients built from addresses.

    async with QuorumClient(["127.0.0.1:7001", "127.0.0.1:7002", ...], reader=account) as client:
        confirmed = await client.submit_and_confirm(txs, timeout_ms=10_000)
        confirmed[0].receipt.ok, confirmed[0].vouchers   # who agreed
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient, LedgerError, ReceiptView
from proto import ledger_pb2, types_pb2

POLL_INTERVAL_S = 0.05
REFUSALS = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # GetTx answers about the reader, not the tx


class QuorumError(LedgerError):
    """No f + 1 nodes agreed on a receipt in time (or no node took the submission)."""


class ReceiptSource(Protocol):
    """What the quorum client needs of one node (`LedgerClient` is one)."""

    address: str

    async def submit(
        self, txs: Sequence[types_pb2.SignedTx], *, wait: bool = False, timeout_ms: int = 0
    ) -> ledger_pb2.SubmitResponse: ...

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ConfirmedReceipt:
    receipt: ReceiptView
    vouchers: tuple[str, ...]  # the addresses of the nodes that returned it


def receipt_key(receipt: types_pb2.Receipt) -> bytes:
    """What must match between nodes: status, error code, result, events, height (and the tx)."""
    digest = hashlib.sha256()
    for part in (
        receipt.tx_id,
        str(receipt.height).encode(),
        str(int(receipt.status)).encode(),
        receipt.error_code.encode(),
        receipt.result_json.encode(),
        *(event.SerializeToString(deterministic=True) for event in receipt.events),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class QuorumClient:
    def __init__(
        self,
        addresses: Sequence[str] | Sequence[ReceiptSource],
        *,
        faults_max: int | None = None,
        timeout_s: float = 30.0,
        reader: Account | None = None,
        chain_id: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        sources: list[ReceiptSource] = [
            LedgerClient(a, timeout_s=timeout_s, reader=reader, chain_id=chain_id, tls=tls)
            if isinstance(a, str) else a
            for a in addresses
        ]
        assert sources, "at least one node is needed"
        self.sources = sources
        self.faults_max = (len(sources) - 1) // 3 if faults_max is None else faults_max
        assert self.faults_max >= 0 and self.faults_max + 1 <= len(sources)
        self.matches_needed = self.faults_max + 1
        self._turn = 0

    async def __aenter__(self) -> QuorumClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.gather(*(source.close() for source in self.sources))

    async def submit(self, txs: Sequence[types_pb2.SignedTx]) -> list[bytes]:
        """Submit through one node, trying the next on refusal; returns the tx ids."""
        last: LedgerError | None = None
        for _ in range(len(self.sources)):
            source = self.sources[self._turn % len(self.sources)]
            self._turn += 1
            try:
                response = await source.submit(txs)
            except LedgerError as exc:
                if exc.status in ("INVALID_ARGUMENT", "ALREADY_EXISTS", "PERMISSION_DENIED"):
                    raise  # the txs are at fault, not the node: another node says the same
                last = exc
                continue
            return list(response.tx_ids)
        raise QuorumError("UNAVAILABLE", f"no node took the submission: {last}")

    async def submit_and_confirm(
        self, txs: Sequence[types_pb2.SignedTx], *, timeout_ms: int = 30_000
    ) -> list[ConfirmedReceipt]:
        tx_ids = await self.submit(txs)
        return await self.confirm(tx_ids, timeout_ms=timeout_ms)

    async def confirm(
        self, tx_ids: Sequence[bytes], *, timeout_ms: int = 30_000
    ) -> list[ConfirmedReceipt]:
        deadline = time.monotonic() + timeout_ms / 1000
        return list(await asyncio.gather(*(self._confirm_one(t, deadline) for t in tx_ids)))

    async def _confirm_one(self, tx_id: bytes, deadline: float) -> ConfirmedReceipt:
        # address -> (key, receipt): each node's latest answer (a node may answer late).
        answers: dict[str, tuple[bytes, types_pb2.Receipt]] = {}
        refused: dict[str, LedgerError] = {}  # nodes that will not show this reader the tx
        while True:
            pending = [
                s for s in self.sources if s.address not in answers and s.address not in refused
            ]
            found = await asyncio.gather(
                *(self._ask(source, tx_id) for source in pending), return_exceptions=False
            )
            for source, receipt in zip(pending, found, strict=True):
                if isinstance(receipt, LedgerError):
                    refused[source.address] = receipt
                elif receipt is not None:
                    answers[source.address] = (receipt_key(receipt), receipt)
            confirmed = self._agreed(answers)
            if confirmed is not None:
                return confirmed
            if len(refused) >= self.matches_needed:  # not one liar: f + 1 nodes refuse
                first = next(iter(refused.values()))
                raise QuorumError(first.status, f"tx {tx_id.hex()[:16]}: {first.message}")
            if time.monotonic() >= deadline:
                kinds = len({key for key, _ in answers.values()})
                raise QuorumError(
                    "DEADLINE_EXCEEDED",
                    f"tx {tx_id.hex()[:16]}: {len(answers)} nodes answered with {kinds} "
                    f"different receipts; {self.matches_needed} matching are needed",
                )
            await asyncio.sleep(POLL_INTERVAL_S)

    def _agreed(
        self, answers: dict[str, tuple[bytes, types_pb2.Receipt]]
    ) -> ConfirmedReceipt | None:
        by_key: dict[bytes, list[str]] = {}
        for address, (key, _) in answers.items():
            by_key.setdefault(key, []).append(address)
        for key, addresses in by_key.items():
            if len(addresses) >= self.matches_needed:
                receipt = answers[addresses[0]][1]
                assert receipt_key(receipt) == key
                return ConfirmedReceipt(ReceiptView.of(receipt), tuple(sorted(addresses)))
        return None

    @staticmethod
    async def _ask(
        source: ReceiptSource, tx_id: bytes
    ) -> types_pb2.Receipt | LedgerError | None:
        try:
            response = await source.get_tx(tx_id)
        except LedgerError as exc:
            if exc.status in REFUSALS:
                return exc  # the node will not show this reader the tx
            return None  # not there yet, or the node is down: ask again
        if not response.HasField("receipt") or response.receipt.tx_id != tx_id:
            return None
        return response.receipt
