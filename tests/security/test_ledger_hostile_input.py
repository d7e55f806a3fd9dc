"""Hostile input at the `Ledger` API of a live solo node (one process for the module): what
is refused at admission. Each case sends something malformed, forged, oversized or replayed and
checks the answer is a defined gRPC status, the node keeps serving (its health check answers)
and the ledger state is unchanged (the app hash). Execution and reads: test_ledger_hostile_reads.py.
"""

from __future__ import annotations

import hashlib
import json
import os

import grpc
import pytest

from node.client.identity import Account
from node.client.ledger import LedgerError
from proto import ledger_pb2, types_pb2
from tests.security.conftest import LiveNode
from tests.security.hostile import (
    ED25519_L,
    SMALL_ORDER_KEYS,
    assert_serving,
    body,
    committed,
    refused,
    signed,
    snapshot,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


# --- malformed protobuf at the wire --------------------------------------------------------


RAW_SUBMIT_CASES = {
    # An empty message is a valid, empty SubmitRequest: refused for carrying no txs.
    "empty": (b"", {grpc.StatusCode.INVALID_ARGUMENT}),
    # A field header that promises 100 bytes and ends: cannot be parsed.
    "truncated": (b"\x0a\x64\x0a\x10abc", {grpc.StatusCode.INVALID_ARGUMENT}),
    "garbage": (bytes(range(256)) * 4, {grpc.StatusCode.INVALID_ARGUMENT}),
    "wrong_wire_type": (b"\x0d\xff\xff\xff\xff", {grpc.StatusCode.INVALID_ARGUMENT}),
    # A SignedTx whose body is not a TxBody.
    "tx_body_garbage": (ledger_pb2.SubmitRequest(txs=[types_pb2.SignedTx(
        body=b"\xff" * 40, signature=b"s" * 64)]).SerializeToString(),
                        {grpc.StatusCode.INVALID_ARGUMENT}),
    "tx_body_truncated": (None, {grpc.StatusCode.INVALID_ARGUMENT}),
}


@pytest.mark.parametrize("case", sorted(RAW_SUBMIT_CASES))
async def test_malformed_protobuf_is_refused_and_node_keeps_serving(live_node, case) -> None:
    raw, statuses = RAW_SUBMIT_CASES[case]
    if raw is None:  # a real signed body cut in half
        core = live_node.net.account("core")
        good = body(live_node.net.chain_id, core.public_key, args=b'{"amount":1}')
        raw = ledger_pb2.SubmitRequest(
            txs=[types_pb2.SignedTx(body=good[: len(good) // 2], signature=core.sign(good))]
        ).SerializeToString()
    before = await snapshot(live_node)
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        call = channel.unary_unary("/scfchain.Ledger/Submit")  # bytes in, bytes out
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(raw, timeout=10)
    assert caught.value.code() in statuses, (case, caught.value.code(), caught.value.details())
    await assert_serving(live_node)
    assert await snapshot(live_node) == before


@pytest.mark.parametrize("method", ["GetTx", "Query", "GetBlock", "GetChainInfo", "Subscribe"])
async def test_garbage_bytes_on_every_method_are_refused(live_node, method) -> None:
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        path = f"/scfchain.Ledger/{method}"
        call = (channel.unary_stream(path) if method == "Subscribe"
                else channel.unary_unary(path))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            result = call(b"\xff\xff\xff\xff\x0f garbage", timeout=10)
            if method == "Subscribe":
                async for _ in result:
                    pass
            else:
                await result
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert "not a valid protobuf" in (caught.value.details() or "")
        # Unknown methods and services are answered, not crashed on.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary("/scfchain.Ledger/NoSuchMethod")(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await assert_serving(live_node)


# --- sizes -----------------------------------------------------------------------------------


async def test_oversized_message_batch_and_tx_are_refused(live_node) -> None:
    net, core, s1 = live_node.net, live_node.net.account("core"), live_node.net.account("supplier1")
    before = await snapshot(live_node)
    # A gRPC message over request_bytes_max: refused by the transport before parsing.
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        call = channel.unary_unary("/scfchain.Ledger/Submit")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\x0a\x00" * 1_100_000, timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # More txs than request_txs_max in one batch (each tx valid).
    many = [core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id, "amount": 1})
            for _ in range(1_001)]
    assert "at most 1000" in await refused(live_node, many, "RESOURCE_EXHAUSTED")
    # One tx over tx_bytes_max.
    fat = core.build_tx(net.chain_id, "cash", "transfer",
                        {"to": s1.account_id, "amount": 1, "memo": "x" * 70_000})
    await refused(live_node, [fat], "RESOURCE_EXHAUSTED")
    # An empty batch.
    await refused(live_node, [], "INVALID_ARGUMENT")
    await assert_serving(live_node)
    assert await snapshot(live_node) == before


# --- signatures and keys ---------------------------------------------------------------------


def _signature_cases(node: LiveNode) -> dict[str, types_pb2.SignedTx]:
    net, core, bank = node.net, node.net.account("core"), node.net.account("bank")
    args = json.dumps({"to": net.account("supplier1").account_id, "amount": 5}).encode()
    raw = body(net.chain_id, core.public_key, args=args)
    good_sig = core.sign(raw)
    s = int.from_bytes(good_sig[32:], "little")
    malleated = good_sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    flipped = bytearray(good_sig)
    flipped[10] ^= 0x01
    return {
        "missing": types_pb2.SignedTx(body=raw),
        "short": types_pb2.SignedTx(body=raw, signature=good_sig[:63]),
        "long": types_pb2.SignedTx(body=raw, signature=good_sig + b"\x00"),
        "zero": types_pb2.SignedTx(body=raw, signature=bytes(64)),
        "random": types_pb2.SignedTx(body=raw, signature=os.urandom(64)),
        "bit_flipped": types_pb2.SignedTx(body=raw, signature=bytes(flipped)),
        "over_other_bytes": types_pb2.SignedTx(body=raw, signature=core.sign(raw + b"\x00")),
        "by_another_member": types_pb2.SignedTx(body=raw, signature=bank.sign(raw)),
        "malleated_s_plus_l": types_pb2.SignedTx(body=raw, signature=malleated),
    }


@pytest.mark.parametrize("case", ["missing", "short", "long", "zero", "random", "bit_flipped",
                                  "over_other_bytes", "by_another_member",
                                  "malleated_s_plus_l"])
async def test_bad_signatures_are_refused(live_node, case) -> None:
    tx = _signature_cases(live_node)[case]
    before = await snapshot(live_node)
    message = await refused(live_node, [tx], "INVALID_ARGUMENT")
    assert "signature" in message
    await assert_serving(live_node)
    assert await snapshot(live_node) == before


async def test_a_bad_signature_refuses_the_whole_batch(live_node) -> None:
    net, core, s1 = live_node.net, live_node.net.account("core"), live_node.net.account("supplier1")
    good = core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id, "amount": 1})
    bad = _signature_cases(live_node)["random"]
    before = await snapshot(live_node)
    assert "tx 1" in await refused(live_node, [good, bad], "INVALID_ARGUMENT")
    assert await snapshot(live_node) == before
    # The good tx was not half-admitted: it is unknown and can still be submitted alone.
    async with live_node.client() as client:
        with pytest.raises(LedgerError) as caught:
            await client.get_tx(hashlib.sha256(good.body).digest())
        assert caught.value.status == "NOT_FOUND" and "no such tx" in caught.value.message
        (receipt,) = await client.submit_and_wait([good], timeout_ms=10_000)
    assert receipt.ok


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS, ids=lambda k: k.hex()[:8] + k.hex()[-2:])
async def test_small_order_and_zero_public_keys_are_refused(live_node, key) -> None:
    raw = body(live_node.net.chain_id, key, args=b'{"amount":1}')
    # With a small-order key, the all-zero-ish "signature" R=identity, S=0 verifies in lax
    # implementations for every message: exactly what the key check must stop.
    forged = b"\x01" + bytes(31) + bytes(32)
    message = await refused(live_node, [types_pb2.SignedTx(body=raw, signature=forged)],
                            "INVALID_ARGUMENT")
    assert "Ed25519 key" in message
    await assert_serving(live_node)


