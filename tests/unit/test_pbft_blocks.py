"""The node's side of PBFT block checks: a block's identity covers its txs, and a backup
refuses proposals with a forged tx signature, a wrong parent, app hash or time, and answers
"not yet" (not "never") while the parent is not executed here.
"""

from __future__ import annotations

import pytest

from node.chain import block_hash_of, txs_hash
from node.client.identity import Account, tx_id_of
from node.genesis import BlockLimits, Genesis, Validator
from node.pbft_blocks import BlockChecker, inspect_block, verifier
from node.storage import Storage
from proto import types_pb2

CHAIN = "pbft-blocks"
GENESIS_TIME_MS = 1_000
APP_HASH = b"\x07" * 32


def _genesis() -> Genesis:
    return Genesis(CHAIN, GENESIS_TIME_MS, "pbft", {}, (), (), (), BlockLimits(), b"g" * 32)


def _block(
    txs: list[types_pb2.SignedTx],
    height: int = 1,
    parent: bytes = bytes(32),
    app_hash: bytes = APP_HASH,
    time_ms: int = GENESIS_TIME_MS + 5,
) -> bytes:
    header = types_pb2.BlockHeader(
        chain_id=CHAIN,
        height=height,
        time_ms=time_ms,
        parent_hash=parent,
        prev_app_hash=app_hash,
        txs_hash=txs_hash(tx_id_of(tx.body) for tx in txs),
    )
    return types_pb2.Block(header=header, txs=txs).SerializeToString()


@pytest.fixture
def checker(tmp_path) -> BlockChecker:
    storage = Storage(str(tmp_path / "chain"))
    storage.init_genesis(b"g" * 32, {}, APP_HASH, GENESIS_TIME_MS)
    return BlockChecker(_genesis(), storage, None, wall_clock_ms=lambda: 10_000)


def _txs(count: int = 3) -> list[types_pb2.SignedTx]:
    sender = Account.from_seed(b"sender")
    return [
        sender.build_tx(CHAIN, "cash", "transfer", {"amount": 1}, nonce=i) for i in range(count)
    ]


def test_identity_is_the_header_hash_and_requires_txs_matching_the_header() -> None:
    txs = _txs()
    payload = _block(txs)
    identity = inspect_block(payload)
    block = types_pb2.Block.FromString(payload)
    assert identity is not None and identity.block_hash == block_hash_of(block.header)
    swapped = types_pb2.Block(header=block.header, txs=_txs(4)[1:]).SerializeToString()
    assert inspect_block(swapped) is None
    assert inspect_block(b"\xff\x00garbage") is None


def test_valid_proposal_on_the_executed_parent_is_accepted(checker: BlockChecker) -> None:
    assert checker.validate(1, bytes(32), _block(_txs()))


def test_forged_tx_signature_is_refused(checker: BlockChecker) -> None:
    txs = _txs()
    txs[1] = types_pb2.SignedTx(body=txs[1].body, signature=bytes(64))
    assert not checker.validate(1, bytes(32), _block(txs))


@pytest.mark.parametrize(
    "changes",
    [
        {"parent": b"\x01" * 32},
        {"app_hash": b"\x02" * 32},
        {"time_ms": GENESIS_TIME_MS},
    ],
)
def test_wrong_parent_app_hash_or_time_is_refused(
    checker: BlockChecker, changes: dict[str, object]
) -> None:
    assert not checker.validate(1, bytes(32), _block(_txs(), **changes))  # type: ignore[arg-type]


def test_proposal_above_the_executed_height_is_not_yet_valid(checker: BlockChecker) -> None:
    payload = _block(_txs(), height=2, parent=b"\x05" * 32)
    assert not checker.validate(2, b"\x05" * 32, payload)
    assert block_hash_of(types_pb2.Block.FromString(payload).header) not in checker._rejected


def test_statements_verify_only_under_the_signers_genesis_key() -> None:
    account = Account.from_seed(b"node1")
    genesis = Genesis(
        CHAIN,
        0,
        "pbft",
        {},
        (Validator("node1", account.public_key, "x"),),
        (),
        (),
        BlockLimits(),
        b"g" * 32,
    )
    verify = verifier(genesis)
    signature = account.sign(b"statement")
    assert verify("node1", b"statement", signature)
    assert not verify("node1", b"other", signature)
    assert not verify("node2", b"statement", signature)
