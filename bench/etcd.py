"""`python -m bench.etcd [options] [-- <scfchain bench args>]`: a 3-member etcd (Debian's
`etcd-server`, 3.4) on loopback, loaded with puts, and, in the same run, `scfchain bench` on a
fresh Raft-3 cluster: the side-by-side the performance goals compare.

etcd: each member on its own loopback ports, a data directory of its own under a temporary
directory, its defaults otherwise (every write in the WAL with fsync before it is
acknowledged).

Load (`--generator`):
- `go` (the default when it can be found or built): a Go `benchmark put` with the flags, load
  and report of etcd's own tools/benchmark, which Debian does not package (bench/etcd_go.py:
  ours, on Debian's etcd 3.4.23 clientv3 and pkg/report, built once offline, cached in
  ~/.cache/scfchain/etcd-benchmark; or an upstream binary given with `--benchmark PATH`):
  `--clients` (default 256) over `--conns` clientv3 connections (default
  32), each balancing over the three members, `--total` puts (default 15,000 per
  `--duration-s`) of a `--value-bytes` value (default 200) under an 8-byte sequential key
  modulo `--key-space-size` (default 1, the tool's). Figures: the tool's Requests/sec over the
  whole run and its latency p50/p99.
- `python` (the fallback): `--clients` asyncio gRPC clients spread over `--workers` processes
  (default 2), each putting under a key of its own range, one put at a time, over `--conns`
  connections spread over the members. Figures: puts/s over the measured window (after
  `--warmup-s`), latency p50/p99 of the puts acknowledged in it. On a 2-core machine this
  generator, not etcd, is the limit: its figure is a floor, and the report says so.

scfchain: `scfchain bench --consensus raft --nodes 3 <args>` (default `--txs 300000 --clients
16 --batch 250`: about 30 s of load on this 2-core machine) — each tx signed, verified and run
through the cash contract, stored in LevelDB. The two run one after the other, never together.

If `/usr/bin/etcd` is missing, the script installs Debian's etcd-server with apt-get (as root)
or says how to; likewise golang-go and golang-etcd-server-dev for the Go generator. Reports:
OUT/etcd.json, OUT/etcd-benchmark.txt (the Go tool's output), OUT/raft/ (scfchain bench's
report) and OUT/summary.md.

Example:
    python -m bench.etcd --duration-s 30 --out bench-out/etcd
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import etcd_go
from node.ops.localnet import free_port

ETCD = "/usr/bin/etcd"
PUT = "/etcdserverpb.KV/Put"
RAFT_DEFAULT = ["--txs", "300000", "--clients", "16", "--batch", "250"]
PUTS_PER_S_GUESS = 15_000  # --total's default is this many puts per --duration-s
FLOOR_NOTE = ("Python load generator: on this machine it, not etcd, is likely the limit; "
              "etcd's figure is a floor")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def put_request(key: bytes, value: bytes) -> bytes:
    """etcdserverpb.PutRequest{key = 1, value = 2} in protobuf wire form (two length-delimited
    fields), so the bench needs none of etcd's .proto files."""
    return (_varint(1 << 3 | 2) + _varint(len(key)) + key
            + _varint(2 << 3 | 2) + _varint(len(value)) + value)


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log_path: str


def ensure_etcd() -> None:
    if os.path.exists(ETCD):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing Debian's etcd-server (apt-get) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "etcd-server"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        subprocess.run(["pkill", "-x", "etcd"], check=False)  # a package may start a daemon
        return
    raise SystemExit("bench.etcd: no /usr/bin/etcd; install it: sudo apt-get install etcd-server")