@pytest.mark.parametrize("sender", [b"", b"\x07" * 31, b"\x07" * 33, b"\x07" * 1_000])
async def test_sender_keys_of_the_wrong_size_are_refused(live_node, sender) -> None:
    raw = body(live_node.net.chain_id, sender)
    await refused(live_node, [types_pb2.SignedTx(body=raw, signature=bytes(64))],
                  "INVALID_ARGUMENT")


async def test_unknown_sender_is_refused_before_consensus(live_node) -> None:
    stranger = Account.generate()
    tx = stranger.build_tx(live_node.net.chain_id, "cash", "transfer",
                           {"to": live_node.net.account("core").account_id, "amount": 1})
    before = await snapshot(live_node)
    assert "not a consortium member" in await refused(live_node, [tx], "PERMISSION_DENIED")
    assert await snapshot(live_node) == before


@pytest.mark.parametrize("chain_id", ["", "sec-solo ", "SEC-SOLO", "sec\u2010solo", "other-chain"])
async def test_wrong_chain_id_is_refused(live_node, chain_id) -> None:
    core = live_node.net.account("core")
    tx = core.build_tx(chain_id, "cash", "transfer",
                       {"to": live_node.net.account("supplier1").account_id, "amount": 1})
    assert "for chain" in await refused(live_node, [tx], "INVALID_ARGUMENT")


