"""`scfchain gov propose|vote|list`: the consortium's committee governs it from the command line.

Every change to membership, the validator set, the committee or the chain parameters is a
proposal of the `governance` contract (docs/contracts.md): a committee member proposes (its own
vote counts as a yes), others vote, and the action executes in the block where the yes-weight
reaches the threshold. These commands build the proposal's params from names (members from
`cluster.json`, a node's public key, TLS certificate and peer address from its directory),
sign with `--as NAME`'s key, wait for the receipt (f + 1 matching ones on PBFT, as `tx` does)
and print the proposal's id and status. A FAILED receipt prints its code and message and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from typing import Any

from rich.table import Table
from rich.text import Text

from node.client.identity import Account
from node.client.ledger import ReceiptView
from node.ops.cli_client import (
    ClientCommandError,
    event_line,
    guarded,
    query_view,
    submit_tx,
)
from node.ops.cli_cluster import make_console
from node.ops.launcher import Cluster, ClusterAccount, load_cluster

CONTRACT = "governance"
PARAM_NAMES = ("block_txs_max", "block_bytes_max", "empty_block_interval_ms")
STATUS_STYLES = {"open": "yellow", "executed": "green", "rejected": "red", "expired": "dim"}
HEX_ACCOUNT = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# ---------------------------------------------------------------------------------------------
# From command-line options to the contract's (action, params).


def member_account(cluster: Cluster, ref: str) -> str:
    """A member's account id from its name in cluster.json, or a 64-hex account id as is."""
    if HEX_ACCOUNT.fullmatch(ref):
        return ref
    return cluster.account_id(ref)


def parse_roles(text: str) -> list[str]:
    roles = [role.strip() for role in text.split(",") if role.strip()]
    if not roles:
        raise ClientCommandError("--roles needs at least one role, e.g. --roles financier")
    return roles


async def resolve_proposal_id(cluster: Cluster, text: str, via: str | None = None) -> str:
    """A proposal id (64 hex, as `propose` printed it) or a unique prefix of one, as git takes
    commit ids: a prefix is looked up among the proposals the chain lists."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{1,64}", text):
        raise ClientCommandError(f"PROPOSAL_ID must be hex (as `gov propose` prints it); got "
                                 f"{text!r}")
    if len(text) == 64:
        return text
    rows = as_list(await query_view(cluster, CONTRACT, "proposals", {}, via), "proposals")
    found = sorted({str(row.get("proposal_id")) for row in rows
                    if str(row.get("proposal_id", "")).startswith(text)})
    if len(found) != 1:
        what = "no proposal" if not found else f"{len(found)} proposals"
        raise ClientCommandError(f"{what} start with {text!r}; `scfchain gov list --dir "
                                 f"{cluster.root}` shows them")
    return found[0]


def validator_params(cluster: Cluster, node_id: str) -> dict[str, Any]:
    """add_validator's params for a node of the cluster directory: its signing public key,
    its CA-signed TLS certificate (PEM) and its peer address."""
    node = cluster.node(node_id)
    node_dir = os.path.dirname(node.config_path)
    key_path, cert_path = os.path.join(node_dir, "node_key.pem"), os.path.join(node_dir, "tls.crt")
    try:
        public_key = Account.load(key_path).public_key.hex()
        with open(cert_path) as handle:
            cert_pem = handle.read()
    except (OSError, ValueError) as exc:
        raise ClientCommandError(f"cannot read {node_id}'s key or certificate: {exc}") from None
    return {"node_id": node_id, "public_key": public_key, "tls_cert_pem": cert_pem,
            "peer_addr": node.peer_addr}


def proposal_from_file(path: str) -> tuple[str, dict[str, Any]]:
    """(action, params) from a file {"action": ..., "params": {...}}, as `scfchain consortium
    add-node` writes them; the contract checks the params as it checks any proposal."""
    try:
        with open(path) as handle:
            doc = json.load(handle)
    except OSError as exc:
        raise ClientCommandError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ClientCommandError(f"{path} is not JSON: {exc}") from None
    if (not isinstance(doc, dict) or not isinstance(doc.get("action"), str)
            or not isinstance(doc.get("params"), dict)):
        raise ClientCommandError(f'{path} must hold {{"action": "...", "params": {{...}}}}')
    return doc["action"], doc["params"]


def new_member_key(cluster: Cluster, name: str) -> tuple[str, str]:
    """(account id, key file) of a member to register by name: keys/NAME.pem, made now unless
    an earlier attempt left one there (so running the same proposal again keeps one key)."""
    if not NAME.fullmatch(name):
        raise ClientCommandError(f"--name {name!r}: use 1..64 letters, digits, '_', '.' or '-'")
    if any(account.name == name for account in cluster.accounts):
        raise ClientCommandError(f"{name!r} is already a member in {cluster.path}; "
                                 "choose another --name")
    path = os.path.join(cluster.root, "keys", f"{name}.pem")
    if os.path.exists(path):
        return Account.load(path).account_id, path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    account = Account.generate()
    account.save(path)
    return account.account_id, path


def action_params(cluster: Cluster, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The governance action and its params for `gov propose ACTION` and its options."""
    action: str = args.action
    if action == "from-file":
        return proposal_from_file(args.file)
    if action == "add-validator":
        return "add_validator", validator_params(cluster, args.node)
    if action == "remove-validator":
        return "remove_validator", {"node_id": args.node}
    if action == "register":
        account = args.account
        if account is None and cluster.bundle:
            raise ClientCommandError("a bundle is not a key store: give the new member's "
                                     "--account (its organisation makes its key)")
        if account is None:
            account, _ = new_member_key(cluster, args.name)
        elif not HEX_ACCOUNT.fullmatch(account):
            raise ClientCommandError("--account must be a 64-hex account id (lower case)")
        return "register_member", {"account": account, "name": args.name,
                                   "roles": parse_roles(args.roles)}
    if action in ("suspend", "reinstate"):
        return f"{action}_member", {"account": member_account(cluster, args.member)}
    if action == "set-roles":
        return "set_roles", {"account": member_account(cluster, args.member),
                             "roles": parse_roles(args.roles)}
    if action == "set-threshold":
        return "set_threshold", {"threshold": args.threshold}
    if action == "set-weight":
        return "set_weight", {"account": member_account(cluster, args.member),
                              "weight": args.weight}
    if action == "add-committee-member":
        return "add_committee_member", {"account": member_account(cluster, args.member),
                                        "weight": args.weight}
    if action == "remove-committee-member":
        return "remove_committee_member", {"account": member_account(cluster, args.member)}
    if action == "set-param":
        return "set_param", {"name": args.name, "value": args.value}
    raise ClientCommandError(f"unknown action {action!r}")


