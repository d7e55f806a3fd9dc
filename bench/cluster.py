"""The cluster under test: a fresh local network the bench starts and stops, or a running one.

A fresh cluster is written with `node.ops.localnet` from the workload's members, whose keys derive
from the run seed (so a run is reproducible); `--target DIR` reads `DIR/cluster.json` (written by
`scfchain cluster up`) and registers and funds the bench members with the cluster's admin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.signing import account_for
from bench.workloads import Member
from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient
from node.ops.localcluster import LocalCluster
from node.ops.localnet import MemberSpec, NetworkLayout, tail, write_network

CHAIN_ID = "scf-bench"
READER = "auditor"  # a fresh cluster's member whose signed reads see every tx
STOP_GRACE_S = 10.0
HEALTHY_WITHIN_S = 60.0


class BenchError(Exception):
    """The benchmark cannot run; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    node_id: str
    client_addr: str
    pid: int | None
    log_file: str = ""


@dataclass(slots=True)
class Cluster:
    chain_id: str
    consensus: str
    nodes: list[NodeEndpoint]
    accounts: dict[str, Account]  # the cluster's own accounts by name (target clusters)
    roles: dict[str, str] = field(default_factory=dict)  # account name -> role (target)
    local: LocalCluster | None = None  # the node processes of a fresh cluster
    fresh: bool = True
    reader: Account | None = None  # signs the bench's reads (GetBlock, Subscribe, Query)
    tls: ClientTls | None = None  # the nodes' client ports speak TLS (a `cluster up` target)

    def client(self, addr: str, timeout_s: float) -> LedgerClient:
        """A client for submitting txs and asking chain info (no reads)."""
        return LedgerClient(addr, timeout_s=timeout_s, tls=self.tls)

    def reading_client(self, addr: str, timeout_s: float) -> LedgerClient:
        """A client whose reads are the auditor's: the bench follows every member's txs."""
        if self.reader is None:
            raise BenchError("the target's cluster.json holds no member with the auditor role; "
                             "the bench reads blocks as one (reads are signed by a member)")
        return LedgerClient(addr, timeout_s=timeout_s, reader=self.reader,
                            chain_id=self.chain_id, tls=self.tls)

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop_all(grace_s=STOP_GRACE_S)
        if self in _STARTED:
            _STARTED.remove(self)

    def leave_running(self) -> None:
        """`--keep`: `stop_started` (at the bench's end) no longer stops this cluster."""
        if self in _STARTED:
            _STARTED.remove(self)


_STARTED: list[Cluster] = []


def stop_started() -> None:
    """Stop every fresh cluster this process started and has not stopped (on interrupts)."""
    for cluster in list(_STARTED):
        cluster.stop()


async def start_fresh(
    root: str,
    *,
    nodes: int,
    consensus: str,
    members: list[Member],
    seed: int,
    block_txs_max: int,
    block_interval_ms: int,
    node_options: dict[str, object] | None = None,
    consensus_params: dict[str, int] | None = None,
    before_start: Callable[[NetworkLayout], None] | None = None,
) -> Cluster:
    """Write a network whose members are the workload's (plus an admin and an auditor, who
    reads), start every node. `consensus_params` go into genesis; `before_start` sees the
    written network before any node starts (e.g. to put delay proxies in front of peers)."""
    os.makedirs(os.path.join(root, "keys"), exist_ok=True)
    specs = [MemberSpec("admin", ("admin",)), MemberSpec(READER, ("auditor",))]
    specs += [MemberSpec(m.name, m.roles, m.balance) for m in members]
    for spec in specs:  # seeded keys: write_network keeps keys it finds
        path = os.path.join(root, "keys", f"{spec.name}.pem")
        if not os.path.exists(path):
            account_for(seed, spec.name).save(path)
    net = write_network(
        root,
        nodes=nodes,
        consensus=consensus,
        members=specs,
        chain_id=CHAIN_ID,
        block={"txs_max": block_txs_max, "interval_ms": block_interval_ms},
        consensus_params=consensus_params,
        node_options=node_options,
    )
    if before_start is not None:
        before_start(net)
    local = LocalCluster(net)
    cluster = Cluster(
        chain_id=net.chain_id,
        consensus=consensus,
        nodes=[],
        accounts={},
        local=local,
        reader=account_for(seed, READER),
    )
    _STARTED.append(cluster)
    try:
        await local.start(timeout_s=HEALTHY_WITHIN_S)
    except (RuntimeError, TimeoutError) as exc:
        cluster.stop()
        log_tail = "\n".join(tail(p.layout.log_file, 40) for p in local.procs.values())
        if "not available" in log_tail or "not available" in str(exc):
            line = next((ln for ln in log_tail.splitlines() if "not available" in ln), "")
            raise BenchError(
                f"the node refused consensus {consensus!r}: it is not available in this build"
                f" ({line.strip()[-160:]})"
            ) from None
        raise BenchError(f"the cluster did not start: {exc}") from None
    cluster.nodes = [
        NodeEndpoint(p.layout.node_id, p.layout.client_addr, p.pid, p.layout.log_file)
        for p in local.procs.values()
    ]
    return cluster


def load_target(directory: str) -> Cluster:
    """A running cluster described by DIR/cluster.json (the launcher's file)."""
    path = os.path.join(directory, "cluster.json")
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except OSError as exc:
        raise BenchError(f"--target {directory}: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise BenchError(f"--target {directory}: {path} is not JSON: {exc}") from None
    try:
        nodes = [
            NodeEndpoint(n["id"], n["client_addr"], n.get("pid"), n.get("log_file", ""))
            for n in doc["nodes"]
        ]
        client_ca = next((n["client_ca"] for n in doc["nodes"] if n.get("client_ca")), "")
        accounts, roles = {}, {}
        for item in doc.get("accounts", []):
            key_file = item["key_file"]
            if not os.path.isabs(key_file):
                key_file = os.path.join(directory, key_file)
            accounts[item["name"]] = Account.load(key_file)
            roles[item["name"]] = item.get("role", "")
        return Cluster(
            chain_id=doc["chain_id"],
            consensus=doc.get("consensus", "?"),
            nodes=nodes,
            accounts=accounts,
            roles=roles,
            fresh=False,
            reader=next((accounts[n] for n, role in roles.items() if role == "auditor"), None),
            tls=ClientTls.load(client_ca) if client_ca else None,
        )
    except (KeyError, TypeError) as exc:
        raise BenchError(f"--target {directory}: cluster.json lacks {exc}") from None