@pytest.mark.parametrize("contract,method,says", [
    ("", "transfer", "the contract name is empty"),
    ("cash", "", "the method name is empty"),
    ("c" * 65, "transfer", "the contract name is 65 characters long; at most 64"),
    ("cash", "m" * 65, "the method name is 65 characters long; at most 64"),
])
async def test_missing_or_overlong_contract_and_method_are_refused(live_node, contract,
                                                                   method, says) -> None:
    core = live_node.net.account("core")
    tx = signed(core, body(live_node.net.chain_id, core.public_key, contract=contract,
                           method=method))
    assert says in await refused(live_node, [tx], "INVALID_ARGUMENT")


# --- replays and duplicates ------------------------------------------------------------------


async def test_duplicates_in_a_batch_and_replays_are_refused_and_run_once(live_node) -> None:
    net, core, s1 = live_node.net, live_node.net.account("core"), live_node.net.account("supplier1")
    tx = core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id, "amount": 7})
    before = await snapshot(live_node)
    assert "repeats" in await refused(live_node, [tx, tx], "ALREADY_EXISTS")
    assert await snapshot(live_node) == before
    async with live_node.client() as client:
        (receipt,) = await client.submit_and_wait([tx], timeout_ms=10_000)
        assert receipt.ok
        # Replayed after it committed, alone or inside a batch of fresh txs.
        fresh = core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id,
                                                                 "amount": 1})
        for batch in ([tx], [fresh, tx]):
            with pytest.raises(LedgerError) as caught:
                await client.submit(batch)
            assert caught.value.status == "ALREADY_EXISTS"
        # Replayed while a copy is still pending: submit without waiting, then again at once.
        pending = core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id,
                                                                   "amount": 1})
        await client.submit([pending])
        with pytest.raises(LedgerError) as caught:
            await client.submit([pending])
        assert caught.value.status == "ALREADY_EXISTS"
        # The same body re-signed with a malleated signature is still the same tx id.
        sig = tx.signature
        s = int.from_bytes(sig[32:], "little")
        twin = types_pb2.SignedTx(body=tx.body,
                                  signature=sig[:32] + (s + ED25519_L).to_bytes(32, "little"))
        with pytest.raises(LedgerError) as caught:
            await client.submit([twin])
        assert caught.value.status in ("ALREADY_EXISTS", "INVALID_ARGUMENT")
        got = await client.get_tx(hashlib.sha256(tx.body).digest())
        assert got.receipt.status == types_pb2.SUCCESS
        assert (await committed(client, pending)).receipt.status == types_pb2.SUCCESS
    after = await snapshot(live_node)
    # 7 + 1 (the pending one); the fresh tx of the refused batch never ran.
    assert after["balances"]["supplier1"] == before["balances"]["supplier1"] + 8
