"""Admission refuses every bad submission with the right status and admits good batches whole.

Each case builds a real signed tx, breaks one thing, and checks the status and that the mempool
is unchanged.
"""

from __future__ import annotations

import hashlib

import pytest

from node.admission import Admission, AdmissionError, SignatureVerifier
from node.client.identity import Account
from node.config import Limits
from node.mempool import Mempool
from proto import types_pb2

CHAIN = "adm-chain"
alice = Account.from_seed(b"alice")
stranger = Account.from_seed(b"stranger")


@pytest.fixture
def admission():
    verifier = SignatureVerifier(2, 10_000)
    gate = Admission(
        CHAIN,
        Limits(tx_bytes_max=2_000, request_txs_max=50),
        Mempool(100, 1_000_000),
        verifier,
        is_committed=lambda tx_id: tx_id == b"c" * 32,
        is_member=lambda sender: sender != stranger.public_key,
    )
    yield gate
    verifier.close()


def tx(account: Account = alice, nonce: int = 1, chain: str = CHAIN, **args) -> types_pb2.SignedTx:
    return account.build_tx(chain, "cash", "transfer", args or {"amount": 1}, nonce=nonce)


async def refused(gate: Admission, txs, status: str) -> str:
    with pytest.raises(AdmissionError) as info:
        await gate.admit(txs)
    assert info.value.status == status, info.value.message
    assert len(gate.mempool) == 0
    return info.value.message


async def test_good_batch_is_admitted_whole(admission) -> None:
    ids = await admission.admit([tx(nonce=i) for i in range(10)])
    assert len(ids) == 10 and len(admission.mempool) == 10


async def test_one_bad_signature_refuses_the_whole_batch(admission) -> None:
    bad = tx(nonce=99)
    bad.signature = bytes(64)
    message = await refused(admission, [tx(nonce=1), bad], "INVALID_ARGUMENT")
    assert "tx 1" in message and "signature" in message


async def test_a_body_checked_once_does_not_let_a_forged_signature_through(admission) -> None:
    """The verified cache is keyed by the signature too: the same body (the same tx id) with
    another signature is checked, and refused."""
    good = tx(nonce=5)
    unsigned = tx(nonce=6)
    unsigned.signature = bytes(64)
    await refused(admission, [good, unsigned], "INVALID_ARGUMENT")  # good is checked, cached
    assert admission.verifier.cache.has(hashlib.sha256(good.body).digest(), good.signature)
    forged = types_pb2.SignedTx(body=good.body, signature=bytes(64))
    message = await refused(admission, [forged], "INVALID_ARGUMENT")
    assert "signature" in message


async def test_signature_over_other_bytes_is_refused(admission) -> None:
    other = tx(nonce=2)
    forged = types_pb2.SignedTx(body=tx(nonce=3).body, signature=other.signature)
    await refused(admission, [forged], "INVALID_ARGUMENT")


async def test_garbage_body_wrong_chain_short_signature_and_zero_key(admission) -> None:
    await refused(admission, [types_pb2.SignedTx(body=b"\xff\xff", signature=bytes(64))],
                  "INVALID_ARGUMENT")
    assert "chain" in await refused(admission, [tx(chain="other")], "INVALID_ARGUMENT")
    short = tx()
    short.signature = b"x" * 10
    await refused(admission, [short], "INVALID_ARGUMENT")
    body = types_pb2.TxBody(chain_id=CHAIN, sender=bytes(32), contract="cash", method="x")
    zero = types_pb2.SignedTx(body=body.SerializeToString(), signature=bytes(64))
    await refused(admission, [zero], "INVALID_ARGUMENT")


async def test_duplicates_in_batch_mempool_and_committed(admission) -> None:
    one = tx(nonce=5)
    await refused(admission, [one, one], "ALREADY_EXISTS")
    await admission.admit([one])
    with pytest.raises(AdmissionError) as info:
        await admission.admit([one])
    assert info.value.status == "ALREADY_EXISTS"


async def test_sizes_and_counts_are_limited(admission) -> None:
    await refused(admission, [tx(memo="x" * 3_000)], "RESOURCE_EXHAUSTED")
    await refused(admission, [tx(nonce=i) for i in range(51)], "RESOURCE_EXHAUSTED")
    await refused(admission, [], "INVALID_ARGUMENT")


async def test_unknown_sender_is_permission_denied(admission) -> None:
    await refused(admission, [tx(account=stranger)], "PERMISSION_DENIED")


async def test_full_mempool_is_resource_exhausted(admission) -> None:
    admission.mempool = Mempool(3, 1_000_000)
    await admission.admit([tx(nonce=i) for i in range(3)])
    with pytest.raises(AdmissionError) as info:
        await admission.admit([tx(nonce=10)])
    assert info.value.status == "RESOURCE_EXHAUSTED" and "retry" in info.value.message


def test_pbft_genesis_with_fewer_than_four_validators_is_refused(tmp_path) -> None:
    """A 3-node PBFT network cannot tolerate a fault: genesis says so instead of the engine
    asserting at start-up."""
    from node.config import ConfigError
    from node.genesis import load_genesis
    from node.ops.localnet import MemberSpec, write_network

    net = write_network(str(tmp_path), nodes=3, consensus="pbft",
                        members=[MemberSpec("admin", ("admin",))])
    with pytest.raises(ConfigError, match="pbft needs"):
        load_genesis(net.genesis_path)
