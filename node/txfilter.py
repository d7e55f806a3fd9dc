"""An in-memory Bloom filter of every committed tx id, in front of the store's tx index.

Every admitted tx and every executed tx asks "is this tx id committed?", and the answer is
almost always no. LevelDB answers a miss quickly, but plyvel releases the GIL around each
`Get`, and taking it back waits for whichever thread holds it: under load the executor thread
spent a quarter of its samples waiting there (py-spy), not reading. The filter answers "no"
for nearly every new tx without leaving Python; only a "maybe" goes to the store, so a false
positive costs one store read and a false negative cannot happen (every committed id is added
before its block's write returns).

Tx ids are SHA-256 digests, uniformly distributed, so the bit positions are taken from the id's
own bytes (double hashing) instead of hashing again. The filter grows by rebuilding at twice
the capacity from the store's index when it fills, keeping the false-positive rate near 1 %.
"""

from __future__ import annotations

from collections.abc import Iterable

BITS_PER_ID = 10
HASHES = 7
CAPACITY_MIN = 1 << 16


class TxIdFilter:
    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, CAPACITY_MIN)
        self._bits_count = self.capacity * BITS_PER_ID
        self._bits = bytearray((self._bits_count + 7) // 8)
        self.count = 0

    @classmethod
    def of(cls, tx_ids: Iterable[bytes], count_hint: int = 0) -> TxIdFilter:
        """A filter holding `tx_ids`, sized for twice `count_hint` of them."""
        built = cls(2 * count_hint)
        for tx_id in tx_ids:
            built.add(tx_id)
        return built

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def _seeds(self, tx_id: bytes) -> tuple[int, int]:
        if len(tx_id) < 16:
            tx_id = tx_id.ljust(16, b"\x00")
        return int.from_bytes(tx_id[:8], "little"), int.from_bytes(tx_id[8:16], "little") | 1

    def add(self, tx_id: bytes) -> None:
        bits, size = self._bits, self._bits_count
        first, step = self._seeds(tx_id)
        for i in range(HASHES):
            position = (first + i * step) % size
            bits[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def might_contain(self, tx_id: bytes) -> bool:
        bits, size = self._bits, self._bits_count
        first, step = self._seeds(tx_id)
        for i in range(HASHES):
            position = (first + i * step) % size
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
        return True
