"""The sample consortium (examples/consortium.toml) on four hosts, each a network namespace
with its own address: every node runs from its organisation's bundle inside its namespace, on
the same ports as the others (as on separate machines), and the clients run in the root
namespace, reaching the nodes at their hosts' addresses."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from cryptography import x509

from tests.multihost.hosted import HostedConsortium, chain_info, converged, wait_height

pytestmark = [pytest.mark.multihost, pytest.mark.e2e, pytest.mark.timeout(150)]

AMOUNT = 1_00


async def _transfer(consortium: HostedConsortium, node_id: str, count: int) -> None:
    """`count` cash transfers core -> tier1a submitted to node_id; each receipt is OK."""
    core, tier1a = consortium.account("core"), consortium.account("tier1a")
    txs = [core.build_tx(consortium.chain_id, "cash", "transfer",
                         {"to": tier1a.account_id, "amount": AMOUNT}) for _ in range(count)]
    async with consortium.client(node_id, reader=None) as client:
        receipts = await client.submit_and_wait(txs, timeout_ms=20_000)
    assert all(r.ok for r in receipts), [r.error_code for r in receipts]
    assert len(receipts) == count


async def _balance(consortium: HostedConsortium, node_id: str, member: str) -> int:
    async with consortium.client(node_id) as client:  # read as the auditor
        doc = await client.query("cash", "balance",
                                 {"account": consortium.account(member).account_id})
    return int(doc["balance"]) if isinstance(doc, dict) else int(doc)


def _metrics(addr: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(f"http://{addr}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _peer_up(text: str) -> dict[str, float]:
    return {peer: float(value) for peer, value in
            re.findall(r'^scfchain_peer_up\{peer="([^"]+)"\} (\S+)$', text, re.MULTILINE)}


async def _start(consortium: HostedConsortium) -> None:
    for node_id in consortium.nodes:
        consortium.start(node_id)
    await consortium.wait_healthy()


async def test_pbft_consortium_across_four_hosts(consortium: HostedConsortium) -> None:
    await _start(consortium)
    nodes = consortium.nodes
    # Four hosts, four addresses, one port: as on four machines.
    assert len({n.host.addr for n in nodes.values()}) == 4
    assert len({n.client_addr.rpartition(":")[2] for n in nodes.values()}) == 1
    tls = consortium.tls
    infos = {node_id: await chain_info(consortium.addr(node_id), tls) for node_id in nodes}
    assert {info.node_id for info in infos.values()} == set(nodes)
    assert {info.chain_id for info in infos.values()} == {"scf-consortium"}

    for node_id in nodes:  # each node takes txs (a backup forwards them to the primary)
        await _transfer(consortium, node_id, 5)
    height = await converged(consortium, list(nodes), within_s=30)
    assert height >= 2
    balances = {node_id: await _balance(consortium, node_id, "tier1a") for node_id in nodes}
    assert set(balances.values()) == {4 * 5 * AMOUNT}, balances

    # Every node's metrics, over HTTP from the root namespace: every peer link is up.
    for node_id, node in nodes.items():
        metrics_addr = f"{node.host.addr}:9101"
        ups = _peer_up(await asyncio.to_thread(_metrics, metrics_addr))
        assert ups == {peer: 1.0 for peer in nodes if peer != node_id}, (node_id, ups)


async def test_killed_host_restarts_and_catches_up(consortium: HostedConsortium,
                                                   tmp_path) -> None:
    """A host's node is killed; while it is down its organisation rotates its TLS certificate
    as docs/deploy.md says (`consortium csr --tls-only`, the CA's `consortium sign
    --genesis`); it restarts with the new one and catches up."""
    await _start(consortium)
    await _transfer(consortium, "node1", 2)
    primary = (await chain_info(consortium.addr("node1"), consortium.tls)).leader
    victim = next(n for n in ("node3", "node2", "node4") if n != primary)
    others = [n for n in consortium.nodes if n != victim]

    consortium.kill(victim)  # SIGKILL: the host's node dies mid-run
    for node_id in others:
        await _transfer(consortium, node_id, 4)  # three of four still commit
    behind = (await chain_info(consortium.addr(others[0]), consortium.tls)).height
    old_serial = _rotate_certificate(consortium, victim, str(tmp_path / "rotate"))

    started = time.monotonic()
    consortium.start(victim)  # from the same bundle directory, in the same namespace
    await consortium.wait_healthy([victim])
    await wait_height(consortium.addr(victim), behind, 30, consortium.tls)
    caught_up_s = time.monotonic() - started
    height = await converged(consortium, list(consortium.nodes), within_s=30)
    assert height > behind
    assert await _balance(consortium, victim, "tier1a") == (2 + 3 * 4) * AMOUNT
    assert caught_up_s < 30
    with open(os.path.join(consortium.nodes[victim].node_dir, "tls.crt"), "rb") as handle:
        assert x509.load_pem_x509_certificate(handle.read()).serial_number != old_serial


def _rotate_certificate(consortium: HostedConsortium, node_id: str, work: str) -> int:
    """The node's organisation makes a new TLS key and request, the founding CA signs it
    (checked against genesis), and the node's tls.key and tls.crt are replaced; returns the
    old certificate's serial number."""
    node = consortium.nodes[node_id]
    scfchain = [sys.executable, "-m", "node.ops.cli", "consortium"]
    subprocess.run([*scfchain, "csr", "--org", node.org, "--node", node_id, "--host",
                    node.host.addr, "--out", work, "--tls-only"], check=True, timeout=60,
                   capture_output=True)
    subprocess.run([*scfchain, "sign", "--ca", os.path.join(consortium.out, "ca"), "--csr",
                    os.path.join(work, "tls.csr"), "--out", os.path.join(work, "tls.crt"),
                    "--genesis", os.path.join(node.node_dir, "genesis.json")],
                   check=True, timeout=60, capture_output=True)
    with open(os.path.join(node.node_dir, "tls.crt"), "rb") as handle:
        old_serial = x509.load_pem_x509_certificate(handle.read()).serial_number
    for name in ("tls.key", "tls.crt"):
        os.replace(os.path.join(work, name), os.path.join(node.node_dir, name))
    return old_serial


async def test_certificate_without_the_node_id_is_refused(consortium: HostedConsortium) -> None:
    """node4's certificate is from the consortium CA and names its host, but not `node4`:
    the peers dial node4 with `node4` as the TLS name, so every handshake to it fails. The
    three others commit without it; node4 stays at height 0."""
    node4 = consortium.nodes["node4"]
    _replace_with_host_only_cert(consortium, node4.node_dir, node4.host.addr)
    await _start(consortium)
    others = ["node1", "node2", "node3"]
    await _transfer(consortium, "node1", 3)
    height = await converged(consortium, others, within_s=30)
    assert height >= 2
    assert (await chain_info(node4.client_addr, consortium.tls)).height == 0

    # The refusal as operators see it. node1's metrics: its link to node4 is down, the
    # others up. node4's log: gRPC's TLS layer names the name its certificate lacks (the
    # dialing peers log nothing above DEBUG about it; see the report in docs/deploy.md).
    node1_metrics = f"{consortium.nodes['node1'].host.addr}:9101"
    deadline = time.monotonic() + 10
    while True:
        ups = _peer_up(await asyncio.to_thread(_metrics, node1_metrics))
        if ups == {"node2": 1.0, "node3": 1.0, "node4": 0.0} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert ups == {"node2": 1.0, "node3": 1.0, "node4": 0.0}
    assert "No match found for server name: node4" in node4.log_text()


def _replace_with_host_only_cert(consortium: HostedConsortium, node_dir: str, addr: str) -> None:
    """A certificate signed by the consortium CA with CN node4 whose SANs name only its host
    (what a web-server habit would make), in place of the one the bundle holds."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_dir = os.path.join(consortium.out, "ca")
    with open(os.path.join(ca_dir, "ca.key"), "rb") as handle:
        ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    with open(os.path.join(ca_dir, "ca.crt"), "rb") as handle:
        ca_cert = x509.load_pem_x509_certificate(handle.read())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node4")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(addr)),
             x509.DNSName("scf.brightline-seats.example")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    with open(os.path.join(node_dir, "tls.crt"), "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(node_dir, "tls.key"), "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


async def test_pbft_with_30ms_one_way_delay_on_every_link(consortium: HostedConsortium) -> None:
    """Every inter-host link through the project's delay proxy (30 ms each way, 60 ms a round
    trip), as between data centres: the consortium still commits and agrees, and a tx waits
    at least PBFT's three one-way hops (pre-prepare, prepare, commit) for its receipt."""
    await consortium.delay_peer_links(30)
    await _start(consortium)
    await _transfer(consortium, "node1", 1)
    primary = (await chain_info(consortium.addr("node1"), consortium.tls)).leader
    latencies = []
    for _ in range(5):
        started = time.monotonic()
        await _transfer(consortium, primary, 1)
        latencies.append(time.monotonic() - started)
    assert min(latencies) >= 0.09, latencies
    for node_id in consortium.nodes:
        await _transfer(consortium, node_id, 3)
    await converged(consortium, list(consortium.nodes), within_s=30)
    balances = {n: await _balance(consortium, n, "tier1a") for n in consortium.nodes}
    assert set(balances.values()) == {(1 + 5 + 4 * 3) * AMOUNT}, balances
