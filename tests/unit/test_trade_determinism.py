"""Determinism of the trade-finance contracts: one history of orders, prepayment deals and
warehouse receipts (with block-end hooks firing) gives the same app hash in two fresh chains and
in subprocesses with different PYTHONHASHSEED values.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.harness import DAY_MS, LocalChain, Receipt
from tests.unit.trade_chain import doc, make_chain, ok

SCRIPT = """
import sys
sys.path.insert(0, '.')
from tests.unit.test_trade_determinism import trade_history
print(trade_history())
"""


def trade_history() -> str:
    """A history touching every family and every hook; returns the final app hash (hex)."""
    chain = make_chain(core=5_000_000, dealer=3_000_000, bank=9_000_000, supplier=100)
    run_trade_history(chain)
    return chain.app_hash.hex()


def run_trade_history(chain: LocalChain) -> list[Any]:
    """The history of `trade_history` on `chain`; every receipt and block-end event."""
    t = chain.time_ms
    seen: list[Any] = []

    def run(who: str, call: str, **args: Any) -> Receipt:
        receipt = ok(chain.run(who, call, **args))
        seen.append(receipt)
        return receipt

    run("bank", "order_financing.set_ratio", ratio_bps=7_000)
    order_id = run(
        "supplier", "order_financing.register_order", buyer=chain.id("core"), amount=1_000_000,
        delivery_due_ms=t + 5 * DAY_MS, payment_due_ms=t + 10 * DAY_MS, order_hash=doc("po"),
    ).result["order_id"]
    run("core", "order_financing.confirm_order", order_id=order_id)
    run("supplier", "order_financing.apply_loan", order_id=order_id,
              financier=chain.id("bank"), principal=600_000, rate_bps=900)
    run("bank", "order_financing.approve_loan", order_id=order_id)
    deal_id = run(
        "dealer", "prepayment.apply", core=chain.id("core"), financier=chain.id("bank"),
        warehouse=chain.id("wh"), commodity="steel", quantity=90, unit="t", price=900_000,
        margin=300_000, rate_bps=500, due_ms=t + 8 * DAY_MS,
    ).result["deal_id"]
    run("core", "prepayment.confirm", deal_id=deal_id)
    run("bank", "prepayment.approve", deal_id=deal_id)
    run("wh", "prepayment.lodge_goods", deal_id=deal_id, grade="B", location="L",
              inspection_hash=doc("steel"))
    run("dealer", "prepayment.repay", deal_id=deal_id, principal=123_457)
    receipt_id = run(
        "wh", "warehouse_receipt.issue", owner=chain.id("dealer"), commodity="copper",
        quantity=77, unit="t", grade="A", location="L", inspection_hash=doc("copper"),
    ).result["receipt_id"]
    run("dealer", "warehouse_receipt.split", receipt_id=receipt_id, quantities=[7, 30, 40])
    run("dealer", "cash.transfer", to=chain.id("supplier"), amount=2_000_000)
    fired: list[str] = []
    for day in range(12):
        events = chain.advance(DAY_MS + day)
        seen.append(events)
        fired.extend(name for name, _ in events)
    assert "LoanOverdue" in fired and "BuybackSettled" in fired
    return seen


def test_same_trade_history_same_app_hash_in_process() -> None:
    assert trade_history() == trade_history()


def test_same_trade_app_hash_under_different_hash_seeds() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    hashes = {
        subprocess.run(
            [sys.executable, "-c", SCRIPT], env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True, cwd=root,
        ).stdout.strip()
        for seed in ("1", "4242")
    }
    assert hashes == {trade_history()}
