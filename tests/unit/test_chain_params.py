"""Chain params the committee changes: the contract's schedule read by the node
(node/chain_params.py). Every node that may propose or validate block h (its head anywhere
from h - APP_HASH_LAG to h - 1) must read the same limits for h, and those are the values of the
newest change decided at least PARAM_CHANGE_DELAY_BLOCKS before h."""

from __future__ import annotations

import json
import random

import pytest

from contracts.governance_actions import PARAM_CHANGE_DELAY_BLOCKS
from node.chain import APP_HASH_LAG
from node.chain_params import ChainParams, ChainParamsError, Params, parse_params
from node.genesis import BlockLimits
from tests.harness import LocalChain

MEMBERS = {"core": ("core_enterprise",), "bank": ("financier",), "factor": ("financier",)}
GENESIS = Params(0, 2000, 4_000_000, 1000)


def _reader(raw: bytes | None) -> ChainParams:
    params = ChainParams(BlockLimits(2000, 4_000_000, 50), 1000, lambda key: raw)
    return params


def test_a_state_without_params_runs_genesis_values() -> None:
    params = _reader(None)
    assert params.at(0) == params.at(10**6) == GENESIS
    assert params.limits_at(7) == BlockLimits(2000, 4_000_000, 50)


@pytest.mark.parametrize("seed", range(6))
def test_every_head_that_may_handle_a_block_reads_the_same_limits(seed: int) -> None:
    rng = random.Random(seed)
    chain = LocalChain(members=dict(MEMBERS), consensus="raft",
                       committee={"core": 1, "bank": 1, "factor": 1})
    docs: dict[int, bytes] = {}  # head height -> the stored params doc after that block
    decided: list[tuple[int, Params]] = [(-PARAM_CHANGE_DELAY_BLOCKS, GENESIS)]
    current = GENESIS
    for _ in range(40):
        if rng.random() < 0.45:
            name = rng.choice(["block_txs_max", "block_bytes_max", "empty_block_interval_ms"])
            value = rng.randrange(1_000, 9_000)
            receipt = chain.govern("set_param", name=name, value=value)
            assert receipt.ok, receipt
            field = {"block_txs_max": "txs_max", "block_bytes_max": "bytes_max"}.get(name, name)
            current = Params(0, **{**_fields(current), field: value})
            decided.append((chain.height, current))
        else:
            chain.run_block([])
        docs[chain.height] = json.dumps(chain.raw("governance/params")).encode()
    for height in range(APP_HASH_LAG + 1, chain.height + 1):
        expected = [p for d, p in decided if d + PARAM_CHANGE_DELAY_BLOCKS <= height][-1]
        for head in range(height - APP_HASH_LAG, height):
            got = _reader(docs[head]).at(height) if head in docs else GENESIS
            assert _fields(got) == _fields(expected), (height, head)
    # The schedule keeps only entries some later block may still need.
    assert len(parse_params(docs[chain.height])) <= 1 + PARAM_CHANGE_DELAY_BLOCKS


def _fields(p: Params) -> dict[str, int]:
    return {"txs_max": p.txs_max, "bytes_max": p.bytes_max,
            "empty_block_interval_ms": p.empty_block_interval_ms}


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[]",
    b'{"block_txs_max": 1, "block_bytes_max": 1000}',
    b'{"block_txs_max": 1, "block_bytes_max": 1000, "empty_block_interval_ms": true}',
    b'{"block_txs_max": 1, "block_bytes_max": 1000, "empty_block_interval_ms": 0,'
    b' "effective_height": 3, "earlier": [{"from_height": 9, "block_txs_max": 1,'
    b' "block_bytes_max": 1000, "empty_block_interval_ms": 0}]}',
])
def test_a_broken_params_doc_is_refused_with_its_key_named(raw: bytes) -> None:
    with pytest.raises(ChainParamsError, match="governance/params"):
        parse_params(raw)
