"""Signed reads (node/read_auth.py): the metadata a client sends and what the node refuses.

A real `ReadAuth` over a fake clock and a membership table standing in for committed state;
the metadata is what `read_metadata` (and so `LedgerClient(reader=...)`) sends.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from contracts.runtime import ContractError
from node.client.identity import Account
from node.read_auth import (
    GET_BLOCK,
    NONCE_KEY,
    QUERY,
    READ_WINDOW_MS,
    SIGNATURE_KEY,
    ReadAuth,
    ReadAuthError,
    read_metadata,
    read_statement,
)
from proto import ledger_pb2

CHAIN = "unit-chain"
NOW = 1_700_000_000_000
MEMBER = Account.from_seed(b"member")
SUSPENDED = Account.from_seed(b"suspended")
STRANGER = Account.from_seed(b"stranger")
REQUEST = ledger_pb2.QueryRequest(contract="cash", view="balance",
                                  args_json='{"account": "' + "ab" * 32 + '"}')


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def membership(account: str) -> str:
    """Committed state in miniature: one active member, one suspended, nobody else."""
    if account == MEMBER.account_id:
        return "reader:" + account[:8]
    if account == SUSPENDED.account_id:
        raise ContractError("PERMISSION_DENIED", f"member {account} is suspended")
    raise ContractError("PERMISSION_DENIED", f"{account} is not a consortium member")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(clock: Clock) -> ReadAuth[str]:
    return ReadAuth(CHAIN, membership, wall_clock_ms=clock)


def signed(account: Account = MEMBER, *, request: Any = REQUEST, method: str = QUERY,
           chain_id: str = CHAIN, issued_at_ms: int = NOW,
           nonce: bytes | None = None) -> list[tuple[str, str | bytes]]:
    return read_metadata(account, chain_id, method, request, issued_at_ms=issued_at_ms,
                         nonce=nonce)


def refused(auth: ReadAuth[str], metadata: Any, *, request: Any = REQUEST,
            method: str = QUERY) -> ReadAuthError:
    with pytest.raises(ReadAuthError) as caught:
        auth.check(method, request, metadata)
    return caught.value


def test_a_member_signed_read_names_the_reader(auth: ReadAuth[str]) -> None:
    assert auth.check(QUERY, REQUEST, signed()) == MEMBER.account_id
    account, who = auth.authenticate(QUERY, REQUEST, signed())
    assert (account, who) == (MEMBER.account_id, "reader:" + MEMBER.account_id[:8])


def test_the_metadata_and_the_statement_are_as_documented() -> None:
    nonce = bytes(range(16))
    metadata = dict(signed(nonce=nonce))
    assert metadata["scf-reader"] == MEMBER.account_id
    assert metadata["scf-issued-at-ms"] == str(NOW)
    assert metadata["scf-nonce"] == nonce.hex()
    statement = read_statement(CHAIN, QUERY, REQUEST, NOW, nonce)
    assert statement == (b"scfchain-read\0" + CHAIN.encode() + b"\0/scfchain.Ledger/Query\0"
                         + hashlib.sha256(REQUEST.SerializeToString()).digest()
                         + NOW.to_bytes(8, "big") + nonce)
    assert isinstance(metadata["scf-signature-bin"], bytes)
    assert len(metadata["scf-signature-bin"]) == 64


def test_a_tampered_request_is_refused(auth: ReadAuth[str]) -> None:
    other = ledger_pb2.QueryRequest(contract="cash", view="balance",
                                    args_json='{"account": "' + "cd" * 32 + '"}')
    error = refused(auth, signed(), request=other)
    assert error.status == "UNAUTHENTICATED"
    assert "does not verify" in error.message


def test_a_read_signed_for_another_method_is_refused(auth: ReadAuth[str]) -> None:
    block = ledger_pb2.GetBlockRequest(height=3)
    metadata = signed(request=block, method=GET_BLOCK)
    assert auth.check(GET_BLOCK, block, metadata) == MEMBER.account_id
    error = refused(auth, signed(request=block, method=GET_BLOCK), request=block, method=QUERY)
    assert error.status == "UNAUTHENTICATED"


def test_a_read_signed_for_another_chain_is_refused(auth: ReadAuth[str]) -> None:
    error = refused(auth, signed(chain_id="other-chain"))
    assert error.status == "UNAUTHENTICATED"
    assert f"another chain than {CHAIN}" in error.message


def test_a_forged_signature_is_refused(auth: ReadAuth[str]) -> None:
    metadata = [(k, v) for k, v in signed() if k != SIGNATURE_KEY]
    metadata.append((SIGNATURE_KEY, bytes(64)))
    assert refused(auth, metadata).status == "UNAUTHENTICATED"
    # Another member's key under this member's name:
    stolen = [(k, v) for k, v in signed(STRANGER) if k != "scf-reader"]
    stolen.append(("scf-reader", MEMBER.account_id))
    assert refused(auth, stolen).status == "UNAUTHENTICATED"


def test_a_stale_read_is_refused(auth: ReadAuth[str], clock: Clock) -> None:
    issued = NOW - READ_WINDOW_MS - 1
    error = refused(auth, signed(issued_at_ms=issued))
    assert error.status == "UNAUTHENTICATED"
    assert error.message.startswith(
        f"stale or future-dated signed read (issued at {issued}, node time {NOW}")
    # At the edge of the window it is still taken.
    assert auth.check(QUERY, REQUEST, signed(issued_at_ms=NOW - READ_WINDOW_MS))


def test_a_future_dated_read_is_refused(auth: ReadAuth[str]) -> None:
    issued = NOW + READ_WINDOW_MS + 1
    error = refused(auth, signed(issued_at_ms=issued))
    assert error.status == "UNAUTHENTICATED"
    assert f"issued at {issued}, node time {NOW}" in error.message
    assert auth.check(QUERY, REQUEST, signed(issued_at_ms=NOW + READ_WINDOW_MS))


def test_the_window_is_configurable(clock: Clock) -> None:
    narrow = ReadAuth(CHAIN, membership, wall_clock_ms=clock, window_ms=1_000)
    assert refused(narrow, signed(issued_at_ms=NOW - 1_001)).status == "UNAUTHENTICATED"
    assert narrow.check(QUERY, REQUEST, signed(issued_at_ms=NOW - 1_000))


def test_a_replayed_read_is_refused(auth: ReadAuth[str], clock: Clock) -> None:
    metadata = signed()
    assert auth.check(QUERY, REQUEST, metadata) == MEMBER.account_id
    error = refused(auth, metadata)
    assert error.status == "UNAUTHENTICATED"
    assert error.message.startswith("replayed signed read")
    # Still refused later in the window; once past it, it is refused as stale.
    clock.now = NOW + READ_WINDOW_MS
    assert refused(auth, metadata).message.startswith("replayed signed read")
    clock.now = NOW + READ_WINDOW_MS + 1
    assert refused(auth, metadata).message.startswith("stale or future-dated signed read")


def test_the_replay_cache_forgets_reads_past_the_window(auth: ReadAuth[str],
                                                        clock: Clock) -> None:
    for step in range(100):
        clock.now = NOW + step * 1_000
        auth.check(QUERY, REQUEST, signed(issued_at_ms=clock.now))
    # Only the reads issued within the last window are still remembered.
    assert auth.seen_count == READ_WINDOW_MS // 1_000 + 1


def test_a_full_replay_cache_refuses_rather_than_forgets(clock: Clock) -> None:
    small = ReadAuth(CHAIN, membership, wall_clock_ms=clock, seen_max=3)
    for _ in range(3):
        small.check(QUERY, REQUEST, signed())
    assert refused(small, signed()).status == "RESOURCE_EXHAUSTED"
    clock.now = NOW + READ_WINDOW_MS + 1  # the first three are stale now: room again
    assert small.check(QUERY, REQUEST, signed(issued_at_ms=clock.now))


def test_the_same_nonce_from_two_readers_is_two_reads(clock: Clock) -> None:
    both = ReadAuth(CHAIN, lambda account: account, wall_clock_ms=clock)
    nonce = b"n" * 16
    assert both.check(QUERY, REQUEST, signed(MEMBER, nonce=nonce)) == MEMBER.account_id
    assert both.check(QUERY, REQUEST, signed(STRANGER, nonce=nonce)) == STRANGER.account_id


def test_missing_metadata_says_how_to_sign(auth: ReadAuth[str]) -> None:
    error = refused(auth, [("user-agent", "x")])
    assert error.status == "UNAUTHENTICATED"
    assert "reads on this node are signed by a member" in error.message
    assert "LedgerClient(address, reader=account)" in error.message
    partial = [(k, v) for k, v in signed() if k != NONCE_KEY]
    error = refused(auth, partial)
    assert error.status == "UNAUTHENTICATED"
    assert error.message.startswith("signed read without scf-nonce")


@pytest.mark.parametrize("key,value,says", [
    ("scf-reader", "AB" * 32, "64 lower-case hex"),
    ("scf-reader", "ab" * 31, "64 lower-case hex"),
    ("scf-issued-at-ms", "-5", "milliseconds since the epoch"),
    ("scf-issued-at-ms", "9" * 21, "milliseconds since the epoch"),
    ("scf-nonce", "zz" * 16, "16 bytes"),
    ("scf-nonce", "ab" * 8, "16 bytes"),
    ("scf-signature-bin", b"x" * 10, "64-byte"),
])
def test_malformed_metadata_is_refused(auth: ReadAuth[str], key: str, value: Any,
                                       says: str) -> None:
    metadata = [(k, value if k == key else v) for k, v in signed()]
    error = refused(auth, metadata)
    assert error.status == "UNAUTHENTICATED"
    assert says in error.message


def test_an_entry_given_twice_is_refused(auth: ReadAuth[str]) -> None:
    metadata = [*signed(), ("scf-reader", STRANGER.account_id)]
    error = refused(auth, metadata)
    assert (error.status, error.message) == (
        "UNAUTHENTICATED", "signed read: scf-reader is given more than once")


def test_an_unknown_key_is_permission_denied(auth: ReadAuth[str]) -> None:
    error = refused(auth, signed(STRANGER))
    assert error.status == "PERMISSION_DENIED"
    assert "is not a consortium member" in error.message


def test_a_suspended_member_is_permission_denied(auth: ReadAuth[str]) -> None:
    error = refused(auth, signed(SUSPENDED))
    assert error.status == "PERMISSION_DENIED"
    assert "suspended" in error.message
