"""The Ledger service with signed reads (node/api.py over node/read_auth.py and
contracts/visibility.py), on a real store whose genesis holds the members.

Block 1 holds core's transfer to tier1, tier3's own transfer to tier1 and a governance proposal,
and two end-block events (one naming tier1, one naming tier3). Each read is signed as a client
would sign it (`read_metadata`); the node judges the reader on committed state.
"""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import default_runtime
from contracts.runtime import encode, member_key
from contracts.visibility import Reader
from node.api import LedgerService, visible_block
from node.chain import block_hash_of, txs_hash
from node.chain_view import ChainView
from node.client.identity import Account
from node.config import Limits, Reads
from node.mempool import Mempool
from node.notifier import Notifier
from node.read_auth import GET_BLOCK, GET_TX, QUERY, SUBSCRIBE, read_metadata
from node.storage import ChainHead, Storage
from proto import ledger_pb2, types_pb2

CHAIN = "read-api"
NOW = 1_700_000_000_000
ROLES = {"core": "core_enterprise", "tier1": "supplier", "tier3": "supplier",
         "auditor": "auditor", "stranger": ""}
KEYS = {name: Account.from_seed(name.encode()) for name in ROLES}
IDS = {name: key.account_id for name, key in KEYS.items()}


class _Aborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.status, self.details = code.name, details


class _Context:
    def __init__(self, metadata: Any = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> Any:
        return self.metadata

    async def abort(self, code: Any, details: str) -> None:
        raise _Aborted(code, details)


class _Head:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def head(self) -> ChainHead:
        return self.storage.head()


def member_record(name: str, *, suspended: bool = False) -> bytes:
    return encode({"name": name, "roles": [ROLES[name]], "suspended": suspended})


def event(contract: str, name: str, **attrs: Any) -> types_pb2.Event:
    return types_pb2.Event(contract=contract, name=name, attrs_json=json.dumps(attrs))


def signed_tx(sender: str, contract: str, method: str, args: dict[str, Any]) -> types_pb2.SignedTx:
    return KEYS[sender].build_tx(CHAIN, contract, method, args, nonce=1)


def block_one() -> types_pb2.CommittedBlock:
    txs = [
        signed_tx("core", "cash", "transfer", {"to": IDS["tier1"], "amount": 500}),
        signed_tx("tier3", "cash", "transfer", {"to": IDS["tier1"], "amount": 7}),
        signed_tx("core", "governance", "propose", {"action": "set_param"}),
    ]
    ids = [hashlib.sha256(tx.body).digest() for tx in txs]
    events = [
        [event("cash", "Transferred", sender=IDS["core"], to=IDS["tier1"], amount=500)],
        [event("cash", "Transferred", sender=IDS["tier3"], to=IDS["tier1"], amount=7)],
        [event("governance", "ProposalCreated", proposer=IDS["core"])],
    ]
    receipts = [
        types_pb2.Receipt(tx_id=tx_id, height=1, index=i, status=types_pb2.SUCCESS,
                          events=events[i], result_json='{"ok":true}')
        for i, tx_id in enumerate(ids)
    ]
    header = types_pb2.BlockHeader(chain_id=CHAIN, height=1, time_ms=NOW, txs_hash=txs_hash(ids),
                                   proposer="n1")
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header, txs=txs),
        block_hash=block_hash_of(header),
        receipts=receipts,
        end_block_events=[
            event("voucher", "VoucherRedeemed", holder=IDS["tier1"], amount=3),
            event("voucher", "VoucherRedeemed", holder=IDS["tier3"], amount=4),
        ],
        app_hash=b"a" * 32,
    )


def empty_block(height: int) -> types_pb2.CommittedBlock:
    header = types_pb2.BlockHeader(chain_id=CHAIN, height=height, time_ms=NOW + height,
                                   txs_hash=txs_hash([]))
    return types_pb2.CommittedBlock(block=types_pb2.Block(header=header),
                                    block_hash=block_hash_of(header), app_hash=b"b" * 32)


@pytest.fixture
def store(tmp_path: Any) -> Any:
    storage = Storage(str(tmp_path / "chain"))
    state = {member_key(IDS[n]): member_record(n) for n in ROLES if n != "stranger"}
    state |= {f"cash/bal/{IDS['core']}": encode(1_000), f"cash/bal/{IDS['tier3']}": encode(50)}
    storage.init_genesis(b"g" * 32, state, b"h" * 32, NOW)
    block = block_one()
    storage.commit_block(block, {}, [(r.tx_id, r.index) for r in block.receipts])
    yield storage
    storage.close()


@pytest.fixture
def service(store: Storage) -> LedgerService:
    engine: Any = SimpleNamespace(status=SimpleNamespace(role="solo", round=0, leader="n1"))
    chain = ChainView("n1", CHAIN, store, Mempool(100, 1_000_000), engine, _Head(store))
    unused: Any = None  # admission: nothing here submits
    return LedgerService("n1", "solo", chain, Notifier(), unused, None, default_runtime(),
                         Limits(), ["n1"], clock_ms=lambda: NOW)


def as_(name: str, method: str, request: Any) -> _Context:
    return _Context(read_metadata(KEYS[name], CHAIN, method, request, issued_at_ms=NOW))


def balance_of(account: str) -> ledger_pb2.QueryRequest:
    return ledger_pb2.QueryRequest(contract="cash", view="balance",
                                   args_json=json.dumps({"account": account}))


async def query_as(service: LedgerService, name: str, request: Any) -> Any:
    response = await service.Query(request, as_(name, QUERY, request))
    return json.loads(response.result_json)


