"""One local cluster: the node processes of a network written by `node.ops.localnet`, run from
this process, optionally with a fault proxy in front of every peer port.

`LocalCluster` is what the launcher, the soak, the bench and the tests share: start every node or
one (with extra environment, e.g. a crash point), wait until they are healthy or until every
node knows a leader, kill one (SIGKILL, as a crash), stop one gracefully, restart one, find the
leader, tell which node owns a local TCP port, and stop everything by PID in bounded time.
`stop_processes` is the one bounded stop-by-PID; the launcher also uses it for processes it
finds through `cluster.json` rather than starts itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping

import psutil

from node.client.ledger import ClientTls, LedgerClient, LedgerError
from node.ops.localnet import NetworkLayout, NodeProcess, tail
from node.ops.netfaults import LinkProxy, NetworkFaults, proxy_peer_links
from proto import ledger_pb2

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
KILL_WAIT_S = 10.0
POLL_S = 0.05


class ProcessesSurvived(RuntimeError):
    """Processes still ran after SIGKILL; a person has to look at them."""


# ---------------------------------------------------------------------------------------------
# Stopping processes by PID.


def _gone(proc: psutil.Process) -> bool:
    try:
        os.waitpid(proc.pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited; return the ones still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = [proc for proc in procs if not _gone(proc)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [proc for proc in left if not _gone(proc)]
    return left


def signal_process(proc: psutil.Process, sig: signal.Signals) -> None:
    """Signal proc unless it has exited (psutil checks it is still the same process)."""
    try:
        proc.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass


def kill_processes(procs: Iterable[psutil.Process]) -> None:
    """SIGKILL every process and wait for all; ProcessesSurvived if one outlives the wait."""
    procs = list(procs)
    for proc in procs:
        signal_process(proc, signal.SIGKILL)
    still = _wait_gone(procs, KILL_WAIT_S)
    if still:
        pids = ", ".join(str(proc.pid) for proc in still)
        raise ProcessesSurvived(f"processes {pids} survived SIGKILL; check them by hand")


def stop_processes(procs: Mapping[str, psutil.Process], grace_s: float) -> dict[str, str]:
    """SIGTERM every process, SIGKILL the ones still running after grace_s; wait for all.

    Returns name -> "stopped" or "killed after the grace period". The signals go out together,
    so stopping n processes takes at most grace_s + KILL_WAIT_S, not n times that.
    """
    for proc in procs.values():
        signal_process(proc, signal.SIGTERM)
    late = _wait_gone(list(procs.values()), grace_s)
    kill_processes(late)
    late_pids = {proc.pid for proc in late}
    return {
        name: "killed after the grace period" if proc.pid in late_pids else "stopped"
        for name, proc in procs.items()
    }


def reports_validator(info: ledger_pb2.ChainInfo) -> bool | None:
    """Whether the answering node says it is a voting validator now; None if it cannot tell.

    Nodes that serve the `validator` field (issue 15) say so directly; older ones list the
    validator set in `validators`, which names the node or not; an empty list tells nothing.
    """
    if "validator" in info.DESCRIPTOR.fields_by_name:
        return bool(getattr(info, "validator"))  # noqa: B009 - a field older protos lack
    if info.validators:
        return info.node_id in info.validators
    return None


async def ask_leader(addrs: Iterable[str], timeout_s: float = 2.0,
                     tls: ClientTls | None = None) -> str | None:
    """The leader (or primary) the first node that knows one names; None if none does."""
    for addr in addrs:
        try:
            async with LedgerClient(addr, timeout_s=timeout_s, tls=tls) as client:
                info = await client.chain_info()
        except LedgerError:
            continue
        if info.leader:
            return str(info.leader)
    return None


# ---------------------------------------------------------------------------------------------
# The cluster.


class LocalCluster:
    """The node processes of one network, started from this process and stopped by PID.

    `procs` maps node id -> NodeProcess in the network's node order. With `proxy_peer_links`
    (called before any node starts) every peer connection passes through a `LinkProxy` that
    `faults` controls.
    """

    def __init__(self, net: NetworkLayout, faults: NetworkFaults | None = None) -> None:
        self.net = net
        self.procs = {layout.node_id: NodeProcess(layout) for layout in net.nodes}
        self.faults = faults or NetworkFaults()
        self.proxies: dict[str, LinkProxy] = {}  # node id -> proxy in front of its peer port

    async def proxy_peer_links(self) -> None:
        """Put a proxy in front of every peer port (genesis then names the proxies)."""
        assert not self.live(), "proxies must be in genesis before a node starts"
        self.proxies = await proxy_peer_links(self.net.genesis_path, self.faults)
        for proxy in self.proxies.values():
            proxy.source_of = self.node_of_port

    # --- who is who ---------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        return list(self.procs)

    def addr(self, node_id: str) -> str:
        return self.procs[node_id].layout.client_addr

    def live(self) -> list[str]:
        return [node_id for node_id, proc in self.procs.items() if proc.alive()]

    def node_of_port(self, port: int) -> str | None:
        """Which node process owns the local TCP port `port` (the source of a connection)."""
        for node_id, proc in self.procs.items():
            if proc.pid is None or not proc.alive():
                continue
            with contextlib.suppress(psutil.Error):
                for conn in psutil.Process(proc.pid).net_connections(kind="tcp"):
                    if conn.laddr and conn.laddr.port == port:
                        return node_id
        return None

    async def info(self, node_id: str, timeout_s: float = 2.0
                   ) -> ledger_pb2.ChainInfo | None:
        """The node's chain info, or None when it does not answer."""
        try:
            async with LedgerClient(self.addr(node_id), timeout_s=timeout_s,
                                    tls=self.net.client_tls()) as client:
                return await client.chain_info()
        except LedgerError:
            return None

    async def leader(self, timeout_s: float = 2.0) -> str | None:
        """The leader (or primary) the first live node that knows one names."""
        return await ask_leader([self.addr(node_id) for node_id in self.live()], timeout_s,
                                self.net.client_tls())

    async def wait_leader(self, within_s: float = 20.0,
                          exclude: frozenset[str] = frozenset()) -> str:
        """A live leader outside `exclude`; TimeoutError if none within within_s."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            leader = await self.leader(timeout_s=1.0)
            if leader is not None and leader not in exclude and self.procs[leader].alive():
                return leader
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"no leader within {within_s}s")

    async def wait_leader_known(self, node_ids: Iterable[str] | None = None,
                                within_s: float = 20.0) -> str:
        """The leader once every one of `node_ids` (default: all) names the same one.

        `wait_leader` returns as soon as one node knows the leader; a follower learns it only
        from the leader's first message, and until then answers a Submit UNAVAILABLE.
        """
        targets = list(self.ids if node_ids is None else node_ids)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            infos = [await self.info(node_id, timeout_s=1.0) for node_id in targets]
            leaders = {str(info.leader) if info is not None else "" for info in infos}
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            await asyncio.sleep(POLL_S)
        raise TimeoutError(f"{', '.join(targets)} did not agree on a leader within {within_s}s")

    # --- starting -----------------------------------------------------------------------------

    def start_node(self, node_id: str, env: Mapping[str, str] | None = None) -> NodeProcess:
        """Start one node with `env` added to ours (and nothing left from an earlier start)."""
        proc = self.procs[node_id]
        proc.env = dict(env or {})
        proc.start()
        return proc

    def start_all(self, env: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """Start every node; env maps node id -> extra environment for that node."""
        for node_id in self.procs:
            self.start_node(node_id, (env or {}).get(node_id))

    async def wait_healthy(self, node_ids: Iterable[str] | None = None,
                           timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait, for all at once, until the nodes answer health checks.

        RuntimeError if one exits, TimeoutError if one is not healthy within timeout_s."""
        procs = [self.procs[node_id] for node_id in (self.ids if node_ids is None else node_ids)]
        try:
            async with asyncio.TaskGroup() as group:
                for proc in procs:
                    group.create_task(proc.wait_healthy(timeout_s))
        except* (RuntimeError, TimeoutError) as failed:
            raise failed.exceptions[0] from None

    async def start(self, env: Mapping[str, Mapping[str, str]] | None = None,
                    timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start every node and wait until all are healthy."""
        self.start_all(env)
        await self.wait_healthy(timeout_s=timeout_s)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until every node is healthy and every validator knows a leader or primary.

        RuntimeError if a node exits, TimeoutError if the cluster is not ready within timeout_s.
        """
        deadline = time.monotonic() + timeout_s
        await self.wait_healthy(timeout_s=timeout_s)
        tls = self.net.client_tls()
        clients = [LedgerClient(self.addr(node_id), timeout_s=2.0, tls=tls)
                   for node_id in self.ids]
        try:
            while True:
                leaders: list[str] = []
                for client in clients:
                    try:
                        info = await client.chain_info(timeout_s=1.0)
                    except LedgerError:
                        info = None
                    # An observer (a node outside the validator set) need not know a leader:
                    # it follows committed blocks, and the cluster is ready without it.
                    observer = info is not None and reports_validator(info) is False
                    leaders.append("-" if observer else info.leader if info is not None else "")
                if all(leaders):
                    return
                for proc in self.procs.values():
                    if not proc.alive():
                        raise RuntimeError(
                            f"{proc.layout.node_id} exited while waiting for a leader; see "
                            f"{proc.layout.log_file}:\n{tail(proc.layout.log_file)}"
                        )
                if time.monotonic() >= deadline:
                    waiting = [c.address for c, leader in zip(clients, leaders, strict=True)
                               if not leader]
                    raise TimeoutError(
                        f"no leader or primary after {timeout_s:.0f}s (nodes at {waiting} know "
                        f"none); see the logs in {self.net.root}/nodes/*/node.log"
                    )
                await asyncio.sleep(0.1)
        finally:
            for client in clients:
                await client.close()

    # --- faults and stopping ------------------------------------------------------------------

    def kill(self, node_id: str) -> None:
        """SIGKILL one node, as a crash would."""
        self.procs[node_id].kill()

    def stop_node(self, node_id: str, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM one node, SIGKILL after grace_s; its exit code."""
        return self.procs[node_id].stop(grace_s)

    async def restart(self, node_id: str, env: Mapping[str, str] | None = None, *,
                      wait: bool = True, grace_s: float = STOP_GRACE_S,
                      timeout_s: float = READY_TIMEOUT_S) -> NodeProcess:
        """Stop the node if it runs, start it with env, and (if wait) wait until healthy."""
        if self.procs[node_id].alive():
            self.stop_node(node_id, grace_s)
        proc = self.start_node(node_id, env)
        if wait:
            await proc.wait_healthy(timeout_s)
        return proc

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> dict[str, str]:
        """Stop every node by PID: SIGTERM to all, SIGKILL to those left after grace_s.

        Returns node id -> what happened. Exit codes are not kept (the wait reaps the
        processes); `stop_node` returns one node's.
        """
        running = {}
        for node_id, proc in self.procs.items():
            if proc.pid is not None and proc.alive():
                with contextlib.suppress(psutil.NoSuchProcess):
                    running[node_id] = psutil.Process(proc.pid)
        outcome = stop_processes(running, grace_s)
        for node_id, proc in self.procs.items():
            proc.alive()  # let Popen see its reaped child is gone
            outcome.setdefault(node_id, "was not running")
        return outcome

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Close the proxies, then stop every node by PID."""
        for proxy in self.proxies.values():
            await proxy.close()
        self.stop_all(grace_s)
