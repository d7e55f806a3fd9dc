"""Keys and signed transactions: Ed25519 accounts, PEM files, building and checking txs, and
the statement a member signs to read (`read_metadata`).

The signature covers the exact serialized `TxBody` bytes and `tx_id = sha256(body)`, so no one
ever re-serializes to verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from proto import types_pb2

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def tx_id_of(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


@dataclass(frozen=True, slots=True)
class Account:
    """A signing identity: an Ed25519 private key and the account id derived from it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Account:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Account:
        """Deterministic keys for tests and benchmarks (32-byte seed)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @classmethod
    def load(cls, path: str) -> Account:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)

    def save(self, path: str) -> None:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def account_id(self) -> str:
        return self.public_key.hex()

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def build_tx(
        self,
        chain_id: str,
        contract: str,
        method: str,
        args: Mapping[str, Any],
        nonce: int | None = None,
    ) -> types_pb2.SignedTx:
        body = types_pb2.TxBody(
            chain_id=chain_id,
            sender=self.public_key,
            nonce=int.from_bytes(os.urandom(8), "big") if nonce is None else nonce,
            contract=contract,
            method=method,
            args=json.dumps(dict(args), sort_keys=True, separators=(",", ":")).encode(),
        ).SerializeToString()
        return types_pb2.SignedTx(body=body, signature=self.sign(body))


# Encodings of the small-order points of edwards25519 (libsodium's blocklist), compared with
# the sign bit cleared: a key among them could "sign" many messages at once.
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,
        "01" + "00" * 31,
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ec" + "ff" * 30 + "7f",
        "ed" + "ff" * 30 + "7f",
        "ee" + "ff" * 30 + "7f",
    )
)


def is_weak_public_key(public_key: bytes) -> bool:
    """A key of the wrong size or of small order, refused before any signature check."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        return True
    return public_key[:31] + bytes([public_key[31] & 0x7F]) in _SMALL_ORDER


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when signature is a valid Ed25519 signature by public_key over message.

    Verified with libsodium (PyNaCl) rather than OpenSSL: on this project's 2-core machine it
    takes 68-90 us per check against OpenSSL's 130-150 us (two at once: 17,700 checks/s against
    11,300). A node runs these checks in worker processes (node/verify_pool.py says why not
    threads). libsodium is the stricter of the two (it also refuses small-order R and
    non-canonical keys); every node runs the same check, so they all agree on every signature.
    """
    if is_weak_public_key(public_key) or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Signed reads: what a member signs to read (the node checks it in node/read_auth.py).

READ_DOMAIN = b"scfchain-read\0"
NONCE_BYTES = 16

READER_KEY = "scf-reader"  # gRPC metadata: the account id, hex
ISSUED_AT_KEY = "scf-issued-at-ms"  # decimal milliseconds since the epoch
NONCE_KEY = "scf-nonce"  # 16 bytes, lower-case hex
SIGNATURE_KEY = "scf-signature-bin"  # the 64-byte Ed25519 signature (binary metadata)
READ_KEYS = (READER_KEY, ISSUED_AT_KEY, NONCE_KEY, SIGNATURE_KEY)

LEDGER_SERVICE = "scfchain.Ledger"
QUERY = f"/{LEDGER_SERVICE}/Query"
GET_TX = f"/{LEDGER_SERVICE}/GetTx"
GET_BLOCK = f"/{LEDGER_SERVICE}/GetBlock"
SUBSCRIBE = f"/{LEDGER_SERVICE}/Subscribe"


def read_statement(
    chain_id: str, method: str, request: Message, issued_at_ms: int, nonce: bytes
) -> bytes:
    """The bytes a member signs for one read: the domain, the chain, the full gRPC method name,
    the sha256 of the serialized request, when (8 bytes, big-endian) and a 16-byte nonce."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a read nonce is {NONCE_BYTES} bytes, got {len(nonce)}")
    request_hash = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
    return b"".join((
        READ_DOMAIN,
        chain_id.encode(),
        b"\0",
        method.encode(),
        b"\0",
        request_hash,
        issued_at_ms.to_bytes(8, "big"),
        nonce,
    ))


def read_metadata(
    account: Account,
    chain_id: str,
    method: str,
    request: Message,
    *,
    issued_at_ms: int | None = None,
    nonce: bytes | None = None,
) -> list[tuple[str, str | bytes]]:
    """The gRPC metadata that signs one read as `account` (`method`: e.g. QUERY), issued now
    with a random nonce unless they are given."""
    if issued_at_ms is None:
        issued_at_ms = time.time_ns() // 1_000_000
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    signature = account.sign(read_statement(chain_id, method, request, issued_at_ms, nonce))
    return [
        (READER_KEY, account.account_id),
        (ISSUED_AT_KEY, str(issued_at_ms)),
        (NONCE_KEY, nonce.hex()),
        (SIGNATURE_KEY, signature),
    ]
