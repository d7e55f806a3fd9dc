"""An in-memory Bloom filter of every committed tx id, in front of the store's tx index.

Every admitted tx and every executed tx asks "is this tx id committed?", and the answer is
almost always no. LevelDB answers a miss quickly, but plyvel releases the GIL around each
`Get`, and taking it back waits for whichever thread holds it: under load the executor thread
spent a quarter of its samples waiting there (py-spy), not reading. The filter answers "no"
for nearly every new tx without leaving Python; only a "maybe" goes to the store, so a false
positive costs one store read and a false negative cannot happen (every committed id is added
before its block's write returns).

Tx ids are SHA-256 digests, uniformly distributed, so the bit positions are taken from the id's
own bytes (double hashing) instead of hashing again.

The filter grows without ever re-reading the index: when its newest layer fills, a new layer of
twice the capacity is added and the full ones are kept (a scalable Bloom filter, Almeida et al.
2007). Growth costs one zeroed allocation, never a pass over the chain: rebuilding a single
filter from the index at each doubling held the GIL for a time that grew with the chain, and a
Raft leader missed its heartbeats during it (issue 13). Each new layer spends more bits and one
more hash per id, so its false-positive rate halves and the sum over all layers stays under
2 % however long the chain grows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

BITS_PER_ID = 10  # the first layer; each later one adds LAYER_BITS_STEP
LAYER_BITS_STEP = 2
HASHES = 7  # the first layer; each later one adds one
# The first layer of a new chain's filter: 1.25 MB. Each layer a miss must check costs about a
# microsecond, and starting at 65,536 ids a chain of 2.4 million had six layers (4.3 us per
# miss) where starting here it has two (2.2 us).
CAPACITY_MIN = 1 << 20
BATCH_IDS_MIN = 32  # below this, numpy's fixed cost outweighs adding ids one at a time
BUILD_BATCH_IDS = 1 << 16  # ids set per numpy pass when a filter is built from the index


class _Layer:
    __slots__ = ("_bits", "_bits_count", "capacity", "count", "hashes")

    def __init__(self, capacity: int, bits_per_id: int, hashes: int) -> None:
        self.capacity = capacity
        self.hashes = hashes
        self._bits_count = capacity * bits_per_id
        self._bits = bytearray((self._bits_count + 7) // 8)
        self.count = 0

    def add(self, first: int, step: int) -> None:
        bits, size = self._bits, self._bits_count
        for i in range(self.hashes):
            position = (first + i * step) % size
            bits[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def add_many(self, firsts: np.ndarray, steps: np.ndarray) -> None:
        """`add` for many ids at once, setting exactly the same bits: (first + i * step) %
        size computed as (first % size + (i * (step % size)) % size) % size, which stays far
        below 2**64 (size < 2**40), so numpy's uint64 arithmetic is exact. Touches only the
        bytes it sets, so a block's few hundred ids cost little however large the layer."""
        size = np.uint64(self._bits_count)
        first, step = firsts % size, steps % size
        view = np.frombuffer(self._bits, dtype=np.uint8)
        three, seven = np.uint64(3), np.uint64(7)
        for i in range(self.hashes):
            positions = (first + (np.uint64(i) * step) % size) % size
            np.bitwise_or.at(view, (positions >> three).astype(np.intp),
                             np.left_shift(np.uint8(1), (positions & seven).astype(np.uint8)))
        self.count += len(firsts)

    def might_contain(self, first: int, step: int) -> bool:
        bits, size = self._bits, self._bits_count
        for i in range(self.hashes):
            position = (first + i * step) % size
            if not bits[position >> 3] & (1 << (position & 7)):
                return False
        return True


class TxIdFilter:
    def __init__(self, capacity: int) -> None:
        self._layers = [_Layer(max(capacity, CAPACITY_MIN), BITS_PER_ID, HASHES)]
        self.count = 0

    @classmethod
    def of(cls, tx_ids: Iterable[bytes], count_hint: int = 0) -> TxIdFilter:
        """A filter holding `tx_ids`, its first layer sized for twice `count_hint` of them."""
        built = cls(2 * count_hint)
        ids = iter(tx_ids)
        while batch := list(itertools.islice(ids, BUILD_BATCH_IDS)):
            built.add_batch(batch)
        return built

    def add_batch(self, batch: list[bytes]) -> None:
        """`add` for each of `batch`, in numpy passes (a committed block's ids). A numpy pass
        costs about 0.1 ms whatever its size, so a small batch goes one id at a time, as does
        anything that is not a SHA-256 digest."""
        if len(batch) < BATCH_IDS_MIN or any(len(tx_id) != 32 for tx_id in batch):
            for tx_id in batch:
                self.add(tx_id)
            return
        words = np.frombuffer(b"".join(batch), dtype="<u8").reshape(-1, 4)
        firsts, steps = words[:, 0], words[:, 1] | np.uint64(1)
        at = 0
        while at < len(batch):
            newest = self._layers[-1]
            room = newest.capacity - newest.count
            if room <= 0:
                self.add(batch[at])  # opens the next layer, as one add would
                at += 1
                continue
            take = min(room, len(batch) - at)
            newest.add_many(firsts[at:at + take], steps[at:at + take])
            self.count += take
            at += take

    @property
    def capacity(self) -> int:
        return sum(layer.capacity for layer in self._layers)

    @property
    def layer_count(self) -> int:
        return len(self._layers)

    @staticmethod
    def _seeds(tx_id: bytes) -> tuple[int, int]:
        if len(tx_id) < 16:
            tx_id = tx_id.ljust(16, b"\x00")
        return int.from_bytes(tx_id[:8], "little"), int.from_bytes(tx_id[8:16], "little") | 1

    def add(self, tx_id: bytes) -> None:
        newest = self._layers[-1]
        if newest.count >= newest.capacity:
            depth = len(self._layers)
            newest = _Layer(
                2 * newest.capacity, BITS_PER_ID + depth * LAYER_BITS_STEP, HASHES + depth
            )
            self._layers.append(newest)
        newest.add(*self._seeds(tx_id))
        self.count += 1

    def might_contain(self, tx_id: bytes) -> bool:
        first, step = self._seeds(tx_id)
        # Newest first: it is the largest and holds the most recently committed ids.
        return any(layer.might_contain(first, step) for layer in reversed(self._layers))
