"""`scfchain gov propose|vote|list` without a cluster: argument parsing, the governance params
built from names, the signed tx, and what is printed.

The cluster directory is written by hand (member keys, one node's signing key and a certificate
from a CA made here, cluster.json); `submit_tx` and `query_view` are replaced by fakes that keep
the tx and answer with the receipt or view the test chooses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from node.client.identity import Account
from node.client.ledger import ReceiptView
from node.ops import cli_gov
from node.ops.cli import main
from node.ops.cli_client import ClientCommandError
from node.ops.launcher import Cluster, ClusterAccount, ClusterError, ClusterNode, load_cluster
from node.tls import issue_node_cert, make_ca
from proto import types_pb2

MEMBERS = ("core", "bank", "factor", "tier1a")
PID = "7a" * 32  # a proposal id as the contract derives one


@pytest.fixture
def net(tmp_path: Any) -> str:
    """A cluster directory with four members and one node (key, CA certificate, address)."""
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "keys"))
    accounts = []
    for name in MEMBERS:
        path = os.path.join(root, "keys", f"{name}.pem")
        account = Account.generate()
        account.save(path)
        accounts.append(ClusterAccount(name, "financier", account.account_id, path))
    node_dir = os.path.join(root, "nodes", "node5")
    os.makedirs(node_dir)
    Account.generate().save(os.path.join(node_dir, "node_key.pem"))
    issue_node_cert(make_ca(os.path.join(root, "ca")), "node5", node_dir)
    node = ClusterNode("node5", "127.0.0.1:7009", "127.0.0.1:7010", None,
                       os.path.join(node_dir, "data"), os.path.join(node_dir, "node.log"),
                       os.path.join(node_dir, "config.toml"))
    Cluster(root, "gov-test", "raft", [node], accounts).save()
    return root


class FakeChain:
    """Stands in for the nodes: keeps every submitted tx, answers with the next receipt."""

    def __init__(self) -> None:
        self.txs: list[types_pb2.SignedTx] = []
        self.result: Any = {"proposal_id": PID, "status": "open"}
        self.failure: tuple[str, str] | None = None
        self.events: list[dict[str, Any]] = []
        self.views: dict[str, Any] = {}
        self.view_calls: list[tuple[str, str, dict[str, Any]]] = []

    async def submit_tx(self, cluster: Cluster, tx: types_pb2.SignedTx, node_id: str | None,
                        *, reader: Account | None = None
                        ) -> tuple[ReceiptView, list[str] | None]:
        assert reader is not None and reader.public_key == types_pb2.TxBody.FromString(
            tx.body).sender, "the signer reads its own receipt"
        self.txs.append(tx)
        code, message = self.failure or ("", "")
        receipt = ReceiptView(tx_id="ab" * 32, ok=self.failure is None, error_code=code,
                              message=message, height=12,
                              result=None if self.failure else self.result,
                              events=self.events)
        return receipt, None

    async def query_view(self, cluster: Cluster, contract: str, view: str,
                         call_args: dict[str, Any], node_id: str | None = None) -> Any:
        self.view_calls.append((contract, view, call_args))
        return self.views[view]

    def body(self, index: int = -1) -> tuple[types_pb2.TxBody, dict[str, Any]]:
        body = types_pb2.TxBody.FromString(self.txs[index].body)
        return body, json.loads(body.args)


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeChain]:
    fake = FakeChain()
    monkeypatch.setattr(cli_gov, "submit_tx", fake.submit_tx)
    monkeypatch.setattr(cli_gov, "query_view", fake.query_view)
    yield fake


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def account_of(root: str, name: str) -> str:
    return load_cluster(root).account_id(name)


# --- propose -------------------------------------------------------------------------------


def test_propose_register_signs_a_governance_propose_and_prints_id_and_status(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "gov", "propose", "register", "--name", "bank2", "--roles",
                         "financier", "--as", "core", "--dir", net, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["proposal_id"], doc["status"], doc["action"]) == (PID, "open", "register_member")
    body, args = chain.body()
    assert (body.contract, body.method) == ("governance", "propose")
    assert body.sender.hex() == account_of(net, "core")
    new_key = os.path.join(net, "keys", "bank2.pem")
    assert args == {"action": "register_member", "params": {
        "account": Account.load(new_key).account_id, "name": "bank2", "roles": ["financier"]}}
    # cluster.json names the new member, so `--as bank2` works once the proposal executes.
    assert account_of(net, "bank2") == args["params"]["account"]
    assert doc["member"]["key_file"] == new_key


def test_register_with_an_account_writes_no_key_and_a_known_name_is_refused(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    hex_id = "cd" * 32
    code, _, err = run(capsys, "gov", "propose", "register", "--name", "ext", "--account",
                       hex_id, "--roles", "supplier,dealer", "--as", "core", "--dir", net)
    assert code == 0, err
    assert chain.body()[1]["params"] == {"account": hex_id, "name": "ext",
                                         "roles": ["supplier", "dealer"]}
    assert not os.path.exists(os.path.join(net, "keys", "ext.pem"))
    code, _, err = run(capsys, "gov", "propose", "register", "--name", "bank", "--roles",
                       "financier", "--as", "core", "--dir", net)
    assert code == 1 and "already a member" in err
    assert len(chain.txs) == 1


def test_a_retried_register_keeps_the_key_of_the_first_attempt(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    chain.failure = ("NOT_COMMITTEE_MEMBER", "tier1a is not on the committee")
    code, out, err = run(capsys, "gov", "propose", "register", "--name", "bank3", "--roles",
                         "financier", "--as", "tier1a", "--dir", net, "--json")
    assert code == 1
    assert json.loads(out) | {"tx_id": ""} == {
        "status": "FAILED", "error_code": "NOT_COMMITTEE_MEMBER",
        "message": "tier1a is not on the committee", "tx_id": "", "height": 12,
        "action": "register_member"}
    assert "NOT_COMMITTEE_MEMBER" in err and "tier1a is not on the committee" in err
    first = chain.body()[1]["params"]["account"]
    with pytest.raises(ClusterError):  # a failed proposal does not name the member
        account_of(net, "bank3")
    chain.failure = None
    assert run(capsys, "gov", "propose", "register", "--name", "bank3", "--roles", "financier",
               "--as", "core", "--dir", net)[0] == 0
    assert chain.body()[1]["params"]["account"] == first == account_of(net, "bank3")


def test_add_validator_takes_key_certificate_and_address_from_the_node_directory(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "gov", "propose", "add-validator", "--node", "node5", "--as",
                       "bank", "--dir", net)
    assert code == 0, err
    _, args = chain.body()
    params = args["params"]
    node_dir = os.path.join(net, "nodes", "node5")
    assert args["action"] == "add_validator"
    assert params["node_id"] == "node5" and params["peer_addr"] == "127.0.0.1:7010"
    assert params["public_key"] == Account.load(
        os.path.join(node_dir, "node_key.pem")).public_key.hex()
    cert = x509.load_pem_x509_certificate(params["tls_cert_pem"].encode())
    assert cert.subject.rfc4514_string() == "CN=node5"
    code, _, err = run(capsys, "gov", "propose", "add-validator", "--node", "node9", "--as",
                       "bank", "--dir", net)
    assert code == 1 and "no node 'node9'" in err


@pytest.mark.parametrize(("argv", "action", "params"), [
    (["remove-validator", "--node", "node2"], "remove_validator", {"node_id": "node2"}),
    (["suspend", "--member", "tier1a"], "suspend_member", {"account": "@tier1a"}),
    (["reinstate", "--member", "tier1a"], "reinstate_member", {"account": "@tier1a"}),
    (["set-roles", "--member", "tier1a", "--roles", "supplier, dealer"], "set_roles",
     {"account": "@tier1a", "roles": ["supplier", "dealer"]}),
    (["set-threshold", "--threshold", "3"], "set_threshold", {"threshold": 3}),
    (["set-weight", "--member", "bank", "--weight", "2"], "set_weight",
     {"account": "@bank", "weight": 2}),
    (["add-committee-member", "--member", "tier1a", "--weight", "1"], "add_committee_member",
     {"account": "@tier1a", "weight": 1}),
    (["remove-committee-member", "--member", "factor"], "remove_committee_member",
     {"account": "@factor"}),
    (["set-param", "--name", "block_txs_max", "--value", "500"], "set_param",
     {"name": "block_txs_max", "value": 500}),
    (["suspend", "--member", "ef" * 32], "suspend_member", {"account": "ef" * 32}),
])
def test_each_action_builds_the_spec_params(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str],
    argv: list[str], action: str, params: dict[str, Any],
) -> None:
    code, _, err = run(capsys, "gov", "propose", *argv, "--as", "core", "--dir", net)
    assert code == 0, err
    expected = {k: account_of(net, v[1:]) if isinstance(v, str) and v.startswith("@") else v
                for k, v in params.items()}
    assert chain.body()[1] == {"action": action, "params": expected}


def test_bad_options_are_refused_before_anything_is_sent(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):  # argparse: not one of the three chain params
        main(["gov", "propose", "set-param", "--name", "gas", "--value", "1", "--as", "core",
              "--dir", net])
    with pytest.raises(SystemExit):  # the threshold is an integer
        main(["gov", "propose", "set-threshold", "--threshold", "two", "--as", "core",
              "--dir", net])
    code, _, err = run(capsys, "gov", "propose", "suspend", "--member", "nobody", "--as",
                       "core", "--dir", net)
    assert code == 1 and "no member 'nobody'" in err
    code, _, err = run(capsys, "gov", "propose", "set-roles", "--member", "bank", "--roles",
                       " , ", "--as", "core", "--dir", net)
    assert code == 1 and "--roles" in err
    code, _, err = run(capsys, "gov", "propose", "register", "--name", "x", "--account", "XYZ",
                       "--roles", "dealer", "--as", "core", "--dir", net)
    assert code == 1 and "64-hex" in err
    assert chain.txs == []


def test_readable_output_names_status_and_the_vote_command(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    chain.events = [{"contract": "governance", "name": "proposal_created", "proposal_id": PID,
                     "params": {"node_id": "node5", "tls_cert_pem": "-----BEGIN",
                                "public_key": "aa" * 32}}]
    code, out, _ = run(capsys, "gov", "propose", "suspend", "--member", "tier1a", "--as",
                       "core", "--dir", net)
    assert code == 0
    assert "event: governance.proposal_created" in out and "params=node_id=node5" in out
    assert "BEGIN" not in out and "aa" * 32 not in out
    assert f"proposal {PID} is open" in out
    assert f"scfchain gov vote {PID} --as NAME --dir {net}" in out
    chain.failure = ("PROPOSAL_DECIDED", "proposal 7a7a is executed")
    code, out, _ = run(capsys, "gov", "propose", "suspend", "--member", "tier1a", "--as",
                       "core", "--dir", net)
    assert code == 1 and "FAILED PROPOSAL_DECIDED: proposal 7a7a is executed" in out


# --- vote ----------------------------------------------------------------------------------


def test_vote_sends_approve_and_prints_the_new_status(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    chain.result = {"proposal_id": PID, "status": "executed"}
    code, out, err = run(capsys, "gov", "vote", PID, "--as", "bank", "--dir", net, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["proposal_id"], doc["status"], doc["approve"]) == (PID, "executed", True)
    body, args = chain.body()
    assert (body.method, args) == ("vote", {"proposal_id": PID, "approve": True})
    assert body.sender.hex() == account_of(net, "bank")

    chain.result = {"proposal_id": PID, "status": "open"}
    assert run(capsys, "gov", "vote", PID.upper(), "--no", "--as", "factor", "--dir", net)[0] == 0
    assert chain.body()[1] == {"proposal_id": PID, "approve": False}

    chain.failure = ("ALREADY_VOTED", "the caller already voted on 7a7a")
    code, out, err = run(capsys, "gov", "vote", PID, "--as", "bank", "--dir", net, "--json")
    assert code == 1 and json.loads(out)["error_code"] == "ALREADY_VOTED"
    assert "ALREADY_VOTED: the caller already voted on 7a7a" in err


def test_a_unique_prefix_of_a_proposal_id_is_enough(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "7b" + "00" * 31
    chain.views["proposals"] = [{"proposal_id": PID}, {"proposal_id": other}]
    assert run(capsys, "gov", "vote", "7a7a", "--as", "bank", "--dir", net)[0] == 0
    assert chain.body()[1]["proposal_id"] == PID
    code, _, err = run(capsys, "gov", "vote", "7", "--as", "bank", "--dir", net)
    assert code == 1 and "2 proposals start with '7'" in err
    code, _, err = run(capsys, "gov", "vote", "99", "--as", "bank", "--dir", net)
    assert code == 1 and "no proposal start" in err
    code, _, err = run(capsys, "gov", "vote", "xyz", "--as", "bank", "--dir", net)
    assert code == 1 and "must be hex" in err
    assert len(chain.txs) == 1


# --- list ----------------------------------------------------------------------------------


def test_list_prints_the_view_as_json_and_a_table_with_names(
    net: str, chain: FakeChain, capsys: pytest.CaptureFixture[str]
) -> None:
    core, bank, tier1a = (account_of(net, name) for name in ("core", "bank", "tier1a"))
    chain.views["proposals"] = [
        {"proposal_id": PID, "action": "suspend_member", "params": {"account": tier1a},
         "proposer": core, "votes": [{"account": core, "approve": True, "weight": 1},
                                     {"account": bank, "approve": False, "weight": 1}],
         "yes_weight": 1, "no_weight": 1, "status": "open", "created_height": 4},
        {"proposal_id": "8c" * 32, "action": "add_validator",
         "params": {"node_id": "node5", "public_key": "aa" * 32, "tls_cert_pem": "-----BEGIN",
                    "peer_addr": "127.0.0.1:7010"},
         "proposer": bank, "votes": [{"account": bank, "approve": True}], "status": "executed"},
    ]
    chain.views["committee"] = {"members": [{"account": core, "weight": 1, "name": "core"},
                                            {"account": bank, "weight": 1, "name": None}],
                                "threshold": 2, "total_weight": 2}
    code, out, err = run(capsys, "gov", "list", "--dir", net, "--json")
    assert code == 0, err
    assert json.loads(out) == chain.views["proposals"]
    code, out, err = run(capsys, "gov", "list", "--dir", net, "--status", "open")
    assert code == 0, err
    assert chain.view_calls[-2] == ("governance", "proposals", {"status": "open"})
    assert "suspend_member" in out and "account=tier1a" in out and "add_validator" in out
    assert PID[:16] in out and PID not in out  # a prefix, which `gov vote` takes
    assert "core (1)" in out and "bank (1)" in out
    assert "BEGIN" not in out and "aa" * 32 not in out  # no certificates or keys in the table
    assert "committee: core 1, bank 1 · threshold 2" in out


def test_votes_are_read_from_either_shape() -> None:
    assert cli_gov.votes_of({"votes": {"a": True, "b": False}}) == (["a"], ["b"])
    assert cli_gov.votes_of({"votes": [{"account": "a", "approve": False}]}) == ([], ["a"])
    assert cli_gov.votes_of({}) == ([], [])


def test_an_unknown_action_name_is_a_client_error(net: str) -> None:
    args = type("Args", (), {"action": "promote"})()
    with pytest.raises(ClientCommandError):
        cli_gov.action_params(load_cluster(net), args)  # type: ignore[arg-type]
