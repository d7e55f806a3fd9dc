"""Block-end hooks run each in its own savepoint: a failing hook loses only its own writes,
never another hook's or the block's txs, and the outcome is the same on every run.
"""

from __future__ import annotations

from contracts.cash import cash
from contracts.consortium import consortium
from contracts.runtime import Context, Contract, ContractError, Runtime
from node.executor import Executor
from node.state import MemoryState
from proto import types_pb2

good = Contract("a_good")
bad = Contract("b_bad")


@good.hook
def mark_good(ctx: Context) -> None:
    ctx.put("seen", ctx.height)
    ctx.emit("Marked", height=ctx.height)


@bad.hook
def mark_then_fail(ctx: Context) -> None:
    ctx.put("half", 1)
    raise ContractError("BROKEN", "this hook always fails")


def run_block() -> tuple[dict[str, bytes | None], list[str], bytes]:
    engine = Runtime([consortium, cash, good, bad])
    block = types_pb2.Block(header=types_pb2.BlockHeader(chain_id="c", height=7, time_ms=5))
    outcome = Executor(engine, "c").execute(block, MemoryState(), bytes(32), lambda _: False)
    return outcome.writes, [e.name for e in outcome.end_block_events], outcome.app_hash


def test_failing_hook_loses_only_its_own_writes() -> None:
    writes, events, _ = run_block()
    assert writes == {"a_good/seen": b"7"}
    assert events == ["Marked"]


def test_hook_failure_is_deterministic() -> None:
    assert run_block()[2] == run_block()[2]
