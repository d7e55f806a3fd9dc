"""The console's parts on their own: the event index and live feed (`ChainHistory`), the
follower that feeds it from Subscribe, the lineage tree layout, the pending-approval rules,
the filters that show money, times and members, and the command's option checks. Pure
functions and small fakes; no node, no browser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node.client.ledger import LedgerError
from node.console.approvals import pending_for
from node.console.command import _is_loopback, build_target, main_parser
from node.console.follower import ChainFollower
from node.console.history import ChainHistory, named_ids
from node.console.present import make_filters, when
from node.console.record_pages import tree_rows
from node.console.source import NodeStatus
from proto import types_pb2

A, B, C = "a" * 64, "b" * 64, "c" * 64


def block(height: int, *events: tuple[str, dict[str, Any]]) -> types_pb2.CommittedBlock:
    receipt = types_pb2.Receipt(
        tx_id=bytes([height]) * 32, height=height, index=0, status=types_pb2.SUCCESS,
        events=[types_pb2.Event(contract="voucher", name=name, attrs_json=json.dumps(attrs))
                for name, attrs in events])
    header = types_pb2.BlockHeader(height=height, time_ms=1000 * height, proposer="node1")
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header, txs=[types_pb2.SignedTx(body=b"x")]),
        receipts=[receipt], block_hash=bytes([height]) * 32)


def test_named_ids_finds_ids_inside_lists_and_objects_and_nothing_else() -> None:
    attrs = {"voucher": A, "children": [{"voucher": B, "amount": 5}], "owners": [C],
             "memo": "not an id " + A, "short": "abc", "upper": A.upper()}
    assert named_ids(attrs) == {A, B, C}


def test_history_files_events_under_every_id_they_name_and_ignores_replayed_heights() -> None:
    history = ChainHistory()
    history.add_block(block(1, ("VoucherIssued", {"voucher": A, "holder": B})))
    history.add_block(block(2, ("VoucherSplit", {"voucher": A, "children": [{"voucher": C}]})))
    assert history.add_block(block(2, ("VoucherSplit", {"voucher": A}))) is None
    assert [e.name for e in history.of(A)] == ["VoucherIssued", "VoucherSplit"]
    assert [e.height for e in history.of(C)] == [2]
    assert [e.name for e in history.of(B)] == ["VoucherIssued"]
    assert [b.height for b in history.recent()] == [2, 1]
    assert [b.height for b in history.recent(after_height=1)] == [2]
    assert history.ids_with_prefix("a" * 6, 5) == [A]


def test_history_is_bounded_per_id_and_in_ids() -> None:
    history = ChainHistory(ids_max=2, entries_per_id_max=3)
    for height in range(1, 6):
        history.add_block(block(height, ("Touched", {"voucher": A})))
    assert [e.height for e in history.of(A)] == [3, 4, 5]
    history.add_block(block(6, ("Touched", {"voucher": B})))
    history.add_block(block(7, ("Touched", {"voucher": C})))
    assert history.of(A) == [] and len(history.of(C)) == 1  # the least recently named went


async def test_a_live_page_that_falls_behind_is_cut_and_the_others_keep_going() -> None:
    history = ChainHistory()
    slow, fast = history.listen(), history.listen()
    for height in range(1, 70):
        history.add_block(block(height))
        while not fast.empty():
            fast.get_nowait()
    assert history.listeners == 1
    drained = [slow.get_nowait() for _ in range(slow.qsize())]
    assert drained[-1] is None  # the end marker: the browser reconnects
    history.close()
    assert fast.get_nowait() is None and history.listeners == 0


class FlakySource:
    """Subscribe fails once, then streams; statuses say the head is 5."""

    def __init__(self) -> None:
        self.subscribed: list[int] = []

    async def node_statuses(self) -> list[NodeStatus]:
        return [NodeStatus("node1", "x:1", True, height=5)]

    async def subscribe(self, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        self.subscribed.append(from_height)
        if len(self.subscribed) == 1:
            yield block(from_height)
            raise LedgerError("UNAVAILABLE", "node restarted")
        for height in range(from_height, 8):
            yield block(height)


async def test_follower_replays_recent_blocks_then_resubscribes_from_the_next_height() -> None:
    source, history = FlakySource(), ChainHistory()
    follower = ChainFollower(source, history, replay_blocks_max=3,  # type: ignore[arg-type]
                             retry_pause_s=0.01)
    follower.start()
    for _ in range(200):
        if history.head == 7:
            break
        await asyncio.sleep(0.01)
    await follower.stop()
    assert source.subscribed[:2] == [3, 4]  # head 5, three blocks back; then after block 3
    assert [b.height for b in history.recent()] == [7, 6, 5, 4, 3]


def test_tree_rows_draw_guides_for_a_three_tier_split() -> None:
    records = [
        {"id": "r", "children": ["x", "y"]}, {"id": "x", "children": ["z"]},
        {"id": "z", "children": []}, {"id": "y", "children": []},
    ]
    rows = tree_rows(records, "r")
    assert [(r["id"], r["depth"], r["guides"]) for r in rows] == [
        ("r", 0, []), ("x", 1, ["tee"]), ("z", 2, ["pipe", "elbow"]), ("y", 1, ["elbow"])]
    assert tree_rows(records, "missing") == []


def test_tree_rows_handle_a_chain_256_deep_without_recursion() -> None:
    records = [{"id": str(i), "children": [str(i + 1)] if i < 255 else []} for i in range(256)]
    rows = tree_rows(records, "0")
    assert len(rows) == 256 and rows[-1]["depth"] == 255
    assert rows[-1]["guides"] == ["blank"] * 254 + ["elbow"]


def test_pending_approvals_follow_each_records_state_and_party() -> None:
    me = A
    orders = [
        {"id": "o1", "state": "REGISTERED", "buyer": me, "amount": 5},
        {"id": "o2", "state": "CONFIRMED", "buyer": B,
         "loan": {"state": "APPLIED", "financier": me, "principal": 3}},
        {"id": "o3", "state": "REGISTERED", "buyer": B},  # someone else's step
    ]
    deals = [{"id": "d1", "state": "CONFIRMED", "financier": me, "financed": 9},
             {"id": "d2", "state": "FINANCED", "warehouse": B}]
    receipts = [{"id": "r1", "state": "PLEDGE_PENDING",
                 "pledge": {"financier": me, "principal": 4}},
                {"id": "r1", "state": "PLEDGE_PENDING",  # the same receipt found twice
                 "pledge": {"financier": me, "principal": 4}}]
    found = pending_for(me, orders=orders, deals=deals, receipts=receipts,
                        discounts=[{"id": "v1", "amount": 7}])
    assert [(p.kind, p.record_id, p.action, p.amount) for p in found] == [
        ("voucher", "v1", "approve_discount", 7), ("order", "o1", "confirm_order", 5),
        ("order", "o2", "approve_loan", 3), ("deal", "d1", "approve", 9),
        ("receipt", "r1", "approve_pledge", 4)]
    assert found[0].path == "/voucher/v1"


def test_filters_show_money_times_names_and_links() -> None:
    filters = make_filters(lambda: {A: "bank"})
    assert str(filters["money"](1_234_567)) == "12,345.67"
    assert when(1_700_000_000_000) == "2023-11-14 22:13:20 UTC" and when(None) == "—"
    assert 'href="/member/bank"' in str(filters["who"](A))
    assert str(filters["short"](B)) == "bbbbbbbbbbbb…"
    value = str(filters["value"]({"voucher": C, "amount": 100, "to": A, "note": "<b>"}))
    assert 'href="/voucher/' + C in value and "1.00" in value and "bank" in value
    assert "<b>" not in value and "&lt;b&gt;" in value


def test_loopback_hosts_are_recognised() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("10.0.0.5")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "--dir DIR"),
    (["--dir", "d", "--addr", "h:1"], "one of the two"),
    (["--addr", "127.0.0.1:1"], "--addr needs --key"),
    (["--dir", "/nonexistent/cluster"], "no directory"),
    (["--addr", "127.0.0.1:1", "--key", "/nonexistent.pem"], "cannot read the key"),
])
def test_bad_options_are_refused_with_a_sentence(argv: list[str], message: str) -> None:
    from node.console.command import ConsoleSetupError

    args = main_parser().parse_args(argv)
    with pytest.raises(ConsoleSetupError, match=message.replace("-", r"\-")):
        build_target(args)


def test_the_console_binds_loopback_by_default() -> None:
    args = main_parser().parse_args(["--dir", "d"])
    assert args.host == "127.0.0.1"
