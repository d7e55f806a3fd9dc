"""The console's pages and /api/ endpoints, through Starlette's test client, against a stub
chain source (views, txs, blocks and node statuses from dicts; refusals as LedgerErrors): what
each page shows, that a member's refusals show as "not visible to you", that bad input (a
malformed id, an unknown record, another member's balance, a key that is no member's, a
failing source) gives a page that says what went wrong and never a traceback, that search
leads to the record, and that the event stream sends blocks as server-sent events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from node.client.ledger import LedgerError
from node.console.app import create_app
from node.console.history import ChainHistory
from node.console.source import NodeStatus
from proto import ledger_pb2, types_pb2

READER = "a" * 64
CHAIN_ID = "unit-console"


def account(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


MEMBERS = [
    {"account": READER, "name": "auditor", "roles": ["auditor"], "suspended": False},
    {"account": account("core"), "name": "core", "roles": ["core_enterprise"],
     "suspended": False},
    {"account": account("bank"), "name": "bank", "roles": ["financier"], "suspended": False},
    {"account": account("t1"), "name": "t1", "roles": ["supplier"], "suspended": False},
]


def event(contract: str, name: str, **attrs: Any) -> types_pb2.Event:
    return types_pb2.Event(contract=contract, name=name, attrs_json=json.dumps(attrs))


def signed_tx(sender: str, contract: str, method: str, args: dict[str, Any]
              ) -> tuple[types_pb2.SignedTx, bytes]:
    body = types_pb2.TxBody(chain_id=CHAIN_ID, sender=bytes.fromhex(sender), nonce=7,
                            contract=contract, method=method,
                            args=json.dumps(args).encode()).SerializeToString()
    return types_pb2.SignedTx(body=body, signature=b"s" * 64), hashlib.sha256(body).digest()


def committed_block(height: int, txs: list[tuple[types_pb2.SignedTx, types_pb2.Receipt]] = (),
                    end_events: list[types_pb2.Event] = ()) -> types_pb2.CommittedBlock:
    header = types_pb2.BlockHeader(chain_id=CHAIN_ID, height=height,
                                   time_ms=1_700_000_000_000 + height * 1000,
                                   proposer="node1", round=2)
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header, txs=[tx for tx, _ in txs]),
        block_hash=hashlib.sha256(b"block%d" % height).digest(),
        receipts=[receipt for _, receipt in txs],
        end_block_events=list(end_events),
        app_hash=b"\x01" * 32,
    )


class StubSource:
    """Answers from dicts: `views[(contract, view)]` is a result, a LedgerError to raise, or a
    function of the args returning either."""

    def __init__(self) -> None:
        self.views: dict[tuple[str, str], Any] = {("consortium", "members"): MEMBERS}
        self.txs: dict[bytes, ledger_pb2.GetTxResponse] = {}
        self.blocks: dict[int, types_pb2.CommittedBlock] = {}
        self.statuses = [
            NodeStatus("node1", "127.0.0.1:7001", True, height=12, role="leader", round=3,
                       leader="node1", consensus="raft", validator=True,
                       validators=("node1", "node2")),
            NodeStatus("node2", "127.0.0.1:7002", True, height=11, role="follower", round=3,
                       leader="node1", consensus="raft", validator=True,
                       validators=("node1", "node2")),
            NodeStatus("node3", "127.0.0.1:7003", True, height=12, role="follower", round=3,
                       leader="node1", consensus="raft", validator=False,
                       validators=("node1", "node2")),
        ]
        self.asked: list[tuple[str, str, dict[str, Any]]] = []

    @property
    def chain_id(self) -> str:
        return CHAIN_ID

    @property
    def reader_account(self) -> str:
        return READER

    async def node_statuses(self) -> list[NodeStatus]:
        return list(self.statuses)

    async def query(self, contract: str, view: str, args: dict[str, Any]) -> Any:
        self.asked.append((contract, view, args))
        answer = self.views.get((contract, view))
        if answer is None:
            raise LedgerError("NOT_FOUND", f"UNKNOWN_RECORD: nothing for {contract}.{view}")
        if callable(answer):
            answer = answer(args)
        if isinstance(answer, LedgerError):
            raise answer
        return answer

    async def get_tx(self, tx_id: bytes) -> ledger_pb2.GetTxResponse:
        if tx_id not in self.txs:
            raise LedgerError("NOT_FOUND", "no such tx")
        return self.txs[tx_id]

    async def get_block(self, height: int) -> types_pb2.CommittedBlock:
        if height not in self.blocks:
            raise LedgerError("NOT_FOUND", f"no block {height}; the chain is at 12")
        return self.blocks[height]

    async def subscribe(self, from_height: int) -> AsyncIterator[types_pb2.CommittedBlock]:
        for height in sorted(self.blocks):
            if height >= from_height:
                yield self.blocks[height]

    async def close(self) -> None:
        return None

# ---------------------------------------------------------------------------------------------
# The app under test.

ROOT = "1" * 64
TIER2 = "2" * 64
TIER3 = "3" * 64
REMAINDER = "4" * 64
ORDER = "5" * 64
DEAL = "6" * 64
RECEIPT = "7" * 64


def voucher_record(voucher_id: str, parent: str | None, tier: int, holder: str, amount: int,
                   state: str, children: list[str]) -> dict[str, Any]:
    return {"id": voucher_id, "root": ROOT, "parent": parent, "seq": tier, "tier": tier,
            "core": account("core"), "holder": holder, "amount": amount,
            "maturity_ms": 1_800_000_000_000, "state": state, "created_ms": 1_700_000_000_000,
            "children": children, "discount": None}


VOUCHERS = {
    ROOT: voucher_record(ROOT, None, 1, account("t1"), 10_000_000, "SPLIT", [TIER2, REMAINDER]),
    TIER2: voucher_record(TIER2, ROOT, 2, account("t2"), 6_000_000, "SPLIT", [TIER3]),
    TIER3: voucher_record(TIER3, TIER2, 3, account("bank"), 2_500_000, "ACTIVE", []),
    REMAINDER: voucher_record(REMAINDER, ROOT, 1, account("t1"), 4_000_000, "ACTIVE", []),
}
LINEAGE = {
    "root": ROOT, "core": account("core"), "financier": account("bank"), "amount": 10_000_000,
    "redeemed": 0, "live": 10_000_000, "maturity_ms": 1_800_000_000_000, "vouchers": 4,
    "tree": [{k: v[k] for k in ("id", "parent", "tier", "holder", "amount", "state",
                                "children")} for v in VOUCHERS.values()],
}


def chain() -> StubSource:
    source = StubSource()
    source.views[("voucher", "get")] = lambda args: (
        VOUCHERS[args["voucher"]] if args["voucher"] in VOUCHERS
        else LedgerError("NOT_FOUND", f"UNKNOWN_VOUCHER: no voucher {args['voucher'][:16]}…"))
    source.views[("voucher", "lineage")] = LINEAGE
    tx, tx_id = signed_tx(account("core"), "voucher", "issue",
                          {"supplier": account("t1"), "amount": 10_000_000})
    receipt = types_pb2.Receipt(
        tx_id=tx_id, height=3, index=0, status=types_pb2.SUCCESS,
        result_json=json.dumps({"voucher": ROOT}),
        events=[event("voucher", "VoucherIssued", voucher=ROOT, root=ROOT,
                      core=account("core"), holder=account("t1"), amount=10_000_000)])
    hidden = types_pb2.Receipt(tx_id=b"\x09" * 32, height=3, index=1, status=types_pb2.FAILED)
    source.blocks[3] = committed_block(
        3, [(tx, receipt), (types_pb2.SignedTx(), hidden)],
        [event("voucher", "VoucherRedeemed", voucher=TIER3, root=ROOT, amount=2_500_000)])
    source.txs[tx_id] = ledger_pb2.GetTxResponse(tx=tx, receipt=receipt)
    return source


@pytest.fixture
def source() -> StubSource:
    return chain()


@pytest.fixture
def history(source: StubSource) -> ChainHistory:
    found = ChainHistory()
    found.add_block(source.blocks[3])
    return found


@pytest.fixture
def client(source: StubSource, history: ChainHistory) -> TestClient:
    app = create_app(source, reader_name="auditor", follow=False, history=history)
    return TestClient(app, raise_server_exceptions=False)


def tx_id_hex(source: StubSource) -> str:
    return next(iter(source.txs)).hex()


def assert_clear_error(page: Any, status: int, *words: str) -> None:
    assert page.status_code == status, page.text
    assert "Traceback" not in page.text and 'File "' not in page.text
    for word in words:
        assert word in page.text, (word, page.text[:2000])


# ---------------------------------------------------------------------------------------------
# Network, block, tx


def test_network_page_lists_nodes_roles_validators_observers_and_recent_blocks(
        client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    for text in ("node1", "node2", "node3", "leader", "follower", "observer", "raft",
                 'data-height="3"', 'id="block-feed"', "/static/console.js"):
        assert text in page.text, text
    doc = client.get("/api/network").json()
    assert doc["height"] == 12 and doc["leader"] == "node1" and doc["round"] == 3
    assert doc["validators"] == ["node1", "node2"] and doc["observers"] == ["node3"]
    assert [b["height"] for b in doc["recent_blocks"]] == [3]
    assert doc["recent_blocks"][0]["visible_txs"] == 1
    assert doc["recent_blocks"][0]["failed_txs"] == 1


def test_network_page_when_no_node_answers_says_so(source: StubSource,
                                                   client: TestClient) -> None:
    source.statuses = [NodeStatus("node1", "127.0.0.1:7001", False, error="UNAVAILABLE: down")]
    assert_clear_error(client.get("/"), 503, "no node answers", "node1", "UNAVAILABLE")


def test_block_page_shows_header_visible_and_reduced_txs_and_end_of_block_events(
        source: StubSource, client: TestClient) -> None:
    page = client.get("/block/3")
    assert page.status_code == 200
    assert "voucher.issue" in page.text and "VoucherIssued" in page.text
    assert "not visible to you" in page.text
    assert "VoucherRedeemed" in page.text and 'href="/member/core"' in page.text
    doc = client.get("/api/block/3").json()
    assert doc["block_hash"] == source.blocks[3].block_hash.hex()
    visible, reduced = doc["txs"]
    assert visible["visible"] and visible["sender"] == account("core")
    assert visible["args"]["amount"] == 10_000_000 and visible["result"] == {"voucher": ROOT}
    assert reduced == {"tx_id": "09" * 32, "height": 3, "index": 1, "status": "FAILED",
                       "visible": False}
    assert doc["hidden_txs"] == 1 and doc["end_block_events"][0]["name"] == "VoucherRedeemed"


@pytest.mark.parametrize("height", ["abc", "0", "-1", "1" * 40, "3.5"])
def test_a_malformed_height_is_a_clear_400_page(client: TestClient, height: str) -> None:
    assert_clear_error(client.get(f"/block/{height}"), 400, "is not a block height")


def test_a_block_beyond_the_head_is_a_clear_404(client: TestClient) -> None:
    assert_clear_error(client.get("/block/99"), 404, "no block 99")
    doc = client.get("/api/block/99").json()
    assert doc["error"]["http_status"] == 404 and doc["error"]["status"] == "NOT_FOUND"


def test_tx_page_shows_call_receipt_and_events(source: StubSource, client: TestClient) -> None:
    page = client.get(f"/tx/{tx_id_hex(source)}")
    assert page.status_code == 200
    assert "voucher.issue" in page.text and "VoucherIssued" in page.text
    assert 'href="/block/3"' in page.text and "100,000.00" in page.text


@pytest.mark.parametrize("text", ["xyz", "ab" * 31, "g" * 64, "'<script>'"])
def test_a_malformed_tx_id_is_a_clear_400_page_and_escaped(client: TestClient,
                                                         text: str) -> None:
    page = client.get(f"/tx/{text}")
    assert_clear_error(page, 400, "is not a tx id", "64 hex digits")
    assert "<script>" not in page.text


def test_an_unknown_tx_is_a_clear_404(client: TestClient) -> None:
    assert_clear_error(client.get("/tx/" + "e" * 64), 404, "no such tx")


def test_an_unknown_path_is_a_404_page(client: TestClient) -> None:
    assert_clear_error(client.get("/no/such/page"), 404, "no page /no/such/page")


# ---------------------------------------------------------------------------------------------
# Voucher and its lineage


def test_voucher_page_draws_the_lineage_depth_first_with_tiers_holders_and_states(
        client: TestClient) -> None:
    page = client.get(f"/voucher/{TIER3}")
    assert page.status_code == 200
    order = [page.text.index(f'data-id="{v}"') for v in (ROOT, TIER2, TIER3, REMAINDER)]
    assert order == sorted(order)
    assert 'class="tree-row current" data-id="' + TIER3 in page.text
    assert "tier 3" in page.text and "SPLIT" in page.text and "25,000.00" in page.text
    assert "VoucherRedeemed" in page.text  # the settlement history
    doc = client.get(f"/api/voucher/{TIER3}").json()
    assert [(r["id"], r["depth"], r["guides"]) for r in doc["tree"]] == [
        (ROOT, 0, []), (TIER2, 1, ["tee"]), (TIER3, 2, ["pipe", "elbow"]),
        (REMAINDER, 1, ["elbow"])]
    assert doc["descendants"] == 3 and doc["tiers"] == 3
    assert [e["name"] for e in doc["money_history"]] == ["VoucherRedeemed"]


def test_a_partial_lineage_says_so(source: StubSource, client: TestClient) -> None:
    source.views[("voucher", "lineage")] = {
        "root": ROOT, "core": account("core"), "amount": 10_000_000, "partial": True,
        "tree": [{**LINEAGE["tree"][0], "children": [TIER2]}, LINEAGE["tree"][1],
                 LINEAGE["tree"][2]]}
    page = client.get(f"/voucher/{TIER3}")
    assert page.status_code == 200 and "you see part of this lineage" in page.text
    assert f'data-id="{REMAINDER}"' not in page.text


def test_a_voucher_the_member_may_not_read_is_a_clear_403(source: StubSource,
                                                          client: TestClient) -> None:
    source.views[("voucher", "get")] = LedgerError(
        "PERMISSION_DENIED", "PERMISSION_DENIED: member t3 may not read voucher 1111…")
    assert_clear_error(client.get(f"/voucher/{ROOT}"), 403, "Not visible to you",
                       "may not read voucher")


def test_an_unknown_voucher_is_a_clear_404(client: TestClient) -> None:
    assert_clear_error(client.get("/voucher/" + "f" * 64), 404, "UNKNOWN_VOUCHER")


# ---------------------------------------------------------------------------------------------
# Member


def member_views(source: StubSource) -> None:
    bank = account("bank")
    source.views.update({
        ("cash", "balance"): lambda args: (
            {"account": args["account"], "balance": 7_525_000} if args["account"] == bank
            else LedgerError("PERMISSION_DENIED", "PERMISSION_DENIED: a member reads its own "
                             "balance; only the auditor reads another's")),
        ("voucher", "holdings"): {"holder": bank, "vouchers": [VOUCHERS[TIER3]],
                                  "total": 2_500_000, "next_after": None},
        ("voucher", "pending_discounts"): {"financier": bank, "vouchers": [VOUCHERS[REMAINDER]],
                                           "next_after": None},
        ("voucher", "position"): {"core": account("core"), "credit_limit": 50_000_000,
                                  "remaining_credit": 40_000_000, "partial": True,
                                  "lines": [{"financier": bank, "limit": 50_000_000,
                                             "used": 10_000_000, "expiry_ms": 1_900_000_000_000,
                                             "granted_ms": 1, "open": True}]},
        ("order_financing", "orders_of"): [{
            "id": ORDER, "supplier": account("t1"), "buyer": account("core"),
            "amount": 1_000_000, "state": "CONFIRMED",
            "loan": {"financier": bank, "principal": 700_000, "state": "APPLIED"}}],
        ("prepayment", "deals_of"): [{
            "id": DEAL, "dealer": account("t1"), "core": account("core"), "financier": bank,
            "warehouse": account("w"), "commodity": "steel", "quantity": 100, "unit": "t",
            "financed": 1_300_000, "state": "CONFIRMED"}],
        ("warehouse_receipt", "receipts_of"): [],
    })


def test_member_page_shows_balance_vouchers_lines_deals_and_pending_approvals(
        source: StubSource, client: TestClient) -> None:
    member_views(source)
    page = client.get("/member/bank")
    assert page.status_code == 200
    for text in ("75,250.00", "approve_discount", "approve_loan", "approve", "steel",
                 "500,000.00"):
        assert text in page.text, text
    doc = client.get("/api/member/bank").json()
    assert [(p["kind"], p["action"]) for p in doc["pending"]] == [
        ("voucher", "approve_discount"), ("order", "approve_loan"), ("deal", "approve")]
    assert doc["credit_lines"][0]["core"] == account("core")
    assert client.get(f"/api/member/{account('bank')}").json()["member"]["name"] == "bank"


def test_another_members_balance_shows_as_not_visible_not_as_an_error(
        source: StubSource, client: TestClient) -> None:
    member_views(source)
    page = client.get("/member/t1")
    assert page.status_code == 200
    assert "only the auditor reads another" in page.text


def test_an_unknown_member_is_a_clear_404_naming_the_members(client: TestClient) -> None:
    assert_clear_error(client.get("/member/mallory"), 404, "no member &#39;mallory&#39;",
                       "bank", "core")


def test_a_key_that_is_no_members_gets_a_page_saying_so(source: StubSource,
                                                        client: TestClient) -> None:
    refusal = LedgerError("PERMISSION_DENIED", f"account {READER} is not a consortium member; "
                          "only members may read")
    source.views[("voucher", "get")] = refusal
    source.views[("consortium", "members")] = refusal
    page = client.get(f"/voucher/{ROOT}")
    assert_clear_error(page, 403, "not a consortium member", "--as NAME or --key FILE")
    assert "(not a member)" in page.text


# ---------------------------------------------------------------------------------------------
# Order, deal, receipt


def test_order_deal_and_receipt_pages_show_their_records(source: StubSource,
                                                         client: TestClient) -> None:
    member_views(source)
    source.views[("order_financing", "order")] = source.views[("order_financing",
                                                               "orders_of")][0]
    source.views[("prepayment", "deal")] = {**source.views[("prepayment", "deals_of")][0],
                                            "price": 2_000_000, "margin": 700_000, "repaid": 0,
                                            "receipt_id": RECEIPT}
    source.views[("warehouse_receipt", "receipt")] = {
        "id": RECEIPT, "root": RECEIPT, "parent": None, "children": [],
        "warehouse": account("w"), "owner": account("t1"), "commodity": "steel",
        "quantity": 100, "unit": "t", "grade": "A", "location": "Dock 4",
        "state": "PLEDGED", "pledge": {"financier": account("bank"), "principal": 1_300_000},
        "listing": None}
    source.views[("warehouse_receipt", "lineage")] = {
        "root_id": RECEIPT, "issued": 100, "redeemed": 0, "count": 1, "live": 100,
        "receipts": [source.views[("warehouse_receipt", "receipt")]]}
    order = client.get(f"/order/{ORDER}")
    assert order.status_code == 200 and "APPLIED" in order.text and "7,000.00" in order.text
    deal = client.get(f"/deal/{DEAL}")
    assert deal.status_code == 200 and "steel" in deal.text and f"/receipt/{RECEIPT}" in deal.text
    receipt = client.get(f"/receipt/{RECEIPT}")
    assert receipt.status_code == 200 and "Dock 4" in receipt.text and "PLEDGED" in receipt.text
    assert f'data-id="{RECEIPT}"' in receipt.text
    assert_clear_error(client.get("/deal/12ab"), 400, "is not a deal id")


# ---------------------------------------------------------------------------------------------
# Search


def test_search_by_name_redirects_to_the_member(client: TestClient) -> None:
    page = client.get("/search?q=bank", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/member/bank"


def test_search_by_voucher_id_and_tx_id_leads_to_them(source: StubSource,
                                                      client: TestClient) -> None:
    page = client.get(f"/search?q={TIER3.upper()}", follow_redirects=False)
    assert page.headers["location"] == f"/voucher/{TIER3}"
    tx_id = tx_id_hex(source)
    assert client.get(f"/search?q={tx_id}", follow_redirects=False).headers["location"] == (
        f"/tx/{tx_id}")
    assert client.get("/search?q=3", follow_redirects=False).headers["location"] == "/block/3"


def test_search_by_an_id_prefix_finds_ids_in_the_history(client: TestClient) -> None:
    doc = client.get(f"/api/search?q={ROOT[:10]}").json()
    assert {"kind": "id", "id": ROOT, "label": f"{ROOT[:16]}… (named in 2 events)",
            "path": f"/search?q={ROOT}"} in doc["matches"]


def test_search_that_finds_nothing_is_a_clear_404_and_empty_search_a_400(
        client: TestClient) -> None:
    assert_clear_error(client.get("/search?q=nobody-here"), 404, "Nothing you may see")
    assert_clear_error(client.get("/search?q=%20"), 400, "type a tx id")
    assert_clear_error(client.get("/search?q=" + "x" * 300), 400, "at most 200")


# ---------------------------------------------------------------------------------------------
# Failures and the live stream


def test_a_failing_source_gives_a_500_page_without_a_traceback(source: StubSource,
                                                               client: TestClient) -> None:
    def explode(args: dict[str, Any]) -> Any:
        raise RuntimeError("boom: secret internals")

    source.views[("voucher", "get")] = explode
    page = client.get(f"/voucher/{ROOT}")
    assert_clear_error(page, 500, "the console failed to show this page (RuntimeError)")
    assert "secret internals" not in page.text
    assert client.get(f"/api/voucher/{ROOT}").json()["error"]["http_status"] == 500


def test_an_unreachable_node_is_a_503_page(source: StubSource, client: TestClient) -> None:
    source.views[("voucher", "get")] = LedgerError("UNAVAILABLE", "failed to connect")
    assert_clear_error(client.get(f"/voucher/{ROOT}"), 503, "Is the node up?")


def test_event_stream_replays_missed_blocks_after_last_event_id(
        source: StubSource, history: ChainHistory, client: TestClient) -> None:
    for height in (4, 5):
        history.add_block(committed_block(height))
    with client.stream("GET", "/events?count=2", headers={"Last-Event-ID": "3"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "id: 4\nevent: block\n" in text and "id: 5\nevent: block\n" in text
    assert "id: 3\n" not in text
    payload = json.loads(text.split("id: 5\nevent: block\ndata: ")[1].split("\n")[0])
    assert payload["height"] == 5 and payload["proposer"] == "node1"
    assert history.listeners == 0


def test_static_assets_are_served_from_the_package(client: TestClient) -> None:
    css = client.get("/static/console.css")
    assert css.status_code == 200 and ".tree-row" in css.text
    js = client.get("/static/console.js")
    assert js.status_code == 200 and "EventSource" in js.text
    for path in ("/", f"/voucher/{ROOT}"):
        assert "http://" not in client.get(path).text.split("<main>")[0]  # no CDN links
