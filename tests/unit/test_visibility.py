"""Who may see what (contracts/visibility.py), tried the way a curious or hostile member would.

Every read here goes through `LocalChain.query_as(member, ...)`, the reader the API builds for a
signed read; `LocalChain.query` is the node's own (internal) reader and is used as the truth to
compare against. Single reads a member may not see fail with PERMISSION_DENIED naming the
reader; list views leave out what it may not see and page over the rest; lineages show a holder
its path to the root and nothing of its siblings; `tx_visible` decides what a block shows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from contracts import all_contracts
from contracts.runtime import Args, Contract, ContractError, JsonValue, ReadContext, Runtime
from contracts.visibility import (
    PUBLIC,
    VIEW_ACCESS,
    Reader,
    event_visible,
    reader_of,
    tx_visible,
)
from tests.harness import DAY_MS, LocalChain, Receipt
from tests.unit.trade_chain import make_chain as trade_chain
from tests.unit.trade_chain import ok

MEMBERS: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "bank": ("financier",),
    "factor": ("financier",),
    "core": ("core_enterprise",),
    "core2": ("core_enterprise",),
    "t1": ("supplier",),
    "t2": ("supplier",),
    "t3": ("supplier",),
    "t4": ("supplier",),
    "auditor": ("auditor",),
}


def doc(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def voucher_chain() -> LocalChain:
    return LocalChain(
        members=dict(MEMBERS), balances={"core": 10_000_000, "bank": 10_000_000,
                                         "factor": 10_000_000},
    )


def denied(chain: LocalChain, who: str, call: str, **args: Any) -> str:
    """Run a view as `who` that must be refused; returns the message."""
    with pytest.raises(ContractError) as caught:
        chain.query_as(who, call, **args)
    assert caught.value.code == "PERMISSION_DENIED", caught.value
    assert f"member {who} may not read" in caught.value.message
    return caught.value.message


def grant(chain: LocalChain, financier: str = "bank", core: str = "core") -> None:
    ok(chain.run(financier, "voucher.grant_credit", core=chain.id(core), limit=50_000_000,
                 expiry_ms=chain.time_ms + 365 * DAY_MS))


def issue(chain: LocalChain, amount: int, name: str, to: str = "t1", core: str = "core") -> str:
    receipt = ok(chain.run(core, "voucher.issue", supplier=chain.id(to), amount=amount,
                           maturity_ms=chain.time_ms + 90 * DAY_MS, documents=[doc(name)]))
    return str(receipt.result["voucher"])


def three_tiers(chain: LocalChain) -> dict[str, str]:
    """The worked example's tree: V (t1) splits into A (t2) and B (t1); A into C (t3), D (t2)."""
    grant(chain)
    root = issue(chain, 10_000_000, "invoice-1")
    first = ok(chain.run("t1", "voucher.transfer", voucher=root, to=chain.id("t2"),
                         amount=6_000_000)).result
    second = ok(chain.run("t2", "voucher.transfer", voucher=first["voucher"],
                          to=chain.id("t3"), amount=2_500_000)).result
    return {"V": root, "A": first["voucher"], "B": first["remainder_voucher"],
            "C": second["voucher"], "D": second["remainder_voucher"]}


# ---------------------------------------------------------------------------------------------
# Readers.


def test_reader_of_gives_the_auditor_everything_and_a_member_its_own_account() -> None:
    chain = voucher_chain()
    assert reader_of(chain.state, chain.id("t3")) == Reader(chain.id("t3"), False)
    assert reader_of(chain.state, chain.id("auditor")) == Reader(chain.id("auditor"), True)
    assert Reader.internal().everything
    assert Reader.internal().account not in {chain.id(name) for name in MEMBERS}


def test_a_stranger_or_a_malformed_account_is_refused_as_a_reader() -> None:
    chain = voucher_chain()
    stranger = chain.add_account("mallory")
    for account in (stranger, "zz", "internal", ""):
        with pytest.raises(ContractError) as caught:
            reader_of(chain.state, account)
        assert caught.value.code == "PERMISSION_DENIED"
        assert "not a consortium member" in caught.value.message


