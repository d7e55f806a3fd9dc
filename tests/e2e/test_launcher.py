"""`scfchain cluster` and the client commands, run as a person runs them: as CLI processes.

Each test starts a real cluster (3 Raft nodes, or 4 PBFT nodes) on free loopback ports in its
own directory, drives it with `cluster up|status|kill|restart|down`, `tx`, `query`, `watch` and
`voucher tree`, and checks by PID that no node process outlives the test. Error cases (port in
use, missing directory, nodes not healthy in time) must give a clear message and leave nothing
running.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from node.client.identity import Account
from node.ops.cli import main
from node.ops.localnet import LOOPBACK, free_port_range

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CLI_TIMEOUT_S = 90
ROLES = {"admin", "core_enterprise", "supplier", "dealer", "financier", "warehouse",
         "exchange", "auditor"}


def cli(*args: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.ops.cli", *args],
        capture_output=True, text=True, timeout=timeout_s,
    )


class InProcess:
    """Runs `scfchain ARGS` in this process (no interpreter start-up per command)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(capsys)


def node_processes(root: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose command line mentions the cluster directory."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        if any(root in arg for arg in cmdline) and "node" in cmdline:
            found.append(proc)
    return found


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def cluster_dir(tmp_path) -> Iterator[str]:
    """A cluster directory; afterwards no node process of it may be running."""
    root = str(tmp_path / "net")
    try:
        yield root
    finally:
        leaked = node_processes(root)
        for proc in leaked:
            proc.kill()
        psutil.wait_procs(leaked, timeout=10)
        assert not leaked, f"node processes left running: {[p.pid for p in leaked]}"


def load(root: str) -> dict[str, Any]:
    with open(os.path.join(root, "cluster.json")) as handle:
        doc: dict[str, Any] = json.load(handle)
    return doc


def up(root: str, consensus: str = "raft", nodes: int = 3, *extra: str
       ) -> subprocess.CompletedProcess[str]:
    base = str(free_port_range(2 * nodes))
    return cli("cluster", "up", "--dir", root, "--nodes", str(nodes), "--consensus", consensus,
               "--base-port", base, "--detach", "--json", *extra)


def test_pbft_cluster_up_serves_and_down_leaves_no_process(
    cluster_dir: str, run: InProcess
) -> None:
    started = up(cluster_dir, "pbft", 4)
    assert started.returncode == 0, started.stderr
    shown = json.loads(started.stdout)
    assert [n["role"] for n in shown["nodes"]].count("primary") == 1
    assert {n["role"] for n in shown["nodes"]} == {"primary", "backup"}
    pids = [node["pid"] for node in load(cluster_dir)["nodes"]]
    assert all(alive(pid) for pid in pids)
    paid = run.json("tx", "cash.transfer", "--as", "core", "--dir", cluster_dir,
                    "--args", '{"to": "@dealer", "amount": 5}')
    assert paid["status"] == "SUCCESS"
    assert len(paid["confirmed_by"]) >= 2  # f + 1 matching receipts, f = 1
    assert set(paid["confirmed_by"]) <= {"node1", "node2", "node3", "node4"}
    statuses = run.json("cluster", "status", "--dir", cluster_dir)
    assert [s["up"] for s in statuses] == [True] * 4
    # One view on every node; not necessarily view 0: on a loaded machine a backup whose
    # first block came late may already have moved the cluster to view 1.
    assert len({s["round"] for s in statuses}) == 1
    assert run("cluster", "down", "--dir", cluster_dir).returncode == 0
    assert not any(alive(pid) for pid in pids)


def test_up_calls_down_and_resume_leave_no_process(cluster_dir: str, run: InProcess) -> None:
    consensus, nodes = "raft", 3
    started = up(cluster_dir, consensus, nodes)
    assert started.returncode == 0, started.stderr
    shown = json.loads(started.stdout)
    assert [n["id"] for n in shown["nodes"]] == [f"node{i}" for i in range(1, nodes + 1)]
    assert sum(n["role"] in ("leader", "primary") for n in shown["nodes"]) == 1

    doc = load(cluster_dir)
    assert doc["consensus"] == consensus and doc["chain_id"]
    pids = [node["pid"] for node in doc["nodes"]]
    for node in doc["nodes"]:
        assert {"id", "client_addr", "peer_addr", "pid", "data_dir", "log_file"} <= set(node)
        assert alive(node["pid"]) and os.path.isfile(node["log_file"])
    accounts = {a["name"]: a for a in doc["accounts"]}
    assert {a["role"] for a in doc["accounts"]} == ROLES
    assert sum(a["role"] == "supplier" for a in doc["accounts"]) == 4
    assert sum(a["role"] == "financier" for a in doc["accounts"]) == 2
    for account in doc["accounts"]:
        assert Account.load(account["key_file"]).account_id == account["account_id"]

    again = up(cluster_dir, consensus, nodes)
    assert again.returncode == 1 and "already running" in again.stderr

    # Client commands by member name.
    paid = run.json("tx", "cash.transfer", "--as", "core", "--dir", cluster_dir,
                    "--args", '{"to": "@tier1a", "amount": 12345}')
    assert paid["status"] == "SUCCESS" and paid["height"] > 0 and len(paid["tx_id"]) == 64
    assert paid["events"][0]["name"] == "Transferred"
    assert paid["events"][0]["to"] == accounts["tier1a"]["account_id"]
    refused = run("tx", "cash.transfer", "--as", "tier3", "--dir", cluster_dir, "--json",
                  "--args", '{"to": "@core", "amount": 1}')
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error_code"] == "INSUFFICIENT_FUNDS"
    human = run("tx", "cash.transfer", "--as", "core", "--dir", cluster_dir,
                "--args", '{"to": "@tier1a", "amount": 55}')
    assert human.returncode == 0 and "SUCCESS at height" in human.stdout
    assert "to=tier1a" in human.stdout  # names, not hex
    balance = run.json("query", "cash.balance", "--dir", cluster_dir,
                       "--args", '{"account": "@tier1a"}')
    assert balance["balance"] == 12_400
    # Reads are signed by a member (by default the auditor) and show what it may see.
    denied = run("query", "cash.balance", "--as", "tier3", "--dir", cluster_dir,
                 "--args", '{"account": "@core"}')
    assert denied.returncode == 1, denied.stdout
    assert "the node answered PERMISSION_DENIED" in denied.stderr
    own = run.json("query", "cash.balance", "--as", "core", "--dir", cluster_dir,
                   "--args", '{"account": "@core"}')
    audited = run.json("query", "cash.balance", "--as", "auditor", "--dir", cluster_dir,
                       "--args", '{"account": "@core"}')
    assert own == audited and own["balance"] > 0

    # A voucher passed up one tier, shown as a tree.
    expiry = int(time.time() * 1000) + 86_400_000
    assert run.json("tx", "voucher.grant_credit", "--as", "bank", "--dir", cluster_dir, "--args",
                    json.dumps({"core": "@core", "limit": 10**9, "expiry_ms": expiry})
                    )["status"] == "SUCCESS"
    issued = run.json("tx", "voucher.issue", "--as", "core", "--dir", cluster_dir, "--args",
                      json.dumps({"supplier": "@tier1a", "amount": 1000, "maturity_ms": expiry,
                                  "documents": ["ab" * 32]}))
    root_id = issued["events"][0]["voucher"]
    moved = run.json("tx", "voucher.transfer", "--as", "tier1a", "--dir", cluster_dir, "--args",
                     json.dumps({"voucher": root_id, "to": "@tier2", "amount": 400}))
    assert moved["status"] == "SUCCESS"
    tree = run.json("voucher", "tree", root_id, "--dir", cluster_dir)
    assert {(n["tier"], n["amount"], n["state"]) for n in tree["tree"]} == {
        (1, 1000, "SPLIT"), (2, 400, "ACTIVE"), (1, 600, "ACTIVE")}
    drawn = run("voucher", "tree", root_id, "--dir", cluster_dir)
    assert drawn.returncode == 0
    assert "tier 2 · tier2 · 4.00 · ACTIVE" in drawn.stdout
    assert "tier 1 · tier1a · 6.00 · ACTIVE" in drawn.stdout

    # watch: blocks as JSON lines; status: all up on one chain.
    watched = run("watch", "--dir", cluster_dir, "--from", "1", "--count", "2", "--json")
    first_block = json.loads(watched.stdout.splitlines()[0])
    assert first_block["height"] == 1
    statuses = run.json("cluster", "status", "--dir", cluster_dir)
    assert [s["up"] for s in statuses] == [True] * nodes
    assert {"id", "up", "height", "app_hash", "role"} <= set(statuses[0])

    downed = cli("cluster", "down", "--dir", cluster_dir)
    assert downed.returncode == 0, downed.stderr
    assert not any(alive(pid) for pid in pids)
    assert all(node["pid"] is None for node in load(cluster_dir)["nodes"])
    assert [s["up"] for s in run.json("cluster", "status", "--dir", cluster_dir)] == [False] * nodes

    # Re-running up resumes the same chain.
    resumed = cli("cluster", "up", "--dir", cluster_dir, "--detach")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    again_first = json.loads(run("watch", "--dir", cluster_dir, "--from", "1", "--count", "1",
                                 "--json").stdout)
    assert again_first["block_hash"] == first_block["block_hash"]
    assert run.json("query", "cash.balance", "--dir", cluster_dir,
                    "--args", '{"account": "@tier1a"}')["balance"] == 12_400
    resumed_pids = [node["pid"] for node in load(cluster_dir)["nodes"]]
    assert run("cluster", "down", "--dir", cluster_dir, "--grace", "5").returncode == 0
    assert not any(alive(pid) for pid in resumed_pids)

    # --fresh starts a new chain in the same directory.
    fresh = cli("cluster", "up", "--dir", cluster_dir, "--detach", "--fresh", "--consensus",
                "solo", "--nodes", "1")
    assert fresh.returncode == 0, fresh.stderr
    new_first = json.loads(run("watch", "--dir", cluster_dir, "--from", "1", "--count", "1",
                               "--json").stdout)
    assert new_first["block_hash"] != first_block["block_hash"]
    fresh_pids = [node["pid"] for node in load(cluster_dir)["nodes"]]
    assert run("cluster", "down", "--dir", cluster_dir).returncode == 0
    assert not any(alive(pid) for pid in fresh_pids)


def _reader(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_line(lines: queue.Queue[str], text: str, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed within {timeout_s}s; got {''.join(seen)[-2000:]}")


def test_foreground_up_streams_logs_survives_kill_and_restart_and_stops_on_ctrl_c(
    cluster_dir: str, run: InProcess
) -> None:
    base = str(free_port_range(6))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "node.ops.cli", "cluster", "up", "--dir", cluster_dir, "--nodes",
         "3", "--consensus", "raft", "--base-port", base],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # As from a terminal: a suite started in the background (`make test &`) inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler for Ctrl-C to reach.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(launcher.stdout, lines), daemon=True).start()
    try:
        shown = "".join(_wait_line(lines, "following the node logs", 90))
        assert "node1" in shown and "leader" in shown
        _wait_line(lines, "node2 │", 30)  # node logs arrive prefixed by node id
        pids = {node["id"]: node["pid"] for node in load(cluster_dir)["nodes"]}

        killed = run("cluster", "kill", "--dir", cluster_dir, "--node", "node2")
        assert killed.returncode == 0 and "killed" in killed.stdout
        assert not alive(pids["node2"])
        statuses = {s["id"]: s for s in run.json("cluster", "status", "--dir", cluster_dir)}
        assert not statuses["node2"]["up"] and statuses["node1"]["up"]
        paid = run.json("tx", "cash.transfer", "--as", "core", "--dir", cluster_dir,
                        "--args", '{"to": "@dealer", "amount": 7}')
        assert paid["status"] == "SUCCESS"  # two of three nodes still commit

        restarted = cli("cluster", "restart", "--dir", cluster_dir, "--node", "node2")
        assert restarted.returncode == 0, restarted.stderr
        new_pid = load(cluster_dir)["nodes"][1]["pid"]
        assert new_pid != pids["node2"] and alive(new_pid)
        deadline = time.monotonic() + 30
        while True:  # the restarted node catches up
            statuses = {s["id"]: s for s in run.json("cluster", "status", "--dir", cluster_dir)}
            if statuses["node2"]["up"] and statuses["node2"]["height"] >= paid["height"]:
                break
            assert time.monotonic() < deadline, statuses["node2"]
            time.sleep(0.5)

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(60) == 0
        _wait_line(lines, "stopping the cluster", 5)
        for pid in [*pids.values(), new_pid]:
            assert not alive(pid)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)


def test_port_in_use_is_refused_before_anything_starts(cluster_dir: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        # Hold a port the kernel gave us (so it is surely ours), and put node2's client port
        # on it; the other five ports of the range are checked free by the launcher itself.
        holder.bind((LOOPBACK, 0))
        holder.listen()
        base = holder.getsockname()[1] - 2
        done = cli("cluster", "up", "--dir", cluster_dir, "--nodes", "3", "--consensus", "raft",
                   "--base-port", str(base), "--detach")
    assert done.returncode == 1
    assert f"port already in use: {LOOPBACK}:{base + 2}" in done.stderr
    assert not os.path.exists(cluster_dir)  # refused before writing anything
    assert node_processes(cluster_dir) == []


def test_missing_directory_gives_a_clear_message(tmp_path, run: InProcess) -> None:
    missing = str(tmp_path / "nowhere")
    for args in (["cluster", "status"], ["cluster", "down"], ["cluster", "kill", "--node", "n1"],
                 ["tx", "cash.transfer", "--as", "core"], ["query", "cash.supply"],
                 ["watch"], ["voucher", "tree", "ab" * 32]):
        done = run(*args, "--dir", missing)
        assert done.returncode == 1, args
        assert f"no directory {missing}" in done.stderr and "cluster up" in done.stderr, args
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run("cluster", "status", "--dir", str(empty))
    assert done.returncode == 1 and "holds no cluster" in done.stderr


def test_nodes_not_healthy_in_time_are_stopped(cluster_dir: str) -> None:
    done = cli("cluster", "up", "--dir", cluster_dir, "--nodes", "1", "--consensus", "solo",
               "--detach", "--timeout", "0.05")
    assert done.returncode == 1
    assert "not healthy after" in done.stderr
    assert all(node["pid"] is None for node in load(cluster_dir)["nodes"])
    assert node_processes(cluster_dir) == []
