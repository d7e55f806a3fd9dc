"""Voucher records in binary (state format 2) read back as exactly the value saved.

`binary_records.pack` holds a record of the usual shape in ~200 bytes; anything it cannot hold
exactly it refuses (None), and the contract stores canonical JSON instead. A chain's genesis
fixes the format: the same voucher history run on a format-1 and a format-2 chain gives the same
receipts, events and decoded state, and only the format-2 chain's records are binary.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import binary_records
from contracts.canonical import decode, encode
from contracts.runtime import decode_state
from node.config import ConfigError
from node.genesis import parse_genesis
from tests.harness import DAY_MS, LocalChain
from tests.unit.test_record_codecs import odd_vouchers, outcome, vouchers
from tests.unit.test_trade_determinism import run_trade_history
from tests.unit.trade_chain import make_chain

HEX = "ab" * 32


def usual(**changes: Any) -> dict[str, Any]:
    record = {"amount": 5, "children": [], "core": "c" * 64, "created_ms": 1,
              "discount": None, "holder": "d" * 64, "id": HEX, "maturity_ms": 9,
              "parent": None, "root": HEX, "seq": 0, "state": "ACTIVE", "tier": 1}
    record.update(changes)
    return record


hex_ids = st.text("0123456789abcdef", min_size=64, max_size=64)
u64 = st.integers(0, 2**64 - 1)
# Records of the usual shape within the layout's ranges (`vouchers` draws mostly others).
in_range = st.fixed_dictionaries({
    "amount": u64, "children": st.lists(hex_ids, max_size=3), "core": hex_ids,
    "created_ms": u64, "holder": hex_ids, "id": hex_ids, "maturity_ms": u64,
    "parent": st.none() | hex_ids, "root": hex_ids, "seq": st.integers(0, 255),
    "state": st.sampled_from(binary_records.STATES), "tier": st.integers(0, 65_535),
    "discount": st.none() | st.fixed_dictionaries(
        {"financier": hex_ids, "rate_bps": st.integers(0, 10_000), "applied_ms": u64}),
}, optional={"redeemed_ms": u64})


def packable(record: dict[str, Any]) -> bool:
    return binary_records.pack_voucher(record) is not None


@settings(max_examples=500, deadline=None)
@given(in_range)
def test_every_record_in_range_is_packed_and_reads_back_as_its_json_reads(
        record: dict[str, Any]) -> None:
    raw = binary_records.pack_voucher(record)
    assert raw is not None and raw[0] == binary_records.VOUCHER_TAG
    value = decode_state(raw)
    assert value == decode(encode(record)) == record
    assert list(value) == sorted(value)
    assert len(raw) < len(encode(record))


@settings(max_examples=500, deadline=None)
@given(vouchers)
def test_a_packed_record_reads_back_as_its_json_reads(record: dict[str, Any]) -> None:
    try:
        raw = binary_records.pack_voucher(record)
    except AssertionError:  # a float in the discount: encode refuses it too
        assert outcome(encode, record)[0] == "error"
        return
    if raw is None:
        return
    assert raw[0] == binary_records.VOUCHER_TAG
    value = decode_state(raw)
    assert value == decode(encode(record)) == record
    assert list(value) == sorted(value)  # key order as json.loads gives canonical JSON
    assert len(raw) < len(encode(record))


@settings(max_examples=200, deadline=None)
@given(vouchers, st.integers(-1, 2**64))
def test_a_settled_record_reads_back_too(record: dict[str, Any], redeemed_ms: int) -> None:
    record = {**record, "redeemed_ms": redeemed_ms}
    try:
        raw = binary_records.pack_voucher(record)
    except AssertionError:
        return
    if raw is not None:
        assert decode_state(raw) == decode(encode(record)) == record
        assert list(decode_state(raw)) == sorted(record)
    else:
        assert not 0 <= redeemed_ms < 2**64 or not packable({
            k: v for k, v in record.items() if k != "redeemed_ms"})


@settings(max_examples=500, deadline=None)
@given(odd_vouchers())
def test_any_other_record_is_refused_or_read_back_exactly(record: dict[str, Any]) -> None:
    try:
        raw = binary_records.pack_voucher(record)
    except AssertionError:
        return
    if raw is not None:
        assert decode_state(raw) == record


@pytest.mark.parametrize("change", [
    {"id": HEX.upper()}, {"holder": "x" * 64}, {"core": "c" * 63}, {"parent": "p"},
    {"children": [HEX, "short"]}, {"tier": 65_536}, {"seq": 256}, {"amount": 2**64},
    {"amount": -1}, {"state": "LOST"}, {"discount": [1]}, {"created_ms": True},
    {"children": [HEX] * 256}, {"redeemed_ms": -5}, {"redeemed_ms": "5"}, {"settled_ms": 5},
])
def test_records_the_format_cannot_hold_exactly_are_refused(change: dict[str, Any]) -> None:
    assert packable(usual())
    assert not packable(usual(**change))


def test_every_part_of_a_record_survives() -> None:
    record = usual(parent="e" * 64, children=["1" * 64, "2" * 64], seq=255, tier=65_535,
                   amount=2**64 - 1, state="REDEEMED", redeemed_ms=2**64 - 1,
                   discount={"financier": "f" * 64, "rate_bps": 600, "applied_ms": 7})
    raw = binary_records.pack_voucher(record)
    assert raw is not None and decode_state(raw) == record
    assert list(decode_state(raw)) == sorted(record)
    assert len(raw) == 1 + 8 * 3 + 1 + 2 + 1 + 1 + 1 + 32 * 4 + 8 + 32 * 3 + len(
        encode(record["discount"]))


def genesis_doc(**extra: Any) -> bytes:
    doc = {"chain_id": "c", "genesis_time_ms": 1, "consensus": {"engine": "solo"},
           "validators": [{"id": "node1", "public_key": "00" * 32, "peer_addr": "x:1"}],
           "members": [{"name": "admin", "account": "aa" * 32, "roles": ["admin"]}], **extra}
    return json.dumps(doc).encode()


def test_genesis_state_format_decides_the_record_format_key() -> None:
    older = parse_genesis(genesis_doc())
    assert older.state_format == 1
    assert "voucher/record_format" not in older.state_writes()[0]
    newer = parse_genesis(genesis_doc(state_format=2))
    assert newer.state_writes()[0]["voucher/record_format"] == b"2"
    assert newer.state_writes()[1] != older.state_writes()[1]  # another chain, another hash
    with pytest.raises(ConfigError, match="state_format is 3"):
        parse_genesis(genesis_doc(state_format=3))


MEMBERS = {"admin": ("admin",), "bank": ("financier",), "core": ("core_enterprise",),
           "t1": ("supplier",), "t2": ("supplier",), "t3": ("supplier",)}
HOLDERS = ("t1", "t2", "t3")


def decoded(chain: LocalChain) -> dict[str, Any]:
    """Every value of the chain's state as contracts read it, but the record format keys."""
    return {key: decode_state(raw) for key, raw in chain.state.items.items()
            if key not in binary_records.RECORD_FORMAT_KEYS}


