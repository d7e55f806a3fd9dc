"""Crash points: a node exits (`os._exit(97)`) exactly at a named point while load runs, is
restarted without the crash point, and the ledger must be whole.

One cluster per consensus goes through every point in turn (starting node processes is the
slow part, so they are shared), each on another node, and after each point checks: no
acknowledged tx lost, no tx executed twice, the receiver's balance equals the number of
successful transfers, every node at the same height, app hash and block hash, and the crashed
node rejoined by itself (no manual repair). `during_state_transfer` needs a node that is behind:
it is stopped while the cluster advances past Raft's log retention (tiny
`log_compaction_entries`), then restarted with the crash point armed so it dies mid catch-up.
"""

from __future__ import annotations

import asyncio

import pytest

from node.faults.crashpoints import EXIT_CODE
from tests.e2e.reliability import (
    FaultCluster,
    Load,
    check_ledger,
    consensuses,
    heads,
    make_cluster,
    wait_exit,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# point -> hit count at which the node exits (counted from the node's start)
POINTS = {
    "after_persist_before_send": 30,
    "mid_block_commit": 8,
    "after_commit_before_reply": 8,
}
SMALL_LOG = {"log_compaction_entries": 16, "log_retained_entries": 4}
# PBFT: checkpoints every 4 blocks, watermark window 8, so a node 24 blocks behind must be
# brought up to date by state transfer.
SMALL_PBFT_WINDOW = {"checkpoint_interval_blocks": 4, "watermark_window_blocks": 8}
BEHIND_BLOCKS = 24


async def crash_and_recover(cluster: FaultCluster, victim: str, point: str,
                            hits: int) -> dict[str, int]:
    load = Load(cluster)
    try:
        # Arm the victim: kill it and start it with the crash point set.
        cluster.procs[victim].kill()
        await cluster.restart(victim, {"SCFCHAIN_CRASH_POINT": f"{point}:{hits}"})
        load.start()
        code = await wait_exit(cluster.procs[victim], 40)
        print(f"{point}: {victim} exited with {code}", flush=True)
        assert code == EXIT_CODE, f"{point}: {victim} exited with {code}, not at the point"
        before = len(load.acknowledged)

        async def more() -> bool:  # the others keep committing without it (a PBFT primary's
            return len(load.acknowledged) > before  # crash costs a view change first)

        await wait_until(more, 15, f"{point}: the cluster committing without {victim}")
        await cluster.restart(victim)  # no crash point: it must recover on its own
        print(f"{point}: {victim} restarted", flush=True)
        await asyncio.sleep(0.5)
    finally:
        await load.stop()
    figures = await check_ledger(cluster, load)
    assert figures["acknowledged"] > 50, (point, figures)
    return figures


async def crash_during_state_transfer(cluster: FaultCluster) -> dict[str, int]:
    leader = await cluster.wait_leader()
    victim = next(n for n in reversed(cluster.ids) if n != leader)
    cluster.procs[victim].kill()
    stopped_at = (await heads(cluster, [leader]))[leader][0]
    load = Load(cluster)
    load.start()
    try:
        async def far_ahead() -> bool:
            head = (await heads(cluster, [leader]))[leader]
            return head is not None and head[0] > stopped_at + BEHIND_BLOCKS

        await wait_until(far_ahead, 30, "the cluster advancing past the log retention")
        print(f"during_state_transfer: {victim} restarting armed", flush=True)
        await cluster.restart(victim, {"SCFCHAIN_CRASH_POINT": "during_state_transfer:3"})
        code = await wait_exit(cluster.procs[victim], 40)
        print(f"during_state_transfer: {victim} exited with {code}", flush=True)
        assert code == EXIT_CODE, f"{victim} exited with {code}, not during state transfer"
        await cluster.restart(victim)
        await asyncio.sleep(1.0)
    finally:
        await load.stop()
    figures = await check_ledger(cluster, load)
    with open(cluster.procs[victim].layout.log_file) as handle:
        assert "syncing from" in handle.read(), "the victim never needed a state transfer"
    return figures


@pytest.mark.parametrize("consensus", consensuses())
async def test_every_crash_point_in_turn_loses_nothing(tmp_path, consensus) -> None:
    params = SMALL_LOG if consensus == "raft" else SMALL_PBFT_WINDOW
    cluster = await make_cluster(str(tmp_path), consensus, consensus_params=params)
    results = {}
    try:
        await cluster.start()
        await cluster.wait_leader()
        for victim, (point, hits) in zip(cluster.ids, sorted(POINTS.items()), strict=False):
            results[point] = await crash_and_recover(cluster, victim, point, hits)
        results["during_state_transfer"] = await crash_during_state_transfer(cluster)
    finally:
        await cluster.stop()
    print(f"\ncrash points ({consensus}): {results}")
    assert set(results) == {*POINTS, "during_state_transfer"}
