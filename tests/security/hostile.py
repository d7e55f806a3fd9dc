"""What the hostile-input tests of the `Ledger` API share: building raw and signed txs, reading
the node's state before and after, and waiting for refusals, commits and streams."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import pytest

from node.client.identity import SUBSCRIBE, Account, read_metadata
from node.client.ledger import LedgerClient, LedgerError
from proto import ledger_pb2, types_pb2
from tests.security.conftest import LiveNode

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


