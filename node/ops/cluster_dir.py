"""Where the tools find a network: a `cluster up` directory's `cluster.json`, or an
organisation's bundle from `scfchain consortium init` (`bundle.json`, `peers.json`, genesis).

Every client command that takes `--dir` (tx, query, watch, voucher, gov, info) reads one of the
two through `load_cluster`. A cluster directory holds every member's key; a bundle holds its own
organisation's members' keys and knows the others by name and account id from genesis, so
`--as NAME` works for its own members and names resolve for everyone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from node.client.identity import Account
from node.client.ledger import ClientTls
from node.ops.localnet import NetworkLayout, NodeLayout

CLUSTER_FILE = "cluster.json"
BUNDLE_FILE = "bundle.json"


class ClusterError(Exception):
    """Something the person running the cluster must fix; the message says what."""


@dataclass(slots=True)
class ClusterNode:
    id: str
    client_addr: str
    peer_addr: str
    pid: int | None
    data_dir: str
    log_file: str
    config_path: str
    metrics_addr: str = ""  # host:port of /metrics and /healthz
    client_ca: str = ""  # CA certificate for its TLS client port ("": plaintext, loopback)

    def layout(self) -> NodeLayout:
        return NodeLayout(
            node_id=self.id,
            client_addr=self.client_addr,
            peer_addr=self.peer_addr,
            config_path=self.config_path,
            data_dir=self.data_dir,
            log_file=self.log_file,
            metrics_addr=self.metrics_addr,
            client_ca=self.client_ca,
        )

    def client_tls(self) -> ClientTls | None:
        return ClientTls.load(self.client_ca) if self.client_ca else None


@dataclass(frozen=True, slots=True)
class ClusterAccount:
    name: str
    role: str
    account_id: str
    key_file: str
    title: str = ""


@dataclass(slots=True)
class Cluster:
    """What `cluster.json` holds, and where it lives."""

    root: str
    chain_id: str
    consensus: str
    nodes: list[ClusterNode]
    accounts: list[ClusterAccount] = field(default_factory=list)
    bundle: bool = False  # an organisation's bundle (read-only), not a `cluster up` directory

    @property
    def path(self) -> str:
        return os.path.join(self.root, CLUSTER_FILE)

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "consensus": self.consensus,
            "nodes": [asdict(node) for node in self.nodes],
            "accounts": [asdict(account) for account in self.accounts],
        }

    def save(self) -> None:
        """Write cluster.json atomically (a reader never sees half a file)."""
        if self.bundle:
            raise ClusterError(f"{self.root} is an organisation's bundle; the tools do not "
                               "rewrite it")
        staging = self.path + ".tmp"
        with open(staging, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
            handle.write("\n")
        os.replace(staging, self.path)

    def node(self, node_id: str) -> ClusterNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        known = ", ".join(node.id for node in self.nodes)
        raise ClusterError(f"no node {node_id!r} in {self.root} (nodes: {known})")

    def account(self, name: str) -> Account:
        for account in self.accounts:
            if account.name == name and not account.key_file:
                own = ", ".join(a.name for a in self.accounts if a.key_file) or "none"
                raise ClusterError(f"member {name!r} belongs to another organisation: its key "
                                   f"is not in {self.root} (keys here: {own})")
            if account.name == name:
                return Account.load(account.key_file)
        known = ", ".join(account.name for account in self.accounts)
        raise ClusterError(f"no member {name!r} in {self.root} (members: {known})")

    def account_id(self, name: str) -> str:
        for account in self.accounts:
            if account.name == name:
                return account.account_id
        raise ClusterError(f"no member {name!r} in {self.root}")

    def auditor(self) -> Account | None:
        """The first member with the auditor role (whose signed reads see everything), if
        any: what the tools read as when no member is named."""
        for account in self.accounts:
            if account.role == "auditor" and account.key_file:
                return Account.load(account.key_file)
        return None

    def any_reader(self) -> Account | None:
        """A member to sign reads whose answer every member gets (a block's hashes): the
        auditor, else the first member; None for a directory without members."""
        auditor = self.auditor()
        own = [account for account in self.accounts if account.key_file]
        if auditor is not None or not own:
            return auditor
        return Account.load(own[0].key_file)

    def names(self) -> dict[str, str]:
        """account id -> member name, for showing people names instead of hex."""
        return {account.account_id: account.name for account in self.accounts}

    def network(self) -> NetworkLayout:
        """The network as `node.ops.localnet` describes it, for a LocalCluster to run."""
        return NetworkLayout(
            root=self.root,
            chain_id=self.chain_id,
            consensus=self.consensus,
            genesis_path=os.path.join(self.root, "genesis.json"),
            nodes=tuple(node.layout() for node in self.nodes),
            accounts={account.name: account.key_file for account in self.accounts},
            client_ca=self.client_ca,
        )

    @property
    def client_ca(self) -> str:
        """The CA certificate its nodes' TLS client ports are checked with ("": plaintext)."""
        return next((node.client_ca for node in self.nodes if node.client_ca), "")

    def client_tls(self) -> ClientTls | None:
        return ClientTls.load(self.client_ca) if self.client_ca else None


def load_cluster(root: str) -> Cluster:
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise ClusterError(
            f"no directory {root}; start a cluster there with `scfchain cluster up --dir {root}`"
        )
    path = os.path.join(root, CLUSTER_FILE)
    if not os.path.exists(path) and os.path.exists(os.path.join(root, BUNDLE_FILE)):
        return load_bundle(root)
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except FileNotFoundError:
        raise ClusterError(
            f"{root} holds no cluster ({CLUSTER_FILE} is missing) and is no organisation's "
            f"bundle ({BUNDLE_FILE}); "
            f"start one with `scfchain cluster up --dir {root}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {path}: {exc}") from exc
    try:
        return Cluster(
            root=root,
            chain_id=doc["chain_id"],
            consensus=doc["consensus"],
            nodes=[ClusterNode(**node) for node in doc["nodes"]],
            accounts=[ClusterAccount(**account) for account in doc["accounts"]],
        )
    except (KeyError, TypeError) as exc:
        raise ClusterError(f"{path} is not a cluster description: {exc}") from exc


def _read_json(path: str) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except OSError as exc:
        raise ClusterError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ClusterError(f"{path} is not JSON: {exc}") from None


def load_bundle(root: str) -> Cluster:
    """An organisation's bundle as the client tools see a network: every node of the consortium
    (peers.json; its client port speaks TLS checked with the bundle's ca.crt), every member of
    genesis by name and account id, and the keys of the organisation's own members. A bundle
    lacks members registered later by governance: name them by account id (64 hex)."""
    root = os.path.abspath(root)
    bundle = _read_json(os.path.join(root, BUNDLE_FILE))
    peers = _read_json(os.path.join(root, "peers.json"))
    genesis = _read_json(os.path.join(root, "genesis.json"))
    ca_cert = os.path.join(root, "ca.crt")
    try:
        own_nodes = {str(node["id"]): os.path.join(root, str(node["dir"]))
                     for node in bundle["nodes"]}
        nodes = []
        for peer in peers["nodes"]:
            node_dir = own_nodes.get(str(peer["id"]), "")
            nodes.append(ClusterNode(
                id=str(peer["id"]), client_addr=str(peer["client_addr"]),
                peer_addr=str(peer["peer_addr"]), pid=None,
                data_dir=os.path.join(node_dir, "data") if node_dir else "",
                log_file="",
                config_path=os.path.join(node_dir, "config.toml") if node_dir else "",
                metrics_addr=str(peer.get("metrics_addr") or ""), client_ca=ca_cert,
            ))
        own_keys = {str(m["name"]): os.path.join(root, str(m["key_file"]))
                    for m in bundle["members"]}
        accounts = []
        for member in genesis["members"]:
            name = str(member["name"])
            key_file = own_keys.get(name, "")
            roles = [str(role) for role in member.get("roles", [])]
            accounts.append(ClusterAccount(
                name=name, role=roles[0] if roles else "", account_id=str(member["account"]),
                key_file=key_file if key_file and os.path.exists(key_file) else "",
            ))
        named = {account.name for account in accounts}
        for member in bundle["members"]:  # registered by governance after genesis
            if str(member["name"]) not in named:
                roles = [str(role) for role in member.get("roles", [])]
                key_file = own_keys[str(member["name"])]
                accounts.append(ClusterAccount(
                    name=str(member["name"]), role=roles[0] if roles else "",
                    account_id=str(member["account"]),
                    key_file=key_file if os.path.exists(key_file) else "",
                ))
        return Cluster(root=root, chain_id=str(bundle["chain_id"]),
                       consensus=str(bundle["consensus"]), nodes=nodes, accounts=accounts,
                       bundle=True)
    except (KeyError, TypeError) as exc:
        raise ClusterError(f"{root} is not a complete bundle: missing {exc}") from None
