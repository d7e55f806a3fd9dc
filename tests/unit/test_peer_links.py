"""A lane's batches to a peer on one long-lived stream (`node/peer_links.BatchStream`).

The hand-written wire format of envelopes and batches is protobuf's own (by property). Against
real grpc.aio servers on loopback: batches arrive in order on one call; a peer of an
older version (no DeliverStream) gets them by unary Deliver; a restarted peer gets a new stream;
a peer that stops reading makes `send` fail within the deadline instead of hanging the lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import peer_links
from node.peer_links import BatchStream, DeliveryFailed, batch_bytes, envelope_bytes
from proto import peer_pb2, peer_pb2_grpc

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def batch(n: int, payload_bytes: int = 8) -> bytes:
    return batch_bytes("node1", [envelope_bytes("node1", n.to_bytes(4, "big")
                                                + bytes(payload_bytes), b"")])


def number(b: peer_pb2.PeerBatch) -> int:
    return int.from_bytes(b.envelopes[0].payload[:4], "big")


class Peer(peer_pb2_grpc.PeerServicer):
    """Records what arrives and by which method; `streams` False plays an older version (a
    server without DeliverStream)."""

    def __init__(self, *, streams: bool = True, stall: bool = False,
                 refuse_after: int | None = None) -> None:
        self.streams = streams
        self.stall = stall
        self.refuse_after = refuse_after  # batches taken on a stream before PERMISSION_DENIED
        self.got: list[tuple[str, int]] = []
        self.stream_calls = 0

    async def Deliver(self, request: peer_pb2.PeerBatch, context: Any) -> peer_pb2.PeerAck:
        self.got.append(("unary", number(request)))
        return peer_pb2.PeerAck(accepted=1)

    async def DeliverStream(self, request_iterator: AsyncIterator[peer_pb2.PeerBatch],
                            context: Any) -> peer_pb2.PeerAck:
        self.stream_calls += 1
        if self.refuse_after == 0:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a validator")
        await context.send_initial_metadata((peer_links.STREAM_READY,))
        if self.stall:  # never reads: the stream's flow-control window fills
            await asyncio.sleep(3600)
        count = 0
        async for request in request_iterator:
            if self.refuse_after is not None and count >= self.refuse_after:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a validator")
            self.got.append(("stream", number(request)))
            count += 1
        return peer_pb2.PeerAck(accepted=count)


async def serve(peer: Peer, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    if peer.streams:
        peer_pb2_grpc.add_PeerServicer_to_server(peer, server)
    else:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("scfchain.Peer", {
            "Deliver": grpc.unary_unary_rpc_method_handler(
                peer.Deliver, request_deserializer=peer_pb2.PeerBatch.FromString,
                response_serializer=peer_pb2.PeerAck.SerializeToString)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


@contextlib.asynccontextmanager
async def stream_to(peer: Peer, lane: str = "bulk") -> AsyncIterator[BatchStream]:
    """A BatchStream to `peer`, served on a free port for the block's life."""
    port = free_port()
    server = await serve(peer, port)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = BatchStream(channel, "node2", lane)
            try:
                yield stream
            finally:
                stream.close()
    finally:
        await server.stop(0)


async def until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


texts = st.text(max_size=20)
blobs = st.binary(max_size=300)


@given(st.lists(st.tuples(texts, blobs, blobs), max_size=5), texts)
def test_envelopes_and_batches_are_protobufs_own_bytes(envelopes, from_node) -> None:
    messages = [peer_pb2.PeerEnvelope(from_node=f, payload=p, signature=s)
                for f, p, s in envelopes]
    raws = [envelope_bytes(f, p, s) for f, p, s in envelopes]
    assert raws == [m.SerializeToString() for m in messages]
    raw = batch_bytes(from_node, raws)
    expected = peer_pb2.PeerBatch(from_node=from_node, envelopes=messages)
    assert raw == expected.SerializeToString()
    assert peer_pb2.PeerBatch.FromString(raw) == expected


def test_a_block_sized_payload_gets_a_multi_byte_length() -> None:
    payload = bytes(range(256)) * 1200  # 307,200 bytes: a three-byte varint
    raw = envelope_bytes("node1", payload, b"s" * 64)
    (parsed,) = peer_pb2.PeerBatch.FromString(batch_bytes("node1", [raw])).envelopes
    assert parsed.payload == payload and parsed.signature == b"s" * 64
    assert raw[7:11] == b"\x12\x80\xe0\x12"  # tag 2, then 307,200 as a varint


async def test_batches_arrive_in_order_on_one_stream() -> None:
    peer = Peer()
    async with stream_to(peer, "control") as stream:
        for n in range(200):
            await stream.send(batch(n))
        await until(lambda: len(peer.got) == 200)
    assert peer.got == [("stream", n) for n in range(200)]
    assert peer.stream_calls == 1