def start_members(root: str, count: int) -> tuple[list[Member], list[subprocess.Popen[bytes]]]:
    members = [Member(f"m{i}", f"http://127.0.0.1:{free_port()}",
                      f"http://127.0.0.1:{free_port()}", os.path.join(root, f"m{i}"),
                      os.path.join(root, f"m{i}.log")) for i in range(1, count + 1)]
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
    procs = []
    for m in members:
        with open(m.log_path, "wb") as log:
            procs.append(subprocess.Popen([
                ETCD, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "scf-bench", "--log-level", "warn",
            ], stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 30
    for m, proc in zip(members, procs, strict=True):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"etcd {m.name} exited; see {m.log_path}")
            try:
                with urllib.request.urlopen(f"{m.client_url}/health", timeout=1) as reply:
                    if b'"true"' in reply.read():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd {m.name} not healthy in 30 s; see {m.log_path}")
            time.sleep(0.2)
    return members, procs


def stop_members(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _load(worker: int, endpoints: list[str], clients: int, conns: int, value_bytes: int,
                warmup_s: float, duration_s: float) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(endpoints[i % len(endpoints)].removeprefix("http://"))
                for i in range(conns)]
    calls = [channel.unary_unary(PUT) for channel in channels]
    value = b"v" * value_bytes
    start = time.monotonic() + warmup_s
    end = start + duration_s
    latencies: list[float] = []
    failed = 0

    async def client(index: int) -> None:
        nonlocal failed
        call = calls[index % conns]
        key_prefix = f"w{worker}c{index}k".encode()
        n = 0
        while (now := time.monotonic()) < end:
            n += 1
            try:
                await call(put_request(key_prefix + str(n % 10_000).encode(), value),
                           timeout=10)
            except grpc.aio.AioRpcError:
                failed += 1
                continue
            done = time.monotonic()
            if now >= start:
                latencies.append(done - now)

    await asyncio.gather(*(client(i) for i in range(clients)))
    for channel in channels:
        await channel.close()
    return {"latencies": latencies, "failed": failed}


def _worker(args: tuple[int, list[str], int, int, int, float, float],
            queue: multiprocessing.Queue[dict[str, Any]]) -> None:
    queue.put(asyncio.run(_load(*args)))


def load_etcd(endpoints: list[str], *, clients: int, workers: int, conns: int,
              value_bytes: int, warmup_s: float, duration_s: float) -> dict[str, Any]:
    queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
    per = [clients // workers + (1 if i < clients % workers else 0) for i in range(workers)]
    procs = [multiprocessing.Process(target=_worker, args=(
        (i, endpoints, per[i], max(1, conns // workers), value_bytes, warmup_s, duration_s),
        queue)) for i in range(workers)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=warmup_s + duration_s + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    latencies = sorted(x for r in results for x in r["latencies"])
    if not latencies:
        raise RuntimeError("no put was acknowledged in the measured window")

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {"puts": len(latencies), "failed": sum(r["failed"] for r in results),
            "puts_per_s": round(len(latencies) / duration_s, 1), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "clients": clients, "workers": workers, "conns": conns,
            "value_bytes": value_bytes, "duration_s": duration_s}


def run_raft(out: str, args: list[str]) -> dict[str, Any]:
    report_dir = os.path.join(out, "raft")
    command = [sys.executable, "-m", "node.ops.cli", "bench", "--consensus", "raft",
               "--nodes", "3", "--out", report_dir, *args]
    print(" ".join(["scfchain", *command[3:]]), flush=True)
    subprocess.run(command, check=True)
    with open(os.path.join(report_dir, "report.json")) as handle:
        round_ = json.load(handle)["rounds"][-1]
    return {"committed_tps": round_["committed_tps"], "p50_ms": round_["latency_ms"]["p50"],
            "p99_ms": round_["latency_ms"]["p99"], "args": args}


def choose_generator(requested: str | None, benchmark: str | None, *,
                     build: Callable[[], Path] = etcd_go.build,
                     find: Callable[[str | None], Path | None] = etcd_go.find,
                     ) -> tuple[str, Path | None, str]:
    """(generator, Go binary or None, note): `go` when asked for or by default if the tool is
    found or can be built; `python` when asked for, or by default as the fallback, with the
    note that its figure is a floor (and why Go was not used)."""
    if requested == "python":
        if benchmark:
            raise SystemExit("bench.etcd: --benchmark needs --generator go")
        return "python", None, FLOOR_NOTE
    try:
        binary = find(benchmark) or build()
    except etcd_go.ToolUnavailable as error:
        if requested == "go":
            raise SystemExit(f"bench.etcd: no Go generator: {error}") from error
        return "python", None, f"{FLOOR_NOTE} (Go generator unavailable: {error})"
    if benchmark:
        return "go", binary, f"Go load generator: {benchmark} (etcd's tools/benchmark put)"
    return "go", binary, ("Go load generator: bench/etcd_go.py (etcd's tools/benchmark put "
                          "on Debian's etcd 3.4.23 clientv3)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.etcd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--generator", choices=["go", "python"], default=None,
                        help="etcd load generator (default: go if found or buildable, "
                        "else python)")
    parser.add_argument("--benchmark", metavar="PATH",
                        help="go: this benchmark binary (e.g. upstream tools/benchmark)")
    parser.add_argument("--workers", type=int, default=2, help="python: load processes")
    parser.add_argument("--conns", type=int, default=32, help="gRPC connections in all")
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--warmup-s", type=float, default=3.0, help="python only")
    parser.add_argument("--duration-s", type=float, default=30.0,
                        help="python: measured window; go: sets --total's default")
    parser.add_argument("--total", type=int, default=None,
                        help=f"go: puts in all (default {PUTS_PER_S_GUESS:,} x --duration-s)")
    parser.add_argument("--key-space-size", type=int, default=1, help="go: distinct keys")
    parser.add_argument("--no-raft", action="store_true", help="etcd only")
    parser.add_argument("--out", default="bench-out/etcd")
    parser.add_argument("raft_args", nargs="*",
                        help=f"after --: scfchain bench args (default {' '.join(RAFT_DEFAULT)})")
    args = parser.parse_args(argv)
    if args.total is not None and args.total <= 0:
        parser.error("--total must be positive")
    ensure_etcd()
    generator, binary, note = choose_generator(args.generator, args.benchmark)
    total = args.total or max(1, int(PUTS_PER_S_GUESS * args.duration_s))
    os.makedirs(args.out, exist_ok=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="scf-etcd-") as root:
        members, procs = start_members(root, args.members)
        try:
            endpoints = [m.client_url for m in members]
            if binary is not None:
                print(f"etcd {args.members} members up; {args.clients} clients x "
                      f"{total:,} {args.value_bytes}-byte puts (Go) ...", flush=True)
                etcd = etcd_go.run(binary, endpoints, conns=args.conns, clients=args.clients,
                                   total=total, value_bytes=args.value_bytes,
                                   key_space=args.key_space_size,
                                   log_path=os.path.join(args.out, "etcd-benchmark.txt"))
            else:
                print(f"etcd {args.members} members up; {args.clients} clients x "
                      f"{args.value_bytes}-byte puts for {args.duration_s:g} s "
                      "(Python) ...", flush=True)
                etcd = load_etcd(endpoints, clients=args.clients, workers=args.workers,
                                 conns=args.conns, value_bytes=args.value_bytes,
                                 warmup_s=args.warmup_s, duration_s=args.duration_s)
        finally:
            stop_members(procs)
    etcd["generator"] = generator
    etcd["note"] = note
    etcd["load_before"] = load_before
    version = subprocess.run([ETCD, "--version"], capture_output=True, text=True).stdout
    # "etcd Version: 3.4.23" -> "etcd 3.4.23"
    etcd["version"] = version.splitlines()[0].replace(" Version:", "") if version else "?"
    print(json.dumps(etcd), flush=True)
    doc: dict[str, Any] = {"etcd": etcd}
    if not args.no_raft:
        time.sleep(5)  # let the etcd members' exit settle before the next round
        raft_load = os.getloadavg()[0]
        doc["raft3"] = {**run_raft(args.out, args.raft_args or RAFT_DEFAULT),
                        "load_before": raft_load}
        doc["ratio"] = round(doc["raft3"]["committed_tps"] / etcd["puts_per_s"], 2)
    with open(os.path.join(args.out, "etcd.json"), "w") as handle:
        json.dump(doc, handle, indent=2)
    lines = ["| system | ops/s | p50 ms | p99 ms | load before |", "|---|---|---|---|---|",
             f"| {etcd['version']}, 3 members, {args.clients} clients, {args.value_bytes} B "
             f"puts | {etcd['puts_per_s']:,.0f} | {etcd['p50_ms']:.1f} | {etcd['p99_ms']:.1f} "
             f"| {load_before:.2f} |"]
    if "raft3" in doc:
        raft = doc["raft3"]
        lines.append(f"| scfchain Raft-3, cash transfers ({' '.join(raft['args'])}) "
                     f"| {raft['committed_tps']:,.0f} | {raft['p50_ms']:.0f} "
                     f"| {raft['p99_ms']:.0f} | {raft['load_before']:.2f} |")
        lines.append(f"\nRaft-3 / etcd: {doc['ratio']:.2f}x")
    lines.append(f"\netcd load: {note}.")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary.md"), "w") as handle:
        handle.write(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