# ---------------------------------------------------------------------------------------------
# propose, vote


def _send(cluster: Cluster, args: argparse.Namespace, method: str, call_args: dict[str, Any]
          ) -> tuple[ReceiptView, list[str] | None]:
    signer = cluster.account(args.as_name)
    tx = signer.build_tx(cluster.chain_id, CONTRACT, method, call_args)
    return asyncio.run(submit_tx(cluster, tx, args.via, reader=signer))


def outcome_json(receipt: ReceiptView, confirmed_by: list[str] | None) -> dict[str, Any]:
    """What propose and vote print with --json: the proposal's id and status, or the failure."""
    if receipt.ok:
        result = receipt.result if isinstance(receipt.result, dict) else {}
        doc: dict[str, Any] = {
            "proposal_id": result.get("proposal_id"),
            "status": result.get("status"),
            "tx_id": receipt.tx_id,
            "height": receipt.height,
            "events": receipt.events,
        }
    else:
        doc = {"status": "FAILED", "error_code": receipt.error_code, "message": receipt.message,
               "tx_id": receipt.tx_id, "height": receipt.height}
    if confirmed_by is not None:
        doc["confirmed_by"] = confirmed_by
    return doc


def outcome_lines(doc: dict[str, Any], what: str, cluster: Cluster) -> list[Text]:
    """The same for people: one line on the outcome, the events, and what to do next."""
    if doc["status"] == "FAILED":
        return [Text.assemble(("FAILED", "bold red"), f" {doc['error_code']}: {doc['message']} "
                              f"(height {doc['height']}, tx {doc['tx_id'][:16]}…)")]
    status = str(doc["status"])
    lines = [Text.assemble(f"{what}: proposal {doc['proposal_id']} is ",
                           (status, f"bold {STATUS_STYLES.get(status, '')}"),
                           f" (height {doc['height']})")]
    names = cluster.names()
    for event in doc["events"]:  # a proposal's params without the PEM and the key
        if isinstance(event.get("params"), dict):
            event = {**event, "params": summarize_params(event["params"], names)}
        lines.append(Text(f"  event: {event_line(event, names)}"))
    if status == "open":
        lines.append(Text(f"  other committee members vote: scfchain gov vote "
                          f"{doc['proposal_id']} --as NAME --dir {cluster.root}", "dim"))
    if doc.get("confirmed_by"):
        lines.append(Text(f"  confirmed by {', '.join(doc['confirmed_by'])}", "dim"))
    return lines


def _report(args: argparse.Namespace, cluster: Cluster, doc: dict[str, Any], what: str) -> int:
    if args.json:
        print(json.dumps(doc))
    else:
        console = make_console()
        for line in outcome_lines(doc, what, cluster):
            console.print(line, soft_wrap=True)  # commands to copy stay on one line
    if doc["status"] == "FAILED":
        print(f"scfchain gov: {what} FAILED: {doc['error_code']}: {doc['message']}",
              file=sys.stderr)
        return 1
    return 0


