"""The governance contract on LocalChain: votes, thresholds and weights, expiry, every refusal
(with nothing changed), the validator set and its epochs, chain params, committee changes,
genesis seeding, determinism."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from contracts.governance import VALIDATOR_CHANGE_DELAY_BLOCKS, proposal_id_of
from contracts.governance_actions import BLOCK_BYTES_LIMIT as CONTRACT_BYTES_LIMIT
from node.client.identity import Account
from node.genesis import BLOCK_BYTES_LIMIT, parse_genesis
from node.tls import issue_node_cert, make_ca
from tests.harness import LocalChain, Receipt

MEMBERS = {
    "admin": ("admin",),
    "core": ("core_enterprise",),
    "bank": ("financier",),
    "factor": ("financier",),
    "t1": ("supplier",),
}


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    certs: dict[str, str]  # node id -> certificate PEM from the CA
    other_ca_cert: str  # "node5" from a different CA


def _pem(path: str) -> str:
    return Path(path).read_text()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(str(root / "ca"))
    certs = {}
    for node_id in ("node1", "node2", "node3", "node4", "node5", "node6"):
        files = issue_node_cert(ca, node_id, str(root / node_id))
        certs[node_id] = _pem(files.cert)
    other = make_ca(str(root / "other-ca"), name="someone else's CA")
    stranger = issue_node_cert(other, "node5", str(root / "stranger"))
    return Pki(_pem(ca.cert), certs, _pem(stranger.cert))


def _key(node_id: str) -> str:
    return Account.from_seed(f"key-{node_id}".encode()).public_key.hex()


def _validator(pki: Pki, node_id: str) -> dict[str, str]:
    return {"node_id": node_id, "public_key": _key(node_id), "tls_cert_pem": pki.certs[node_id],
            "peer_addr": f"127.0.0.1:{7000 + int(node_id[4:])}"}


def make_chain(pki: Pki, *, consensus: str = "pbft", nodes: int = 4, **kwargs: Any) -> LocalChain:
    kwargs.setdefault("committee", {"core": 1, "bank": 1, "factor": 1})
    return LocalChain(
        members=dict(MEMBERS),
        consensus=consensus,
        validators=[_validator(pki, f"node{i}") for i in range(1, nodes + 1)],
        ca_cert_pem=pki.ca_pem,
        time_ms=int(time.time() * 1000),  # the test certificates are valid from now on
        **kwargs,
    )


def propose(chain: LocalChain, who: str, action: str, **params: Any) -> Receipt:
    return chain.run(who, "governance.propose", action=action, params=params)


def vote(chain: LocalChain, who: str, proposal_id: str, approve: bool = True) -> Receipt:
    return chain.run(who, "governance.vote", proposal_id=proposal_id, approve=approve)


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, (receipt.code, receipt.message)
    return receipt


def unchanged(chain: LocalChain, receipt_of: Any, code: str) -> Receipt:
    """Run a refused call; its code is `code` and no state key changed (hooks included)."""
    before = dict(chain.state.items)
    receipt = receipt_of()
    assert (receipt.code, receipt.ok) == (code, False), (receipt.code, receipt.message)
    assert dict(chain.state.items) == before
    return receipt


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in events]


# ---------------------------------------------------------------------------------------------
# Votes, thresholds, weights


def test_two_of_three_executes_in_the_block_of_the_second_yes(pki: Pki) -> None:
    chain = make_chain(pki)
    carol = chain.add_account("carol")
    created = ok(propose(chain, "core", "register_member", account=carol, name="carol",
                         roles=["supplier"]))
    pid = created.result["proposal_id"]
    assert created.result == {"proposal_id": pid, "status": "open"}
    assert pid == proposal_id_of(created.tx_id)
    assert names(created.events) == ["proposal_created", "vote_cast"]
    assert created.event("vote_cast") | {} == {
        "proposal_id": pid, "voter": chain.id("core"), "approve": True, "weight": 1,
        "yes_weight": 1, "no_weight": 0, "threshold": 2}
    with pytest.raises(Exception, match="UNKNOWN_MEMBER"):
        chain.query("consortium.member", account=carol)
    decided = ok(vote(chain, "bank", pid))
    assert decided.result == {"proposal_id": pid, "status": "executed"}
    assert names(decided.events) == ["vote_cast", "MemberRegistered", "proposal_executed"]
    assert decided.event("proposal_executed")["height"] == chain.height
    assert chain.query("consortium.member", account=carol)["name"] == "carol"
    record = chain.query("governance.proposal", proposal_id=pid)
    assert record["status"] == "executed" and record["decided_height"] == chain.height
    assert [(v["account"], v["approve"]) for v in record["votes"]] == [
        (chain.id("core"), True), (chain.id("bank"), True)]
    assert unchanged(chain, lambda: vote(chain, "factor", pid), "PROPOSAL_DECIDED")


def test_rejected_as_soon_as_it_cannot_pass(pki: Pki) -> None:
    chain = make_chain(pki)
    pid = ok(propose(chain, "core", "suspend_member", account=chain.id("t1"))).result[
        "proposal_id"]
    assert ok(vote(chain, "bank", pid, approve=False)).result["status"] == "open"
    decided = ok(vote(chain, "factor", pid, approve=False))
    assert decided.result["status"] == "rejected"
    assert decided.event("proposal_rejected")["yes_weight"] == 1
    assert decided.event("proposal_rejected")["no_weight"] == 2
    assert chain.query("consortium.member", account=chain.id("t1"))["suspended"] is False
    assert chain.query("governance.proposals", status="rejected")[0]["proposal_id"] == pid


def test_weights_and_threshold_count_weight_not_heads(pki: Pki) -> None:
    chain = make_chain(pki, committee={"core": 3, "bank": 1, "factor": 1}, threshold=4)
    pid = ok(propose(chain, "bank", "set_param", name="block_txs_max", value=500)).result[
        "proposal_id"]
    assert ok(vote(chain, "factor", pid)).result["status"] == "open"  # 2 of 4
    assert ok(vote(chain, "core", pid)).result["status"] == "executed"  # 5 >= 4
    # core (3) alone is short of 4; one no from core leaves 2 of 4 possible: rejected.
    pid = ok(propose(chain, "core", "set_param", name="block_txs_max", value=600)).result[
        "proposal_id"]
    assert ok(vote(chain, "bank", pid, approve=False)).result["status"] == "open"
    assert ok(vote(chain, "factor", pid)).result["status"] == "executed"
    assert chain.query("governance.params")["block_txs_max"] == 600


def test_the_default_threshold_is_more_than_half_of_the_weight(pki: Pki) -> None:
    assert make_chain(pki).query("governance.committee")["threshold"] == 2
    even = make_chain(pki, committee={"core": 1, "bank": 1, "factor": 1, "admin": 1})
    assert even.query("governance.committee")["threshold"] == 3
    heavy = make_chain(pki, committee={"core": 5, "bank": 1})
    assert heavy.query("governance.committee")["threshold"] == 4


def test_a_committee_of_one_is_the_admin_case(pki: Pki) -> None:
    chain = make_chain(pki, committee={"admin": 1})
    receipt = ok(propose(chain, "admin", "suspend_member", account=chain.id("t1")))
    assert receipt.result["status"] == "executed"
    assert names(receipt.events) == [
        "proposal_created", "vote_cast", "MemberSuspended", "proposal_executed"]
    assert chain.query("consortium.member", account=chain.id("t1"))["suspended"] is True
    # No committee in genesis: the admins are the committee, weight 1 each.
    default = LocalChain(members={"admin": ("admin",), "a2": ("admin",), "x": ("supplier",)})
    committee = default.query("governance.committee")
    assert [(m["name"], m["weight"]) for m in committee["members"]] == sorted(
        [("admin", 1), ("a2", 1)], key=lambda p: default.id(p[0]))
    assert committee["threshold"] == 2


# ---------------------------------------------------------------------------------------------
# Expiry


def test_expiry_is_marked_by_the_hook_with_an_event_without_any_vote(pki: Pki) -> None:
    chain = make_chain(pki, proposal_ttl_blocks=3)
    created = ok(propose(chain, "core", "suspend_member", account=chain.id("t1")))
    pid, made_at = created.result["proposal_id"], chain.height
    assert created.event("proposal_created")["expires_height"] == made_at + 2
    assert chain.advance(1000) == []  # made_at + 1: still open
    assert chain.query("governance.proposal", proposal_id=pid)["status"] == "open"
    events = chain.advance(1000)  # made_at + 2: its last block; the hook expires it
    assert events == [("proposal_expired", {
        "proposal_id": pid, "action": "suspend_member", "yes_weight": 1, "no_weight": 0,
        "threshold": 2, "height": made_at + 2})]
    assert chain.query("governance.proposal", proposal_id=pid)["status"] == "expired"
    assert chain.query("governance.proposals", status="open") == []
    assert chain.raw(f"governance/x/{made_at + 2:012d}/{pid}") is None  # index emptied
    unchanged(chain, lambda: vote(chain, "bank", pid), "PROPOSAL_EXPIRED")
    assert chain.query("consortium.member", account=chain.id("t1"))["suspended"] is False


def test_a_vote_in_the_last_open_block_still_counts(pki: Pki) -> None:
    chain = make_chain(pki, proposal_ttl_blocks=2)
    pid = ok(propose(chain, "core", "suspend_member", account=chain.id("t1"))).result[
        "proposal_id"]
    assert ok(vote(chain, "bank", pid)).result["status"] == "executed"
    assert chain.end_block_events == []  # decided proposals leave the expiry index


def test_the_expiry_hook_reads_only_due_keys(pki: Pki) -> None:
    """Many open proposals, none due: the hook reads one index key and writes nothing."""
    chain = make_chain(pki, proposal_ttl_blocks=50)
    txs = [chain.tx("core", "governance.propose", action="set_param",
                    params={"name": "block_txs_max", "value": 100 + i}) for i in range(30)]
    assert all(r.ok for r in chain.run_block(txs))
    reads: list[str] = []
    original = chain.state.iter_prefix

    def counting(prefix: str) -> Any:
        reads.append(prefix)
        return original(prefix)

    chain.state.iter_prefix = counting  # type: ignore[method-assign]
    assert chain.advance(1000) == []
    assert [p for p in reads if p.startswith("governance/")] == ["governance/x/"]


# ---------------------------------------------------------------------------------------------
# Refusals: each a FAILED receipt with its code, and no state key changes


def test_every_refusal_code_changes_nothing(pki: Pki) -> None:
    chain = make_chain(pki)
    pid = ok(propose(chain, "core", "suspend_member", account=chain.id("t1"))).result[
        "proposal_id"]
    t1 = chain.id("t1")
    cases = [
        ("NOT_COMMITTEE_MEMBER", lambda: propose(chain, "t1", "suspend_member", account=t1)),
        ("NOT_COMMITTEE_MEMBER", lambda: vote(chain, "admin", pid)),
        ("ALREADY_VOTED", lambda: vote(chain, "core", pid)),
        ("UNKNOWN_PROPOSAL", lambda: vote(chain, "bank", "ab" * 32)),
        ("UNKNOWN_ACTION", lambda: propose(chain, "core", "mint_money", amount=1)),
        ("INVALID_ARGS", lambda: propose(chain, "core", "suspend_member", account="nope")),
        ("INVALID_ARGS", lambda: chain.run("core", "governance.propose",
                                           action="suspend_member", params=[t1])),
        ("BAD_PARAM", lambda: propose(chain, "core", "set_param", name="gas", value=1)),
        ("BAD_PARAM", lambda: propose(chain, "core", "set_param", name="block_txs_max",
                                      value=0)),
        ("BAD_PARAM", lambda: propose(chain, "core", "set_param", name="block_bytes_max",
                                      value=BLOCK_BYTES_LIMIT + 1)),
        ("BAD_PARAM", lambda: propose(chain, "core", "set_threshold", threshold=4)),
        ("BAD_PARAM", lambda: propose(chain, "core", "remove_committee_member",
                                      account=t1)),
        ("BAD_PARAM", lambda: propose(chain, "core", "add_committee_member",
                                      account=chain.id("bank"), weight=1)),
        ("BAD_PARAM", lambda: propose(chain, "core", "add_validator",
                                      **{**_validator(pki, "node5"), "peer_addr": "nowhere"})),
        ("UNKNOWN_MEMBER", lambda: propose(chain, "core", "add_committee_member",
                                           account="cd" * 32, weight=1)),
        ("UNKNOWN_MEMBER", lambda: propose(chain, "core", "suspend_member",
                                           account="cd" * 32)),
        ("MEMBER_EXISTS", lambda: propose(chain, "core", "register_member", account=t1,
                                          name="again", roles=["supplier"])),
        ("NAME_TAKEN", lambda: propose(chain, "core", "register_member", account="cd" * 32,
                                       name="t1", roles=["supplier"])),
        ("UNKNOWN_VALIDATOR", lambda: propose(chain, "core", "remove_validator",
                                              node_id="node9")),
        ("TOO_FEW_VALIDATORS", lambda: propose(chain, "core", "remove_validator",
                                               node_id="node1")),
        ("VALIDATOR_EXISTS", lambda: propose(chain, "core", "add_validator",
                                             **_validator(pki, "node1"))),
        ("VALIDATOR_EXISTS", lambda: propose(chain, "core", "add_validator", **{
            **_validator(pki, "node5"), "public_key": _key("node2")})),
        ("BAD_CERTIFICATE", lambda: propose(chain, "core", "add_validator", **{
            **_validator(pki, "node5"), "tls_cert_pem": pki.other_ca_cert})),
        ("BAD_CERTIFICATE", lambda: propose(chain, "core", "add_validator", **{
            **_validator(pki, "node5"), "tls_cert_pem": pki.certs["node6"]})),
        ("BAD_CERTIFICATE", lambda: propose(chain, "core", "add_validator", **{
            **_validator(pki, "node5"), "tls_cert_pem": "-----BEGIN CERTIFICATE-----\nxx"})),
    ]
    for code, call in cases:
        unchanged(chain, call, code)
    ok(vote(chain, "bank", pid))
    unchanged(chain, lambda: vote(chain, "factor", pid), "PROPOSAL_DECIDED")
    for method in ("register", "suspend", "reinstate", "set_roles"):  # no longer tx methods
        unchanged(chain, lambda m=method: chain.run_block([chain.tx(
            "admin", f"consortium.{m}", account=t1)])[0], "UNKNOWN_METHOD")


def test_a_solo_chain_keeps_its_one_validator(pki: Pki) -> None:
    chain = make_chain(pki, consensus="solo", nodes=1)
    unchanged(chain, lambda: propose(chain, "core", "add_validator", **_validator(pki, "node5")),
              "VALIDATOR_SET_FIXED")
    unchanged(chain, lambda: propose(chain, "core", "remove_validator", node_id="node1"),
              "VALIDATOR_SET_FIXED")


def test_a_deciding_vote_whose_action_fails_is_refused_and_not_recorded(pki: Pki) -> None:
    """The state moved between proposal and decision: the vote fails with the action's code,
    the proposal stays open, the vote can be cast again once it can run."""
    chain = make_chain(pki)
    first = ok(propose(chain, "core", "add_validator", **_validator(pki, "node5"))).result
    second = ok(propose(chain, "bank", "add_validator", **{
        **_validator(pki, "node5"), "public_key": _key("node6")})).result
    ok(vote(chain, "factor", first["proposal_id"]))
    unchanged(chain, lambda: vote(chain, "factor", second["proposal_id"]), "VALIDATOR_EXISTS")
    record = chain.query("governance.proposal", proposal_id=second["proposal_id"])
    assert record["status"] == "open" and len(record["votes"]) == 1


# ---------------------------------------------------------------------------------------------
# Validators


def test_adding_and_removing_validators_sets_epoch_and_effective_height(pki: Pki) -> None:
    chain = make_chain(pki)
    genesis = chain.query("governance.validators")
    assert (genesis["epoch"], genesis["effective_height"]) == (0, 0)
    assert [v["node_id"] for v in genesis["validators"]] == ["node1", "node2", "node3", "node4"]
    assert genesis["previous"] == genesis["validators"]
    pid = ok(propose(chain, "core", "add_validator", **_validator(pki, "node5"))).result[
        "proposal_id"]
    receipt = ok(vote(chain, "bank", pid))
    executed_at = chain.height
    assert receipt.event("validator_set_changed") == {
        "epoch": 1, "effective_height": executed_at + VALIDATOR_CHANGE_DELAY_BLOCKS,
        "validators": ["node1", "node2", "node3", "node4", "node5"]}
    record = chain.raw("governance/validators")
    assert record == chain.query("governance.validators")
    assert record["effective_height"] == executed_at + 4 and record["epoch"] == 1
    assert record["previous"] == genesis["validators"]
    assert record["validators"][-1] == _validator(pki, "node5")
    # One change at a time: it may be proposed now, but the deciding vote is refused (and not
    # recorded) until the first change takes effect; then the same vote executes it.
    pid = ok(propose(chain, "core", "remove_validator", node_id="node1")).result["proposal_id"]
    for _ in range(VALIDATOR_CHANGE_DELAY_BLOCKS - 2):
        unchanged(chain, lambda: vote(chain, "bank", pid), "VALIDATOR_CHANGE_PENDING")
    assert chain.height == executed_at + 3
    receipt = ok(vote(chain, "bank", pid))
    assert receipt.event("validator_set_changed") == {
        "epoch": 2, "effective_height": executed_at + 4 + 4,
        "validators": ["node2", "node3", "node4", "node5"]}
    record = chain.query("governance.validators")
    assert [v["node_id"] for v in record["previous"]] == [
        "node1", "node2", "node3", "node4", "node5"]


def test_pbft_keeps_four_raft_keeps_one(pki: Pki) -> None:
    pbft = make_chain(pki, nodes=5)
    ok(pbft.govern("remove_validator", node_id="node5"))
    pbft.advance(1000)
    pbft.advance(1000)
    pbft.advance(1000)
    unchanged(pbft, lambda: pbft.govern("remove_validator", node_id="node4"),
              "TOO_FEW_VALIDATORS")
    raft = make_chain(pki, consensus="raft", nodes=2)
    ok(raft.govern("remove_validator", node_id="node1"))
    for _ in range(3):
        raft.advance(1000)
    unchanged(raft, lambda: raft.govern("remove_validator", node_id="node2"),
              "TOO_FEW_VALIDATORS")
    assert [v["node_id"] for v in raft.query("governance.validators")["validators"]] == ["node2"]


def test_a_certificate_expired_at_block_time_is_refused(pki: Pki) -> None:
    chain = make_chain(pki)
    chain.time_ms = int(time.time() * 1000) + 3651 * 86_400_000  # past the 10-year validity
    unchanged(chain, lambda: propose(chain, "core", "add_validator", **_validator(pki, "node5")),
              "BAD_CERTIFICATE")


# ---------------------------------------------------------------------------------------------
# Params and the committee


def test_params_change(pki: Pki) -> None:
    chain = make_chain(pki)
    assert chain.query("governance.params") == {
        "block_txs_max": 2000, "block_bytes_max": 4_000_000, "empty_block_interval_ms": 1000}
    receipt = ok(chain.govern("set_param", name="empty_block_interval_ms", value=0))
    assert receipt.event("params_changed")["params"]["empty_block_interval_ms"] == 0
    first = chain.height
    ok(chain.govern("set_param", name="block_bytes_max", value=BLOCK_BYTES_LIMIT))
    # Each change takes effect 4 blocks after its block; the values before stay on record
    # while a later block may still need them.
    assert chain.raw("governance/params") == {
        "block_txs_max": 2000, "block_bytes_max": BLOCK_BYTES_LIMIT,
        "empty_block_interval_ms": 0, "effective_height": chain.height + 4,
        "earlier": [
            {"from_height": 0, "block_txs_max": 2000, "block_bytes_max": 4_000_000,
             "empty_block_interval_ms": 1000},
            {"from_height": first + 4, "block_txs_max": 2000, "block_bytes_max": 4_000_000,
             "empty_block_interval_ms": 0},
        ]}


def test_committee_changes_apply_to_later_proposals(pki: Pki) -> None:
    chain = make_chain(pki)
    # An open proposal keeps the committee it was made under.
    open_pid = ok(propose(chain, "core", "suspend_member", account=chain.id("t1"))).result[
        "proposal_id"]
    receipt = ok(chain.govern("add_committee_member", account=chain.id("admin"), weight=2))
    assert receipt.event("committee_changed")["total_weight"] == 5
    unchanged(chain, lambda: vote(chain, "admin", open_pid), "NOT_COMMITTEE_MEMBER")
    ok(chain.govern("set_threshold", threshold=4))
    ok(chain.govern("set_weight", account=chain.id("core"), weight=3))
    committee = chain.query("governance.committee")
    assert committee["threshold"] == 4 and committee["total_weight"] == 7
    assert {m["name"]: m["weight"] for m in committee["members"]} == {
        "core": 3, "bank": 1, "factor": 1, "admin": 2}
    # Now core (3) + bank (1) carry a proposal; core + admin too; bank + factor + admin do not.
    pid = ok(propose(chain, "bank", "set_param", name="block_txs_max", value=10)).result[
        "proposal_id"]
    assert ok(vote(chain, "core", pid)).result["status"] == "executed"
    # Removing a member that would leave the threshold out of reach is refused.
    ok(chain.govern("set_threshold", threshold=7))
    unchanged(chain, lambda: chain.govern("remove_committee_member", account=chain.id("bank")),
              "BAD_PARAM")
    ok(chain.govern("set_threshold", threshold=5))
    ok(chain.govern("remove_committee_member", account=chain.id("bank")))
    unchanged(chain, lambda: propose(chain, "bank", "set_threshold", threshold=1),
              "NOT_COMMITTEE_MEMBER")
    # The proposal made under the old committee: bank is off the committee now.
    unchanged(chain, lambda: vote(chain, "bank", open_pid), "NOT_COMMITTEE_MEMBER")
    assert ok(vote(chain, "factor", open_pid)).result["status"] == "executed"


def test_views_list_proposals_with_votes_and_status(pki: Pki) -> None:
    chain = make_chain(pki)
    ids = [ok(propose(chain, "core", "set_param", name="block_txs_max", value=v)).result[
        "proposal_id"] for v in (10, 20, 30)]
    ok(vote(chain, "bank", ids[1]))
    listed = chain.query("governance.proposals")
    assert [p["proposal_id"] for p in listed] == ids
    assert [p["status"] for p in listed] == ["open", "executed", "open"]
    assert [p["proposal_id"] for p in chain.query("governance.proposals", status="open")] == [
        ids[0], ids[2]]
    assert [p["seq"] for p in chain.query("governance.proposals", after=0, limit=1)] == [1]
    assert listed[1]["votes"][1]["account"] == chain.id("bank")
    with pytest.raises(Exception, match="UNKNOWN_PROPOSAL"):
        chain.query("governance.proposal", proposal_id="ef" * 32)
    assert chain.query("governance.config")["consensus"] == "pbft"


# ---------------------------------------------------------------------------------------------
# Determinism, genesis, constants


def test_two_chains_given_the_same_blocks_reach_the_same_app_hash(pki: Pki) -> None:
    start = int(time.time() * 1000)
    chains = [make_chain(pki, proposal_ttl_blocks=3) for _ in range(2)]
    for chain in chains:
        chain.time_ms = start
    for chain in chains:
        pid = ok(propose(chain, "core", "add_validator", **_validator(pki, "node5"))).result[
            "proposal_id"]
        ok(vote(chain, "factor", pid))
        ok(propose(chain, "bank", "suspend_member", account=chain.id("t1")))
        for _ in range(3):
            chain.advance(1000)
        ok(chain.govern("set_param", name="block_txs_max", value=7))
    assert chains[0].app_hash == chains[1].app_hash
    assert chains[0].state.items == chains[1].state.items


def test_the_contract_repeats_the_node_block_bytes_limit() -> None:
    assert CONTRACT_BYTES_LIMIT == BLOCK_BYTES_LIMIT


def _genesis_doc(**extra: Any) -> dict[str, Any]:
    accounts = {n: Account.from_seed(n.encode()).account_id for n in MEMBERS}
    return {
        "chain_id": "g", "genesis_time_ms": 1,
        "consensus": {"engine": "raft", "params": {"empty_block_interval_ms": 500}},
        "validators": [{"id": "node1", "public_key": _key("node1"),
                        "peer_addr": "127.0.0.1:1"}],
        "members": [{"name": n, "account": accounts[n], "roles": list(r)}
                    for n, r in MEMBERS.items()],
        "block": {"txs_max": 100},
        **extra,
    }


def _governance_state(doc: dict[str, Any]) -> dict[str, Any]:
    writes, _ = parse_genesis(json.dumps(doc).encode()).state_writes()
    return {k[len("governance/"):]: json.loads(v) for k, v in writes.items()
            if k.startswith("governance/") and v is not None}


def test_genesis_seeds_committee_ca_validators_params(pki: Pki) -> None:
    doc = _genesis_doc(
        committee={"members": [{"name": "core", "weight": 1}, {"name": "bank", "weight": 2}],
                   "threshold": 3, "proposal_ttl_blocks": 40},
        ca_cert_pem=pki.ca_pem)
    doc["validators"][0]["tls_cert_pem"] = pki.certs["node1"]
    state = _governance_state(doc)
    core, bank = (Account.from_seed(n.encode()).account_id for n in ("core", "bank"))
    assert state["committee"] == {"members": sorted(
        [{"account": core, "weight": 1}, {"account": bank, "weight": 2}],
        key=lambda m: m["account"]), "threshold": 3}
    assert state["config"] == {"consensus": "raft", "ca_cert_pem": pki.ca_pem,
                               "proposal_ttl_blocks": 40}
    assert state["params"] == {"block_txs_max": 100, "block_bytes_max": 4_000_000,
                               "empty_block_interval_ms": 500}
    assert state["validators"]["validators"] == [{
        "node_id": "node1", "public_key": _key("node1"), "tls_cert_pem": pki.certs["node1"],
        "peer_addr": "127.0.0.1:1"}]
    # An older genesis, without a committee: the admins, weight 1, threshold 1.
    old = _governance_state(_genesis_doc())
    admin = Account.from_seed(b"admin").account_id
    assert old["committee"] == {"members": [{"account": admin, "weight": 1}], "threshold": 1}
    assert old["config"]["ca_cert_pem"] == ""


@pytest.mark.parametrize("committee, problem", [
    ({"members": [{"name": "nobody", "weight": 1}]}, "not a member"),
    ({"members": []}, "at least one"),
    ({"members": [{"name": "core", "weight": 1}], "threshold": 2}, "threshold"),
    ({"members": [{"name": "core", "weight": 0}]}, "weight"),
])
def test_genesis_refuses_a_bad_committee(committee: dict[str, Any], problem: str) -> None:
    from node.config import ConfigError

    with pytest.raises(ConfigError, match=problem):
        _governance_state(_genesis_doc(committee=committee))


def test_the_sample_network_genesis_names_core_bank_factor_and_the_ca(tmp_path: Path) -> None:
    from node.ops.localnet import write_network
    from node.ops.sample_consortium import sample_member_specs

    net = write_network(str(tmp_path), nodes=4, consensus="pbft", members=sample_member_specs())
    doc = json.loads(Path(net.genesis_path).read_text())
    assert doc["committee"] == {"members": [{"name": "core", "weight": 1},
                                            {"name": "bank", "weight": 1},
                                            {"name": "factor", "weight": 1}]}
    assert doc["ca_cert_pem"] == Path(tmp_path, "ca", "ca.crt").read_text()
    state = _governance_state(doc)
    assert state["committee"]["threshold"] == 2
    assert all(v["tls_cert_pem"] for v in state["validators"]["validators"])
    assert os.path.exists(os.path.join(tmp_path, "nodes", "node1", "tls.crt"))
