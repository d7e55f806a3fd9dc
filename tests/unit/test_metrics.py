"""The node's Prometheus metrics: the exact names scripts rely on, counters fed by the parts
that do the work, gauges read at scrape time, and /healthz — over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

from node.metrics import MetricsServer, NodeMetrics, NodeReadings
from node.ops.localnet import free_port


def _readings() -> NodeReadings:
    return NodeReadings(height=42, base_height=0, mempool_txs=7, mempool_bytes=1_234,
                        role="leader", round=3, validator=True, verify_queue=1,
                        peers={"node2": True, "node3": False})


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_healthz_over_http(tmp_path) -> None:
    (tmp_path / "store.ldb").write_bytes(b"x" * 5_000)
    metrics = NodeMetrics("node1")
    metrics.watch(_readings, str(tmp_path))
    metrics.block_committed(txs=250, execute_s=0.02, commit_s=0.004)
    metrics.block_committed(txs=0, execute_s=0.001, commit_s=0.002)
    metrics.refused("RESOURCE_EXHAUSTED", 10)
    metrics.sent("node2", 900)
    metrics.received("node2", 300)
    healthy = [True]
    addr = f"127.0.0.1:{free_port()}"
    server = MetricsServer(metrics, addr, lambda: healthy[0])
    server.start()
    try:
        status, text = _get(f"http://{addr}/metrics")
        assert status == 200
        lines = set(text.splitlines())
        for line in (
            "scfchain_block_height 42.0",
            "scfchain_txs_committed_total 250.0",
            "scfchain_mempool_txs 7.0",
            "scfchain_mempool_bytes 1234.0",
            'scfchain_admission_refusals_total{code="RESOURCE_EXHAUSTED"} 10.0',
            'scfchain_consensus_role{role="leader"} 1.0',
            'scfchain_consensus_role{role="follower"} 0.0',
            "scfchain_consensus_round 3.0",
            'scfchain_peer_up{peer="node2"} 1.0',
            'scfchain_peer_up{peer="node3"} 0.0',
            'scfchain_peer_bytes_sent_total{peer="node2"} 900.0',
            'scfchain_peer_bytes_received_total{peer="node2"} 300.0',
            "scfchain_block_execute_seconds_count 2.0",
            "scfchain_block_commit_seconds_count 2.0",
            "scfchain_verify_queue 1.0",
            "scfchain_store_bytes 5000.0",
        ):
            assert line in lines, line
        assert _get(f"http://{addr}/healthz") == (200, "ok\n")
        healthy[0] = False
        assert _get(f"http://{addr}/healthz")[0] == 503
    finally:
        server.stop()
