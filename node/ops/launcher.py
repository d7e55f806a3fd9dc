"""The cluster launcher: make, start, inspect and stop a local multi-node network, by PID.

A cluster lives in one directory: what `node.ops.localnet.write_network` makes (member keys, node
keys, a consortium CA and node certificates, genesis, one config per node) plus `cluster.json`,
which describes the network for programs (chain id, consensus, nodes with their addresses and
PIDs, the sample members with their keys). Every later command (`status`, `down`, `restart`,
`kill`, the client commands) finds the network through that file. A PID is only signalled after
its command line shows it is this cluster's node, so a reused PID is never hit; `down` also
finds node processes of the directory that the file lost track of, so none is left behind.

Starting and waiting for the nodes is `node.ops.localcluster.LocalCluster`'s, as is the bounded
stop by PID; what this module adds is the file, so that a later command (another process)
finds and checks the processes. It prints nothing; `node.ops.cluster_status` reads the running
nodes, and `node.ops.cli_cluster` is the command line on top of both.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import tomllib

import psutil

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError
from node.ops.cluster_dir import (
    CLUSTER_FILE,
    Cluster,
    ClusterAccount,
    ClusterError,
    ClusterNode,
    load_cluster,
)
from node.ops.localcluster import (
    LocalCluster,
    ProcessesSurvived,
    kill_processes,
    stop_processes,
)
from node.ops.localnet import (
    LOOPBACK,
    NodeProcess,
    port_free,
    tail,
    write_joining_node,
    write_network,
)
from node.ops.sample_consortium import SAMPLE_MEMBERS, sample_member_specs

CONSENSUS_KINDS = ("solo", "raft", "pbft")
NODES_DEFAULT = 4
NODES_MAX = 16
GRACE_S_DEFAULT = 10.0
READY_TIMEOUT_S_DEFAULT = 30.0
FOLLOW_BLOCKS_MAX = 3  # add-node: a joining node follows once it is this close to the head
FOLLOW_TIMEOUT_S_DEFAULT = 60.0


# ---------------------------------------------------------------------------------------------
# Making a cluster directory.


def create_cluster(
    root: str,
    *,
    nodes: int,
    consensus: str,
    base_port: int | None = None,
    chain_id: str = "scf-local",
    consensus_params: dict[str, int] | None = None,
    node_options: dict[str, object] | None = None,
) -> Cluster:
    """Write a new network with the sample consortium under root (which must be empty)."""
    root = os.path.abspath(root)
    if consensus not in CONSENSUS_KINDS:
        raise ClusterError(f"consensus must be one of {', '.join(CONSENSUS_KINDS)}")
    if consensus == "solo" and nodes != 1:
        raise ClusterError("solo consensus runs exactly one node; use --nodes 1")
    if not 1 <= nodes <= NODES_MAX:
        raise ClusterError(f"--nodes must be 1..{NODES_MAX}")
    if base_port is not None:
        if not 1024 <= base_port <= 65535 - 2 * nodes:
            raise ClusterError(f"--base-port must leave room for {2 * nodes} ports below 65536")
        _require_ports_free(
            [(f"{LOOPBACK}:{base_port + i}", f"node{i // 2 + 1}") for i in range(2 * nodes)]
        )
    if os.path.isdir(root) and os.listdir(root):
        raise ClusterError(f"{root} is not empty and holds no cluster; choose an empty directory")
    os.makedirs(root, exist_ok=True)
    net = write_network(
        root,
        nodes=nodes,
        consensus=consensus,
        members=sample_member_specs(),
        chain_id=chain_id,
        base_port=base_port,
        consensus_params=consensus_params,
        node_options=node_options,
        client_tls=True,
    )
    accounts = [
        ClusterAccount(
            name=member.name,
            role=member.role,
            account_id=Account.load(net.accounts[member.name]).account_id,
            key_file=net.accounts[member.name],
            title=member.title,
        )
        for member in SAMPLE_MEMBERS
    ]
    cluster = Cluster(
        root=root,
        chain_id=chain_id,
        consensus=consensus,
        nodes=[
            ClusterNode(
                id=layout.node_id,
                client_addr=layout.client_addr,
                peer_addr=layout.peer_addr,
                pid=None,
                data_dir=layout.data_dir,
                log_file=layout.log_file,
                config_path=layout.config_path,
                metrics_addr=layout.metrics_addr,
                client_ca=layout.client_ca,
            )
            for layout in net.nodes
        ],
        accounts=accounts,
    )
    cluster.save()
    return cluster


def prepare_cluster(
    root: str,
    *,
    nodes: int | None,
    consensus: str | None,
    base_port: int | None = None,
    fresh: bool = False,
    chain_id: str = "scf-local",
    consensus_params: dict[str, int] | None = None,
    node_options: dict[str, object] | None = None,
) -> tuple[Cluster, bool]:
    """The cluster to start in root: the existing one (resumed) or a new one.

    Returns (cluster, resumed). `fresh` wipes an existing cluster directory first; a directory
    that holds something other than a cluster is never wiped.
    """
    root = os.path.abspath(root)
    exists = os.path.exists(os.path.join(root, CLUSTER_FILE))
    if exists:
        running = running_pids(load_cluster(root))
        if running:
            pids = ", ".join(f"{node_id} pid {pid}" for node_id, pid in running.items())
            raise ClusterError(
                f"the cluster in {root} is already running ({pids}); "
                f"see `scfchain cluster status --dir {root}` or stop it with `cluster down`"
            )
    if exists and fresh:
        shutil.rmtree(root)
        exists = False
    if not exists:
        chosen = consensus or "raft"
        count = nodes if nodes is not None else (1 if chosen == "solo" else NODES_DEFAULT)
        cluster = create_cluster(
            root,
            nodes=count,
            consensus=chosen,
            base_port=base_port,
            chain_id=chain_id,
            consensus_params=consensus_params,
            node_options=node_options,
        )
        return cluster, False
    cluster = load_cluster(root)
    if consensus is not None and consensus != cluster.consensus:
        raise ClusterError(
            f"{root} holds a {cluster.consensus} cluster; resume it without --consensus "
            "or start over with --fresh"
        )
    if nodes is not None and nodes != len(cluster.nodes):
        raise ClusterError(
            f"{root} holds a {len(cluster.nodes)}-node cluster; resume it without --nodes "
            "or start over with --fresh"
        )
    if base_port is not None:
        first = int(cluster.nodes[0].client_addr.rpartition(":")[2])
        if first != base_port:
            raise ClusterError(
                f"{root} holds a cluster on ports from {first}; resume it without --base-port "
                "or start over with --fresh"
            )
    return cluster, True


# ---------------------------------------------------------------------------------------------
# Processes, by PID.


def _port_free(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    return port_free(int(port), host)


def _require_ports_free(addrs: list[tuple[str, str]]) -> None:
    busy = [f"{addr} ({owner})" for addr, owner in addrs if not _port_free(addr)]
    if busy:
        raise ClusterError(
            f"port already in use: {', '.join(busy)}; stop what holds it or choose another "
            "--base-port (on a new directory)"
        )


def _is_node_of(proc: psutil.Process, config_paths: set[str]) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return any(arg in config_paths for arg in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def node_running(node: ClusterNode) -> bool:
    """Whether the process with node's recorded PID is running and is that node."""
    return _node_process(node) is not None


