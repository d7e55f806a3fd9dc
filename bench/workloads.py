"""Benchmark workloads: seeded, reproducible streams of contract calls.

A workload names the members it needs (with roles and starting cash), then yields its calls in
stages. Every stage but the last is *setup* (credit lines, vouchers to move, receipts to pledge
or sell): it runs and commits before the clock starts. The last stage is the measured load, a
mix of calls that do not depend on one another, so any order of commitment among them is valid
and every one of them should succeed. Ids a call creates derive from tx ids, so the
generator computes them itself from the tx bodies it builds: later stages refer to them.

The same (workload, seed, sizes, salt) gives the same calls and the same tx bodies.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from contracts import ids as contract_ids
from proto import types_pb2

DAY_MS = 86_400_000
WORKLOADS = ("cash-transfer", "voucher-mix", "warehouse-trade")
BIG_BALANCE = 10**13  # minor units; plenty for any run


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    roles: tuple[str, ...]
    balance: int = 0


@dataclass(frozen=True, slots=True)
class Call:
    """One unsigned call: who sends it and what it does."""

    sender: str  # member name
    contract: str
    method: str
    args: dict[str, Any]


@dataclass(slots=True)
class Unsigned:
    """A call turned into exact body bytes (what will be signed) and its tx id."""

    sender: str
    body: bytes
    tx_id: bytes
    label: str  # contract.method, for the report


@dataclass(slots=True)
class Plan:
    """Everything a run submits: setup stages (committed before the clock), warm-up, load."""

    members: list[Member]
    setup: list[list[Unsigned]] = field(default_factory=list)
    warmup: list[Unsigned] = field(default_factory=list)
    load: list[Unsigned] = field(default_factory=list)


def member_seed(seed: int, name: str) -> bytes:
    """Key seed of a bench member: reproducible from the run seed and the member's name."""
    return f"scfchain-bench:{seed}:{name}".encode()


class Builder:
    """Turns calls into tx bodies; nonces count up from a salt so re-runs differ only by it."""

    def __init__(self, chain_id: str, public_keys: dict[str, bytes], salt: int) -> None:
        self.chain_id = chain_id
        self.public_keys = public_keys
        self.nonce = salt * 10**9

    def build(self, call: Call) -> Unsigned:
        self.nonce += 1
        body = types_pb2.TxBody(
            chain_id=self.chain_id,
            sender=self.public_keys[call.sender],
            nonce=self.nonce,
            contract=call.contract,
            method=call.method,
            args=json.dumps(call.args, sort_keys=True, separators=(",", ":")).encode(),
        ).SerializeToString()
        tx_id = hashlib.sha256(body).digest()
        return Unsigned(call.sender, body, tx_id, f"{call.contract}.{call.method}")


def derive_id(tx_id: bytes, *parts: str | int) -> str:
    """The id a contract derives with `Context.derive_id` inside tx `tx_id` (raw bytes here)."""
    return contract_ids.derive_id(tx_id.hex(), *parts)


