"""Measure queries/s with and without signed reads, over TLS and plaintext (issue 17).

    python -m bench.reads [--seconds 10] [--clients 8] [--out reads.json]

For each of four node set-ups — {TLS, plaintext} x {signed reads, `[reads] signed = false`} —
it starts a fresh one-node Raft chain of the e2e members on loopback, then `--clients`
concurrent clients (one channel each) ask `cash.balance` of their own account as fast as the
node answers for `--seconds`, after a one-second warm-up that is not counted. Signed reads are
signed by the asking member (its own balance, which it may read); unsigned ones carry no
identity. Prints a table of queries/s and p50/p99 latency per set-up; writes one JSON document.
The node and the load generator share this machine: look at the load average first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from node.client.identity import Account
from node.client.ledger import LedgerClient
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, write_network

MEMBERS = [MemberSpec("admin", ("admin",)),
           *(MemberSpec(f"reader{i}", ("supplier",), balance=1_000) for i in range(32))]
SETUPS = (("tls", True, True), ("tls", True, False), ("plaintext", False, True),
          ("plaintext", False, False))


async def _load(cluster: LocalCluster, clients: int, seconds: float,
                signed: bool) -> dict[str, Any]:
    net = cluster.net
    addr, tls = cluster.addr("node1"), net.client_tls()
    accounts = [net.account(f"reader{i}") for i in range(clients)]
    latencies: list[float] = []
    counting = False
    stop_at = 0.0

    async def one(account: Account) -> int:
        done = 0
        async with LedgerClient(addr, tls=tls, reader=account if signed else None,
                                chain_id=net.chain_id) as client:
            args = {"account": account.account_id}
            while time.monotonic() < stop_at:
                started = time.monotonic()
                await client.query("cash", "balance", args)
                if counting:
                    latencies.append(time.monotonic() - started)
                    done += 1
        return done

    stop_at = time.monotonic() + 1.0  # warm-up: channels, handshakes, caches
    await asyncio.gather(*(one(a) for a in accounts))
    counting = True
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    counts = await asyncio.gather(*(one(a) for a in accounts))
    took = time.monotonic() - started
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"queries": sum(counts), "seconds": round(took, 2),
            "queries_per_s": round(sum(counts) / took, 1),
            "p50_ms": round(quantiles[49] * 1000, 2), "p99_ms": round(quantiles[98] * 1000, 2)}


async def measure(clients: int, seconds: float, root: str) -> list[dict[str, Any]]:
    rows = []
    for name, tls, signed in SETUPS:
        net = write_network(os.path.join(root, f"{name}-{'signed' if signed else 'open'}"),
                            nodes=1, consensus="raft", members=MEMBERS, chain_id="bench-reads",
                            client_tls=tls, node_options={"reads.signed": signed})
        cluster = LocalCluster(net)
        try:
            await cluster.start(timeout_s=30)
            await cluster.wait_ready(timeout_s=30)
            figures = await _load(cluster, clients, seconds, signed)
        finally:
            cluster.stop_all()
        rows.append({"transport": name, "signed_reads": signed, **figures})
    return rows


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="cash.balance queries on one node")
    for column in ("client port", "reads", "queries/s", "p50 ms", "p99 ms", "queries"):
        out.add_column(column)
    for row in rows:
        out.add_row(row["transport"], "signed" if row["signed_reads"] else "unsigned",
                    f"{row['queries_per_s']:,.0f}", str(row["p50_ms"]), str(row["p99_ms"]),
                    f"{row['queries']:,}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per set-up")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (1..32)")
    parser.add_argument("--out", default="reads.json", help="the JSON report's path")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= len(MEMBERS) - 1:
        parser.error(f"--clients must be 1..{len(MEMBERS) - 1}")
    with tempfile.TemporaryDirectory(prefix="scf-reads-") as root:
        rows = asyncio.run(measure(args.clients, args.seconds, root))
    with open(args.out, "w") as handle:
        json.dump({"clients": args.clients, "seconds": args.seconds, "rows": rows}, handle,
                  indent=2)
    Console().print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
