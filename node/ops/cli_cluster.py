"""`scfchain cluster up|status|down|restart|kill|add-node`: the launcher's command line.

The work is in `node.ops.launcher`; this module parses arguments, prints tables (rich) or one JSON
document (`--json`), and follows the nodes' logs while a foreground `up` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from node.ops.cluster_status import NodeStatus, app_hash_divergence, node_statuses
from node.ops.launcher import (
    CONSENSUS_KINDS,
    FOLLOW_TIMEOUT_S_DEFAULT,
    GRACE_S_DEFAULT,
    READY_TIMEOUT_S_DEFAULT,
    Cluster,
    ClusterError,
    add_node,
    kill_node,
    load_cluster,
    node_running,
    prepare_cluster,
    restart_node,
    running_pids,
    start_cluster,
    stop_cluster,
)

NODE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "white")
LOG_POLL_S = 0.2
LIVENESS_EVERY_POLLS = 5
LOG_CHUNK_BYTES_MAX = 1 << 20  # read at most this much of one log per poll
PIPE_WIDTH = 120  # columns of tables written to a pipe or file
ROUND_NAMES = {"raft": "term", "pbft": "view", "solo": "round"}


def _fail(command: str, message: str) -> int:
    print(f"scfchain {command}: {message}", file=sys.stderr)
    return 1


def _guarded(command: str, func: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClusterError as exc:
            return _fail(command, str(exc))

    return run


def make_console(*, stderr: bool = False) -> Console:
    """A console that stays wide enough for the tables when output is not a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return console


def _console(args: argparse.Namespace) -> Console:
    # With --json the one JSON document owns stdout; anything else goes to stderr.
    return make_console(stderr=bool(getattr(args, "json", False)))


# ---------------------------------------------------------------------------------------------
# Tables.


def status_table(cluster: Cluster, statuses: list[NodeStatus]) -> Table:
    """Validators first, then observers (nodes that follow the chain and never vote), each
    group in cluster.json's order, with a rule between the groups. A "base" column (the lowest
    height whose block a node holds) appears only when some node does not hold every block."""
    round_name = ROUND_NAMES.get(cluster.consensus, "round")
    table = Table(title=f"{cluster.chain_id} · {cluster.consensus} · {cluster.root}")
    pruned = any(status.base_height > 0 for status in statuses)
    columns = ["node", "state", "set", "height", "app hash", "role", round_name, "mempool",
               "pid", "client address"]
    if pruned:
        columns.insert(columns.index("height") + 1, "base")
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("height", "base", "mempool") else "left"
        )
    validators = [status for status in statuses if status.validator]
    observers = [status for status in statuses if not status.validator]
    for group in (validators, observers):
        if group is observers and validators and observers:
            table.add_section()
        for status in group:
            table.add_row(*_status_cells(status, base_column=pruned))
    return table


def _status_cells(status: NodeStatus, *, base_column: bool = False) -> list[str | Text]:
    state = Text("up", style="green") if status.up else Text("down", style="red")
    role = Text(status.role, style="bold") if status.role in ("leader", "primary") else (
        Text(status.role))
    member = Text("validator", style="bold") if status.validator else Text("observer", "cyan")
    if status.validator_epoch is not None:
        member.append(f" · epoch {status.validator_epoch}", style="dim")
    base: list[str | Text] = []
    if base_column:
        base = [str(status.base_height) if status.up else "-"]
    return [
        status.id,
        state,
        member,
        str(status.height) if status.up else "-",
        *base,
        status.app_hash[:12] + "…" if status.app_hash else "-",
        role if status.up else Text("-"),
        str(status.round) if status.up else "-",
        str(status.mempool_size) if status.up else "-",
        str(status.pid) if status.pid else "-",
        status.client_addr,
    ]


def _nodes_json(statuses: list[NodeStatus]) -> list[dict[str, Any]]:
    return [status.to_json() for status in statuses]


# ---------------------------------------------------------------------------------------------
# up


