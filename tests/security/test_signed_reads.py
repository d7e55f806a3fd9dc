"""Reads as an attacker would try them, on a live solo node with signed reads (the default).

Every read (Query, GetTx, GetBlock, Subscribe) must carry a member's signature (node/read_auth.py)
and answers only what that member may see (contracts/visibility.py). Tried here: no identity at
all, a captured read replayed (at once, and after the window), another member's name on one's own
signature, a key that is no member, tier3 reading core's balance and core's transfer, a supplier's
stream of blocks (others' transfers come reduced, hashes still verify), the auditor's (whole), and
a member suspended on chain (refused from its next read on). The node's window is 2 s here so the
stale replay needs no long wait.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from node.chain import block_hash_of, txs_hash
from node.client.identity import GET_BLOCK, QUERY, Account, read_metadata
from node.client.ledger import LedgerClient, LedgerError, ReceiptView
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, write_network
from proto import ledger_pb2, ledger_pb2_grpc, types_pb2

pytestmark = pytest.mark.timeout(120)

WINDOW_MS = 2_000
MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("core", ("core_enterprise",), balance=5_000_000),
    MemberSpec("tier1", ("supplier",), balance=1_000),
    MemberSpec("tier3", ("supplier",), balance=1_000),
    MemberSpec("leaver", ("supplier",), balance=1_000),
    MemberSpec("auditor", ("auditor",)),
]


@dataclass
class Node:
    net: NetworkLayout
    addr: str
    others: list[str]  # tx ids (hex) of core's transfers to tier1: tier3 is no party to them
    own: str  # tx id (hex) of tier3's own transfer to tier1
    height: int  # the head once those committed

    def client(self, name: str | None) -> LedgerClient:
        """A client whose reads are signed by member `name` (None: no identity)."""
        reader = self.net.account(name) if name else None
        return LedgerClient(self.addr, timeout_s=20, reader=reader, chain_id=self.net.chain_id)


async def _seed(net: NetworkLayout, addr: str) -> Node:
    async with LedgerClient(addr, timeout_s=20) as client:  # submitting needs no read identity
        core, tier1, tier3 = (net.account(n) for n in ("core", "tier1", "tier3"))
        others = []
        for amount in (100, 200):
            receipt = await client.call(core, net.chain_id, "cash", "transfer",
                                        {"to": tier1.account_id, "amount": amount})
            assert receipt.ok, receipt
            others.append(receipt.tx_id)
        own = await client.call(tier3, net.chain_id, "cash", "transfer",
                                {"to": tier1.account_id, "amount": 7})
        assert own.ok, own
        height = (await client.chain_info()).height
    return Node(net, addr, others, own.tx_id, height)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = str(tmp_path_factory.mktemp("signed-reads"))
    net = write_network(root, nodes=1, consensus="solo", members=MEMBERS, chain_id="sec-reads",
                        block={"interval_ms": 20},
                        consensus_params={"empty_block_interval_ms": 0},
                        node_options={"reads.window_ms": WINDOW_MS})
    cluster = LocalCluster(net)
    try:
        asyncio.run(cluster.start(timeout_s=30))
        yield asyncio.run(_seed(net, net.nodes[0].client_addr))
    finally:
        cluster.stop_all()


async def refusal(read: object) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        await read  # type: ignore[misc]
    return caught.value


def balance(name: str, net: NetworkLayout) -> tuple[str, str, dict[str, str]]:
    return "cash", "balance", {"account": net.account(name).account_id}


async def test_reads_without_identity_are_unauthenticated_and_say_how_to_sign(node: Node) -> None:
    async with node.client(None) as client:
        assert (await client.chain_info()).height >= node.height  # public, unsigned
        assert await client.healthy()
        errors = [
            await refusal(client.query(*balance("core", node.net))),
            await refusal(client.get_block(1)),
            await refusal(client.get_tx(bytes.fromhex(node.own))),
        ]
        with pytest.raises(LedgerError) as caught:
            async for _ in client.subscribe(from_height=1):
                pass
        errors.append(caught.value)
    for error in errors:
        assert error.status == "UNAUTHENTICATED", error
        assert "reads on this node are signed by a member" in error.message
        assert "scf-signature-bin" in error.message


async def test_a_captured_read_replayed_is_refused_now_and_after_the_window(node: Node) -> None:
    core = node.net.account("core")
    request = ledger_pb2.QueryRequest(contract="cash", view="balance",
                                      args_json=f'{{"account": "{core.account_id}"}}')
    captured = read_metadata(node.net.account("core"), node.net.chain_id, QUERY, request)
    async with grpc.aio.insecure_channel(node.addr) as channel:
        stub = ledger_pb2_grpc.LedgerStub(channel)
        answer = await stub.Query(request, metadata=captured, timeout=10)
        assert int(answer.height) >= node.height
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # the same bytes again, at once
            await stub.Query(request, metadata=captured, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert (caught.value.details() or "").startswith("replayed signed read")
        await asyncio.sleep(WINDOW_MS / 1000 + 0.3)  # past the node's window
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Query(request, metadata=captured, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "stale or future-dated signed read" in (caught.value.details() or "")
        # A read signed far from the node's clock (a pre-signed batch, a skewed clock).
        future = read_metadata(node.net.account("core"), node.net.chain_id, QUERY, request,
                               issued_at_ms=int(time.time() * 1000) + 60_000)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Query(request, metadata=future, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "node time" in (caught.value.details() or "")


async def test_a_signature_under_another_members_name_or_for_another_request_is_refused(
    node: Node,
) -> None:
    request = ledger_pb2.GetBlockRequest(height=1)
    mine = read_metadata(Account.generate(), node.net.chain_id, GET_BLOCK, request)
    posing = [(k, node.net.account("auditor").account_id if k == "scf-reader" else v)
              for k, v in mine]
    other = ledger_pb2.GetBlockRequest(height=2)
    honest = read_metadata(node.net.account("tier3"), node.net.chain_id, GET_BLOCK, request)
    async with grpc.aio.insecure_channel(node.addr) as channel:
        stub = ledger_pb2_grpc.LedgerStub(channel)
        for metadata, asked in ((posing, request), (honest, other)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetBlock(asked, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "does not verify" in (caught.value.details() or "")


async def test_a_key_that_is_no_member_is_permission_denied(node: Node) -> None:
    stranger = LedgerClient(node.addr, timeout_s=20, reader=Account.generate(),
                            chain_id=node.net.chain_id)
    async with stranger:
        error = await refusal(stranger.get_block(1))
    assert error.status == "PERMISSION_DENIED"
    assert "not a consortium member" in error.message


async def test_tier3_may_not_read_cores_balance_or_cores_transfer(node: Node) -> None:
    async with node.client("tier3") as tier3:
        error = await refusal(tier3.query(*balance("core", node.net)))
        assert error.status == "PERMISSION_DENIED"
        assert "may not read the balance" in error.message
        assert (await tier3.query(*balance("tier3", node.net)))["balance"] == 993
        error = await refusal(tier3.get_tx(bytes.fromhex(node.others[0])))
        assert error.status == "PERMISSION_DENIED" and "may not read tx" in error.message
        assert (await tier3.get_tx(bytes.fromhex(node.own))).receipt.tx_id.hex() == node.own
    for name in ("core", "auditor"):
        async with node.client(name) as allowed:
            assert (await allowed.query(*balance("core", node.net)))["balance"] == 4_999_700
            found = await allowed.get_tx(bytes.fromhex(node.others[0]))
            assert ReceiptView.of(found.receipt).events[0]["name"] == "Transferred"


async def stream(client: LedgerClient, up_to: int) -> list[types_pb2.CommittedBlock]:
    blocks = []
    async for block in client.subscribe(from_height=1):
        blocks.append(block)
        if block.block.header.height >= up_to:
            break
    return blocks


def check_hashes(block: types_pb2.CommittedBlock) -> None:
    """What a client verifies of a block, reduced or not."""
    header = block.block.header
    assert block_hash_of(header) == block.block_hash
    assert txs_hash(r.tx_id for r in block.receipts) == header.txs_hash
    for tx, receipt in zip(block.block.txs, block.receipts, strict=True):
        assert not tx.body or hashlib.sha256(tx.body).digest() == receipt.tx_id


async def test_a_suppliers_stream_shows_none_of_the_others_transfers(node: Node) -> None:
    async with node.client("tier3") as tier3:
        seen = await stream(tier3, node.height)
    async with node.client("auditor") as auditor:
        whole = await stream(auditor, node.height)
    assert [b.block_hash for b in seen] == [b.block_hash for b in whole]
    receipts = {r.tx_id.hex(): (tx, r) for b in seen for tx, r in
                zip(b.block.txs, b.receipts, strict=True)}
    for tx_id in node.others:  # core -> tier1: in its place, reduced to id and status
        tx, receipt = receipts[tx_id]
        assert tx == types_pb2.SignedTx()
        assert receipt == types_pb2.Receipt(tx_id=receipt.tx_id, height=receipt.height,
                                            index=receipt.index, status=types_pb2.SUCCESS)
    tx, receipt = receipts[node.own]  # its own transfer, whole
    assert tx.body and receipt.events and receipt.result_json
    tier3_id = node.net.account("tier3").account_id
    for block in seen:
        check_hashes(block)
        for tx, receipt in zip(block.block.txs, block.receipts, strict=True):
            if not tx.body:  # hidden: nothing but its id, place and status
                assert not (receipt.events or receipt.result_json or receipt.error_code)
                continue
            body = types_pb2.TxBody.FromString(tx.body)  # shown: tier3's, naming it, or public
            assert (body.sender.hex() == tier3_id or tier3_id in str(receipt.events)
                    or body.contract in ("governance", "consortium")), body
        assert all(tier3_id in event.attrs_json for event in block.end_block_events)
    # The auditor sees every tx whole.
    for block in whole:
        check_hashes(block)
        assert all(tx.body for tx in block.block.txs)
    audited = {r.tx_id.hex(): r for b in whole for r in b.receipts}
    assert all(audited[t].events for t in node.others)


async def test_a_member_suspended_on_chain_reads_nothing_from_then_on(node: Node) -> None:
    net = node.net
    async with node.client("leaver") as leaver:
        assert (await leaver.query(*balance("leaver", net)))["balance"] == 1_000
        # Genesis names no committee, so the admin alone decides: the proposal executes at once.
        receipt = await leaver.call(net.account("admin"), net.chain_id, "governance", "propose",
                                    {"action": "suspend_member",
                                     "params": {"account": net.account("leaver").account_id}})
        assert receipt.ok, receipt
        for read in (leaver.query(*balance("leaver", net)), leaver.get_block(1)):
            error = await refusal(read)
            assert error.status == "PERMISSION_DENIED" and "suspended" in error.message
