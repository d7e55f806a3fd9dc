"""Benchmark reports: round figures from raw timings, and report.json / report.md / report.png.

`report.json` holds `machine`, `config` and `rounds`; each round has `label`, `consensus`,
`nodes`, `workload`, `clients`, `submitted`, `committed`, `failed`, `failed_by_code`,
`send_rate_tps`, `committed_tps`, `latency_ms` {min, p50, p95, p99, max} and `nodes_stats`
(per node `cpu_percent`, `rss_mb_max`, `blocks`), plus extras the plot and the Markdown use
(`duration_s`, `blocks`, `mean_block_txs`, `tps_series`, `latency_quantiles_ms`,
`latency_series`, `disk_fsync` (bench/diskprobe.py), `mix`, `load_avg_1m_at_start`,
`machine_cpu_percent` (bench/machine_cpu.py), `generator_lag_ms` (open loop: how late batches
left against their schedule, bench/load.py)).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import socket
from collections.abc import Callable, Sequence
from typing import Any

from bench.load import OPEN_LOOP_TICK_S

LATENCY_KEYS = ("min", "p50", "p95", "p99", "max")
ROUND_KEYS = (
    "label", "consensus", "nodes", "workload", "clients", "submitted", "committed", "failed",
    "failed_by_code", "send_rate_tps", "committed_tps", "latency_ms", "nodes_stats",
)
NODE_KEYS = ("cpu_percent", "rss_mb_max", "blocks")
SERIES_BIN_S = 0.5


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    assert 0.0 <= fraction <= 1.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[rank - 1])


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    if not ordered:
        return {key: 0.0 for key in LATENCY_KEYS}
    return {
        "min": round(ordered[0], 2),
        "p50": round(percentile(ordered, 0.50), 2),
        "p95": round(percentile(ordered, 0.95), 2),
        "p99": round(percentile(ordered, 0.99), 2),
        "max": round(ordered[-1], 2),
    }


def quantiles(latencies_ms: Sequence[float], points: int = 101) -> list[float]:
    """Latency at 0 %, 1 %, ... 100 %: enough to draw the distribution from the JSON alone."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return []
    return [round(percentile(ordered, i / (points - 1)), 2) for i in range(points)]


