"""`verify_signature` (libsodium) against signatures made by `Account` (OpenSSL): every honest
signature passes, and every tampered or malformed one fails."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from node.client.identity import Account, verify_signature

# The order of the Ed25519 group: S + L encodes the same scalar non-canonically.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
ACCOUNT = Account.from_seed(b"verify-signature-test")


@settings(max_examples=200, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=8 * 64 - 1))
def test_honest_signatures_pass_and_any_flipped_bit_fails(message: bytes, flip: int) -> None:
    signature = ACCOUNT.sign(message)
    assert verify_signature(ACCOUNT.public_key, signature, message)
    tampered = bytearray(signature)
    tampered[flip // 8] ^= 1 << (flip % 8)
    assert not verify_signature(ACCOUNT.public_key, bytes(tampered), message)
    assert not verify_signature(ACCOUNT.public_key, signature, message + b"x")


def test_another_key_wrong_lengths_and_non_canonical_s_fail() -> None:
    message = b"pay 100 to the supplier"
    signature = ACCOUNT.sign(message)
    other = Account.from_seed(b"someone else")
    assert not verify_signature(other.public_key, signature, message)
    assert not verify_signature(ACCOUNT.public_key, signature[:63], message)
    assert not verify_signature(ACCOUNT.public_key, signature + b"\x00", message)
    assert not verify_signature(ACCOUNT.public_key[:31], signature, message)
    s = int.from_bytes(signature[32:], "little") + GROUP_ORDER
    assert s < 2**256
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not verify_signature(ACCOUNT.public_key, malleated, message)
    assert not verify_signature(bytes(32), signature, message)  # a small-order key
