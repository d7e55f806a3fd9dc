"""State sync: a node far behind (new, or back from a long outage) restores a peer's state
snapshot instead of replaying every block, then replays only the blocks after it.

At start-up, before the node is built (node/server.py `run_node`), `StateSync.run` asks every
validator it knows (genesis's and its stored set's, over the peer port with mutual TLS) for
their snapshots' signed manifests (node/snapshots.py). A manifest counts when a validator's key
signs it; it is chosen only when enough validators signed the very same manifest bytes: f + 1
under PBFT (so at least one honest replica vouches for its chunk hashes and app hash) and one
under Raft (crash faults: a validator does not lie). The engine's app hash is a hash chain over
write sets, not a commitment to the state's contents, so the signatures on the manifest are
what binds the chunks to the chain; the blocks replayed afterwards are checked as in any
catch-up (under PBFT each against its commit certificate), and their headers carry the app
hashes this node then computes, so a snapshot that disagrees with the chain stops the replay.

Chunks are fetched from the signers in parallel, each checked against its hash in the manifest;
a bad chunk is logged with the peer's id and fetched from another signer. The store is marked
as restoring first and unmarked in the batch that sets the new head (node/storage.py), so a
crash half-way leaves a store the next start empties and restores again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from node.config import TlsFiles
from node.ports import NodeObserver
from node.snapshots import Snapshot, SnapshotError, check_chunk, decode_chunk, parse_signed
from node.storage import Storage
from node.tls import read
from node.validator_set import ValidatorSets
from proto import peer_pb2, peer_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 5.0
CHUNK_TIMEOUT_S = 60.0
FETCHES_IN_FLIGHT = 4
CHUNK_ATTEMPTS_MAX = 8
GRPC_MESSAGE_BYTES_MAX = 64 * 1024 * 1024


class StateSyncError(Exception):
    """The restore could not finish; the store was emptied and the node replays instead."""


def signers_needed(consensus: str, voters: int) -> int:
    """How many validators must sign the same manifest: f + 1 under PBFT, else one."""
    return (voters - 1) // 3 + 1 if consensus == "pbft" else 1


@dataclass(frozen=True)
class Dissent:
    """Validators that signed a manifest other than the one most signed at a height."""

    height: int
    theirs: tuple[str, ...]
    their_app_hash: bytes
    majority: tuple[str, ...]
    majority_app_hash: bytes


@dataclass(frozen=True)
class Choice:
    """What `choose_snapshot` found: the snapshot to restore (or None), its signers, every
    disagreement at any eligible height, and the heights passed over for too few signers."""

    snapshot: Snapshot | None
    signers: tuple[str, ...]
    dissents: tuple[Dissent, ...]
    short: tuple[tuple[int, int, int], ...]  # (height, signers, needed)


def choose_snapshot(
    by_digest: dict[bytes, Snapshot], signers: dict[bytes, set[str]], *, lowest: int,
    needed_at: Callable[[int], int],
) -> Choice:
    """The highest snapshot at or above `lowest` whose manifest enough validators signed, with
    no other manifest signed as often at its height. Disagreements are reported at every
    eligible height, not only the chosen one: validators write their snapshots at slightly
    different times, so a liar may not offer the newest height yet."""
    heights: dict[int, list[bytes]] = defaultdict(list)
    for digest, snapshot in by_digest.items():
        if snapshot.height >= lowest:
            heights[snapshot.height].append(digest)
    ranked = {height: sorted(digests, key=lambda d: (-len(signers[d]), d))
              for height, digests in heights.items()}
    dissents = [
        Dissent(height, tuple(sorted(signers[other])), by_digest[other].manifest.app_hash,
                tuple(sorted(signers[digests[0]])), by_digest[digests[0]].manifest.app_hash)
        for height, digests in sorted(ranked.items(), reverse=True) for other in digests[1:]]
    short: list[tuple[int, int, int]] = []
    for height in sorted(ranked, reverse=True):
        best, *others = ranked[height]
        needed = needed_at(height)
        tied = bool(others) and len(signers[others[0]]) == len(signers[best])
        if len(signers[best]) < needed or tied:
            short.append((height, len(signers[best]), needed))
            continue
        return Choice(by_digest[best], tuple(sorted(signers[best])), tuple(dissents),
                      tuple(short))
    return Choice(None, (), tuple(dissents), tuple(short))


class StateSync:
    def __init__(
        self,
        node_id: str,
        chain_id: str,
        consensus: str,
        storage: Storage,
        sets: ValidatorSets,
        tls: TlsFiles,
        *,
        min_blocks: int,
        observer: NodeObserver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.chain_id = chain_id
        self.consensus = consensus
        self.storage = storage
        self.sets = sets
        self.tls = tls
        self.min_blocks = min_blocks
        self.observer = observer
        self.clock = clock
        self._stubs: dict[str, peer_pb2_grpc.PeerStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    async def run(self) -> int | None:
        """Restore the best snapshot far enough ahead; its height, or None (nothing to do)."""
        if not self._open():
            return None
        try:
            chosen = await self._choose()
            if chosen is None:
                return None
            snapshot, sources = chosen
            await self._restore(snapshot, sources)
            return snapshot.height
        finally:
            await self._close()

    async def far_behind(self) -> bool:
        """Whether enough validators offer a snapshot `min_blocks` or more above the head (a
        running node that fell that far behind restarts from it: node/server.py)."""
        if not self._open():
            return False
        try:
            return await self._choose(quiet=True) is not None
        finally:
            await self._close()

    def _open(self) -> bool:
        peers = {v.node_id: v.peer_addr for v in self.sets.state.known()
                 if v.node_id != self.node_id}
        if not peers:
            return False
        creds = grpc.ssl_channel_credentials(read(self.tls.ca_cert), read(self.tls.key),
                                             read(self.tls.cert))
        for peer, addr in sorted(peers.items()):
            options = [("grpc.ssl_target_name_override", peer),
                       ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX)]
            channel = grpc.aio.secure_channel(addr, creds, options=options)
            self._channels.append(channel)
            self._stubs[peer] = peer_pb2_grpc.PeerStub(channel)
        return True

    async def _close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    async def _offers(self, peer: str) -> list[peer_pb2.SignedManifest]:
        try:
            response = await self._stubs[peer].ListSnapshots(
                peer_pb2.ListSnapshotsRequest(), timeout=LIST_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.info("state sync: %s lists no snapshots: %s", peer, exc.code().name)
            return []
        return list(response.snapshots)

    async def _choose(self, quiet: bool = False) -> tuple[Snapshot, list[str]] | None:
        """The snapshot to restore and its signers; `quiet`: a periodic check, which logs
        only what it finds wrong, not that there is nothing to do."""
        head = self.storage.head().height
        peers = sorted(self._stubs)
        answers = await asyncio.gather(*(self._offers(p) for p in peers))
        by_digest: dict[bytes, Snapshot] = {}
        signers: dict[bytes, set[str]] = defaultdict(set)
        for peer, offered in zip(peers, answers, strict=True):
            for signed in offered:
                if signed.node != peer:
                    log.warning("state sync: %s offered a manifest signed as %r", peer,
                                signed.node)
                    continue
                try:
                    snapshot = parse_signed(signed, self.chain_id, self.sets.public_key)
                except SnapshotError as exc:
                    log.warning("state sync: %s offered a bad manifest: %s", peer, exc)
                    continue
                by_digest.setdefault(snapshot.digest, snapshot)
                signers[snapshot.digest].add(peer)
        choice = choose_snapshot(
            by_digest, signers, lowest=head + self.min_blocks,
            needed_at=lambda h: signers_needed(self.consensus, len(self.sets.ids_at(h))))
        for dissent in choice.dissents:
            log.warning(
                "state sync: at height %d %s offer a snapshot (app hash %s) that differs "
                "from the one %s sign (app hash %s); ignoring theirs", dissent.height,
                list(dissent.theirs), dissent.their_app_hash.hex()[:16],
                list(dissent.majority), dissent.majority_app_hash.hex()[:16])
        for height, count, needed in choice.short:
            log.info("state sync: the snapshot at height %d has %d signer(s), %d needed",
                     height, count, needed)
        if choice.snapshot is not None:
            return choice.snapshot, list(choice.signers)
        log.log(logging.DEBUG if quiet else logging.INFO,
                "state sync: no snapshot at least %d blocks above height %d; replaying",
                self.min_blocks, head)
        return None

    async def _restore(self, snapshot: Snapshot, sources: list[str]) -> None:
        manifest = snapshot.manifest
        count = len(manifest.chunk_hashes)
        started = self.clock()
        log.info("state sync: restoring height %d from %s: %d chunks, %.1f MB, %d state keys, "
                 "%d tx ids", snapshot.height, ",".join(sources), count,
                 manifest.total_bytes / 1e6, manifest.state_keys, manifest.tx_ids)
        await asyncio.to_thread(self.storage.begin_restore, snapshot.height)
        pending = list(range(count))
        done = 0
        failures: dict[str, int] = defaultdict(int)
        turn = 0

        async def worker() -> None:
            nonlocal done, turn
            while pending:
                index = pending.pop(0)
                for attempt in range(CHUNK_ATTEMPTS_MAX):
                    usable = [p for p in sources if failures[p] < CHUNK_ATTEMPTS_MAX] or sources
                    peer = usable[(turn + attempt) % len(usable)]
                    turn += 1
                    data = await self._fetch(peer, snapshot, index)
                    if data is None:
                        failures[peer] += 1
                        continue
                    state, txs = await asyncio.to_thread(decode_chunk, data)
                    await asyncio.to_thread(self.storage.restore_records, state, txs)
                    break
                else:
                    raise StateSyncError(
                        f"chunk {index} of snapshot {snapshot.height}: no signer served it")
                done += 1
                self.observer.snapshot_chunk_restored(index)
                if done % max(1, count // 10) == 0 or done == count:
                    log.info("state sync: %d/%d chunks (%.0f s)", done, count,
                             self.clock() - started)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(FETCHES_IN_FLIGHT, count)):
                    group.create_task(worker())
        except* StateSyncError as errors:
            await asyncio.to_thread(self.storage.discard_partial_restore)
            raise errors.exceptions[0] from None
        block = types_pb2.CommittedBlock.FromString(manifest.block)
        await asyncio.to_thread(self.storage.finish_restore, block, manifest.prev_app_hash)
        log.info("state sync: restored height %d in %.1f s; replaying the blocks after it",
                 snapshot.height, self.clock() - started)

    async def _fetch(self, peer: str, snapshot: Snapshot, index: int) -> bytes | None:
        """The chunk, checked; None (and the reason logged with the peer) otherwise."""
        try:
            reply = await self._stubs[peer].FetchSnapshotChunk(
                peer_pb2.FetchSnapshotChunkRequest(height=snapshot.height, index=index),
                timeout=CHUNK_TIMEOUT_S)
            check_chunk(snapshot, index, reply.data)
        except grpc.aio.AioRpcError as exc:
            log.warning("state sync: %s did not serve chunk %d: %s %s", peer, index,
                        exc.code().name, exc.details())
            return None
        except SnapshotError as exc:
            log.warning("state sync: %s served a bad chunk: %s; fetching it elsewhere", peer, exc)
            return None
        return bytes(reply.data)
