"""The founding description of a consortium across hosts: `consortium.toml`.

It names the chain (id, block limits), the consensus (raft or pbft, and its params), the
governance committee, options every node's config gets, and the organisations: each with its
nodes (id, host, ports) and its members (name, roles, starting balance). `load_consortium`
reads and checks it, refusing anything a node or genesis would refuse later with a message
that names the entry to fix; `node/ops/consortium_bundles.py` turns it into one bundle per
organisation. An organisation that keeps its own keys gives a node's `public_key` and
`tls_csr` (from `scfchain consortium csr`) and a member's `account` instead. The sample is
`examples/consortium.toml`; docs/deploy.md walks through it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from consensus.pbft_config import PbftConfig
from consensus.raft_config import RaftConfig
from contracts.runtime import ROLES
from node.ops.consortium_pki import NODE_ID_RE, valid_host

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")  # organisations and members: file names
HEX_KEY_RE = re.compile(r"^[0-9a-f]{64}$")  # an Ed25519 public key (a node's, an account id)
CONSENSUS_KINDS = ("raft", "pbft")  # solo runs one node on one machine: `scfchain cluster up`
NODE_PARAMS = ("empty_block_interval_ms",)  # consensus params the node reads, not the engine
BLOCK_KEYS = ("txs_max", "bytes_max", "interval_ms")
RESERVED_NAMES = ("ca",)  # OUT/ca holds the founding CA


class ConsortiumError(Exception):
    """consortium.toml is invalid or cannot be made into bundles; the message says what."""


@dataclass(frozen=True, slots=True)
class NodeEntry:
    node_id: str
    org: str
    host: str  # what peers and clients dial, and what the certificate names
    client_port: int
    peer_port: int
    metrics_port: int | None = None
    listen: str = ""  # the address the node binds (default: host if an IP, else 0.0.0.0)
    public_key: str | None = None  # hex: the org keeps the node's signing key
    tls_csr: str | None = None  # path of its TLS request (the org keeps the TLS key)

    @property
    def own_keys(self) -> bool:
        return self.public_key is not None

    @property
    def bind_host(self) -> str:
        if self.listen:
            return self.listen
        return self.host if _is_ip(self.host) else "0.0.0.0"

    def addr(self, port: int, *, bind: bool = False) -> str:
        return host_port(self.bind_host if bind else self.host, port)

    @property
    def peer_addr(self) -> str:
        """What genesis gives the other validators to dial."""
        return self.addr(self.peer_port)

    @property
    def client_addr(self) -> str:
        """What clients dial."""
        return self.addr(self.client_port)

    @property
    def metrics_addr(self) -> str:
        return "" if self.metrics_port is None else self.addr(self.metrics_port)


@dataclass(frozen=True, slots=True)
class MemberEntry:
    name: str
    org: str
    roles: tuple[str, ...]
    balance: int = 0
    account: str | None = None  # hex: the org keeps the member's key


@dataclass(frozen=True, slots=True)
class OrgEntry:
    name: str
    title: str
    nodes: tuple[NodeEntry, ...]
    members: tuple[MemberEntry, ...]


@dataclass(frozen=True, slots=True)
class Consortium:
    chain_id: str
    consensus: str
    consensus_params: dict[str, int]
    block: dict[str, int]
    committee: tuple[tuple[str, int], ...]  # (member name, weight)
    committee_threshold: int | None
    orgs: tuple[OrgEntry, ...]
    node_options: dict[str, object] = field(default_factory=dict)  # "table.name" -> value
    genesis_time_ms: int | None = None
    base_dir: str = "."  # where relative paths (tls_csr) start

    @property
    def nodes(self) -> list[NodeEntry]:
        return [node for org in self.orgs for node in org.nodes]

    @property
    def members(self) -> list[MemberEntry]:
        return [member for org in self.orgs for member in org.members]

    def org(self, name: str) -> OrgEntry:
        for org in self.orgs:
            if org.name == name:
                return org
        raise ConsortiumError(
            f"no organisation {name!r} (there are {', '.join(o.name for o in self.orgs)})"
        )

    def csr_path(self, node: NodeEntry) -> str:
        assert node.tls_csr is not None
        return os.path.normpath(os.path.join(self.base_dir, node.tls_csr))


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Reading the TOML


def _table(doc: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
           ) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ConsortiumError(f"{where} must be a table")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise ConsortiumError(f"{where}: unknown key(s) {unknown} (known: {sorted(allowed)})")
    missing = [key for key in required if key not in doc]
    if missing:
        raise ConsortiumError(f"{where}: missing {missing}")
    return doc


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConsortiumError(f"{where} must be an integer in {low}..{high}, got {value!r}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConsortiumError(
            f"{where} must be 1..32 characters of a-z, 0-9, '_' and '-', got {value!r}"
        )
    if value in RESERVED_NAMES:
        raise ConsortiumError(f"{where}: {value!r} is reserved")
    return value


def _hex_key(value: Any, where: str) -> str:
    if not isinstance(value, str) or not HEX_KEY_RE.match(value):
        raise ConsortiumError(f"{where} must be 64 lowercase hex digits, got {value!r}")
    return value


def _node(doc: Any, org: str, where: str) -> NodeEntry:
    doc = _table(
        doc, where,
        ("id", "host", "client_port", "peer_port", "metrics_port", "listen", "public_key",
         "tls_csr"),
        ("id", "host", "client_port", "peer_port"),
    )
    node_id = doc["id"]
    if not isinstance(node_id, str) or not NODE_ID_RE.match(node_id):
        raise ConsortiumError(
            f"{where}: id {node_id!r} must be a DNS label (a-z, 0-9, '-'; 1..63 characters): "
            f"it is the name in the node's certificate"
        )
    where = f"node {node_id!r}"
    host = doc["host"]
    if not isinstance(host, str) or not valid_host(host):
        raise ConsortiumError(f"{where}: host {host!r} is neither an IP address nor a DNS name")
    listen = doc.get("listen", "")
    if listen and (not isinstance(listen, str) or not _is_ip(listen)):
        raise ConsortiumError(f"{where}: listen must be an IP address (0.0.0.0: every one)")
    ports = {key: _int(doc[key], f"{where}: {key}", 1, 65535)
             for key in ("client_port", "peer_port", "metrics_port") if key in doc}
    if len(set(ports.values())) != len(ports):
        raise ConsortiumError(f"{where}: its ports must differ, got {ports}")
    public_key, csr = doc.get("public_key"), doc.get("tls_csr")
    if (public_key is None) != (csr is None):
        raise ConsortiumError(
            f"{where}: an organisation that keeps its node's keys gives both public_key and "
            f"tls_csr (`scfchain consortium csr` makes them); got only one"
        )
    if csr is not None and (not isinstance(csr, str) or not csr):
        raise ConsortiumError(f"{where}: tls_csr must be a file path")
    return NodeEntry(
        node_id=node_id,
        org=org,
        host=host,
        client_port=ports["client_port"],
        peer_port=ports["peer_port"],
        metrics_port=ports.get("metrics_port"),
        listen=listen,
        public_key=None if public_key is None else _hex_key(public_key, f"{where}: public_key"),
        tls_csr=csr,
    )


def _member(doc: Any, org: str, where: str) -> MemberEntry:
    doc = _table(doc, where, ("name", "roles", "balance", "account", "title"),
                 ("name", "roles"))
    name = _name(doc["name"], f"{where}: name")
    where = f"member {name!r}"
    roles = doc["roles"]
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise ConsortiumError(f"{where}: roles must be a non-empty list of role names")
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ConsortiumError(f"{where}: unknown role(s) {unknown}; roles are {list(ROLES)}")
    if len(set(roles)) != len(roles):
        raise ConsortiumError(f"{where}: a role is listed twice in {roles}")
    account = doc.get("account")
    return MemberEntry(
        name=name,
        org=org,
        roles=tuple(roles),
        balance=_int(doc.get("balance", 0), f"{where}: balance", 0, 2**62),
        account=None if account is None else _hex_key(account, f"{where}: account"),
    )


def _org(doc: Any, index: int) -> OrgEntry:
    doc = _table(doc, f"orgs[{index}]", ("name", "title", "nodes", "members"), ("name",))
    name = _name(doc["name"], f"orgs[{index}]: name")
    title = doc.get("title", name)
    if not isinstance(title, str):
        raise ConsortiumError(f"organisation {name!r}: title must be a string")
    nodes_doc, members_doc = doc.get("nodes", []), doc.get("members", [])
    if not isinstance(nodes_doc, list) or not isinstance(members_doc, list):
        raise ConsortiumError(f"organisation {name!r}: nodes and members are arrays of tables")
    nodes = tuple(_node(d, name, f"organisation {name!r}: nodes[{i}]")
                  for i, d in enumerate(nodes_doc))
    members = tuple(_member(d, name, f"organisation {name!r}: members[{i}]")
                    for i, d in enumerate(members_doc))
    if not nodes and not members:
        raise ConsortiumError(f"organisation {name!r} has neither nodes nor members")
    return OrgEntry(name, title, nodes, members)


def _flatten_options(doc: Any) -> dict[str, object]:
    """[node] as the "table.name" keys `localnet._write_config` takes (one level of tables)."""
    if not isinstance(doc, dict):
        raise ConsortiumError("[node] must be a table")
    options: dict[str, object] = {}
    for key, value in doc.items():
        if key in ("node_id", "data_dir", "genesis", "client_addr", "peer_addr",
                   "signing_key", "metrics_addr", "tls"):
            raise ConsortiumError(f"[node]: {key!r} is set per node by the bundles, not here")
        if isinstance(value, dict):
            for name, inner in value.items():
                if isinstance(inner, dict | list):
                    raise ConsortiumError(f"[node.{key}]: {name!r} must be a plain value")
                options[f"{key}.{name}"] = inner
        elif isinstance(value, list):
            raise ConsortiumError(f"[node]: {key!r} must be a plain value or a table")
        else:
            options[key] = value
    return options


def _check_node_options(options: Mapping[str, object]) -> None:
    """[node] as `node.config.parse_config` takes it (nothing is read from disk)."""
    from node.config import ConfigError, parse_config

    doc: dict[str, Any] = {"node_id": "check", "data_dir": "data", "genesis": "genesis.json",
                           "signing_key": "node_key.pem", "client_addr": "127.0.0.1:1",
                           "peer_addr": "127.0.0.1:2"}
    for key, value in options.items():
        table, _, name = key.partition(".")
        if name:
            doc.setdefault(table, {})[name] = value
        else:
            doc[key] = value
    try:
        parse_config(doc, ".")
    except (ConfigError, TypeError) as exc:
        raise ConsortiumError(f"[node]: {exc}") from None


def _consensus(doc: Any, nodes: int) -> tuple[str, dict[str, int]]:
    doc = _table(doc, "[consensus]", ("kind", "params"), ("kind",))
    kind = doc["kind"]
    if kind not in CONSENSUS_KINDS:
        raise ConsortiumError(
            f"[consensus]: kind must be one of {list(CONSENSUS_KINDS)}, got {kind!r} (solo is "
            f"one node on one machine: `scfchain cluster up --consensus solo`)"
        )
    params = doc.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in params.values()
    ):
        raise ConsortiumError("[consensus.params]: every param is an integer")
    engine_fields: type[PbftConfig] | type[RaftConfig] = (
        PbftConfig if kind == "pbft" else RaftConfig
    )
    known = {item.name for item in fields(engine_fields)} | set(NODE_PARAMS)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConsortiumError(
            f"[consensus.params]: unknown {kind} param(s) {unknown} (known: {sorted(known)})"
        )
    try:
        engine_fields(**{k: v for k, v in params.items() if k not in NODE_PARAMS})
    except ValueError as exc:
        raise ConsortiumError(f"[consensus.params]: {exc}") from None
    if kind == "pbft" and nodes < 4:
        raise ConsortiumError(
            f"pbft needs n = 3f + 1 >= 4 nodes to tolerate a fault; the organisations run "
            f"{nodes} (use raft for fewer)"
        )
    return kind, dict(params)


def _committee(doc: Any, members: Mapping[str, MemberEntry]
               ) -> tuple[tuple[tuple[str, int], ...], int | None]:
    doc = _table(doc, "[committee]", ("members", "threshold"), ("members",))
    items = doc["members"]
    if not isinstance(items, list) or not items:
        raise ConsortiumError("[committee]: members must be a non-empty array of "
                              "{name, weight} tables")
    pairs: list[tuple[str, int]] = []
    for index, item in enumerate(items):
        item = _table(item, f"[committee] members[{index}]", ("name", "weight"), ("name",))
        name = item["name"]
        if name not in members:
            raise ConsortiumError(
                f"[committee]: {name!r} is not a member of any organisation "
                f"(members: {sorted(members)})"
            )
        if any(name == known for known, _ in pairs):
            raise ConsortiumError(f"[committee]: {name!r} is listed twice")
        pairs.append((name, _int(item.get("weight", 1), f"[committee] {name}: weight", 1,
                                 1_000_000)))
    total = sum(weight for _, weight in pairs)
    threshold = doc.get("threshold")
    if threshold is not None:
        threshold = _int(threshold, "[committee]: threshold", 1, total)
    return tuple(pairs), threshold


def parse_consortium(doc: dict[str, Any], base_dir: str = ".") -> Consortium:
    doc = _table(doc, "consortium.toml", ("chain", "consensus", "committee", "node", "orgs"),
                 ("chain", "consensus", "committee", "orgs"))
    chain = _table(doc["chain"], "[chain]", ("chain_id", "genesis_time_ms", "block"),
                   ("chain_id",))
    chain_id = chain["chain_id"]
    if not isinstance(chain_id, str) or not 1 <= len(chain_id) <= 64:
        raise ConsortiumError(f"[chain]: chain_id must be 1..64 characters, got {chain_id!r}")
    block = _table(chain.get("block", {}), "[chain.block]", BLOCK_KEYS)
    block = {key: _int(value, f"[chain.block]: {key}", 1, 2**31) for key, value in block.items()}
    genesis_time = chain.get("genesis_time_ms")
    if genesis_time is not None:
        genesis_time = _int(genesis_time, "[chain]: genesis_time_ms", 0, 2**53)
    orgs_doc = doc["orgs"]
    if not isinstance(orgs_doc, list) or not orgs_doc:
        raise ConsortiumError("consortium.toml: [[orgs]] must list at least one organisation")
    orgs = tuple(_org(item, index) for index, item in enumerate(orgs_doc))
    _check_unique(orgs)
    members = {m.name: m for org in orgs for m in org.members}
    kind, params = _consensus(doc["consensus"], sum(len(o.nodes) for o in orgs))
    committee, threshold = _committee(doc["committee"], members)
    node_options = _flatten_options(doc.get("node", {}))
    _check_node_options(node_options)
    return Consortium(
        chain_id=chain_id,
        consensus=kind,
        consensus_params=params,
        block=block,
        committee=committee,
        committee_threshold=threshold,
        orgs=orgs,
        node_options=node_options,
        genesis_time_ms=genesis_time,
        base_dir=base_dir,
    )


def _check_unique(orgs: tuple[OrgEntry, ...]) -> None:
    """Organisation, node and member names, accounts and node keys appear once; no two nodes
    on one host share a port."""
    seen_orgs: set[str] = set()
    node_owner: dict[str, str] = {}
    member_owner: dict[str, str] = {}
    keys: dict[str, str] = {}
    endpoints: dict[tuple[str, int], str] = {}
    for org in orgs:
        if org.name in seen_orgs:
            raise ConsortiumError(f"organisation {org.name!r} is listed twice")
        seen_orgs.add(org.name)
        for node in org.nodes:
            if node.node_id in node_owner:
                raise ConsortiumError(
                    f"node id {node.node_id!r} is used twice (organisations "
                    f"{node_owner[node.node_id]!r} and {org.name!r})"
                )
            node_owner[node.node_id] = org.name
            ports = [node.client_port, node.peer_port]
            if node.metrics_port is not None:
                ports.append(node.metrics_port)
            for port in ports:
                where = (node.host.lower(), port)
                if where in endpoints:
                    raise ConsortiumError(
                        f"nodes {endpoints[where]!r} and {node.node_id!r} both use port "
                        f"{port} on host {node.host}"
                    )
                endpoints[where] = node.node_id
            if node.public_key is not None:
                if node.public_key in keys:
                    raise ConsortiumError(
                        f"node {node.node_id!r} has the same public_key as "
                        f"{keys[node.public_key]!r}"
                    )
                keys[node.public_key] = node.node_id
        for member in org.members:
            if member.name in member_owner:
                raise ConsortiumError(
                    f"member {member.name!r} is listed twice (organisations "
                    f"{member_owner[member.name]!r} and {org.name!r})"
                )
            member_owner[member.name] = org.name
            if member.account is not None:
                if member.account in keys:
                    raise ConsortiumError(
                        f"member {member.name!r} has the same key as {keys[member.account]!r}"
                    )
                keys[member.account] = member.name
    if not node_owner:
        raise ConsortiumError("no organisation runs a node")


def load_consortium(path: str) -> Consortium:
    """Read and check consortium.toml (ConsortiumError says what is wrong)."""
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise ConsortiumError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConsortiumError(f"{path} is not valid TOML: {exc}") from exc
    return parse_consortium(doc, os.path.dirname(os.path.abspath(path)))


# ---------------------------------------------------------------------------------------------
# Genesis


def genesis_for(
    spec: Consortium,
    node_keys: Mapping[str, str],
    accounts: Mapping[str, str],
    certs: Mapping[str, str],
    ca_cert_pem: str,
    time_ms: int | None = None,
) -> dict[str, object]:
    """The genesis document (`localnet.genesis_document`) for node public keys and TLS
    certificates (by node id) and member account ids (by name)."""
    from node.ops.localnet import genesis_document

    validators = [
        {"id": node.node_id, "public_key": node_keys[node.node_id],
         "peer_addr": node.peer_addr, "tls_cert_pem": certs[node.node_id]}
        for node in spec.nodes
    ]
    members = [{"name": m.name, "account": accounts[m.name], "roles": list(m.roles)}
               for m in spec.members]
    balances = [{"account": accounts[m.name], "amount": m.balance}
                for m in spec.members if m.balance]
    return genesis_document(
        chain_id=spec.chain_id,
        consensus=spec.consensus,
        consensus_params=spec.consensus_params,
        validators=validators,
        members=members,
        balances=balances,
        block=spec.block,
        ca_cert_pem=ca_cert_pem,
        committee=[{"name": name, "weight": weight} for name, weight in spec.committee],
        committee_threshold=spec.committee_threshold,
        time_ms=spec.genesis_time_ms if time_ms is None else time_ms,
    )


def check_genesis(doc: Mapping[str, object]) -> bytes:
    """The genesis as the nodes will read it (`node.genesis.parse_genesis`, then its state at
    height 0), refused with ConsortiumError; returns its genesis id."""
    import json

    from node.config import ConfigError
    from node.genesis import parse_genesis

    try:
        genesis = parse_genesis(json.dumps(doc).encode())
        genesis.state_writes()
    except ConfigError as exc:
        raise ConsortiumError(f"the nodes would refuse this genesis: {exc}") from None
    return genesis.genesis_id
