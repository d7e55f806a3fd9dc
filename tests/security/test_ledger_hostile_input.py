"""Hostile input at the `Ledger` API of a live solo node (one process for the whole module).

Each case sends something malformed, forged, oversized, replayed or unauthorised and checks
three things: the answer is a defined gRPC status (admission) or a FAILED receipt with a stable
error code (execution); the node keeps serving (its health check answers); and the ledger state
is unchanged (app hash for refused submissions, balances and supply for failed receipts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client.identity import QUERY, SUBSCRIBE, Account, read_metadata
from node.client.ledger import LedgerClient, LedgerError
from proto import ledger_pb2, types_pb2
from tests.security.conftest import LiveNode
from tests.unit.test_client_messages import MISSING_RECORD_VIEWS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
T = TypeVar("T")

ED25519_L = 2**252 + 27742317777372353535851937790883648493
SMALL_ORDER_KEYS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("ec" + "ff" * 30 + "7f"),
    bytes.fromhex("ed" + "ff" * 30 + "7f"),
    bytes.fromhex("ee" + "ff" * 30 + "7f"),
    bytes.fromhex("ee" + "ff" * 30 + "ff"),  # the same point with the sign bit set
]


# --- helpers -------------------------------------------------------------------------------


def body(chain_id: str, sender: bytes, *, contract: str = "cash", method: str = "transfer",
         args: bytes = b"{}", nonce: int | None = None) -> bytes:
    return types_pb2.TxBody(
        chain_id=chain_id, sender=sender, contract=contract, method=method, args=args,
        nonce=int.from_bytes(os.urandom(8), "big") if nonce is None else nonce,
    ).SerializeToString()


def signed(account: Account, raw_body: bytes) -> types_pb2.SignedTx:
    return types_pb2.SignedTx(body=raw_body, signature=account.sign(raw_body))


async def snapshot(node: LiveNode) -> dict[str, Any]:
    """What must not move when input is refused: head, balances, supply, members."""
    async with node.client() as client:
        info = await client.chain_info()
        balances = {
            name: (await client.query("cash", "balance",
                                      {"account": node.net.account(name).account_id}))["balance"]
            for name in node.net.accounts
        }
        supply = await client.query("cash", "supply", {})
        members = await client.query("consortium", "members", {})
    return {"height": info.height, "app_hash": info.app_hash, "balances": balances,
            "supply": supply, "members": members}


async def assert_serving(node: LiveNode) -> None:
    async with node.client() as client:
        assert await client.healthy(timeout_s=5), "the node stopped answering its health check"
        await client.chain_info()
    assert node.proc.alive(), "the node process died"


async def refused(node: LiveNode, txs: list[types_pb2.SignedTx], status: str,
                  *, wait: bool = False) -> str:
    """Submit; expect the whole batch refused with `status`; return the node's message."""
    async with node.client() as client:
        with pytest.raises(LedgerError) as caught:
            await client.submit(txs, wait=wait, timeout_ms=5_000)
    assert caught.value.status == status, caught.value
    assert caught.value.message, "a refusal must say why"
    return caught.value.message


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str,
                     within_s: float = 10.0) -> T:
    """Polls `probe` until it returns something other than None; fails after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        found = await probe()
        if found is not None:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.02)


async def commit_outcome(client: LedgerClient, tx: types_pb2.SignedTx
                         ) -> ledger_pb2.GetTxResponse | str | None:
    """The tx's committed record, "unknown" if the node never took it, None while pending."""
    try:
        return await client.get_tx(hashlib.sha256(tx.body).digest())
    except LedgerError as exc:
        assert exc.status == "NOT_FOUND", exc
        return "unknown" if "no such tx" in exc.message else None


async def committed(client: LedgerClient, tx: types_pb2.SignedTx) -> ledger_pb2.GetTxResponse:
    """Waits until an admitted tx is committed; returns its record."""
    async def probe() -> ledger_pb2.GetTxResponse | None:
        found = await commit_outcome(client, tx)
        assert not isinstance(found, str), "the node does not know the tx"
        return found

    return await eventually(probe, "the admitted tx committed")