def test_a_suspended_member_reads_nothing_even_an_auditor_and_reads_again_when_reinstated() -> None:
    chain = voucher_chain()
    for name in ("t3", "auditor"):
        assert chain.govern("suspend_member", account=chain.id(name)).ok
        with pytest.raises(ContractError) as caught:
            chain.query_as(name, "cash.balance", account=chain.id(name))
        assert caught.value.code == "PERMISSION_DENIED"
        assert f"member {name} is suspended" in caught.value.message
    assert chain.govern("reinstate_member", account=chain.id("t3")).ok
    assert chain.query_as("t3", "cash.balance", account=chain.id("t3"))["balance"] == 0


# ---------------------------------------------------------------------------------------------
# Cash.


def test_tier3_may_not_read_the_cores_balance_the_core_and_the_auditor_may() -> None:
    chain = voucher_chain()
    message = denied(chain, "t3", "cash.balance", account=chain.id("core"))
    assert "the balance of" in message and "its own balance" in message
    assert chain.query_as("core", "cash.balance", account=chain.id("core"))["balance"] == (
        10_000_000)
    assert chain.query_as("auditor", "cash.balance", account=chain.id("core"))["balance"] == (
        10_000_000)
    # The supply is a consortium-wide total and names no member: public.
    assert chain.query_as("t3", "cash.supply") == chain.query("cash.supply")
    assert chain.query_as("t3", "cash.supply")["outstanding"] == 30_000_000


def test_a_view_calling_another_view_passes_its_reader_on() -> None:
    probe = Contract("probe")

    @probe.view
    def core_balance(ctx: ReadContext, args: Args) -> JsonValue:
        return ctx.view("cash", "balance", {"account": args.account("account")})

    chain = LocalChain(members=dict(MEMBERS), balances={"core": 5},
                       runtime=Runtime([*all_contracts(), probe]))
    denied(chain, "t3", "probe.core_balance", account=chain.id("core"))
    assert chain.query_as("auditor", "probe.core_balance", account=chain.id("core")) == {
        "account": chain.id("core"), "balance": 5}
    assert chain.query("probe.core_balance", account=chain.id("core"))["balance"] == 5


# ---------------------------------------------------------------------------------------------
# Vouchers: a holder sees the path to the root, not its siblings' holders.


def test_a_holder_reads_its_voucher_and_the_path_to_the_root_but_no_sibling() -> None:
    chain = voucher_chain()
    v = three_tiers(chain)
    assert chain.query_as("t3", "voucher.get", voucher=v["C"]) == chain.query(
        "voucher.get", voucher=v["C"])
    # Ancestors are readable, with the children the reader may not see left out.
    root = chain.query_as("t3", "voucher.get", voucher=v["V"])
    assert (root["holder"], root["children"]) == (chain.id("t1"), [v["A"]])
    middle = chain.query_as("t3", "voucher.get", voucher=v["A"])
    assert (middle["holder"], middle["children"]) == (chain.id("t2"), [v["C"]])
    assert chain.query("voucher.get", voucher=v["A"])["children"] == [v["C"], v["D"]]
    # Siblings along the path are another holder's business.
    for sibling in ("B", "D"):
        message = denied(chain, "t3", "voucher.get", voucher=v[sibling])
        assert f"voucher {v[sibling][:16]}" in message
    # The same rule upstream: t1 sees V and B, not the part it paid t2 with.
    assert chain.query_as("t1", "voucher.get", voucher=v["V"])["children"] == [v["B"]]
    denied(chain, "t1", "voucher.get", voucher=v["A"])
    denied(chain, "t1", "voucher.get", voucher=v["C"])


