"""Measure adding a validator to a running PBFT cluster: the new validator's first vote and the
committed tx/s before, during and after (issue 15).

    scfchain cluster up --dir net --consensus pbft --nodes 4 --detach
    scfchain bench --target net --duration 120 ... &       # optional load
    python -m bench.reconfig --dir net [--before 10] [--after 20] [--out reconfig.json]

What it does, on the running cluster in `--dir`: samples one genesis validator's head once per
`--sample-s` (0.5 s: `GetChainInfo`, then every new block with `GetBlock`: its time, tx count
and the signers of its commit certificate); after `--before` seconds runs what `scfchain
cluster add-node` does (a new node, started as an observer, waits until it follows); then
`--proposer` proposes `add_validator` and `--voter`'s vote carries it (the sample committee's
2 of 3); waits for the first block whose commit certificate the new node signed; samples
`--after` seconds more; prints a table and writes one JSON document.

Times are block times (`header.time_ms`, the proposer's clock when it proposed the block; the
commit follows within a round of messages), so every figure comes from the chain itself and
the same clock. The phases: `before` (until add-node starts), `joining` (add-node started,
until the block holding the threshold vote), `switching` (from that block until the first
block the new validator signed) and `after`. A commit certificate carries a quorum of votes,
not every vote, so "first signed" is the first block that proves the new validator votes; it
may have voted on a block or two before.

The pure parts (`per_second`, `phase_stats`, `dip`, `first_vote`, `table`, `summary_lines`)
take plain records, so tests feed them sample series. Nothing here writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient, LedgerError, ReceiptView
from node.ops.cli_client import ClientCommandError, submit_tx
from node.ops.cli_gov import validator_params
from node.ops.demo_governance import certificate_signers
from node.ops.launcher import Cluster, ClusterError, add_node, load_cluster, running_pids

SAMPLE_S_DEFAULT = 0.5
BEFORE_S_DEFAULT = 10.0
AFTER_S_DEFAULT = 20.0
FIRST_VOTE_TIMEOUT_S_DEFAULT = 60.0
DIP_FRACTION = 0.8  # a second counts as "in the dip" below this share of the before rate
PHASES = ("before", "joining", "switching", "after")


class ReconfigError(Exception):
    """The measurement cannot run or the chain refused a step; the message says which."""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    time_ms: int  # the block's header time
    txs: int
    signers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sample:
    at_ms: int  # wall clock when GetChainInfo answered
    height: int
    txs_total: int  # txs in the blocks fetched so far, from the first sampled height on


@dataclass(slots=True)
class Marks:
    """Wall-clock moments of the run (ms) and the heights the chain gave them."""

    start_ms: int = 0
    add_start_ms: int = 0
    add_done_ms: int = 0
    end_ms: int = 0
    propose_height: int = 0
    vote_height: int = 0
    effective_height: int = 0


@dataclass(slots=True)
class Series:
    blocks: list[BlockRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Figures from a series (pure).


def per_second(blocks: list[BlockRecord], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Committed txs in each whole second of block time from start_ms (second 0) to end_ms."""
    seconds = max(0, math.ceil((end_ms - start_ms) / 1000))
    counts = [0] * seconds
    for block in blocks:
        if start_ms <= block.time_ms < end_ms:
            counts[(block.time_ms - start_ms) // 1000] += block.txs
    return [{"second": i, "txs": n} for i, n in enumerate(counts)]


def phase_bounds(marks: Marks, vote_time_ms: int | None, first_vote_time_ms: int | None
                 ) -> dict[str, tuple[int, int]]:
    """Each phase's [from, to) in ms; a phase that never began (no vote, no first vote) ends
    the one before it at the end of the run and is left out."""
    edges = [("before", marks.start_ms), ("joining", marks.add_start_ms)]
    if vote_time_ms is not None:
        edges.append(("switching", vote_time_ms))
        if first_vote_time_ms is not None:
            edges.append(("after", first_vote_time_ms))
    bounds: dict[str, tuple[int, int]] = {}
    for i, (name, begin) in enumerate(edges):
        end = edges[i + 1][1] if i + 1 < len(edges) else marks.end_ms
        bounds[name] = (begin, max(begin, end))
    return bounds


def phase_stats(blocks: list[BlockRecord], bounds: dict[str, tuple[int, int]]
                ) -> dict[str, dict[str, Any]]:
    """Per phase: its length, the blocks and txs committed in it, and tx/s (None: too short
    to say, under a tenth of a second)."""
    stats: dict[str, dict[str, Any]] = {}
    for name, (begin, end) in bounds.items():
        inside = [b for b in blocks if begin <= b.time_ms < end]
        seconds = (end - begin) / 1000
        txs = sum(b.txs for b in inside)
        stats[name] = {
            "seconds": round(seconds, 2),
            "blocks": len(inside),
            "txs": txs,
            "tx_per_s": round(txs / seconds, 1) if seconds >= 0.1 else None,
        }
    return stats


def dip(series: list[dict[str, Any]], baseline_tx_s: float | None, from_second: int,
        fraction: float = DIP_FRACTION) -> dict[str, Any]:
    """The throughput dip after from_second: the lowest second, how many seconds fell below
    fraction x the baseline (the before phase's rate), and the first second at or above it
    again after the last such second (None: never below, or not recovered by the end)."""
    after = [row for row in series if row["second"] >= from_second]
    if not after or not baseline_tx_s:
        return {"baseline_tx_s": baseline_tx_s, "min_tx_s": None, "min_at_s": None,
                "seconds_below": 0, "recovered_at_s": None, "fraction": fraction}
    lowest = min(after, key=lambda row: row["txs"])
    floor = baseline_tx_s * fraction
    below = [row["second"] for row in after if row["txs"] < floor]
    recovered = None
    if below:
        later = [row["second"] for row in after if row["second"] > below[-1]]
        recovered = later[0] if later else None
    return {"baseline_tx_s": baseline_tx_s, "min_tx_s": lowest["txs"],
            "min_at_s": lowest["second"], "seconds_below": len(below),
            "recovered_at_s": recovered, "fraction": fraction}


def first_vote(blocks: list[BlockRecord], node_id: str, vote_height: int
               ) -> dict[str, Any]:
    """From the block holding the threshold vote to the first block above it whose commit
    certificate node_id signed: heights, block times and the seconds and blocks between."""
    by_height = {b.height: b for b in blocks}
    vote = by_height.get(vote_height)
    signed = next((b for b in sorted(blocks, key=lambda b: b.height)
                   if b.height > vote_height and node_id in b.signers), None)
    doc: dict[str, Any] = {
        "node": node_id,
        "vote_height": vote_height,
        "vote_time_ms": vote.time_ms if vote else None,
        "first_signed_height": signed.height if signed else None,
        "first_signed_time_ms": signed.time_ms if signed else None,
        "seconds": None,
        "blocks": None,
    }
    if vote and signed:
        doc["seconds"] = round((signed.time_ms - vote.time_ms) / 1000, 3)
        doc["blocks"] = signed.height - vote.height
    return doc


def figures(series: Series, marks: Marks, node_id: str) -> dict[str, Any]:
    """Everything the run reports, from what was sampled and marked."""
    blocks = sorted(series.blocks, key=lambda b: b.height)
    voted = first_vote(blocks, node_id, marks.vote_height) if marks.vote_height else {
        "node": node_id, "vote_height": None, "vote_time_ms": None, "first_signed_height": None,
        "first_signed_time_ms": None, "seconds": None, "blocks": None}
    bounds = phase_bounds(marks, voted["vote_time_ms"], voted["first_signed_time_ms"])
    phases = phase_stats(blocks, bounds)
    rates = per_second(blocks, marks.start_ms, marks.end_ms)
    from_second = max(0, (marks.add_start_ms - marks.start_ms) // 1000)
    return {
        "node": node_id,
        "first_vote": {**voted, "effective_height": marks.effective_height or None},
        "phases": phases,
        "dip": dip(rates, phases["before"]["tx_per_s"], from_second),
        "per_second": rates,
        "marks": asdict(marks),
        "samples": [asdict(s) for s in series.samples],
    }


def table(report: dict[str, Any]) -> Table:
    """The short table: tx/s per phase, then the first vote and the dip."""
    out = Table(title=f"adding {report['node']} to a PBFT cluster")
    for column in ("phase", "seconds", "blocks", "txs", "tx/s"):
        out.add_column(column, justify="left" if column == "phase" else "right")
    for name in PHASES:
        row = report["phases"].get(name)
        if row is None:
            continue
        rate = row["tx_per_s"]
        out.add_row(name, f"{row['seconds']:.1f}", str(row["blocks"]), str(row["txs"]),
                    "-" if rate is None else f"{rate:.1f}")
    return out


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Under the table: the first vote and the dip, one line each."""
    voted = report["first_vote"]
    if voted["seconds"] is not None:
        first = (f"{voted['seconds']:.2f} s, {voted['blocks']} blocks (vote in block "
                 f"{voted['vote_height']}, first signed block {voted['first_signed_height']}, "
                 f"effective height {voted['effective_height']})")
    else:
        first = f"not seen (vote in block {voted['vote_height']})"
    lines = [f"threshold vote -> first vote: {first}"]
    found = report["dip"]
    if found["min_tx_s"] is not None:
        lines.append(f"dip: lowest {found['min_tx_s']} tx/s at second {found['min_at_s']}; "
                     f"{found['seconds_below']} s below {found['fraction']:.0%} of the before "
                     f"rate; recovered at second {found['recovered_at_s']}")
    else:
        lines.append("dip: no load before the add, so no baseline to compare with")
    return lines


# ---------------------------------------------------------------------------------------------
# The run against a live cluster.


class Sampler:
    """Polls one node's head every interval and fetches each new block's figures."""

    def __init__(self, addrs: list[str], interval_s: float, *, reader: Account | None = None,
                 chain_id: str | None = None, tls: ClientTls | None = None) -> None:
        self.addrs = addrs  # the first answers; the next ones if it stops answering
        self.interval_s = interval_s
        self.reader = reader  # signs the block reads (the cluster's auditor)
        self.chain_id = chain_id
        self.tls = tls
        self.series = Series()
        self.next_height = 0
        self.txs_total = 0

    async def run(self) -> None:
        index = 0
        while True:
            started = time.monotonic()
            try:
                async with LedgerClient(self.addrs[index], timeout_s=5.0, reader=self.reader,
                                        chain_id=self.chain_id, tls=self.tls) as client:
                    head = int((await client.chain_info()).height)
                    if not self.next_height:
                        self.next_height = head + 1  # the series starts at the next block
                    while self.next_height <= head:
                        block = await client.get_block(self.next_height)
                        header = block.block.header
                        self.series.blocks.append(BlockRecord(
                            height=int(header.height), time_ms=int(header.time_ms),
                            txs=len(block.block.txs),
                            signers=tuple(sorted(certificate_signers(block)))))
                        self.txs_total += len(block.block.txs)
                        self.next_height += 1
                    self.series.samples.append(Sample(int(time.time() * 1000), head,
                                                      self.txs_total))
            except LedgerError:
                index = (index + 1) % len(self.addrs)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def signed_by(self, node_id: str, above: int) -> bool:
        return any(b.height > above and node_id in b.signers for b in self.series.blocks)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _governed(cluster: Cluster, name: str, method: str, args: dict[str, Any]
                    ) -> ReceiptView:
    """One governance tx signed by member name; its receipt (f + 1 matching ones on PBFT)."""
    tx = cluster.account(name).build_tx(cluster.chain_id, "governance", method, args)
    receipt, _ = await submit_tx(cluster, tx)
    if not receipt.ok:
        raise ReconfigError(f"governance.{method} by {name} failed: {receipt.error_code} "
                           f"{receipt.message}")
    return receipt


async def measure(
    cluster_dir: str, *, before_s: float = BEFORE_S_DEFAULT, after_s: float = AFTER_S_DEFAULT,
    sample_s: float = SAMPLE_S_DEFAULT, proposer: str = "core", voter: str = "bank",
    first_vote_timeout_s: float = FIRST_VOTE_TIMEOUT_S_DEFAULT,
    say: Any = print,
) -> dict[str, Any]:
    """Add a node to the running PBFT cluster in cluster_dir, vote it in, measure (see above).
    What `scfchain bench` could call; returns the report as a JSON-able dict."""
    cluster = load_cluster(cluster_dir)
    if cluster.consensus != "pbft":
        raise ReconfigError(f"{cluster_dir} runs {cluster.consensus}; this measures PBFT")
    running = running_pids(cluster)
    watched = [n.client_addr for n in cluster.nodes if n.id in running]
    if not watched:
        raise ReconfigError(f"no node of {cluster_dir} runs; `scfchain cluster up --dir "
                           f"{cluster_dir} --detach` first")
    marks = Marks(start_ms=_now_ms())
    auditor = cluster.auditor()
    if auditor is None:
        raise ReconfigError(f"{cluster_dir} has no member with the auditor role; the sampler "
                            "reads blocks as one (reads are signed by a member)")
    sampler = Sampler(watched, sample_s, reader=auditor, chain_id=cluster.chain_id,
                      tls=cluster.client_tls())
    sampling = asyncio.create_task(sampler.run())
    try:
        say(f"sampling the chain at {watched[0]} for {before_s:.0f} s before the add")
        await asyncio.sleep(before_s)
        marks.add_start_ms = _now_ms()
        node, height = await add_node(cluster)
        marks.add_done_ms = _now_ms()
        say(f"{node.id} follows at height {height} as an observer "
            f"({(marks.add_done_ms - marks.add_start_ms) / 1000:.1f} s)")
        proposed = await _governed(cluster, proposer, "propose", {
            "action": "add_validator", "params": validator_params(cluster, node.id)})
        marks.propose_height = proposed.height
        proposal_id = proposed.result["proposal_id"]
        voted = await _governed(cluster, voter, "vote",
                                {"proposal_id": proposal_id, "approve": True})
        marks.vote_height = voted.height
        for event in voted.events:
            if event.get("name") == "validator_set_changed":
                marks.effective_height = int(event["effective_height"])
        say(f"proposed at height {proposed.height}, voted in at height {voted.height} "
            f"(status {voted.result.get('status')}, effective height {marks.effective_height})")
        deadline = time.monotonic() + first_vote_timeout_s
        while not sampler.signed_by(node.id, marks.vote_height):
            if time.monotonic() > deadline:
                say(f"no certificate carries {node.id}'s vote {first_vote_timeout_s:.0f} s after "
                    "the vote; reporting without a first vote")
                break
            await asyncio.sleep(sample_s)
        say(f"sampling {after_s:.0f} s more")
        await asyncio.sleep(after_s)
        marks.end_ms = _now_ms()
        await asyncio.sleep(sample_s * 2)  # the blocks up to end_ms are fetched
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
    report = figures(sampler.series, marks, node.id)
    report["cluster"] = {"dir": cluster_dir, "chain_id": cluster.chain_id,
                         "nodes_before": len(running), "sampled": watched[0]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconfig", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the running PBFT cluster's directory")
    parser.add_argument("--before", type=float, default=BEFORE_S_DEFAULT,
                        help="seconds sampled before the add")
    parser.add_argument("--after", type=float, default=AFTER_S_DEFAULT,
                        help="seconds sampled after the first vote")
    parser.add_argument("--sample-s", type=float, default=SAMPLE_S_DEFAULT,
                        help="seconds between head samples")
    parser.add_argument("--proposer", default="core", help="committee member who proposes")
    parser.add_argument("--voter", default="bank", help="committee member whose vote carries")
    parser.add_argument("--first-vote-timeout", type=float, default=FIRST_VOTE_TIMEOUT_S_DEFAULT)
    parser.add_argument("--out", default="reconfig.json", help="the JSON report's path")
    parser.add_argument("--json", action="store_true", help="print the JSON, not the table")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)

    def say(text: str) -> None:
        console.print(text, style="dim", highlight=False)

    try:
        report = asyncio.run(measure(
            args.dir, before_s=args.before, after_s=args.after, sample_s=args.sample_s,
            proposer=args.proposer, voter=args.voter,
            first_vote_timeout_s=args.first_vote_timeout, say=say))
    except (ReconfigError, ClusterError, ClientCommandError, LedgerError, OSError) as exc:
        print(f"bench.reconfig: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    if args.json:
        print(json.dumps(report))
    else:
        console.print(table(report))
        for line in summary_lines(report):
            console.print(line, highlight=False, soft_wrap=True)
        console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
