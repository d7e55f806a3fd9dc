"""Generating a local network on disk and running its node processes.

`write_network` makes a directory a consortium can run from: member keys, node signing keys,
a genesis file and one TOML config per node. `NodeProcess` starts `scfchain node` for one
config, waits until it is healthy, and stops it by PID (SIGTERM, then SIGKILL).
`node/ops/localcluster.py` runs a whole network's processes on these; the launcher, the
soak, the bench and the tests use that.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from node.client.identity import Account
from node.client.ledger import ClientTls
from node.genesis import STATE_FORMAT_LATEST
from node.tls import CertFiles, issue_node_cert, make_ca

LOOPBACK = "127.0.0.1"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now that this process has not handed out before: a port written
    into a config is not bound until its node starts, so the kernel may offer it again (a
    node's metrics port once came back as another node's peer port)."""
    for _ in range(1_000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that this process has not handed out")


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as gRPC binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port_range(count: int, *, tries: int = 200) -> int:
    """A base port P such that P .. P+count-1 are all free on loopback (for --base-port)."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(20_000, 60_000 - count)
        if all(port_free(base + offset) for offset in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free loopback ports found")


@dataclass(frozen=True, slots=True)
class MemberSpec:
    name: str
    roles: tuple[str, ...]
    balance: int = 0
    committee_weight: int = 0  # > 0: on the governance committee with this weight


@dataclass(frozen=True, slots=True)
class NodeLayout:
    node_id: str
    client_addr: str
    peer_addr: str
    config_path: str
    data_dir: str
    log_file: str
    metrics_addr: str = ""  # Prometheus metrics and /healthz (empty: not served)
    client_ca: str = ""  # the CA certificate clients check its TLS client port with ("": plain)

    def client_tls(self) -> ClientTls | None:
        return ClientTls.load(self.client_ca) if self.client_ca else None


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    root: str
    chain_id: str
    consensus: str
    genesis_path: str
    nodes: tuple[NodeLayout, ...]
    accounts: dict[str, str]  # member name -> key file
    client_ca: str = ""  # as NodeLayout's: every node's certificate comes from this CA

    def account(self, name: str) -> Account:
        return Account.load(self.accounts[name])

    def client_tls(self) -> ClientTls | None:
        return ClientTls.load(self.client_ca) if self.client_ca else None


def _node_layout(node_id: str, node_dir: str, client_port: int, peer_port: int) -> NodeLayout:
    """Where a node of a local network keeps its config, data and log, and its loopback ports
    (metrics on a free one: `--base-port` numbers the client and peer ports only)."""
    return NodeLayout(
        node_id=node_id,
        client_addr=f"{LOOPBACK}:{client_port}",
        peer_addr=f"{LOOPBACK}:{peer_port}",
        config_path=os.path.join(node_dir, "config.toml"),
        data_dir=os.path.join(node_dir, "data"),
        log_file=os.path.join(node_dir, "node.log"),
        metrics_addr=f"{LOOPBACK}:{free_port()}",
    )


def write_network(
    root: str,
    *,
    nodes: int,
    consensus: str,
    members: list[MemberSpec],
    chain_id: str = "scf-local",
    base_port: int | None = None,
    block: dict[str, int] | None = None,
    consensus_params: dict[str, int] | None = None,
    node_options: dict[str, object] | None = None,
    client_tls: bool = False,
) -> NetworkLayout:
    """Write keys, genesis and configs for `nodes` validators under root. `client_tls`: the
    nodes' client ports speak TLS with their certificates from the network's CA (what
    `scfchain cluster up` makes); False: plaintext on loopback, for tests and development (a
    solo network has no CA: always plaintext)."""
    os.makedirs(os.path.join(root, "keys"), exist_ok=True)
    accounts: dict[str, str] = {}
    member_docs, balances = [], []
    for member in members:
        path = os.path.join(root, "keys", f"{member.name}.pem")
        account = Account.load(path) if os.path.exists(path) else _new_key(path)
        accounts[member.name] = path
        member_docs.append(
            {"name": member.name, "account": account.account_id, "roles": list(member.roles)}
        )
        if member.balance:
            balances.append({"account": account.account_id, "amount": member.balance})
    layouts, validators = [], []
    for index in range(nodes):
        node_id = f"node{index + 1}"
        node_dir = os.path.join(root, "nodes", node_id)
        os.makedirs(node_dir, exist_ok=True)
        key_path = os.path.join(node_dir, "node_key.pem")
        signer = Account.load(key_path) if os.path.exists(key_path) else _new_key(key_path)
        if base_port is None:
            client_port, peer_port = free_port(), free_port()
        else:
            client_port, peer_port = base_port + 2 * index, base_port + 2 * index + 1
        layout = _node_layout(node_id, node_dir, client_port, peer_port)
        layouts.append(layout)
        validators.append(
            {"id": node_id, "public_key": signer.public_key.hex(), "peer_addr": layout.peer_addr}
        )
    genesis_path = os.path.join(root, "genesis.json")
    ca_cert_pem: str | None = None
    if consensus != "solo":  # peer links use mutual TLS with certificates from the CA
        ca = make_ca(os.path.join(root, "ca"))
        for layout, validator in zip(layouts, validators, strict=True):
            files = issue_node_cert(ca, layout.node_id, os.path.dirname(layout.config_path))
            validator["tls_cert_pem"] = _read_text(files.cert)
        ca_cert_pem = _read_text(ca.cert)
    committee = [
        {"name": m.name, "weight": m.committee_weight} for m in members if m.committee_weight
    ]
    write_genesis(genesis_path, genesis_document(
        chain_id=chain_id, consensus=consensus, consensus_params=consensus_params,
        validators=validators, members=member_docs, balances=balances, block=block,
        ca_cert_pem=ca_cert_pem, committee=committee,
    ))
    client_ca = os.path.join(root, "ca", "ca.crt") if client_tls and consensus != "solo" else ""
    layouts = [dataclasses.replace(layout, client_ca=client_ca) for layout in layouts]
    for layout in layouts:
        options = dict(node_options or {})
        if consensus != "solo":
            node_dir = os.path.dirname(layout.config_path)
            options["tls.ca_cert"] = os.path.relpath(os.path.join(root, "ca", "ca.crt"), node_dir)
            options["tls.cert"] = "tls.crt"
            options["tls.key"] = "tls.key"
            options["client_tls"] = bool(client_ca)
        _write_config(layout, genesis_path, options)
    return NetworkLayout(
        root, chain_id, consensus, genesis_path, tuple(layouts), accounts, client_ca
    )


def genesis_document(
    *,
    chain_id: str,
    consensus: str,
    validators: Sequence[Mapping[str, object]],
    members: Sequence[Mapping[str, object]],
    balances: Sequence[Mapping[str, object]],
    block: dict[str, int] | None = None,
    consensus_params: dict[str, int] | None = None,
    ca_cert_pem: str | None = None,
    committee: Sequence[Mapping[str, object]] | None = None,
    committee_threshold: int | None = None,
    time_ms: int | None = None,
) -> dict[str, object]:
    """The genesis document (node/genesis.py reads it) for validators `{id, public_key,
    peer_addr, tls_cert_pem?}`, members `{name, account, roles}` and balances `{account,
    amount}`. `write_network` and the consortium bundles (node/ops/consortium_bundles.py)
    both write theirs with it."""
    genesis: dict[str, object] = {
        "chain_id": chain_id,
        "genesis_time_ms": int(time.time() * 1000) if time_ms is None else time_ms,
        "consensus": {"engine": consensus, "params": consensus_params or {}},
        "validators": list(validators),
        "members": list(members),
        "balances": list(balances),
        "block": block or {},
        # New chains take the newest state format; a chain keeps the one it was made with.
        "state_format": STATE_FORMAT_LATEST,
    }
    if ca_cert_pem is not None:
        # Governance checks a new validator's certificate against this CA (contracts/
        # governance_actions.py), so genesis carries it.
        genesis["ca_cert_pem"] = ca_cert_pem
    if committee:  # otherwise genesis makes the admins the committee
        committee_doc: dict[str, object] = {"members": list(committee)}
        if committee_threshold is not None:
            committee_doc["threshold"] = committee_threshold
        genesis["committee"] = committee_doc
    return genesis


def write_genesis(path: str, genesis: dict[str, object]) -> None:
    with open(path, "w") as handle:
        json.dump(genesis, handle, indent=2)


def _read_text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _new_key(path: str) -> Account:
    account = Account.generate()
    account.save(path)
    return account


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def _write_config(layout: NodeLayout, genesis_path: str, options: dict[str, object]) -> None:
    node_dir = os.path.dirname(layout.config_path)
    lines = [
        f"node_id = {_toml_value(layout.node_id)}",
        f"data_dir = {_toml_value(os.path.relpath(layout.data_dir, node_dir))}",
        f"genesis = {_toml_value(os.path.relpath(genesis_path, node_dir))}",
        f"client_addr = {_toml_value(layout.client_addr)}",
        f"peer_addr = {_toml_value(layout.peer_addr)}",
        'signing_key = "node_key.pem"',
    ]
    if layout.metrics_addr:
        lines.append(f"metrics_addr = {_toml_value(layout.metrics_addr)}")
    tables: dict[str, dict[str, object]] = {}
    for key, value in sorted(options.items()):
        if "." in key:
            table, name = key.split(".", 1)
            tables.setdefault(table, {})[name] = value
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for table, values in sorted(tables.items()):
        lines.append(f"\n[{table}]")
        lines.extend(f"{name} = {_toml_value(value)}" for name, value in sorted(values.items()))
    with open(layout.config_path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


FAULT_ENV = ("SCFCHAIN_CRASH_POINT", "SCFCHAIN_BYZANTINE")


def node_command(config_path: str, env: dict[str, str]) -> list[str]:
    """The node's command line: the fault harness (node/faults/) when `env` asks for a fault,
    since `scfchain node` never reads those variables."""
    if any(env.get(name) for name in FAULT_ENV):
        return [sys.executable, "-m", "node.faults", "--config", config_path]
    return [sys.executable, "-m", "node.ops.cli", "node", "--config", config_path]


@dataclass
class NodeProcess:
    """One `scfchain node` process, started and stopped by PID."""

    layout: NodeLayout
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(self.layout.log_file, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            node_command(self.layout.config_path, env),
            stdin=subprocess.DEVNULL,  # a detached node must not hold the launcher's terminal
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after the grace period. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode

    async def wait_healthy(self, timeout_s: float = 30.0) -> None:
        from node.client.ledger import LedgerClient

        deadline = time.monotonic() + timeout_s
        async with LedgerClient(self.layout.client_addr, tls=self.layout.client_tls()) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(
                        f"{self.layout.node_id} exited with {self.process and self.process.poll()}"
                        f"; see {self.layout.log_file}:\n{tail(self.layout.log_file)}"
                    )
                if await client.healthy(timeout_s=1.0):
                    return
                await asyncio.sleep(0.1)
        raise TimeoutError(
            f"{self.layout.node_id} not healthy after {timeout_s:.0f}s; see {self.layout.log_file}"
        )


def tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def write_joining_node(
    root: str,
    node_id: str,
    *,
    genesis_path: str,
    consensus: str,
    node_options: dict[str, object] | None = None,
) -> NodeLayout:
    """A signing key, a TLS certificate from the network's CA and a config for one node that
    joins a running network (`scfchain cluster add-node`), on free loopback ports.

    Genesis is left as it is: the node starts outside the validator set (an observer) and
    becomes a validator only when the committee votes it in, so the CA must already exist —
    a new CA would make a certificate no peer trusts.
    """
    if consensus == "solo":
        raise ValueError("a solo network runs exactly one node; no node can join it")
    ca = CertFiles(os.path.join(root, "ca", "ca.crt"), os.path.join(root, "ca", "ca.key"))
    if not (os.path.isfile(ca.cert) and os.path.isfile(ca.key)):
        raise FileNotFoundError(f"no consortium CA in {os.path.dirname(ca.cert)} (ca.crt, ca.key)")
    node_dir = os.path.join(root, "nodes", node_id)
    os.makedirs(node_dir)  # FileExistsError: never reuse another node's keys
    _new_key(os.path.join(node_dir, "node_key.pem"))
    issue_node_cert(ca, node_id, node_dir)
    options = dict(node_options or {})
    layout = _node_layout(node_id, node_dir, free_port(), free_port())
    # As the network's other nodes (`shared_node_options` copies theirs): plaintext on
    # loopback unless told, as `write_network`'s default.
    options["client_tls"] = bool(options.get("client_tls", False))
    if options["client_tls"]:
        layout = dataclasses.replace(layout, client_ca=ca.cert)
    options["tls.ca_cert"] = os.path.relpath(ca.cert, node_dir)
    options["tls.cert"] = "tls.crt"
    options["tls.key"] = "tls.key"
    _write_config(layout, genesis_path, options)
    return layout
