"""A node for a running consortium (`scfchain consortium add-node`): the founder, with the CA
and the consortium.toml that now lists the node, writes the node's directory into its
organisation's bundle and the governance proposals that let it in.

The chain's genesis never changes: the new node runs from the genesis every other node has,
starts outside the validator set (an observer that follows the chain), and becomes a validator
in the block where the committee passes `add_validator` for it. Members of its organisation
that genesis does not name get keys (unless they keep their own) and a `register_member`
proposal each.

    OUT/<org>/nodes/<id>/          config.toml, genesis.json, ca.crt, tls.crt (and unless the
                                   organisation keeps them: node_key.pem, tls.key)
    OUT/<org>/proposals/*.json     {"action": ..., "params": ...}: `scfchain gov propose
                                   from-file FILE --as A_COMMITTEE_MEMBER --dir OUT/<their org>`
    OUT/<org>/bundle.json, peers.json, genesis.json, ca.crt   (written or brought up to date)
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from node.client.identity import Account
from node.config import ConfigError
from node.genesis import load_genesis
from node.ops.consortium import Consortium, ConsortiumError, NodeEntry
from node.ops.consortium_bundles import (
    CA_CERT,
    GENESIS,
    _bundle_doc,
    _peers_doc,
    _read,
    _sign_own,
    _write_json,
    _write_node,
    _write_text,
)
from node.ops.consortium_pki import CertificateError, ca_files, issue_host_cert
from node.tls import CertFiles

PROPOSALS = "proposals"


@dataclass(frozen=True, slots=True)
class AddedNode:
    node_id: str
    org: str
    node_dir: str
    proposals: tuple[str, ...]  # files, in the order to propose them


def _existing_genesis(out: str, org: str) -> str:
    """The genesis every node runs: the org's bundle copy, else any bundle's."""
    candidates = [os.path.join(out, org, GENESIS)]
    candidates += sorted(os.path.join(out, name, GENESIS) for name in os.listdir(out))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ConsortiumError(f"no bundle with {GENESIS} in {out}: add-node extends the bundles "
                          f"`consortium init` wrote")


def add_node(spec: Consortium, out: str, node_id: str, *, ca_dir: str | None = None
             ) -> AddedNode:
    """Write node `node_id` of `spec` (consortium.toml, now listing it) into its organisation's
    bundle under `out`, with the proposals that admit it. Nothing is left half-written."""
    out = os.path.abspath(out)
    node = next((n for n in spec.nodes if n.node_id == node_id), None)
    if node is None:
        known = ", ".join(n.node_id for n in spec.nodes)
        raise ConsortiumError(f"consortium.toml has no node {node_id!r} (nodes: {known}); list "
                              f"it under its organisation's [[orgs.nodes]] first")
    ca_dir = os.path.abspath(ca_dir or os.path.join(out, "ca"))
    ca = ca_files(ca_dir)
    if not (os.path.isfile(ca.cert) and os.path.isfile(ca.key)):
        raise ConsortiumError(f"no CA in {ca_dir} (ca.crt, ca.key): only the founder, who "
                              f"keeps the CA, adds a node")
    genesis_path = _existing_genesis(out, node.org)
    try:
        genesis = load_genesis(genesis_path)
    except ConfigError as exc:
        raise ConsortiumError(str(exc)) from None
    if genesis.chain_id != spec.chain_id:
        raise ConsortiumError(f"consortium.toml is for chain {spec.chain_id!r}, the bundles in "
                              f"{out} for {genesis.chain_id!r}")
    if any(v.node_id == node_id for v in genesis.validators):
        raise ConsortiumError(f"{node_id!r} is a validator in genesis: its directory is in "
                              f"its organisation's bundle already")
    org_root = os.path.join(out, node.org)
    node_dir = os.path.join(org_root, "nodes", node_id)
    if os.path.exists(node_dir):
        raise ConsortiumError(f"{node_dir} exists; not overwriting a node's keys")
    made_org = not os.path.exists(org_root)
    written: list[str] = []
    try:
        return _write(spec, node, genesis_path, ca, org_root, node_dir, written)
    except BaseException:
        for path in reversed(written):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
        if made_org:
            shutil.rmtree(org_root, ignore_errors=True)
        raise


def _write(spec: Consortium, node: NodeEntry, genesis_path: str, ca: CertFiles, org_root: str,
           node_dir: str, written: list[str]) -> AddedNode:
    genesis_text = _read(genesis_path)
    genesis_doc = json.loads(genesis_text)
    in_genesis = {str(m["name"]): str(m["account"]) for m in genesis_doc.get("members", [])}
    ca_pem = _read(ca.cert)
    os.makedirs(node_dir)
    written.append(node_dir)
    try:
        if node.own_keys:
            assert node.public_key is not None
            public_key = node.public_key
            cert_pem = _sign_own(spec, node, os.path.dirname(ca.cert), node_dir)
        else:
            signer = Account.generate()
            signer.save(os.path.join(node_dir, "node_key.pem"))
            public_key = signer.public_key.hex()
            files = issue_host_cert(ca, node.node_id, node_dir, [node.host], org=node.org)
            cert_pem = _read(files.cert)
    except CertificateError as exc:
        raise ConsortiumError(f"node {node.node_id!r}: {exc}") from None
    _write_node(spec, node, node_dir, genesis_text, ca_pem)

    accounts = dict(in_genesis)
    proposals_dir = os.path.join(org_root, PROPOSALS)
    os.makedirs(proposals_dir, exist_ok=True)
    proposals: list[str] = []
    org = spec.org(node.org)
    for member in org.members:
        if member.name in in_genesis:
            continue
        account_id = member.account
        key_path = os.path.join(org_root, "keys", f"{member.name}.pem")
        if account_id is None and os.path.exists(key_path):
            account_id = Account.load(key_path).account_id  # an earlier add-node made it
        elif account_id is None:
            os.makedirs(os.path.dirname(key_path), exist_ok=True)
            account = Account.generate()
            account.save(key_path)
            written.append(key_path)
            account_id = account.account_id
        accounts[member.name] = account_id
        path = os.path.join(proposals_dir, f"register_member-{member.name}.json")
        _write_json(path, {"action": "register_member", "params": {
            "account": account_id, "name": member.name, "roles": list(member.roles)}})
        written.append(path)
        proposals.append(path)
    path = os.path.join(proposals_dir, f"add_validator-{node.node_id}.json")
    _write_json(path, {"action": "add_validator", "params": {
        "node_id": node.node_id, "public_key": public_key, "tls_cert_pem": cert_pem,
        "peer_addr": node.peer_addr}})
    written.append(path)
    proposals.append(path)

    genesis_id = load_genesis(genesis_path).genesis_id.hex()
    for name, text in ((GENESIS, genesis_text), (CA_CERT, ca_pem)):
        target = os.path.join(org_root, name)
        if not os.path.exists(target):
            _write_text(target, text)
            written.append(target)
    _write_json(os.path.join(org_root, "peers.json"), _peers_doc(spec, genesis_id))
    _write_json(os.path.join(org_root, "bundle.json"),
                _bundle_doc(spec, org.name, genesis_id, accounts))
    return AddedNode(node.node_id, org.name, node_dir, tuple(proposals))
