"""Genesis refuses a block size that could not travel in one peer message: a Raft append or a
PBFT pre-prepare carries a whole block (issue 13: 4 MB blocks batched 64 at a time made
AppendEntries that never fit, and a lagging follower starved)."""

from __future__ import annotations

import json

import pytest

from node.config import ConfigError
from node.genesis import BLOCK_BYTES_LIMIT, load_genesis, parse_genesis
from node.ops.localnet import MemberSpec, write_network


def _doc(tmp_path) -> dict:
    net = write_network(str(tmp_path), nodes=1, consensus="raft",
                        members=[MemberSpec("admin", ("admin",))])
    with open(net.genesis_path) as handle:
        return json.load(handle)


def test_block_bytes_max_over_half_the_peer_message_limit_is_refused_with_the_reason(
    tmp_path,
) -> None:
    doc = _doc(tmp_path)
    doc["block"] = {"bytes_max": BLOCK_BYTES_LIMIT + 1}
    with pytest.raises(ConfigError, match="one peer message"):
        parse_genesis(json.dumps(doc).encode())


def test_the_largest_allowed_block_is_accepted(tmp_path) -> None:
    doc = _doc(tmp_path)
    doc["block"] = {"bytes_max": BLOCK_BYTES_LIMIT}
    assert parse_genesis(json.dumps(doc).encode()).block.bytes_max == BLOCK_BYTES_LIMIT
    assert load_genesis(str(tmp_path / "genesis.json")).block.bytes_max < BLOCK_BYTES_LIMIT