def tps_series(commit_s: Sequence[float], start_s: float, bin_s: float = SERIES_BIN_S
               ) -> list[list[float]]:
    """[[seconds since start, committed tx/s in that bin], ...]."""
    if not commit_s:
        return []
    bins: dict[int, int] = {}
    for at in commit_s:
        slot = int((at - start_s) // bin_s)
        bins[slot] = bins.get(slot, 0) + 1
    last = max(bins)
    return [[round((i + 1) * bin_s, 2), bins.get(i, 0) / bin_s] for i in range(last + 1)]


def latency_bin_s(window_s: float) -> float:
    """Window of `latency_series`: 1 s for rounds up to a minute, then so that a round has
    about 60 windows (5 s for five minutes)."""
    return max(1.0, float(math.ceil(window_s / 60.0)))


def latency_series(submit_s: Sequence[float], latencies_ms: Sequence[float], start_s: float,
                   bin_s: float) -> list[list[float]]:
    """[[seconds since start at the window's end, txs, p50 ms, p99 ms], ...] of the txs
    submitted in each window: whether the tail grows as a long round goes on (a store that
    grows, compactions, snapshots) or is the same all through. Windows with no tx are left
    out."""
    bins: dict[int, list[float]] = {}
    for at, latency in zip(submit_s, latencies_ms, strict=True):
        bins.setdefault(int((at - start_s) // bin_s), []).append(latency)
    series = []
    for slot in sorted(bins):
        ordered = sorted(bins[slot])
        series.append([round((slot + 1) * bin_s, 2), len(ordered),
                       round(percentile(ordered, 0.50), 1), round(percentile(ordered, 0.99), 1)])
    return series


def slowest_second(commit_s: Sequence[float], start_s: float) -> tuple[float, int]:
    """(fewest txs committed in any whole second of the window, whole seconds with none).

    The window runs from the first submission to the last commit; its last, partial second is
    left out. A round that pauses (an election, a long GC) shows here, not in its mean."""
    if not commit_s:
        return 0.0, 0
    whole = int((max(commit_s) - start_s) // 1.0)
    if whole < 1:
        return float(len(commit_s)), 0
    bins = [0] * whole
    for at in commit_s:
        slot = int((at - start_s) // 1.0)
        if 0 <= slot < whole:
            bins[slot] += 1
    return float(min(bins)), sum(1 for count in bins if count == 0)


def longest_gap_s(commit_s: Sequence[float], start_s: float) -> float:
    """The longest time with no commit, from the first submission to the last commit: an
    election or a stall shows here, block cadence (a commit every ~0.8 s of 2,000-tx blocks)
    does not reach a whole second unless something paused."""
    times = sorted([start_s, *commit_s])
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def round_figures(
    *,
    submit_s: Sequence[float],
    commit_s: Sequence[float],
    codes: Sequence[str | None],
) -> dict[str, Any]:
    """Counts, rates and latency of one measured phase from per-tx timings.

    A tx counts as submitted when it was sent; committed when its receipt says SUCCESS; failed
    otherwise (failed receipt, refused submission, never committed), by code.
    """
    sent = [i for i, at in enumerate(submit_s) if at]
    committed = [i for i in sent if codes[i] == ""]
    failed_by_code: dict[str, int] = {}
    for i in sent:
        code = codes[i]
        if code != "":
            key = code or "TIMEOUT"
            failed_by_code[key] = failed_by_code.get(key, 0) + 1
    receipted = [i for i in sent if codes[i] is not None and not str(codes[i]).startswith(
        ("REFUSED_", "TIMEOUT", "NOT_SUBMITTED"))]
    latencies = [(commit_s[i] - submit_s[i]) * 1000 for i in receipted]
    first = min((submit_s[i] for i in sent), default=0.0)
    last_sent = max((submit_s[i] for i in sent), default=0.0)
    bin_s = latency_bin_s(last_sent - first)
    last_commit = max((commit_s[i] for i in committed), default=first)
    window = max(last_commit - first, 1e-9)
    send_window = last_sent - first
    return {
        "submitted": len(sent),
        "committed": len(committed),
        "failed": len(sent) - len(committed),
        "failed_by_code": dict(sorted(failed_by_code.items())),
        "send_rate_tps": round(len(sent) / send_window, 1) if send_window > 0 else 0.0,
        "committed_tps": round(len(committed) / window, 1) if committed else 0.0,
        "latency_ms": latency_summary(latencies),
        "duration_s": round(window, 3) if committed else 0.0,
        "tps_series": tps_series([commit_s[i] for i in committed], first),
        "longest_gap_s": round(longest_gap_s([commit_s[i] for i in committed], first), 3),
        **dict(zip(("slowest_second_tps", "zero_seconds"),
                   slowest_second([commit_s[i] for i in committed], first), strict=True)),
        "latency_quantiles_ms": quantiles(latencies),
        "latency_series": latency_series([submit_s[i] for i in receipted], latencies, first,
                                         bin_s),
        "latency_bin_s": bin_s,
    }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
    }
    try:
        import psutil

        info["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_schema(report: dict[str, Any]) -> None:
    """Raise AssertionError when report lacks a field the issue's schema lists."""
    assert set(report) >= {"machine", "config", "rounds"}, sorted(report)
    for item in report["rounds"]:
        missing = [key for key in ROUND_KEYS if key not in item]
        assert not missing, f"round {item.get('label')} lacks {missing}"
        assert set(item["latency_ms"]) == set(LATENCY_KEYS)
        for node in item["nodes_stats"]:
            assert all(key in node for key in NODE_KEYS), node


# ---------------------------------------------------------------------------------------------
# Writing.


def write_json(path: str, report: dict[str, Any]) -> None:
    check_schema(report)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")


def _node_cell(round_: dict[str, Any]) -> str:
    stats = round_["nodes_stats"]
    if not stats:
        return "-"
    cpu = max(s["cpu_percent"] for s in stats)
    rss = max(s["rss_mb_max"] for s in stats)
    anon = [s["anon_mb_max"] for s in stats if "anon_mb_max" in s]
    return f"{cpu:.0f} % / {rss:.0f} MB" + (f" (anon {max(anon):.0f})" if anon else "")


def minute_windows(windows: list[list[float]]) -> list[tuple[int, int, float, float]]:
    """(minute, txs, p50, p99) of a round's `latency_series`, each a tx-weighted mean of the
    windows' percentiles in that minute (the per-tx latencies are not kept)."""
    minutes: dict[int, list[list[float]]] = {}
    for window in windows:
        minutes.setdefault(int((window[0] - 1e-9) // 60), []).append(window)
    rows = []
    for minute in sorted(minutes):
        group = minutes[minute]
        txs = sum(int(w[1]) for w in group)
        rows.append((minute + 1, txs, sum(w[1] * w[2] for w in group) / txs,
                     sum(w[1] * w[3] for w in group) / txs))
    return rows


def disk_summary(disk: dict[str, Any]) -> str:
    """One round's disk probe in words: its percentiles and its slowest syncs."""
    if disk.get("error") and not disk.get("samples"):
        return f"no figures ({disk['error']})"
    text = (f"p50 {disk['p50_ms']:.1f} / p99 {disk['p99_ms']:.1f} / max {disk['max_ms']:,.0f} "
            f"ms over {disk['samples']:,} syncs")
    stalls = disk.get("stalls") or []
    if stalls:
        shown = ", ".join(f"{ms:,.0f} ms at {at:.0f} s" for at, ms in stalls[:5])
        text += f"; {len(stalls)} took 100 ms or more (the longest: {shown})"
    else:
        text += "; none took 100 ms"
    if disk.get("error"):
        text += f"; the probe stopped early: {disk['error']}"
    return text


def _disk_lines(rounds: list[dict[str, Any]]) -> list[str]:
    probed = [r for r in rounds if r.get("disk_fsync")]
    if not probed:
        return []
    lines = ["", "## Disk", "",
             "A 4 KB append and `fdatasync` every 50 ms in the cluster's directory during the "
             "measured load, as a node syncs each block: when the disk stalls, every node on "
             "it waits, and the round's latency shows it (seconds count from the first "
             "submit, as in the latency-over-time plot).", ""]
    lines += [f"- {r['label']}: {disk_summary(r['disk_fsync'])}" for r in probed]
    return lines


STEAL_WARN_PERCENT = 5.0


def machine_summary(round_: dict[str, Any]) -> str:
    """The machine around one round in words: load average at the start, CPU shares during it."""
    parts = []
    if round_.get("load_avg_1m_at_start") is not None:
        parts.append(f"load average {round_['load_avg_1m_at_start']:.2f} at the start")
    cpu = round_.get("machine_cpu_percent")
    if cpu:
        parts.append(
            f"CPU user {cpu['user']:.0f} %, system {cpu['system']:.0f} %, idle {cpu['idle']:.0f} "
            f"%, iowait {cpu['iowait']:.0f} %, steal {cpu['steal']:.1f} %"
        )
        if cpu["steal"] > STEAL_WARN_PERCENT:
            parts.append("the host took cores away (steal): tx/s and latency are floors")
    return "; ".join(parts)


def _described(rounds: list[dict[str, Any]], summary: Callable[[dict[str, Any]], str]
               ) -> list[tuple[str, str]]:
    """(label, text) of the rounds `summary` has something to say about."""
    texts = [(r["label"], summary(r)) for r in rounds]
    return [(label, text) for label, text in texts if text]


def _machine_lines(rounds: list[dict[str, Any]]) -> list[str]:
    described = _described(rounds, machine_summary)
    if not described:
        return []
    lines = ["", "## The machine", "",
             "All cores' time over the measured load (`/proc/stat`). Steal is time the host of a "
             "virtual machine gave to others: the same round loses throughput with it, so "
             "compare rounds only where it is near 0.", ""]
    lines += [f"- {label}: {text}" for label, text in described]
    return lines


GENERATOR_LAG_WARN_MS = 100.0


def schedule_lag(lags_s: Sequence[float], asked_tps: float, inflight_per_client: int
                 ) -> dict[str, float]:
    """An open-loop generator's lateness: how long after its scheduled time each batch left."""
    # A batch a tick early (the due count rounds up) is on time, not negative lateness.
    ordered = sorted(max(0.0, lag) * 1000 for lag in lags_s)
    return {"asked_tps": asked_tps, "inflight_per_client": inflight_per_client,
            "batches": len(ordered),
            **{key: round(percentile(ordered, q), 1)
               for key, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))}}


def generator_summary(round_: dict[str, Any]) -> str:
    """An open-loop round's generator in words: the rate asked and sent, and how late it sent."""
    lag = round_.get("generator_lag_ms")
    if not lag:
        return ""
    inflight = int(lag.get("inflight_per_client", 2))  # rounds before the field had 2
    text = (f"asked {lag['asked_tps']:,.0f} tx/s, sent {round_['send_rate_tps']:,.0f} with up to "
            f"{inflight} Submits in flight per client; batches left p50 {lag['p50']:,.0f} / "
            f"p99 {lag['p99']:,.0f} / max {lag['max']:,.0f} ms after their scheduled time")
    if lag["p99"] > GENERATOR_LAG_WARN_MS:
        text += ("; the generator fell behind (its Submits in flight were all taken; "
                 "`--inflight` raises the bound): the wait before a send is in no latency, so "
                 "this round's latencies are floors")
    return text


def _generator_lines(rounds: list[dict[str, Any]]) -> list[str]:
    described = _described(rounds, generator_summary)
    if not described:
        return []
    tick_ms = OPEN_LOOP_TICK_S * 1000
    lines = ["", "## The load generator", "",
             f"Open loop sends what is due every {tick_ms:.0f} ms (so a batch's first tx leaves "
             f"up to {tick_ms:.0f} ms after its time), with a bound on the Submits in flight "
             "per client. Latency runs from the send to the commit, so when every Submit slot is "
             "taken and batches leave late, the time they waited is in no figure above: a "
             "round is only as open as its generator kept up.", ""]
    lines += [f"- {label}: {text}" for label, text in described]
    return lines


def _latency_by_minute(rounds: list[dict[str, Any]]) -> list[str]:
    """A table of latency minute by minute, for rounds of more than two minutes."""
    long_rounds = [r for r in rounds if r.get("duration_s", 0) > 120 and r.get("latency_series")]
    if not long_rounds:
        return []
    lines = ["", "## Latency minute by minute", "",
             "Txs by the minute they were submitted in; p50 and p99 are the means of the "
             "windows' (`latency_series`, weighted by txs), so the tail's growth over a long "
             "round shows.", "",
             "| round | minute | txs | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for r in long_rounds:
        for minute, txs, p50, p99 in minute_windows(r["latency_series"]):
            lines.append(f"| {r['label']} | {minute} | {txs:,} | {p50:.0f} | {p99:.0f} |")
    return lines


TABLE_HEADERS = (
    "round", "consensus", "nodes", "workload", "clients", "submitted", "committed", "failed",
    "send tx/s", "committed tx/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
    "blocks (mean txs)", "node CPU max / RSS max", "slowest 1 s tx/s", "longest gap s",
    "term/view changes",
)


def table_rows(rounds: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in rounds:
        lat = r["latency_ms"]
        rows.append([
            r["label"], r["consensus"], str(r["nodes"]), r["workload"], str(r["clients"]),
            f"{r['submitted']:,}", f"{r['committed']:,}", f"{r['failed']:,}",
            f"{r['send_rate_tps']:,.0f}", f"{r['committed_tps']:,.0f}",
            f"{lat['p50']:.0f}", f"{lat['p95']:.0f}", f"{lat['p99']:.0f}", f"{lat['max']:.0f}",
            f"{r.get('blocks', 0)} ({r.get('mean_block_txs', 0):.0f})", _node_cell(r),
            f"{r['slowest_second_tps']:,.0f}" if "slowest_second_tps" in r else "-",
            f"{r['longest_gap_s']:.2f}" if "longest_gap_s" in r else "-",
            str(r["round_changes"]) if "round_changes" in r else "-",
        ])
    return rows


def markdown(report: dict[str, Any]) -> str:
    machine, config, rounds = report["machine"], report["config"], report["rounds"]
    lines = [
        "# scfchain benchmark",
        "",
        f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('ram_gb', '?')} GB RAM, Python {machine.get('python')}, "
        f"{machine.get('platform')}.",
        "",
        f"Command: `{config.get('command', '')}`",
        "",
        "| " + " | ".join(TABLE_HEADERS) + " |",
        "|" + "---|" * len(TABLE_HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(rounds)]
    lines += ["", "## Per node", ""]
    lines += [
        "CPU and RSS count each node process together with its signature-check workers "
        "(RSS summed, so shared pages count more than once). Anon MB is the part of the RSS "
        "that is the processes' own memory: the rest is file pages mapped in, mostly LevelDB "
        "table files read through mmap, which are page cache the kernel takes back when short.",
        "",
    ]
    lines += [
        "| round | node | CPU % | peak RSS MB | peak anon MB | blocks | mean block txs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        for node in r["nodes_stats"]:
            lines.append(
                f"| {r['label']} | {node.get('node_id', '?')} | {node['cpu_percent']:.0f} | "
                f"{node['rss_mb_max']:.0f} | {node.get('anon_mb_max', 0):.0f} | "
                f"{node['blocks']} | "
                f"{node.get('mean_block_txs', 0):.0f} |"
            )
    costs = [(r["label"], r["cluster_cpu_us_per_tx"]) for r in rounds
             if "cluster_cpu_us_per_tx" in r]
    if costs:
        lines += ["", "CPU of all nodes (with their workers) per committed tx, over the measured "
                  "load: " + "; ".join(f"{label} {us:,.0f} µs" for label, us in costs) + "."]
    lines += _machine_lines(rounds)
    lines += _generator_lines(rounds)
    failures = [(r["label"], r["failed_by_code"]) for r in rounds if r["failed_by_code"]]
    if failures:
        lines += ["", "## Failures by code", ""]
        for label, codes in failures:
            lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in codes.items()))
    lines += _disk_lines(rounds)
    lines += _latency_by_minute(rounds)
    mixes = [(r["label"], r.get("mix")) for r in rounds if r.get("mix")]
    if mixes:
        lines += ["", "## Load mix", ""]
        for label, mix in mixes:
            lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in mix.items()))
    lines += ["", "![committed TPS and latency](report.png)", ""]
    return "\n".join(lines)


def write_png(path: str, rounds: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tps_ax, lat_ax, over_ax) = plt.subplots(1, 3, figsize=(18, 4.8))
    for r in rounds:
        windows = r.get("latency_series") or []
        if windows:
            line, = over_ax.plot([w[0] for w in windows], [w[3] for w in windows],
                                 label=f"{r['label']} p99")
            over_ax.plot([w[0] for w in windows], [w[2] for w in windows], linestyle="--",
                         color=line.get_color(), label=f"{r['label']} p50")
            for at, _ms in (r.get("disk_fsync") or {}).get("stalls", []):
                over_ax.axvline(at, color=line.get_color(), alpha=0.25, linewidth=1)
        series = r.get("tps_series") or []
        if series:
            tps_ax.plot([p[0] for p in series], [p[1] for p in series], label=r["label"])
        q = r.get("latency_quantiles_ms") or []
        if q:
            lat_ax.plot(q, [i / (len(q) - 1) * 100 for i in range(len(q))], label=r["label"])
    tps_ax.set_title("committed tx/s over time")
    tps_ax.set_xlabel(f"seconds since the first submit ({SERIES_BIN_S} s bins)")
    tps_ax.set_ylabel("tx/s")
    tps_ax.grid(alpha=0.3)
    lat_ax.set_title("submit-to-commit latency (CDF)")
    lat_ax.set_xlabel("ms")
    lat_ax.set_ylabel("% of txs at or below")
    lat_ax.grid(alpha=0.3)
    over_ax.set_title("latency by submit time (p99 solid, p50 dashed; bars: disk syncs >= 100 ms)",
                      fontsize=9)
    over_ax.set_xlabel("seconds since the first submit")
    over_ax.set_ylabel("ms")
    over_ax.grid(alpha=0.3)
    if rounds:
        tps_ax.legend(fontsize=7)
        lat_ax.legend(fontsize=7)
        over_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(out_dir: str, report: dict[str, Any]) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, name) for name in ("report.json", "report.md", "report.png")]
    write_json(paths[0], report)
    with open(paths[1], "w") as handle:
        handle.write(markdown(report))
    write_png(paths[2], report["rounds"])
    return paths


CONSOLE_HEADERS = (
    "round", "submitted", "committed", "failed", "send tx/s", "committed tx/s",
    "latency ms p50 / p95 / p99 / max", "blocks (mean txs)", "node CPU / RSS max",
)


def print_table(report: dict[str, Any], console: Any) -> None:
    """The console table: the Markdown table's figures, with the round's setup in its label."""
    from rich.table import Table

    table = Table(title="scfchain bench")
    for header in CONSOLE_HEADERS:
        table.add_column(header, justify="left" if header == "round" else "right")
    for row in table_rows(report["rounds"]):
        latency = " / ".join(row[10:14])
        table.add_row(row[0], *row[5:10], latency, *row[14:16])
    console.print(table)
    for round_ in report["rounds"]:
        disk = round_.get("disk_fsync")
        if disk and (disk.get("stalls") or disk.get("error")):
            # The round's tail may be the disk's, not the chain's: say so where it is read.
            console.print(f"{round_['label']}: disk syncs during the load: {disk_summary(disk)}")