def test_the_lineage_is_whole_for_the_core_and_the_auditor_and_a_path_for_a_holder() -> None:
    chain = voucher_chain()
    v = three_tiers(chain)
    whole = chain.query("voucher.lineage", root=v["V"])
    assert [node["id"] for node in whole["tree"]] == [v[k] for k in "VABCD"]
    assert chain.query_as("core", "voucher.lineage", root=v["V"]) == whole
    assert chain.query_as("auditor", "voucher.lineage", root=v["V"]) == whole

    path = chain.query_as("t3", "voucher.lineage", root=v["V"])
    assert path["partial"] is True
    assert [(n["id"], n["holder"]) for n in path["tree"]] == [
        (v["V"], chain.id("t1")), (v["A"], chain.id("t2")), (v["C"], chain.id("t3"))]
    assert [n["children"] for n in path["tree"]] == [[v["A"]], [v["C"]], []]
    # The siblings B (t1's) and D (t2's) are not named anywhere in what t3 gets.
    assert v["B"] not in str(path) and v["D"] not in str(path)
    # Totals that add up vouchers it may not see are left out; the root's own terms are kept.
    assert not {"live", "redeemed", "vouchers"} & path.keys()
    assert (path["amount"], path["core"], path["documents"]) == (
        10_000_000, chain.id("core"), [doc("invoice-1")])


def test_another_supplier_may_not_read_vouchers_or_the_lineage_and_its_lists_come_back_empty() -> (
        None):
    chain = voucher_chain()
    v = three_tiers(chain)
    for key in "VABCD":
        denied(chain, "t4", "voucher.get", voucher=v[key])
    message = denied(chain, "t4", "voucher.lineage", root=v["V"])
    assert "the lineage of voucher" in message
    spying = chain.query_as("t4", "voucher.holdings", holder=chain.id("t3"))
    assert spying == {"holder": chain.id("t3"), "vouchers": [], "total": 0, "next_after": None}
    own = chain.query_as("t3", "voucher.holdings", holder=chain.id("t3"))
    assert [x["id"] for x in own["vouchers"]] == [v["C"]] and own["total"] == 2_500_000
    # The double-financing check is public: asking needs the document's hash.
    assert chain.query_as("t4", "voucher.document", document=doc("invoice-1"))["root"] == v["V"]


def test_a_bank_may_not_read_a_competitors_discount_application() -> None:
    chain = voucher_chain()
    v = three_tiers(chain)
    ok(chain.run("t3", "voucher.apply_discount", voucher=v["C"], financier=chain.id("bank"),
                 rate_bps=600))
    # The financier applied to reads the voucher and its path to the root.
    assert chain.query_as("bank", "voucher.get", voucher=v["C"])["discount"]["financier"] == (
        chain.id("bank"))
    assert [n["id"] for n in chain.query_as("bank", "voucher.lineage", root=v["V"])["tree"]] == [
        v["V"], v["A"], v["C"]]
    pending = chain.query_as("bank", "voucher.pending_discounts", financier=chain.id("bank"))
    assert [x["id"] for x in pending["vouchers"]] == [v["C"]]
    # A competitor learns nothing of it.
    denied(chain, "factor", "voucher.get", voucher=v["C"])
    denied(chain, "factor", "voucher.lineage", root=v["V"])
    spying = chain.query_as("factor", "voucher.pending_discounts", financier=chain.id("bank"))
    assert spying["vouchers"] == [] and spying["next_after"] is None
    # Once the bank has bought it, it is the holder; the seller no longer reads it.
    ok(chain.run("bank", "voucher.approve_discount", voucher=v["C"]))
    assert chain.query_as("bank", "voucher.get", voucher=v["C"])["holder"] == chain.id("bank")
    denied(chain, "t3", "voucher.get", voucher=v["C"])