def _doc_hash(salt: int, kind: str, index: int) -> str:
    return hashlib.sha256(f"bench:{salt}:{kind}:{index}".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The workloads. Each is (members, generate) where generate(rng, builder, ids, sizes) -> Plan.


@dataclass(frozen=True, slots=True)
class Sizes:
    load: int  # measured txs
    warmup: int
    time_ms: int  # wall clock at generation: maturities and due dates count from it
    salt: int


def _cash_members(accounts: int) -> list[Member]:
    return [Member(f"payer{i:03d}", ("supplier",), BIG_BALANCE) for i in range(accounts)]


def _cash_plan(rng: random.Random, build: Builder, ids: dict[str, str], sizes: Sizes) -> Plan:
    names = sorted(n for n in ids if n.startswith("payer"))

    def transfer() -> Unsigned:
        sender, target = rng.sample(names, 2)
        amount = rng.randint(1, 10_000)
        return build.build(Call(sender, "cash", "transfer", {"to": ids[target], "amount": amount}))

    warmup = [transfer() for _ in range(sizes.warmup)]
    load = [transfer() for _ in range(sizes.load)]
    return Plan([], [], warmup, load)


def _voucher_members(accounts: int) -> list[Member]:
    cores = max(2, accounts // 16)
    suppliers = max(4, accounts - cores - 2)
    members = [Member("bank1", ("financier",), BIG_BALANCE), Member("bank2", ("financier",),
               BIG_BALANCE)]
    members += [Member(f"core{i:02d}", ("core_enterprise",), BIG_BALANCE) for i in range(cores)]
    members += [Member(f"supplier{i:03d}", ("supplier",)) for i in range(suppliers)]
    return members


def _voucher_plan(rng: random.Random, build: Builder, ids: dict[str, str], sizes: Sizes) -> Plan:
    """Load: 30 % issue, 50 % partial transfer (a split), 20 % discount approval."""
    cores = sorted(n for n in ids if n.startswith("core"))
    suppliers = sorted(n for n in ids if n.startswith("supplier"))
    banks = ["bank1", "bank2"]
    maturity_ms = sizes.time_ms + 180 * DAY_MS
    counter = iter(range(10**9))
    credit = [
        build.build(Call(bank, "voucher", "grant_credit",
                         {"core": ids[core], "limit": 10**15, "expiry_ms": sizes.time_ms
                          + 365 * DAY_MS}))
        for core in cores for bank in banks
    ]

    def issue(core: str, supplier: str) -> tuple[Unsigned, str]:
        n = next(counter)
        docs = [_doc_hash(sizes.salt, "invoice", n)]
        tx = build.build(Call(core, "voucher", "issue", {
            "supplier": ids[supplier], "amount": rng.randint(10_000, 1_000_000) * 100,
            "maturity_ms": maturity_ms + rng.randint(0, 30) * DAY_MS, "documents": docs}))
        return tx, derive_id(tx.tx_id, "voucher", "issue")

    kinds = [rng.choices(("issue", "transfer", "discount"), (3, 5, 2))[0]
             for _ in range(sizes.warmup + sizes.load)]
    # Setup: one voucher per transfer or discount of the load, and the discount applications.
    issued, applications = [], []
    sources: list[tuple[str, str, str]] = []  # (kind, holder, voucher id) in load order
    for kind in kinds:
        if kind == "issue":
            continue
        holder = rng.choice(suppliers)
        tx, voucher_id = issue(rng.choice(cores), holder)
        issued.append(tx)
        sources.append((kind, holder, voucher_id))
        if kind == "discount":
            bank = rng.choice(banks)
            applications.append(build.build(Call(holder, "voucher", "apply_discount", {
                "voucher": voucher_id, "financier": ids[bank], "rate_bps": rng.randint(200, 900)
            })))
            sources[-1] = (kind, bank, voucher_id)
    load: list[Unsigned] = []
    source_iter = iter(sources)
    for kind in kinds:
        if kind == "issue":
            load.append(issue(rng.choice(cores), rng.choice(suppliers))[0])
            continue
        _, who, voucher_id = next(source_iter)
        if kind == "discount":
            load.append(build.build(Call(who, "voucher", "approve_discount",
                                         {"voucher": voucher_id})))
        else:
            target = rng.choice([s for s in suppliers if s != who])
            load.append(build.build(Call(who, "voucher", "transfer", {
                "voucher": voucher_id, "to": ids[target], "amount": rng.randint(1, 9_999) * 100})))
    setup = [credit, issued, applications]
    return Plan([], [s for s in setup if s], load[: sizes.warmup], load[sizes.warmup :])


def _warehouse_members(accounts: int) -> list[Member]:
    owners = max(4, accounts - 4)
    members = [
        Member("warehouse1", ("warehouse",)),
        Member("exchange1", ("exchange",)),
        Member("bank1", ("financier",), BIG_BALANCE),
    ]
    members += [Member(f"trader{i:03d}", ("dealer",), BIG_BALANCE) for i in range(owners)]
    return members


def _warehouse_plan(rng: random.Random, build: Builder, ids: dict[str, str], sizes: Sizes
                    ) -> Plan:
    """Load: 1/3 pledge requests, 1/3 repayments (releases), 1/3 exchange purchases (DvP)."""
    traders = sorted(n for n in ids if n.startswith("trader"))
    due_ms = sizes.time_ms + 90 * DAY_MS
    kinds = [rng.choice(("pledge", "release", "buy")) for _ in range(sizes.warmup + sizes.load)]
    issued, stage2, stage3, load = [], [], [], []
    for n, kind in enumerate(kinds):
        owner = rng.choice(traders)
        tx = build.build(Call("warehouse1", "warehouse_receipt", "issue", {
            "owner": ids[owner], "commodity": rng.choice(("copper", "soybean", "cotton")),
            "quantity": rng.randint(10, 5_000), "unit": "t", "grade": "A",
            "location": "Shanghai bonded zone 3", "inspection_hash": _doc_hash(
                sizes.salt, "inspection", n)}))
        issued.append(tx)
        receipt_id = derive_id(tx.tx_id, "warehouse_receipt")
        principal = rng.randint(1_000, 100_000) * 100
        if kind == "pledge":
            load.append(build.build(Call(owner, "warehouse_receipt", "pledge", {
                "receipt_id": receipt_id, "financier": ids["bank1"], "principal": principal,
                "rate_bps": rng.randint(300, 800), "due_ms": due_ms})))
        elif kind == "release":
            stage2.append(build.build(Call(owner, "warehouse_receipt", "pledge", {
                "receipt_id": receipt_id, "financier": ids["bank1"], "principal": principal,
                "rate_bps": rng.randint(300, 800), "due_ms": due_ms})))
            stage3.append(build.build(Call("bank1", "warehouse_receipt", "approve_pledge",
                                           {"receipt_id": receipt_id})))
            load.append(build.build(Call(owner, "warehouse_receipt", "repay_pledge",
                                         {"receipt_id": receipt_id})))
        else:
            price = rng.randint(1_000, 100_000) * 100
            stage2.append(build.build(Call(owner, "warehouse_receipt", "list_for_sale", {
                "receipt_id": receipt_id, "exchange": ids["exchange1"], "price": price})))
            buyer = rng.choice([t for t in traders if t != owner])
            load.append(build.build(Call(buyer, "warehouse_receipt", "buy",
                                         {"receipt_id": receipt_id, "price": price})))
    setup = [s for s in (issued, stage2, stage3) if s]
    return Plan([], setup, load[: sizes.warmup], load[sizes.warmup :])


PlanFn = Callable[[random.Random, Builder, dict[str, str], Sizes], Plan]
_WORKLOADS: dict[str, tuple[Callable[[int], list[Member]], PlanFn]] = {
    "cash-transfer": (_cash_members, _cash_plan),
    "voucher-mix": (_voucher_members, _voucher_plan),
    "warehouse-trade": (_warehouse_members, _warehouse_plan),
}


def members_of(workload: str, accounts: int) -> list[Member]:
    if workload not in _WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    return _WORKLOADS[workload][0](accounts)


def make_plan(
    workload: str,
    *,
    seed: int,
    chain_id: str,
    public_keys: dict[str, bytes],
    sizes: Sizes,
    accounts: int,
) -> Plan:
    """The whole run's txs, unsigned; the same inputs give the same bodies."""
    members = members_of(workload, accounts)
    rng = random.Random(f"{workload}:{seed}")
    ids = {m.name: public_keys[m.name].hex() for m in members}
    build = Builder(chain_id, public_keys, sizes.salt)
    plan = _WORKLOADS[workload][1](rng, build, ids, sizes)
    plan.members = members
    return plan


def label_counts(txs: list[Unsigned]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tx in txs:
        counts[tx.label] = counts.get(tx.label, 0) + 1
    return dict(sorted(counts.items()))


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
