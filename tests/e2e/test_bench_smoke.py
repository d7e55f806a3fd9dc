"""`scfchain bench` end to end on a fresh solo node: a small cash-transfer round writes
report.json (in the issue's schema), report.md and report.png, and every submitted tx commits.
The run's speed is reported, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bench.report import check_schema


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_small_solo_round_commits_every_tx_and_writes_the_report(tmp_path) -> None:
    out = tmp_path / "report"
    (tmp_path / "tmp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "node.ops.cli", "bench", "--nodes", "1", "--consensus", "solo",
         "--workload", "cash-transfer", "--txs", "500", "--clients", "2", "--batch", "100",
         "--warmup", "50", "--accounts", "8", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=110,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},  # where the fresh cluster lives
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    check_schema(report)
    (round_,) = report["rounds"]
    assert round_["submitted"] == 500
    assert round_["committed"] == round_["submitted"]
    assert round_["failed"] == 0 and round_["failed_by_code"] == {}
    assert round_["nodes_stats"][0]["blocks"] >= 1
    assert round_["cluster_cpu_us_per_tx"] > 0  # the node did work for what it committed
    assert round_["latency_ms"]["min"] <= round_["latency_ms"]["p50"] <= round_["latency_ms"][
        "max"]
    assert "solo-1n/cash-transfer/c2" in (out / "report.md").read_text()
    # The disk under the fresh cluster was probed while the load ran, and latency was binned
    # by submit time.
    assert round_["disk_fsync"]["samples"] >= 1 and round_["disk_fsync"]["error"] == ""
    assert "## Disk" in (out / "report.md").read_text()
    assert sum(window[1] for window in round_["latency_series"]) == round_["committed"]
    assert (out / "report.png").stat().st_size > 0
    assert "committed" in result.stdout  # the table was printed
    # the round succeeded, so its cluster's directory (stores, keys, logs) is gone
    assert os.listdir(tmp_path / "tmp" / "scfchain-bench") == []


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_keep_leaves_the_fresh_cluster_running_and_says_how_to_stop_it(tmp_path) -> None:
    (tmp_path / "tmp").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "node.ops.cli", "bench", "--nodes", "1", "--consensus", "solo",
         "--workload", "cash-transfer", "--txs", "200", "--clients", "2", "--batch", "100",
         "--warmup", "20", "--accounts", "4", "--out", str(tmp_path / "report"), "--keep"],
        capture_output=True, text=True, timeout=110,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp"), "COLUMNS": "400"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.split())  # the terminal table may wrap the line
    said = re.search(r"left the cluster running in (\S+) \(stop it: kill (\d+)\)", text)
    assert said is not None, result.stdout[-2000:]
    pid = int(said.group(2))
    try:
        os.kill(pid, 0)  # still running after the bench exited
        assert os.path.isdir(said.group(1))
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: ask the kernel whether it still exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not open(f"/proc/{pid}/stat").read().split(") ")[1].startswith("Z")
    return waited == 0
