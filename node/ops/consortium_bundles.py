"""One bundle per organisation from a checked `consortium.toml` (`scfchain consortium init`).

    OUT/ca/                   the founding CA (ca.crt, ca.key): stays with the founder, offline
    OUT/<org>/bundle.json     what the bundle holds: the org's nodes and members, genesis id
    OUT/<org>/genesis.json    the same file in every bundle
    OUT/<org>/ca.crt          the CA certificate (no key)
    OUT/<org>/peers.json      every node of the consortium: host, client, peer, metrics address
    OUT/<org>/keys/<m>.pem    the org's members' keys (not those it keeps itself)
    OUT/<org>/nodes/<id>/     one directory per node of the org, all it needs on its host:
                              config.toml, genesis.json, ca.crt, tls.crt, and unless the org
                              keeps them, node_key.pem and tls.key

No bundle holds another organisation's private key, nor the CA's. Every path in a config is
relative to its node directory, so the directory can be copied to its host as it is and run
with `scfchain node --config nodes/<id>/config.toml`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass

from node.client.identity import Account
from node.config import ConfigError, load_config
from node.ops.consortium import (
    Consortium,
    ConsortiumError,
    NodeEntry,
    check_genesis,
    genesis_for,
)
from node.ops.consortium_pki import (
    CertificateError,
    ca_files,
    issue_host_cert,
    load_csr,
    pem,
    sign_request,
)
from node.ops.localnet import NodeLayout, _write_config
from node.tls import make_ca

log = logging.getLogger(__name__)

GENESIS = "genesis.json"
CA_CERT = "ca.crt"


@dataclass(frozen=True, slots=True)
class Bundles:
    out: str
    ca_dir: str
    genesis_id: str
    orgs: dict[str, str]  # organisation -> its bundle directory

    def node_dir(self, spec: Consortium, node_id: str) -> str:
        for node in spec.nodes:
            if node.node_id == node_id:
                return os.path.join(self.orgs[node.org], "nodes", node_id)
        raise KeyError(node_id)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _write_json(path: str, doc: object) -> None:
    with open(path, "w") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")


def _check_out(out: str) -> bool:
    """Whether `out` must be made; refuses one that holds anything."""
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ConsortiumError(f"{out} exists and is not a directory")
        if os.listdir(out):
            raise ConsortiumError(
                f"{out} is not empty; bundles are written into a new or empty directory "
                f"(never over another consortium's keys)"
            )
        return False
    return True


def write_bundles(spec: Consortium, out: str, *, ca_dir: str | None = None) -> Bundles:
    """Write OUT/ca (unless `ca_dir` names an existing CA to use) and OUT/<org> for every
    organisation. On any error nothing is left under OUT."""
    out = os.path.abspath(out)
    made_out = _check_out(out)
    own_ca = ca_dir is None
    ca_dir = os.path.abspath(ca_dir or os.path.join(out, "ca"))
    if not own_ca and not os.path.isfile(ca_files(ca_dir).key):
        raise ConsortiumError(f"no CA in {ca_dir} (ca.crt, ca.key)")
    os.makedirs(out, exist_ok=True)
    try:
        return _write(spec, out, ca_dir)
    except BaseException:
        for name in os.listdir(out):
            path = os.path.join(out, name)
            if own_ca or path != ca_dir:
                shutil.rmtree(path, ignore_errors=True)
        if made_out:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write(spec: Consortium, out: str, ca_dir: str) -> Bundles:
    ca = make_ca(ca_dir)
    ca_pem = _read(ca.cert)
    orgs = {org.name: os.path.join(out, org.name) for org in spec.orgs}
    node_keys: dict[str, str] = {}
    certs: dict[str, str] = {}
    for node in spec.nodes:
        node_dir = os.path.join(orgs[node.org], "nodes", node.node_id)
        os.makedirs(node_dir)
        try:
            if node.own_keys:
                assert node.public_key is not None
                node_keys[node.node_id] = node.public_key
                certs[node.node_id] = _sign_own(spec, node, ca_dir, node_dir)
            else:
                signer = Account.generate()
                signer.save(os.path.join(node_dir, "node_key.pem"))
                node_keys[node.node_id] = signer.public_key.hex()
                files = issue_host_cert(ca, node.node_id, node_dir, [node.host], org=node.org)
                certs[node.node_id] = _read(files.cert)
        except CertificateError as exc:
            raise ConsortiumError(f"node {node.node_id!r}: {exc}") from None
    accounts: dict[str, str] = {}
    for member in spec.members:
        if member.account is not None:
            accounts[member.name] = member.account
            continue
        keys_dir = os.path.join(orgs[member.org], "keys")
        os.makedirs(keys_dir, exist_ok=True)
        account = Account.generate()
        account.save(os.path.join(keys_dir, f"{member.name}.pem"))
        accounts[member.name] = account.account_id
    genesis = genesis_for(spec, node_keys, accounts, certs, ca_pem)
    genesis_id = check_genesis(genesis).hex()
    genesis_text = json.dumps(genesis, indent=2)
    peers = _peers_doc(spec, genesis_id)
    for org in spec.orgs:
        root = orgs[org.name]
        os.makedirs(root, exist_ok=True)
        _write_text(os.path.join(root, GENESIS), genesis_text)
        _write_text(os.path.join(root, CA_CERT), ca_pem)
        _write_json(os.path.join(root, "peers.json"), peers)
        for node in org.nodes:
            _write_node(spec, node, os.path.join(root, "nodes", node.node_id), genesis_text,
                        ca_pem)
        _write_json(os.path.join(root, "bundle.json"),
                    _bundle_doc(spec, org.name, genesis_id, accounts))
        log.info("wrote the bundle of %s in %s", org.name, root)
    return Bundles(out, ca_dir, genesis_id, orgs)


def _sign_own(spec: Consortium, node: NodeEntry, ca_dir: str, node_dir: str) -> str:
    """The certificate for a node whose org keeps its keys, from its CSR, checked: it names
    the node id, its host and (if any) its organisation."""
    path = spec.csr_path(node)
    try:
        with open(path, "rb") as handle:
            csr = load_csr(handle.read(), path)
    except OSError as exc:
        raise CertificateError(f"cannot read tls_csr {path}: {exc}") from None
    cert = sign_request(ca_files(ca_dir), csr, node_id=node.node_id, hosts=[node.host],
                        org=node.org)
    text = pem(cert).decode()
    _write_text(os.path.join(node_dir, "tls.crt"), text)
    return text


def _write_node(spec: Consortium, node: NodeEntry, node_dir: str, genesis_text: str,
                ca_pem: str) -> None:
    genesis_path = os.path.join(node_dir, GENESIS)
    _write_text(genesis_path, genesis_text)
    _write_text(os.path.join(node_dir, CA_CERT), ca_pem)
    layout = NodeLayout(
        node_id=node.node_id,
        client_addr=node.addr(node.client_port, bind=True),
        peer_addr=node.addr(node.peer_port, bind=True),
        config_path=os.path.join(node_dir, "config.toml"),
        data_dir=os.path.join(node_dir, "data"),
        log_file="",  # the node logs to stderr (a service manager keeps it)
        metrics_addr=(
            "" if node.metrics_port is None else node.addr(node.metrics_port, bind=True)
        ),
    )
    options = {**spec.node_options, "tls.ca_cert": CA_CERT, "tls.cert": "tls.crt",
               "tls.key": "tls.key"}
    _write_config(layout, genesis_path, options)
    try:
        load_config(layout.config_path)
    except ConfigError as exc:
        raise ConsortiumError(f"node {node.node_id!r}: its config would be refused: {exc}"
                              ) from None


def _peers_doc(spec: Consortium, genesis_id: str) -> dict[str, object]:
    return {
        "chain_id": spec.chain_id,
        "genesis_id": genesis_id,
        "consensus": spec.consensus,
        "nodes": [
            {"id": n.node_id, "org": n.org, "host": n.host, "client_addr": n.client_addr,
             "peer_addr": n.peer_addr, "metrics_addr": n.metrics_addr}
            for n in spec.nodes
        ],
    }


def _bundle_doc(spec: Consortium, org_name: str, genesis_id: str,
                accounts: dict[str, str]) -> dict[str, object]:
    org = spec.org(org_name)
    to_add = [f"nodes/{n.node_id}/{name}" for n in org.nodes if n.own_keys
              for name in ("node_key.pem", "tls.key")]
    to_add += [f"keys/{m.name}.pem" for m in org.members if m.account is not None]
    return {
        "org": org.name,
        "title": org.title,
        "chain_id": spec.chain_id,
        "consensus": spec.consensus,
        "genesis_id": genesis_id,
        "nodes": [
            {"id": n.node_id, "dir": f"nodes/{n.node_id}", "host": n.host,
             "listen": n.bind_host, "client_addr": n.client_addr, "peer_addr": n.peer_addr,
             "metrics_addr": n.metrics_addr, "keys": "own" if n.own_keys else "generated"}
            for n in org.nodes
        ],
        "members": [
            {"name": m.name, "roles": list(m.roles), "account": accounts[m.name],
             "key_file": f"keys/{m.name}.pem",
             "keys": "own" if m.account is not None else "generated"}
            for m in org.members
        ],
        # Private keys the organisation keeps itself and puts here before starting.
        "to_add": to_add,
    }


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()
