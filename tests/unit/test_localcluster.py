"""LocalCluster's process handling without nodes: small Python processes stand in for them.

The bounded stop (SIGTERM to all at once, SIGKILL to those that ignore it after the grace
period), stop_all over a cluster's processes, and node_of_port (which node owns the source port
of a connection, as the fault proxies ask).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import psutil

from node.ops.localcluster import LocalCluster, stop_processes
from node.ops.localnet import LOOPBACK, NetworkLayout, NodeLayout

SLEEPER = "import time; time.sleep(60)"
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)
    if "ready" in code:  # its SIGTERM handler is in place
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def cluster_of(tmp_path, count: int) -> LocalCluster:
    nodes = tuple(
        NodeLayout(
            node_id=f"node{i}",
            client_addr=f"{LOOPBACK}:1",
            peer_addr=f"{LOOPBACK}:2",
            config_path=str(tmp_path / f"node{i}.toml"),
            data_dir=str(tmp_path / f"data{i}"),
            log_file=str(tmp_path / f"node{i}.log"),
        )
        for i in range(1, count + 1)
    )
    net = NetworkLayout(str(tmp_path), "test", "raft", str(tmp_path / "genesis.json"), nodes, {})
    return LocalCluster(net)


def test_stop_processes_is_bounded_and_kills_what_ignores_sigterm() -> None:
    polite, stubborn = spawn(SLEEPER), spawn(STUBBORN)
    try:
        started = time.monotonic()
        outcome = stop_processes(
            {"polite": psutil.Process(polite.pid), "stubborn": psutil.Process(stubborn.pid)},
            grace_s=1.0,
        )
        took = time.monotonic() - started
    finally:
        for proc in (polite, stubborn):
            if proc.poll() is None:
                proc.kill()
    assert outcome == {"polite": "stopped", "stubborn": "killed after the grace period"}
    assert 1.0 <= took < 5.0
    assert not psutil.pid_exists(polite.pid) and not psutil.pid_exists(stubborn.pid)


def test_stop_all_stops_every_running_node_and_reports_the_others(tmp_path) -> None:
    cluster = cluster_of(tmp_path, 3)
    cluster.procs["node1"].process = spawn(SLEEPER)
    cluster.procs["node2"].process = spawn(STUBBORN)
    try:
        outcome = cluster.stop_all(grace_s=0.5)
    finally:
        for proc in cluster.procs.values():
            if proc.process is not None and proc.process.poll() is None:
                proc.process.kill()
    assert outcome == {"node1": "stopped", "node2": "killed after the grace period",
                       "node3": "was not running"}
    assert cluster.live() == []


def test_node_of_port_names_the_process_that_owns_a_connection(tmp_path) -> None:
    cluster = cluster_of(tmp_path, 2)
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen()
        port = server.getsockname()[1]
        connect = (
            "import socket, sys, time; s = socket.create_connection(('127.0.0.1', "
            "int(sys.argv[1]))); print('ready', flush=True); time.sleep(60)"
        )
        cluster.procs["node2"].process = spawn(connect, str(port))
        try:
            conn, (_, source_port) = server.accept()
            conn.close()
            assert cluster.node_of_port(source_port) == "node2"
            assert cluster.node_of_port(port) is None  # the listener is this test, no node
        finally:
            cluster.stop_all(grace_s=0.5)