def test_holdings_pages_over_what_the_reader_may_see_and_never_names_the_rest() -> None:
    chain = voucher_chain()
    grant(chain)
    grant(chain, core="core2")
    mine = sorted(issue(chain, 100 + i, f"core-{i}", to="t4") for i in range(3))
    theirs = [issue(chain, 200 + i, f"core2-{i}", to="t4", core="core2") for i in range(3)]
    everything = chain.query("voucher.holdings", holder=chain.id("t4"))["vouchers"]
    assert len(everything) == 6
    first = chain.query_as("core", "voucher.holdings", holder=chain.id("t4"), limit=2)
    assert [x["id"] for x in first["vouchers"]] == mine[:2]
    assert first["next_after"] == mine[1]
    rest = chain.query_as("core", "voucher.holdings", holder=chain.id("t4"), limit=2,
                          after=first["next_after"])
    assert [x["id"] for x in rest["vouchers"]] == mine[2:] and rest["next_after"] is None
    assert rest["total"] == sum(x["amount"] for x in rest["vouchers"])
    assert not set(theirs) & {x["id"] for x in first["vouchers"] + rest["vouchers"]}


def test_a_cores_position_is_whole_for_the_core_and_each_financier_sees_only_its_line() -> None:
    chain = voucher_chain()
    grant(chain)
    grant(chain, financier="factor")
    issue(chain, 1_000, "invoice-9")
    whole = chain.query("voucher.position", core=chain.id("core"))
    assert chain.query_as("core", "voucher.position", core=chain.id("core")) == whole
    assert chain.query_as("auditor", "voucher.position", core=chain.id("core")) == whole
    assert len(whole["lines"]) == 2 and whole["outstanding"] == 1_000
    for financier in ("bank", "factor"):
        seen = chain.query_as(financier, "voucher.position", core=chain.id("core"))
        assert seen["partial"] is True
        assert [line["financier"] for line in seen["lines"]] == [chain.id(financier)]
        assert "outstanding" not in seen and "overdue" not in seen
        assert seen["credit_limit"] == 50_000_000
    denied(chain, "t1", "voucher.position", core=chain.id("core"))
    denied(chain, "bank", "voucher.position", core=chain.id("core2"))


# ---------------------------------------------------------------------------------------------
# Orders, deals and receipts.

OF, PP, WR = "order_financing", "prepayment", "warehouse_receipt"


def test_an_order_is_for_its_buyer_supplier_and_current_financier_only() -> None:
    chain = trade_chain(bank=5_000_000, bank2=5_000_000)
    for bank in ("bank", "bank2"):
        ok(chain.run(bank, f"{OF}.set_ratio", ratio_bps=7_000))
    start = chain.time_ms
    order_id = ok(chain.run(
        "supplier", f"{OF}.register_order", buyer=chain.id("core"), amount=1_000_000,
        delivery_due_ms=start + 30 * DAY_MS, payment_due_ms=start + 90 * DAY_MS,
        order_hash=doc("po-1"))).result["order_id"]
    ok(chain.run("core", f"{OF}.confirm_order", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank"),
                 principal=700_000, rate_bps=720))
    truth = chain.query(f"{OF}.order", order_id=order_id)
    for reader in ("supplier", "core", "bank", "auditor"):
        assert chain.query_as(reader, f"{OF}.order", order_id=order_id) == truth
    # A competing bank, another supplier and a warehouse may not read the application.
    for reader in ("bank2", "supplier2", "wh"):
        assert "an order is read by" in denied(chain, reader, f"{OF}.order", order_id=order_id)
        assert chain.query_as(reader, f"{OF}.orders_of", account=chain.id("supplier")) == []
    # Rejected, the supplier goes to bank2: now bank is the outsider, bank2 a party.
    ok(chain.run("bank", f"{OF}.reject_loan", order_id=order_id))
    ok(chain.run("supplier", f"{OF}.apply_loan", order_id=order_id, financier=chain.id("bank2"),
                 principal=600_000, rate_bps=700))
    assert chain.query_as("bank2", f"{OF}.order", order_id=order_id)["loan"]["principal"] == (
        600_000)
    denied(chain, "bank", f"{OF}.order", order_id=order_id)
    assert [o["id"] for o in chain.query(f"{OF}.orders_of", account=chain.id("bank"))] == [
        order_id]
    assert chain.query_as("bank", f"{OF}.orders_of", account=chain.id("bank")) == []
    # A financier's ratio is a public offer.
    assert chain.query_as("supplier2", f"{OF}.terms", financier=chain.id("bank"))[
        "ratio_bps"] == 7_000