async def test_a_peer_without_the_stream_gets_unary_deliver_calls() -> None:
    """An older peer answers UNIMPLEMENTED: every batch goes by Deliver, none is lost."""
    peer = Peer(streams=False)
    async with stream_to(peer, "bulk") as stream:
        for n in range(50):
            await stream.send(batch(n))
    assert peer.got == [("unary", n) for n in range(50)]


async def test_the_stream_is_tried_again_after_a_while(monkeypatch) -> None:
    """A peer upgraded (restarted with DeliverStream) since it answered UNIMPLEMENTED gets the
    stream again once STREAM_RETRY_S has passed."""
    monkeypatch.setattr(peer_links, "STREAM_RETRY_S", 0.2)
    port = free_port()
    old, new = Peer(streams=False), Peer()
    server = await serve(old, port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = BatchStream(channel, "node2", "bulk")
        for n in range(3):
            await stream.send(batch(n))
        await server.stop(0)
        server = await serve(new, port)
        await asyncio.sleep(0.3)
        sent = []
        for n in range(3, 60):
            try:
                await stream.send(batch(n))
                sent.append(n)
            except DeliveryFailed:  # the channel redials the restarted peer
                await asyncio.sleep(0.05)
        await until(lambda: [n for _, n in new.got] == sent)
        stream.close()
    await server.stop(0)
    assert old.got == [("unary", n) for n in range(3)]
    assert new.got == [("stream", n) for n in sent] and len(sent) > 20


async def test_a_restarted_peer_gets_a_new_stream() -> None:
    port = free_port()
    first = Peer()
    server = await serve(first, port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stream = BatchStream(channel, "node2", "control")
        for n in range(5):
            await stream.send(batch(n))
        await until(lambda: len(first.got) == 5)
        await server.stop(0)
        # The peer is down. gRPC may take a write or two into its buffers before the stream's
        # end reaches us; from the first failure on, every send fails (a new stream cannot
        # open), and none hangs.
        first_failure = None
        for n in range(5, 100):
            try:
                async with asyncio.timeout(peer_links.DELIVER_TIMEOUT_S + 1):
                    await stream.send(batch(n))
            except DeliveryFailed:
                first_failure = n
                break
            await asyncio.sleep(0.01)
        assert first_failure is not None, "sends to a stopped peer kept succeeding"
        for n in range(first_failure + 1, first_failure + 4):
            with pytest.raises(DeliveryFailed):
                async with asyncio.timeout(peer_links.DELIVER_TIMEOUT_S + 1):
                    await stream.send(batch(n))
        second = Peer()
        server = await serve(second, port)
        delivered = None
        for n in range(8, 200):
            try:
                await stream.send(batch(n))
            except DeliveryFailed:
                await asyncio.sleep(0.05)
                continue
            delivered = n
            if second.got:
                break
        await until(lambda: bool(second.got))
        stream.close()
    await server.stop(0)
    assert delivered is not None and second.stream_calls >= 1
    assert [how for how, _ in second.got] == ["stream"] * len(second.got)


async def test_a_peer_that_stops_reading_fails_the_send_within_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(peer_links, "DELIVER_TIMEOUT_S", 0.5)
    peer = Peer(stall=True)
    async with stream_to(peer, "bulk") as stream:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeliveryFailed) as caught:
            for n in range(1000):  # 1 MB each: far past any flow-control window
                await stream.send(batch(n, payload_bytes=1 << 20))
        elapsed = asyncio.get_running_loop().time() - started
    assert caught.value.code == "TIMEOUT"
    assert elapsed < 30


async def test_a_peer_that_refuses_us_fails_each_send_and_is_not_redialed_in_a_loop() -> None:
    """A peer that no longer counts us a validator refuses the stream: every send fails (so
    the lane backs off) with one stream opened per send at most."""
    peer = Peer(refuse_after=0)
    async with stream_to(peer, "control") as stream:
        codes = []
        for n in range(5):
            with pytest.raises(DeliveryFailed) as caught:
                await stream.send(batch(n))
            codes.append(caught.value.code)
    assert codes == ["PERMISSION_DENIED"] * 5
    assert peer.stream_calls == 5 and peer.got == []


async def test_a_stream_refused_midway_fails_the_next_send() -> None:
    peer = Peer(refuse_after=2)
    async with stream_to(peer, "bulk") as stream:
        for n in range(3):  # the third is refused, after gRPC took it
            await stream.send(batch(n))
        failed = None
        deadline = asyncio.get_running_loop().time() + 10
        while failed is None:  # once the refusal arrives, the next send fails
            assert asyncio.get_running_loop().time() < deadline, "no send failed"
            await asyncio.sleep(0.05)
            try:
                await stream.send(batch(3))
            except DeliveryFailed as exc:
                failed = exc
    assert failed.code == "PERMISSION_DENIED"
    assert peer.got == [("stream", 0), ("stream", 1)] and peer.stream_calls == 1
