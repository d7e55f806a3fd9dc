"""Hostile input at the `Ledger` API of a live solo node (one process for the module): bad
calls that execute (a FAILED receipt with a stable error code, balances and supply unchanged),
hostile queries and reads, deadlines, cancellations and hundreds of streams; the node keeps
serving throughout. Admission refusals: test_ledger_hostile_input.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from functools import partial

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client.identity import QUERY, Account, read_metadata
from node.client.ledger import LedgerError
from proto import ledger_pb2, types_pb2
from tests.security.conftest import LiveNode
from tests.security.hostile import (
    assert_serving,
    body,
    commit_outcome,
    eventually,
    first_blocks_while_committing,
    opened,
    read_to,
    signed,
    signed_subscribe,
    snapshot,
)
from tests.unit.test_client_messages import MISSING_RECORD_VIEWS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


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
