"""The test-only faults plug in from outside the daemon: the crash observer exits at the n-th
moment of its point, the equivocating wrapper tells the last peer in id order another block,
and a node whose environment asks for a fault is started through `python -m node.faults`."""

from __future__ import annotations

import ast
import pathlib
import sys
from typing import Any

import pytest

from consensus.pbft_messages import PrePrepare
from node.chain import block_hash_of
from node.faults import crashpoints
from node.faults.byzantine import EquivocatingTransport
from node.ops.localnet import node_command
from proto import types_pb2

NODE = pathlib.Path(__file__).resolve().parents[2] / "node"


class _Exited(Exception):
    pass


def test_the_crash_observer_exits_at_the_nth_moment_of_its_point_only(monkeypatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(crashpoints.os, "_exit", fake_exit)
    observer = crashpoints.CrashObserver("during_state_transfer", 3)
    for height in (1, 2):
        observer.block_synced(height)
        observer.block_written(height)  # another point: never counted
    observer.consensus_persisted()
    assert codes == []
    with pytest.raises(_Exited):
        observer.block_synced(3)
    assert codes == [crashpoints.EXIT_CODE] == [97]


def test_a_crash_point_spec_names_a_known_point() -> None:
    assert crashpoints.parse("") is None
    assert crashpoints.parse("mid_block_commit") == ("mid_block_commit", 1)
    with pytest.raises(ValueError, match="unknown point"):
        crashpoints.parse("nowhere:2")


class _Inner:
    peer_ids = ["node3", "node2", "node4"]  # genesis order, not id order

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, to: str, msg: Any) -> None:
        self.sent.append((to, msg))


def _pre_prepare() -> PrePrepare:
    header = types_pb2.BlockHeader(height=7, time_ms=1_000, parent_hash=b"p" * 32)
    block = types_pb2.Block(header=header)
    return PrePrepare(view=2, height=7, block_hash=block_hash_of(header),
                      payload=block.SerializeToString())


def test_an_equivocating_primary_tells_the_last_peer_in_id_order_another_block() -> None:
    inner = _Inner()
    wrapper = EquivocatingTransport(inner)  # type: ignore[arg-type]
    real = _pre_prepare()
    wrapper.broadcast(real)
    assert [to for to, _ in inner.sent] == ["node3", "node2", "node4"]
    assert dict(inner.sent)["node3"] is real and dict(inner.sent)["node2"] is real
    forged = dict(inner.sent)["node4"]
    header = types_pb2.Block.FromString(forged.payload).header
    assert (forged.view, forged.height, header.time_ms) == (2, 7, 1_001)
    assert forged.block_hash == block_hash_of(header) != real.block_hash
    inner.sent.clear()
    wrapper.send("node4", "a vote")  # only pre-prepares are forged
    assert inner.sent == [("node4", "a vote")]


def test_a_node_asked_for_a_fault_starts_through_the_fault_harness() -> None:
    normal = [sys.executable, "-m", "node.ops.cli", "node", "--config", "c.toml"]
    harness = [sys.executable, "-m", "node.faults", "--config", "c.toml"]
    assert node_command("c.toml", {}) == normal
    assert node_command("c.toml", {"SCFCHAIN_CRASH_POINT": ""}) == normal
    assert node_command("c.toml", {"SCFCHAIN_CRASH_POINT": "mid_block_commit"}) == harness
    assert node_command("c.toml", {"SCFCHAIN_BYZANTINE": "equivocate"}) == harness


def test_no_daemon_module_imports_a_fault_hook() -> None:
    for path in NODE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("node.faults") for n in names), path.name