class _Stop(Exception):
    """SIGTERM to a foreground launcher: stop the cluster as Ctrl-C would."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _up(args: argparse.Namespace) -> int:
    console = _console(args)
    cluster, resumed = prepare_cluster(
        args.dir,
        nodes=args.nodes,
        consensus=args.consensus,
        base_port=args.base_port,
        fresh=args.fresh,
        chain_id=args.chain_id,
        node_options=(None if args.snapshot_interval is None
                      else {"snapshots.interval": args.snapshot_interval}),
    )
    if resumed:
        console.print(
            f"resuming the {cluster.consensus} chain {cluster.chain_id} in {cluster.root}"
        )
    else:
        console.print(
            f"created a {len(cluster.nodes)}-node {cluster.consensus} cluster "
            f"{cluster.chain_id} in {cluster.root}"
        )
    offsets = {node.id: _size(node.log_file) for node in cluster.nodes}
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        asyncio.run(
            start_cluster(
                cluster, timeout_s=args.timeout, byzantine=frozenset(args.byzantine or ())
            )
        )
        statuses = asyncio.run(node_statuses(cluster))
        if args.json:
            print(json.dumps({"chain_id": cluster.chain_id, "consensus": cluster.consensus,
                              "cluster_file": cluster.path, "nodes": _nodes_json(statuses)}))
        else:
            console.print(status_table(cluster, statuses))
        if args.detach:
            console.print(
                f"running in the background; `scfchain cluster status --dir {args.dir}` shows "
                f"it, `scfchain cluster down --dir {args.dir}` stops it"
            )
            return 0
        console.print("following the node logs; Ctrl-C stops the cluster")
        _follow_logs(cluster, offsets, make_console(stderr=args.json))
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.detach and running_pids(cluster):
            console.print("stopping the cluster …")
            outcome = stop_cluster(cluster, args.grace)
            console.print(", ".join(f"{node_id} {what}" for node_id, what in outcome.items()))
    return 0


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _follow_logs(cluster: Cluster, offsets: dict[str, int], console: Console) -> None:
    """Print new log lines of every node, prefixed and coloured, until interrupted."""
    width = max(len(node.id) for node in cluster.nodes)
    colours = {node.id: NODE_COLOURS[i % len(NODE_COLOURS)] for i, node in
               enumerate(cluster.nodes)}
    partial = {node.id: b"" for node in cluster.nodes}
    reported_down: set[str] = set()
    polls = 0
    while True:
        for node in cluster.nodes:
            try:
                with open(node.log_file, "rb") as handle:
                    handle.seek(offsets[node.id])
                    chunk = handle.read(LOG_CHUNK_BYTES_MAX)
            except OSError:
                continue
            offsets[node.id] += len(chunk)
            lines = (partial[node.id] + chunk).split(b"\n")
            partial[node.id] = lines.pop()
            for line in lines:
                console.print(Text.assemble(
                    (f"{node.id:<{width}} │ ", colours[node.id]),
                    line.decode(errors="replace"),
                ))
        polls += 1
        if polls % LIVENESS_EVERY_POLLS == 0:  # by PID; `cluster restart` may have changed it
            try:
                cluster = load_cluster(cluster.root)
            except ClusterError:
                pass
            for node in cluster.nodes:
                if not node_running(node) and node.id not in reported_down:
                    reported_down.add(node.id)
                    console.print(Text(f"{node.id:<{width}} │ (process is not running)", "red"))
                elif node_running(node):
                    reported_down.discard(node.id)
        time.sleep(LOG_POLL_S)


# ---------------------------------------------------------------------------------------------
# status, down, restart, kill


def _status(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)

    async def run() -> tuple[list[NodeStatus], str | None]:
        statuses = await node_statuses(cluster)
        return statuses, await app_hash_divergence(cluster, statuses)

    statuses, warning = asyncio.run(run())
    if args.json:
        print(json.dumps(_nodes_json(statuses)))
    else:
        make_console().print(status_table(cluster, statuses))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
        return 1
    return 0


def _down(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    outcome = stop_cluster(cluster, args.grace)
    if args.json:
        print(json.dumps([{"id": node_id, "outcome": what} for node_id, what in outcome.items()]))
    else:
        for node_id, what in outcome.items():
            print(f"{node_id}: {what}")
    return 0


def _restart(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    proc = asyncio.run(restart_node(cluster, args.node, grace_s=args.grace,
                                    timeout_s=args.timeout))
    if args.json:
        print(json.dumps({"id": args.node, "pid": proc.pid, "up": True}))
    else:
        print(f"{args.node} restarted (pid {proc.pid}) and healthy")
    return 0


def _kill(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    was_running = kill_node(cluster, args.node)
    if args.json:
        print(json.dumps({"id": args.node, "killed": was_running}))
    else:
        print(f"{args.node} killed (SIGKILL)" if was_running else f"{args.node} was not running")
    return 0


def _add_node(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    console = _console(args)
    console.print(f"adding a node to the {cluster.consensus} cluster in {cluster.root} …")
    node, height = asyncio.run(add_node(cluster, timeout_s=args.timeout,
                                        follow_timeout_s=args.follow_timeout,
                                        state_sync=not args.no_state_sync))
    doc = add_node_json(cluster, node.id, node.pid, node.client_addr, node.peer_addr, height,
                        observer=args.observer)
    if args.json:
        print(json.dumps(doc))
    else:
        for line in add_node_lines(doc):
            console.print(line, soft_wrap=True)  # the command to copy stays on one line
    return 0


def add_node_json(
    cluster: Cluster, node_id: str, pid: int | None, client_addr: str, peer_addr: str,
    height: int, *, observer: bool,
) -> dict[str, Any]:
    """What `cluster add-node` reports; `propose` is the command that makes it a validator."""
    proposer = committee_member_hint(cluster)
    return {
        "node": node_id,
        "pid": pid,
        "client_addr": client_addr,
        "peer_addr": peer_addr,
        "height": height,
        "validator": False,
        "observer": observer,
        "propose": f"scfchain gov propose add-validator --node {node_id} --as {proposer} "
                   f"--dir {cluster.root}",
    }


def add_node_lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"{doc['node']} runs (pid {doc['pid']}, client {doc['client_addr']}, peer "
        f"{doc['peer_addr']}) as an observer and follows the chain at height {doc['height']}",
    ]
    if doc["observer"]:
        lines.append("it stays an observer: it executes every block and serves clients, and "
                     "never votes; to make it a validator later, a committee member proposes")
    else:
        lines.append("to make it a validator, a committee member proposes it (and others vote "
                     "until the threshold is reached):")
    lines.append(f"  {doc['propose']}")
    return lines


def committee_member_hint(cluster: Cluster) -> str:
    """A member to name in the printed proposal: the sample committee's first, or the first
    member of the cluster (the committee itself is on the chain, `gov list` shows it)."""
    names = [account.name for account in cluster.accounts]
    return "core" if "core" in names else names[0] if names else "NAME"


def register(sub: Any) -> None:
    """Add `cluster` and its subcommands to the `scfchain` parser."""
    cluster = sub.add_parser("cluster", help="start, inspect and stop a local multi-node network")
    commands = cluster.add_subparsers(dest="cluster_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dir", required=True, help="the cluster directory")
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    up = commands.add_parser("up", help="create (or resume) a cluster and start its nodes")
    common(up)
    up.add_argument("--nodes", type=int, help="validators (new clusters: 4, or 1 for solo)")
    up.add_argument("--consensus", choices=CONSENSUS_KINDS, help="new clusters: raft")
    up.add_argument("--base-port", type=int,
                    help="client port of node1; node i uses P+2(i-1) and P+2(i-1)+1 for peers "
                         "(default: free ports)")
    up.add_argument("--detach", action="store_true", help="leave the nodes running and return")
    up.add_argument("--fresh", action="store_true", help="wipe the directory's chain first")
    up.add_argument(
        "--byzantine",
        action="append",
        metavar="NODE",
        help="tests only: start NODE as an equivocating PBFT primary (repeatable)",
    )
    up.add_argument("--chain-id", default="scf-local", help="chain id of a new cluster")
    up.add_argument("--snapshot-interval", type=int, metavar="N",
                    help="new clusters: a state snapshot every N blocks (default 500; 0: none)")
    up.add_argument("--timeout", type=float, default=READY_TIMEOUT_S_DEFAULT,
                    help="seconds to wait for healthy nodes and a leader")
    up.add_argument("--grace", type=float, default=GRACE_S_DEFAULT,
                    help="seconds between SIGTERM and SIGKILL when stopping")
    up.set_defaults(func=_guarded("cluster up", _up))

    status = commands.add_parser("status", help="per node: up/down, height, app hash, role")
    common(status)
    status.set_defaults(func=_guarded("cluster status", _status))

    down = commands.add_parser("down", help="stop every node (SIGTERM, then SIGKILL)")
    common(down)
    down.add_argument("--grace", type=float, default=GRACE_S_DEFAULT,
                      help="seconds between SIGTERM and SIGKILL")
    down.set_defaults(func=_guarded("cluster down", _down))

    restart = commands.add_parser("restart", help="stop one node and start it again")
    common(restart)
    restart.add_argument("--node", required=True, help="node id, e.g. node2")
    restart.add_argument("--grace", type=float, default=GRACE_S_DEFAULT,
                         help="seconds between SIGTERM and SIGKILL")
    restart.add_argument("--timeout", type=float, default=READY_TIMEOUT_S_DEFAULT,
                         help="seconds to wait until it is healthy")
    restart.set_defaults(func=_guarded("cluster restart", _restart))

    add = commands.add_parser(
        "add-node", help="start one more node (an observer) that a committee vote can make a "
        "validator")
    common(add)
    add.add_argument("--observer", action="store_true",
                     help="meant to stay an observer (e.g. an auditor's node); every new node "
                          "starts as one either way")
    add.add_argument("--timeout", type=float, default=READY_TIMEOUT_S_DEFAULT,
                     help="seconds to wait until it is healthy")
    add.add_argument("--follow-timeout", type=float, default=FOLLOW_TIMEOUT_S_DEFAULT,
                     help="seconds to wait until it follows the head")
    add.add_argument("--no-state-sync", action="store_true",
                     help="replay every block instead of restoring a peer's state snapshot")
    add.set_defaults(func=_guarded("cluster add-node", _add_node))

    kill = commands.add_parser("kill", help="SIGKILL one node, to try a fault by hand")
    common(kill)
    kill.add_argument("--node", required=True, help="node id, e.g. node2")
    kill.set_defaults(func=_guarded("cluster kill", _kill))