async def first_blocks_while_committing(node: LiveNode, streams: list[Any],
                                        within_s: float = 20.0) -> list[Any]:
    """The first block every stream delivers, committing a transfer until each has one.

    A stream from height 0 starts at the block after the head as of when the node registers it,
    which a client cannot see; committing until every stream has delivered a block shows each
    one registered (and holding a subscriber slot) without guessing how long that takes.
    """
    net, core = node.net, node.net.account("core")
    reads = [asyncio.ensure_future(stream.read()) for stream in streams]
    deadline = asyncio.get_running_loop().time() + within_s
    try:
        async with node.client() as client:
            while True:
                (receipt,) = await client.submit_and_wait([core.build_tx(
                    net.chain_id, "cash", "transfer",
                    {"to": net.account("supplier1").account_id, "amount": 1})])
                assert receipt.ok, receipt
                await asyncio.wait(reads, timeout=0.2)
                if all(read.done() for read in reads):
                    return [read.result() for read in reads]  # raises a refused stream's error
                failed = [read for read in reads if read.done() and read.exception()]
                if failed:
                    failed[0].result()
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{sum(not r.done() for r in reads)} streams had no block within {within_s}s"
                )
    finally:
        for read in reads:
            read.cancel()


async def read_to(stream: Any, height: int) -> Any:
    """Reads a stream on to the block at `height`, checking no height is skipped on the way."""
    while True:
        block = await stream.read()
        at = block.block.header.height
        if at >= height:
            assert at == height, (at, height)
            return block


def signed_subscribe(stub: Any, node: LiveNode, from_height: int = 0, **kwargs: Any) -> Any:
    """A raw Subscribe stream whose read is signed by the auditor (reads are signed)."""
    request = ledger_pb2.SubscribeRequest(from_height=from_height)
    metadata = read_metadata(node.net.account("auditor"), node.net.chain_id, SUBSCRIBE, request)
    return stub.Subscribe(request, metadata=metadata, **kwargs)


