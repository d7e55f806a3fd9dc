"""A node added to a filled 4-node PBFT chain joins from a state snapshot, not by replaying
every block, and then agrees on every later block and app hash — also when one validator serves
corrupted chunks or a manifest of another app hash (it is named in the joining node's log and
the chunks come from the others), and when the joining node crashes in the middle of the
restore (the next start empties the half-restored store and restores again).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from datetime import datetime

import pytest

from node.client.ledger import LedgerClient, LedgerError
from node.ops.localnet import NodeLayout, NodeProcess, write_joining_node, write_network
from tests.e2e.conftest import MEMBERS, Cluster, assert_converged, chain_info, wait_height

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SNAPSHOT_INTERVAL = 20
# Small chunks: a restore asks every signer for some, so a lying one is always asked.
SNAPSHOTS = {"snapshots.interval": SNAPSHOT_INTERVAL, "snapshots.sync_min_blocks": 10,
             "snapshots.chunk_bytes": 4_096}


@pytest.fixture
def pbft4(tmp_path):  # type: ignore[no-untyped-def]
    net = write_network(
        str(tmp_path), nodes=4, consensus="pbft", members=MEMBERS, chain_id="e2e-state-sync",
        block={"interval_ms": 20},
        consensus_params={"empty_block_interval_ms": 100, "view_change_timeout_ms": 2_000},
        node_options=SNAPSHOTS,
    )
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def _fill(cluster: Cluster, transfers: int) -> None:
    """Committed transfers, so the snapshot holds more than genesis's state."""
    net = cluster.net
    bank, payee = net.account("bank"), net.account("supplier1")
    txs = [bank.build_tx(net.chain_id, "cash", "transfer",
                         {"to": payee.account_id, "amount": 1}, nonce=i)
           for i in range(transfers)]
    async with LedgerClient(cluster.local.addr("node1")) as client:
        for start in range(0, transfers, 500):
            for attempt in range(20):  # a fresh PBFT cluster may still be choosing its view
                try:
                    receipts = await client.submit_and_wait(txs[start:start + 500])
                    break
                except LedgerError as exc:
                    if exc.status != "UNAVAILABLE" or attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
            assert all(r.ok for r in receipts), receipts[:1]


def _log(layout: NodeLayout) -> str:
    with open(layout.log_file, errors="replace") as handle:
        return handle.read()


async def _join(cluster: Cluster, env: dict[str, str] | None = None,
                node_id: str = "node5") -> NodeProcess:
    net = cluster.net
    joined = write_joining_node(net.root, node_id, genesis_path=net.genesis_path,
                                consensus="pbft", node_options=SNAPSHOTS)
    node5 = NodeProcess(joined, env=env or {})
    node5.start()
    return node5


async def _joined_from_snapshot(cluster: Cluster, node5: NodeProcess) -> None:
    await node5.wait_healthy(60)
    addr5 = node5.layout.client_addr
    info = await chain_info(addr5)
    assert info.base_height >= SNAPSHOT_INTERVAL and info.base_height % SNAPSHOT_INTERVAL == 0
    assert "state sync: restored height" in _log(node5.layout)
    head = (await chain_info(cluster.local.addr("node1"))).height
    await wait_height(addr5, head, 30)
    addrs = [cluster.local.addr(f"node{i}") for i in range(1, 5)] + [addr5]
    await assert_converged(addrs, 30, cluster.net.account("auditor"))
    # Balances read on the joined node match a validator's (read as their owner).
    payee = cluster.net.account("supplier1")
    args = {"account": payee.account_id}
    async with (LedgerClient(addr5, reader=payee) as joined,
                LedgerClient(addrs[0], reader=payee) as validator):
        assert await joined.query("cash", "balance", args) == (
            await validator.query("cash", "balance", args))


async def _filled(cluster: Cluster, env: dict[str, dict[str, str]] | None = None) -> None:
    await cluster.local.start(env=env, timeout_s=30)
    await cluster.local.wait_ready(timeout_s=30)
    await _fill(cluster, 600)
    await wait_height(cluster.local.addr("node1"), 2 * SNAPSHOT_INTERVAL + 3, 60)
    # Every validator has written the snapshot at 2 * interval by now, or soon.
    deadline = time.monotonic() + 30
    while not all(os.path.isdir(os.path.join(os.path.dirname(p.layout.config_path), "data",
                                             "snapshots", str(2 * SNAPSHOT_INTERVAL)))
                  for p in cluster.procs):
        assert time.monotonic() < deadline, "the validators wrote no snapshot"
        await asyncio.sleep(0.2)


async def test_a_node_added_to_a_filled_chain_joins_from_a_snapshot(pbft4: Cluster) -> None:
    await _filled(pbft4)
    node5 = await _join(pbft4)
    try:
        await _joined_from_snapshot(pbft4, node5)
        # Every honest validator wrote the very same manifest: no disagreement was seen.
        assert "offer a snapshot" not in _log(node5.layout)
    finally:
        node5.stop()


