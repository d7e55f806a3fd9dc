"""Voucher invariants under random histories, and determinism of the app hash.

A hypothesis state machine drives one `LocalChain` with random issues, transfers (full and
partial), splits, discount applications, approvals, rejections and cancellations, credit
grants, deposits, withdrawals and time passing (which triggers maturity and overdue settlement).
Calls are made by the holder most of the time and by someone else otherwise, so failures are
exercised too. After every step it checks, from the raw state:

- per root: live + redeemed = issued, and the redeemed total matches the REDEEMED vouchers;
- every voucher is in exactly one known state, indexed by holder exactly while live;
- no cash balance is negative, and total cash changes only by deposits and withdrawals;
- per core: outstanding = the live amounts of its roots = the used credit, and used <= limit;
- a frozen (DISCOUNT_PENDING) voucher never changes holder or amount except by its approval;
- settlement is prompt: nothing live is past maturity, and no overdue queue could be paid.

The determinism test runs the same seeded history in two fresh interpreters with different
PYTHONHASHSEED values and compares app hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from contracts.runtime import decode_state
from tests.harness import DAY_MS, LocalChain

MEMBERS: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "bank": ("financier",),
    "factor": ("financier",),
    "core": ("core_enterprise",),
    "core2": ("core_enterprise",),
    "t1": ("supplier",),
    "t2": ("supplier",),
    "t3": ("supplier",),
    "dealer": ("dealer",),
}
NAMES = sorted(MEMBERS)
LIVE = ("ACTIVE", "DISCOUNT_PENDING", "OVERDUE")
STATES = (*LIVE, "REDEEMED", "SPLIT")


class VoucherWorld:
    """One chain plus the bookkeeping the invariants need; every action is one tx or block."""

    def __init__(self) -> None:
        self.chain = LocalChain(
            members=dict(MEMBERS), balances={"bank": 50_000, "factor": 50_000, "core": 3_000}
        )
        self.names = {self.chain.id(n): n for n in NAMES}
        self.cash_total = 103_000  # changes only through deposits and withdrawals
        for financier, core in (("bank", "core"), ("factor", "core"), ("bank", "core2")):
            self.grant(financier, core, 4_000)
        self.frozen_before: dict[str, tuple[str, int, str]] = {}
        self.approved: str | None = None

    # -- reading raw state (the test may look at everything; the contract may not) ----------

    def scan(self, prefix: str) -> list[tuple[str, Any]]:
        return [
            (key, decode_state(value))
            for key, value in sorted(self.chain.state.items.items())
            if key.startswith(prefix)
        ]

    def vouchers(self) -> list[dict[str, Any]]:
        return [value for _, value in self.scan("voucher/v/")]

    def pick(self, index: int, states: tuple[str, ...] = STATES) -> dict[str, Any] | None:
        found = [v for v in self.vouchers() if v["state"] in states]
        return found[index % len(found)] if found else None

    def actor(self, voucher: dict[str, Any], honest: bool, index: int) -> str:
        return self.names[voucher["holder"]] if honest else NAMES[index % len(NAMES)]

    # -- actions --------------------------------------------------------------------------------

    def before_step(self) -> None:
        self.frozen_before = {
            v["id"]: (v["holder"], v["amount"], v["discount"]["financier"])
            for v in self.vouchers()
            if v["state"] == "DISCOUNT_PENDING"
        }
        self.approved = None

    def grant(self, financier: str, core: str, limit: int) -> None:
        self.chain.run(financier, "voucher.grant_credit", core=self.chain.id(core), limit=limit,
                       expiry_ms=self.chain.time_ms + 30 * DAY_MS)

    def issue(self, core: str, supplier: str, amount: int, days: int, document: int) -> None:
        self.chain.run(
            core, "voucher.issue", supplier=self.chain.id(supplier), amount=amount,
            maturity_ms=self.chain.time_ms + days * DAY_MS // 4,
            documents=[hashlib.sha256(str(document).encode()).hexdigest()],
        )

    def transfer(self, index: int, to: str, amount: int, honest: bool) -> None:
        voucher = self.pick(index, LIVE)
        if voucher is not None:
            self.chain.run(self.actor(voucher, honest, index), "voucher.transfer",
                           voucher=voucher["id"], to=self.chain.id(to),
                           amount=1 + amount % voucher["amount"])

    def split(self, index: int, parts: int, honest: bool) -> None:
        voucher = self.pick(index, LIVE)
        if voucher is not None:
            total = voucher["amount"]
            amounts = [total // parts] * (parts - 1)
            amounts.append(total - sum(amounts))
            self.chain.run(self.actor(voucher, honest, index), "voucher.split",
                           voucher=voucher["id"], amounts=amounts)

    def apply_discount(self, index: int, financier: str, rate_bps: int, honest: bool) -> None:
        voucher = self.pick(index, LIVE)
        if voucher is not None:
            self.chain.run(self.actor(voucher, honest, index), "voucher.apply_discount",
                           voucher=voucher["id"], financier=self.chain.id(financier),
                           rate_bps=rate_bps)

    def decide_discount(self, index: int, decision: str, honest: bool) -> None:
        voucher = self.pick(index, ("DISCOUNT_PENDING",))
        if voucher is None:
            return
        financier = self.names[voucher["discount"]["financier"]]
        if decision == "cancel":
            who = self.actor(voucher, honest, index)
            self.chain.run(who, "voucher.cancel_discount", voucher=voucher["id"])
            return
        who = financier if honest else NAMES[index % len(NAMES)]
        receipt = self.chain.run(who, f"voucher.{decision}_discount", voucher=voucher["id"])
        if receipt.ok and decision == "approve":
            self.approved = voucher["id"]

    def cash(self, kind: str, name: str, amount: int) -> None:
        receipt = self.chain.run("bank", f"cash.{kind}", account=self.chain.id(name),
                                 amount=amount)
        if receipt.ok:
            self.cash_total += amount if kind == "deposit" else -amount

    def advance(self, ms: int) -> None:
        self.chain.advance(ms)

    # -- invariants -----------------------------------------------------------------------------

    def check(self) -> None:
        vouchers = self.vouchers()
        by_id = {v["id"]: v for v in vouchers}
        holder_index = {key.rsplit("/", 1)[1]: key.split("/")[2] for key, _ in
                        self.scan("voucher/h/")}
        for v in vouchers:
            assert v["state"] in STATES
            assert (v["id"] in holder_index) == (v["state"] in LIVE)
            if v["state"] in LIVE:
                assert holder_index[v["id"]] == v["holder"]
            assert (v["discount"] is not None) == (v["state"] == "DISCOUNT_PENDING")
            if v["state"] == "SPLIT":
                assert sum(by_id[c]["amount"] for c in v["children"]) == v["amount"]
            if v["state"] in ("ACTIVE", "DISCOUNT_PENDING"):
                assert v["maturity_ms"] > self.chain.time_ms, "settled in the maturity block"

        live_by_core: dict[str, int] = {}
        for key, root in self.scan("voucher/root/"):
            mine = [v for v in vouchers if v["root"] == root["root"]]
            live = sum(v["amount"] for v in mine if v["state"] in LIVE)
            redeemed = sum(v["amount"] for v in mine if v["state"] == "REDEEMED")
            assert live + root["redeemed"] == root["amount"], key
            count = self.chain.state.get(f"voucher/n/{root['root']}")
            assert redeemed == root["redeemed"]
            assert len(mine) == (1 if count is None else json.loads(count)), "n/ counts them"
            assert sorted(v["seq"] for v in mine) == list(range(len(mine))), "seq: 0, 1, ..."
            assert "vouchers" not in root, "the count lives in n/, not in the summary"
            live_by_core[root["core"]] = live_by_core.get(root["core"], 0) + live

        used_by_core: dict[str, int] = {}
        for key, position in self.scan("voucher/core/"):
            core = key.split("/")[2]
            for financier, line in position["lines"].items():
                assert 0 <= line["used"] <= line["limit"], (key, financier)
                used_by_core[core] = used_by_core.get(core, 0) + line["used"]
        for core, live in live_by_core.items():
            position = self.chain.query("voucher.position", core=core)
            assert position["outstanding"] == live == used_by_core.get(core, 0)
            assert position["outstanding"] <= position["credit_limit"]
            overdue = sum(v["amount"] for v in vouchers
                          if v["core"] == core and v["state"] == "OVERDUE")
            assert position["overdue"] == overdue

        queued = {key.rsplit("/", 1)[1] for key, _ in self.scan("voucher/od/")}
        assert queued == {v["id"] for v in vouchers if v["state"] == "OVERDUE"}
        for key, _ in self.scan("voucher/odc/"):
            core = key.rsplit("/", 1)[1]
            head = self.scan(f"voucher/od/{core}/")[0][1]
            assert self.chain.balance(self.names[core]) < head, "payable overdue left unpaid"

        balances = [value for _, value in self.scan("cash/bal/")]
        assert all(isinstance(b, int) and b > 0 for b in balances)
        assert sum(balances) == self.cash_total
        assert self.chain.query("cash.supply")["outstanding"] == self.cash_total

        for voucher_id, (holder, amount, financier) in self.frozen_before.items():
            now = by_id[voucher_id]
            assert now["amount"] == amount and now["state"] != "SPLIT"
            if voucher_id == self.approved:
                assert now["holder"] == financier
            else:
                assert now["holder"] == holder, "a frozen voucher moved"


names = st.sampled_from(NAMES)
suppliers = st.sampled_from(("t1", "t2", "t3", "dealer"))
cores = st.sampled_from(("core", "core2"))
financiers = st.sampled_from(("bank", "factor"))
indexes = st.integers(0, 1_000)
honesty = st.integers(0, 9).map(lambda n: n < 8)  # mostly the rightful caller


class VoucherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = VoucherWorld()

    def _step(self) -> None:
        self.world.before_step()

    @rule(core=cores, supplier=suppliers, amount=st.integers(1, 2_500),
          days=st.integers(1, 40), document=st.integers(0, 60))
    def issue(self, core: str, supplier: str, amount: int, days: int, document: int) -> None:
        self._step()
        self.world.issue(core, supplier, amount, days, document)

    @rule(index=indexes, to=names, amount=st.integers(0, 10_000), honest=honesty)
    def transfer(self, index: int, to: str, amount: int, honest: bool) -> None:
        self._step()
        self.world.transfer(index, to, amount, honest)

    @rule(index=indexes, parts=st.integers(2, 4), honest=honesty)
    def split(self, index: int, parts: int, honest: bool) -> None:
        self._step()
        self.world.split(index, parts, honest)

    @rule(index=indexes, financier=financiers, rate_bps=st.integers(1, 20_000), honest=honesty)
    def apply_discount(self, index: int, financier: str, rate_bps: int, honest: bool) -> None:
        self._step()
        self.world.apply_discount(index, financier, rate_bps, honest)

    @rule(index=indexes, decision=st.sampled_from(("approve", "reject", "cancel")),
          honest=honesty)
    def decide_discount(self, index: int, decision: str, honest: bool) -> None:
        self._step()
        self.world.decide_discount(index, decision, honest)

    @rule(financier=financiers, core=cores, limit=st.integers(1, 8_000))
    def grant(self, financier: str, core: str, limit: int) -> None:
        self._step()
        self.world.grant(financier, core, limit)

    @rule(kind=st.sampled_from(("deposit", "withdraw")), name=st.sampled_from(("core", "core2")),
          amount=st.integers(1, 3_000))
    def cash(self, kind: str, name: str, amount: int) -> None:
        self._step()
        self.world.cash(kind, name, amount)

    @rule(ms=st.integers(1, 4 * DAY_MS))
    def advance(self, ms: int) -> None:
        self._step()
        self.world.advance(ms)

    @invariant()
    def invariants_hold(self) -> None:
        self.world.check()


VoucherMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestVoucherInvariants = VoucherMachine.TestCase


# ---------------------------------------------------------------------------------------------
# Determinism.


def run_random_history(seed: int, steps: int) -> str:
    """Drive a fresh world with a seeded history; return the final app hash in hex."""
    rng = random.Random(seed)
    world = VoucherWorld()
    for _ in range(steps):
        kind = rng.randrange(8)
        index, honest = rng.randrange(1_000), rng.random() < 0.8
        if kind == 0:
            world.issue(rng.choice(("core", "core2")), rng.choice(("t1", "t2", "t3")),
                        rng.randint(1, 2_500), rng.randint(1, 40), rng.randint(0, 60))
        elif kind == 1:
            world.transfer(index, rng.choice(NAMES), rng.randint(0, 10_000), honest)
        elif kind == 2:
            world.split(index, rng.randint(2, 4), honest)
        elif kind == 3:
            world.apply_discount(index, rng.choice(("bank", "factor")), rng.randint(1, 20_000),
                                 honest)
        elif kind == 4:
            world.decide_discount(index, rng.choice(("approve", "reject", "cancel")), honest)
        elif kind == 5:
            world.cash("deposit", rng.choice(("core", "core2")), rng.randint(1, 3_000))
        else:
            world.advance(rng.randint(1, 4 * DAY_MS))
    world.check()
    return world.chain.app_hash.hex()


def test_same_history_gives_same_app_hash_across_hash_seeds() -> None:
    """Two fresh interpreters (PYTHONHASHSEED 1 and 2) replaying one history agree on the hash."""
    code = "from tests.unit.test_voucher_properties import run_random_history as r; " \
           "print(r(20261129, 150))"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    hashes = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        hashes.append(done.stdout.strip())
    assert len(hashes[0]) == 64 and hashes[0] == hashes[1]
    assert hashes[0] == run_random_history(20261129, 150)
    assert run_random_history(20261130, 150) != hashes[0]  # the history does matter
