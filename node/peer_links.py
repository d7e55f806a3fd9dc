"""Outbound peer links: a bounded queue per peer and lane, and the stream that carries its batches.

Each peer link has two lanes, control and bulk (messages carrying blocks), each drained in
batches by its own task, so one slow or dead peer never blocks the engine and heartbeats never
wait behind blocks. A lane's batches go to the peer on one long-lived `DeliverStream` call
(`BatchStream`): a unary call per batch costs both ends about five times the CPU of a message on
an open stream (call setup, a server handler task, HTTP/2 headers; measured with grpc.aio over
loopback: ~650 against ~120 µs per batch), and a cluster sends a few such batches per block per
peer. A batch lost with a broken stream is the engine's to retransmit, as a failed unary call's
always was.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import grpc

from consensus.pbft_messages import PrePrepare
from consensus.raft_messages import AppendEntries, InstallSnapshot
from proto import peer_pb2, peer_pb2_grpc

log = logging.getLogger(__name__)

PEER_QUEUE_MESSAGES_MAX = 20_000
# Also bounded by bytes: a PBFT pre-prepare (and its retransmissions) carries a whole block, so
# 20,000 queued messages to a slow peer could be gigabytes (without this bound a 5-minute PBFT
# overload run takes a node past 1.8 GB).
PEER_QUEUE_BYTES_MAX = 64 * 1024 * 1024
# Messages that carry log entries or blocks go on a bulk lane of their own, sent by its own
# task: heartbeats, votes and acknowledgements never wait behind tens of megabytes of blocks to
# a catching-up peer (which would otherwise time out and call elections while being fed).
# Raft appends all take the bulk lane, whatever their size: an empty append
# overtaking a full one would be rejected and knock the follower back to probing. Any other
# message over CONTROL_MESSAGE_BYTES_MAX also goes bulk; the engines tolerate reordering
# between the lanes (the simulator reorders freely).
BULK_MESSAGE_TYPES: tuple[type, ...] = (AppendEntries, InstallSnapshot, PrePrepare)
CONTROL_MESSAGE_BYTES_MAX = 64 * 1024
CONTROL_QUEUE_BYTES_MAX = 16 * 1024 * 1024
BATCH_MESSAGES_MAX = 256
# A batch never exceeds this (one message alone may: it is sent by itself, and genesis keeps a
# block, so every message, well under the gRPC message limit).
BATCH_BYTES_MAX = 32 * 1024 * 1024
# A batch the peer has not taken within this long (its stream's flow-control window stays full:
# the peer is stalled or unreachable) fails; the stream is dropped and a new one opened.
DELIVER_TIMEOUT_S = 5.0
# A peer of an older version answers DeliverStream UNIMPLEMENTED: batches to it go by unary
# Deliver, and the stream is tried again this often (the peer may have been upgraded).
STREAM_RETRY_S = 60.0
# What a DeliverStream handler sends as initial metadata before it reads (`BatchStream._open`).
STREAM_READY = ("scf-stream", "ready")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, value: bytes) -> tuple[bytes, bytes, bytes]:
    return bytes((tag,)), _varint(len(value)), value


def envelope_bytes(from_node: str, payload: bytes, signature: bytes) -> bytes:
    """A serialized `PeerEnvelope`, the same bytes protobuf writes, with one copy of payload.

    An envelope can carry a block (a Raft append, a PBFT pre-prepare): building the message and
    then serializing it, and again for the batch of each peer, copied it four times per peer;
    the node maps each buffer of 128 KB or more afresh (node/malloc_tuning.py), so each copy
    also costs its page faults.
    """
    parts: list[bytes] = []
    for tag, value in ((0x0A, from_node.encode()), (0x12, payload), (0x1A, signature)):
        if value:  # proto3 leaves an empty field out
            parts += _field(tag, value)
    return b"".join(parts)


def batch_bytes(from_node: str, envelopes: list[bytes]) -> bytes:
    """A serialized `PeerBatch` of serialized envelopes (`envelope_bytes`)."""
    parts = list(_field(0x0A, from_node.encode())) if from_node else []
    for envelope in envelopes:
        parts += _field(0x12, envelope)
    return b"".join(parts)


class Lane:
    """A bounded FIFO of serialized envelopes to one peer, taken in batches bounded by count
    and bytes."""

    def __init__(self, name: str, messages_max: int, bytes_max: int) -> None:
        self.name = name
        self.messages_max = messages_max
        self.bytes_max = bytes_max
        self._items: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self.queued_bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, envelope: bytes) -> bool:
        size = len(envelope)
        if len(self._items) >= self.messages_max or self.queued_bytes + size > self.bytes_max:
            self.dropped += 1
            return False
        self._items.append(envelope)
        self.queued_bytes += size
        self._ready.set()
        return True

    async def next_batch(self, messages_max: int, bytes_max: int) -> list[bytes]:
        """The oldest envelopes, at least one, within both bounds (one alone may exceed
        `bytes_max`)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        batch = [items.popleft()]
        size = len(batch[0])
        while items and len(batch) < messages_max and size + len(items[0]) <= bytes_max:
            envelope = items.popleft()
            batch.append(envelope)
            size += len(envelope)
        self.queued_bytes -= size
        return batch