def _node_process(node: ClusterNode) -> psutil.Process | None:
    """The live process of node by its recorded PID, or None."""
    if node.pid is None:
        return None
    try:
        proc = psutil.Process(node.pid)
    except psutil.NoSuchProcess:
        return None
    return proc if _is_node_of(proc, {node.config_path}) else None


def _strays(cluster: Cluster) -> dict[str, psutil.Process]:
    """Node processes of this directory, found by command line (also ones the file lost)."""
    by_config = {node.config_path: node.id for node in cluster.nodes}
    found: dict[str, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        for arg in cmdline:
            if arg in by_config and _is_node_of(proc, {arg}):
                found.setdefault(by_config[arg], proc)
    return found


def running_pids(cluster: Cluster) -> dict[str, int]:
    """node id -> PID of every node process of this cluster that is running."""
    running = {node.id: proc.pid for node in cluster.nodes if (proc := _node_process(node))}
    for node_id, proc in _strays(cluster).items():
        running.setdefault(node_id, proc.pid)
    return running


def _processes(cluster: Cluster, node_ids: set[str] | None = None) -> dict[str, psutil.Process]:
    procs = {
        node.id: proc
        for node in cluster.nodes
        if (node_ids is None or node.id in node_ids) and (proc := _node_process(node))
    }
    for node_id, proc in _strays(cluster).items():
        if node_ids is None or node_id in node_ids:
            procs.setdefault(node_id, proc)
    return procs


def _stop(cluster: Cluster, grace_s: float, node_ids: set[str] | None = None) -> dict[str, str]:
    """Stop the cluster's node processes (all, or node_ids) and forget their PIDs (unsaved)."""
    try:
        outcome = stop_processes(_processes(cluster, node_ids), grace_s)
    except ProcessesSurvived as exc:
        raise ClusterError(str(exc)) from None
    for node in cluster.nodes:
        if node_ids is None or node.id in node_ids:
            node.pid = None
    return outcome


def stop_cluster(cluster: Cluster, grace_s: float = GRACE_S_DEFAULT) -> dict[str, str]:
    """`cluster down`: stop every node process of the cluster; node id -> what happened."""
    outcome = _stop(cluster, grace_s)
    for node in cluster.nodes:
        outcome.setdefault(node.id, "was not running")
    cluster.save()
    return outcome


def kill_node(cluster: Cluster, node_id: str) -> bool:
    """SIGKILL one node, as a crash would. False if it was not running."""
    node = cluster.node(node_id)
    procs = _processes(cluster, {node_id})
    try:
        kill_processes(procs.values())
    except ProcessesSurvived:
        raise ClusterError(f"{node_id} survived SIGKILL; check it by hand") from None
    node.pid = None
    cluster.save()
    return bool(procs)


def _start_node(
    cluster: Cluster, local: LocalCluster, node_id: str, env: dict[str, str] | None = None
) -> NodeProcess:
    """Start one node process and record its PID in cluster.json."""
    proc = local.start_node(node_id, env)
    cluster.node(node_id).pid = proc.pid
    cluster.save()
    return proc


async def restart_node(
    cluster: Cluster, node_id: str, *, grace_s: float = GRACE_S_DEFAULT,
    timeout_s: float = READY_TIMEOUT_S_DEFAULT,
) -> NodeProcess:
    """Stop one node (SIGTERM, then SIGKILL) if it runs, start it again, wait until healthy."""
    node = cluster.node(node_id)
    # The running process may belong to another launcher, so it is stopped through its PID in
    # cluster.json, not through the LocalCluster that starts the new one.
    _stop(cluster, grace_s, {node_id})
    _require_ports_free([(node.client_addr, node_id), (node.peer_addr, node_id)])
    local = LocalCluster(cluster.network())
    _start_node(cluster, local, node_id)
    try:
        await local.wait_healthy([node_id], timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        _stop(cluster, 2.0, {node_id})
        cluster.save()
        raise ClusterError(f"{node_id} did not come back: {exc}") from None
    return local.procs[node_id]


# ---------------------------------------------------------------------------------------------
# Starting a whole cluster.


async def start_cluster(
    cluster: Cluster,
    *,
    timeout_s: float = READY_TIMEOUT_S_DEFAULT,
    byzantine: frozenset[str] = frozenset(),
) -> list[NodeProcess]:
    """Start every node, wait until all are healthy and a leader or primary serves.

    `byzantine` (tests only) names nodes to start in a lying mode, see node/faults/byzantine.py.
    On any failure every process started here is stopped before ClusterError is raised, so
    nothing is left running.
    """
    running = running_pids(cluster)
    if running:
        raise ClusterError(f"the cluster in {cluster.root} is already running ({running})")
    addrs = [(n.client_addr, f"{n.id} client") for n in cluster.nodes]
    if cluster.consensus != "solo":
        addrs += [(n.peer_addr, f"{n.id} peer") for n in cluster.nodes]
    _require_ports_free(addrs)
    local = LocalCluster(cluster.network())
    try:
        unknown = sorted(byzantine - {n.id for n in cluster.nodes})
        if unknown:
            raise ClusterError(f"--byzantine names no node of this cluster: {unknown}")
        for node in cluster.nodes:
            env = {"SCFCHAIN_BYZANTINE": "equivocate"} if node.id in byzantine else None
            _start_node(cluster, local, node.id, env)
        await local.wait_ready(timeout_s)
    except BaseException as exc:
        _stop(cluster, 2.0)
        cluster.save()
        if isinstance(exc, ClusterError | RuntimeError | TimeoutError):
            raise ClusterError(str(exc)) from None
        raise
    return list(local.procs.values())


# ---------------------------------------------------------------------------------------------
# A node joining a running cluster (`cluster add-node`).

# What a node's config says about itself; every other setting is the cluster's and is copied.
_OWN_CONFIG_KEYS = frozenset({"node_id", "data_dir", "genesis", "client_addr", "peer_addr",
                              "metrics_addr", "signing_key", "tls"})


def next_node_id(cluster: Cluster) -> str:
    """node<n+1> after the highest node<n> in cluster.json or on disk."""
    numbers = [0]
    names = [node.id for node in cluster.nodes]
    nodes_dir = os.path.join(cluster.root, "nodes")
    if os.path.isdir(nodes_dir):
        names += os.listdir(nodes_dir)
    for name in names:
        if match := re.fullmatch(r"node(\d+)", name):
            numbers.append(int(match.group(1)))
    return f"node{max(numbers) + 1}"


def genesis_validator_ids(cluster: Cluster) -> list[str]:
    """The validators genesis names (the set before any governance change)."""
    path = os.path.join(cluster.root, "genesis.json")
    try:
        with open(path) as handle:
            doc = json.load(handle)
        return [str(item["id"]) for item in doc["validators"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"cannot read the validators of {path}: {exc}") from None


def shared_node_options(cluster: Cluster) -> dict[str, object]:
    """The settings of the first node's config that are not about that node, flattened as
    `write_network` takes them (`table.key`), so a joining node runs like the others."""
    with open(cluster.nodes[0].config_path, "rb") as handle:
        doc = tomllib.load(handle)
    options: dict[str, object] = {}
    for key, value in doc.items():
        if key in _OWN_CONFIG_KEYS:
            continue
        if isinstance(value, dict):
            options.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            options[key] = value
    return options


async def add_node(
    cluster: Cluster, *, timeout_s: float = READY_TIMEOUT_S_DEFAULT,
    follow_timeout_s: float = FOLLOW_TIMEOUT_S_DEFAULT,
    state_sync: bool = True,
) -> tuple[ClusterNode, int]:
    """Write, record and start the next node of a running cluster; wait until it follows.

    The node gets its own signing key and a certificate from the consortium CA, and the same
    genesis: it is outside the validator set, so it starts as an observer, and a committee
    vote (`gov propose add-validator`) makes it a validator. Returns (node, its height).
    A node that does not become healthy is stopped and forgotten (its directory removed); one
    that is healthy but still behind after follow_timeout_s is left running (it is catching
    up) and ClusterError says so. A node far behind restores a peer's state snapshot first
    (node/state_sync.py) unless `state_sync` is False.
    """
    if cluster.consensus == "solo":
        raise ClusterError("a solo chain runs exactly one node; add nodes to a raft or pbft "
                           "cluster")
    running = running_pids(cluster)
    if not running:
        raise ClusterError(f"the cluster in {cluster.root} is not running; start it with "
                           f"`scfchain cluster up --dir {cluster.root} --detach`")
    node_id = next_node_id(cluster)
    try:
        layout = write_joining_node(
            cluster.root, node_id, genesis_path=os.path.join(cluster.root, "genesis.json"),
            consensus=cluster.consensus,
            node_options={**shared_node_options(cluster), "snapshots.state_sync": state_sync},
        )
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        raise ClusterError(f"cannot write {node_id}: {exc}") from None
    node = ClusterNode(id=node_id, client_addr=layout.client_addr, peer_addr=layout.peer_addr,
                       pid=None, data_dir=layout.data_dir, log_file=layout.log_file,
                       config_path=layout.config_path, metrics_addr=layout.metrics_addr,
                       client_ca=layout.client_ca)
    cluster.nodes.append(node)
    cluster.save()
    local = LocalCluster(cluster.network())
    try:
        _start_node(cluster, local, node_id)
        await local.wait_healthy([node_id], timeout_s)
    except BaseException as exc:
        log = tail(node.log_file)
        _stop(cluster, 2.0, {node_id})
        cluster.nodes.remove(node)
        cluster.save()
        shutil.rmtree(os.path.dirname(node.config_path), ignore_errors=True)
        if isinstance(exc, RuntimeError | TimeoutError):
            raise ClusterError(f"{node_id} did not start, so it was removed again: {exc}\n"
                               f"its log ended with:\n{log}") from None
        raise
    others = [n for n in cluster.nodes if n.id != node_id and n.id in running]
    height = await wait_following(node, others, follow_timeout_s)
    return node, height


async def wait_following(node: ClusterNode, others: list[ClusterNode], timeout_s: float) -> int:
    """Wait until node's height reaches the others' head as it was when the wait began and is
    within FOLLOW_BLOCKS_MAX of their head now; returns its height."""

    async def height(of: ClusterNode) -> int | None:
        try:
            async with LedgerClient(of.client_addr, timeout_s=2.0, tls=of.client_tls()) as client:
                return int((await client.chain_info()).height)
        except LedgerError:
            return None

    async def head() -> int:
        heights = await asyncio.gather(*(height(other) for other in others))
        return max((h for h in heights if h is not None), default=0)

    target = await head()
    deadline = time.monotonic() + timeout_s
    own: int | None = None
    while time.monotonic() < deadline:
        own = await height(node)
        if own is not None and own >= target and own >= await head() - FOLLOW_BLOCKS_MAX:
            return own
        await asyncio.sleep(0.25)
    raise ClusterError(
        f"{node.id} runs (pid {node.pid}) but is at height {own if own is not None else '?'} "
        f"of {await head()} after {timeout_s:.0f}s; it is left running to catch up — see "
        f"{node.log_file}"
    )
