"""Prometheus metrics and `/healthz` over HTTP, for operators (`metrics_addr` in the config).

Names scripts rely on: `scfchain_block_height`, `scfchain_txs_committed_total`,
`scfchain_mempool_txs`. The rest (docs/deploy.md lists them with example PromQL): mempool
bytes, admission refusals by code, consensus role, round (Raft term or PBFT view) and round
changes, validator or not, base height, peer link state and bytes sent and received per peer,
block execution and write time histograms, signature-check queue, store size.

Counters and histograms are updated where the work happens (the committer, the transport,
admission); gauges are read from the node's parts when Prometheus scrapes, so the hot paths
pay nothing for them. Each node has its own registry (tests run several in one process). The
HTTP server is prometheus_client's threaded WSGI server in a daemon thread; `/healthz`
answers 200 while the node serves and 503 otherwise.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

ROLES = ("leader", "follower", "candidate", "pre_candidate", "primary", "backup", "solo",
         "observer")
STORE_SIZE_CACHE_S = 15.0


@dataclass(frozen=True, slots=True)
class NodeReadings:
    """What the gauges show, read at scrape time."""

    height: int
    base_height: int
    mempool_txs: int
    mempool_bytes: int
    role: str
    round: int
    validator: bool
    verify_queue: int
    peers: dict[str, bool]  # peer id -> link connected


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.txs_committed = Counter("scfchain_txs_committed", "Txs in committed blocks",
                                     registry=r)
        self.blocks_committed = Counter("scfchain_blocks_committed", "Committed blocks",
                                        registry=r)
        self.refusals = Counter("scfchain_admission_refusals", "Txs refused at admission",
                                ["code"], registry=r)
        self.execute_seconds = Histogram(
            "scfchain_block_execute_seconds", "Executing a block's txs and hooks", registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.commit_seconds = Histogram(
            "scfchain_block_commit_seconds", "Writing a block and its state batch to the store",
            registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.peer_sent = Counter("scfchain_peer_bytes_sent", "Consensus bytes sent", ["peer"],
                                 registry=r)
        self.peer_received = Counter("scfchain_peer_bytes_received",
                                     "Consensus bytes received", ["peer"], registry=r)

    # --- the parts that do the work call these ----------------------------------------------

    def block_committed(self, txs: int, execute_s: float, commit_s: float) -> None:
        self.blocks_committed.inc()
        self.txs_committed.inc(txs)
        self.execute_seconds.observe(execute_s)
        self.commit_seconds.observe(commit_s)

    def refused(self, code: str, count: int = 1) -> None:
        self.refusals.labels(code=code).inc(count)

    def sent(self, peer: str, size: int) -> None:
        self.peer_sent.labels(peer=peer).inc(size)

    def received(self, peer: str, size: int) -> None:
        self.peer_received.labels(peer=peer).inc(size)

    def watch(self, read: Callable[[], NodeReadings], data_dir: str) -> None:
        """Register the scrape-time gauges, read from the node's parts by `read`."""
        self.registry.register(_NodeCollector(read, data_dir))


class _NodeCollector(Collector):
    def __init__(self, read: Callable[[], NodeReadings], data_dir: str) -> None:
        self.read = read
        self.data_dir = data_dir
        self._round: int | None = None
        self._round_changes = 0
        self._size = 0
        self._size_at = 0.0
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # the names are known only at collect time; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        now = self.read()
        with self._lock:
            if self._round is not None and now.round != self._round:
                self._round_changes += 1
            self._round = now.round
            changes = self._round_changes
            if time.monotonic() - self._size_at > STORE_SIZE_CACHE_S:
                self._size, self._size_at = _dir_bytes(self.data_dir), time.monotonic()
            size = self._size

        def gauge(name: str, text: str, value: float) -> Metric:
            family = GaugeMetricFamily(name, text)
            family.add_metric([], value)
            return family

        yield gauge("scfchain_block_height", "Height of the newest committed block", now.height)
        yield gauge("scfchain_base_height", "Lowest height whose block this node holds",
                    now.base_height)
        yield gauge("scfchain_mempool_txs", "Txs waiting in the mempool", now.mempool_txs)
        yield gauge("scfchain_mempool_bytes", "Bytes of txs in the mempool", now.mempool_bytes)
        yield gauge("scfchain_consensus_round", "Raft term or PBFT view", now.round)
        yield gauge("scfchain_consensus_round_changes",
                    "Term or view changes seen at scrapes since start (elections, view changes)",
                    changes)
        yield gauge("scfchain_validator", "1 while this node votes, 0 as an observer",
                    1 if now.validator else 0)
        yield gauge("scfchain_verify_queue", "Signature checks waiting for a worker",
                    now.verify_queue)
        yield gauge("scfchain_store_bytes", "Bytes of the node's data directory", size)
        role = GaugeMetricFamily("scfchain_consensus_role", "1 for the node's role now",
                                 labels=["role"])
        for name in ROLES:
            role.add_metric([name], 1 if now.role == name else 0)
        yield role
        peers = GaugeMetricFamily("scfchain_peer_up", "1 while the link to a peer is connected",
                                  labels=["peer"])
        for peer, up in sorted(now.peers.items()):
            peers.add_metric([peer], 1 if up else 0)
        yield peers


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # a LevelDB file compacted away meanwhile
                pass
    return total


class _Server(ThreadingWSGIServer):
    """No host-name lookup at bind (HTTPServer's getfqdn): with a resolver configured but
    unreachable it held the node's start for 10 s."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` on `addr`, in a daemon thread."""

    def __init__(self, metrics: NodeMetrics, addr: str, healthy: Callable[[], bool]) -> None:
        self.metrics = metrics
        self.addr = addr
        self.healthy = healthy
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host, _, port = self.addr.rpartition(":")
        prometheus = make_wsgi_app(self.metrics.registry)

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                ok = self.healthy()
                start_response("200 OK" if ok else "503 Service Unavailable",
                               [("Content-Type", "text/plain")])
                return [b"ok\n" if ok else b"not serving\n"]
            result: Iterable[bytes] = prometheus(environ, start_response)
            return result

        try:
            self._server = make_server(host, int(port), app, _Server,
                                       handler_class=_SilentHandler)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {self.addr}: {exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)
        self._thread.start()
        log.info("metrics on http://%s/metrics", self.addr)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