def run_history(chain: LocalChain, seed: int) -> list[Any]:
    """A seeded mix of every voucher call, through maturity; what each call returned."""
    rng = random.Random(seed)
    seen: list[Any] = []

    def run(who: str, call: str, **args: Any) -> Any:
        receipt = chain.run(who, call, **args)
        seen.append((receipt.ok, receipt.code, receipt.result, receipt.events))
        return receipt

    run("bank", "voucher.grant_credit", core=chain.id("core"), limit=10**12,
        expiry_ms=chain.time_ms + 400 * DAY_MS)
    live: list[tuple[str, str]] = []  # (voucher, holder)
    for step in range(120):
        kind = rng.choice(("issue", "transfer", "transfer", "split", "discount"))
        if kind == "issue" or not live:
            holder = rng.choice(HOLDERS)
            receipt = run("core", "voucher.issue", supplier=chain.id(holder),
                          amount=rng.randint(100, 10_000),
                          maturity_ms=chain.time_ms + rng.randint(2, 40) * DAY_MS,
                          documents=[f"{seed:02x}{step:062x}"])
            if receipt.ok:
                live.append((receipt.result["voucher"], holder))
            continue
        voucher, holder = live.pop(rng.randrange(len(live)))
        amount = chain.query("voucher.get", voucher=voucher)["amount"]
        if kind == "transfer":
            target = rng.choice([h for h in HOLDERS if h != holder])
            receipt = run(holder, "voucher.transfer", voucher=voucher, to=chain.id(target),
                          amount=rng.randint(1, amount))
            if receipt.ok:
                live.append((receipt.result["voucher"], target))
                if receipt.result.get("remainder_voucher"):
                    live.append((receipt.result["remainder_voucher"], holder))
        elif kind == "split" and amount >= 2:
            cut = rng.randint(1, amount - 1)
            receipt = run(holder, "voucher.split", voucher=voucher, amounts=[cut, amount - cut])
            if receipt.ok:
                live.extend((child, holder) for child in receipt.result["vouchers"])
        else:
            run(holder, "voucher.apply_discount", voucher=voucher,
                financier=chain.id("bank"), rate_bps=rng.randint(1, 900))
            decision = rng.choice(("voucher.approve_discount", "voucher.reject_discount"))
            receipt = run("bank", decision, voucher=voucher)
            live.append((voucher, "bank" if decision.startswith("voucher.approve") else holder))
        if rng.random() < 0.1:
            seen.append(chain.advance(rng.randint(1, 5) * DAY_MS))
    seen.append(chain.advance(60 * DAY_MS))  # every voucher matures and is settled
    return seen


