"""The consortium's X.509 material: a CA and per-node certificates for mutual TLS on peer links.

ECDSA P-256 throughout: grpcio's TLS completes mutual TLS with P-256 certificates and fails the
handshake with Ed25519 ones (docs/architecture.md). Ed25519 remains the key type for signing txs and
consensus messages. Node certificates name the node id as CN and as a DNS SAN, plus 127.0.0.1
and `localhost`, so peers can check whom they reached.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class CertFiles:
    cert: str
    key: str


def _write_key(path: str, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: str, cert: x509.Certificate) -> None:
    with open(path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: str, name: str = "scfchain consortium CA") -> CertFiles:
    """A self-signed CA (kept if it already exists, so re-runs keep the same trust root)."""
    os.makedirs(directory, exist_ok=True)
    files = CertFiles(os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key"))
    if os.path.exists(files.cert) and os.path.exists(files.key):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files


def issue_node_cert(ca: CertFiles, node_id: str, directory: str) -> CertFiles:
    """A certificate for one node, usable as TLS server and client (mutual TLS)."""
    os.makedirs(directory, exist_ok=True)
    files = CertFiles(os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key"))
    if os.path.exists(files.cert) and os.path.exists(files.key):
        return files
    with open(ca.key, "rb") as handle:
        ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    with open(ca.cert, "rb") as handle:
        ca_cert = x509.load_pem_x509_certificate(handle.read())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(node_id),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(files.key, key)
    _write_cert(files.cert, cert)
    return files


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