async def opened(stub: Any, node: LiveNode, from_height: int, within_s: float = 10.0) -> Any:
    """A Subscribe stream that delivered its first block, retrying while slots are full."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        stream = signed_subscribe(stub, node, from_height=from_height)
        try:
            await asyncio.wait_for(stream.read(), 20)
            return stream
        except grpc.aio.AioRpcError as exc:
            if (exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                    or asyncio.get_running_loop().time() > deadline):
                raise
        await asyncio.sleep(0.02)


async def failed_receipt(node: LiveNode, account: Account, contract: str, method: str,
                         args: bytes) -> types_pb2.Receipt:
    tx = signed(account, body(node.net.chain_id, account.public_key, contract=contract,
                              method=method, args=args))
    async with node.client() as client:
        response = await client.submit([tx], wait=True, timeout_ms=10_000)
    (receipt,) = response.receipts
    assert receipt.status == types_pb2.FAILED, receipt
    return receipt


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


# --- execution: failed receipts with stable codes --------------------------------------------


def _execution_cases(node: LiveNode) -> list[tuple[str, str, str, bytes, str]]:
    s1 = node.net.account("supplier1").account_id
    lookalike = s1[:10] + "\u0430" + s1[11:]  # Cyrillic a in place of a Latin letter/digit
    return [
        ("core", "nocontract", "transfer", b"{}", "UNKNOWN_CONTRACT"),
        ("core", "cash", "nomethod", b"{}", "UNKNOWN_METHOD"),
        ("core", "cash", "move", b"{}", "UNKNOWN_METHOD"),  # internal-only method
        ("core", "cash", "transfer", b"not json", "INVALID_ARGS"),
        ("core", "cash", "transfer", b"\xff\xfe{}", "INVALID_ARGS"),
        ("core", "cash", "transfer", b"[1,2]", "INVALID_ARGS"),
        ("core", "cash", "transfer", b'"x"', "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":1.5}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":1e3}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":NaN}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":Infinity}}'.encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":-5}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":0}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":"5"}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":true}}'.encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":{10**30}}}'.encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", f'{{"to":"{s1}","amount":{"9" * 5000}}}'.encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", b'{"to":' + b"[" * 5000 + b"]" * 5000 + b"}",
         "INVALID_ARGS"),
        ("core", "cash", "transfer", b'{"a":' * 3000 + b"1" + b"}" * 3000, "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": "a" * 20_000, "amount": 1}).encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": lookalike, "amount": 1}).encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": s1.upper(), "amount": 1}).encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": "\u0000" * 64, "amount": 1}).encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": s1, "amount": 1, "memo": "m" * 500})
         .encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"amount": 1}).encode(), "INVALID_ARGS"),
        ("core", "cash", "transfer", json.dumps({"to": None, "amount": 1}).encode(),
         "INVALID_ARGS"),
        ("core", "cash", "transfer",
         json.dumps({"to": Account.generate().account_id, "amount": 1}).encode(),
         "UNKNOWN_MEMBER"),
        ("supplier1", "cash", "transfer",
         json.dumps({"to": node.net.account("core").account_id, "amount": 10**12}).encode(),
         "INSUFFICIENT_FUNDS"),
        # wrong role: a supplier minting cash, a core enterprise (not on the committee, which
        # is the admin here) proposing to suspend a member
        ("supplier1", "cash", "deposit", json.dumps({"account": s1, "amount": 10**6}).encode(),
         "NOT_AUTHORIZED"),
        ("core", "governance", "propose",
         json.dumps({"action": "suspend_member",
                     "params": {"account": node.net.account("bank").account_id}}).encode(),
         "NOT_COMMITTEE_MEMBER"),
        # a suspended member cannot move its money
        ("suspended", "cash", "transfer", json.dumps({"to": s1, "amount": 1}).encode(),
         "MEMBER_SUSPENDED"),
    ]


async def test_bad_calls_fail_with_stable_codes_and_change_nothing(live_node) -> None:
    cases = _execution_cases(live_node)
    before = await snapshot(live_node)
    net = live_node.net
    txs, expected = [], []
    for who, contract, method, args, code in cases:
        account = net.account(who)
        txs.append(signed(account, body(net.chain_id, account.public_key, contract=contract,
                                        method=method, args=args)))
        expected.append(code)
    async with live_node.client() as client:
        response = await client.submit(txs, wait=True, timeout_ms=20_000)
    got = [(r.status, r.error_code) for r in response.receipts]
    want = [(types_pb2.FAILED, code) for code in expected]
    mismatches = [(cases[i][1:], got[i]) for i in range(len(cases)) if got[i] != want[i]]
    assert not mismatches, mismatches
    assert all(r.message for r in response.receipts)
    # In our words: no json module text ("Expecting value: line 1 column 1 (char 0)").
    python_words = ("line 1", "(char", "Expecting", "sys.", "utf-8-sig", "codec")
    assert not [r.message for r in response.receipts
                if any(word in r.message for word in python_words)]
    await assert_serving(live_node)
    after = await snapshot(live_node)
    assert after["height"] > before["height"]  # the failed txs are in a block...
    for key in ("balances", "supply", "members"):  # ...and changed nothing
        assert after[key] == before[key], key


# --- queries and reads -----------------------------------------------------------------------


@pytest.mark.parametrize("contract,view,args_json,status", [
    ("cash", "balance", "not json", "INVALID_ARGUMENT"),
    ("cash", "balance", "[1]", "INVALID_ARGUMENT"),
    ("cash", "balance", "[" * 100_000, "INVALID_ARGUMENT"),
    ("cash", "balance", '{"account":' + '"a"' + "}" + " " * 5_000, "INVALID_ARGUMENT"),
    ("cash", "balance", '{"account": 1.5}', "INVALID_ARGUMENT"),
    ("cash", "balance", '{"account": "zz"}', "INVALID_ARGUMENT"),
    ("nocontract", "balance", "{}", "NOT_FOUND"),
    ("cash", "noview", "{}", "NOT_FOUND"),
    ("cash", "transfer", "{}", "NOT_FOUND"),
    ("\u0441ash", "balance", "{}", "NOT_FOUND"),
])
async def test_hostile_queries_get_defined_statuses(live_node, contract, view, args_json,
                                                    status) -> None:
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        from proto import ledger_pb2_grpc

        stub = ledger_pb2_grpc.LedgerStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            request = ledger_pb2.QueryRequest(contract=contract, view=view, args_json=args_json)
            metadata = read_metadata(live_node.net.account("auditor"), live_node.net.chain_id,
                                     QUERY, request)
            await stub.Query(request, timeout=10, metadata=metadata)
    assert caught.value.code().name == status, caught.value.details()
    await assert_serving(live_node)


async def test_reads_of_unknown_things_are_not_found(live_node) -> None:
    async with live_node.client() as client:
        for tx_id in (b"", b"\x00" * 32, os.urandom(32), os.urandom(100_000)):
            with pytest.raises(LedgerError) as caught:
                await client.get_tx(tx_id)
            assert caught.value.status == "NOT_FOUND"
        for height in (2**64 - 1, 10**9):
            with pytest.raises(LedgerError) as caught:
                await client.get_block(height)
            assert caught.value.status == "NOT_FOUND"
        # Views of records that do not exist: NOT_FOUND with the contract's code, as members.
        nobody = "ab" * 32
        for contract, view, arg, code in MISSING_RECORD_VIEWS:
            with pytest.raises(LedgerError) as caught:
                await client.query(contract, view, {arg: nobody})
            assert caught.value.status == "NOT_FOUND", (contract, view, caught.value)
            assert caught.value.message.startswith(f"{code}: "), caught.value.message
    await assert_serving(live_node)


# --- deadlines, cancellation, many streams ---------------------------------------------------


async def test_zero_deadline_and_cancelled_calls_leave_the_node_serving(live_node) -> None:
    net, core, s1 = live_node.net, live_node.net.account("core"), live_node.net.account("supplier1")
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        from proto import ledger_pb2_grpc

        stub = ledger_pb2_grpc.LedgerStub(channel)
        for timeout_s in [1e-9] * 25 + [1e-4] * 25:  # expired before or on arrival
            for call in (stub.GetChainInfo(ledger_pb2.GetChainInfoRequest(), timeout=timeout_s),
                         stub.Submit(ledger_pb2.SubmitRequest(txs=[core.build_tx(
                             net.chain_id, "cash", "transfer", {"to": s1.account_id,
                                                                "amount": 1})], wait=True),
                             timeout=timeout_s)):
                try:
                    await call
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
        # Submit-and-wait calls cancelled by their client mid-wait; their txs still commit once.
        txs = [core.build_tx(net.chain_id, "cash", "transfer", {"to": s1.account_id,
                                                                "amount": 1}) for _ in range(20)]
        calls = [stub.Submit(ledger_pb2.SubmitRequest(txs=[tx], wait=True, timeout_ms=60_000))
                 for tx in txs]
        for call in calls:  # cancelled 0..19 ms after being sent: before, during, after the wait
            await asyncio.sleep(0.001)
            call.cancel()
        cancelled = 0
        for call in calls:
            try:
                response = await call
                assert response.receipts[0].status == types_pb2.SUCCESS
            except asyncio.CancelledError:
                cancelled += 1
        assert cancelled > 0, "no submit was cancelled mid-wait; the test proved nothing"
        # Subscribe streams cancelled right away, and after their first block.
        for _ in range(100):
            stream = signed_subscribe(stub, live_node, from_height=1)
            await stream.read()
            stream.cancel()
        for _ in range(100):
            signed_subscribe(stub, live_node).cancel()
    await assert_serving(live_node)
    # A cancelled submit may have been admitted or not; either way its tx ends up committed
    # exactly once or unknown, never stuck as pending.
    outcomes = []
    async with live_node.client() as client:
        for tx in txs:
            got = await eventually(partial(commit_outcome, client, tx),
                                   "a tx of a cancelled submit committed or unknown")
            if isinstance(got, str):
                outcomes.append(got)
                continue
            assert got.receipt.status == types_pb2.SUCCESS
            outcomes.append("committed")
    assert len(outcomes) == len(txs)


async def test_hundreds_of_concurrent_subscribe_streams_are_served_or_refused(live_node) -> None:
    """600 streams fit (subscribers_max); 200 more are refused with RESOURCE_EXHAUSTED; a
    committed block reaches every open stream; after they close the slots are free again."""
    open_max, extra = 600, 200
    net, core, s1 = live_node.net, live_node.net.account("core"), live_node.net.account("supplier1")
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        from proto import ledger_pb2_grpc

        stub = ledger_pb2_grpc.LedgerStub(channel)
        async with live_node.client() as client:
            start = (await client.chain_info()).height + 1
        streams = [signed_subscribe(stub, live_node, from_height=0)
                   for _ in range(open_max)]
        # Every stream is registered (it has had a block) before the next ones arrive.
        registered = await first_blocks_while_committing(live_node, streams)
        assert all(b.block.header.height >= start for b in registered)
        async with live_node.client() as client:
            refused_streams = [signed_subscribe(stub, live_node)
                               for _ in range(extra)]
            codes = []
            for stream in refused_streams:
                try:
                    await asyncio.wait_for(stream.read(), 10)
                    codes.append("OK")
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code().name)
            assert codes.count("RESOURCE_EXHAUSTED") == extra, set(codes)
            (receipt,) = await client.submit_and_wait([core.build_tx(
                net.chain_id, "cash", "transfer", {"to": s1.account_id, "amount": 1})])
            assert receipt.ok
        # Streams registered at different heights; each reads on to the receipt's block.
        firsts = await asyncio.gather(*(asyncio.wait_for(read_to(s, receipt.height), 20)
                                        for s in streams))
        assert {b.block.header.height for b in firsts} == {firsts[0].block.header.height}
        assert firsts[0].block.header.height >= start
        assert all(bytes.fromhex(receipt.tx_id) in {r.tx_id for r in b.receipts}
                   for b in firsts)
        for stream in streams:
            stream.cancel()
        # A cancelled stream's slot is freed as the node notices the cancellation: each new
        # stream retries a refusal until then.
        again = await asyncio.gather(*(opened(stub, live_node, from_height=1)
                                       for _ in range(open_max)))
        for stream in again:
            stream.cancel()
    await assert_serving(live_node)


async def test_subscribe_far_beyond_the_head_is_refused_at_once_and_holds_no_slot(
    live_node,
) -> None:
    """Heights more than limits.subscribe_ahead_blocks_max (1,000 by default) past the head are
    refused with OUT_OF_RANGE at once, not left waiting until the client's deadline; 300 such
    streams leave every subscriber slot free; a height within the bound is followed."""
    ahead_max = 1_000
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        from proto import ledger_pb2_grpc

        stub = ledger_pb2_grpc.LedgerStub(channel)
        async with live_node.client() as client:
            head = (await client.chain_info()).height
        far = [head + ahead_max + 1, head + 10**9, 2**63, 2**64 - 1] * 75
        streams = [signed_subscribe(stub, live_node, from_height=h, timeout=60)
                   for h in far]
        details = []
        for stream in streams:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await asyncio.wait_for(stream.read(), 10)
            assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE, caught.value
            details.append(caught.value.details() or "")
        assert all("blocks beyond this node's head" in d for d in details), details[:4]
        # None of them kept a slot: the full 600 subscribers_max can still open and follow.
        within = signed_subscribe(stub, live_node, from_height=head + 1)
        streams = [signed_subscribe(stub, live_node) for _ in range(599)]
        firsts = await first_blocks_while_committing(live_node, [within, *streams])
        assert all(b.block.header.height > head for b in firsts)
        # A start within the bound (but not yet reached) is accepted and waits, not refused.
        waiting = signed_subscribe(stub, live_node, from_height=head + ahead_max)
        for stream in [within, *streams]:
            stream.cancel()
        read = asyncio.ensure_future(waiting.read())
        done, _ = await asyncio.wait({read}, timeout=1.0)
        assert not done, "a start within the bound was refused or answered"
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await read
    await assert_serving(live_node)


async def test_health_check_still_answers(live_node) -> None:
    async with grpc.aio.insecure_channel(live_node.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(service="scfchain.Ledger"),
                                      timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
