"""bench/reconfig.py's figures from sample series: tx/s per second and per phase, the new
validator's first vote after the threshold vote, the dip and its recovery, and the table."""

from __future__ import annotations

import io

from rich.console import Console

from bench.reconfig import (
    BlockRecord,
    Marks,
    Sample,
    Series,
    dip,
    figures,
    first_vote,
    per_second,
    phase_bounds,
    phase_stats,
    summary_lines,
    table,
)

T0 = 1_800_000_000_000  # a block time, ms
OLD = ("node1", "node2", "node3")


def _chain() -> tuple[Series, Marks]:
    """40 s of one block every 0.5 s: 100 txs a block (200 tx/s) except 10 txs a block from
    second 12 to 16 (the dip); the add starts at 10 s, the vote is block 25 (12.0 s), node5
    first signs block 29 (14.0 s), the run ends at 40 s."""
    blocks = []
    for i in range(80):
        at = T0 + i * 500
        second = i // 2
        signers = (*OLD, "node5") if i >= 28 and i % 2 == 0 else OLD
        blocks.append(BlockRecord(height=i + 1, time_ms=at,
                                  txs=10 if 12 <= second < 16 else 100, signers=signers))
    series = Series(blocks=blocks,
                    samples=[Sample(T0 + i * 500, i + 1, 100 * (i + 1)) for i in range(80)])
    marks = Marks(start_ms=T0, add_start_ms=T0 + 10_000, add_done_ms=T0 + 11_000,
                  end_ms=T0 + 40_000, propose_height=23, vote_height=25, effective_height=29)
    return series, marks


def test_per_second_buckets_block_txs_by_block_time() -> None:
    series, marks = _chain()
    rates = per_second(series.blocks, marks.start_ms, marks.end_ms)
    assert len(rates) == 40
    assert rates[0] == {"second": 0, "txs": 200}
    assert [row["txs"] for row in rates[12:16]] == [20, 20, 20, 20]
    assert rates[16]["txs"] == 200
    # Blocks outside the window are left out; a partial last second still counts as one.
    assert per_second(series.blocks, T0 + 1_000, T0 + 2_500) == [
        {"second": 0, "txs": 200}, {"second": 1, "txs": 100}]
    assert per_second([], T0, T0) == []


def test_first_vote_counts_from_the_vote_block_to_the_first_certificate_signed() -> None:
    series, _ = _chain()
    voted = first_vote(series.blocks, "node5", vote_height=25)
    assert voted["first_signed_height"] == 29
    assert voted["blocks"] == 4
    assert voted["seconds"] == 2.0
    assert voted["vote_time_ms"] == T0 + 24 * 500
    # Signed blocks at or below the vote do not count; a node that never signs has no figure.
    assert first_vote(series.blocks, "node5", vote_height=79)["first_signed_height"] is None
    never = first_vote(series.blocks, "node9", vote_height=25)
    assert never["seconds"] is None and never["blocks"] is None


def test_phases_split_at_add_vote_and_first_vote() -> None:
    series, marks = _chain()
    bounds = phase_bounds(marks, T0 + 12_000, T0 + 14_000)
    assert bounds == {"before": (T0, T0 + 10_000), "joining": (T0 + 10_000, T0 + 12_000),
                      "switching": (T0 + 12_000, T0 + 14_000),
                      "after": (T0 + 14_000, T0 + 40_000)}
    stats = phase_stats(series.blocks, bounds)
    assert stats["before"] == {"seconds": 10.0, "blocks": 20, "txs": 2000, "tx_per_s": 200.0}
    assert stats["joining"] == {"seconds": 2.0, "blocks": 4, "txs": 400, "tx_per_s": 200.0}
    assert stats["switching"]["tx_per_s"] == 20.0
    assert stats["after"]["blocks"] == 52
    # Without a vote the run is before and joining only; a zero-length phase has no rate.
    assert list(phase_bounds(marks, None, None)) == ["before", "joining"]
    assert phase_stats([], {"x": (T0, T0)})["x"]["tx_per_s"] is None


def test_the_dip_is_measured_against_the_before_rate() -> None:
    series, marks = _chain()
    rates = per_second(series.blocks, marks.start_ms, marks.end_ms)
    found = dip(rates, 200.0, from_second=10)
    assert found["min_tx_s"] == 20 and found["min_at_s"] == 12
    assert found["seconds_below"] == 4 and found["recovered_at_s"] == 16
    # No dip: nothing below 80 %, so nothing to recover from.
    steady = [{"second": s, "txs": 200} for s in range(10)]
    assert dip(steady, 200.0, 0)["seconds_below"] == 0
    assert dip(steady, 200.0, 0)["recovered_at_s"] is None
    # Still low at the end: not recovered.
    assert dip(rates[:14], 200.0, 10)["recovered_at_s"] is None
    # No load before (an idle cluster): no baseline, no dip figures.
    assert dip(rates, None, 10)["min_tx_s"] is None
    assert dip(rates, 0.0, 10)["min_tx_s"] is None


def test_figures_and_table_from_a_series() -> None:
    series, marks = _chain()
    report = figures(series, marks, "node5")
    assert report["first_vote"]["seconds"] == 2.0
    assert report["first_vote"]["effective_height"] == 29
    assert report["phases"]["before"]["tx_per_s"] == 200.0
    assert report["dip"]["seconds_below"] == 4
    assert len(report["per_second"]) == 40 and len(report["samples"]) == 80
    out = io.StringIO()
    Console(file=out, width=160).print(table(report))
    text = " ".join(out.getvalue().split())  # the caption wraps
    for phase in ("before", "joining", "switching", "after"):
        assert phase in text
    first, found = summary_lines(report)
    assert first.startswith("threshold vote -> first vote: 2.00 s, 4 blocks (vote in block 25, "
                            "first signed block 29, effective height 29)")
    assert found == ("dip: lowest 20 tx/s at second 12; 4 s below 80% of the before rate; "
                     "recovered at second 16")


def test_a_run_without_a_first_vote_still_reports() -> None:
    series, marks = _chain()
    marks.vote_height = 0
    report = figures(series, marks, "node5")
    assert report["first_vote"]["seconds"] is None
    assert set(report["phases"]) == {"before", "joining"}
    assert "not seen" in summary_lines(report)[0]


def test_an_idle_cluster_has_no_baseline_for_a_dip() -> None:
    series, marks = _chain()
    idle = Series(blocks=[BlockRecord(b.height, b.time_ms, 0, b.signers) for b in series.blocks])
    report = figures(idle, marks, "node5")
    assert report["phases"]["before"]["tx_per_s"] == 0.0
    assert report["first_vote"]["seconds"] == 2.0
    assert summary_lines(report)[1] == "dip: no load before the add, so no baseline to compare with"
