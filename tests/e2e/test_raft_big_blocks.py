"""A Raft follower that missed ~100 MB of near-maximum txs (~27 blocks of ~4 MB) catches up
within 20 s of its restart, and nobody calls an election while it does.

Before issue 13 one AppendEntries carried up to 64 whole blocks with no byte bound: 77 MB,
over the 64 MiB peer message limit, so it was never sent; the follower waited 55-212 s for log
compaction to move it onto block fetch, while heartbeats queued behind bulk traffic and terms
climbed. Each tx here is a transfer with a ~60 KB memo: over the memo limit, so it executes as
a FAILED receipt, but it is admitted and fills its block like any big tx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from node.client.ledger import LedgerClient
from node.ops.localnet import write_network
from tests.e2e.conftest import MEMBERS, Cluster
from tests.e2e.test_raft_cluster import wait_leader

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TX_MEMO_CHARS = 60_000
TXS = 1_650  # ~100 MB
SUBMIT_CHUNK = 150  # ~9 MB per request
CATCH_UP_WITHIN_S = 20.0
log = logging.getLogger(__name__)


@pytest.fixture
def raft3(tmp_path):
    net = write_network(str(tmp_path), nodes=3, consensus="raft", members=MEMBERS,
                        chain_id="e2e-raft-big", block={"interval_ms": 50})
    cluster = Cluster(net)
    try:
        yield cluster
    finally:
        cluster.stop()


async def _infos(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """(height, term) of every live node."""
    out = {}
    for proc in cluster.procs:
        if proc.alive():
            async with LedgerClient(proc.layout.client_addr, timeout_s=5) as client:
                info = await client.chain_info()
            out[proc.layout.node_id] = (int(info.height), int(info.round))
    return out


async def test_follower_behind_by_100_mb_of_big_blocks_catches_up_within_20s_without_elections(
    raft3,
) -> None:
    cluster = raft3
    await cluster.start()
    leader_id, _ = await wait_leader(cluster, set(), 15)
    by_id = {p.layout.node_id: p for p in cluster.procs}
    follower = next(n for n in by_id if n != leader_id)
    by_id[follower].kill()

    net = cluster.net
    core, s1 = net.account("core"), net.account("supplier1")
    txs = [core.build_tx(net.chain_id, "cash", "transfer",
                         {"to": s1.account_id, "amount": 1, "memo": "m" * TX_MEMO_CHARS},
                         nonce=i)
           for i in range(TXS)]
    total_bytes = sum(tx.ByteSize() for tx in txs)
    async with LedgerClient(by_id[leader_id].layout.client_addr, timeout_s=120) as client:
        for start in range(0, TXS, SUBMIT_CHUNK):
            await client.submit(txs[start : start + SUBMIT_CHUNK], wait=True, timeout_ms=90_000)
    before = await _infos(cluster)
    target = max(height for height, _ in before.values())
    terms = {term for _, term in before.values()}
    assert len(terms) == 1, before
    log.warning("committed %d txs, %.1f MB, up to height %d while %s was down",
                TXS, total_bytes / 1e6, target, follower)
    assert target >= 20, f"expected ~27 blocks of ~4 MB, got height {target}"

    # Only what the follower logs from its restart on: in the first election it may well have
    # campaigned itself (a CI run's follower did, for term 1, when a slow disk held its vote).
    log_from = os.path.getsize(by_id[follower].layout.log_file)
    started = time.monotonic()
    by_id[follower].start()
    await by_id[follower].wait_healthy()
    while True:
        infos = await _infos(cluster)
        height, _ = infos.get(follower, (0, 0))
        if height >= target:
            break
        assert {term for _, term in infos.values()} <= terms, f"a term changed: {infos}"
        assert time.monotonic() - started < CATCH_UP_WITHIN_S, (
            f"{follower} at {height} of {target} after {CATCH_UP_WITHIN_S:.0f} s"
        )
        await asyncio.sleep(0.2)
    took = time.monotonic() - started
    after = await _infos(cluster)
    log.warning("%s caught up %d blocks in %.1f s; (height, term) per node: %s", follower,
                target, took, after)
    assert {term for _, term in after.values()} == terms, f"a term changed: {before} {after}"
    with open(by_id[follower].layout.log_file) as handle:
        handle.seek(log_from)
        # A pre-vote before the leader's first heartbeat changes no term; a real campaign would.
        campaigns = [line for line in handle if " candidate for term" in line]
    assert not campaigns, campaigns[:3]
