"""The chain format: how a block, its txs and the state after it are hashed, and which app hash a
header carries. Every node computes these identically; they are the chain's definition, apart
from the code that produces blocks (the driver) and runs them (the executor).

The app hash after block h is `sha256(app_hash(h-1) || write_set_digest(writes of h))`; a
block's hash is the sha256 of its header serialized deterministically; its txs hash is the
sha256 of its tx ids in block order.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

from proto import types_pb2

# A block's header carries the app hash after the block APP_HASH_LAG heights below it (the
# genesis state's for the first blocks), not its parent's. So block h+1 can be built and
# ordered while block h still executes: consensus and execution overlap instead of taking
# turns. A node whose state diverged still stops, one block later than with a lag of 1.
APP_HASH_LAG = 2


def app_hash_height(height: int) -> int:
    """The height whose app hash the header of block `height` carries."""
    return max(height - APP_HASH_LAG, 0)


def write_set_digest(writes: Mapping[str, bytes | None]) -> bytes:
    digest = hashlib.sha256()
    for key in sorted(writes):
        value = writes[key]
        raw_key = key.encode()
        digest.update(struct.pack(">I", len(raw_key)) + raw_key)
        if value is None:
            digest.update(b"\x00")
        else:
            digest.update(b"\x01" + struct.pack(">I", len(value)) + value)
    return digest.digest()


def app_hash_after(previous: bytes, writes: Mapping[str, bytes | None]) -> bytes:
    return hashlib.sha256(previous + write_set_digest(writes)).digest()


def txs_hash(tx_ids: Iterable[bytes]) -> bytes:
    digest = hashlib.sha256()
    for tx_id in tx_ids:
        digest.update(tx_id)
    return digest.digest()


def block_hash_of(header: types_pb2.BlockHeader) -> bytes:
    return hashlib.sha256(header.SerializeToString(deterministic=True)).digest()
