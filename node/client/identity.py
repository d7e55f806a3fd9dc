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

from node.client.sigcheck import (  # noqa: F401 - re-exported: the client's public names
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    is_weak_public_key,
    verify_signature,
)
from proto import types_pb2


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