def test_a_prepayment_deal_is_for_its_dealer_core_financier_and_warehouse_only() -> None:
    chain = trade_chain(dealer=5_000_000, bank=10_000_000)
    deal_id = ok(chain.run(
        "dealer", f"{PP}.apply", core=chain.id("core"), financier=chain.id("bank"),
        warehouse=chain.id("wh"), commodity="steel", quantity=100, unit="tonne",
        price=1_000_000, margin=300_000, rate_bps=720, due_ms=chain.time_ms + 90 * DAY_MS,
    )).result["deal_id"]
    truth = chain.query(f"{PP}.deal", deal_id=deal_id)
    for reader in ("dealer", "core", "bank", "wh", "auditor"):
        assert chain.query_as(reader, f"{PP}.deal", deal_id=deal_id) == truth
    for reader in ("bank2", "supplier", "wh2", "exch"):
        denied(chain, reader, f"{PP}.deal", deal_id=deal_id)
        assert chain.query_as(reader, f"{PP}.deals_of", account=chain.id("dealer")) == []
    assert [d["id"] for d in chain.query_as("core", f"{PP}.deals_of",
                                            account=chain.id("dealer"))] == [deal_id]
    assert chain.query_as("supplier", f"{PP}.config") == {"margin_bps_min": 3_000}


def test_receipts_for_their_warehouse_owner_exchange_and_the_path_to_the_root() -> None:
    chain = trade_chain(dealer=1_000_000)
    root = ok(chain.run(
        "wh", f"{WR}.issue", owner=chain.id("supplier"), commodity="copper", quantity=100,
        unit="tonne", grade="A", location="bay 4", inspection_hash=doc("insp-1"),
    )).result["receipt_id"]
    split = ok(chain.run("supplier", f"{WR}.transfer", receipt_id=root, to=chain.id("dealer"),
                         quantity=40)).event("ReceiptSplit")
    to_dealer, kept = split["children"]
    assert split["owners"] == [chain.id("dealer"), chain.id("supplier")]
    # The dealer reads its part and the root (the children it may not see left out) ...
    assert chain.query_as("dealer", f"{WR}.receipt", receipt_id=to_dealer)["quantity"] == 40
    assert chain.query_as("dealer", f"{WR}.receipt", receipt_id=root)["children"] == [to_dealer]
    # ... not the supplier's part; another warehouse reads none of them.
    denied(chain, "dealer", f"{WR}.receipt", receipt_id=kept)
    for receipt_id in (root, to_dealer, kept):
        denied(chain, "wh2", f"{WR}.receipt", receipt_id=receipt_id)
    denied(chain, "wh2", f"{WR}.lineage", root_id=root)
    # The warehouse that issued it sees the whole lineage; the dealer its path, partial.
    whole = chain.query(f"{WR}.lineage", root_id=root)
    assert chain.query_as("wh", f"{WR}.lineage", root_id=root) == whole
    path = chain.query_as("dealer", f"{WR}.lineage", root_id=root)
    assert path["partial"] is True and "live" not in path and "redeemed" not in path
    assert sorted(r["id"] for r in path["receipts"]) == sorted([root, to_dealer])
    # An exchange reads what is listed with it, and only that.
    ok(chain.run("supplier", f"{WR}.list_for_sale", receipt_id=kept, exchange=chain.id("exch"),
                 price=500_000))
    assert chain.query_as("exch", f"{WR}.receipt", receipt_id=kept)["listing"]["price"] == 500_000
    denied(chain, "exch", f"{WR}.receipt", receipt_id=to_dealer)
    assert [r["id"] for r in chain.query_as("exch", f"{WR}.receipts_of",
                                            owner=chain.id("supplier"))] == [kept]
    assert chain.query_as("exch", f"{WR}.receipts_of", owner=chain.id("dealer")) == []


# ---------------------------------------------------------------------------------------------
# Public views and the table of rules.