async def test_a_read_without_identity_is_unauthenticated(service: LedgerService) -> None:
    for call, request in ((service.Query, balance_of(IDS["core"])),
                          (service.GetBlock, ledger_pb2.GetBlockRequest(height=1)),
                          (service.GetTx, ledger_pb2.GetTxRequest(tx_id=b"x" * 32))):
        with pytest.raises(_Aborted) as caught:
            await call(request, _Context())
        assert caught.value.status == "UNAUTHENTICATED"
        assert "reads on this node are signed by a member" in caught.value.details


async def test_a_query_runs_for_its_reader(service: LedgerService) -> None:
    request = balance_of(IDS["core"])
    assert (await query_as(service, "core", request))["balance"] == 1_000
    assert (await query_as(service, "auditor", request))["balance"] == 1_000
    with pytest.raises(_Aborted) as caught:
        await query_as(service, "tier3", request)
    assert caught.value.status == "PERMISSION_DENIED"
    assert caught.value.details.startswith("PERMISSION_DENIED: member tier3 may not read")
    with pytest.raises(_Aborted) as caught:  # signed, but no member
        await query_as(service, "stranger", request)
    assert caught.value.status == "PERMISSION_DENIED"
    assert "not a consortium member" in caught.value.details


async def test_a_block_shows_a_supplier_its_own_txs_and_reduces_the_rest(
    service: LedgerService,
) -> None:
    request = ledger_pb2.GetBlockRequest(height=1)
    full = block_one()
    seen = await service.GetBlock(request, as_("tier3", GET_BLOCK, request))
    # Core's transfer: in its place, with its id and status, nothing else.
    assert seen.block.txs[0] == types_pb2.SignedTx()
    assert seen.receipts[0] == types_pb2.Receipt(tx_id=full.receipts[0].tx_id, height=1, index=0,
                                                 status=types_pb2.SUCCESS)
    # Its own transfer and the governance proposal (public): whole.
    assert seen.block.txs[1:] == full.block.txs[1:]
    assert seen.receipts[1:] == full.receipts[1:]
    assert [json.loads(e.attrs_json)["holder"] for e in seen.end_block_events] == [IDS["tier3"]]
    # Everything still verifies: the header, its hash, the txs hash over the receipts' ids.
    assert seen.block.header == full.block.header
    assert block_hash_of(seen.block.header) == seen.block_hash
    assert txs_hash(r.tx_id for r in seen.receipts) == seen.block.header.txs_hash
    for tx, receipt in zip(seen.block.txs, seen.receipts, strict=True):
        assert not tx.body or hashlib.sha256(tx.body).digest() == receipt.tx_id
    assert seen.app_hash == full.app_hash


async def test_the_auditor_and_the_parties_see_the_tx(service: LedgerService) -> None:
    request = ledger_pb2.GetBlockRequest(height=1)
    assert await service.GetBlock(request, as_("auditor", GET_BLOCK, request)) == block_one()
    tier1 = await service.GetBlock(request, as_("tier1", GET_BLOCK, request))
    assert tier1.block.txs == block_one().block.txs  # named as payee in both transfers
    assert visible_block(block_one(), Reader.internal()) == block_one()


async def test_get_tx_of_a_tx_the_reader_may_not_see_is_permission_denied(
    service: LedgerService,
) -> None:
    core_tx = ledger_pb2.GetTxRequest(tx_id=block_one().receipts[0].tx_id)
    with pytest.raises(_Aborted) as caught:
        await service.GetTx(core_tx, as_("tier3", GET_TX, core_tx))
    assert caught.value.status == "PERMISSION_DENIED"
    assert "may not read tx" in caught.value.details
    found = await service.GetTx(core_tx, as_("tier1", GET_TX, core_tx))
    assert found.receipt.events[0].name == "Transferred"
    found = await service.GetTx(core_tx, as_("core", GET_TX, core_tx))
    assert found.tx == block_one().block.txs[0]


async def test_a_stream_ends_when_its_reader_is_suspended(store: Storage,
                                                         service: LedgerService) -> None:
    request = ledger_pb2.SubscribeRequest(from_height=1)
    stream = service.Subscribe(request, as_("tier3", SUBSCRIBE, request))
    first = await anext(stream)
    assert first.block.txs[0] == types_pb2.SignedTx()  # reduced for tier3
    # Block 2 suspends tier3: its stream gets no further block.
    store.commit_block(empty_block(2), {member_key(IDS["tier3"]):
                                        member_record("tier3", suspended=True)}, [])
    with pytest.raises(_Aborted) as caught:
        await anext(stream)
    assert caught.value.status == "PERMISSION_DENIED"
    assert "suspended" in caught.value.details and "the stream ends" in caught.value.details
    await stream.aclose()
    # And a new read is refused at once.
    again = balance_of(IDS["tier3"])
    with pytest.raises(_Aborted) as caught:
        await query_as(service, "tier3", again)
    assert caught.value.status == "PERMISSION_DENIED"


async def test_unsigned_reads_see_everything_when_turned_off(store: Storage) -> None:
    engine: Any = SimpleNamespace(status=SimpleNamespace(role="solo", round=0, leader="n1"))
    chain = ChainView("n1", CHAIN, store, Mempool(100, 1_000_000), engine, _Head(store))
    unused: Any = None
    open_node = LedgerService("n1", "solo", chain, Notifier(), unused, None, default_runtime(),
                              Limits(), ["n1"], reads=Reads(signed=False))
    request = ledger_pb2.GetBlockRequest(height=1)
    assert await open_node.GetBlock(request, _Context()) == block_one()
