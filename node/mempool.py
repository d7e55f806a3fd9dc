"""The mempool: admitted txs waiting for a block, bounded in count and bytes.

Txs leave in admission order. A proposer `take`s a block's worth; those stay "in flight" until
they commit (`remove_committed`) or the proposal is abandoned (`requeue_in_flight`, e.g. when
leadership moves), so nothing admitted is silently dropped by a leader change.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from proto import types_pb2


class MempoolFull(Exception):
    pass


_Held = tuple[types_pb2.SignedTx, int]  # the tx and its size in bytes (body and signature)


class Mempool:
    def __init__(self, txs_max: int, bytes_max: int) -> None:
        assert txs_max > 0 and bytes_max > 0
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        # Each tx is held with its size: reading a protobuf bytes field copies it, and a
        # leader's `take` and `remove_committed` ran for every tx of every block.
        self._pending: OrderedDict[bytes, _Held] = OrderedDict()
        # In flight: a plain dict keeps insertion order too, and pops faster.
        self._in_flight: dict[bytes, _Held] = {}
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """Bytes of the txs held (pending and in flight)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._pending) + len(self._in_flight)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._pending or tx_id in self._in_flight

    def add_batch(self, txs: Iterable[tuple[bytes, types_pb2.SignedTx]]) -> None:
        """Add all or none (MempoolFull when the batch does not fit)."""
        items = [(tx_id, (tx, len(tx.body) + len(tx.signature)))
                 for tx_id, tx in txs if tx_id not in self]
        extra = sum(size for _, (_, size) in items)
        if len(self) + len(items) > self.txs_max or self._bytes + extra > self.bytes_max:
            raise MempoolFull(
                f"mempool holds {len(self)} txs / {self._bytes} bytes; "
                f"limits are {self.txs_max} txs / {self.bytes_max} bytes"
            )
        self._pending.update(items)
        self._bytes += extra

    def take(self, txs_max: int, bytes_max: int) -> list[tuple[bytes, types_pb2.SignedTx]]:
        """Move up to a block's worth of pending txs to in flight and return them in order."""
        out: list[tuple[bytes, types_pb2.SignedTx]] = []
        size = 0
        pending, in_flight = self._pending, self._in_flight
        while pending and len(out) < txs_max:
            tx_id, held = pending.popitem(last=False)
            tx, tx_size = held
            if out and size + tx_size > bytes_max:
                pending[tx_id] = held  # does not fit: back to the front, first in the next block
                pending.move_to_end(tx_id, last=False)
                break
            in_flight[tx_id] = held
            out.append((tx_id, tx))
            size += tx_size
        return out

    def remove_committed(self, tx_ids: Iterable[bytes]) -> None:
        in_flight, pending = self._in_flight, self._pending
        freed = 0
        for tx_id in tx_ids:
            held = in_flight.pop(tx_id, None) or pending.pop(tx_id, None)
            if held is not None:
                freed += held[1]
        self._bytes -= freed

    def requeue_in_flight(self) -> int:
        """Put abandoned in-flight txs back at the front, in their order."""
        moved = len(self._in_flight)
        if moved:
            merged = OrderedDict(self._in_flight)
            merged.update(self._pending)
            self._pending = merged
            self._in_flight = {}
        return moved

    def drain_pending(self, txs_max: int) -> list[tuple[bytes, types_pb2.SignedTx]]:
        """Remove and return pending txs (a follower hands them to the leader)."""
        out = []
        while self._pending and len(out) < txs_max:
            tx_id, (tx, size) = self._pending.popitem(last=False)
            self._bytes -= size
            out.append((tx_id, tx))
        return out
