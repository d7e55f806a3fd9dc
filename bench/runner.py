"""One benchmark round: cluster, plan, pre-signing, setup, warm-up, measured load, figures.

The clock starts only after every tx is signed and every setup stage has committed; the warm-up
then runs closed-loop and is not counted. Node CPU and peak RSS come from psutil on the node
PIDs, sampled while the measured load runs; block counts from each node's chain height.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import psutil

from bench.cluster import BenchError, Cluster, load_target, start_fresh
from bench.diskprobe import FsyncProbe
from bench.load import OPEN_LOOP_INFLIGHT, Batch, Phase, Sender, Tracker
from bench.machine_cpu import MachineCpu
from bench.report import round_figures, schedule_lag
from bench.signing import account_for, sign_all
from bench.workloads import (
    Builder,
    Call,
    Member,
    Plan,
    Sizes,
    Unsigned,
    derive_id,
    iter_chunks,
    label_counts,
    make_plan,
    members_of,
)
from node.client.ledger import LedgerError
from node.ops.localcluster import ask_leader

SETUP_BATCH_TXS = 1_000
SETUP_IN_FLIGHT_TXS = 16_000
SETUP_BATCH_WAIT_S = 60.0
SAMPLE_S = 0.5


@dataclass(frozen=True, slots=True)
class RoundConfig:
    label: str
    consensus: str
    nodes: int
    workload: str
    clients: int
    txs: int
    batch_txs: int
    rate_tps: float | None
    duration_s: float | None
    warmup_txs: int
    seed: int
    accounts: int
    block_txs_max: int
    block_interval_ms: int
    commit_timeout_s: float
    work_dir: str
    target: str | None = None
    keep: bool = False
    plan_time_ms: int = 0  # the workload's "now" (maturities, due dates); 0: the round's start
    submit_to: str = "all"  # "all": client i talks to node i mod n; "leader": all to the leader
    snapshot_interval: int | None = None  # blocks between state snapshots; None: the node's
    inflight_per_client: int = OPEN_LOOP_INFLIGHT  # open loop: Submit calls in flight per client


class NodeSampler:
    """CPU % (from CPU time over wall time), peak RSS and peak anonymous RSS of each node
    process (with its workers). The anonymous part leaves out file pages mapped in: LevelDB
    reads its table files through mmap, so the RSS of a node with a large store includes
    page cache of those files, which the kernel reclaims when memory runs short."""

    def __init__(self, pids: dict[str, int | None], *, with_children: bool = True) -> None:
        """`with_children`: count each process's descendants too (a node's verify workers);
        off for the load generator, whose children are the nodes of a fresh cluster."""
        self.with_children = with_children
        self.procs: dict[str, psutil.Process | None] = {}
        for node_id, pid in pids.items():
            try:
                self.procs[node_id] = psutil.Process(pid) if pid else None
            except psutil.Error:
                self.procs[node_id] = None
        self.rss_max: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.anon_max: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._cpu0: dict[str, float] = {}
        self._t0 = 0.0
        self.cpu_percent: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.cpu_seconds: dict[str, float] = dict.fromkeys(pids, 0.0)

    def _tree(self, proc: psutil.Process) -> list[psutil.Process]:
        """The node and its signature-check worker processes: a node's cost is all of them."""
        if not self.with_children:
            return [proc]
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return [proc]

    def _cpu(self, proc: psutil.Process) -> float:
        total = 0.0
        for member in self._tree(proc):
            try:
                times = member.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def begin(self) -> None:
        self._t0 = time.perf_counter()
        for node_id, proc in self.procs.items():
            if proc is not None:
                try:
                    self._cpu0[node_id] = self._cpu(proc)
                except psutil.Error:
                    self.procs[node_id] = None
        self.sample()

    def sample(self) -> None:
        for node_id, proc in self.procs.items():
            if proc is None:
                continue
            try:
                proc.memory_info()
            except psutil.Error:
                continue
            rss_mb = anon_mb = 0.0
            for member in self._tree(proc):
                try:
                    info = member.memory_info()
                except psutil.Error:
                    continue
                rss_mb += info.rss / 2**20
                anon_mb += (info.rss - getattr(info, "shared", 0)) / 2**20  # Linux: file+shmem
            self.rss_max[node_id] = max(self.rss_max[node_id], rss_mb)
            self.anon_max[node_id] = max(self.anon_max[node_id], anon_mb)

    def end(self) -> None:
        self.sample()
        wall = max(time.perf_counter() - self._t0, 1e-9)
        for node_id, proc in self.procs.items():
            if proc is None or node_id not in self._cpu0:
                continue
            try:
                self.cpu_seconds[node_id] = self._cpu(proc) - self._cpu0[node_id]
            except psutil.Error:
                continue
            self.cpu_percent[node_id] = self.cpu_seconds[node_id] / wall * 100


