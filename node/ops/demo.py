"""`make demo`: the supply-chain-finance story on a live 4-node cluster, narrated.

Starts a fresh 4-node cluster of the sample consortium in a temporary directory (PBFT when this
build has it, otherwise Raft) and runs the story over gRPC: a credit line; a voucher issued to
a tier-1 supplier for an invoice; split and passed up to tier 3; tier 2 discounts with the
bank; the same invoice refused a second time; the leader killed while the network keeps
committing; maturity reached and every holder paid by the chain itself; the lineage tree; a
warehouse receipt pledged and released; the final balances. Then the governance chapter
(`node/ops/demo_governance.py`): a new bank's node joins as an observer, the committee votes it
in, it votes in the next blocks, and a node is voted out. Then it stops every process.

Maturity is a few seconds ahead in block time (a real voucher runs 90 days or so); the nodes
propose an empty block every second, so settlement happens without further transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from typing import Any

from rich.table import Table

from node.client.identity import tx_id_of
from node.client.ledger import LedgerClient, LedgerError, ReceiptView
from node.client.quorum import QuorumClient
from node.ops.cli_client import ClientCommandError, reader_for, voucher_tree
from node.ops.cli_cluster import make_console, status_table
from node.ops.cluster_status import node_statuses
from node.ops.demo_governance import ChapterError, run_chapter
from node.ops.launcher import (
    Cluster,
    ClusterError,
    kill_node,
    load_cluster,
    prepare_cluster,
    restart_node,
    running_pids,
    start_cluster,
    stop_cluster,
)
from node.ops.sample_consortium import SAMPLE_MEMBERS, money, sample_member

NODES = 4
MATURITY_AHEAD_MS = 12_000  # voucher maturity after issue, in block time
SETTLE_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 20.0
TX_WAIT_MS = 8_000  # per attempt; a tx forwarded to a leader that just died is resubmitted
TX_ATTEMPTS_MAX = 5
DAY_MS = 86_400_000


def say(text: str) -> None:
    print(text, flush=True)


def step(title: str) -> None:
    say(f"\n── {title}")


def doc_hash(text: str) -> str:
    """A trade document's hash (the chain stores hashes, never the documents)."""
    return hashlib.sha256(text.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


class DemoError(Exception):
    """The story went wrong: the chain did not do what the narration promises."""


class Story:
    """The narrated steps, talking to one live node (another once that one is killed)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.names = cluster.names()
        self.node = cluster.nodes[-1]
        self.reader = reader_for(cluster)  # the auditor: the narrator reads what it may see
        self.client = self.client_of(self.node.client_addr)
        self.victim = ""
        self.issued_height = 0
        self.rejoining: asyncio.Task[object] | None = None

    def client_of(self, addr: str, timeout_s: float = 30.0) -> LedgerClient:
        """A client whose reads are the auditor's."""
        return LedgerClient(addr, timeout_s=timeout_s, reader=self.reader,
                            chain_id=self.cluster.chain_id, tls=self.cluster.client_tls())

    def who(self, name: str) -> str:
        return sample_member(name).title

    def account(self, name: str) -> str:
        return self.cluster.account_id(name)

    async def close(self) -> None:
        if self.rejoining is not None and not self.rejoining.done():
            self.rejoining.cancel()
            await asyncio.gather(self.rejoining, return_exceptions=True)
        await self.client.close()

    async def use_node(self, node_id: str) -> None:
        await self.client.close()
        self.node = self.cluster.node(node_id)
        self.client = self.client_of(self.node.client_addr)

    async def call(self, name: str, contract: str, method: str, args: dict[str, Any]
                   ) -> ReceiptView:
        """Sign as member name, submit, wait; resubmit the same tx if it got lost."""
        tx = self.cluster.account(name).build_tx(self.cluster.chain_id, contract, method, args)
        tx_id = tx_id_of(tx.body)
        for _ in range(TX_ATTEMPTS_MAX):
            try:
                return (await self.client.submit_and_wait([tx], timeout_ms=TX_WAIT_MS))[0]
            except LedgerError as exc:
                if exc.status == "ALREADY_EXISTS":
                    found = await self._await_tx(tx_id)
                    if found is not None:
                        return found
                elif exc.status not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    raise
            await asyncio.sleep(0.3)
        raise DemoError(f"{contract}.{method} by {name} did not commit")

    async def _await_tx(self, tx_id: bytes) -> ReceiptView | None:
        deadline = time.monotonic() + TX_WAIT_MS / 1000
        while time.monotonic() < deadline:
            try:
                return ReceiptView.of((await self.client.get_tx(tx_id)).receipt)
            except LedgerError:
                await asyncio.sleep(0.2)
        return None

    async def ok(self, name: str, contract: str, method: str, args: dict[str, Any]
                 ) -> ReceiptView:
        receipt = await self.call(name, contract, method, args)
        if not receipt.ok:
            raise DemoError(f"{contract}.{method} by {name} failed: {receipt.error_code} "
                            f"{receipt.message}")
        return receipt

    async def balance(self, name: str) -> int:
        found = await self.client.query("cash", "balance", {"account": self.account(name)})
        return int(found["balance"])

    async def confirm_with_quorum(self, receipt: ReceiptView) -> None:
        """On PBFT, one node's receipt is only as honest as that node: ask f + 1 of them."""
        addresses = {node.client_addr: node.id for node in self.cluster.nodes}
        async with QuorumClient(list(addresses), reader=self.reader,
                                chain_id=self.cluster.chain_id,
                                tls=self.cluster.client_tls()) as quorum:
            confirmed = (await quorum.confirm([bytes.fromhex(receipt.tx_id)]))[0]
        if confirmed.receipt != receipt:
            raise DemoError(f"the quorum's receipt differs from {self.node.id}'s")
        names = " and ".join(addresses[a] for a in confirmed.vouchers)
        say(f"• {names} return the same receipt: f + 1 = {quorum.matches_needed} matching "
            "receipts, so at least one honest node vouches for it")

    def fact(self, receipt: ReceiptView) -> str:
        return f"height {receipt.height}, tx {receipt.tx_id[:12]}…"

    # -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        root, second_root = await self.vouchers()
        await self.kill_leader()
        await self.maturity(root, second_root, self.issued_height)
        step("The lineage tree of the first voucher, read back from the chain")
        lineage = await self.client.query("voucher", "lineage", {"root": root})
        make_console().print(voucher_tree(lineage, self.names))
        await self.warehouse()
        await self.rejoin()
        await self.final_balances()
        if self.cluster.consensus == "pbft":  # certificates and the 4-node floor are PBFT's
            await run_chapter(self, first_step=11)

    async def vouchers(self) -> tuple[str, str]:
        step("1. Credit line")
        expiry_ms = now_ms() + 365 * DAY_MS
        receipt = await self.ok("bank", "voucher", "grant_credit", {
            "core": self.account("core"), "limit": 1_000_000_00, "expiry_ms": expiry_ms})
        say(f"• {self.who('bank')} grants {self.who('core')} (the core enterprise) a "
            f"reverse-factoring line of "
            f"{money(1_000_000_00)} for a year: OK ({self.fact(receipt)})")
        if self.cluster.consensus == "pbft":
            await self.confirm_with_quorum(receipt)

        step("2. A voucher for an invoice, issued to tier 1")
        invoice = doc_hash("invoice INV-2026-0042: 1,200 seat frames, 300,000.00")
        contract = doc_hash("supply contract SC-2026-007")
        maturity_ms = now_ms() + MATURITY_AHEAD_MS
        receipt = await self.ok("core", "voucher", "issue", {
            "supplier": self.account("tier1a"), "amount": 300_000_00,
            "maturity_ms": maturity_ms, "documents": [contract, invoice]})
        root = receipt.result["voucher"]
        self.issued_height = receipt.height
        say(f"• Brightline Seats delivered; Apex Motors issues voucher {root[:12]}… of "
            f"{money(300_000_00)} to tier1a for invoice INV-2026-0042, maturing in "
            f"{MATURITY_AHEAD_MS // 1000} s of block time ({self.fact(receipt)})")
        self.invoice = invoice

        step("3. Split and passed up to tier 3")
        receipt = await self.ok("tier1a", "voucher", "transfer", {
            "voucher": root, "to": self.account("tier2"), "amount": 120_000_00})
        at_tier2 = receipt.result["voucher"]
        say(f"• tier1a pays Delta Foams (tier 2) with {money(120_000_00)} of it: the voucher "
            f"splits; tier2 holds {at_tier2[:12]}…, tier1a keeps {money(180_000_00)} "
            f"({self.fact(receipt)})")
        receipt = await self.ok("tier2", "voucher", "transfer", {
            "voucher": at_tier2, "to": self.account("tier3"), "amount": 50_000_00})
        kept = receipt.result["remainder_voucher"]
        say(f"• tier2 pays Evergreen Textiles (tier 3) with {money(50_000_00)}: Apex Motors' "
            f"credit now reaches tier 3; tier2 keeps {money(70_000_00)} ({self.fact(receipt)})")

        step("4. Tier 2 discounts its part with the bank")
        receipt = await self.ok("tier2", "voucher", "apply_discount", {
            "voucher": kept, "financier": self.account("bank"), "rate_bps": 600})
        say(f"• tier2 asks Granite Bank to buy {money(70_000_00)} at 6.00 % a year; the voucher "
            f"is frozen while the bank decides ({self.fact(receipt)})")
        before = await self.balance("tier2")
        receipt = await self.ok("bank", "voucher", "approve_discount", {"voucher": kept})
        terms = receipt.result
        paid = await self.balance("tier2") - before
        say(f"• the bank approves: tier2 receives {money(paid)} now (interest "
            f"{money(terms['interest'])} for {terms['days']} day) and the bank holds the "
            f"voucher ({self.fact(receipt)})")

        step("5. The same invoice, a second time")
        refused = await self.call("core", "voucher", "issue", {
            "supplier": self.account("tier1b"), "amount": 300_000_00,
            "maturity_ms": maturity_ms, "documents": [invoice]})
        if refused.ok or refused.error_code != "DOCUMENT_ALREADY_USED":
            raise DemoError(f"double financing was not refused: {refused.to_json()}")
        backed = await self.client.query("voucher", "document", {"document": invoice})
        say(f"• a second voucher backed by INV-2026-0042 is refused: {refused.error_code} — "
            f"the invoice already backs voucher {backed['root'][:12]}… (height "
            f"{refused.height}; the failed tx is on the chain for the audit trail)")

        second = await self.ok("core", "voucher", "issue", {
            "supplier": self.account("tier1b"), "amount": 80_000_00,
            "maturity_ms": maturity_ms,
            "documents": [doc_hash("invoice INV-2026-0043: windscreens, 80,000.00")]})
        second_root = second.result["voucher"]
        say(f"• with its own invoice INV-2026-0043, Coastal Glass (tier1b) gets voucher "
            f"{second_root[:12]}… of {money(80_000_00)} ({self.fact(second)})")
        receipt = await self.ok("tier1b", "voucher", "transfer", {
            "voucher": second_root, "to": self.account("tier2"), "amount": 30_000_00})
        say(f"• tier1b pays tier2 {money(30_000_00)} of it ({self.fact(receipt)})")
        return root, second_root

    async def kill_leader(self) -> None:
        step("6. A node dies; the network keeps committing")
        info = await self.client.chain_info()
        victim = info.leader
        if victim == self.node.id:
            await self.use_node(next(n.id for n in self.cluster.nodes if n.id != victim))
        pid = running_pids(self.cluster).get(victim)
        kill_node(self.cluster, victim)
        killed_at = time.monotonic()
        title = "primary" if info.consensus == "pbft" else "leader"
        say(f"• SIGKILL {victim} (pid {pid}), the current {title}")
        deadline = killed_at + LEADER_TIMEOUT_S
        while True:
            info = await self.client.chain_info()
            if info.leader and info.leader != victim:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"no new leader {LEADER_TIMEOUT_S:.0f}s after {victim} died")
            await asyncio.sleep(0.1)
        round_name = "view" if info.consensus == "pbft" else "term"
        say(f"• {info.leader} leads after {time.monotonic() - killed_at:.1f} s ({info.consensus} "
            f"{round_name} {info.round}); three of four nodes carry on")
        # Not bound to the vouchers' maturity, so a slow election cannot make it fail.
        receipt = await self.ok("factor", "voucher", "grant_credit", {
            "core": self.account("core"), "limit": 500_000_00,
            "expiry_ms": now_ms() + 365 * DAY_MS})
        say(f"• {self.who('factor')} grants Apex Motors a second line of {money(500_000_00)}: "
            f"committed at height {receipt.height} without {victim} ({self.fact(receipt)})")
        self.victim = victim
        self.rejoining = asyncio.create_task(restart_node(self.cluster, victim, timeout_s=60.0))
        say(f"• {victim} is started again in the background; we look at it in step 9")

    async def maturity(self, root: str, second_root: str, from_height: int) -> None:
        step("7. Maturity: the chain pays every holder by itself")
        lineage = await self.client.query("voucher", "lineage", {"root": root})
        wait_s = max(0.0, (lineage["maturity_ms"] - now_ms()) / 1000)
        say(f"• no one sends anything; maturity is {wait_s:.0f} s away, the nodes keep "
            "proposing a block every second …")
        deadline = time.monotonic() + wait_s + SETTLE_TIMEOUT_S
        for voucher_root in (root, second_root):
            while True:
                lineage = await self.client.query("voucher", "lineage", {"root": voucher_root})
                if lineage["live"] == 0:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(f"voucher {voucher_root[:12]}… not settled: {lineage}")
                await asyncio.sleep(0.25)
        head = (await self.client.chain_info()).height
        paid: list[dict[str, Any]] = []
        settled_at = 0
        for height in range(from_height, head + 1):
            block = await self.client.get_block(height)
            for event in block.end_block_events:
                if event.name == "VoucherRedeemed":
                    paid.append(json.loads(event.attrs_json))
                    settled_at = height
        for item in paid:
            holder = self.names.get(item["holder"], item["holder"][:12])
            say(f"• {holder:<7} paid {money(item['amount']):>12} by {self.who('core')} "
                f"(voucher {item['voucher'][:12]}…)")
        total = sum(int(item["amount"]) for item in paid)
        say(f"• {len(paid)} payments, {money(total)} in all, in block {settled_at}'s end-of-block "
            "settlement; every voucher is now REDEEMED")

    async def warehouse(self) -> None:
        step("8. A warehouse receipt pledged and released")
        receipt = await self.ok("warehouse", "warehouse_receipt", "issue", {
            "owner": self.account("dealer"), "commodity": "steel coil", "quantity": 500,
            "unit": "t", "grade": "Q235B", "location": "Ironside bonded warehouse 3",
            "inspection_hash": doc_hash("inspection certificate IC-7781")})
        receipt_id = receipt.result["receipt_id"]
        say(f"• Ironside Logistics issues receipt {receipt_id[:12]}… for 500 t of steel coil "
            f"to Fairway Auto (dealer) ({self.fact(receipt)})")
        receipt = await self.ok("dealer", "warehouse_receipt", "pledge", {
            "receipt_id": receipt_id, "financier": self.account("bank"),
            "principal": 200_000_00, "rate_bps": 500, "due_ms": now_ms() + 30 * DAY_MS})
        receipt = await self.ok("bank", "warehouse_receipt", "approve_pledge",
                                {"receipt_id": receipt_id})
        say(f"• the dealer pledges it to Granite Bank for a {money(200_000_00)} loan at 5.00 %; "
            f"the bank approves and pays out ({self.fact(receipt)})")
        moved = await self.call("dealer", "warehouse_receipt", "transfer", {
            "receipt_id": receipt_id, "to": self.account("tier1a")})
        if moved.ok:
            raise DemoError("a pledged receipt moved")
        say(f"• while pledged the goods cannot be sold: transfer refused, {moved.error_code}")
        receipt = await self.ok("dealer", "warehouse_receipt", "repay_pledge",
                                {"receipt_id": receipt_id})
        state = (await self.client.query("warehouse_receipt", "receipt",
                                         {"receipt_id": receipt_id}))["state"]
        say(f"• the dealer repays {money(receipt.result['paid'])} (principal and a day's "
            f"interest): the receipt is released, now {state} ({self.fact(receipt)})")

    async def rejoin(self) -> None:
        step("9. The dead node is back")
        head = (await self.client.chain_info()).height
        assert self.rejoining is not None
        await self.rejoining
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        async with self.client_of(self.cluster.node(self.victim).client_addr, 60.0) as back:
            while True:
                info = await back.chain_info()
                if info.height >= head:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(f"{self.victim} stuck at height {info.height} < {head}")
                await asyncio.sleep(0.2)
            mine = (await back.get_block(head)).app_hash
        theirs = (await self.client.get_block(head)).app_hash
        if mine != theirs:
            raise DemoError(f"{self.victim} has another app hash at height {head}")
        say(f"• {self.victim} is back: it caught up to height {info.height} from its peers and "
            f"agrees on block {head}'s app hash {mine.hex()[:16]}…")

    async def final_balances(self) -> None:
        step("10. Final balances")
        table = Table()
        for column in ("member", "who", "start", "now", "change"):
            table.add_column(column, justify="right" if column in ("start", "now", "change")
                             else "left")
        for member in SAMPLE_MEMBERS:
            now = await self.balance(member.name)
            if not now and not member.balance:
                continue
            change = now - member.balance
            shown_change = ("+" if change > 0 else "") + money(change) if change else ""
            table.add_row(member.name, f"{member.title} ({member.role})",
                          money(member.balance), money(now), shown_change)
        make_console().print(table)
        await self.refused_read()

    async def refused_read(self) -> None:
        """Each member reads only its own deals: a supplier three tiers up asking for the core
        enterprise's balance is refused; the auditor (who sees everything) is answered."""
        asker = "tier3"
        if asker not in {account.name for account in self.cluster.accounts}:
            return
        addr = self.node.client_addr
        async with LedgerClient(addr, reader=self.cluster.account(asker),
                                chain_id=self.cluster.chain_id,
                                tls=self.cluster.client_tls()) as client:
            try:
                await client.query("cash", "balance", {"account": self.account("core")})
            except LedgerError as exc:
                if exc.status != "PERMISSION_DENIED":
                    raise
                say(f"• {asker} asks for the core enterprise's balance: {exc.status} — "
                    f"{exc.message}")
            else:
                raise DemoError(f"{asker} was allowed to read the core enterprise's balance")
        core = await self.balance("core")
        say(f"• the auditor asks the same and is answered: {money(core)} "
            "(every read is signed by a member and shows what that member may see)")


