"""Catch-up: fetch committed blocks from a peer and apply them, when the engine asks (RequestSync).

Fetching runs ahead in its own task (up to SYNC_AHEAD_BLOCKS_MAX blocks) while runs of
already-fetched blocks are applied by the committer, up to SYNC_APPLY_BLOCKS_MAX per
worker-thread call. When the engine can check commit certificates (PBFT's
`verify_certificate`), every fetched block must carry a valid one: the peer serving it need not
be trusted (then its header must also match the txs it carries). Whatever happens, the engine
is told where the chain ended up (`Inbox.synced`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from node.chain import block_hash_of, txs_hash
from node.client.identity import tx_id_of
from node.committer import Committer
from node.effects import FatalError
from node.inbox import Inbox
from node.ports import PeerTransport
from proto import types_pb2

log = logging.getLogger(__name__)

SYNC_AHEAD_BLOCKS_MAX = 512
SYNC_APPLY_BLOCKS_MAX = 64

# (height, block hash, certificate) -> whether the certificate commits that block
CertificateCheck = Callable[[int, bytes, bytes], bool]


def certified(fetched: types_pb2.CommittedBlock, verify: CertificateCheck) -> bool:
    header = fetched.block.header
    if fetched.block_hash != block_hash_of(header):
        return False
    if header.txs_hash != txs_hash(tx_id_of(tx.body) for tx in fetched.block.txs):
        return False
    return verify(header.height, fetched.block_hash, fetched.certificate)


class Syncer:
    def __init__(
        self,
        transport: PeerTransport,
        committer: Committer,
        inbox: Inbox,
        verify_certificate: CertificateCheck | None,
    ) -> None:
        self.transport = transport
        self.committer = committer
        self.inbox = inbox
        self.verify_certificate = verify_certificate
        # One catch-up at a time, run by `run` inside the driver's task group, so a FatalError
        # in a catch-up (a fetched block whose app hash differs from ours) stops the node.
        self._requests: asyncio.Queue[tuple[str, int]] = asyncio.Queue(1)
        self._busy = False

    def start(self, peer: str, from_height: int) -> None:
        """Ask for a catch-up from `peer`, unless one is running or already asked for."""
        if self._busy or self._requests.full():
            return
        self._requests.put_nowait((peer, max(from_height, 1)))

    async def run(self) -> None:
        while True:
            peer, from_height = await self._requests.get()
            self._busy = True
            try:
                log.info("syncing from %s at height %d", peer, from_height)
                await self.catch_up(peer)
            finally:
                self._busy = False
            head = self.committer.head
            self.inbox.synced(head.height, head.block_hash)

    async def catch_up(self, peer: str) -> bool:
        """Fetch and apply blocks above our head from `peer` until it has no more; whether
        the peer answered and every block it sent was accepted (an observer's follower calls
        this directly, with no engine to tell)."""
        fetched: asyncio.Queue[types_pb2.CommittedBlock | None] = asyncio.Queue(
            SYNC_AHEAD_BLOCKS_MAX
        )
        answered = [True]
        fetcher = asyncio.create_task(
            self._fetch_into(peer, fetched, answered), name=f"fetch-{peer}"
        )
        try:
            finished = False
            while not finished:
                run: list[types_pb2.CommittedBlock] = []
                item = await fetched.get()
                while item is not None:
                    run.append(item)
                    if len(run) >= SYNC_APPLY_BLOCKS_MAX or fetched.empty():
                        break
                    item = fetched.get_nowait()
                finished = item is None
                if run and not await self.committer.apply_fetched(
                    peer, run, lambda block: self._accept(peer, block)
                ):
                    return False
        except FatalError:
            raise
        except Exception as exc:  # a block that failed to apply: try again on the next request
            log.warning("sync from %s stopped: %s", peer, exc)
            return False
        finally:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)
        return answered[0]

    async def _fetch_into(
        self,
        peer: str,
        fetched: asyncio.Queue[types_pb2.CommittedBlock | None],
        answered: list[bool],
    ) -> None:
        try:
            async for block in self.transport.fetch_blocks(peer, self.committer.head.height + 1):
                await fetched.put(block)
        except Exception as exc:  # a peer that fails mid-sync: the engine asks again later
            log.debug("fetching blocks from %s stopped: %s", peer, exc)
            answered[0] = False
        finally:
            await fetched.put(None)

    def _accept(self, peer: str, block: types_pb2.CommittedBlock) -> bool:
        verify = self.verify_certificate
        if verify is None or certified(block, verify):
            return True
        log.warning("block %d from %s: bad certificate", block.block.header.height, peer)
        return False
