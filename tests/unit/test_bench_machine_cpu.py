"""The machine's CPU shares over a round (bench/machine_cpu.py) and how the report shows them."""

from __future__ import annotations

import pytest

from bench.machine_cpu import MachineCpu, parse_cpu_line, shares
from bench.report import machine_summary

BEFORE = "cpu  1000 0 300 5000 10 0 0 100 0 0\ncpu0 500 0 150 2500 5 0 0 50 0 0\nintr 1\n"
AFTER = "cpu  1600 20 380 5200 30 10 10 330 0 0\ncpu0 800 10 190 2600 15 5 5 165 0 0\nintr 9\n"


def test_shares_split_the_ticks_between_two_readings() -> None:
    got = shares(parse_cpu_line(BEFORE), parse_cpu_line(AFTER))
    assert got is not None
    # 1,170 ticks passed: user+nice 620, system+irq+softirq 100, idle 200, iowait 20, steal 230
    assert got.as_dict() == {"user": 53.0, "system": 8.5, "idle": 17.1, "iowait": 1.7,
                             "steal": 19.7}


def test_an_old_kernel_without_the_steal_column_reads_as_no_steal() -> None:
    old = parse_cpu_line("cpu  10 0 5 100\n")
    assert old["steal"] == 0 and old["idle"] == 100


def test_no_time_passing_gives_no_figures() -> None:
    same = parse_cpu_line(BEFORE)
    assert shares(same, same) is None
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        parse_cpu_line("intr 1\n")


def test_a_round_reads_the_file_at_its_start_and_end(tmp_path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(BEFORE)
    machine = MachineCpu(str(stat))
    machine.begin()
    stat.write_text(AFTER)
    machine.end()
    assert machine.figures is not None and machine.figures.steal == 19.7


def test_without_proc_stat_there_are_no_figures(tmp_path) -> None:
    machine = MachineCpu(str(tmp_path / "absent"))
    machine.begin()
    machine.end()
    assert machine.figures is None


def test_the_report_warns_when_the_host_took_the_cores() -> None:
    busy = {"load_avg_1m_at_start": 0.4, "machine_cpu_percent": {
        "user": 51.7, "system": 8.3, "idle": 16.7, "iowait": 1.7, "steal": 19.2}}
    quiet = {"load_avg_1m_at_start": 0.4, "machine_cpu_percent": {
        "user": 70.0, "system": 18.0, "idle": 11.6, "iowait": 0.0, "steal": 0.4}}
    assert "steal 19.2 %" in machine_summary(busy)
    assert "tx/s and latency are floors" in machine_summary(busy)
    assert machine_summary(quiet) == ("load average 0.40 at the start; CPU user 70 %, system "
                                      "18 %, idle 12 %, iowait 0 %, steal 0.4 %")
    assert machine_summary({}) == ""