@pytest.mark.parametrize(("lie", "logged"), [
    ("bad-snapshot-chunk", "node2 served a bad chunk"),
    ("wrong-snapshot", "['node2'] offer a snapshot"),
])
async def test_a_lying_snapshot_server_is_named_and_avoided(
    pbft4: Cluster, lie: str, logged: str,
) -> None:
    await _filled(pbft4, env={"node2": {"SCFCHAIN_BYZANTINE": lie}})
    liar = next(p.layout for p in pbft4.procs if p.layout.node_id == "node2")
    for joiner in ("node5", "node6", "node7"):
        node = await _join(pbft4, node_id=joiner)
        try:
            await _joined_from_snapshot(pbft4, node)
            text = _log(node.layout)
        finally:
            node.stop()
        if logged in text or not _chosen_before_written(text, _log(liar)):
            break
    assert logged in text


_LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def _chosen_before_written(joiner_log: str, liar_log: str) -> bool:
    """Whether the joining node chose its snapshot before the liar had written that height
    (the chain moves on: validators write a height's snapshot within tens of ms of each other,
    and a joiner asking in between restores from the others, never meeting the lie)."""
    chosen = re.search(r"^(\S+ \S+) .*state sync: restoring height (\d+) ", joiner_log, re.M)
    assert chosen is not None, "the joining node logged no restore"
    written = re.search(rf"^(\S+ \S+) .*snapshot at height {chosen.group(2)}:", liar_log, re.M)
    return written is None or (datetime.strptime(written.group(1), _LOG_TIME)
                               >= datetime.strptime(chosen.group(1), _LOG_TIME))


async def test_a_crash_during_the_restore_restarts_it(pbft4: Cluster) -> None:
    await _filled(pbft4)
    node5 = await _join(pbft4, env={"SCFCHAIN_CRASH_POINT": "during_snapshot_restore"})
    try:
        deadline = time.monotonic() + 60
        while node5.alive():
            assert time.monotonic() < deadline, "node5 never reached the crash point"
            await asyncio.sleep(0.1)
        assert "crash point during_snapshot_restore reached" in _log(node5.layout)
        node5 = NodeProcess(node5.layout)
        node5.start()
        await _joined_from_snapshot(pbft4, node5)
        assert "did not finish: emptying the store" in _log(node5.layout)
    finally:
        node5.stop()


async def test_a_raft_validator_back_from_an_outage_restores_a_snapshot(tmp_path) -> None:
    net = write_network(
        str(tmp_path), nodes=3, consensus="raft", members=MEMBERS, chain_id="e2e-raft-sync",
        block={"interval_ms": 20}, consensus_params={"empty_block_interval_ms": 100},
        node_options=SNAPSHOTS,
    )
    cluster = Cluster(net)
    try:
        await cluster.local.start(timeout_s=30)
        await cluster.local.wait_ready(timeout_s=30)
        cluster.local.stop_node("node3")
        await _fill(cluster, 600)
        node1 = cluster.local.addr("node1")
        await wait_height(node1, (await chain_info(node1)).height + 3 * SNAPSHOT_INTERVAL, 60)
        await cluster.local.restart("node3")
        node3 = cluster.local.procs["node3"]
        assert "state sync: restored height" in _log(node3.layout)
        assert (await chain_info(cluster.local.addr("node3"))).base_height > 0
        await assert_converged([cluster.local.addr(f"node{i}") for i in (1, 2, 3)], 30,
                               net.account("auditor"))
        # It votes again: with node1 stopped, node2 and node3 still commit.
        cluster.local.stop_node("node1")
        node2 = cluster.local.addr("node2")
        await wait_height(node2, (await chain_info(node2)).height + 3, 30)
    finally:
        cluster.stop()


async def test_a_running_node_that_falls_far_behind_restarts_from_a_snapshot(
    pbft4: Cluster,
) -> None:
    await _filled(pbft4)
    net = pbft4.net
    joined = write_joining_node(net.root, "node5", genesis_path=net.genesis_path,
                                consensus="pbft",
                                node_options={**SNAPSHOTS, "snapshots.fall_behind_check_s": 1})
    node5 = NodeProcess(joined)
    node5.start()
    try:
        await node5.wait_healthy(60)
        addr5 = joined.client_addr
        await wait_height(addr5, (await chain_info(pbft4.local.addr("node1"))).height, 30)
        restored_before = _log(joined).count("state sync: restored height")
        # Frozen (as a stalled VM would be) while the chain moves ten snapshots on: when it
        # resumes, its next check finds it far behind before replay could close the gap.
        pid = node5.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            node1 = pbft4.local.addr("node1")
            await wait_height(node1, (await chain_info(node1)).height + 10 * SNAPSHOT_INTERVAL,
                              90)
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 60
        while _log(joined).count("state sync: restored height") <= restored_before:
            assert node5.alive(), f"node5 exited ({node5.process and node5.process.poll()})"
            assert time.monotonic() < deadline, "node5 never restarted from a snapshot"
            await asyncio.sleep(0.2)
        assert "restarting from it" in _log(joined)
        assert node5.alive()  # the same process: the node was rebuilt in place
        await wait_healthy_again(addr5)
        addrs = [pbft4.local.addr(f"node{i}") for i in range(1, 5)] + [addr5]
        await assert_converged(addrs, 30, net.account("auditor"))
    finally:
        node5.stop()


async def wait_healthy_again(addr: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            await chain_info(addr)
            return
        except Exception:  # the node is between its restore and serving again
            assert time.monotonic() < deadline, f"{addr} did not serve again"
            await asyncio.sleep(0.2)
