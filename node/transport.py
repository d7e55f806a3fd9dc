"""The peer transport: consensus messages, tx forwarding and block sync over gRPC with mutual TLS.

Every node serves the `Peer` service on its peer address and keeps one channel to every
validator but itself: the set the chain's state names (`set_peers`, called when it changes), so
an added validator is dialed and a removed one dropped. Both ends present certificates from the
consortium CA, which name the node (CN and DNS SAN). Consensus messages are taken only from
validators whose votes count now (`Roster.voters`); any node the CA certified (an observer too)
may fetch blocks and forward txs, and a forwarding node that is not such a validator has every
signature checked again.
Outbound messages are queued per peer (bounded by count and bytes) on two lanes, control and
bulk (messages carrying blocks), each sent in batches by its own task on a stream of its own
(`node/peer_links.py`); a lost batch is the engine's to retransmit.
When `sign_messages` is set (PBFT), every envelope carries the sender's Ed25519 signature over
(from_node, payload), checked in worker threads before the message reaches the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from consensus.codec import MESSAGE_BYTES_MAX, CodecError, decode_message, encode_message
from node.admission import Admission, AdmissionError
from node.client.identity import Account, verify_signature
from node.config import TlsFiles
from node.genesis import Genesis
from node.peer_links import (
    BATCH_BYTES_MAX,
    BATCH_MESSAGES_MAX,
    STREAM_READY,
    BatchStream,
    DeliveryFailed,
    Lane,
    PeerLink,
    batch_bytes,
    envelope_bytes,
)
from node.ports import PeerMetrics, Roster, SnapshotSource
from node.storage import Storage
from node.tls import read
from proto import peer_pb2, peer_pb2_grpc, types_pb2

log = logging.getLogger(__name__)

# The largest engine message the codec allows, plus its envelope.
GRPC_MESSAGE_BYTES_MAX = MESSAGE_BYTES_MAX + 1024 * 1024
FORWARD_TIMEOUT_S = 10.0
FETCH_BLOCKS_MAX = 256
ACCEPTED_MAX = 2**32 - 1  # PeerAck.accepted is a uint32; a stream may live for months
FETCH_READ_BLOCKS_MAX = 64
FETCH_READ_BYTES_MAX = 16 * 1024 * 1024
RETRY_DELAY_MIN_S = 0.05
RETRY_DELAY_MAX_S = 1.0
_OPTIONS = [
    ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
    ("grpc.keepalive_time_ms", 10_000),
]
# gRPC's default reconnect backoff grows to 120 s: with it, a peer that is down for 75 s can go
# unredialed for up to 40 s after it is back. Validators are few and known, so redial at most a
# second apart, however long the outage.
RECONNECT_BACKOFF_MAX_MS = 1_000
_CHANNEL_OPTIONS = [
    *_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
]

Deliver = Callable[[str, Any], bool]


def _signed_bytes(from_node: str, payload: bytes) -> bytes:
    return from_node.encode() + b"\x00" + payload


def _read_blocks(storage: Storage, height: int, count: int) -> tuple[list[bytes], bool]:
    """Up to `count` stored blocks from `height` on (at least one if there is one, then no more
    than the byte bound), and whether the store ended before them."""
    raws: list[bytes] = []
    size = 0
    for h in range(height, height + count):
        raw = storage.get_block_raw(h)
        if raw is None:
            return raws, True
        raws.append(raw)
        size += len(raw)
        if size >= FETCH_READ_BYTES_MAX:
            break
    return raws, False


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


class SnapshotServing:
    """The `Peer` methods that serve state snapshots to any node the CA certified."""

    transport: PeerTransportGrpc

    async def ListSnapshots(
        self, request: peer_pb2.ListSnapshotsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peer_pb2.ListSnapshotsResponse:
        source = self.transport.snapshots
        if source is None:
            return peer_pb2.ListSnapshotsResponse()
        return peer_pb2.ListSnapshotsResponse(snapshots=source.signed_manifests())

    async def FetchSnapshotChunk(
        self,
        request: peer_pb2.FetchSnapshotChunkRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> peer_pb2.SnapshotChunk:
        source = self.transport.snapshots
        data = None
        if source is not None:
            data = await asyncio.to_thread(source.chunk, request.height, request.index)
        if data is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no chunk {request.index} of a snapshot at height {request.height} here",
            )
        return peer_pb2.SnapshotChunk(data=data)


class PeerService(SnapshotServing, peer_pb2_grpc.PeerServicer):
    def __init__(self, transport: PeerTransportGrpc) -> None:
        self.transport = transport

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
        names = context.auth_context().get("x509_common_name") or []
        return names[0].decode() if names else None

    async def _refuse_unless_peer(
        self, context: grpc.aio.ServicerContext[Any, Any], caller: str | None,
        batch: peer_pb2.PeerBatch
    ) -> None:
        # Checked per batch: a validator voted out while its stream is open is heard no more.
        if caller is None or caller != batch.from_node or not self.transport.is_peer(caller):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a validator of this chain")

    async def Deliver(
        self, request: peer_pb2.PeerBatch, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peer_pb2.PeerAck:
        await self._refuse_unless_peer(context, self._caller(context), request)
        accepted = await self.transport.accept(request)
        return peer_pb2.PeerAck(accepted=accepted)

    async def DeliverStream(
        self, request_iterator: AsyncIterator[peer_pb2.PeerBatch],
        context: grpc.aio.ServicerContext[Any, Any]
    ) -> peer_pb2.PeerAck:
        caller = self._caller(context)
        if caller is None or not self.transport.is_peer(caller):  # refused before it is ready,
            await context.abort(  # so the sender backs off instead of reopening at once
                grpc.StatusCode.PERMISSION_DENIED, "not a validator of this chain")
        await context.send_initial_metadata((STREAM_READY,))  # see BatchStream._open
        accepted = 0
        async for request in request_iterator:
            await self._refuse_unless_peer(context, caller, request)
            accepted += await self.transport.accept(request)
        return peer_pb2.PeerAck(accepted=min(accepted, ACCEPTED_MAX))

    async def Forward(
        self, request: peer_pb2.ForwardRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> peer_pb2.ForwardResponse:
        caller = self._caller(context)
        if caller is None:  # mutual TLS let it in, so the CA certified it: a validator or not
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no node name in certificate")
        assert caller is not None
        try:
            admitted = await self.transport.admit_forwarded(list(request.txs), caller)
        except AdmissionError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.status), exc.message)
        return peer_pb2.ForwardResponse(admitted=admitted)

    async def FetchBlocks(
        self, request: peer_pb2.FetchBlocksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        # Observers (certified by the consortium CA, not validators) follow the chain this way.
        if self._caller(context) is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no node name in certificate")
        storage = self.transport.storage
        count = min(request.max_blocks or FETCH_BLOCKS_MAX, FETCH_BLOCKS_MAX)
        height = max(request.from_height, 1)
        end = height + count
        while height < end:
            # Several blocks per worker-thread hop (bounded by bytes), not one hop per block.
            raws, at_top = await asyncio.to_thread(
                _read_blocks, storage, height, min(FETCH_READ_BLOCKS_MAX, end - height)
            )
            for raw in raws:
                block = types_pb2.CommittedBlock()
                block.ParseFromString(raw)
                yield block
            if at_top:
                return
            height += len(raws)


class PeerTransportGrpc:
    """The node's `PeerTransport`; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        genesis: Genesis,
        tls: TlsFiles,
        storage: Storage,
        signer: Account,
        *,
        sign_messages: bool,
        deliver: Deliver,
        admission: Admission,
        is_leader: Callable[[], bool],
        roster: Roster,
        snapshots: SnapshotSource | None = None,
        metrics: PeerMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.genesis = genesis
        self.storage = storage
        self.signer = signer
        self.sign_messages = sign_messages
        self.deliver = deliver
        self.admission = admission
        self.is_leader = is_leader
        self.roster = roster
        self.snapshots = snapshots  # None: this node serves no state snapshots
        self.metrics = metrics  # bytes sent and received per peer
        self._ca = read(tls.ca_cert)
        self._cert = read(tls.cert)
        self._key = read(tls.key)
        self._peer_addrs = {
            v.node_id: v.peer_addr for v in genesis.validators if v.node_id != node_id
        }
        self._links: dict[str, PeerLink] = {}
        self._creds: grpc.ChannelCredentials | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._verify_pool = ThreadPoolExecutor(2, thread_name_prefix="peer-verify")
        self._server: grpc.aio.Server | None = None

    def is_peer(self, node_id: str) -> bool:
        """Whether `node_id`'s consensus messages go to the engine now."""
        return node_id != self.node_id and node_id in self.roster.voters()

    @property
    def peer_ids(self) -> list[str]:
        """Every other validator, in the order `broadcast` sends in."""
        return list(self._peer_addrs)

    def set_peers(self, peers: dict[str, str]) -> None:
        """The validators to keep links to (node id -> peer address), this node left out:
        links to new ones are opened, links to those no longer named are closed."""
        peers = {peer: addr for peer, addr in peers.items() if peer != self.node_id}
        if peers == self._peer_addrs:
            return
        added = sorted(set(peers) - set(self._peer_addrs))
        removed = sorted(set(self._peer_addrs) - set(peers))
        moved = sorted(
            p for p in peers if p in self._peer_addrs and peers[p] != self._peer_addrs[p]
        )
        self._peer_addrs = dict(peers)
        if self._creds is None:  # not started: `start` opens the links
            return
        for peer in (*removed, *moved):
            self._close_link(peer)
        for peer in (*added, *moved):
            self._open_link(peer, peers[peer])
        log.info("peer links: added %s, dropped %s, moved %s", added, removed, moved)

    async def start(self, listen_addr: str) -> None:
        server = grpc.aio.server(options=_OPTIONS)
        peer_pb2_grpc.add_PeerServicer_to_server(PeerService(self), server)
        creds = grpc.ssl_server_credentials(
            [(self._key, self._cert)], root_certificates=self._ca, require_client_auth=True
        )
        try:
            server.add_secure_port(listen_addr, creds)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for peers on {listen_addr}: {exc}") from exc
        await server.start()
        self._server = server
        self._creds = grpc.ssl_channel_credentials(self._ca, self._key, self._cert)
        for peer, addr in self._peer_addrs.items():
            self._open_link(peer, addr)
        log.info("peer transport on %s (mutual TLS) to %s", listen_addr, sorted(self._links))

    def _open_link(self, peer: str, addr: str) -> None:
        assert self._creds is not None
        options = [*_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer)]
        link = PeerLink(peer, grpc.aio.secure_channel(addr, self._creds, options=options))
        for lane in (link.control, link.bulk):
            task = asyncio.create_task(self._pump(link, lane), name=f"peer-{peer}-{lane.name}")
            task.add_done_callback(_log_crash)
            link.tasks.append(task)
        self._links[peer] = link

    def _close_link(self, peer: str) -> None:
        link = self._links.pop(peer, None)
        if link is None:
            return
        for task in link.tasks:
            task.cancel()
        # Closing waits for calls in flight; nothing needs to wait for that (the set keeps a
        # reference until it is done, or the task could be collected half-way).
        closing = asyncio.get_running_loop().create_task(link.channel.close(), name=f"close-{peer}")
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def stop(self) -> None:
        tasks = [task for link in self._links.values() for task in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(grace=0.5)
        for link in self._links.values():
            await link.channel.close()
        self._verify_pool.shutdown(wait=False, cancel_futures=True)

    # --- outbound ---------------------------------------------------------------------------

    def send(self, to: str, msg: Any) -> None:
        link = self._links.get(to)
        if link is None:
            return
        envelope = self._encoded(msg)
        if envelope is not None:
            self._enqueue(link, msg, envelope)

    def broadcast(self, msg: Any) -> None:
        envelope = self._encoded(msg)  # encoded and signed once for every peer
        if envelope is not None:
            for link in self._links.values():
                self._enqueue(link, msg, envelope)

    def _encoded(self, msg: Any) -> bytes | None:
        try:
            return self._envelope(msg)
        except CodecError as exc:
            log.error("cannot encode %s: %s", type(msg).__name__, exc)
            return None

    @staticmethod
    def _enqueue(link: PeerLink, msg: Any, envelope: bytes) -> None:
        lane = link.lane_for(msg, envelope)
        if not lane.put(envelope) and lane.dropped % 1000 == 1:
            log.warning(
                "%s queue to %s is full (%d messages, %d bytes); dropped %d messages",
                lane.name,
                link.peer_id,
                len(lane),
                lane.queued_bytes,
                lane.dropped,
            )

    def _envelope(self, msg: Any) -> bytes:
        payload = encode_message(msg)
        signature = self.signer.sign(_signed_bytes(self.node_id, payload)) if (
            self.sign_messages
        ) else b""
        return envelope_bytes(self.node_id, payload, signature)

    async def _pump(self, link: PeerLink, lane: Lane) -> None:
        stream = BatchStream(link.channel, link.peer_id, lane.name)
        delay = RETRY_DELAY_MIN_S
        try:
            while True:
                envelopes = await lane.next_batch(BATCH_MESSAGES_MAX, BATCH_BYTES_MAX)
                batch = batch_bytes(self.node_id, envelopes)
                try:
                    await stream.send(batch)
                except DeliveryFailed as exc:
                    log.debug("deliver to %s failed: %s", link.peer_id, exc.code)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_DELAY_MAX_S)
                    continue
                if self.metrics is not None:
                    self.metrics.sent(link.peer_id, len(batch))
                delay = RETRY_DELAY_MIN_S
        finally:
            stream.close()

    async def forward(self, to: str, txs: list[types_pb2.SignedTx]) -> None:
        link = self._links.get(to)
        if link is None:
            raise AdmissionError("UNAVAILABLE", f"the leader {to} is not a known validator")
        try:
            await link.stub.Forward(
                peer_pb2.ForwardRequest(from_node=self.node_id, txs=txs), timeout=FORWARD_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise AdmissionError(
                    "UNAVAILABLE", f"the leader {to} cannot be reached; retry in a moment"
                ) from None
            raise AdmissionError(code.name, exc.details() or code.name) from None

    async def fetch_blocks(
        self, peer: str, from_height: int
    ) -> AsyncIterator[types_pb2.CommittedBlock]:
        link = self._links.get(peer)
        if link is None:
            raise ConnectionError(f"{peer} is not a validator this node links to")
        height = from_height
        while True:
            got = 0
            call = link.stub.FetchBlocks(
                peer_pb2.FetchBlocksRequest(from_height=height, max_blocks=FETCH_BLOCKS_MAX),
                timeout=60,
            )
            async for block in call:
                got += 1
                height = block.block.header.height + 1
                yield block
            if got < FETCH_BLOCKS_MAX:
                return

    # --- inbound ----------------------------------------------------------------------------

    def link_states(self) -> dict[str, bool]:
        """Each peer link, and whether its channel is connected now."""
        return {peer: link.channel.get_state(try_to_connect=False)
                == grpc.ChannelConnectivity.READY for peer, link in self._links.items()}

    async def accept(self, batch: peer_pb2.PeerBatch) -> int:
        if self.metrics is not None:
            self.metrics.received(batch.from_node, batch.ByteSize())
        envelopes = [e for e in batch.envelopes if e.from_node == batch.from_node]
        if self.sign_messages:
            key = self.roster.public_key(batch.from_node)
            if key is None:
                return 0
            loop = asyncio.get_running_loop()
            oks = await loop.run_in_executor(
                self._verify_pool,
                lambda: [
                    verify_signature(key, e.signature, _signed_bytes(e.from_node, e.payload))
                    for e in envelopes
                ],
            )
            bad = len(envelopes) - sum(oks)
            if bad:
                log.warning("dropped %d badly signed messages from %s", bad, batch.from_node)
            envelopes = [e for e, ok in zip(envelopes, oks, strict=True) if ok]
        accepted = 0
        for envelope in envelopes:
            try:
                msg = decode_message(envelope.payload)
            except CodecError as exc:
                log.warning("undecodable message from %s: %s", batch.from_node, exc)
                continue
            if not self.deliver(batch.from_node, msg):
                break  # inbox full: the rest is dropped, the engine retransmits
            accepted += 1
        return accepted

    async def admit_forwarded(self, txs: list[types_pb2.SignedTx], caller: str) -> int:
        if not self.is_leader():
            raise AdmissionError("UNAVAILABLE", f"{self.node_id} is not the leader now; retry")
        # Under Raft (crash faults) a forwarding validator, authenticated by mutual TLS, verified
        # every signature at its own admission: checking them again here would double the
        # cluster's costliest work. A Byzantine engine (PBFT) trusts no peer's checks, and no
        # engine trusts a node that is not a voting validator (an observer, a removed one).
        trusted = not self.sign_messages and caller in self.roster.voters()
        return len(await self.admission.admit(txs, signatures_checked=trusted))
