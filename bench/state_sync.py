"""Measure how long a new node takes to reach the head: by state snapshot against by replay
(issue 16).

    scfchain cluster up --dir net --consensus raft --nodes 3 --detach
    scfchain bench --target net --txs 1000000 --clients 16 --batch 250     # fill the chain
    python -m bench.state_sync --dir net [--out state_sync.json] [--modes snapshot,replay]

For each mode it runs what `scfchain cluster add-node` does (`--no-state-sync` for replay) and
times it from the start of the new node's process until it follows the head (its height reaches
the others' head as it was when it started, and is within a few blocks of their head now);
for a snapshot join it also reads the restore's figures from the node's log (height, chunks,
megabytes, state keys, tx ids, restore seconds). Each node is stopped once measured, so the
next mode runs against the same cluster and load. Prints a table; writes one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from node.ops.launcher import ClusterError, add_node, kill_node, load_cluster

MODES = ("snapshot", "replay")
_RESTORING = re.compile(
    r"restoring height (\d+) from \S+: (\d+) chunks, ([\d.]+) MB, (\d+) state keys, (\d+) tx ids")
_RESTORED = re.compile(r"restored height (\d+) in ([\d.]+) s")


def restore_figures(log_text: str) -> dict[str, Any] | None:
    """The last restore the log reports, or None (the node replayed)."""
    started = _RESTORING.findall(log_text)
    done = _RESTORED.findall(log_text)
    if not started or not done:
        return None
    height, chunks, megabytes, keys, tx_ids = started[-1]
    return {"height": int(height), "chunks": int(chunks), "megabytes": float(megabytes),
            "state_keys": int(keys), "tx_ids": int(tx_ids), "restore_s": float(done[-1][1])}


async def join(root: str, mode: str, timeout_s: float) -> dict[str, Any]:
    cluster = load_cluster(root)
    started = time.monotonic()
    node, height = await add_node(cluster, timeout_s=timeout_s, follow_timeout_s=timeout_s,
                                  state_sync=mode == "snapshot")
    took = time.monotonic() - started
    with open(node.log_file, errors="replace") as handle:
        figures = restore_figures(handle.read())
    kill_node(cluster, node.id)  # measured; the next mode runs without it
    return {"mode": mode, "node": node.id, "head_height": height, "seconds": round(took, 2),
            "restore": figures}


def table(rows: list[dict[str, Any]]) -> Table:
    out = Table(title="joining a filled chain")
    for column in ("mode", "node", "at height", "seconds", "snapshot height", "chunks", "MB",
                   "restore s"):
        out.add_column(column)
    for row in rows:
        restore = row["restore"] or {}
        out.add_row(row["mode"], row["node"], str(row["head_height"]), f"{row['seconds']:.1f}",
                    str(restore.get("height", "-")), str(restore.get("chunks", "-")),
                    str(restore.get("megabytes", "-")), str(restore.get("restore_s", "-")))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.state_sync", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the running cluster's directory")
    parser.add_argument("--modes", default=",".join(MODES), help="snapshot,replay")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds to wait for each node to reach the head")
    parser.add_argument("--out", default="state_sync.json", help="the JSON report's path")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    rows = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        console.print(f"joining by {mode} …")
        try:
            rows.append(asyncio.run(join(args.dir, mode, args.timeout)))
        except ClusterError as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        console.print(f"  {rows[-1]['seconds']:.1f} s to the head at {rows[-1]['head_height']}")
    with open(args.out, "w") as handle:
        json.dump({"joins": rows}, handle, indent=2)
    Console().print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
