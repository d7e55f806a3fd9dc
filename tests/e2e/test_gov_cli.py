"""`scfchain gov` and `cluster add-node` against a live 3-node Raft cluster of the sample
consortium, run as a person runs them.

The sample committee is core, bank and factor with weight 1 each, so 2 of 3 votes carry: a
proposal by core is open until bank votes yes, and then executes in that block.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from node.client.identity import Account
from node.ops.cli import main
from node.ops.localnet import free_port_range

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CLI_TIMEOUT_S = 90


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.ops.cli", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)


class Run:
    """`scfchain ARGS` in this process: (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err or out
        return json.loads(out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


@pytest.fixture
def net(tmp_path: Any) -> Iterator[str]:
    """A running 3-node Raft cluster of the sample consortium; afterwards none of its
    processes (added nodes included) may be left."""
    root = str(tmp_path / "net")
    started = cli("cluster", "up", "--dir", root, "--nodes", "3", "--consensus", "raft",
                  "--base-port", str(free_port_range(6)), "--detach", "--json")
    try:
        assert started.returncode == 0, started.stderr
        yield root
    finally:
        cli("cluster", "down", "--dir", root, "--grace", "5")
        leaked = [p for p in psutil.process_iter(["cmdline"])
                  if any(root in arg for arg in p.info.get("cmdline") or [])
                  and p.pid != os.getpid()]
        for proc in leaked:
            proc.kill()
        assert not leaked, f"node processes left running: {[p.pid for p in leaked]}"


def tail(root: str, node_id: str, lines: int = 15) -> str:
    log = os.path.join(root, "nodes", node_id, "node.log")
    with open(log, errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


def test_the_committee_registers_a_member_by_two_of_three_votes(net: str, run: Run) -> None:
    committee = run.json("query", "governance.committee", "--dir", net)
    assert sorted((m["name"], m["weight"]) for m in committee["members"]) == [
        ("bank", 1), ("core", 1), ("factor", 1)], "the sample committee is core, bank, factor"

    proposed = run.json("gov", "propose", "register", "--name", "bank2", "--roles", "financier",
                        "--as", "core", "--dir", net)
    assert proposed["status"] == "open" and len(proposed["proposal_id"]) == 64
    proposal_id = proposed["proposal_id"]
    with open(os.path.join(net, "cluster.json")) as handle:
        bank2 = next(a for a in json.load(handle)["accounts"] if a["name"] == "bank2")
    assert Account.load(bank2["key_file"]).account_id == bank2["account_id"]

    listed = run.json("gov", "list", "--dir", net, "--status", "open")
    assert [(p["proposal_id"], p["action"]) for p in listed] == [(proposal_id,
                                                                 "register_member")]
    code, out, err = run("gov", "list", "--dir", net)
    assert code == 0, err
    assert proposal_id[:16] in out and "account=bank2" in out and "core" in out

    code, out, err = run("gov", "propose", "suspend", "--member", "tier1a", "--as", "tier1a",
                         "--dir", net, "--json")
    assert code == 1 and json.loads(out)["error_code"] == "NOT_COMMITTEE_MEMBER"
    assert "NOT_COMMITTEE_MEMBER" in err

    voted = run.json("gov", "vote", proposal_id[:12], "--as", "bank", "--dir", net)
    assert (voted["proposal_id"], voted["status"]) == (proposal_id, "executed")
    member = run.json("query", "consortium.by_name", "--dir", net,
                      "--args", '{"name": "bank2"}')
    assert member["account"] == bank2["account_id"]
    record = run.json("query", "consortium.member", "--dir", net,
                      "--args", '{"account": "@bank2"}')
    assert record["roles"] == ["financier"] and not record["suspended"]

    code, out, _ = run("gov", "vote", proposal_id, "--as", "factor", "--dir", net, "--json")
    assert code == 1 and json.loads(out)["error_code"] == "PROPOSAL_DECIDED"
    # The new member signs with the key the proposal wrote.
    assert run.json("tx", "cash.transfer", "--as", "bank", "--dir", net,
                    "--args", '{"to": "@bank2", "amount": 50}')["status"] == "SUCCESS"
    assert run.json("tx", "cash.transfer", "--as", "bank2", "--dir", net,
                    "--args", '{"to": "@bank", "amount": 20}')["status"] == "SUCCESS"
    done = run.json("gov", "list", "--dir", net)
    assert [p["status"] for p in done if p["proposal_id"] == proposal_id] == ["executed"]


def test_an_added_node_follows_as_an_observer_and_is_voted_in(net: str, run: Run) -> None:
    added = run.json("cluster", "add-node", "--dir", net)
    assert added["node"] == "node4" and added["validator"] is False
    assert "gov propose add-validator --node node4" in added["propose"]
    statuses = {s["id"]: s for s in run.json("cluster", "status", "--dir", net)}
    assert statuses["node4"]["up"] and statuses["node4"]["validator"] is False
    assert all(statuses[f"node{i}"]["validator"] for i in (1, 2, 3))

    proposed = run.json("gov", "propose", "add-validator", "--node", "node4", "--as", "core",
                        "--dir", net)
    assert proposed["status"] == "open"
    voted = run.json("gov", "vote", proposed["proposal_id"], "--as", "factor", "--dir", net)
    assert voted["status"] == "executed"
    changed = [e for e in voted["events"] if e["name"] == "validator_set_changed"]
    assert changed and "node4" in changed[0]["validators"]

    # The set changes a few blocks after the vote; blocks come with txs, so keep some coming.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run.json("tx", "cash.transfer", "--as", "core", "--dir", net,
                 "--args", '{"to": "@tier1a", "amount": 1}')
        statuses = {s["id"]: s for s in run.json("cluster", "status", "--dir", net)}
        assert statuses["node4"]["up"], f"node4 stopped after the vote:\n{tail(net, 'node4')}"
        if statuses["node4"]["validator"]:
            break
        time.sleep(0.3)
    assert statuses["node4"]["validator"] is True, statuses["node4"]
    assert statuses["node4"]["validator_epoch"] == 1
    heights = {s["height"] for s in statuses.values()}
    assert max(heights) - min(heights) <= 3
