"""The benchmark's arithmetic and files, from synthetic timings: percentiles, round figures,
the report.json schema, report.md and report.png, sweep parsing, and the workloads (seeded,
reproducible, and every generated tx succeeding when executed in-process by the real executor).
"""

from __future__ import annotations

import json
import os

import pytest

from bench.cli import parse_sweep
from bench.cluster import BenchError
from bench.report import (
    check_schema,
    latency_bin_s,
    latency_series,
    latency_summary,
    longest_gap_s,
    markdown,
    minute_windows,
    percentile,
    round_figures,
    slowest_second,
    tps_series,
    write_all,
)
from bench.signing import account_for, sign_all
from bench.workloads import Sizes, derive_id, make_plan, members_of
from contracts import default_runtime
from contracts.cash import seed_balances
from contracts.consortium import seed_members
from node.chain import txs_hash
from node.executor import Executor
from node.state import MemoryState, Overlay
from proto import types_pb2


def test_nearest_rank_percentiles_of_one_to_hundred() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile([], 0.5) == 0.0
    summary = latency_summary(list(reversed(values)))
    assert summary == {"min": 1.0, "p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def test_round_figures_count_failures_by_code_and_time_only_receipted_txs() -> None:
    # 6 txs: 3 succeed, 1 fails in the contract, 1 is refused at submission, 1 never sent.
    submit = [10.0, 10.0, 10.5, 10.5, 11.0, 0.0]
    commit = [10.1, 10.2, 11.0, 11.0, 11.0, 0.0]
    codes: list[str | None] = ["", "", "", "INSUFFICIENT_FUNDS", "REFUSED_UNAVAILABLE",
                               "NOT_SUBMITTED"]
    figures = round_figures(submit_s=submit, commit_s=commit, codes=codes)
    assert figures["submitted"] == 5
    assert figures["committed"] == 3
    assert figures["failed"] == 2
    assert figures["failed_by_code"] == {"INSUFFICIENT_FUNDS": 1, "REFUSED_UNAVAILABLE": 1}
    assert figures["committed_tps"] == 3.0  # 3 txs from the first submit (10.0) to 11.0
    assert figures["send_rate_tps"] == 5.0  # 5 sent between 10.0 and 11.0
    # latencies of the four receipted txs: 100, 200, 500, 500 ms
    assert figures["latency_ms"]["min"] == pytest.approx(100.0)
    assert figures["latency_ms"]["max"] == pytest.approx(500.0)
    assert figures["latency_ms"]["p50"] == pytest.approx(200.0)
    assert figures["duration_s"] == pytest.approx(1.0)


def test_tps_series_bins_commits_per_half_second() -> None:
    series = tps_series([0.1, 0.2, 0.3, 1.2], start_s=0.0, bin_s=0.5)
    assert series == [[0.5, 6.0], [1.0, 0.0], [1.5, 2.0]]


def test_latency_series_shows_a_tail_that_grows_as_the_round_goes_on() -> None:
    """Latency by the window a tx was submitted in: a round whose latency rises after 2 s shows
    it in the windows, which the round's overall percentiles mix together."""
    submit = [i / 100 for i in range(400)]  # 100 tx/s for 4 s
    latency = [20.0 if at < 2.0 else 20.0 + 100 * (i % 10) for i, at in enumerate(submit)]
    series = latency_series(submit, latency, start_s=0.0, bin_s=1.0)
    assert [w[0] for w in series] == [1.0, 2.0, 3.0, 4.0]
    assert [w[1] for w in series] == [100, 100, 100, 100]
    assert series[0][2:] == [20.0, 20.0] and series[1][2:] == [20.0, 20.0]
    assert series[2][2] == 420.0 and series[2][3] == 920.0  # p50, p99 of 20..920 in tens
    assert latency_series([], [], start_s=0.0, bin_s=1.0) == []


def test_latency_windows_are_one_second_up_to_a_minute_then_about_sixty_a_round() -> None:
    assert latency_bin_s(30.0) == 1.0
    assert latency_bin_s(60.0) == 1.0
    assert latency_bin_s(300.0) == 5.0
    assert latency_bin_s(301.0) == 6.0


def test_a_long_round_gets_its_latency_minute_by_minute() -> None:
    # Two windows in minute 1 (100 txs at p99 100, 300 at p99 500), one in minute 2.
    windows = [[30.0, 100, 10.0, 100.0], [60.0, 300, 30.0, 500.0], [65.0, 50, 5.0, 50.0]]
    assert minute_windows(windows) == [(1, 400, 25.0, 400.0), (2, 50, 5.0, 50.0)]
    report = _synthetic_report()
    round_ = report["rounds"][0]  # type: ignore[index]
    assert "minute by minute" not in markdown(report)  # a short round: no such table
    round_["duration_s"] = 300.0
    round_["latency_series"] = windows
    md = markdown(report)
    assert "| solo-1n/cash-transfer/c2 | 1 | 400 | 25 | 400 |" in md
    assert "| solo-1n/cash-transfer/c2 | 2 | 50 | 5 | 50 |" in md


def test_slowest_second_finds_a_pause_that_the_mean_hides() -> None:
    """Commits at 100/s for 5 s with nothing in the third second: the slowest whole second is 0
    and one second is empty; the last, partial second does not count."""
    commits = [t + i / 100 for t in (0.0, 1.0, 3.0, 4.0) for i in range(100)] + [5.2]
    assert slowest_second(commits, start_s=0.0) == (0.0, 1)
    steady = [i / 100 for i in range(500)] + [5.1]
    assert slowest_second(steady, start_s=0.0) == (100.0, 0)
    assert longest_gap_s(commits, start_s=0.0) == pytest.approx(3.0 - 1.99)
    assert longest_gap_s(steady, start_s=0.0) == pytest.approx(0.11)


def _synthetic_report() -> dict[str, object]:
    figures = round_figures(submit_s=[1.0, 1.0, 1.2], commit_s=[1.3, 1.5, 1.6],
                            codes=["", "", ""])
    round_ = {
        "label": "solo-1n/cash-transfer/c2", "consensus": "solo", "nodes": 1,
        "workload": "cash-transfer", "clients": 2, **figures,
        "nodes_stats": [{"node_id": "node1", "pid": 1, "cpu_percent": 93.5,
                         "rss_mb_max": 81.0, "anon_mb_max": 60.4, "blocks": 2,
                         "mean_block_txs": 1.5}],
        "blocks": 2, "mean_block_txs": 1.5, "mix": {"cash.transfer": 3},
        "cluster_cpu_us_per_tx": 1234.5, "load_avg_1m_at_start": 0.12,
        "machine_cpu_percent": {"user": 60.0, "system": 20.0, "idle": 19.5, "iowait": 0.0,
                                "steal": 0.5},
    }
    return {"machine": {"cpus": 2}, "config": {"command": "scfchain bench"},
            "rounds": [round_]}


def test_report_files_follow_the_schema(tmp_path) -> None:
    report = _synthetic_report()
    paths = write_all(str(tmp_path), report)
    assert [os.path.basename(p) for p in paths] == ["report.json", "report.md", "report.png"]
    loaded = json.loads((tmp_path / "report.json").read_text())
    check_schema(loaded)
    assert loaded["rounds"][0]["committed"] == 3
    assert set(loaded["rounds"][0]["latency_ms"]) == {"min", "p50", "p95", "p99", "max"}
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert "| solo-1n/cash-transfer/c2 | solo | 1 | cash-transfer | 2 | 3 | 3 | 0 |" in md
    assert "| solo-1n/cash-transfer/c2 | node1 | 94 | 81 | 60 | 2 | 2 |" in md
    assert "94 % / 81 MB (anon 60)" in md
    assert "per committed tx, over the measured load: solo-1n/cash-transfer/c2 1,234 µs." in md
    assert ("- solo-1n/cash-transfer/c2: load average 0.12 at the start; CPU user 60 %, system "
            "20 %, idle 20 %, iowait 0 %, steal 0.5 %") in md


def test_schema_check_names_a_missing_round_field() -> None:
    report = _synthetic_report()
    del report["rounds"][0]["committed_tps"]  # type: ignore[index]
    with pytest.raises(AssertionError, match="committed_tps"):
        check_schema(report)
    assert "scfchain benchmark" in markdown(_synthetic_report())


def test_sweep_is_a_matrix_and_solo_runs_one_node() -> None:
    combos = parse_sweep("consensus=solo,raft nodes=4,7 clients=8,32")
    assert {"consensus": "solo", "nodes": 1, "clients": 8} in combos
    assert sum(1 for c in combos if c["consensus"] == "solo") == 2  # nodes collapse to 1
    assert sum(1 for c in combos if c["consensus"] == "raft") == 4
    with pytest.raises(BenchError, match="KEY=V1,V2"):
        parse_sweep("colour=red")


def _plan(workload: str, seed: int, load: int = 60) -> object:
    members = members_of(workload, 8)
    keys = {m.name: account_for(seed, m.name).public_key for m in members}
    sizes = Sizes(load=load, warmup=10, time_ms=1_700_000_000_000, salt=0)
    return make_plan(workload, seed=seed, chain_id="bench-test", public_keys=keys,
                     sizes=sizes, accounts=8)


@pytest.mark.parametrize("workload", ["cash-transfer", "voucher-mix", "warehouse-trade"])
def test_workload_is_reproducible_from_its_seed(workload: str) -> None:
    first, again, other = _plan(workload, 7), _plan(workload, 7), _plan(workload, 8)
    assert [t.body for t in first.load] == [t.body for t in again.load]  # type: ignore[attr-defined]
    assert [t.body for t in first.load] != [t.body for t in other.load]  # type: ignore[attr-defined]


@pytest.mark.parametrize("workload", ["cash-transfer", "voucher-mix", "warehouse-trade"])
def test_every_generated_tx_succeeds_on_the_real_executor(workload: str) -> None:
    plan = _plan(workload, 3)
    seed = 3
    state = MemoryState()
    genesis = Overlay(state)
    members = plan.members  # type: ignore[attr-defined]
    seed_members(genesis, [(account_for(seed, "admin").account_id, "admin", ["admin"])] + [
        (account_for(seed, m.name).account_id, m.name, list(m.roles)) for m in members])
    seed_balances(genesis, [(account_for(seed, m.name).account_id, m.balance)
                            for m in members if m.balance])
    state.apply(genesis.writes)
    executor = Executor(default_runtime(), "bench-test")
    stages = [*plan.setup, plan.warmup, plan.load]  # type: ignore[attr-defined]
    app_hash, done = bytes(32), set()
    for height, stage in enumerate(stages, 1):
        signed = sign_all(stage, seed, workers=1)
        header = types_pb2.BlockHeader(chain_id="bench-test", height=height,
                                       time_ms=1_700_000_000_000 + height * 1000,
                                       txs_hash=txs_hash(t.tx_id for t in stage))
        outcome = executor.execute(types_pb2.Block(header=header, txs=signed), state,
                                   app_hash, done.__contains__)
        failed = [(stage[i].label, r.error_code, r.message)
                  for i, r in enumerate(outcome.receipts) if r.status != types_pb2.SUCCESS]
        assert not failed, failed[:3]
        state.apply(outcome.writes)
        app_hash = outcome.app_hash
        done.update(t.tx_id for t in stage)


def test_derived_ids_match_the_contract_engine() -> None:
    from contracts.runtime import Context

    tx_id = bytes(range(32))
    ctx = Context(runtime=default_runtime(), state=MemoryState(), sender="s", tx_id=tx_id.hex(),
                  height=1, time_ms=1)  # type: ignore[arg-type]
    assert derive_id(tx_id, "voucher", "issue") == ctx.derive_id("voucher", "issue")


def test_the_load_generator_cpu_leaves_out_its_children(tmp_path) -> None:
    """The nodes of a fresh cluster are the bench's children: its own CPU must not count them."""
    import subprocess
    import sys
    import time

    from bench.runner import NodeSampler

    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # the child is running
        samplers = [NodeSampler({"bench": os.getpid()}, with_children=flag)
                    for flag in (True, False)]
        for sampler in samplers:
            sampler.begin()
        time.sleep(1.5)
        for sampler in samplers:
            sampler.end()
        with_children, alone = (s.cpu_seconds["bench"] for s in samplers)
        assert with_children >= 0.3, with_children  # the spinning child was counted
        assert alone < 0.2, alone  # this process only slept
    finally:
        child.kill()
        child.wait(10)