async def _heights(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """(height, Raft term or PBFT view) of every node; (-1, -1) for one that does not answer."""
    out = {}
    for node in cluster.nodes:
        async with cluster.client(node.client_addr, 10) as client:
            try:
                info = await client.chain_info()
                out[node.node_id] = (int(info.height), int(info.round))
            except LedgerError:
                out[node.node_id] = (-1, -1)
    return out


async def _leader_addr(cluster: Cluster, timeout_s: float = 30.0) -> str:
    """The client address of the current leader / primary (waits for an election)."""
    by_id = {node.node_id: node.client_addr for node in cluster.nodes}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = await ask_leader(by_id.values(), timeout_s=10, tls=cluster.tls)
        if leader in by_id:
            return by_id[leader]
        await asyncio.sleep(0.2)
    raise BenchError(f"no leader elected within {timeout_s:.0f} s")


def _registration(cluster: Cluster, plan_members: list[Member], seed: int, salt: int,
                  public_keys: dict[str, bytes],
                  committee: tuple[list[tuple[str, int]], int]) -> list[list[Unsigned]]:
    """Setup stages that make the bench members members of a target cluster, with cash.

    Membership is a governance vote: the first committee member proposes each registration
    (its own vote is a yes), then other committee members vote yes, one stage each, until the
    threshold is met; the proposal ids derive from the proposing txs' ids, so the votes are
    built before anything is sent."""
    voters, threshold = committee
    keys = {**public_keys, **{name: cluster.accounts[name].public_key for name, _ in voters},
            "benchbank": account_for(seed, "benchbank").public_key}
    build = Builder(cluster.chain_id, keys, salt)
    proposer, weight = voters[0]
    proposals = [
        build.build(Call(proposer, "governance", "propose", {"action": "register_member",
            "params": {"account": keys[m.name].hex(), "name": f"bench-{seed}-{m.name}"[:64],
                       "roles": list(m.roles)}}))
        for m in [*plan_members, Member("benchbank", ("financier",))]
    ]
    stages = [proposals]
    for voter, voter_weight in voters[1:]:
        if weight >= threshold:
            break
        stages.append([
            build.build(Call(voter, "governance", "vote", {
                "proposal_id": derive_id(tx.tx_id, "proposal"), "approve": True}))
            for tx in proposals
        ])
        weight += voter_weight
    if weight < threshold:
        raise BenchError("the target's cluster.json holds the keys of too few committee members "
                         "to register the bench members")
    deposit = [
        build.build(Call("benchbank", "cash", "deposit", {
            "account": keys[m.name].hex(), "amount": m.balance}))
        for m in plan_members if m.balance
    ]
    return [*stages, deposit]


async def _committee_of(cluster: Cluster) -> tuple[list[tuple[str, int]], int]:
    """The governance committee of a target cluster, as the names cluster.json gives its
    members (those whose keys the bench holds), and the threshold."""
    names = {account.account_id: name for name, account in cluster.accounts.items()}
    async with cluster.reading_client(cluster.nodes[0].client_addr, 30) as client:
        committee = await client.query("governance", "committee", {})
    voters = [(names[m["account"]], int(m["weight"])) for m in committee["members"]
              if m["account"] in names]
    if not voters:
        raise BenchError("the target's cluster.json holds no key of a governance committee "
                         "member; the bench needs one to register its members")
    return voters, int(committee["threshold"])


class Round:
    def __init__(self, config: RoundConfig, progress: Any = None) -> None:
        self.config = config
        self.progress = progress
        self.cluster: Cluster | None = None
        self._root: str | None = None  # a fresh cluster's directory
        self._watched = ""  # the node whose Subscribe stream times the commits
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(f"[dim]{self.config.label}:[/dim] {text}")

    async def run(self) -> dict[str, Any]:
        """One round. A fresh cluster is stopped after it (unless `keep`), and its directory
        removed when the round succeeded: a failed round's stays, for its nodes' logs."""
        cfg = self.config
        succeeded = False
        try:
            result = await self._run()
            succeeded = True
            return result
        finally:
            cluster = self.cluster
            if cluster is not None and cluster.fresh:
                if cfg.keep:
                    cluster.leave_running()
                    pids = " ".join(str(n.pid) for n in cluster.nodes if n.pid)
                    self.say(f"left the cluster running in {self._root} (stop it: kill {pids})")
                else:
                    cluster.stop()
                    if succeeded and self._root is not None:
                        shutil.rmtree(self._root, ignore_errors=True)
                    elif self._root is not None:
                        self.say(f"kept {self._root} (the nodes' logs are in nodes/*/node.log)")

    async def _start_cluster(self) -> Cluster:
        cfg = self.config
        members = members_of(cfg.workload, cfg.accounts)
        if cfg.target:
            return load_target(cfg.target)
        safe = cfg.label.replace("/", "-")
        root = self._root = tempfile.mkdtemp(prefix=f"bench-{safe}-", dir=cfg.work_dir)
        self.say(f"starting {cfg.nodes} x {cfg.consensus} node(s) in {root}")
        return await start_fresh(
            root, nodes=cfg.nodes, consensus=cfg.consensus, members=members, seed=cfg.seed,
            block_txs_max=cfg.block_txs_max, block_interval_ms=cfg.block_interval_ms,
            node_options=(None if cfg.snapshot_interval is None
                          else {"snapshots.interval": cfg.snapshot_interval}),
        )

    async def _run(self) -> dict[str, Any]:
        cfg = self.config
        # Plan and sign before any cluster or channel exists (workers are spawned anyway).
        members = members_of(cfg.workload, cfg.accounts)
        public_keys = {m.name: account_for(cfg.seed, m.name).public_key for m in members}
        salt = 0 if not cfg.target else int(time.time())
        chain_id = load_target(cfg.target).chain_id if cfg.target else "scf-bench"
        sizes = Sizes(load=cfg.txs, warmup=cfg.warmup_txs,
                      time_ms=cfg.plan_time_ms or int(time.time() * 1000), salt=salt)
        plan = make_plan(cfg.workload, seed=cfg.seed, chain_id=chain_id,
                         public_keys=public_keys, sizes=sizes, accounts=cfg.accounts)
        self.cluster = cluster = await self._start_cluster()
        if cluster.chain_id != chain_id:
            raise BenchError(f"chain id {cluster.chain_id!r}, expected {chain_id!r}")
        if not cluster.fresh:
            plan.setup = _registration(cluster, plan.members, cfg.seed, salt + 1,
                                       public_keys, await _committee_of(cluster)) + plan.setup
        started = time.perf_counter()
        everything = [tx for stage in plan.setup for tx in stage] + plan.warmup + plan.load
        signed = sign_all(everything, cfg.seed, accounts=cluster.accounts)
        self.say(f"signed {len(signed):,} txs in {time.perf_counter() - started:.1f} s "
                 f"({sum(len(s) for s in plan.setup):,} setup, {len(plan.warmup):,} warm-up, "
                 f"{len(plan.load):,} measured)")
        tx_ids = [tx.tx_id for tx in everything]
        addrs = [node.client_addr for node in cluster.nodes]
        if cfg.submit_to == "leader":
            addrs = [await _leader_addr(cluster)]
        clients = [cluster.client(addrs[i % len(addrs)], 120) for i in range(cfg.clients)]
        # Commits are timed from the leader's (primary's) Subscribe stream: it learns of a
        # commit first, while a Raft follower hears of it a heartbeat later and executes it
        # after that (up to 2 s more at p99 under load, which is not the chain's latency).
        self._watched = await _leader_addr(cluster)
        watcher = cluster.reading_client(self._watched, 120)
        tracker = Tracker(watcher)
        # The plan and its signed txs are a million objects or more, alive for the whole round:
        # a full collection walked them in 300 ms with the GIL held, pausing the sender and the
        # commit tracker (the latency figures) whenever one came due. Frozen, it skips them.
        gc.collect()
        gc.freeze()
        try:
            height = (await watcher.chain_info()).height
            tracker.start(height + 1)
            sender = Sender(clients, tracker, signed, tx_ids)
            return await self._phases(plan, sender, tracker, cluster)
        finally:
            await tracker.stop()
            for client in [*clients, watcher]:
                await client.close()
            gc.unfreeze()

    async def _setup(self, plan: Plan, sender: Sender, tracker: Tracker) -> int:
        offset = 0
        for number, stage in enumerate(plan.setup, 1):
            phase = Phase(f"setup{number}", len(stage))
            batches = [Batch(phase, idx, len(idx))
                       for idx in iter_chunks(list(range(len(stage))), SETUP_BATCH_TXS)]
            # At most SETUP_IN_FLIGHT_TXS submitted and not yet committed: a stage of hundreds
            # of thousands of txs (a long voucher-mix round) would fill every mempool at once
            # and be refused for back-pressure longer than a submission retries.
            slots = asyncio.Semaphore(max(1, SETUP_IN_FLIGHT_TXS // SETUP_BATCH_TXS))

            async def send(i: int, batch: Batch, stage_offset: int = offset,
                           slots: asyncio.Semaphore = slots) -> None:
                async with slots:
                    await sender.send(sender.clients[i % len(sender.clients)], batch,
                                      stage_offset)
                    # A batch that never commits frees its slot in time; `_wait` reports it.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SETUP_BATCH_WAIT_S):
                            await batch.done.wait()

            await asyncio.gather(*(send(i, b) for i, b in enumerate(batches)))
            await self._wait(phase, tracker)
            bad = [(stage[i].label, c) for i, c in enumerate(phase.code) if c]
            if bad:
                raise BenchError(
                    f"setup stage {number}: {len(bad)} of {len(stage)} txs failed, e.g. "
                    f"{bad[:3]}; the workload's setup must succeed"
                )
            offset += len(stage)
            await self._level(sender)
        if plan.setup:
            self.say(f"setup committed ({offset:,} txs in {len(plan.setup)} stages)")
        return offset

    async def _level(self, sender: Sender) -> None:
        """Wait until every node has applied what the watcher saw commit: the next stage's
        txs are admitted against each receiving node's state (e.g. a member registered one
        stage before must be known to the node that admits its first tx)."""
        heights = [(await c.chain_info()).height for c in sender.clients]
        target = max(heights)
        deadline = time.monotonic() + self.config.commit_timeout_s
        for client in sender.clients:
            while (await client.chain_info()).height < target:
                if time.monotonic() > deadline:
                    raise BenchError(f"{client.address} did not reach height {target}")
                await asyncio.sleep(0.05)

    async def _wait(self, phase: Phase, tracker: Tracker) -> None:
        try:
            async with asyncio.timeout(self.config.commit_timeout_s):
                await phase.done.wait()
        except TimeoutError:
            tracker.give_up(phase)
        if tracker.error is not None:
            raise BenchError(f"the Subscribe stream failed: {tracker.error}")

    async def _phases(
        self, plan: Plan, sender: Sender, tracker: Tracker, cluster: Cluster
    ) -> dict[str, Any]:
        cfg = self.config
        offset = await self._setup(plan, sender, tracker)
        if plan.warmup:
            warm = Phase("warmup", len(plan.warmup))
            await sender.closed_loop(warm, offset, cfg.batch_txs, None, cfg.commit_timeout_s)
            await self._wait(warm, tracker)
            self.say(f"warm-up done ({len(plan.warmup):,} txs)")
            offset += len(plan.warmup)
        phase = Phase("load", len(plan.load))
        sampler = NodeSampler({n.node_id: n.pid for n in cluster.nodes})
        loadgen = NodeSampler({"bench": os.getpid()}, with_children=False)
        machine = MachineCpu()
        load_avg_1m = round(os.getloadavg()[0], 2)
        heights0 = await _heights(cluster)
        blocks0 = len(tracker.blocks)
        task_id = None
        if self.progress is not None:
            task_id = self.progress.add_task(cfg.label, total=phase.size)

        def update() -> None:
            if self.progress is not None and task_id is not None:
                self.progress.update(task_id, completed=phase.finished)

        tracker.on_block = update
        # On the nodes' disk: a fresh cluster's directory, or a local target's (its
        # cluster.json has the nodes' PIDs); a consortium's nodes on other machines have no
        # disk here to probe.
        local = cluster.fresh or any(n.pid for n in cluster.nodes)
        disk = FsyncProbe(self._root or cfg.target or cfg.work_dir) if local else None
        if disk is not None:
            disk.start()
        sampler.begin()
        loadgen.begin()
        machine.begin()
        started = time.perf_counter()
        deadline = started + cfg.duration_s if cfg.duration_s else None

        async def sample() -> None:
            while True:
                await asyncio.sleep(SAMPLE_S)
                sampler.sample()

        sampling = asyncio.create_task(sample())
        try:
            if cfg.rate_tps:
                await sender.open_loop(phase, offset, cfg.rate_tps, cfg.batch_txs, deadline,
                                       inflight_per_client=cfg.inflight_per_client)
            else:
                await sender.closed_loop(phase, offset, cfg.batch_txs, deadline,
                                         cfg.commit_timeout_s)
            if deadline is not None:
                for i, code in enumerate(phase.code):  # never sent: not part of the round
                    if code is None and not phase.submit_s[i]:
                        phase.finish(i, "NOT_SUBMITTED", time.perf_counter())
            await self._wait(phase, tracker)
        finally:
            sampling.cancel()
            sampler.end()
            loadgen.end()
            machine.end()
            tracker.on_block = None
            disk_figures = None if disk is None else disk.stop(
                min((s for s in phase.submit_s if s), default=started))
        update()
        heights1 = await _heights(cluster)
        figures = round_figures(submit_s=phase.submit_s, commit_s=phase.commit_s,
                                codes=phase.code)
        first = min((s for s in phase.submit_s if s), default=started)
        last = max((c for c in phase.commit_s if c), default=first)
        window = [b for b in tracker.blocks[blocks0:] if first <= b.at_s <= last + 1e-6]
        block_txs = sum(b.txs for b in window)
        mean_block = round(block_txs / len(window), 1) if window else 0.0
        nodes_stats = [
            {
                "node_id": n.node_id,
                "pid": n.pid,
                "cpu_percent": round(sampler.cpu_percent[n.node_id], 1),
                "rss_mb_max": round(sampler.rss_max[n.node_id], 1),
                "anon_mb_max": round(sampler.anon_max[n.node_id], 1),
                "blocks": max(0, heights1[n.node_id][0] - heights0[n.node_id][0]),
                "mean_block_txs": mean_block,
            }
            for n in cluster.nodes
        ]
        label = cfg.label
        if not cluster.fresh:  # the target's own engine and size, not the command's defaults
            label = f"{cluster.consensus}-{len(cluster.nodes)}n/{cfg.workload}/c{cfg.clients}"
        return {
            "label": label,
            "consensus": cluster.consensus,
            "nodes": len(cluster.nodes),
            "workload": cfg.workload,
            "clients": cfg.clients,
            **{k: figures[k] for k in (
                "submitted", "committed", "failed", "failed_by_code", "send_rate_tps",
                "committed_tps", "latency_ms")},
            "nodes_stats": nodes_stats,
            "mode": f"open-loop {cfg.rate_tps:g} tx/s" if cfg.rate_tps else "closed-loop",
            "batch_txs": cfg.batch_txs,
            "duration_s": figures["duration_s"],
            "blocks": len(window),
            "mean_block_txs": mean_block,
            "submit_retries": sender.retries,
            **({"generator_lag_ms": schedule_lag(sender.schedule_lag_s, cfg.rate_tps,
                                                 cfg.inflight_per_client)}
               if cfg.rate_tps else {}),
            "loadgen_cpu_percent": round(loadgen.cpu_percent["bench"], 1),
            "load_avg_1m_at_start": load_avg_1m,
            **({} if machine.figures is None
               else {"machine_cpu_percent": machine.figures.as_dict()}),
            "mix": label_counts(plan.load),
            "tps_series": figures["tps_series"],
            "slowest_second_tps": figures["slowest_second_tps"],
            "longest_gap_s": figures["longest_gap_s"],
            "zero_seconds": figures["zero_seconds"],
            # Elections (Raft terms) or view changes (PBFT) during the round: 0 when steady.
            "round_changes": max(r for _, r in heights1.values())
            - max(r for _, r in heights0.values()),
            "latency_quantiles_ms": figures["latency_quantiles_ms"],
            "latency_series": figures["latency_series"],
            "latency_bin_s": figures["latency_bin_s"],
            **({} if disk_figures is None else {"disk_fsync": disk_figures.as_dict()}),
            "commits_seen_at": next(
                (n.node_id for n in cluster.nodes if n.client_addr == self._watched), ""),
            # CPU of every node (with its workers) per committed tx: unlike tx/s, barely moved
            # by other work on the machine, so changes can be compared on a busy one.
            "cluster_cpu_us_per_tx": round(
                sum(sampler.cpu_seconds.values()) * 1e6 / max(figures["committed"], 1), 1),
        }


def default_work_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), "scfchain-bench")
    os.makedirs(path, exist_ok=True)
    return path
