"""`scfchain consortium init|check|csr|sign`: a consortium across hosts from consortium.toml
(node/ops/consortium.py, node/ops/consortium_bundles.py; docs/deploy.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from node.client.identity import Account
from node.ops.consortium import ConsortiumError, check_genesis, genesis_for, load_consortium
from node.ops.consortium_pki import (
    CertificateError,
    ca_files,
    load_csr,
    make_csr,
    names_of,
    pem,
    sign_request,
)


def _fail(command: str, message: str) -> int:
    print(f"scfchain consortium {command}: {message}", file=sys.stderr)
    return 2


def _init(args: argparse.Namespace) -> int:
    from node.ops.consortium_bundles import write_bundles

    try:
        spec = load_consortium(args.config)
        bundles = write_bundles(spec, args.out, ca_dir=args.ca)
    except ConsortiumError as exc:
        return _fail("init", str(exc))
    if args.json:
        print(json.dumps({"out": bundles.out, "ca_dir": bundles.ca_dir,
                          "genesis_id": bundles.genesis_id, "orgs": bundles.orgs}))
        return 0
    print(f"consortium {spec.chain_id} ({spec.consensus}, {len(spec.nodes)} nodes), "
          f"genesis id {bundles.genesis_id}")
    print(f"  CA: {bundles.ca_dir}  (ca.key signs every node certificate: keep it offline; "
          f"it is in no bundle)")
    for org in spec.orgs:
        nodes = ", ".join(f"{n.node_id} on {n.host}" for n in org.nodes) or "no node"
        members = ", ".join(m.name for m in org.members) or "no member"
        print(f"  {org.name:<12} {bundles.orgs[org.name]}  [{nodes}; {members}]")
    print("give each organisation its own directory only; see docs/deploy.md")
    return 0


def _check(args: argparse.Namespace) -> int:
    try:
        spec = load_consortium(args.config)
        # Placeholder keys: everything else in genesis is checked as the nodes will.
        keys = {n.node_id: Account.from_seed(n.node_id.encode()).public_key.hex()
                for n in spec.nodes}
        accounts = {m.name: m.account or Account.from_seed(m.name.encode()).account_id
                    for m in spec.members}
        check_genesis(genesis_for(spec, keys, accounts, dict.fromkeys(keys, ""), ""))
    except ConsortiumError as exc:
        return _fail("check", str(exc))
    print(f"{args.config}: {len(spec.orgs)} organisations, {len(spec.nodes)} nodes, "
          f"{len(spec.members)} members, {spec.consensus}: ok")
    return 0


def _csr(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    key_path = os.path.join(args.out, "node_key.pem")
    tls_key = os.path.join(args.out, "tls.key")
    csr_path = os.path.join(args.out, "tls.csr")
    if not args.tls_only and os.path.exists(key_path):
        return _fail("csr", f"{key_path} exists; not overwriting a node key (a new TLS key "
                     f"for a running node: --tls-only)")
    try:
        make_csr(args.node, args.host, tls_key, csr_path, org=args.org)
    except CertificateError as exc:
        return _fail("csr", str(exc))
    doc: dict[str, object] = {"node_id": args.node, "org": args.org, "hosts": args.host,
                              "tls_key": tls_key, "tls_csr": csr_path}
    if not args.tls_only:
        signer = Account.generate()
        signer.save(key_path)
        doc["node_key"] = key_path
        doc["public_key"] = signer.public_key.hex()
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"wrote {tls_key} (keep it), {csr_path} (send it to the founding CA)")
    if not args.tls_only:
        print(f"wrote {key_path} (keep it); the node's public key, for consortium.toml:")
        print(f"  public_key = \"{doc['public_key']}\"")
        print(f"  tls_csr = \"{csr_path}\"")
    return 0


def _sign(args: argparse.Namespace) -> int:
    if os.path.exists(args.out):
        return _fail("sign", f"{args.out} exists; not overwriting a certificate")
    hosts = list(args.host or [])
    node_id = args.node
    try:
        with open(args.csr, "rb") as handle:
            csr = load_csr(handle.read(), args.csr)
    except OSError as exc:
        return _fail("sign", f"cannot read {args.csr}: {exc}")
    except CertificateError as exc:
        return _fail("sign", str(exc))
    if args.genesis:
        from node.config import ConfigError
        from node.genesis import load_genesis

        try:
            genesis = load_genesis(args.genesis)
        except ConfigError as exc:
            return _fail("sign", str(exc))
        requested = node_id or names_of(csr).common_name
        validator = next((v for v in genesis.validators if v.node_id == requested), None)
        if validator is None:
            return _fail("sign", f"{requested!r} is not a validator in {args.genesis}")
        node_id = requested
        hosts.append(validator.peer_addr.rpartition(":")[0].strip("[]"))
    try:
        cert = sign_request(ca_files(args.ca), csr, node_id=node_id, hosts=hosts,
                            org=args.org, days=args.days)
    except CertificateError as exc:
        return _fail("sign", str(exc))
    with open(args.out, "wb") as handle:
        handle.write(pem(cert))
    names = names_of(cert)
    print(f"wrote {args.out}: {names.common_name} ({names.organisation or 'no organisation'}),"
          f" SANs {list(names.dns) + list(names.ips)}, valid until "
          f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return 0


def _add_node(args: argparse.Namespace) -> int:
    from node.ops.consortium_join import add_node

    try:
        spec = load_consortium(args.config)
        added = add_node(spec, args.bundles, args.node, ca_dir=args.ca)
    except ConsortiumError as exc:
        return _fail("add-node", str(exc))
    if args.json:
        print(json.dumps({"node_id": added.node_id, "org": added.org,
                          "node_dir": added.node_dir, "proposals": list(added.proposals)}))
        return 0
    print(f"wrote {added.node_dir}: {added.node_id} of {added.org}, for its host (genesis "
          f"unchanged; it starts as an observer)")
    print("the committee admits it; a committee member proposes, in this order:")
    for path in added.proposals:
        print(f"  scfchain gov propose from-file {path} --as MEMBER --dir BUNDLE")
    print("and the others vote (`scfchain gov vote PROPOSAL_ID --as MEMBER --dir BUNDLE`); "
          "see docs/deploy.md")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("consortium", help="a consortium across hosts: bundles per "
                           "organisation from consortium.toml, node certificates")
    commands = group.add_subparsers(dest="consortium_command", required=True)

    init = commands.add_parser("init", help="write one bundle per organisation")
    init.add_argument("--config", required=True, help="the founding consortium.toml")
    init.add_argument("--out", required=True, help="a new or empty directory")
    init.add_argument("--ca", help="use this existing CA directory (ca.crt, ca.key) instead "
                      "of making OUT/ca")
    init.add_argument("--json", action="store_true", help="print JSON")
    init.set_defaults(func=_init)

    check = commands.add_parser("check", help="check consortium.toml without writing")
    check.add_argument("--config", required=True)
    check.set_defaults(func=_check)

    csr = commands.add_parser("csr", help="an organisation's node key, TLS key and "
                              "certificate request (it keeps the keys)")
    csr.add_argument("--org", required=True, help="the organisation (in the certificate)")
    csr.add_argument("--node", required=True, help="the node id")
    csr.add_argument("--host", required=True, action="append",
                     help="the node's host name or address (repeat for more)")
    csr.add_argument("--out", required=True, help="directory for the keys and tls.csr")
    csr.add_argument("--tls-only", action="store_true",
                     help="only a new TLS key and request (rotating a node's certificate)")
    csr.add_argument("--json", action="store_true", help="print JSON")
    csr.set_defaults(func=_csr)

    add = commands.add_parser("add-node", help="a node for the running consortium: its "
                              "directory and the governance proposals that admit it")
    add.add_argument("--config", required=True,
                     help="consortium.toml, now listing the node under its organisation")
    add.add_argument("--bundles", required=True, help="the directory `init` wrote")
    add.add_argument("--node", required=True, help="the new node's id")
    add.add_argument("--ca", help="the CA directory (default: BUNDLES/ca)")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(func=_add_node)

    sign = commands.add_parser("sign", help="the founding CA signs a node's request")
    sign.add_argument("--ca", required=True, help="the CA directory (ca.crt, ca.key)")
    sign.add_argument("--csr", required=True, help="the request (tls.csr)")
    sign.add_argument("--out", required=True, help="where to write the certificate")
    sign.add_argument("--node", help="refuse unless the request is for this node id")
    sign.add_argument("--host", action="append", help="refuse unless this host is in the "
                      "request's SANs (repeat for more)")
    sign.add_argument("--org", help="refuse a request naming another organisation")
    sign.add_argument("--genesis", help="refuse unless the node is a validator of this "
                      "genesis and its peer host is in the SANs")
    sign.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    sign.set_defaults(func=_sign)
