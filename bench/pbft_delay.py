"""`python -m bench.pbft_delay [--peer-delay-ms D] [--pipeline-depth N] <scfchain bench args>`:
`scfchain bench` on a fresh cluster whose every peer link is held D ms each way.

The delay is the project's own (`node.ops.netfaults.LinkProxy`, as in tests/multihost's
`delay_proxy`): one proxy per validator in front of its peer port, genesis naming the proxy,
so every connection between two validators crosses one proxy: D ms one way, 2D a round trip.
The proxies run in a child process of their own (`--serve-proxies`), so their copying does not
compete with the load generator's event loop. Client ports are not delayed.

`--pipeline-depth N` writes `pipeline_depth_blocks = N` into genesis's consensus params (PBFT:
how many heights the primary keeps in flight; 1 is one block at a time). Without it, genesis
names no depth and the engine's default applies. `--peer-delay-ms 0` runs the same cluster
without proxies (loopback), for a comparison with the same command.

Example (PBFT-4 cash transfers, 16 clients x 250, >= 30 s of load):
    python -m bench.pbft_delay --peer-delay-ms 30 -- --consensus pbft --nodes 4 \\
        --clients 16 --batch 250 --txs 150000 --out bench-out/pbft-delay30
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import subprocess
import sys
from typing import Any

import bench.cluster
import bench.runner
from bench.cluster import BenchError
from node.ops.localnet import NetworkLayout
from node.ops.netfaults import LinkProxy, NetworkFaults

PROXY_READY_S = 30.0

_proxy_procs: list[subprocess.Popen[str]] = []


# --- the proxies' process ----------------------------------------------------------------------


async def serve_proxies(genesis_path: str, delay_ms: float) -> None:
    """Put a delaying proxy in front of every validator's peer port, rewrite genesis to name
    them, say so on stdout, and forward until SIGTERM."""
    faults = NetworkFaults()
    faults.set_default(delay_ms=delay_ms)
    with open(genesis_path) as handle:
        genesis = json.load(handle)
    proxies: list[LinkProxy] = []
    for validator in genesis["validators"]:
        host, _, port = validator["peer_addr"].rpartition(":")
        proxy = LinkProxy(validator["id"], host, int(port), faults)
        await proxy.start()
        proxies.append(proxy)
        validator["peer_addr"] = f"{host}:{proxy.port}"
    with open(genesis_path, "w") as handle:
        json.dump(genesis, handle, indent=2)
    print(json.dumps({"proxies": len(proxies)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for proxy in proxies:
        await proxy.close()


def _start_proxies(genesis_path: str, delay_ms: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.pbft_delay", "--serve-proxies", genesis_path,
         "--peer-delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    _proxy_procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the proxies listen and genesis names them
    if not line.startswith("{"):
        raise BenchError(f"the delay proxies did not start (exit {proc.poll()})")


def _stop_proxies() -> None:
    for proc in _proxy_procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    _proxy_procs.clear()


# --- the bench's fresh cluster, delayed ---------------------------------------------------------


def delayed_start_fresh(delay_ms: float, depth: int | None) -> Any:
    """`bench.cluster.start_fresh` with the pipeline depth in genesis and the proxies in front
    of the peer ports before any node starts."""
    params = {"pipeline_depth_blocks": depth} if depth is not None else None

    def proxies(net: NetworkLayout) -> None:
        if delay_ms > 0:
            _start_proxies(net.genesis_path, delay_ms)

    return functools.partial(bench.cluster.start_fresh, consensus_params=params,
                             before_start=proxies)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = argparse.ArgumentParser(prog="python -m bench.pbft_delay", add_help=True)
    own.add_argument("--peer-delay-ms", type=float, default=30.0,
                     help="one-way delay on every peer link (0: loopback, no proxies)")
    own.add_argument("--pipeline-depth", type=int, default=None,
                     help="genesis pipeline_depth_blocks (default: the engine's)")
    own.add_argument("--serve-proxies", default=None, help=argparse.SUPPRESS)
    args, rest = own.parse_known_args(argv)
    if args.serve_proxies:
        asyncio.run(serve_proxies(args.serve_proxies, args.peer_delay_ms))
        return 0
    if rest and rest[0] == "--":
        rest = rest[1:]
    from bench.cli import add_parser
    from bench.cli import main as bench_main

    parser = argparse.ArgumentParser(prog="scfchain")
    add_parser(parser.add_subparsers(dest="command"))
    bench_args = parser.parse_args(["bench", *rest])
    if bench_args.target:
        print("bench.pbft_delay starts its own cluster: --target is not for it", file=sys.stderr)
        return 2
    bench.runner.start_fresh = delayed_start_fresh(  # type: ignore[attr-defined]
        args.peer_delay_ms, args.pipeline_depth
    )
    try:
        return bench_main(bench_args)
    finally:
        _stop_proxies()


if __name__ == "__main__":
    sys.exit(main())