def test_both_state_formats_run_the_same_voucher_history() -> None:
    one = LocalChain(members=MEMBERS, balances={"core": 10**9, "bank": 10**9}, state_format=1)
    two = LocalChain(members=MEMBERS, balances={"core": 10**9, "bank": 10**9}, state_format=2)
    assert run_history(one, 7) == run_history(two, 7)

    assert decoded(one) == decoded(two)
    assert one.app_hash != two.app_hash
    records = [key for key in two.state.items if key.startswith("voucher/v/")]
    assert len(records) > 50
    assert all(two.state.items[key][0] == binary_records.VOUCHER_TAG for key in records)
    assert all(one.state.items[key][:1] == b"{" for key in records)
    assert all(len(two.state.items[key]) < len(one.state.items[key]) / 2 for key in records)
    settled = [key for key in records if "redeemed_ms" in decode_state(two.state.items[key])]
    assert len(settled) > 50


receipts_in_range = st.fixed_dictionaries({
    "children": st.lists(hex_ids, max_size=3), "commodity": st.text(max_size=70),
    "grade": st.text(max_size=8), "id": hex_ids, "inspection_hash": hex_ids,
    "issued_ms": u64, "listing": st.none() | st.fixed_dictionaries(
        {"exchange": hex_ids, "price": u64}),
    "location": st.text(max_size=130), "owner": hex_ids, "parent": st.none() | hex_ids,
    "pledge": st.none() | st.fixed_dictionaries(
        {"financier": hex_ids, "controller": st.none() | hex_ids, "principal": u64,
         "rate_bps": st.none() | st.integers(0, 10_000), "due_ms": u64}),
    "quantity": u64, "root": hex_ids, "state": st.sampled_from(binary_records.RECEIPT_STATES),
    "unit": st.text(max_size=16), "warehouse": hex_ids,
})


@settings(max_examples=500, deadline=None)
@given(receipts_in_range)
def test_a_receipt_record_reads_back_as_its_json_reads(record: dict[str, Any]) -> None:
    raw = binary_records.pack_receipt(record)
    texts_ok = all(
        not any(0xD800 <= ord(c) <= 0xDFFF for c in record[name])
        for name in ("commodity", "unit", "grade", "location"))
    if not texts_ok:  # a lone surrogate: JSON only
        assert raw is None
        return
    assert raw is not None and raw[0] == binary_records.RECEIPT_TAG
    value = decode_state(raw)
    assert value == decode(encode(record)) == record
    assert list(value) == sorted(value)


