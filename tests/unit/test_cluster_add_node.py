"""`cluster add-node` and the validator/observer split of `cluster status`, without processes.

A joining node's files (key, a certificate from the cluster's CA, a config on free ports that
keeps the cluster's other settings), the next node id, the refusals, what add-node prints, and
how status places each node: by what the node says, else by the set an up node lists, else by
genesis; the table shows validators first and observers apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console

from node.client.identity import Account
from node.config import load_config
from node.ops.cli_cluster import add_node_json, add_node_lines, status_table
from node.ops.cluster_status import NodeStatus, node_status, validator_set
from node.ops.launcher import (
    Cluster,
    ClusterAccount,
    ClusterError,
    ClusterNode,
    add_node,
    next_node_id,
    shared_node_options,
)
from node.ops.localcluster import reports_validator
from node.ops.localnet import write_joining_node
from node.tls import make_ca
from proto import ledger_pb2

HAS_VALIDATOR_FIELD = "validator" in ledger_pb2.ChainInfo.DESCRIPTOR.fields_by_name


def cluster_node(root: str, node_id: str, port: int) -> ClusterNode:
    node_dir = os.path.join(root, "nodes", node_id)
    return ClusterNode(node_id, f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}", None,
                       os.path.join(node_dir, "data"), os.path.join(node_dir, "node.log"),
                       os.path.join(node_dir, "config.toml"))


@pytest.fixture
def net(tmp_path: Any) -> Cluster:
    """A 3-node raft cluster directory: CA, genesis naming node1..node3, node1's config with
    one setting of the cluster's own."""
    root = str(tmp_path)
    make_ca(os.path.join(root, "ca"))
    nodes = [cluster_node(root, f"node{i}", 7000 + 2 * i) for i in (1, 2, 3)]
    os.makedirs(os.path.dirname(nodes[0].config_path))
    with open(nodes[0].config_path, "w") as handle:
        handle.write('node_id = "node1"\ndata_dir = "data"\ngenesis = "../../genesis.json"\n'
                     'client_addr = "127.0.0.1:7002"\npeer_addr = "127.0.0.1:7003"\n'
                     'signing_key = "node_key.pem"\nverify_processes = 1\n\n[tls]\n'
                     'ca_cert = "../../ca/ca.crt"\ncert = "tls.crt"\nkey = "tls.key"\n')
    with open(os.path.join(root, "genesis.json"), "w") as handle:
        json.dump({"validators": [{"id": n.id} for n in nodes]}, handle)
    key = os.path.join(root, "core.pem")
    Account.generate().save(key)
    accounts = [ClusterAccount("core", "core_enterprise", Account.load(key).account_id, key)]
    cluster = Cluster(root, "t", "raft", nodes, accounts)
    cluster.save()
    return cluster


def test_the_next_node_id_follows_the_highest_in_the_file_or_on_disk(net: Cluster) -> None:
    assert next_node_id(net) == "node4"
    os.makedirs(os.path.join(net.root, "nodes", "node7"))  # left by an earlier attempt
    assert next_node_id(net) == "node8"
    assert next_node_id(Cluster("/nowhere", "t", "raft", [])) == "node1"


