"""What the multihost tests check on a consortium run by node/ops/netlab_consortium.py: heights,
and that every node agrees on a block and the app hash after it."""

from __future__ import annotations

import asyncio
import time

from node.client.ledger import ClientTls, LedgerClient, LedgerError
from node.ops.netlab_consortium import (  # noqa: F401 - the tests' one import for the lab
    REPO,
    HostedConsortium,
    HostedNode,
)
from proto import ledger_pb2


async def chain_info(addr: str, tls: ClientTls) -> ledger_pb2.ChainInfo:
    async with LedgerClient(addr, timeout_s=2.0, tls=tls) as client:
        return await client.chain_info()


async def wait_height(addr: str, height: int, within_s: float,
                      tls: ClientTls) -> ledger_pb2.ChainInfo:
    deadline = time.monotonic() + within_s
    while True:
        try:
            info = await chain_info(addr, tls)
            if info.height >= height:
                return info
        except LedgerError:
            pass
        assert time.monotonic() < deadline, f"{addr} did not reach height {height}"
        await asyncio.sleep(0.1)


async def converged(hosted: HostedConsortium, node_ids: list[str], within_s: float) -> int:
    """Every node reaches one height past the highest now, and all agree on that block's hash
    and the app hash after it (read as the auditor); returns the height."""
    target = max([(await chain_info(a, hosted.tls)).height for a in hosted.addrs(node_ids)]) + 1
    seen = {}
    for node_id in node_ids:
        await wait_height(hosted.addr(node_id), target, within_s, hosted.tls)
        async with hosted.client(node_id) as client:
            block = await client.get_block(target)
        seen[node_id] = (block.block_hash.hex(), block.app_hash.hex())
    assert len(set(seen.values())) == 1, f"nodes disagree at height {target}: {seen}"
    return target
