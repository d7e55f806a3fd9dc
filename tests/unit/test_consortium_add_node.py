"""`scfchain consortium add-node` (a node for a running consortium: its directory, and the
proposals that admit it, genesis unchanged) and the client tools reading an organisation's
bundle as `--dir` (node/ops/cluster_dir.load_bundle; `gov propose from-file`)."""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

import pytest

from contracts.governance_actions import check_certificate
from node.client.identity import Account
from node.config import load_config
from node.genesis import load_genesis
from node.ops.cli_client import ClientCommandError
from node.ops.cli_gov import proposal_from_file
from node.ops.cluster_dir import ClusterError, load_cluster
from node.ops.consortium import ConsortiumError, parse_consortium
from node.ops.consortium_bundles import write_bundles
from node.ops.consortium_join import add_node
from node.ops.consortium_pki import make_csr

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "examples", "consortium.toml")


def _text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _json(path: str) -> Any:
    return json.loads(_text(path))


def sample_doc() -> dict[str, Any]:
    with open(SAMPLE, "rb") as handle:
        return tomllib.load(handle)


def with_node5(doc: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The sample with node5 under the `auditor` organisation (which had no node)."""
    auditor = next(org for org in doc["orgs"] if org["name"] == "auditor")
    auditor["nodes"] = [{"id": "node5", "host": "10.20.0.15", "client_port": 7001,
                         "peer_port": 7002, "metrics_port": 9101, **extra}]
    return doc


@pytest.fixture
def bundles(tmp_path) -> str:
    out = str(tmp_path / "bundles")
    write_bundles(parse_consortium(sample_doc(), str(tmp_path)), out)
    return out


def test_add_node_writes_the_node_and_its_proposal_with_genesis_unchanged(bundles) -> None:
    genesis_before = _text(os.path.join(bundles, "core", "genesis.json"))
    spec = parse_consortium(with_node5(sample_doc()), os.path.dirname(bundles))
    added = add_node(spec, bundles, "node5")
    assert (added.node_id, added.org) == ("node5", "auditor")
    assert added.node_dir == os.path.join(bundles, "auditor", "nodes", "node5")
    # The same genesis as every other node: node5 starts outside the validator set.
    assert _text(os.path.join(added.node_dir, "genesis.json")) == genesis_before
    genesis = load_genesis(os.path.join(added.node_dir, "genesis.json"))
    assert "node5" not in [v.node_id for v in genesis.validators]
    config = load_config(os.path.join(added.node_dir, "config.toml"))
    assert config.node_id == "node5" and config.tls is not None
    # The proposal: the contract's own certificate check accepts it against genesis's CA.
    assert [os.path.basename(p) for p in added.proposals] == ["add_validator-node5.json"]
    proposal = _json(added.proposals[0])
    params = proposal["params"]
    assert proposal["action"] == "add_validator"
    assert params["peer_addr"] == "10.20.0.15:7002"
    signer = Account.load(os.path.join(added.node_dir, "node_key.pem"))
    assert params["public_key"] == signer.public_key.hex()
    check_certificate(params["tls_cert_pem"], genesis.ca_cert_pem, "node5",
                      genesis.time_ms + 1)  # raises unless the chain would accept it
    # The organisation's bundle now lists its node; peers.json lists all five.
    bundle = _json(os.path.join(bundles, "auditor", "bundle.json"))
    assert [n["id"] for n in bundle["nodes"]] == ["node5"]
    peers = _json(os.path.join(bundles, "auditor", "peers.json"))
    assert [n["id"] for n in peers["nodes"]] == ["node1", "node2", "node3", "node4", "node5"]


def test_a_node_whose_org_keeps_its_keys_gets_no_private_key(bundles, tmp_path) -> None:
    own = str(tmp_path / "own")
    os.makedirs(own)
    make_csr("node5", ["10.20.0.15"], os.path.join(own, "tls.key"),
             os.path.join(own, "tls.csr"), org="auditor")
    key = Account.generate()
    doc = with_node5(sample_doc(), public_key=key.public_key.hex(),
                     tls_csr=os.path.join(own, "tls.csr"))
    added = add_node(parse_consortium(doc, str(tmp_path)), bundles, "node5")
    assert sorted(os.listdir(added.node_dir)) == ["ca.crt", "config.toml", "genesis.json",
                                                  "tls.crt"]
    params = _json(added.proposals[0])["params"]
    assert params["public_key"] == key.public_key.hex()


def test_new_members_of_the_org_get_keys_and_a_register_proposal(bundles) -> None:
    doc = with_node5(sample_doc())
    auditor = next(org for org in doc["orgs"] if org["name"] == "auditor")
    auditor["members"].append({"name": "auditor2", "roles": ["auditor"]})
    added = add_node(parse_consortium(doc, os.path.dirname(bundles)), bundles, "node5")
    names = [os.path.basename(p) for p in added.proposals]
    assert names == ["register_member-auditor2.json", "add_validator-node5.json"]
    register = _json(added.proposals[0])
    key = Account.load(os.path.join(bundles, "auditor", "keys", "auditor2.pem"))
    assert register == {"action": "register_member", "params": {
        "account": key.account_id, "name": "auditor2", "roles": ["auditor"]}}
    # The bundle, read by the client tools, knows the new member's key.
    cluster = load_cluster(os.path.join(bundles, "auditor"))
    assert cluster.account("auditor2").account_id == key.account_id


@pytest.mark.parametrize(("node_id", "change", "message"), [
    ("node9", None, "consortium.toml has no node 'node9'"),
    ("node1", None, "'node1' is a validator in genesis"),
    ("node5", "chain", "consortium.toml is for chain 'other-chain'"),
    ("node5", "no-ca", "no CA in"),
    ("node5", "twice", "exists; not overwriting a node's keys"),
])
def test_add_node_refuses_with_a_clear_reason(bundles, node_id: str, change: str | None,
                                              message: str) -> None:
    doc = with_node5(sample_doc())
    if change == "chain":
        doc["chain"]["chain_id"] = "other-chain"
    spec = parse_consortium(doc, os.path.dirname(bundles))
    ca_dir = None
    if change == "no-ca":
        ca_dir = os.path.join(os.path.dirname(bundles), "nowhere")
    if change == "twice":
        add_node(spec, bundles, node_id)
    listing = sorted(os.listdir(os.path.join(bundles, "auditor")))
    with pytest.raises(ConsortiumError, match=message):
        add_node(spec, bundles, node_id, ca_dir=ca_dir)
    assert sorted(os.listdir(os.path.join(bundles, "auditor"))) == listing  # nothing left


def test_a_bundle_is_a_directory_the_client_tools_read(bundles) -> None:
    cluster = load_cluster(os.path.join(bundles, "bank"))
    assert cluster.bundle and cluster.chain_id == "scf-consortium"
    assert [n.id for n in cluster.nodes] == ["node1", "node2", "node3", "node4"]
    assert cluster.node("node1").client_addr == "scf.apex-motors.example:7001"
    assert all(n.client_ca == os.path.join(bundles, "bank", "ca.crt") for n in cluster.nodes)
    assert cluster.node("node2").config_path.endswith("nodes/node2/config.toml")
    assert cluster.node("node1").config_path == ""  # another organisation's node
    assert cluster.account("bank").account_id == cluster.account_id("bank")
    assert cluster.account_id("core")  # every genesis member by name
    with pytest.raises(ClusterError, match="belongs to another organisation"):
        cluster.account("core")
    assert cluster.auditor() is None
    reader = cluster.any_reader()
    assert reader is not None and reader.account_id == cluster.account_id("bank")
    with pytest.raises(ClusterError, match="the tools do not rewrite it"):
        cluster.save()


def test_proposal_files_are_checked_before_sending(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"action": "set_threshold", "params": {"threshold": 2}}))
    assert proposal_from_file(str(path)) == ("set_threshold", {"threshold": 2})
    for text, message in (("{", "is not JSON"), ('{"action": 1, "params": {}}', "must hold"),
                          ('["add_validator"]', "must hold")):
        path.write_text(text)
        with pytest.raises(ClientCommandError, match=message):
            proposal_from_file(str(path))
    with pytest.raises(ClientCommandError, match="cannot read"):
        proposal_from_file(str(tmp_path / "absent.json"))
