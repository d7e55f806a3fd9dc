"""`make demo`: a live network, signed txs over gRPC, receipts, queries, a restart.

Starts a fresh node in a temporary directory, moves cash between consortium members, shows
receipts and a refused double-spend, restarts the node and finds the same app hash, then stops
everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time

from node.client import LedgerClient
from node.localnet import MemberSpec, NodeProcess, write_network

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",)),
    MemberSpec("core", ("core_enterprise",), balance=1_000_000_00),
    MemberSpec("supplier1", ("supplier",)),
]


def say(text: str) -> None:
    print(text, flush=True)


async def story(procs: list[NodeProcess], net: object) -> None:
    from node.localnet import NetworkLayout

    assert isinstance(net, NetworkLayout)
    node = procs[0]
    core, supplier = net.account("core"), net.account("supplier1")
    async with LedgerClient(node.layout.client_addr) as client:
        info = await client.chain_info()
        say(f"• node {info.node_id} serves chain {info.chain_id} ({info.consensus}) at "
            f"{node.layout.client_addr}, height {info.height}")
        receipt = await client.call(
            core, net.chain_id, "cash", "transfer",
            {"to": supplier.account_id, "amount": 250_000_00, "memo": "invoice INV-001"},
        )
        say(f"• core pays supplier1 250,000.00 for INV-001: {'OK' if receipt.ok else 'FAILED'} "
            f"at height {receipt.height}, tx {receipt.tx_id[:16]}…")
        too_much = await client.call(
            supplier, net.chain_id, "cash", "transfer",
            {"to": core.account_id, "amount": 999_999_999_00},
        )
        say(f"• supplier1 tries to pay more than it holds: {too_much.error_code} "
            f"({too_much.message})")
        txs = [
            core.build_tx(net.chain_id, "cash", "transfer",
                          {"to": supplier.account_id, "amount": 1}, nonce=i)
            for i in range(2_000)
        ]
        started = time.perf_counter()
        receipts = await client.submit_and_wait(txs)
        elapsed = time.perf_counter() - started
        ok = sum(r.ok for r in receipts)
        say(f"• 2,000 signed transfers in one batch: {ok} committed in {elapsed:.2f}s "
            f"({ok / elapsed:,.0f} tx/s, submit to receipt)")
        balance = await client.query("cash", "balance", {"account": supplier.account_id})
        say(f"• supplier1's balance: {balance['balance'] / 100:,.2f}")
        before = await client.chain_info()
    say("• SIGKILL the node, start it again …")
    node.kill()
    node.start()
    await node.wait_healthy()
    async with LedgerClient(node.layout.client_addr) as client:
        after = await client.chain_info()
        again = await client.get_block(before.height)
        same = again.app_hash == before.app_hash and after.height >= before.height
        say(f"• back at height {after.height}; block {before.height}'s app hash "
            f"{again.app_hash.hex()[:16]}… {'unchanged' if same else 'CHANGED!'}")
        if not same:
            raise SystemExit("the restarted node lost state")
        found = await client.get_tx(bytes.fromhex(receipt.tx_id))
        say(f"• INV-001's tx is still there, at height {found.receipt.height}")


def main(args: argparse.Namespace) -> int:
    root = tempfile.mkdtemp(prefix="scfchain-demo-")
    net = write_network(root, nodes=1, consensus="solo", members=MEMBERS, chain_id="scf-demo")
    procs = [NodeProcess(layout) for layout in net.nodes]
    try:
        say(f"scfchain demo — a network in {root}")
        for proc in procs:
            proc.start()
        asyncio.run(_run(procs, net))
        say("demo finished: every step above ran against live nodes over gRPC.")
        return 0
    finally:
        for proc in procs:
            proc.stop()
        if not getattr(args, "keep", False):
            shutil.rmtree(root, ignore_errors=True)


async def _run(procs: list[NodeProcess], net: object) -> None:
    for proc in procs:
        await proc.wait_healthy()
    await story(procs, net)
