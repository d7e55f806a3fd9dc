"""Signed reads: every read of the client API carries the identity of the member asking.

A read (`Query`, `GetTx`, `GetBlock`, `Subscribe`) is signed by the member's Ed25519 key, the
same key its txs are signed with (account id = hex of the public key). The signature covers the
*read statement*:

    b"scfchain-read\\0" + chain_id + b"\\0" + full gRPC method name + b"\\0"
    + sha256(serialized request) + issued_at_ms (8 bytes, big-endian) + nonce (16 bytes)

and travels in four gRPC metadata entries: `scf-reader` (account id, hex), `scf-issued-at-ms`
(decimal), `scf-nonce` (32 hex digits) and `scf-signature-bin` (the 64-byte signature, binary).
The node takes a read whose time is within `window_ms` of its own clock (either way) and whose
nonce it has not seen from that reader in the window, so a captured read can be replayed
neither later nor (to the same node) within the window. Membership is judged on committed
state at each read: a member suspended on chain reads nothing from the next read on.

`read_metadata` (defined with the client SDK in node/client/identity.py, re-exported here)
builds the metadata; `ReadAuth.check` verifies it (the node).
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from contracts.runtime import ContractError
from node.client.identity import (  # the client's side, defined once for both
    GET_BLOCK,
    GET_TX,
    ISSUED_AT_KEY,
    NONCE_BYTES,
    NONCE_KEY,
    QUERY,
    READ_KEYS,
    READER_KEY,
    SIGNATURE_KEY,
    SUBSCRIBE,
    read_metadata,
    read_statement,
    verify_signature,
)

__all__ = [
    "GET_BLOCK", "GET_TX", "ISSUED_AT_KEY", "NONCE_BYTES", "NONCE_KEY", "QUERY", "READER_KEY",
    "READ_KEYS", "READ_WINDOW_MS", "SIGNATURE_KEY", "SUBSCRIBE", "ReadAuth", "ReadAuthError",
    "read_metadata", "read_statement",
]

log = logging.getLogger(__name__)

READ_WINDOW_MS = 30_000  # how far a read's issued_at may be from the node's clock, either way
SEEN_READS_MAX = 262_144  # nonces remembered at once (about 9,000 reads/s over a 30 s window)
SIGNED_METHODS = frozenset({QUERY, GET_TX, GET_BLOCK, SUBSCRIBE})

HOW_TO_SIGN = (
    "send the metadata scf-reader (your member account id, hex), scf-issued-at-ms (now, ms "
    "since the epoch), scf-nonce (16 random bytes, hex) and scf-signature-bin (Ed25519 over the "
    "read statement); in Python, LedgerClient(address, reader=account) does it (docs/"
    "client-api.md, 'Who may read')"
)

_ACCOUNT_ID = re.compile(r"[0-9a-f]{64}")
_NONCE_HEX = re.compile(r"[0-9a-f]{32}")
_DECIMAL = re.compile(r"[0-9]{1,20}")

Metadata = Sequence[tuple[str, str | bytes]]
R = TypeVar("R")


class ReadAuthError(Exception):
    """A read the node refuses: `status` is the gRPC status name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _unauthenticated(message: str) -> ReadAuthError:
    return ReadAuthError("UNAUTHENTICATED", message)


def _fields(metadata: Iterable[Any]) -> dict[str, str | bytes]:
    """The four read entries of the call's metadata; any other entry is ignored."""
    found: dict[str, str | bytes] = {}
    for item in metadata:
        key, value = item[0], item[1]
        if key not in READ_KEYS:
            continue
        if key in found:
            raise _unauthenticated(f"signed read: {key} is given more than once")
        found[key] = value
    return found


