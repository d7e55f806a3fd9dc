"""consortium.toml and the per-organisation bundles (`scfchain consortium init|check|csr|sign`):
parsing the sample, refusing bad descriptions with messages that name the fault, what each
bundle holds (and that it holds no other organisation's private key), the certificates' SANs,
and organisations that keep their keys (CSR, signing, checks)."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from contracts.governance_actions import check_certificate
from node.client.identity import Account
from node.config import load_config
from node.genesis import load_genesis
from node.ops.cli import main as cli_main
from node.ops.consortium import ConsortiumError, load_consortium, parse_consortium
from node.ops.consortium_bundles import write_bundles
from node.ops.consortium_pki import (
    CertificateError,
    ca_files,
    check_request,
    load_csr,
    make_csr,
    names_of,
    sign_request,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "examples", "consortium.toml")


def _text(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def sample_doc() -> dict[str, Any]:
    with open(SAMPLE, "rb") as handle:
        return tomllib.load(handle)


def small_doc() -> dict[str, Any]:
    """Four organisations, a node each on its own IP host, a member each."""
    orgs = []
    for index, (name, role) in enumerate(
        [("core", "core_enterprise"), ("bank", "financier"), ("factor", "financier"),
         ("audit", "auditor")], start=1,
    ):
        orgs.append({
            "name": name,
            "nodes": [{"id": f"node{index}", "host": f"10.9.0.{index}", "client_port": 7001,
                       "peer_port": 7002, "metrics_port": 9101}],
            "members": [{"name": name, "roles": [role], "balance": 1000 * index}],
        })
    return {
        "chain": {"chain_id": "scf-test", "block": {"interval_ms": 20}},
        "consensus": {"kind": "pbft", "params": {"view_change_timeout_ms": 3000}},
        "committee": {"threshold": 2, "members": [{"name": "core", "weight": 1},
                                                  {"name": "bank", "weight": 1}]},
        "orgs": orgs,
    }


# ---------------------------------------------------------------------------------------------
# Parsing


def test_the_sample_parses_as_the_sample_consortium() -> None:
    from node.ops.sample_consortium import SAMPLE_MEMBERS

    spec = load_consortium(SAMPLE)
    assert spec.consensus == "pbft" and spec.chain_id == "scf-consortium"
    assert [n.node_id for n in spec.nodes] == ["node1", "node2", "node3", "node4"]
    assert [n.org for n in spec.nodes] == ["core", "bank", "factor", "tier1a"]
    by_name = {m.name: m for m in spec.members}
    assert {(m.name, m.role, m.balance) for m in SAMPLE_MEMBERS} == {
        (m.name, m.roles[0], m.balance) for m in by_name.values()}
    assert spec.committee == (("core", 1), ("bank", 1), ("factor", 1))
    assert spec.committee_threshold == 2
    assert spec.node_options == {"log_format": "json", "snapshots.interval": 500}
    node1 = spec.nodes[0]
    assert node1.peer_addr == "scf.apex-motors.example:7002"
    assert node1.addr(node1.client_port, bind=True) == "0.0.0.0:7001"  # a DNS host: every IP


def test_an_ip_host_binds_its_address_and_listen_overrides() -> None:
    doc = small_doc()
    spec = parse_consortium(doc)
    assert spec.nodes[0].addr(7001, bind=True) == "10.9.0.1:7001"
    doc["orgs"][0]["nodes"][0]["listen"] = "0.0.0.0"
    assert parse_consortium(doc).nodes[0].addr(7001, bind=True) == "0.0.0.0:7001"
    doc["orgs"][0]["nodes"][0]["host"] = "fd00::1"
    assert parse_consortium(doc).nodes[0].peer_addr == "[fd00::1]:7002"


def _mutated(change) -> dict[str, Any]:
    doc = copy.deepcopy(small_doc())
    change(doc)
    return doc


def _node(doc, org=0):
    return doc["orgs"][org]["nodes"][0]


REFUSALS = [
    ("duplicate node id", lambda d: _node(d, 1).update(id="node1"),
     "node id 'node1' is used twice (organisations 'core' and 'bank')"),
    ("same host and port", lambda d: _node(d, 1).update(host="10.9.0.1"),
     "nodes 'node1' and 'node2' both use port 7001 on host 10.9.0.1"),
    ("a node's own ports", lambda d: _node(d).update(peer_port=7001), "its ports must differ"),
    ("port out of range", lambda d: _node(d).update(peer_port=70000),
     "node 'node1': peer_port must be an integer in 1..65535"),
    ("unknown role", lambda d: d["orgs"][0]["members"][0].update(roles=["king"]),
     "member 'core': unknown role(s) ['king']"),
    ("committee member not a member",
     lambda d: d["committee"]["members"].append({"name": "ghost", "weight": 1}),
     "[committee]: 'ghost' is not a member of any organisation"),
    ("committee member twice",
     lambda d: d["committee"]["members"].append({"name": "core", "weight": 1}),
     "[committee]: 'core' is listed twice"),
    ("threshold above the total weight", lambda d: d["committee"].update(threshold=3),
     "[committee]: threshold must be an integer in 1..2"),
    ("no committee", lambda d: d.pop("committee"), "consortium.toml: missing ['committee']"),
    ("pbft with three nodes", lambda d: d["orgs"][3].pop("nodes"),
     "pbft needs n = 3f + 1 >= 4 nodes"),
    ("solo", lambda d: d["consensus"].update(kind="solo"), "kind must be one of"),
    ("unknown consensus param", lambda d: d["consensus"]["params"].update(view_timeout=1),
     "unknown pbft param(s) ['view_timeout']"),
    ("duplicate member", lambda d: d["orgs"][1]["members"].append(
        {"name": "core", "roles": ["dealer"]}),
     "member 'core' is listed twice (organisations 'core' and 'bank')"),
    ("duplicate organisation", lambda d: d["orgs"][1].update(name="core"),
     "organisation 'core' is listed twice"),
    ("reserved organisation name", lambda d: d["orgs"][0].update(name="ca"), "'ca' is reserved"),
    ("node id not a DNS label", lambda d: _node(d).update(id="Node_1"),
     "id 'Node_1' must be a DNS label"),
    ("bad host", lambda d: _node(d).update(host="not a host"),
     "host 'not a host' is neither an IP address nor a DNS name"),
    ("public key without a request", lambda d: _node(d).update(public_key="ab" * 32),
     "gives both public_key and tls_csr"),
    ("negative balance", lambda d: d["orgs"][0]["members"][0].update(balance=-1),
     "member 'core': balance must be an integer"),
    ("typo in a node", lambda d: _node(d).update(peerport=7005), "unknown key(s) ['peerport']"),
    ("typo at the top", lambda d: d.update(organisations=[]), "unknown key(s) ['organisations']"),
    ("an empty organisation", lambda d: d["orgs"].append({"name": "empty"}),
     "organisation 'empty' has neither nodes nor members"),
    ("a node option set per node", lambda d: d.update(node={"client_addr": "x:1"}),
     "[node]: 'client_addr' is set per node"),
    ("a node option the node refuses", lambda d: d.update(node={"log_format": "xml"}),
     "[node]: config: log_format must be"),
    ("an unknown snapshot setting", lambda d: d.update(node={"snapshots": {"every": 5}}),
     "[node]: config: unknown [snapshots] settings ['every']"),
]


@pytest.mark.parametrize(("change", "message"), [(c, m) for _, c, m in REFUSALS],
                         ids=[name for name, _, _ in REFUSALS])
def test_bad_descriptions_are_refused_with_a_clear_message(change, message) -> None:
    with pytest.raises(ConsortiumError) as info:
        parse_consortium(_mutated(change))
    assert message in str(info.value)


def test_same_ports_on_different_hosts_are_fine() -> None:
    spec = parse_consortium(small_doc())
    assert len({n.client_port for n in spec.nodes}) == 1 and len(spec.nodes) == 4


def test_invalid_toml_and_a_missing_file(tmp_path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[chain\nchain_id = 1\n")
    with pytest.raises(ConsortiumError, match="is not valid TOML"):
        load_consortium(str(bad))
    with pytest.raises(ConsortiumError, match="cannot read"):
        load_consortium(str(tmp_path / "missing.toml"))


def test_what_only_genesis_refuses_is_refused_before_writing(tmp_path) -> None:
    doc = small_doc()
    doc["chain"]["block"]["bytes_max"] = 10  # parse_genesis wants >= 1000
    spec = parse_consortium(doc)
    out = tmp_path / "out"
    with pytest.raises(ConsortiumError, match=r"the nodes would refuse this genesis: .*bytes_max"):
        write_bundles(spec, str(out))
    assert not out.exists()  # nothing left behind, keys least of all
    path = tmp_path / "c.toml"
    path.write_text(_text(SAMPLE).replace("bytes_max = 4000000", "bytes_max = 10"))
    assert cli_main(["consortium", "check", "--config", str(path)]) == 2


# ---------------------------------------------------------------------------------------------
# Bundles


@pytest.fixture(scope="module")
def sample_bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "out"
    spec = load_consortium(SAMPLE)
    return spec, write_bundles(spec, str(out))


def test_every_organisation_gets_its_bundle(sample_bundles) -> None:
    spec, bundles = sample_bundles
    assert sorted(os.listdir(bundles.out)) == sorted(["ca", *(o.name for o in spec.orgs)])
    genesis_text = _text(os.path.join(bundles.orgs["core"], "genesis.json"))
    ca_text = _text(os.path.join(bundles.ca_dir, "ca.crt"))
    for org in spec.orgs:
        root = bundles.orgs[org.name]
        bundle = json.loads(_text(os.path.join(root, "bundle.json")))
        assert bundle["org"] == org.name and bundle["genesis_id"] == bundles.genesis_id
        assert [n["id"] for n in bundle["nodes"]] == [n.node_id for n in org.nodes]
        assert [m["name"] for m in bundle["members"]] == [m.name for m in org.members]
        assert _text(os.path.join(root, "genesis.json")) == genesis_text
        assert _text(os.path.join(root, "ca.crt")) == ca_text
        peers = json.loads(_text(os.path.join(root, "peers.json")))
        assert [p["peer_addr"] for p in peers["nodes"]] == [n.peer_addr for n in spec.nodes]
        for member in org.members:
            key = Account.load(os.path.join(root, "keys", f"{member.name}.pem"))
            assert key.account_id == next(
                m["account"] for m in bundle["members"] if m["name"] == member.name)


def test_genesis_carries_the_description(sample_bundles) -> None:
    spec, bundles = sample_bundles
    genesis = load_genesis(os.path.join(bundles.orgs["bank"], "genesis.json"))
    assert genesis.genesis_id.hex() == bundles.genesis_id
    assert genesis.consensus == "pbft" and genesis.chain_id == spec.chain_id
    assert genesis.consensus_params == spec.consensus_params
    assert [(v.node_id, v.peer_addr) for v in genesis.validators] == [
        (n.node_id, n.peer_addr) for n in spec.nodes]
    assert {m.name: m.roles for m in genesis.members} == {m.name: m.roles for m in spec.members}
    assert genesis.committee == spec.committee and genesis.committee_threshold == 2
    assert genesis.ca_cert_pem == _text(os.path.join(bundles.ca_dir, "ca.crt"))
    assert genesis.block.interval_ms == 50


def test_a_node_directory_is_all_its_host_needs(sample_bundles) -> None:
    spec, bundles = sample_bundles
    for node in spec.nodes:
        node_dir = bundles.node_dir(spec, node.node_id)
        config = load_config(os.path.join(node_dir, "config.toml"))
        assert config.node_id == node.node_id
        assert config.client_addr == "0.0.0.0:7001" and config.peer_addr == "0.0.0.0:7002"
        assert config.metrics_addr == "0.0.0.0:9101" and config.log_format == "json"
        assert config.snapshots.interval == 500
        assert config.tls is not None
        for path in (config.genesis, config.signing_key, config.tls.ca_cert, config.tls.cert,
                     config.tls.key, config.data_dir):
            assert os.path.dirname(path) == node_dir or path == os.path.join(node_dir, "data")
        for path in (config.genesis, config.signing_key, config.tls.cert, config.tls.key):
            assert os.path.isfile(path)
        genesis = load_genesis(config.genesis)
        signer = Account.load(config.signing_key)
        assert genesis.validator(node.node_id).public_key == signer.public_key


def _owners(spec, bundles) -> dict[bytes, str]:
    """Every public key a bundle may hold the private half of -> the organisation owning it."""
    genesis = load_genesis(os.path.join(bundles.orgs[spec.orgs[0].name], "genesis.json"))
    org_of_node = {n.node_id: n.org for n in spec.nodes}
    owners: dict[bytes, str] = {}
    for validator in genesis.validators:
        owners[validator.public_key] = org_of_node[validator.node_id]
        cert = x509.load_pem_x509_certificate(validator.tls_cert_pem.encode())
        owners[_public_bytes(cert.public_key())] = org_of_node[validator.node_id]
    org_of_member = {m.name: m.org for m in spec.members}
    for member in genesis.members:
        owners[bytes.fromhex(member.account)] = org_of_member[member.name]
    return owners


def _public_bytes(key) -> bytes:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def _private_keys_in(root: str) -> list[tuple[str, bytes]]:
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            data = _bytes(path)
            if b"PRIVATE KEY" in data:
                key = serialization.load_pem_private_key(data, password=None)
                found.append((path, _public_bytes(key.public_key())))
    return found


def test_no_bundle_holds_another_organisations_private_key(sample_bundles) -> None:
    spec, bundles = sample_bundles
    owners = _owners(spec, bundles)
    ca_public = _public_bytes(x509.load_pem_x509_certificate(
        _bytes(os.path.join(bundles.ca_dir, "ca.crt"))).public_key())
    for org in spec.orgs:
        keys = _private_keys_in(bundles.orgs[org.name])
        # every key it needs: two per node, one per member
        assert len(keys) == 2 * len(org.nodes) + len(org.members), org.name
        for path, public in keys:
            assert public != ca_public, f"the CA key is in {path}"
            assert owners.get(public) == org.name, f"{path} in {org.name}'s bundle is not its key"
        for path, _ in keys:
            assert os.stat(path).st_mode & 0o077 == 0, f"{path} is readable by others"


def test_certificates_name_the_node_and_its_host(sample_bundles) -> None:
    spec, bundles = sample_bundles
    ca_pem = _text(os.path.join(bundles.ca_dir, "ca.crt"))
    for node in spec.nodes:
        pem_text = _text(os.path.join(bundles.node_dir(spec, node.node_id), "tls.crt"))
        names = names_of(x509.load_pem_x509_certificate(pem_text.encode()))
        assert names.common_name == node.node_id and names.organisation == node.org
        assert names.dns == (node.node_id, node.host)  # no localhost on a real host
        assert names.ips == ()
        # Governance takes it as it takes `cluster up`'s (a node voted in later is checked so).
        check_certificate(pem_text, ca_pem, node.node_id, 1_900_000_000_000)


def test_ip_hosts_go_in_as_ip_sans(tmp_path) -> None:
    spec = parse_consortium(small_doc())
    bundles = write_bundles(spec, str(tmp_path / "out"))
    cert = x509.load_pem_x509_certificate(
        _bytes(os.path.join(bundles.node_dir(spec, "node3"), "tls.crt")))
    assert names_of(cert).ips == ("10.9.0.3",) and names_of(cert).dns == ("node3",)
    assert names_of(cert).covers("10.9.0.3") and not names_of(cert).covers("10.9.0.4")


def test_init_refuses_a_directory_that_holds_anything(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("someone's")
    code = cli_main(["consortium", "init", "--config", SAMPLE, "--out", str(out)])
    assert code == 2
    assert "is not empty" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]


def test_init_through_the_cli(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli_main(["consortium", "init", "--config", SAMPLE, "--out", str(out),
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["orgs"]) == {o.name for o in load_consortium(SAMPLE).orgs}
    assert os.path.isfile(os.path.join(doc["ca_dir"], "ca.key"))


# ---------------------------------------------------------------------------------------------
# Organisations that keep their keys: csr, sign


def test_an_org_that_keeps_its_keys_sends_a_request_and_public_keys(tmp_path, capsys) -> None:
    own = tmp_path / "audit-host"
    assert cli_main(["consortium", "csr", "--org", "audit", "--node", "node4",
                     "--host", "10.9.0.4", "--out", str(own), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    auditor = Account.generate()
    doc = small_doc()
    _node(doc, 3).update(public_key=made["public_key"], tls_csr=str(own / "tls.csr"))
    doc["orgs"][3]["members"][0]["account"] = auditor.account_id
    spec = parse_consortium(doc, base_dir=str(tmp_path))
    bundles = write_bundles(spec, str(tmp_path / "out"))

    node_dir = bundles.node_dir(spec, "node4")
    assert sorted(os.listdir(node_dir)) == ["ca.crt", "config.toml", "genesis.json", "tls.crt"]
    assert _private_keys_in(bundles.orgs["audit"]) == []
    bundle = json.loads(_text(os.path.join(bundles.orgs["audit"], "bundle.json")))
    assert bundle["to_add"] == ["nodes/node4/node_key.pem", "nodes/node4/tls.key",
                                "keys/audit.pem"]
    genesis = load_genesis(os.path.join(node_dir, "genesis.json"))
    assert genesis.validator("node4").public_key.hex() == made["public_key"]
    assert Account.load(made["node_key"]).public_key.hex() == made["public_key"]
    assert {m.name: m.account for m in genesis.members}["audit"] == auditor.account_id
    # The certificate is for the org's own TLS key.
    cert = x509.load_pem_x509_certificate(_bytes(os.path.join(node_dir, "tls.crt")))
    tls_key = serialization.load_pem_private_key(_bytes(made["tls_key"]), None)
    assert _public_bytes(cert.public_key()) == _public_bytes(tls_key.public_key())
    assert names_of(cert).ips == ("10.9.0.4",)


def test_a_request_for_another_host_is_refused_and_nothing_is_left(tmp_path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    make_csr("node4", ["10.9.0.99"], str(own / "tls.key"), str(own / "tls.csr"))
    doc = small_doc()
    _node(doc, 3).update(public_key="cd" * 32, tls_csr=str(own / "tls.csr"))
    out = tmp_path / "out"
    with pytest.raises(ConsortiumError, match=r"node 'node4': .*does not name host\(s\) "
                       r"\['10.9.0.4'\]"):
        write_bundles(parse_consortium(doc), str(out))
    assert not out.exists()


def _csr(cn: str, sans: list[x509.GeneralName], key=None, org: str = ""
         ) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@pytest.mark.parametrize(("csr_args", "expect", "message"), [
    (("node4", [x509.DNSName("node4")]), {"node_id": "node5"}, "not 'node5'"),
    (("node4", [x509.DNSName("node4")]), {"hosts": ["10.0.0.4"]}, "does not name host(s)"),
    (("node4", [x509.DNSName("other")]), {}, "lack its node id 'node4'"),
    (("node4", []), {}, "lack its node id"),
    (("Bad_Name", [x509.DNSName("Bad_Name")]), {}, "is not a node id"),
    (("node4", [x509.DNSName("node4"), x509.UniformResourceIdentifier("https://x")]), {},
     "only DNS and IP SANs"),
    (("node4", [x509.DNSName("node4")], ed25519.Ed25519PrivateKey.generate()), {},
     "not ECDSA P-256"),
    (("node4", [x509.DNSName("node4")], None, "bank"), {"org": "audit"},
     "from organisation 'bank', not 'audit'"),
])
def test_the_ca_refuses_requests_it_should_not_sign(csr_args, expect, message) -> None:
    with pytest.raises(CertificateError) as info:
        check_request(_csr(*csr_args), **expect)
    assert message in str(info.value)


def test_sign_checks_the_request_against_genesis(tmp_path, capsys) -> None:
    spec = parse_consortium(small_doc())
    bundles = write_bundles(spec, str(tmp_path / "out"))
    genesis = os.path.join(bundles.orgs["core"], "genesis.json")
    rotate = tmp_path / "rotate"
    # Rotating node2's TLS certificate: a new TLS key and request only (its node key stays).
    assert cli_main(["consortium", "csr", "--org", "bank", "--node", "node2", "--host",
                     "10.9.0.2", "--out", str(rotate), "--tls-only"]) == 0
    assert sorted(os.listdir(rotate)) == ["tls.csr", "tls.key"]
    cert_path = tmp_path / "node2.crt"
    args = ["consortium", "sign", "--ca", bundles.ca_dir, "--csr", str(rotate / "tls.csr")]
    assert cli_main([*args, "--out", str(cert_path), "--genesis", genesis]) == 0
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(
        _bytes(ca_files(bundles.ca_dir).cert)))
    assert names_of(cert).common_name == "node2" and names_of(cert).covers("10.9.0.2")
    capsys.readouterr()
    # A request naming another host than genesis gives node2 is refused, and so is a
    # request for a node genesis does not know.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    make_csr("node2", ["10.9.0.7"], str(wrong / "tls.key"), str(wrong / "tls.csr"))
    assert cli_main(["consortium", "sign", "--ca", bundles.ca_dir, "--csr",
                     str(wrong / "tls.csr"), "--out", str(tmp_path / "w.crt"),
                     "--genesis", genesis]) == 2
    assert "does not name host(s) ['10.9.0.2']" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    make_csr("node9", ["10.9.0.9"], str(stranger / "tls.key"), str(stranger / "tls.csr"))
    assert cli_main(["consortium", "sign", "--ca", bundles.ca_dir, "--csr",
                     str(stranger / "tls.csr"), "--out", str(tmp_path / "s.crt"),
                     "--genesis", genesis]) == 2
    assert "'node9' is not a validator" in capsys.readouterr().err
    assert not (tmp_path / "w.crt").exists() and not (tmp_path / "s.crt").exists()


def test_csr_never_overwrites_keys(tmp_path) -> None:
    make_csr("node1", ["10.0.0.1"], str(tmp_path / "tls.key"), str(tmp_path / "tls.csr"))
    before = (tmp_path / "tls.key").read_bytes()
    with pytest.raises(CertificateError, match="exists; not overwriting"):
        make_csr("node1", ["10.0.0.1"], str(tmp_path / "tls.key"), str(tmp_path / "x.csr"))
    assert (tmp_path / "tls.key").read_bytes() == before
    assert os.stat(tmp_path / "tls.key").st_mode & 0o077 == 0
    csr = load_csr((tmp_path / "tls.csr").read_bytes())
    assert check_request(csr, node_id="node1", hosts=["10.0.0.1"]).common_name == "node1"
    cert = sign_request(ca_files(_ca(tmp_path)), csr, node_id="node1")
    assert names_of(cert).ips == ("10.0.0.1",)


def _ca(tmp_path) -> str:
    from node.tls import make_ca

    directory = str(tmp_path / "ca")
    make_ca(directory)
    return directory