async def _start(root: str) -> Cluster:
    """A fresh 4-node PBFT cluster."""
    cluster, _ = prepare_cluster(root, nodes=NODES, consensus="pbft", fresh=True,
                                 chain_id="scf-demo")
    await start_cluster(cluster, timeout_s=60.0)
    return cluster


async def _run(root: str) -> None:
    cluster = await _start(root)
    statuses = await node_statuses(cluster)
    make_console().print(status_table(cluster, statuses))
    story = Story(cluster)
    try:
        await story.run()
    finally:
        await story.close()


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = getattr(args, "dir", None) or tempfile.mkdtemp(prefix="scfchain-demo-")
    say(f"scfchain demo — a {NODES}-node consortium network in {root}")
    failure = ""
    try:
        asyncio.run(_run(root))
    except (ClusterError, ClientCommandError, DemoError, ChapterError, LedgerError) as exc:
        failure = str(exc)
    finally:
        _stop(root)
        if not getattr(args, "dir", None) and not getattr(args, "keep", False):
            shutil.rmtree(root, ignore_errors=True)
    if failure:
        say(f"\ndemo FAILED: {failure}")
        return 1
    say(f"\ndemo finished in {time.monotonic() - started:.0f} s: every step above ran against "
        "live nodes over gRPC, and every node process is stopped.")
    return 0


def _stop(root: str) -> None:
    try:
        cluster = load_cluster(root)
    except ClusterError:
        return  # nothing was started
    stopped = stop_cluster(cluster, grace_s=5.0)
    count = sum(1 for outcome in stopped.values() if outcome != "was not running")
    say(f"\nstopped {count} node processes")
