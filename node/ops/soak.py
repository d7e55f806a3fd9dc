"""`scfchain soak`: a live local cluster under steady load while a seeded schedule kills,
restarts, partitions, slows and heals nodes; at the end, the ledger checks and a summary.

    scfchain soak --minutes 30 --consensus raft --seed 7 --out soak-raft
    scfchain soak --minutes 8 --outage-s 300 --out soak-outage   # a 5-minute outage first

Every peer link passes through a TCP proxy (`node/ops/netfaults.py`) the schedule controls. At most
f nodes are impaired at a time (crashed or cut off), so the cluster should keep committing.
Checks, continuously: agreement (every node's block at the lowest common height has one hash).
After every heal: convergence (all nodes hold the cluster's height, same hash) within 30 s. At
the end: every acknowledged tx is committed, no tx succeeded twice, the receiver's balance
equals the number of successful transfers, and every node has the same height and app hash.
A node that exits on its own (not killed by the schedule) is restarted and counted as a
failure: nodes must need no manual repair. Writes `summary.json` and `summary.md` to --out.
Exit status 1 if any check failed.
Processes are stopped by PID, always.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, write_network
from node.ops.netfaults import NetworkFaults
from proto import types_pb2

MEMBERS = [
    MemberSpec("admin", ("admin",)),
    MemberSpec("payer", ("core_enterprise",), balance=10**15),
    MemberSpec("payee", ("supplier",)),
]
CONVERGE_S = 30.0
FAULT_KINDS = ("kill", "isolate", "isolate_leader", "loss", "delay", "kill_leader")


@dataclass
class SoakStats:
    started_s: float = field(default_factory=time.monotonic)
    faults: Counter[str] = field(default_factory=Counter)
    acknowledged: set[bytes] = field(default_factory=set)
    submitted: int = 0
    refused_batches: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    agreement_checks: int = 0
    disagreements: list[str] = field(default_factory=list)
    converge_s: list[float] = field(default_factory=list)
    not_converged: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    rejoins: list[dict[str, Any]] = field(default_factory=list)

    def log(self, text: str) -> None:
        line = f"{time.monotonic() - self.started_s:8.1f}s {text}"
        self.events.append(line)
        print(line, flush=True)


def reader(cluster: LocalCluster) -> Account:
    """Who the soak's reads are signed by: the payee, party to every transfer (a block's hashes
    and receipt statuses show through whatever the reader may see)."""
    return cluster.net.account("payee")


def reading_client(cluster: LocalCluster, addr: str, timeout_s: float) -> LedgerClient:
    return LedgerClient(addr, timeout_s=timeout_s, reader=reader(cluster),
                        chain_id=cluster.net.chain_id, tls=cluster.net.client_tls())


async def build(root: str, consensus: str, seed: int) -> LocalCluster:
    nodes = 4 if consensus == "pbft" else 3
    net = write_network(root, nodes=nodes, consensus=consensus, members=MEMBERS,
                        chain_id=f"soak-{consensus}", block={"interval_ms": 50, "txs_max": 500},
                        consensus_params={"empty_block_interval_ms": 1_000})
    cluster = LocalCluster(net, NetworkFaults(seed=seed))
    await cluster.proxy_peer_links()
    return cluster


async def load_worker(cluster: LocalCluster, stats: SoakStats, stop: asyncio.Event,
                      index: int, nonces: itertools.count[int]) -> None:
    net = cluster.net
    payer, payee = net.account("payer"), net.account("payee")
    turn = itertools.count(index)
    while not stop.is_set():
        live = cluster.live()
        if not live:
            await asyncio.sleep(0.1)
            continue
        node_id = live[next(turn) % len(live)]
        txs = [payer.build_tx(net.chain_id, "cash", "transfer",
                              {"to": payee.account_id, "amount": 1}, nonce=next(nonces))
               for _ in range(20)]
        stats.submitted += len(txs)
        try:
            async with LedgerClient(cluster.addr(node_id), timeout_s=8,
                                    tls=cluster.net.client_tls()) as client:
                response = await client.submit(txs, wait=True, timeout_ms=5_000)
        except LedgerError as exc:
            stats.refused_batches += 1
            stats.refusals[exc.status] += 1
            await asyncio.sleep(0.1)
            continue
        for receipt in response.receipts:
            if receipt.status == types_pb2.SUCCESS:
                stats.acknowledged.add(receipt.tx_id)
            else:
                stats.refusals[f"receipt:{receipt.error_code}"] += 1


async def auditor(cluster: LocalCluster, stats: SoakStats, stop: asyncio.Event) -> None:
    while not stop.is_set():
        answers = {n: await cluster.info(n) for n in cluster.live()}
        infos = {n: i for n, i in answers.items() if i is not None}
        if len(infos) >= 2:
            height = min(i.height for i in infos.values())
            hashes = {}
            for node_id in infos:
                with contextlib.suppress(LedgerError):
                    async with reading_client(cluster, cluster.addr(node_id), 2) as client:
                        hashes[node_id] = (await client.get_block(height)).block_hash.hex()
            if height and len(set(hashes.values())) > 1:
                stats.disagreements.append(f"height {height}: {hashes}")
                stats.log(f"DISAGREEMENT at height {height}: {hashes}")
            stats.agreement_checks += 1
        await asyncio.sleep(1.0)


async def converge(cluster: LocalCluster, stats: SoakStats, within_s: float) -> bool:
    """All nodes at (at least) the highest height seen now, with one block hash there."""
    started = time.monotonic()
    infos = [await cluster.info(n) for n in cluster.ids]
    target = max((i.height for i in infos if i is not None), default=0)
    while time.monotonic() - started < within_s:
        hashes = set()
        for node_id in cluster.ids:
            try:
                async with reading_client(cluster, cluster.addr(node_id), 2) as client:
                    hashes.add((await client.get_block(target)).block_hash)
            except LedgerError:
                hashes.add(b"missing")
        if len(hashes) == 1 and b"missing" not in hashes:
            stats.converge_s.append(time.monotonic() - started)
            return True
        await asyncio.sleep(0.2)
    stats.not_converged.append(f"height {target} not reached by all within {within_s}s")
    stats.log(f"NOT CONVERGED within {within_s}s at height {target}")
    return False


async def fault_schedule(cluster: LocalCluster, stats: SoakStats, rng: random.Random,
                         end_s: float) -> None:
    while time.monotonic() < end_s - 20:
        await asyncio.sleep(rng.uniform(3, 8))  # quiet time
        kind = rng.choice(FAULT_KINDS)
        leader = await cluster.leader()
        victim = (leader if kind.endswith("leader") and leader else rng.choice(cluster.ids))
        hold_s = rng.uniform(3, 10)
        stats.faults[kind] += 1
        stats.log(f"fault {kind} on {victim if kind not in ('loss', 'delay') else 'all links'} "
                  f"for {hold_s:.1f}s")
        if kind in ("kill", "kill_leader"):
            cluster.kill(victim)
            await asyncio.sleep(hold_s)
            with contextlib.suppress(RuntimeError, TimeoutError):
                await cluster.restart(victim)
        elif kind in ("isolate", "isolate_leader"):
            cluster.faults.isolate(victim, cluster.ids)
            await asyncio.sleep(hold_s)
            cluster.faults.heal()
        elif kind == "loss":
            cluster.faults.set_default(loss=rng.choice((0.1, 0.3, 0.5)))
            await asyncio.sleep(hold_s)
            cluster.faults.heal()
        else:
            cluster.faults.set_default(delay_ms=75, jitter_ms=50)
            await asyncio.sleep(hold_s)
            cluster.faults.heal()
        for node_id, proc in cluster.procs.items():  # a node that died on its own
            if not proc.alive():
                stats.log(f"{node_id} is down (exit {proc.process and proc.process.returncode});"
                          " restarting")
                stats.faults["unplanned_exit"] += 1
                cluster.start_node(node_id)
        await converge(cluster, stats, CONVERGE_S)


REJOIN_WITHIN_S = 5.0


async def long_outage(cluster: LocalCluster, stats: SoakStats, outage_s: float) -> None:
    """Kill a follower for `outage_s` under load (no other fault meanwhile), restart it, and time
    (1) how long after its restart it applies its first new block: its peers must redial it
    within about a second, however long it was away; (2) how long until it holds every block
    the others had at its restart. (2) also counts replaying every block it missed, so under
    load it grows with the outage (state snapshots would bound it) and is reported, not judged.
    """
    await asyncio.sleep(10)  # a victim with some history
    leader = await cluster.leader()
    victim = next(n for n in cluster.ids if n != leader)
    before = await cluster.info(victim)
    height0 = before.height if before is not None else 0
    stats.log(f"long outage: {victim} down for {outage_s:.0f}s at height {height0}")
    cluster.kill(victim)
    await asyncio.sleep(outage_s)
    infos = [await cluster.info(n) for n in cluster.live()]
    target = max((i.height for i in infos if i is not None), default=0)
    started = time.monotonic()
    cluster.start_node(victim)
    first_block_s: float | None = None
    while time.monotonic() - started < 4 * CONVERGE_S:
        info = await cluster.info(victim)
        if info is not None and info.height > height0 and first_block_s is None:
            first_block_s = time.monotonic() - started
        if info is not None and info.height >= target:
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - started
    stats.rejoins.append({"node": victim, "outage_s": round(outage_s, 1),
                          "missed_blocks": target - height0,
                          "first_block_s": round(first_block_s or took, 2),
                          "at_head_s": round(took, 2)})
    stats.log(f"long outage: {victim} applied a new block {first_block_s or took:.1f}s and held "
              f"all {target - height0} missed blocks {took:.1f}s after its restart")


async def final_checks(cluster: LocalCluster, stats: SoakStats) -> dict[str, Any]:
    cluster.faults.heal()
    for node_id, proc in cluster.procs.items():
        if not proc.alive():
            cluster.start_node(node_id)
    await cluster.wait_healthy(timeout_s=60)
    converged = await converge(cluster, stats, 60)
    infos = {n: await cluster.info(n) for n in cluster.ids}
    heights = {n: i.height for n, i in infos.items() if i}
    height = min(heights.values())
    app_hashes = set()
    for node_id in cluster.ids:
        async with reading_client(cluster, cluster.addr(node_id), 10) as client:
            app_hashes.add((await client.get_block(height)).app_hash.hex())
    successes: Counter[bytes] = Counter()
    async with reading_client(cluster, cluster.addr(cluster.ids[0]), 60) as client:
        stream = client.subscribe(from_height=1)
        async for block in stream:
            successes.update(r.tx_id for r in block.receipts if r.status == types_pb2.SUCCESS)
            if block.block.header.height >= height:
                break
        await stream.aclose()
        balance = (await client.query("cash", "balance", {
            "account": cluster.net.account("payee").account_id}))["balance"]
    lost = stats.acknowledged - set(successes)
    twice = [t for t, n in successes.items() if n > 1]
    return {
        "converged": converged,
        "height": height,
        "app_hashes_equal": len(app_hashes) == 1,
        "committed_txs": len(successes),
        "acknowledged_txs": len(stats.acknowledged),
        "lost_txs": len(lost),
        "executed_twice": len(twice),
        "balance_matches": balance == len(successes),
    }


async def soak(minutes: float, consensus: str, seed: int, root: str, out: str,
               workers: int, outage_s: float = 0.0) -> int:
    rng = random.Random(seed)
    stats = SoakStats()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: the finally below kills by PID
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    cluster = await build(root, consensus, seed)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    result: dict[str, Any] = {}
    try:
        await cluster.start(timeout_s=60)
        stats.log(f"cluster up: {consensus}, {len(cluster.ids)} nodes, seed {seed}, {root}")
        end_s = time.monotonic() + minutes * 60
        nonces = itertools.count(1)
        tasks = [asyncio.create_task(load_worker(cluster, stats, stop, i, nonces))
                 for i in range(workers)]
        tasks.append(asyncio.create_task(auditor(cluster, stats, stop)))
        if outage_s > 0:
            await long_outage(cluster, stats, outage_s)
        await fault_schedule(cluster, stats, rng, end_s)
        await asyncio.sleep(max(0.0, end_s - time.monotonic()))
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.log("load stopped; final checks")
        result = await final_checks(cluster, stats)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await cluster.stop()
    ok = (result.get("converged") and result.get("app_hashes_equal")
          and result.get("lost_txs") == 0 and result.get("executed_twice") == 0
          and result.get("balance_matches") and not stats.disagreements
          and not stats.not_converged and not stats.faults["unplanned_exit"]
          and all(r["first_block_s"] <= REJOIN_WITHIN_S for r in stats.rejoins))
    summary = {
        "consensus": consensus, "seed": seed, "minutes": minutes, "nodes": len(cluster.ids),
        "ok": bool(ok), "faults_injected": dict(stats.faults),
        "faults_total": sum(v for k, v in stats.faults.items() if k != "unplanned_exit"),
        "txs_submitted": stats.submitted, "refused_batches": stats.refused_batches,
        "refusals": dict(stats.refusals), "agreement_checks": stats.agreement_checks,
        "disagreements": stats.disagreements, "not_converged": stats.not_converged,
        "converge_after_heal_s_max": round(max(stats.converge_s, default=0.0), 2),
        "rejoins_after_long_outage": stats.rejoins,
        **result, "events": stats.events,
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    with open(os.path.join(out, "summary.md"), "w") as handle:
        handle.write(_markdown(summary))
    print(_markdown(summary))
    return 0 if ok else 1


def _markdown(s: dict[str, Any]) -> str:
    rows = [("result", "PASS" if s["ok"] else "FAIL"), ("consensus", s["consensus"]),
            ("nodes", s["nodes"]), ("minutes", s["minutes"]), ("seed", s["seed"]),
            ("faults injected", f"{s['faults_total']} {s['faults_injected']}"),
            ("txs submitted", s["txs_submitted"]),
            ("txs acknowledged", s.get("acknowledged_txs")),
            ("txs committed", s.get("committed_txs")), ("txs lost", s.get("lost_txs")),
            ("txs executed twice", s.get("executed_twice")),
            ("final height", s.get("height")), ("app hashes equal", s.get("app_hashes_equal")),
            ("agreement checks / disagreements",
             f"{s['agreement_checks']} / {len(s['disagreements'])}"),
            ("slowest convergence after heal (s)", s["converge_after_heal_s_max"]),
            ("heals not converged in 30 s", len(s["not_converged"])),
            *((f"after a {r['outage_s']:.0f} s outage of {r['node']}: first new block (s, must "
               f"be <= {REJOIN_WITHIN_S:.0f}) / all {r['missed_blocks']} missed blocks (s)",
               f"{r['first_block_s']} / {r['at_head_s']}") for r in s["rejoins_after_long_outage"]),
            ("nodes that exited on their own", s["faults_injected"].get("unplanned_exit", 0)),
            ("refused batches", f"{s['refused_batches']} {s['refusals']}")]
    lines = [f"# Soak: {s['consensus']}, {s['minutes']} min", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("soak", help="a live cluster under load and seeded faults")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--consensus", choices=("raft", "pbft"), default="raft")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=3, help="load clients")
    parser.add_argument("--dir", help="cluster directory (default: a new temporary one)")
    parser.add_argument("--out", default="soak-report", help="where summary.json/md go")
    parser.add_argument("--outage-s", type=float, default=0.0,
                        help="first kill a follower for this long under load, then time its "
                             "rejoin: its first new block must come <= 5 s after its restart")
    parser.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    root = args.dir or tempfile.mkdtemp(prefix=f"scf-soak-{args.consensus}-")
    try:
        return asyncio.run(soak(args.minutes, args.consensus, args.seed, root, args.out,
                                args.workers, args.outage_s))
    except asyncio.CancelledError:
        print("soak stopped by a signal; nodes stopped, no summary written")
        return 130
