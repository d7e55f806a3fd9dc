"""Hosts made of Linux network namespaces, for running a consortium's nodes as on separate
machines: one namespace per host, each with its own address on a veth pair whose other end
sits on a bridge in the root namespace (where the test and its clients run).

    root namespace:   bridge <tag>br  10.A.B.1/24
                        |-- veth <tag>v1 ===== eth0 10.A.B.11/24   namespace <tag>h1
                        |-- veth <tag>v2 ===== eth0 10.A.B.12/24   namespace <tag>h2
                        ...

Everything is named with a per-run tag, so runs side by side never meet, and `close` removes
it all: the processes it started (by PID, then their process group), the namespaces (which
takes their veth ends with them) and the bridge. Needs root and `ip` (iproute2).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

IP_TIMEOUT_S = 10.0


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here; the message says why (a skip reason)."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(("netns", "exec", ns, "ip") if ns else ()), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (tried for real)."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces, veth pairs and a bridge"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` for network namespaces"
    probe = f"scfprobe{secrets.token_hex(3)}"
    try:
        result = _ip("netns", "add", probe, check=False)
        if result.returncode != 0:
            return f"`ip netns add` is not allowed here: {result.stderr.strip()}"
        result = _ip("link", "add", f"{probe[:9]}b", "type", "bridge", check=False)
        if result.returncode != 0:
            return f"cannot make a bridge here: {result.stderr.strip()}"
        _ip("link", "del", f"{probe[:9]}b", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no route or address of the root namespace touches."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(word if "/" in word else f"{word}/32",
                                             strict=False))
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            used.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 208)}.{rng.randrange(256)}.0/24")
        if not any(net.overlaps(other) for other in used if other.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 in 10.200.0.0/13 for the test hosts")


@dataclass
class Host:
    """One namespace: a host with its own address."""

    name: str  # the namespace
    addr: str  # its address on the bridge
    veth: str  # the root-side end of its veth pair

    def command(self, argv: list[str]) -> list[str]:
        """argv run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


@dataclass
class Lab:
    """A bridge and `count` hosts; `close` undoes all of it."""

    count: int
    tag: str = field(default_factory=lambda: f"scf{secrets.token_hex(2)}")
    hosts: list[Host] = field(default_factory=list)
    bridge: str = ""
    gateway: str = ""  # the bridge's address: the root namespace as the hosts see it
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def open(self) -> Lab:
        net = _free_subnet()
        self.bridge = f"{self.tag}br"
        self.gateway = str(net.network_address + 1)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(1, self.count + 1):
                self.hosts.append(self._add_host(index, str(net.network_address + 10 + index)))
        except BaseException:
            self.close()
            raise
        log.info("lab %s: bridge %s %s, hosts %s", self.tag, self.bridge, net,
                 [(h.name, h.addr) for h in self.hosts])
        return self

    def _add_host(self, index: int, addr: str) -> Host:
        name, veth, inner = f"{self.tag}h{index}", f"{self.tag}v{index}", f"{self.tag}p{index}"
        _ip("netns", "add", name)
        host = Host(name, addr, veth)
        _ip("link", "add", veth, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", name)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("link", "set", "lo", "up", ns=name)
        _ip("link", "set", inner, "name", "eth0", ns=name)
        _ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=name)
        _ip("link", "set", "eth0", "up", ns=name)
        return host

    def spawn(self, host: Host, argv: list[str], log_path: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start argv inside host's namespace (`ip netns exec` execs it: the PID is argv's),
        in a session of its own, output to log_path; tracked for `close`."""
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                host.command(argv), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        stop_all(self.procs, grace_s=5.0)
        for host in self.hosts:
            _ip("netns", "del", host.name, check=False)  # takes its veth pair along
        for host in self.hosts:
            _ip("link", "del", host.veth, check=False)  # in case the namespace kept it
        if self.bridge:
            _ip("link", "del", self.bridge, check=False)
        self.hosts.clear()


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    """SIGTERM to every process at once, SIGKILL to those still running after grace_s, then
    SIGKILL to what is left of their process groups."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill(proc)
    for proc in procs:
        _kill_group(proc.pid)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after grace_s; then SIGKILL whatever is left of its process group
    (the node's signature workers). Returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            kill(proc)
    _kill_group(proc.pid)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crashed host would."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    _kill_group(proc.pid)


def _kill_group(pgid: int) -> None:
    """SIGKILL the process group `pgid` (the session a spawned process leads), waiting up to
    5 s for it to be gone."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