class DeliveryFailed(Exception):
    """A batch did not reach the peer; `code` names why (a gRPC status or TIMEOUT)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class BatchStream:
    """One lane's batches (serialized, `batch_bytes`) to one peer, written to a `DeliverStream`
    call kept open between them.

    `send` returns once gRPC has taken the batch (it does not wait for the peer's answer, so
    batches pipeline over a slow link); a broken, stalled or ended stream raises
    `DeliveryFailed` (the batch is dropped; the engine retransmits what matters) and the next
    `send` opens a new one.
    """

    def __init__(self, channel: grpc.aio.Channel, peer_id: str, lane: str) -> None:
        # Batches go as the bytes batch_bytes made: no serializer, no copy.
        self._stream_call = channel.stream_unary(
            "/scfchain.Peer/DeliverStream", response_deserializer=peer_pb2.PeerAck.FromString)
        self._unary_call = channel.unary_unary(
            "/scfchain.Peer/Deliver", response_deserializer=peer_pb2.PeerAck.FromString)
        self._where = f"{lane} lane to {peer_id}"
        self._call: Any = None  # the open grpc.aio StreamUnaryCall, if any
        self._unary_until = 0.0  # loop time before which this peer gets unary Deliver calls

    async def send(self, batch: bytes) -> None:
        if asyncio.get_running_loop().time() < self._unary_until:
            await self._unary(batch)
            return
        call = self._call
        if call is not None and call.done():  # ended since the last write: a peer that restarted
            self._call = None  # or now refuses us; failing lets the caller back off first
            raise DeliveryFailed((await call.code()).name)
        if call is None:
            call = await self._open()
            if call is None:
                await self._fall_back(batch)
                return
        try:
            async with asyncio.timeout(DELIVER_TIMEOUT_S):
                await call.write(batch)
            return
        except TimeoutError:
            code = "TIMEOUT"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        except asyncio.InvalidStateError:  # the call ended before this write: its status says why
            code = (await call.code()).name
        self.close()
        raise DeliveryFailed(code)

    async def _open(self) -> Any:
        """A new stream once the peer has answered it, or None if the peer has no such method.

        The peer's handler first sends initial metadata naming the stream (`STREAM_READY`);
        waiting for it costs a round trip per stream and tells an older peer (UNIMPLEMENTED)
        apart from a broken link, which a write racing the peer's answer cannot (it fails
        INTERNAL either way).
        """
        call = self._stream_call()
        try:
            async with asyncio.timeout(DELIVER_TIMEOUT_S):
                metadata = await call.initial_metadata()
                if STREAM_READY in tuple(metadata or ()):
                    self._call = call
                    return call
                code = await call.code()  # no marker: the call has ended or is ending
        except TimeoutError:
            call.cancel()
            raise DeliveryFailed("TIMEOUT") from None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return None
        raise DeliveryFailed(code.name)

    async def _fall_back(self, batch: bytes) -> None:
        log.info("%s: the peer has no DeliverStream (an older version); unary Deliver for %.0f s",
                 self._where, STREAM_RETRY_S)
        self._unary_until = asyncio.get_running_loop().time() + STREAM_RETRY_S
        await self._unary(batch)

    async def _unary(self, batch: bytes) -> None:
        try:
            await self._unary_call(batch, timeout=DELIVER_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise DeliveryFailed(exc.code().name) from None

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


class PeerLink:
    """One outbound channel and its two lanes of engine messages (control and bulk).

    Made inside the running event loop (`PeerTransportGrpc.start`): grpc.aio channels bind to
    the loop they are created in.
    """

    def __init__(self, peer_id: str, channel: grpc.aio.Channel) -> None:
        self.peer_id = peer_id
        self.channel = channel
        self.stub = peer_pb2_grpc.PeerStub(channel)
        self.control = Lane("control", PEER_QUEUE_MESSAGES_MAX, CONTROL_QUEUE_BYTES_MAX)
        self.bulk = Lane("bulk", PEER_QUEUE_MESSAGES_MAX, PEER_QUEUE_BYTES_MAX)
        self.tasks: list[asyncio.Task[None]] = []

    def lane_for(self, msg: Any, envelope: bytes) -> Lane:
        if isinstance(msg, BULK_MESSAGE_TYPES) or len(envelope) > (
            CONTROL_MESSAGE_BYTES_MAX
        ):
            return self.bulk
        return self.control
