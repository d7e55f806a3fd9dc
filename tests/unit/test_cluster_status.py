"""`cluster status`'s divergence warning: up nodes are compared at the highest height they share.

A fake client stands in for the nodes: each address serves blocks whose app hash the test
chooses, so agreement, disagreement, down nodes and genesis-only chains are checked without
processes.
"""

from __future__ import annotations

from types import SimpleNamespace, TracebackType

import pytest

from node.ops import cluster_status
from node.ops.cluster_status import NodeStatus, app_hash_divergence
from node.ops.launcher import Cluster

HASHES: dict[str, dict[int, bytes]] = {}


class FakeClient:
    def __init__(self, address: str, *, timeout_s: float = 0, **signing: object) -> None:
        self.address = address

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def get_block(self, height: int) -> SimpleNamespace:
        return SimpleNamespace(app_hash=HASHES[self.address][height])


@pytest.fixture(autouse=True)
def fake_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_status, "LedgerClient", FakeClient)
    HASHES.clear()


def status(node_id: str, height: int, up: bool = True) -> NodeStatus:
    return NodeStatus(node_id, up, 1 if up else None, f"addr-{node_id}", height=height)


CLUSTER = Cluster(root="/nowhere", chain_id="c", consensus="raft", nodes=[])


async def test_nodes_that_agree_at_the_shared_height_give_no_warning() -> None:
    HASHES["addr-a"] = {5: b"\x01" * 32, 6: b"\x02" * 32}
    HASHES["addr-b"] = {5: b"\x01" * 32}
    assert await app_hash_divergence(CLUSTER, [status("a", 6), status("b", 5)]) is None


async def test_different_app_hashes_at_the_shared_height_are_named() -> None:
    HASHES["addr-a"] = {5: b"\x01" * 32}
    HASHES["addr-b"] = {5: b"\x09" * 32}
    warning = await app_hash_divergence(CLUSTER, [status("a", 7), status("b", 5)])
    assert warning is not None and "height 5" in warning
    assert "a 0101" in warning and "b 0909" in warning


async def test_down_nodes_and_a_lone_node_are_not_compared() -> None:
    HASHES["addr-a"] = {5: b"\x01" * 32}
    assert await app_hash_divergence(CLUSTER, [status("a", 5), status("b", 0, up=False)]) is None
    assert await app_hash_divergence(CLUSTER, [status("a", 0), status("b", 0)]) is None
