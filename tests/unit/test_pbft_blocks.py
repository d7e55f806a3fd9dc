"""The node's side of PBFT block checks: a block's identity covers its txs, and a backup
refuses proposals with a forged tx signature, a wrong parent, app hash or time, and answers
"not yet" (not "never") while the parent is not executed here or its signatures are still being
checked off the caller's thread; parsed blocks and verdicts are remembered, within bounds.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

import node.pbft_blocks as pbft_blocks
from node.admission import VerifiedCache
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


def _verdict(checker: BlockChecker, height: int, parent: bytes, payload: bytes) -> bool:
    """What the engine's retries end with: ask, let any signature check finish, ask again."""
    if checker.validate(height, parent, payload):
        return True
    checker.wait(10)
    return checker.validate(height, parent, payload)


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
    assert _verdict(checker, 1, bytes(32), _block(_txs()))


def test_forged_tx_signature_is_refused(checker: BlockChecker) -> None:
    txs = _txs()
    txs[1] = types_pb2.SignedTx(body=txs[1].body, signature=bytes(64))
    assert not _verdict(checker, 1, bytes(32), _block(txs))


def test_a_tx_verified_before_with_another_signature_is_refused(tmp_path) -> None:
    """Admission verified these txs here (the shared cache); a primary that puts one of the
    same bodies in a block with a forged signature is refused all the same."""
    txs = _txs()
    verified = VerifiedCache(100)
    for signed_tx in txs:
        verified.add(hashlib.sha256(signed_tx.body).digest(), signed_tx.signature)
    forged = list(txs)
    forged[1] = types_pb2.SignedTx(body=txs[1].body, signature=bytes(64))
    for name, block, valid in (("forged", _block(forged), False), ("honest", _block(txs), True)):
        storage = Storage(str(tmp_path / name))
        storage.init_genesis(b"g" * 32, {}, APP_HASH, GENESIS_TIME_MS)
        checker = BlockChecker(_genesis(), storage, verified, wall_clock_ms=lambda: 10_000)
        assert _verdict(checker, 1, bytes(32), block) is valid, name


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
    payload = _block(_txs(), **changes)  # type: ignore[arg-type]
    assert not _verdict(checker, 1, bytes(32), payload)


def test_proposal_above_the_executed_height_is_not_yet_valid(checker: BlockChecker) -> None:
    payload = _block(_txs(), height=2, parent=b"\x05" * 32)
    assert not _verdict(checker, 2, b"\x05" * 32, payload)
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


# --- validation off the caller's thread, and what it remembers --------------------------------


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Signature checks wait for the returned event, so a test sees them still running."""
    gate = threading.Event()
    real = pbft_blocks.verify_chunk

    def held_back(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
        assert gate.wait(10), "the test never released the signature checks"
        return real(items)

    monkeypatch.setattr(pbft_blocks, "verify_chunk", held_back)
    yield gate
    gate.set()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every payload the module parses, in order."""
    seen: list[bytes] = []
    real: Callable[[bytes], types_pb2.Block | None] = pbft_blocks._parse

    def counting(payload: bytes) -> types_pb2.Block | None:
        seen.append(payload)
        return real(payload)

    monkeypatch.setattr(pbft_blocks, "_parse", counting)
    return seen


def test_validation_answers_not_yet_while_signatures_are_checked_then_gives_the_verdict(
    checker: BlockChecker, gated: threading.Event
) -> None:
    payload = _block(_txs())
    assert not checker.validate(1, bytes(32), payload)  # returns at once: checks are held back
    assert not checker.validate(1, bytes(32), payload)
    assert not checker._rejected
    gated.set()
    checker.wait(10)
    assert checker.validate(1, bytes(32), payload)
    # The txs are now known good: a block carrying them again needs no check at all.
    assert checker.validate(1, bytes(32), _block(_txs(), time_ms=GENESIS_TIME_MS + 6))


def test_forged_signature_is_refused_once_checked_and_not_checked_again(
    checker: BlockChecker, gated: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    txs = _txs()
    txs[2] = types_pb2.SignedTx(body=txs[2].body, signature=bytes(64))
    payload = _block(txs)
    assert not checker.validate(1, bytes(32), payload)
    gated.set()
    checker.wait(10)
    assert not checker.validate(1, bytes(32), payload)
    assert block_hash_of(types_pb2.Block.FromString(payload).header) in checker._rejected
    monkeypatch.setattr(pbft_blocks, "verify_chunk", _never_called)
    assert not checker.validate(1, bytes(32), payload)


def _never_called(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    raise AssertionError("a signature was checked again")


def test_retries_reuse_the_parsed_block_and_the_signature_verdict(
    checker: BlockChecker, parses: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine inspects and validates its pending proposal on every tick: one parse."""
    payload = _block(_txs(), height=2, parent=b"\x05" * 32)
    assert checker.inspect(payload) == inspect_block(payload)
    parses.clear()
    for _ in range(3):
        assert checker.inspect(payload) is not None
        assert not _verdict(checker, 2, b"\x05" * 32, payload)  # its parent is not here yet
    assert parses == []
    monkeypatch.setattr(pbft_blocks, "verify_chunk", _never_called)
    for _ in range(50):
        assert not checker.validate(2, b"\x05" * 32, payload)
    assert parses == []
    # Another object holding the same bytes is parsed once more (the memo is by object).
    assert checker.inspect(bytes(bytearray(payload))) is not None
    assert len(parses) == 1


def test_what_is_remembered_is_bounded(
    checker: BlockChecker, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = [
        _block(_txs(), time_ms=GENESIS_TIME_MS + 5 + i)
        for i in range(pbft_blocks.PARSED_BLOCKS_MAX + 3)
    ]
    for payload in payloads:
        assert _verdict(checker, 1, bytes(32), payload)
    assert len(checker._parsed) == pbft_blocks.PARSED_BLOCKS_MAX
    assert checker._parsed_bytes == sum(map(len, payloads[-pbft_blocks.PARSED_BLOCKS_MAX :]))
    monkeypatch.setattr(pbft_blocks, "SIGNATURE_VERDICTS_MAX", 4)
    monkeypatch.setattr(pbft_blocks, "PARSED_BYTES_MAX", len(payloads[0]))
    more = [_block(_txs(), time_ms=GENESIS_TIME_MS + 100 + i) for i in range(6)]
    for payload in more:
        assert _verdict(checker, 1, bytes(32), payload)
    assert len(checker._signatures) == 4
    assert len(checker._parsed) == 1 and checker._parsed_bytes == len(more[-1])


def test_proposal_waits_for_its_parent_and_is_valid_once_the_parent_is(
    checker: BlockChecker, gated: threading.Event
) -> None:
    """Signatures are checked while the parent is still pending; the verdict waits for it."""
    parent = _block(_txs())
    parent_hash = block_hash_of(types_pb2.Block.FromString(parent).header)
    child = _block(_txs(5)[3:], height=2, parent=parent_hash, time_ms=GENESIS_TIME_MS + 9)
    assert not checker.validate(2, parent_hash, child)  # its signatures are being checked
    gated.set()
    checker.wait(10)
    assert not checker.validate(2, parent_hash, child)  # signatures fine, parent not known
    assert not checker._rejected
    assert _verdict(checker, 1, bytes(32), parent)
    assert checker.validate(2, parent_hash, child)
