"""An open-loop generator's lateness (bench/load.py `Sender.schedule_lag_s`) and how the report
shows it: latency runs from the send, so a generator that falls behind must say so."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.load import Batch, Phase, Sender
from bench.report import generator_summary, schedule_lag


class Client:
    """A node whose Submit takes `submit_s`."""

    def __init__(self, submit_s: float) -> None:
        self.submit_s = submit_s
        self.calls = 0

    async def submit(self, txs: list[Any]) -> None:
        self.calls += 1
        await asyncio.sleep(self.submit_s)


class Tracker:
    def watch(self, batch: Batch, tx_ids: list[bytes]) -> None:
        pass


def lateness(submit_s: float, txs: int = 400, rate_tps: float = 2_000.0, inflight: int = 2
             ) -> list[float]:
    """Open loop of `txs` at `rate_tps` in batches of 10 through one client."""
    sender = Sender([Client(submit_s)], Tracker(), [object()] * txs,  # type: ignore[list-item]
                    [bytes([i % 256]) for i in range(txs)])
    asyncio.run(sender.open_loop(Phase("load", txs), 0, rate_tps, 10, None,
                                 inflight_per_client=inflight))
    return sender.schedule_lag_s


def test_a_generator_that_keeps_up_sends_on_schedule() -> None:
    lags = lateness(submit_s=0.0)
    assert len(lags) >= 40  # batches of up to 10: what is due at each tick
    assert schedule_lag(lags, 2_000.0, 2)["p99"] < 100  # a tick or two of the event loop


def test_a_generator_out_of_submit_slots_falls_behind_and_says_how_far() -> None:
    # Two slots of 50 ms each carry 40 batches/s, at most 400 tx/s of the 2,000 asked: the last
    # batches leave ~1 s after their scheduled time (0.2 s), a lateness in no tx's latency.
    figures = schedule_lag(lateness(submit_s=0.05), 2_000.0, 2)
    assert figures["batches"] >= 40
    assert figures["max"] > 600
    assert figures["p50"] > 200


def test_more_submits_in_flight_let_the_same_slow_node_keep_the_schedule() -> None:
    # 10 slots of 50 ms carry 200 batches/s, 2,000 tx/s: what two slots could not.
    assert schedule_lag(lateness(submit_s=0.05, inflight=10), 2_000.0, 10)["p99"] < 150


def test_lateness_figures_in_milliseconds_and_never_negative() -> None:
    lags = [-0.004] + [i / 1000 for i in range(1, 100)]  # -4 ms, then 1..99 ms
    assert schedule_lag(lags, 500.0, 4) == {"asked_tps": 500.0, "inflight_per_client": 4,
                                            "batches": 100, "p50": 49.0, "p99": 98.0,
                                            "max": 99.0}


def test_the_report_warns_when_the_generator_fell_behind() -> None:
    late = {"send_rate_tps": 9_606.0, "generator_lag_ms": {
        "asked_tps": 9_800.0, "batches": 29_155, "p50": 12.0, "p99": 1_840.0, "max": 2_511.0}}
    on_time = {"send_rate_tps": 9_785.0, "generator_lag_ms": {
        "asked_tps": 9_800.0, "batches": 2_940, "p50": 1.0, "p99": 21.0, "max": 40.0}}
    assert "asked 9,800 tx/s, sent 9,606" in generator_summary(late)
    assert "latencies are floors" in generator_summary(late)
    assert generator_summary(on_time) == (
        "asked 9,800 tx/s, sent 9,785 with up to 2 Submits in flight per client; batches left "
        "p50 1 / p99 21 / max 40 ms after their scheduled time")
    assert generator_summary({"send_rate_tps": 1.0}) == ""  # closed loop: no schedule