def test_a_joining_node_gets_a_key_a_ca_certificate_and_the_clusters_settings(
    net: Cluster,
) -> None:
    options = shared_node_options(net)
    assert options == {"verify_processes": 1}  # nothing about node1 itself
    layout = write_joining_node(net.root, "node4", genesis_path=os.path.join(net.root,
                                "genesis.json"), consensus="raft", node_options=options)
    node_dir = os.path.dirname(layout.config_path)
    with open(layout.config_path, "rb") as handle:
        config = tomllib.load(handle)
    assert config["node_id"] == "node4" and config["verify_processes"] == 1
    assert config["client_addr"] == layout.client_addr != layout.peer_addr == config["peer_addr"]
    assert os.path.normpath(os.path.join(node_dir, config["genesis"])) == os.path.join(
        net.root, "genesis.json")
    assert load_config(layout.config_path).node_id == "node4"  # the node's own parser takes it
    with open(os.path.join(node_dir, "tls.crt"), "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    with open(os.path.join(net.root, "ca", "ca.crt"), "rb") as handle:
        ca = x509.load_pem_x509_certificate(handle.read())
    assert cert.issuer == ca.subject and cert.subject.rfc4514_string() == "CN=node4"
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes,
                  ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
    Account.load(os.path.join(node_dir, "node_key.pem"))
    with pytest.raises(FileExistsError):  # another node's keys are never reused
        write_joining_node(net.root, "node4", genesis_path="g", consensus="raft")


def test_a_joining_node_needs_the_clusters_ca_and_a_consensus_with_peers(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="no consortium CA"):
        write_joining_node(str(tmp_path), "node2", genesis_path="g", consensus="raft")
    with pytest.raises(ValueError, match="solo"):
        write_joining_node(str(tmp_path), "node2", genesis_path="g", consensus="solo")
    assert not os.path.exists(os.path.join(tmp_path, "nodes"))


def test_add_node_refuses_a_solo_or_stopped_cluster(net: Cluster) -> None:
    with pytest.raises(ClusterError, match="not running"):
        asyncio.run(add_node(net))
    net.consensus = "solo"
    with pytest.raises(ClusterError, match="solo"):
        asyncio.run(add_node(net))
    assert [n.id for n in net.nodes] == ["node1", "node2", "node3"]
    assert not os.path.exists(os.path.join(net.root, "nodes", "node4"))


def test_add_node_prints_the_node_and_the_proposal_that_makes_it_a_validator(
    net: Cluster,
) -> None:
    doc = add_node_json(net, "node4", 4242, "127.0.0.1:7100", "127.0.0.1:7101", 17,
                        observer=False)
    assert doc["node"] == "node4" and doc["height"] == 17 and doc["validator"] is False
    assert doc["propose"] == (f"scfchain gov propose add-validator --node node4 --as core "
                              f"--dir {net.root}")
    lines = add_node_lines(doc)
    assert "node4 runs (pid 4242" in lines[0] and "height 17" in lines[0]
    assert "to make it a validator" in lines[1] and lines[2].strip() == doc["propose"]
    kept = add_node_lines(add_node_json(net, "node4", 1, "a", "b", 0, observer=True))
    assert "stays an observer" in kept[1]


# --- status --------------------------------------------------------------------------------


def chain_info(node_id: str, height: int, validators: list[str], *, validator: bool | None = None,
               epoch: int = 0) -> ledger_pb2.ChainInfo:
    info = ledger_pb2.ChainInfo(node_id=node_id, height=height, validators=validators,
                                role="follower")
    if HAS_VALIDATOR_FIELD:
        info.validator = node_id in validators if validator is None else validator
        info.validator_epoch = epoch
    return info


def test_a_node_is_placed_by_its_own_word_else_by_the_set_it_lists() -> None:
    info = chain_info("node4", 9, ["node1", "node4"], epoch=1)
    assert reports_validator(info) is True
    assert reports_validator(chain_info("node4", 9, ["node1"])) is False
    status = node_status(cluster_node("/r", "node4", 7100), 99, info, in_validator_set=False)
    assert status.validator is True and status.up and status.height == 9
    assert status.validator_epoch == (1 if HAS_VALIDATOR_FIELD else None)
    down = node_status(cluster_node("/r", "node2", 7004), None, None, in_validator_set=True)
    assert not down.up and down.validator is True and down.validator_epoch is None
    assert down.error == "not running"
    assert {"validator", "validator_epoch"} <= set(status.to_json())


def test_the_validator_set_comes_from_the_highest_node_else_from_genesis(net: Cluster) -> None:
    infos = [chain_info("node1", 5, ["node1", "node2"]), chain_info("node4", 9, ["node1",
             "node4"])]
    assert validator_set(net, infos) == {"node1", "node4"}
    assert validator_set(net, []) == {"node1", "node2", "node3"}
    assert validator_set(Cluster("/nowhere", "t", "raft", []), []) == set()


def test_the_status_table_shows_validators_first_and_observers_apart(net: Cluster) -> None:
    statuses = [
        NodeStatus("node1", True, 1, "a1", height=9, role="leader", validator=True,
                   validator_epoch=1),
        NodeStatus("node4", True, 4, "a4", height=9, role="follower", validator=False,
                   validator_epoch=1),
        NodeStatus("node2", False, None, "a2", validator=True),
    ]
    console = Console(width=160, record=True)
    console.print(status_table(net, statuses))
    text = console.export_text()
    rows = [line for line in text.splitlines() if "node" in line and "│" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["node1", "node2", "node4"]
    assert "validator · epoch 1" in rows[0] and "observer" in rows[2]
    assert "validator" in rows[1] and "down" in rows[1]
    lines = text.splitlines()
    node2, node4 = (next(i for i, line in enumerate(lines) if f"│ {n}" in line)
                    for n in ("node2", "node4"))
    assert any(line.startswith("├") for line in lines[node2 + 1:node4])  # the rule between
