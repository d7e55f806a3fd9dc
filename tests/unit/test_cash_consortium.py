"""Cash and consortium rules, run through the real executor on an in-memory chain.

Checks balances never go negative, the supply invariant, roles and suspension.
"""

from __future__ import annotations

from tests.harness import LocalChain


def make_chain() -> LocalChain:
    return LocalChain(
        members={
            "admin": ("admin",),
            "bank": ("financier",),
            "alice": ("supplier",),
            "bob": ("supplier",),
            "auditor": ("auditor",),
        },
        balances={"alice": 1_000},
    )


def test_transfer_moves_cash_and_keeps_supply() -> None:
    chain = make_chain()
    receipt = chain.run("alice", "cash.transfer", to=chain.id("bob"), amount=400)
    assert receipt.ok, receipt.message
    assert receipt.event("Transferred")["amount"] == 400
    assert chain.balance("alice") == 600 and chain.balance("bob") == 400
    assert chain.query("cash.supply") == {"deposits": 1000, "withdrawals": 0, "outstanding": 1000}


def test_transfer_beyond_balance_fails_with_insufficient_funds_and_changes_nothing() -> None:
    chain = make_chain()
    before = dict(chain.state.items)
    receipt = chain.run("alice", "cash.transfer", to=chain.id("bob"), amount=1_001)
    assert not receipt.ok and receipt.code == "INSUFFICIENT_FUNDS"
    assert chain.state.items == before


def test_only_financiers_deposit_and_withdraw() -> None:
    chain = make_chain()
    assert chain.run("alice", "cash.deposit", account=chain.id("bob"), amount=5).code == (
        "NOT_AUTHORIZED"
    )
    assert chain.run("bank", "cash.deposit", account=chain.id("bob"), amount=5).ok
    assert chain.run("bank", "cash.withdraw", account=chain.id("bob"), amount=6).code == (
        "INSUFFICIENT_FUNDS"
    )
    assert chain.run("bank", "cash.withdraw", account=chain.id("bob"), amount=5).ok
    assert chain.query("cash.supply")["outstanding"] == 1000


def test_bad_amounts_are_invalid_args() -> None:
    chain = make_chain()
    for amount in (0, -1, 1.5, "10", True, 10**30):
        receipt = chain.run("alice", "cash.transfer", to=chain.id("bob"), amount=amount)
        assert receipt.code == "INVALID_ARGS", (amount, receipt)


def test_stranger_and_suspended_member_can_do_nothing() -> None:
    chain = make_chain()
    chain.add_account("mallory")
    receipt = chain.run("mallory", "cash.transfer", to=chain.id("bob"), amount=1)
    assert receipt.code == "UNKNOWN_MEMBER"
    assert chain.govern("suspend_member", account=chain.id("alice")).ok
    receipt = chain.run("alice", "cash.transfer", to=chain.id("bob"), amount=1)
    assert receipt.code == "MEMBER_SUSPENDED"
    assert chain.govern("reinstate_member", account=chain.id("alice")).ok
    assert chain.run("alice", "cash.transfer", to=chain.id("bob"), amount=1).ok


def test_the_committee_registers_members_and_cannot_remove_last_admin() -> None:
    chain = make_chain()  # no committee in genesis: the admin alone is the committee
    carol = chain.add_account("carol")
    assert chain.govern("register_member", proposer="alice", account=carol, name="carol",
                        roles=["supplier"]).code == "NOT_COMMITTEE_MEMBER"
    receipt = chain.govern("register_member", account=carol, name="carol", roles=["supplier"])
    assert receipt.ok and receipt.event("MemberRegistered")["name"] == "carol"
    assert chain.govern("register_member", account=carol, name="carol2",
                        roles=["supplier"]).code == "MEMBER_EXISTS"
    assert chain.govern("suspend_member", account=chain.id("admin")).code == "LAST_ADMIN"
    assert chain.govern("set_roles", account=carol, roles=["pirate"]).code == "INVALID_ARGS"
    assert chain.query("consortium.member", account=carol)["roles"] == ["supplier"]


def test_membership_methods_are_not_tx_methods_any_more() -> None:
    """register, set_roles, suspend and reinstate are internal: even an admin's tx cannot
    reach them (the committee decides), and another contract's call is refused too."""
    chain = make_chain()
    carol = chain.add_account("carol")
    tx = chain.tx("admin", "consortium.register", account=carol, name="carol",
                  roles=["supplier"])
    assert chain.run_block([tx])[0].code == "UNKNOWN_METHOD"
    for method in ("suspend", "reinstate"):
        tx = chain.tx("admin", f"consortium.{method}", account=chain.id("alice"))
        assert chain.run_block([tx])[0].code == "UNKNOWN_METHOD"


def test_unknown_contract_method_and_bad_json_fail_with_stable_codes() -> None:
    chain = make_chain()
    assert chain.run("alice", "nothing.here").code == "UNKNOWN_CONTRACT"
    assert chain.run("alice", "cash.steal").code == "UNKNOWN_METHOD"
    assert chain.run("alice", "cash.move", **{"from": chain.id("bob"), "to": chain.id("alice"),
                                             "amount": 1}).code == "UNKNOWN_METHOD"


def test_same_tx_twice_executes_once() -> None:
    chain = make_chain()
    tx = chain.tx("alice", "cash.transfer", to=chain.id("bob"), amount=10)
    first, second = chain.run_block([tx, tx])
    assert first.ok and second.code == "DUPLICATE_TX"
    assert chain.run_block([tx])[0].code == "DUPLICATE_TX"
    assert chain.balance("bob") == 10
