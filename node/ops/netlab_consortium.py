"""A consortium from `examples/consortium.toml` on namespace hosts: the sample's hosts become
the namespaces' addresses, `scfchain consortium init` writes the bundles, and each node runs
from its organisation's bundle inside its own namespace (`ip netns exec NS python -m
node.ops.cli node --config ...`). The calling process (a test, or
`python -m bench.multihost`) is the root namespace: its clients reach the nodes at their
namespace addresses. Needs root and `ip netns` (node/ops/netlab.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient
from node.ops.netlab import Host, Lab, kill, stop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "examples", "consortium.toml")
HEALTHY_WITHIN_S = 30.0


class LabError(RuntimeError):
    """The lab consortium could not be set up or did not come up; the message says why."""


def _require(condition: object, message: str) -> None:
    if not condition:
        raise LabError(message)


def sample_on_hosts(addrs: list[str], *, overrides: dict[str, str] | None = None) -> str:
    """The sample consortium.toml with its nodes' hosts replaced, in order, by `addrs`, and
    any `key = value` line whose key is in `overrides` replaced (the first such line)."""
    with open(SAMPLE) as handle:
        text = handle.read()
    hosts = iter(addrs)
    text, count = re.subn(r'(?m)^(\s*host = )"[^"]*"', lambda m: f'{m[1]}"{next(hosts)}"', text)
    _require(count == len(addrs), f"the sample has {count} nodes, not {len(addrs)}")
    for key, value in (overrides or {}).items():
        text, found = re.subn(rf"(?m)^(\s*{re.escape(key)} = ).*$", rf"\g<1>{value}", text,
                              count=1)
        _require(found, f"no {key} in the sample")
    return text


@dataclass
class HostedNode:
    node_id: str
    org: str
    host: Host
    node_dir: str
    client_addr: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> str:
        return os.path.join(self.node_dir, "config.toml")

    @property
    def log_path(self) -> str:
        return os.path.join(self.node_dir, "node.log")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


@dataclass
class HostedConsortium:
    lab: Lab
    out: str  # the bundles
    chain_id: str
    nodes: dict[str, HostedNode] = field(default_factory=dict)

    @classmethod
    def create(cls, lab: Lab, workdir: str, *, overrides: dict[str, str] | None = None,
               hosts: list[Host] | None = None) -> HostedConsortium:
        """The sample's four nodes on `hosts` (default: every host of the lab)."""
        hosts = lab.hosts if hosts is None else hosts
        toml_path = os.path.join(workdir, "consortium.toml")
        with open(toml_path, "w") as handle:
            handle.write(sample_on_hosts([h.addr for h in hosts], overrides=overrides))
        out = os.path.join(workdir, "bundles")
        result = subprocess.run(
            [sys.executable, "-m", "node.ops.cli", "consortium", "init", "--config", toml_path,
             "--out", out, "--json"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
        _require(result.returncode == 0, f"consortium init failed: {result.stderr}")
        hosted = cls(lab, out, chain_id="")
        by_addr = {h.addr: h for h in lab.hosts}
        for org in json.loads(result.stdout)["orgs"]:
            with open(os.path.join(out, org, "bundle.json")) as handle:
                bundle = json.load(handle)
            hosted.chain_id = bundle["chain_id"]
            for node in bundle["nodes"]:
                hosted.nodes[node["id"]] = HostedNode(
                    node["id"], org, by_addr[node["host"]],
                    os.path.join(out, org, node["dir"]), node["client_addr"],
                )
        return hosted

    async def delay_peer_links(self, delay_ms: float, within_s: float = 20.0) -> None:
        """A delay proxy (node/ops/delay_proxy.py) in front of every node's peer port,
        inside the node's namespace, and every copy of genesis naming the proxies as the peer
        addresses: every inter-host link then holds each byte `delay_ms` one way. Before any
        node starts."""
        _require(not any(node.alive() for node in self.nodes.values()),
                 "delay the links before any node starts")
        ports: dict[str, int] = {}
        for node_id, node in self.nodes.items():
            log_path = os.path.join(self.out, f"proxy-{node_id}.log")
            peer_port = int(node.client_addr.rpartition(":")[2]) + 1  # the sample: 7001, 7002
            proc = self.lab.spawn(node.host, [
                sys.executable, "-m", "node.ops.delay_proxy", "--host", node.host.addr,
                "--target-port", str(peer_port), "--delay-ms", str(delay_ms)], log_path)
            deadline = time.monotonic() + within_s
            while not ports.get(node_id):
                _require(proc.poll() is None, f"the proxy of {node_id} exited: {_read(log_path)}")
                _require(time.monotonic() < deadline, f"the proxy of {node_id} did not start")
                for line in _read(log_path).splitlines():
                    if line.startswith("{"):
                        ports[node_id] = int(json.loads(line)["port"])
                await asyncio.sleep(0.05)
        copies = [os.path.join(root, "genesis.json") for root, _, files in os.walk(self.out)
                  if "genesis.json" in files]
        with open(copies[0]) as handle:
            genesis = json.load(handle)
        for validator in genesis["validators"]:
            node = self.nodes[validator["id"]]
            validator["peer_addr"] = f"{node.host.addr}:{ports[node.node_id]}"
        for path in copies:
            with open(path, "w") as handle:
                json.dump(genesis, handle, indent=2)

    def addr(self, node_id: str) -> str:
        return self.nodes[node_id].client_addr

    def addrs(self, node_ids: list[str] | None = None) -> list[str]:
        return [self.nodes[n].client_addr for n in (node_ids or list(self.nodes))]

    def account(self, member: str) -> Account:
        """A member's key, from its own organisation's bundle."""
        for org in os.listdir(self.out):
            path = os.path.join(self.out, org, "keys", f"{member}.pem")
            if os.path.exists(path):
                return Account.load(path)
        raise KeyError(member)

    @property
    def tls(self) -> ClientTls:
        """Client ports speak TLS; every node's certificate names its host (a SAN)."""
        return ClientTls.load(os.path.join(self.out, "ca", "ca.crt"))

    def client(self, node_id: str, *, reader: str | None = "auditor",
               timeout_s: float = 30.0) -> LedgerClient:
        """A client in the root namespace; reads signed by `reader` (a member name)."""
        return LedgerClient(self.addr(node_id), timeout_s=timeout_s,
                            reader=None if reader is None else self.account(reader),
                            chain_id=self.chain_id, tls=self.tls)

    def start(self, node_id: str) -> None:
        node = self.nodes[node_id]
        _require(not node.alive(), f"{node_id} is running")
        node.proc = self.lab.spawn(
            node.host, [sys.executable, "-m", "node.ops.cli", "node", "--config", node.config],
            node.log_path,
        )

    def kill(self, node_id: str) -> None:
        proc = self.nodes[node_id].proc
        _require(proc is not None, f"{node_id} was never started")
        assert proc is not None
        kill(proc)

    def stop(self, node_id: str) -> int | None:
        proc = self.nodes[node_id].proc
        return None if proc is None else stop(proc)

    async def wait_healthy(self, node_ids: list[str] | None = None,
                           within_s: float = HEALTHY_WITHIN_S) -> None:
        deadline = time.monotonic() + within_s
        for node_id in node_ids or list(self.nodes):
            node = self.nodes[node_id]
            async with LedgerClient(node.client_addr, timeout_s=2.0, tls=self.tls) as client:
                while not await client.healthy(timeout_s=1.0):
                    _require(node.alive(), f"{node_id} exited:\n{node.log_text()[-3000:]}")
                    _require(time.monotonic() < deadline, (
                        f"{node_id} not healthy within {within_s}s:\n{node.log_text()[-3000:]}"))
                    await asyncio.sleep(0.1)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