def test_every_view_of_every_contract_has_a_rule() -> None:
    views = {(c.name, view) for c in all_contracts() for view in c.views}
    assert views == set(VIEW_ACCESS)


def test_public_views_answer_any_member() -> None:
    chain = voucher_chain()
    args: dict[tuple[str, str], dict[str, Any]] = {
        ("consortium", "member"): {"account": chain.id("core")},
        ("consortium", "by_name"): {"name": "core"},
        ("governance", "proposal"): {},
        ("voucher", "document"): {"document": doc("nothing")},
        ("order_financing", "terms"): {"financier": chain.id("bank")},
    }
    proposal = chain.govern("set_param", name="block_txs_max", value=1_000)
    args[("governance", "proposal")] = {"proposal_id": proposal.result["proposal_id"]}
    public = sorted(key for key, rule in VIEW_ACCESS.items() if rule == PUBLIC)
    assert len(public) == 13
    for contract, view in public:
        call, view_args = f"{contract}.{view}", args.get((contract, view), {})
        assert chain.query_as("t4", call, **view_args) == chain.query(call, **view_args)


# ---------------------------------------------------------------------------------------------
# Block contents.


def events_of(receipt: Receipt, contract: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(contract, name, attrs) for name, attrs in receipt.events]


def test_tx_visible_for_sender_party_stranger_and_auditor() -> None:
    chain = voucher_chain()
    paid = ok(chain.run("core", "cash.transfer", to=chain.id("t1"), amount=5))
    events = events_of(paid, "cash")
    reader = {name: reader_of(chain.state, chain.id(name)) for name in MEMBERS}
    core_id = chain.id("core")
    assert tx_visible(reader["core"], core_id, events, contract="cash")  # the sender
    assert tx_visible(reader["t1"], core_id, events, contract="cash")  # named in an event
    assert not tx_visible(reader["t2"], core_id, events, contract="cash")  # a stranger
    assert tx_visible(reader["auditor"], core_id, events, contract="cash")
    assert tx_visible(Reader.internal(), core_id, events, contract="cash")
    # A failed tx has no events: only its sender (and the auditor) see it.
    assert tx_visible(reader["core"], core_id, [], contract="cash")
    assert not tx_visible(reader["t1"], core_id, [], contract="cash")


def test_a_party_named_only_inside_a_list_or_object_sees_the_tx() -> None:
    chain = trade_chain()
    dealer = reader_of(chain.state, chain.id("dealer"))
    split = ("warehouse_receipt", "ReceiptSplit", {"receipt_id": "ab" * 32,
                                                   "owners": [chain.id("supplier"),
                                                              chain.id("dealer")]})
    nested = ("x", "y", {"members": [{"account": chain.id("dealer"), "weight": 1}]})
    elsewhere = ("x", "y", {"note": f"paid {chain.id('dealer')}", "count": 3})
    assert tx_visible(dealer, chain.id("supplier"), [split], contract="warehouse_receipt")
    assert tx_visible(dealer, chain.id("supplier"), [nested], contract="x")
    # A value that merely contains the id is not the id.
    assert not tx_visible(dealer, chain.id("supplier"), [elsewhere], contract="x")


def test_governance_txs_are_public_and_end_block_events_are_shown_to_their_parties() -> None:
    chain = voucher_chain()
    stranger = reader_of(chain.state, chain.id("t4"))
    vote = chain.govern("set_param", name="block_txs_max", value=1_000)
    assert vote.ok
    assert tx_visible(stranger, chain.id("admin"), events_of(vote, "governance"),
                      contract="governance")
    assert tx_visible(stranger, chain.id("admin"), [], contract="governance")
    redeemed = ("voucher", "VoucherRedeemed", {"holder": chain.id("t1"), "core": chain.id("core")})
    assert event_visible(reader_of(chain.state, chain.id("t1")), redeemed)
    assert event_visible(reader_of(chain.state, chain.id("auditor")), redeemed)
    assert not event_visible(stranger, redeemed)
    assert event_visible(stranger, ("governance", "proposal_expired", {"proposal_id": "00"}))