class ReadAuth(Generic[R]):
    """Checks signed reads for one chain. `membership(account_id)` answers who the reader is on
    committed state (e.g. a `contracts.visibility.Reader`) and raises a ContractError (or
    ReadAuthError) for an account that is no member or is suspended."""

    def __init__(
        self,
        chain_id: str,
        membership: Callable[[str], R],
        *,
        wall_clock_ms: Callable[[], int],
        window_ms: int = READ_WINDOW_MS,
        seen_max: int = SEEN_READS_MAX,
    ) -> None:
        self.chain_id = chain_id
        self.membership = membership
        self.wall_clock_ms = wall_clock_ms
        self.window_ms = window_ms
        self.seen_max = seen_max
        self._seen: set[tuple[str, bytes]] = set()
        self._expiry: list[tuple[int, str, bytes]] = []  # (drop after ms, reader, nonce)

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    def check(self, method: str, request: Message, metadata: Iterable[Any]) -> str:
        """The reader's account id, once the read is signed by an active member; else raises
        ReadAuthError (UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED)."""
        account, _ = self.authenticate(method, request, metadata)
        return account

    def authenticate(
        self, method: str, request: Message, metadata: Iterable[Any]
    ) -> tuple[str, R]:
        """(account id, what `membership` answered for it) for a well-signed read."""
        found = _fields(metadata)
        if not found:
            raise _unauthenticated(f"reads on this node are signed by a member: {HOW_TO_SIGN}")
        missing = [key for key in READ_KEYS if key not in found]
        if missing:
            raise _unauthenticated(f"signed read without {', '.join(missing)}: {HOW_TO_SIGN}")
        account, issued_at_ms, nonce, signature = self._parse(found)
        now = self.wall_clock_ms()
        if abs(issued_at_ms - now) > self.window_ms:
            raise _unauthenticated(
                f"stale or future-dated signed read (issued at {issued_at_ms}, node time {now}; "
                f"at most {self.window_ms} ms apart): sign each read when you send it, and "
                "check your clock"
            )
        statement = read_statement(self.chain_id, method, request, issued_at_ms, nonce)
        if not verify_signature(bytes.fromhex(account), signature, statement):
            raise _unauthenticated(
                f"the signed read's signature does not verify for reader {account} (signed "
                f"for another chain than {self.chain_id}, another method than {method}, "
                "another request, or by another key)"
            )
        self._remember(account, nonce, issued_at_ms, now)
        try:
            who = self.membership(account)
        except ContractError as exc:  # no member, or suspended
            message = exc.message if exc.code == "PERMISSION_DENIED" else str(exc)
            raise ReadAuthError("PERMISSION_DENIED", message) from None
        return account, who

    def _parse(self, found: dict[str, str | bytes]) -> tuple[str, int, bytes, bytes]:
        reader, issued, nonce, signature = (found[key] for key in READ_KEYS)
        if not isinstance(reader, str) or not _ACCOUNT_ID.fullmatch(reader):
            raise _unauthenticated(
                f"{READER_KEY} must be an account id: 64 lower-case hex digits"
            )
        if not isinstance(issued, str) or not _DECIMAL.fullmatch(issued) or int(issued) >= 2**64:
            raise _unauthenticated(f"{ISSUED_AT_KEY} must be milliseconds since the epoch")
        if not isinstance(nonce, str) or not _NONCE_HEX.fullmatch(nonce):
            raise _unauthenticated(
                f"{NONCE_KEY} must be {NONCE_BYTES} bytes as {2 * NONCE_BYTES} lower-case hex "
                "digits"
            )
        if not isinstance(signature, bytes) or len(signature) != 64:
            raise _unauthenticated(f"{SIGNATURE_KEY} must be a 64-byte Ed25519 signature")
        return reader, int(issued), bytes.fromhex(nonce), signature

    def _remember(self, account: str, nonce: bytes, issued_at_ms: int, now: int) -> None:
        """Refuse a nonce seen from this reader within the window; remember it until its read
        would be stale anyway (issued_at + window), and no longer."""
        while self._expiry and self._expiry[0][0] < now:
            _, old_reader, old_nonce = heapq.heappop(self._expiry)
            self._seen.discard((old_reader, old_nonce))
        entry = (account, nonce)
        if entry in self._seen:
            raise _unauthenticated(
                f"replayed signed read (nonce {nonce.hex()} from {account} was already used); "
                "sign each read with a fresh nonce"
            )
        if len(self._seen) >= self.seen_max:
            # Dropping live entries would let their reads be replayed: refuse instead.
            log.warning("signed reads: %d nonces within the window; refusing reads",
                        len(self._seen))
            raise ReadAuthError(
                "RESOURCE_EXHAUSTED", "too many signed reads on this node; retry in a moment"
            )
        self._seen.add(entry)
        heapq.heappush(self._expiry, (issued_at_ms + self.window_ms, account, nonce))
