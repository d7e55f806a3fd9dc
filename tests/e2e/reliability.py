"""Shared machinery for the fault tests: clusters (`node.ops.localcluster.LocalCluster`, with
optional proxies on every peer link), a load that remembers what was acknowledged, and the
ledger checks every fault test ends with.

The checks (`check_ledger`): every live node reaches the same height with the same app hash and
block hash; every acknowledged tx is in the chain with a SUCCESS receipt; no tx id succeeds
twice; and the receiver's balance equals the number of successful transfers of 1 (so nothing
was applied twice or half-applied).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError
from node.ops.localcluster import READY_TIMEOUT_S, STOP_GRACE_S, LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, NodeProcess, write_network
from proto import types_pb2
from tests.e2e.proxy import NetworkFaults

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("bank", ("financier",), balance=10_000_000),
    MemberSpec("core", ("core_enterprise",), balance=1_000_000_000),
    MemberSpec("supplier1", ("supplier",)),
]
PAYER, PAYEE = "core", "supplier1"


def consensuses() -> list[str]:
    return ["raft", "pbft"]


def cluster_size(consensus: str) -> int:
    return 4 if consensus == "pbft" else 3


class FaultCluster(LocalCluster):
    """A LocalCluster whose restart with extra environment does not wait for health: the fault
    tests pass a crash point that way, and the node is meant to exit at it."""

    async def restart(self, node_id: str, env: Mapping[str, str] | None = None, *,
                      wait: bool | None = None, grace_s: float = STOP_GRACE_S,
                      timeout_s: float = READY_TIMEOUT_S) -> NodeProcess:
        return await super().restart(node_id, env, wait=not env if wait is None else wait,
                                     grace_s=grace_s, timeout_s=timeout_s)


async def make_cluster(root: str, consensus: str, *, proxied: bool = False,
                       consensus_params: dict[str, int] | None = None,
                       node_options: dict[str, object] | None = None,
                       block: dict[str, int] | None = None) -> FaultCluster:
    params = {"empty_block_interval_ms": 500, **(consensus_params or {})}
    net = write_network(root, nodes=cluster_size(consensus), consensus=consensus,
                        members=MEMBERS, chain_id=f"faults-{consensus}",
                        block=block or {"interval_ms": 20, "txs_max": 200},
                        consensus_params=params, node_options=node_options)
    cluster = FaultCluster(net, NetworkFaults(seed=int.from_bytes(os.urandom(4), "big")))
    if proxied:
        # Every node reaches a peer through that peer's proxy.
        await cluster.proxy_peer_links()
    return cluster


@dataclass
class Load:
    """Batches of 1-unit transfers PAYER -> PAYEE sent round-robin to live nodes."""

    cluster: FaultCluster
    batch_txs: int = 10
    acknowledged: set[bytes] = field(default_factory=set)
    submitted: int = 0
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _nonce: itertools.count[int] = field(default_factory=lambda: itertools.count(
        int.from_bytes(os.urandom(4), "big") << 20))

    def start(self, workers: int = 1) -> None:
        async def all_workers() -> None:
            await asyncio.gather(*(self._worker(i) for i in range(workers)))

        self._task = asyncio.create_task(all_workers())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _worker(self, index: int) -> None:
        net = self.cluster.net
        payer, payee = net.account(PAYER), net.account(PAYEE)
        turn = itertools.count(index)
        while not self._stop.is_set():
            live = self.cluster.live()
            if not live:
                await asyncio.sleep(0.05)
                continue
            node_id = live[next(turn) % len(live)]
            txs = [payer.build_tx(net.chain_id, "cash", "transfer",
                                  {"to": payee.account_id, "amount": 1}, nonce=next(self._nonce))
                   for _ in range(self.batch_txs)]
            self.submitted += len(txs)
            try:
                async with LedgerClient(self.cluster.addr(node_id), timeout_s=4) as client:
                    response = await client.submit(txs, wait=True, timeout_ms=3_000)
            except LedgerError as exc:
                self.refused += 1
                self.errors[exc.status] += 1
                await asyncio.sleep(0.05)
                continue
            for receipt in response.receipts:
                assert receipt.status == types_pb2.SUCCESS, receipt
                self.acknowledged.add(receipt.tx_id)


async def wait_until(predicate, within_s: float, what: str, every_s: float = 0.1) -> None:
    deadline = time.monotonic() + within_s
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s}s: {what}")
        await asyncio.sleep(every_s)


async def heads(cluster: FaultCluster, nodes: list[str] | None = None) -> dict[str, tuple]:
    out = {}
    for node_id in nodes or cluster.live():
        try:
            async with LedgerClient(cluster.addr(node_id), timeout_s=2) as client:
                info = await client.chain_info()
            out[node_id] = (info.height, info.app_hash, info.last_block_hash)
        except LedgerError:
            out[node_id] = None
    return out


async def converge(cluster: FaultCluster, within_s: float = 20.0) -> tuple[int, bytes]:
    """Wait until every node is alive and all heads are equal (with no load running)."""
    found: dict[str, tuple] = {}

    async def equal() -> bool:
        nonlocal found
        found = await heads(cluster, cluster.ids)
        values = set(found.values())
        return None not in values and len(values) == 1

    try:
        await wait_until(equal, within_s, "every node at the same height and app hash")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {found}") from None
    height, app_hash, _ = next(iter(found.values()))
    return height, app_hash


def reader(net: NetworkLayout) -> LedgerReader:
    """Who the fault tests read as: the payee, party to every transfer they send (a tx it may
    not see would still count: reduced, it keeps its id and status)."""
    return LedgerReader(net.account(PAYEE), net.chain_id)


@dataclass(frozen=True, slots=True)
class LedgerReader:
    account: Account
    chain_id: str

    def client(self, addr: str, timeout_s: float) -> LedgerClient:
        return LedgerClient(addr, timeout_s=timeout_s, reader=self.account,
                            chain_id=self.chain_id)


async def read_chain(addr: str, height: int, as_: LedgerReader) -> list[types_pb2.CommittedBlock]:
    """Blocks 1..height from one node, over one Subscribe stream, read as `as_`."""
    blocks: list[types_pb2.CommittedBlock] = []
    if height == 0:
        return blocks
    async with as_.client(addr, timeout_s=30) as client:
        stream = client.subscribe(from_height=1)
        async for block in stream:
            blocks.append(block)
            if block.block.header.height >= height:
                break
        await stream.aclose()
    assert [b.block.header.height for b in blocks] == list(range(1, height + 1))
    return blocks


async def check_ledger(cluster: FaultCluster, load: Load | None,
                       within_s: float = 20.0) -> dict[str, int]:
    """The invariants every fault test ends with; returns figures for the report."""
    height, app_hash = await converge(cluster, within_s)
    reference = cluster.ids[0]
    blocks = await read_chain(cluster.addr(reference), height, reader(cluster.net))
    successes: Counter[bytes] = Counter()
    for block in blocks:
        for receipt in block.receipts:
            if receipt.status == types_pb2.SUCCESS:
                successes[receipt.tx_id] += 1
    twice = [tx_id.hex() for tx_id, n in successes.items() if n > 1]
    assert not twice, f"txs executed twice: {twice[:5]}"
    net = cluster.net
    for node_id in cluster.ids:  # the same chain everywhere, byte for byte at the head
        async with reader(net).client(cluster.addr(node_id), timeout_s=10) as client:
            block = await client.get_block(height)
            assert block.app_hash == app_hash and block.block_hash == blocks[-1].block_hash
            balance = await client.query("cash", "balance",
                                         {"account": net.account(PAYEE).account_id})
            assert balance["balance"] == len(successes), (node_id, balance, len(successes))
    figures = {"height": height, "committed_txs": len(successes)}
    if load is not None:
        lost = load.acknowledged - set(successes)
        assert not lost, f"{len(lost)} acknowledged txs lost, e.g. {next(iter(lost)).hex()}"
        figures |= {"acknowledged": len(load.acknowledged), "lost": 0,
                    "submitted": load.submitted, "refused_batches": load.refused}
    return figures


async def wait_exit(proc: NodeProcess, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while proc.alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.layout.node_id} did not exit within {within_s}s")
        await asyncio.sleep(0.05)
    assert proc.process is not None
    return proc.process.returncode
