"""The bench's disk probe: it times real synced appends in the directory it is given, finds the
slow ones by a clock it is handed, removes its file, and the report puts it in words."""

from __future__ import annotations

import os
import time

from bench.diskprobe import FsyncProbe
from bench.report import disk_summary, markdown, print_table


def test_the_probe_syncs_in_its_directory_and_leaves_nothing_behind(tmp_path) -> None:
    probe = FsyncProbe(str(tmp_path), every_s=0.01)
    probe.start()
    assert next(p.name for p in tmp_path.iterdir()).startswith(".bench-fsync-")
    deadline = time.monotonic() + 30  # a busy disk syncs slowly
    while probe.samples < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    figures = probe.stop(origin_s=0.0)
    assert figures.samples >= 5
    assert 0 < figures.p50_ms <= figures.p99_ms <= figures.max_ms
    assert figures.error == ""
    assert list(tmp_path.iterdir()) == []


def test_slow_syncs_are_stalls_timed_from_the_origin(tmp_path) -> None:
    """A clock that jumps 0.25 s during every third sync: those are the stalls, longest first,
    at their start time minus the origin."""
    ticks = {"n": 0, "now": 100.0}

    def clock() -> float:
        ticks["n"] += 1
        if ticks["n"] % 6 == 0:  # the end of every third sync (two readings per sync)
            ticks["now"] += 0.25
        ticks["now"] += 0.001
        return ticks["now"]

    probe = FsyncProbe(str(tmp_path), every_s=0.001, clock=clock)
    probe.start()
    deadline = time.monotonic() + 30
    while probe.samples < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    figures = probe.stop(origin_s=100.0)
    slow = [ms for _, ms in figures.stalls]
    assert figures.samples >= 9
    assert len(slow) == figures.samples // 3
    assert all(250 <= ms <= 252 for ms in slow)
    assert figures.max_ms >= 250 and figures.p50_ms < 2
    assert all(at > 0 for at, _ in figures.stalls)


def test_a_directory_it_cannot_write_gives_an_error_not_a_failed_round(tmp_path) -> None:
    probe = FsyncProbe(os.path.join(str(tmp_path), "missing"))
    probe.start()
    figures = probe.stop(origin_s=0.0)
    assert figures.samples == 0 and "FileNotFoundError" in figures.error
    assert disk_summary(figures.as_dict()).startswith("no figures (FileNotFoundError")


def test_the_report_says_when_the_disk_stalled() -> None:
    steady = {"samples": 600, "p50_ms": 0.5, "p99_ms": 1.2, "max_ms": 4.0, "stalls": [],
              "error": ""}
    stalled = {**steady, "max_ms": 1650.0, "stalls": [[100.2, 1650.0], [75.0, 340.0]]}
    assert disk_summary(steady) == "p50 0.5 / p99 1.2 / max 4 ms over 600 syncs; none took 100 ms"
    assert disk_summary(stalled).endswith(
        "2 took 100 ms or more (the longest: 1,650 ms at 100 s, 340 ms at 75 s)")
    report = {"machine": {"cpus": 2}, "config": {"command": "scfchain bench"}, "rounds": [{
        "label": "raft-3n", "consensus": "raft", "nodes": 3, "workload": "cash-transfer",
        "clients": 1, "submitted": 1, "committed": 1, "failed": 0, "failed_by_code": {},
        "send_rate_tps": 1.0, "committed_tps": 1.0,
        "latency_ms": {"min": 1, "p50": 1, "p95": 1, "p99": 1, "max": 1},
        "nodes_stats": [], "disk_fsync": stalled}]}
    assert "- raft-3n: p50 0.5 / p99 1.2 / max 1,650 ms over 600 syncs; 2 took" in markdown(report)

    # The terminal says it too when the disk stalled, and nothing when it did not.
    from rich.console import Console

    console = Console(record=True, width=200)
    print_table(report, console)
    assert "raft-3n: disk syncs during the load: p50 0.5" in console.export_text()
    report["rounds"][0]["disk_fsync"] = steady  # type: ignore[index]
    console = Console(record=True, width=200)
    print_table(report, console)
    assert "disk syncs" not in console.export_text()