def usual_receipt(**changes: Any) -> dict[str, Any]:
    record = {"children": [], "commodity": "copper", "grade": "A", "id": HEX,
              "inspection_hash": "9" * 64, "issued_ms": 1, "listing": None, "location": "L",
              "owner": "d" * 64, "parent": None, "pledge": None, "quantity": 5, "root": HEX,
              "state": "ACTIVE", "unit": "t", "warehouse": "c" * 64}
    record.update(changes)
    return record


@pytest.mark.parametrize("change", [
    {"owner": "contract:prepayment"}, {"state": "LOST"}, {"quantity": -1},
    {"commodity": 7}, {"unit": "\ud800"}, {"listing": [1]}, {"pledge": "p"},
    {"location": "x" * 70_000}, {"redeemed_ms": 5}, {"children": [HEX.upper()]},
])
def test_receipts_the_format_cannot_hold_exactly_are_refused(change: dict[str, Any]) -> None:
    assert binary_records.pack_receipt(usual_receipt()) is not None
    assert binary_records.pack_receipt(usual_receipt(**change)) is None


def warehouse_history(chain: LocalChain) -> list[Any]:
    """The warehouse receipt's worked example (docs/contracts.md) and the trade history."""
    seen: list[Any] = []

    def run(who: str, call: str, **args: Any) -> Any:
        receipt = chain.run(who, f"warehouse_receipt.{call}", **args)
        assert receipt.ok, receipt.message
        seen.append(receipt)
        return receipt.result

    root = run("wh", "issue", owner=chain.id("supplier"), commodity="copper cathode",
               quantity=1_000, unit="tonne", grade="A", location="Shanghai bonded zone, bay 4",
               inspection_hash="5" * 64)["receipt_id"]
    part_a = run("supplier", "transfer", receipt_id=root, to=chain.id("dealer"),
                 quantity=300)["receipt_id"]
    part_b = seen[-1].event("ReceiptSplit")["children"][1]
    run("supplier", "list_for_sale", receipt_id=part_b, exchange=chain.id("exch"),
        price=4_900_000)
    run("dealer", "buy", receipt_id=part_b, price=4_900_000)
    run("dealer", "pledge", receipt_id=part_a, financier=chain.id("bank"), principal=1_000_000,
        rate_bps=720, due_ms=chain.time_ms + 2_000 + 30 * DAY_MS)
    run("bank", "approve_pledge", receipt_id=part_a)
    seen.append(chain.advance(31 * DAY_MS))
    run("dealer", "request_redemption", receipt_id=part_a)
    run("wh", "confirm_delivery", receipt_id=part_a)
    run("dealer", "split", receipt_id=part_b, quantities=[100, 600])
    return [*seen, *run_trade_history(chain)]


def test_both_state_formats_run_the_same_warehouse_history() -> None:
    balances = {"core": 5_000_000, "dealer": 9_000_000, "bank": 19_000_000, "supplier": 100}
    one, two = make_chain(1, **balances), make_chain(2, **balances)
    assert warehouse_history(one) == warehouse_history(two)

    assert decoded(one) == decoded(two)
    assert one.app_hash != two.app_hash
    records = [key for key in two.state.items if key.startswith("warehouse_receipt/r/")]
    states = {decode_state(two.state.items[key])["state"] for key in records}
    assert {"SPLIT", "REDEEMED", "ACTIVE"} <= states
    assert all(one.state.items[key][:1] == b"{" for key in records)
    assert len(records) >= 10
    assert all(two.state.items[key][0] == binary_records.RECEIPT_TAG for key in records)
    assert all(len(two.state.items[key]) < len(one.state.items[key]) / 2 for key in records)
