"""A fifth organisation's node joins the running consortium by governance, across hosts.

Keystone Audit (the sample's `auditor` organisation, which has a member but no node) makes its
node's keys on its own host (`consortium csr`), the founder lists node5 in consortium.toml and
writes its directory and the proposal that admits it (`consortium add-node`), node5 starts as
an observer on a fifth host, and two committee members pass `add_validator` with
`scfchain gov` run against their own organisations' bundles. From then on node5 votes: with
one of the original four stopped, the other three commit only with node5's vote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from node.ops.netlab import Lab
from tests.multihost.hosted import (
    REPO,
    HostedConsortium,
    HostedNode,
    chain_info,
    converged,
    wait_height,
)
from tests.multihost.test_consortium_hosts import AMOUNT, _balance, _transfer

pytestmark = [pytest.mark.multihost, pytest.mark.e2e, pytest.mark.timeout(180)]

NODE5 = """
  [[orgs.nodes]]
  id = "node5"
  host = "{host}"
  client_port = 7001
  peer_port = 7002
  metrics_port = 9101
  public_key = "{public_key}"
  tls_csr = "{csr}"
"""


def _scfchain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.ops.cli", *args], capture_output=True,
                          text=True, timeout=90, cwd=REPO)


def _gov(*args: str) -> dict[str, object]:
    result = _scfchain("gov", *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc


async def test_a_fifth_organisation_joins_by_governance(make_lab: Callable[[int], Lab],
                                                        tmp_path) -> None:
    lab = make_lab(5)
    consortium = HostedConsortium.create(lab, str(tmp_path), hosts=lab.hosts[:4])
    for node_id in consortium.nodes:
        consortium.start(node_id)
    await consortium.wait_healthy()
    await _transfer(consortium, "node1", 3)

    # Keystone Audit, on its own host: node keys and a certificate request.
    host5 = lab.hosts[4]
    own = tmp_path / "keystone"
    made = _scfchain("consortium", "csr", "--org", "auditor", "--node", "node5", "--host",
                     host5.addr, "--out", str(own), "--json")
    assert made.returncode == 0, made.stderr
    request = json.loads(made.stdout)

    # The founder lists node5 and writes its directory and the proposal.
    toml = tmp_path / "consortium.toml"
    toml.write_text(toml.read_text() + NODE5.format(
        host=host5.addr, public_key=request["public_key"], csr=request["tls_csr"]))
    added = _scfchain("consortium", "add-node", "--config", str(toml), "--bundles",
                      consortium.out, "--node", "node5", "--json")
    assert added.returncode == 0, added.stderr
    doc = json.loads(added.stdout)
    node_dir, proposals = doc["node_dir"], doc["proposals"]
    assert [os.path.basename(p) for p in proposals] == ["add_validator-node5.json"]
    assert not os.path.exists(os.path.join(node_dir, "tls.key"))  # its keys never left it
    for name in ("node_key.pem", "tls.key"):
        shutil.copy(own / name, os.path.join(node_dir, name))

    node5 = HostedNode("node5", "auditor", host5, node_dir, f"{host5.addr}:7001")
    consortium.nodes["node5"] = node5
    consortium.start("node5")
    await consortium.wait_healthy(["node5"])
    info = await chain_info(node5.client_addr, consortium.tls)
    assert not info.validator and info.validators == ["node1", "node2", "node3", "node4"]

    # Two of the committee's three (core, bank, factor) admit it, each from its own bundle.
    proposal = _gov("propose", "from-file", proposals[0], "--as", "core", "--dir",
                    os.path.join(consortium.out, "core"))
    assert proposal["status"] == "open", proposal
    vote = _gov("vote", str(proposal["proposal_id"]), "--as", "bank", "--dir",
                os.path.join(consortium.out, "bank"))
    assert vote["status"] == "executed", vote

    deadline = time.monotonic() + 60
    while not (info := await chain_info(node5.client_addr, consortium.tls)).validator:
        assert time.monotonic() < deadline, f"node5 not a validator: {info}"
        await wait_height(node5.client_addr, info.height + 1, 30, consortium.tls)
        await _transfer(consortium, "node2", 1)  # blocks carry the set change into effect
    assert list(info.validators) == ["node1", "node2", "node3", "node4", "node5"]
    every = list(consortium.nodes)
    await converged(consortium, every, within_s=30)

    # node5 counts: with node4 stopped, 4 of 5 (n = 5, f = 1) commit only with node5's vote.
    assert consortium.stop("node4") == 0
    before = await _balance(consortium, "node5", "tier1a")
    await _transfer(consortium, "node5", 4)
    height = await converged(consortium, ["node1", "node2", "node3", "node5"], within_s=30)
    assert height > info.height
    assert await _balance(consortium, "node1", "tier1a") == before + 4 * AMOUNT
    # The other client commands read a bundle as they read a cluster directory.
    sent = _scfchain("tx", "cash.transfer", "--as", "bank", "--args",
                     '{"to": "@tier1a", "amount": 7}', "--dir",
                     os.path.join(consortium.out, "bank"), "--json")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    asked = _scfchain("query", "cash.balance", "--as", "tier1a", "--args",
                      '{"account": "@tier1a"}', "--dir", os.path.join(consortium.out, "tier1a"),
                      "--json")
    assert asked.returncode == 0, asked.stderr
    assert str(before + 4 * AMOUNT + 7) in asked.stdout, asked.stdout
    listed = _scfchain("gov", "list", "--dir", os.path.join(consortium.out, "factor"),
                       "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["action"], r["status"]) for r in rows] == [("add_validator", "executed")]
