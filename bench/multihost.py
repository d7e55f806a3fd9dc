"""`python -m bench.multihost [--setting S ...] <scfchain bench args>`: PBFT-4 throughput and
latency of the sample consortium (examples/consortium.toml) run from its bundles, on hosts
that are network namespaces, with and without a delay on every inter-host link, against the
same bundles on loopback.

Settings (default: all three, one after the other, each on a consortium of its own):
- `loopback`: every node a plain process on its own loopback address (127.0.0.11 ... 14),
  same ports, same TLS, same bundles: only the namespaces are missing;
- `netns`: each node in its own network namespace with its own address (veth pairs on a
  bridge; node/ops/netlab.py), the load generator in the root namespace;
- `netns-delay`: as `netns`, every peer link through the project's delay proxy, `--delay-ms`
  (default 30) each way.

The load is `scfchain bench --target DIR` (DIR: a cluster.json naming the four nodes and the
members' keys from the bundles), run in the root namespace with the bench args given after
`--`. Every report goes to OUT/<setting>/ (report.json, report.md, report.png) and a summary
table to OUT/summary.md. Needs root and `ip netns` for the namespace settings.

Example (CI-size; a figure counts from >= 30 s of load):
    sudo .venv/bin/python -m bench.multihost --out bench-out/multihost -- \\
        --txs 60000 --clients 16 --batch 250
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from node.ops.cluster_dir import Cluster, ClusterAccount, ClusterNode
from node.ops.netlab import Host, Lab, stop_all, unavailable_reason
from node.ops.netlab_consortium import REPO, HostedConsortium

SETTINGS = ("loopback", "netns", "netns-delay")
LOOPBACK_ADDRS = [f"127.0.0.{10 + index}" for index in range(1, 5)]


class LoopbackLab(Lab):
    """The Lab interface with every host a loopback address of this namespace."""

    def open(self) -> LoopbackLab:
        self.hosts = [Host(name="", addr=addr, veth="") for addr in LOOPBACK_ADDRS]
        return self

    def spawn(self, host: Host, argv: list[str], log_path: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, **(env or {})})
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        stop_all(self.procs, grace_s=10.0)


def target_dir(consortium: HostedConsortium, root: str) -> str:
    """A cluster.json for `scfchain bench --target`: the four nodes, every member's key."""
    accounts = []
    for org in sorted(os.listdir(consortium.out)):
        path = os.path.join(consortium.out, org, "bundle.json")
        if not os.path.exists(path):
            continue
        with open(path) as handle:
            bundle = json.load(handle)
        for member in bundle["members"]:
            accounts.append(ClusterAccount(
                name=member["name"], role=member["roles"][0], account_id=member["account"],
                key_file=os.path.join(consortium.out, org, member["key_file"])))
    ca = os.path.join(consortium.out, "ca", "ca.crt")
    nodes = [ClusterNode(id=n.node_id, client_addr=n.client_addr,
                         peer_addr=n.client_addr.rpartition(":")[0] + ":7002",
                         pid=n.proc.pid if n.proc else None, data_dir="", log_file=n.log_path,
                         config_path=n.config, client_ca=ca)
             for n in consortium.nodes.values()]
    os.makedirs(root, exist_ok=True)
    Cluster(root=root, chain_id=consortium.chain_id, consensus="pbft", nodes=nodes,
            accounts=accounts).save()
    return root


async def run_setting(setting: str, work: str, out: str, bench_args: list[str],
                      delay_ms: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    lab: Lab = LoopbackLab(4) if setting == "loopback" else Lab(4)
    lab.open()
    try:
        consortium = HostedConsortium.create(lab, work)
        if setting == "netns-delay":
            await consortium.delay_peer_links(delay_ms)
        for node_id in consortium.nodes:
            consortium.start(node_id)
        await consortium.wait_healthy()
        target = target_dir(consortium, os.path.join(work, "target"))
        report_dir = os.path.join(out, setting)
        command = [sys.executable, "-m", "node.ops.cli", "bench", "--target", target,
                   "--out", report_dir, *bench_args]
        print(f"[{setting}] {' '.join(command[2:])}", flush=True)
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO)
        if result.returncode != 0:
            raise RuntimeError(f"{setting}: the bench exited {result.returncode}")
        with open(os.path.join(report_dir, "report.json")) as handle:
            report = json.load(handle)
        round_ = report["rounds"][-1]
        return {"setting": setting, "seconds": round(time.monotonic() - started, 1),
                "committed_tps": round_["committed_tps"],
                "p50_ms": round_["latency_ms"]["p50"], "p99_ms": round_["latency_ms"]["p99"],
                "committed": round_.get("committed"), "load_before": load_before,
                "load": os.getloadavg()[0]}
    finally:
        lab.close()


def summary_table(rows: list[dict[str, Any]], delay_ms: float) -> str:
    base = next((r["committed_tps"] for r in rows if r["setting"] == "loopback"), None)
    lines = ["| setting | committed tx/s | vs loopback | p50 ms | p99 ms "
             "| load (1 min) before / after |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        name = row["setting"] + (f" ({delay_ms:g} ms one way)" if row["setting"] ==
                                 "netns-delay" else "")
        ratio = f"{row['committed_tps'] / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {row['committed_tps']:,.0f} | {ratio} | {row['p50_ms']:.0f} "
                     f"| {row['p99_ms']:.0f} | {row['load_before']:.2f} / {row['load']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.multihost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", action="append", choices=SETTINGS,
                        help="run only these (repeatable; default: all three)")
    parser.add_argument("--delay-ms", type=float, default=30.0,
                        help="one-way delay on every peer link in netns-delay (default 30)")
    parser.add_argument("--out", default="bench-out/multihost", help="report directory")
    parser.add_argument("--pause-s", type=float, default=60.0,
                        help="idle seconds before each setting after the first, so the load "
                             "average recorded is not the last setting's own (default 60)")
    parser.add_argument("bench_args", nargs="*", help="after --: `scfchain bench` arguments")
    args = parser.parse_args(argv)
    settings = args.setting or list(SETTINGS)
    if any(s != "loopback" for s in settings) and (reason := unavailable_reason()):
        print(f"bench.multihost: {reason}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for index, setting in enumerate(settings):
        if index:
            time.sleep(args.pause_s)
        with tempfile.TemporaryDirectory(prefix=f"scf-multihost-{setting}-") as work:
            rows.append(asyncio.run(run_setting(setting, work, args.out, args.bench_args,
                                                args.delay_ms)))
        print(json.dumps(rows[-1]), flush=True)
    table = summary_table(rows, args.delay_ms)
    with open(os.path.join(args.out, "summary.md"), "w") as handle:
        handle.write(table)
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump(rows, handle, indent=2)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
