"""docs/deploy.md, "Backing up and restoring a node", done as the page says on one host of the
consortium: stop the node, archive `data/` with tar, start it; later stop it, put the archive
back in place of `data/`, start it: it catches up the blocks committed since from its peers
and agrees with them on every later block and app hash."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.multihost.hosted import HostedConsortium, chain_info, converged, wait_height
from tests.multihost.test_consortium_hosts import AMOUNT, _balance, _start, _transfer

pytestmark = [pytest.mark.multihost, pytest.mark.e2e, pytest.mark.timeout(150)]


def _tar(*args: str) -> None:
    subprocess.run(["tar", *args], check=True, timeout=60, capture_output=True)


async def test_a_node_restored_from_a_backup_catches_up(consortium: HostedConsortium,
                                                        tmp_path) -> None:
    await _start(consortium)
    await _transfer(consortium, "node1", 3)
    node = consortium.nodes["node2"]
    archive = str(tmp_path / "node2-data.tgz")

    # Back up: stop, archive data/, start again.
    assert consortium.stop("node2") == 0
    _tar("-C", node.node_dir, "-czf", archive, "data")
    backed_up = (await chain_info(consortium.addr("node1"), consortium.tls)).height
    consortium.start("node2")
    await consortium.wait_healthy(["node2"])

    for node_id in ("node1", "node3"):
        await _transfer(consortium, node_id, 5)
    head = await converged(consortium, list(consortium.nodes), within_s=30)
    assert head > backed_up

    # Restore: stop, replace data/ with the archive, start; it catches up from its peers.
    assert consortium.stop("node2") == 0
    shutil.rmtree(os.path.join(node.node_dir, "data"))
    _tar("-C", node.node_dir, "-xzf", archive)
    consortium.start("node2")
    await consortium.wait_healthy(["node2"])
    await wait_height(node.client_addr, head, 30, consortium.tls)
    await _transfer(consortium, "node2", 2)
    await converged(consortium, list(consortium.nodes), within_s=30)
    assert await _balance(consortium, "node2", "tier1a") == (3 + 2 * 5 + 2) * AMOUNT
