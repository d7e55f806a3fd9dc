"""`scfchain bench`: the command line of the benchmark, one round or a sweep of rounds.

    scfchain bench --nodes 1 --consensus solo --workload cash-transfer --txs 40000 --clients 8
    scfchain bench --workload voucher-mix --sweep "consensus=solo,raft nodes=4,7 clients=8,32"

Every round starts a fresh cluster (unless `--target DIR`), and all rounds go into one report
(`report.json`, `report.md`, `report.png` in `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shlex
import signal
import sys
import time
from typing import Any

from bench.cluster import BenchError, stop_started
from bench.load import OPEN_LOOP_INFLIGHT
from bench.workloads import WORKLOADS

CONSENSUS = ("solo", "raft", "pbft")
SWEEP_KEYS = {"consensus": str, "nodes": int, "clients": int, "workload": str, "rate": float,
              "batch": int}


def add_parser(sub: Any) -> None:
    """Register `bench` on the top-level subparsers of `scfchain`."""
    bench = sub.add_parser("bench", help="benchmark a cluster: throughput and latency report")
    bench.add_argument("--nodes", type=int, default=1, help="validators (solo: 1)")
    bench.add_argument("--consensus", choices=CONSENSUS, default="solo")
    bench.add_argument("--workload", choices=WORKLOADS, default="cash-transfer")
    bench.add_argument("--txs", type=int, default=20_000, help="measured txs per round")
    bench.add_argument("--clients", type=int, default=8, help="concurrent clients")
    bench.add_argument("--rate", type=float, default=None,
                       help="open loop at this many tx/s (default: closed loop)")
    bench.add_argument("--duration", type=float, default=None,
                       help="stop sending after this many seconds")
    bench.add_argument("--batch", type=int, default=250, help="txs per Submit call")
    bench.add_argument("--inflight", type=int, default=OPEN_LOOP_INFLIGHT,
                       help="open loop: Submit calls in flight per client (when all are taken, "
                            "batches leave late; the report says how late)")
    bench.add_argument("--warmup", type=int, default=None,
                       help="warm-up txs before the clock (default: 5 %% of --txs, >= 200)")
    bench.add_argument("--seed", type=int, default=1, help="workload and key seed")
    bench.add_argument("--accounts", type=int, default=64, help="member accounts in the load")
    bench.add_argument("--block-txs", type=int, default=2_000, help="block txs_max (fresh)")
    bench.add_argument("--block-interval-ms", type=int, default=50, help="block interval (fresh)")
    bench.add_argument("--snapshot-interval", type=int, default=None,
                       help="each node's state snapshot every N blocks, 0: none (fresh; "
                       "default: the node's, 500)")
    bench.add_argument("--commit-timeout", type=float, default=120.0,
                       help="seconds to wait for the last commits of a phase")
    bench.add_argument("--out", default="bench-out", help="report directory")
    bench.add_argument("--target", default=None,
                       help="a running cluster directory (its cluster.json) instead of a fresh one")
    bench.add_argument("--sweep", default=None,
                       help='a matrix, e.g. "consensus=solo,raft nodes=4,7 clients=8,32"')
    bench.add_argument("--submit-to", choices=("all", "leader"), default="all",
                       help="clients spread over all nodes (default) or all at the leader")
    bench.add_argument("--keep", action="store_true", help="leave fresh clusters running")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=main)


def parse_sweep(text: str) -> list[dict[str, Any]]:
    """'consensus=solo,raft nodes=4,7' -> one dict per combination (solo forces one node)."""
    axes: list[tuple[str, list[Any]]] = []
    for part in shlex.split(text):
        key, sep, values = part.partition("=")
        if not sep or key not in SWEEP_KEYS or not values:
            raise BenchError(
                f"--sweep: {part!r} is not KEY=V1,V2 with KEY one of {', '.join(SWEEP_KEYS)}"
            )
        try:
            axes.append((key, [SWEEP_KEYS[key](v) for v in values.split(",")]))
        except ValueError:
            raise BenchError(f"--sweep: bad value in {part!r}") from None
    combos, seen = [], set()
    for values in itertools.product(*(v for _, v in axes)):
        combo = dict(zip((k for k, _ in axes), values, strict=True))
        if combo.get("consensus") == "solo":
            combo["nodes"] = 1
        key = tuple(sorted(combo.items()))
        if key not in seen:
            seen.add(key)
            combos.append(combo)
    return combos


def _label(cfg: dict[str, Any]) -> str:
    parts = [f"{cfg['consensus']}-{cfg['nodes']}n", cfg["workload"], f"c{cfg['clients']}"]
    if cfg.get("rate"):
        parts.append(f"r{cfg['rate']:g}")
    if cfg.get("submit_to") == "leader":
        parts.append("to-leader")
    return "/".join(parts)


def round_configs(args: argparse.Namespace) -> list[Any]:
    from bench.runner import RoundConfig, default_work_dir

    base = {"consensus": args.consensus, "nodes": args.nodes, "clients": args.clients,
            "workload": args.workload, "rate": args.rate, "batch": args.batch,
            "submit_to": args.submit_to}
    combos = parse_sweep(args.sweep) if args.sweep else [{}]
    plan_time_ms = int(time.time() * 1000)  # one for all rounds: they share bodies and signatures
    configs = []
    for combo in combos:
        cfg = {**base, **combo}
        if cfg["consensus"] == "solo":
            cfg["nodes"] = 1
        if (cfg["nodes"] < 1 or cfg["clients"] < 1 or args.txs < 1 or cfg["batch"] < 1
                or args.inflight < 1):
            raise BenchError("--nodes, --clients, --txs, --batch and --inflight must be positive")
        if args.snapshot_interval is not None and args.snapshot_interval < 0:
            raise BenchError("--snapshot-interval must be 0 (no snapshots) or more")
        warmup = args.warmup if args.warmup is not None else max(200, args.txs // 20)
        configs.append(RoundConfig(
            label=_label(cfg), consensus=cfg["consensus"], nodes=cfg["nodes"],
            workload=cfg["workload"], clients=cfg["clients"], txs=args.txs,
            batch_txs=min(cfg["batch"], 10_000), rate_tps=cfg["rate"],
            inflight_per_client=args.inflight,
            duration_s=args.duration, warmup_txs=warmup, seed=args.seed,
            accounts=max(4, args.accounts), block_txs_max=args.block_txs,
            block_interval_ms=args.block_interval_ms, commit_timeout_s=args.commit_timeout,
            work_dir=default_work_dir(), target=args.target, keep=args.keep,
            submit_to=args.submit_to, plan_time_ms=plan_time_ms,
            snapshot_interval=args.snapshot_interval,
        ))
    return configs


async def run_rounds(
    configs: list[Any], progress: Any, on_round: Any = None
) -> list[dict[str, Any]]:
    """Run the rounds in order; on_round(rounds so far) after each (for partial reports)."""
    from bench.runner import Round

    rounds: list[dict[str, Any]] = []
    for cfg in configs:
        rounds.append(await Round(cfg, progress).run())
        if on_round is not None:
            on_round(rounds)
    return rounds


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.report import machine_info, print_table, write_all

    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        configs = round_configs(args)
    except BenchError as exc:
        print(f"scfchain bench: {exc}", file=sys.stderr)
        return 2
    command = "scfchain " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, disable=args.quiet, transient=False,
    )
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report: dict[str, Any] = {
        "machine": machine_info(),
        "config": {
            "command": command,
            "started_utc": started,
            "txs": args.txs,
            "batch": args.batch,
            "warmup": configs[0].warmup_txs,
            "seed": args.seed,
            "accounts": args.accounts,
            "rate": args.rate,
            "duration": args.duration,
            "block_txs_max": args.block_txs,
            "block_interval_ms": args.block_interval_ms,
            "snapshot_interval": args.snapshot_interval,
            "sweep": args.sweep,
            "target": args.target,
            "submit_to": args.submit_to,
        },
        "rounds": [],
    }
    out_dir = os.path.abspath(args.out)

    def partial(rounds: list[dict[str, Any]]) -> None:
        if len(rounds) < len(configs):  # a long sweep keeps what it measured so far
            write_all(out_dir, {**report, "rounds": rounds})

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)  # stop our nodes on SIGTERM too
    try:
        with progress:
            report["rounds"] = asyncio.run(run_rounds(configs, progress, partial))
    except BenchError as exc:
        print(f"scfchain bench: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_started()
        signal.signal(signal.SIGTERM, previous)
    print_table(report, console)
    paths = write_all(out_dir, report)
    console.print("wrote " + ", ".join(paths))
    return 0
