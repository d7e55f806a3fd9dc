"""Test-only lying snapshot servers: `SCFCHAIN_BYZANTINE=bad-snapshot-chunk` serves every
snapshot chunk with one byte flipped (its manifest is the honest one), and
`SCFCHAIN_BYZANTINE=wrong-snapshot` offers manifests whose app hash (and block) differ from the
chain's, signed with the node's own valid key. A joining node must detect either, log the
peer's id, and restore from honest peers (tests/e2e/test_state_sync.py).
"""

from __future__ import annotations

import logging

from node.snapshots import SnapshotStore, signing_statement
from proto import peer_pb2, types_pb2

log = logging.getLogger(__name__)


class BadChunks:
    def __init__(self, store: SnapshotStore) -> None:
        self.store = store

    def signed_manifests(self) -> list[peer_pb2.SignedManifest]:
        return self.store.signed_manifests()

    def chunk(self, height: int, index: int) -> bytes | None:
        data = self.store.chunk(height, index)
        if not data:
            return data
        log.warning("serving a corrupted chunk %d of snapshot %d", index, height)
        return bytes([data[0] ^ 0xFF]) + data[1:]


class WrongAppHash:
    def __init__(self, store: SnapshotStore) -> None:
        self.store = store

    def signed_manifests(self) -> list[peer_pb2.SignedManifest]:
        out = []
        for signed in self.store.signed_manifests():
            manifest = peer_pb2.SnapshotManifest.FromString(signed.manifest)
            block = types_pb2.CommittedBlock.FromString(manifest.block)
            block.app_hash = bytes(b ^ 0x01 for b in block.app_hash)
            manifest.app_hash = block.app_hash
            manifest.block = block.SerializeToString()
            raw = manifest.SerializeToString(deterministic=True)
            out.append(peer_pb2.SignedManifest(
                manifest=raw, node=signed.node,
                signature=self.store.signer.sign(signing_statement(self.store.chain_id, raw))))
        return out

    def chunk(self, height: int, index: int) -> bytes | None:
        return self.store.chunk(height, index)
