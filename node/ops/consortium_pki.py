"""Node TLS certificates for a consortium across hosts: issued by the founding CA with the
node's host names and addresses in the SANs, or requested by an organisation that keeps its
keys (a CSR) and signed by the CA after checking what it names.

The consortium CA is `node/tls.py`'s (`make_ca`), and a certificate made here has the shape of
`issue_node_cert`'s (ECDSA P-256, CN and DNS SAN the node id, server and client auth), so peers
and governance (`contracts/governance_actions.py: check_certificate`) take it the same way. The
SANs add the node's hosts instead of `localhost`/127.0.0.1.

What a peer checks: the transport dials a peer with the TLS target name set to the peer's node
id (`grpc.ssl_target_name_override`), so a handshake succeeds only when the certificate carries
that node id as a DNS SAN; the host SANs are for anyone who reaches the node by its address.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.tls import VALID_DAYS, CertFiles

NODE_ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # one DNS label
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class CertificateError(Exception):
    """A certificate or request cannot be issued or signed; the message says why."""


@dataclass(frozen=True, slots=True)
class CertNames:
    """What a certificate or request names: its CN, organisation, DNS and IP SANs."""

    common_name: str
    organisation: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]

    def covers(self, host: str) -> bool:
        """Whether `host` (a name or an address) is among the SANs."""
        if is_ip(host):
            return str(ipaddress.ip_address(host)) in self.ips
        return host.lower() in (name.lower() for name in self.dns)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def valid_host(host: str) -> bool:
    """An IP address or a DNS name (labels of letters, digits and hyphens)."""
    if is_ip(host):
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_LABEL_RE.match(label) for label in name.split("."))


def _sans(node_id: str, hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(node_id)]
    for host in hosts:
        if not valid_host(host):
            raise CertificateError(f"{host!r} is neither an IP address nor a DNS name")
        name: x509.GeneralName = (
            x509.IPAddress(ipaddress.ip_address(host)) if is_ip(host) else x509.DNSName(host)
        )
        if name not in names:
            names.append(name)
    return x509.SubjectAlternativeName(names)


def _subject(node_id: str, org: str) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, node_id)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_private(path: str, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never overwrite a key
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _load_ca(ca: CertFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        with open(ca.cert, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        with open(ca.key, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read the CA ({ca.cert}, {ca.key}): {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{ca.key} is not an ECDSA key")
    return cert, key


def ca_files(directory: str) -> CertFiles:
    """The CA that `make_ca(directory)` made: `ca.crt` and `ca.key` in it."""
    return CertFiles(os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key"))


def _certificate(
    ca: CertFiles,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    sans: x509.SubjectAlternativeName,
    days: int,
) -> x509.Certificate:
    ca_cert, ca_key = _load_ca(ca)
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(sans, critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_host_cert(
    ca: CertFiles,
    node_id: str,
    directory: str,
    hosts: Sequence[str],
    *,
    org: str = "",
    days: int = VALID_DAYS,
) -> CertFiles:
    """A new TLS key (`tls.key`) and a certificate from the CA (`tls.crt`) in `directory` for
    node `node_id` on `hosts` (names or addresses, all in the SANs). Never overwrites a key."""
    if not NODE_ID_RE.match(node_id):
        raise CertificateError(f"node id {node_id!r} is not a DNS label (a-z, 0-9, '-')")
    os.makedirs(directory, exist_ok=True)
    files = CertFiles(os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key"))
    sans = _sans(node_id, hosts)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(ca, _subject(node_id, org), key.public_key(), sans, days)
    _write_private(files.key, key)
    with open(files.cert, "wb") as handle:
        handle.write(pem(cert))
    return files


def make_csr(
    node_id: str, hosts: Sequence[str], key_path: str, csr_path: str, *, org: str = ""
) -> None:
    """A new TLS key at `key_path` (mode 0600, never overwritten) and a certificate signing
    request at `csr_path` naming the node (CN, DNS SAN), its organisation and its hosts."""
    if not NODE_ID_RE.match(node_id):
        raise CertificateError(f"node id {node_id!r} is not a DNS label (a-z, 0-9, '-')")
    if not hosts:
        raise CertificateError("a node's certificate names at least one host")
    sans = _sans(node_id, hosts)
    for path in (key_path, csr_path):
        if os.path.exists(path):
            raise CertificateError(f"{path} exists; not overwriting it")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(node_id, org))
        .add_extension(sans, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    with open(csr_path, "wb") as handle:
        handle.write(csr.public_bytes(serialization.Encoding.PEM))


def names_of(item: x509.Certificate | x509.CertificateSigningRequest) -> CertNames:
    cns = item.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = item.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    try:
        san = item.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    return CertNames(
        common_name=str(cns[0].value) if cns else "",
        organisation=str(orgs[0].value) if orgs else "",
        dns=dns,
        ips=ips,
    )


def load_csr(data: bytes, source: str = "the request") -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CertificateError(f"{source} is not a PEM certificate signing request") from exc
    if not csr.is_signature_valid:
        raise CertificateError(f"{source}: its signature does not verify")
    return csr


def check_request(
    csr: x509.CertificateSigningRequest,
    *,
    node_id: str | None = None,
    hosts: Sequence[str] = (),
    org: str | None = None,
) -> CertNames:
    """What a CSR names, refused (CertificateError) unless it is fit for a peer certificate:
    a P-256 key, a CN that is a node id and is also a DNS SAN, only DNS and IP SANs, and (when
    given) the expected node id, organisation and every expected host among its SANs."""
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CertificateError("the request's key is not ECDSA P-256 (peer TLS needs P-256)")
    names = names_of(csr)
    if not NODE_ID_RE.match(names.common_name):
        raise CertificateError(f"the request's CN {names.common_name!r} is not a node id")
    if node_id is not None and names.common_name != node_id:
        raise CertificateError(
            f"the request is for node {names.common_name!r}, not {node_id!r}"
        )
    if names.common_name not in names.dns:
        raise CertificateError(
            f"the request's SANs {sorted(names.dns)} lack its node id {names.common_name!r} "
            f"(peers check that name)"
        )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertificateError("the request has no subjectAltName") from None
    for general in san:
        if not isinstance(general, x509.DNSName | x509.IPAddress):
            raise CertificateError(f"the request names {general!r}; only DNS and IP SANs")
    for dns_name in names.dns:
        if not valid_host(dns_name):
            raise CertificateError(f"the request's SAN {dns_name!r} is not a DNS name")
    missing = [host for host in hosts if not names.covers(host)]
    if missing:
        raise CertificateError(
            f"the request for {names.common_name!r} does not name host(s) {missing} "
            f"(it names {sorted(names.dns + names.ips)})"
        )
    if org is not None and names.organisation and names.organisation != org:
        raise CertificateError(
            f"the request is from organisation {names.organisation!r}, not {org!r}"
        )
    return names


def sign_request(
    ca: CertFiles,
    csr: x509.CertificateSigningRequest,
    *,
    node_id: str | None = None,
    hosts: Sequence[str] = (),
    org: str | None = None,
    days: int = VALID_DAYS,
) -> x509.Certificate:
    """The CA's certificate for a checked request (`check_request`): its subject and SANs
    as requested, for server and client auth, not a CA."""
    check_request(csr, node_id=node_id, hosts=hosts, org=org)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return _certificate(ca, csr.subject, key, san, days)


def load_cert(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as handle:
            return x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc}") from exc