def _propose(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    action, params = action_params(cluster, args)
    receipt, confirmed_by = _send(cluster, args, "propose", {"action": action, "params": params})
    doc = outcome_json(receipt, confirmed_by)
    doc["action"] = action
    if (receipt.ok and action == "register_member" and args.action == "register"
            and args.account is None):
        # The new member's key is in keys/; cluster.json names it so `--as NAME` finds it (it
        # can sign once the proposal has executed).
        record_member(cluster, args.name, parse_roles(args.roles)[0], params["account"])
        doc["member"] = {"name": args.name, "account": params["account"],
                         "key_file": os.path.join(cluster.root, "keys", f"{args.name}.pem")}
    return _report(args, cluster, doc, f"{args.action} by {args.as_name}")


def record_member(cluster: Cluster, name: str, role: str, account_id: str) -> None:
    if any(account.name == name for account in cluster.accounts):
        return
    key_file = os.path.join(cluster.root, "keys", f"{name}.pem")
    cluster.accounts.append(ClusterAccount(name=name, role=role, account_id=account_id,
                                           key_file=key_file))
    cluster.save()


def _vote(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    proposal_id = asyncio.run(resolve_proposal_id(cluster, args.proposal_id, args.via))
    approve = not args.no
    receipt, confirmed_by = _send(cluster, args, "vote",
                                  {"proposal_id": proposal_id, "approve": approve})
    doc = outcome_json(receipt, confirmed_by)
    doc["approve"] = approve
    if doc.get("proposal_id") is None and receipt.ok:
        doc["proposal_id"] = proposal_id
    return _report(args, cluster, doc, f"{'yes' if approve else 'no'} vote by {args.as_name}")


# ---------------------------------------------------------------------------------------------
# list


def as_list(result: Any, key: str) -> list[dict[str, Any]]:
    """A view's rows whether it answers a list or an object holding the list under key."""
    if isinstance(result, dict):
        result = result.get(key, [])
    return [row for row in result if isinstance(row, dict)] if isinstance(result, list) else []


def votes_of(proposal: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(yes voters, no voters) as account ids, from {account: bool} or [{account, approve}]."""
    votes = proposal.get("votes") or {}
    if isinstance(votes, dict):
        pairs = [(str(k), v.get("approve") if isinstance(v, dict) else v) for k, v in
                 votes.items()]
    else:
        pairs = [(str(v.get("account") or v.get("voter")), v.get("approve")) for v in votes
                 if isinstance(v, dict)]
    return [a for a, yes in pairs if yes], [a for a, yes in pairs if not yes]


def summarize_params(params: Any, names: dict[str, str]) -> str:
    """An action's params in a table cell: names for accounts, no certificates or keys."""
    if not isinstance(params, dict):
        return json.dumps(params)
    parts = []
    for key, value in params.items():
        if key in ("tls_cert_pem", "public_key"):
            continue
        if isinstance(value, str) and HEX_ACCOUNT.fullmatch(value):
            shown = names.get(value, value[:12] + "…")
        else:
            shown = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def proposals_table(proposals: list[dict[str, Any]], names: dict[str, str]) -> Table:
    table = Table(title="governance proposals")
    for column in ("id", "action", "params", "proposer", "yes", "no", "status", "height"):
        table.add_column(column)

    def who(accounts: list[str]) -> str:
        return ", ".join(names.get(a, a[:12] + "…") for a in accounts) or "-"

    for proposal in proposals:
        yes, no = votes_of(proposal)
        weights = [proposal.get("yes_weight"), proposal.get("no_weight")]
        status = str(proposal.get("status", "?"))
        proposer = str(proposal.get("proposer", ""))
        height = proposal.get("created_height", proposal.get("height", ""))
        table.add_row(
            str(proposal.get("proposal_id", "?"))[:16],  # a prefix is enough for `gov vote`
            str(proposal.get("action", "?")),
            summarize_params(proposal.get("params", {}), names),
            names.get(proposer, proposer[:12] + "…" if proposer else "-"),
            who(yes) + (f" ({weights[0]})" if weights[0] is not None else ""),
            who(no) + (f" ({weights[1]})" if weights[1] is not None else ""),
            Text(status, STATUS_STYLES.get(status, "")),
            str(height),
        )
    return table


def committee_line(committee: Any, names: dict[str, str]) -> str:
    """'committee: core 1, bank 1, factor 1 · threshold 2' from the committee view."""
    members = as_list(committee, "members")
    shown = ", ".join(f"{m.get('name') or names.get(str(m.get('account')), '?')} "
                      f"{m.get('weight')}" for m in members)
    threshold = committee.get("threshold") if isinstance(committee, dict) else None
    return f"committee: {shown or '?'}" + (f" · threshold {threshold}" if threshold else "")


def _list(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    view_args = {"status": args.status} if args.status else {}

    async def run() -> tuple[Any, Any]:
        proposals = await query_view(cluster, CONTRACT, "proposals", view_args, args.via)
        committee = None if args.json else await query_view(cluster, CONTRACT, "committee", {},
                                                            args.via)
        return proposals, committee

    proposals, committee = asyncio.run(run())
    rows = as_list(proposals, "proposals")
    if args.json:
        print(json.dumps(rows))
        return 0
    console = make_console()
    names = cluster.names()
    console.print(proposals_table(rows, names))
    console.print(committee_line(committee, names))
    return 0


# ---------------------------------------------------------------------------------------------
# The parser.

# ACTION -> (help, options); an option is (flags, argparse keyword arguments).
Option = tuple[tuple[str, ...], dict[str, Any]]
_MEMBER: Option = (("--member",), {"required": True, "metavar": "NAME",
                                    "help": "the member (a name in cluster.json, or 64-hex)"})
_ROLES: Option = (("--roles",), {"required": True, "help": "comma-separated, e.g. financier"})
_NODE: Option = (("--node",), {"required": True, "metavar": "ID", "help": "node id, e.g. node5"})
_WEIGHT: Option = (("--weight",), {"required": True, "type": int, "help": "voting weight"})
ACTIONS: dict[str, tuple[str, list[Option]]] = {
    "add-validator": ("make a node of the cluster directory a validator", [_NODE]),
    "from-file": ("the action a file holds (`consortium add-node` writes them)", [
        (("file",), {"metavar": "FILE", "help": '{"action": ..., "params": {...}}'}),
    ]),
    "remove-validator": ("take a node out of the validator set", [_NODE]),
    "register": ("register a member (a new key in keys/NAME.pem unless --account)", [
        (("--name",), {"required": True, "help": "the new member's name"}),
        (("--account",), {"help": "its 64-hex account id (default: write a new key)"}),
        _ROLES,
    ]),
    "suspend": ("suspend a member (it can send no tx)", [_MEMBER]),
    "reinstate": ("reinstate a suspended member", [_MEMBER]),
    "set-roles": ("replace a member's roles", [_MEMBER, _ROLES]),
    "set-threshold": ("the yes-weight a proposal needs", [
        (("--threshold",), {"required": True, "type": int, "help": "total yes-weight needed"}),
    ]),
    "set-weight": ("a committee member's voting weight", [_MEMBER, _WEIGHT]),
    "add-committee-member": ("add a member to the committee", [_MEMBER, _WEIGHT]),
    "remove-committee-member": ("take a member off the committee", [_MEMBER]),
    "set-param": ("change a chain parameter", [
        (("--name",), {"required": True, "choices": PARAM_NAMES, "help": "the parameter"}),
        (("--value",), {"required": True, "type": int, "help": "its new value"}),
    ]),
}


def register(sub: Any) -> None:
    """Add `gov propose|vote|list` to the `scfchain` parser."""
    gov = sub.add_parser("gov", help="committee governance: propose, vote, list proposals")
    commands = gov.add_subparsers(dest="gov_command", required=True)

    def common(parser: argparse.ArgumentParser, *, signer: bool) -> None:
        if signer:
            parser.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                                help="the committee member who signs (a name in cluster.json "
                                     "or in the bundle)")
        parser.add_argument("--dir", required=True,
                            help="the cluster directory, or an organisation's bundle")
        parser.add_argument("--via", metavar="NODE",
                            help="send through this node (default: the first that answers; "
                                 "on PBFT, f + 1 nodes must confirm)")
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    propose = commands.add_parser("propose", help="propose a governance action (your vote "
                                  "counts as a yes)")
    actions = propose.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, (help_text, options) in ACTIONS.items():
        parser = actions.add_parser(name, help=help_text)
        for flags, kwargs in options:
            parser.add_argument(*flags, **kwargs)
        common(parser, signer=True)
        parser.set_defaults(func=guarded("gov propose", _propose))

    vote = commands.add_parser("vote", help="vote on an open proposal (yes unless --no)")
    vote.add_argument("proposal_id", metavar="PROPOSAL_ID",
                      help="as `gov propose` printed it, or a unique prefix")
    vote.add_argument("--no", action="store_true", help="vote no")
    common(vote, signer=True)
    vote.set_defaults(func=guarded("gov vote", _vote))

    listing = commands.add_parser("list", help="proposals with their votes and status")
    listing.add_argument("--status", choices=tuple(STATUS_STYLES),
                         help="only proposals in this status")
    common(listing, signer=False)
    listing.set_defaults(func=guarded("gov list", _list))
