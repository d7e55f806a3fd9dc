"""`scfchain tx|query|watch|voucher tree`: calling a running cluster by member name.

Each command finds the cluster through `--dir DIR/cluster.json`, signs with the sample member's
key from `DIR/keys/`, and talks to the first node that answers (or `--node ID`); on PBFT, `tx`
accepts a receipt only once f + 1 nodes return matching ones (`node.client.quorum`). In `--args`,
a string `"@name"` stands for that member's account id, so `{"to": "@tier1a"}` works.
Reads are signed by a member (node/read_auth.py) and show what that member may see: `--as NAME`
(default: the cluster's auditor, if it has one); `tx` reads its receipt as its signer.
People get names instead of hex, amounts as money; `--json` prints one JSON document
(`watch --json`: one per block, a line each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from node.client.identity import Account
from node.client.ledger import LedgerClient, LedgerError, ReceiptView, event_dict
from node.client.quorum import QuorumClient
from node.ops.cli_cluster import make_console
from node.ops.launcher import (
    Cluster,
    ClusterError,
    ClusterNode,
    genesis_validator_ids,
    load_cluster,
)
from node.ops.sample_consortium import money
from proto import types_pb2

MONEY_KEYS = frozenset({
    "amount", "balance", "limit", "used", "payout", "interest", "principal", "paid",
    "remainder", "redeemed", "live", "total", "outstanding", "overdue", "price",
})
NO_LEADER_RETRY_S = 15.0  # tx: how long to resend while the network elects a leader
WATCH_RECONNECTS_MAX = 20  # watch: failed streams in a row before giving up
STATE_STYLES = {
    "ACTIVE": "green", "DISCOUNT_PENDING": "yellow", "OVERDUE": "red", "REDEEMED": "dim",
    "SPLIT": "blue",
}


class ClientCommandError(Exception):
    """Bad input to a client command; the message says what to fix."""


def guarded(command: str, func: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ClusterError, ClientCommandError) as exc:
            print(f"scfchain {command}: {exc}", file=sys.stderr)
            return 1
        except LedgerError as exc:
            print(f"scfchain {command}: the node answered {exc}", file=sys.stderr)
            return 1

    return run


# ---------------------------------------------------------------------------------------------
# Finding a node, reading arguments, showing names.


def reader_for(cluster: Cluster, name: str | None = None) -> Account:
    """The member whose key signs reads: `name` (`--as`), else the cluster's auditor, else (in
    an organisation's bundle) the organisation's first member."""
    if name:
        return cluster.account(name)
    auditor = cluster.auditor() if not cluster.bundle else cluster.any_reader()
    if auditor is None:
        members = ", ".join(account.name for account in cluster.accounts if account.key_file)
        raise ClientCommandError(f"reads are signed by a member and {cluster.root} has no "
                                 f"auditor to read as by default: pass --as NAME ({members})")
    return auditor


async def connect(
    cluster: Cluster, node_id: str | None = None, reader: Account | None = None
) -> LedgerClient:
    """A client of the named node, or of the first node that answers a health check; its
    reads are signed by `reader`."""
    nodes = [cluster.node(node_id)] if node_id else cluster.nodes
    for node in nodes:
        client = LedgerClient(node.client_addr, timeout_s=60.0, reader=reader,
                              chain_id=cluster.chain_id, tls=node.client_tls())
        if await client.healthy(timeout_s=1.0):
            return client
        await client.close()
    which = node_id or "any node"
    raise ClusterError(
        f"{which} of {cluster.root} does not answer; is the cluster up? "
        f"(`scfchain cluster status --dir {cluster.root}`)"
    )


def parse_call(target: str, what: str) -> tuple[str, str]:
    contract, dot, name = target.partition(".")
    if not dot or not contract or not name:
        raise ClientCommandError(f"expected CONTRACT.{what.upper()}, e.g. cash.transfer; got "
                                 f"{target!r}")
    return contract, name


def parse_args_json(text: str, cluster: Cluster) -> dict[str, Any]:
    """--args as a JSON object; "@name" strings become that member's account id."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ClientCommandError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClientCommandError("--args must be a JSON object, e.g. '{\"amount\": 100}'")
    resolved = _resolve_names(doc, cluster)
    assert isinstance(resolved, dict)
    return resolved


def _resolve_names(value: Any, cluster: Cluster) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return cluster.account_id(value[1:])
    if isinstance(value, list):
        return [_resolve_names(item, cluster) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_names(item, cluster) for key, item in value.items()}
    return value


def humanize(value: Any, names: dict[str, str], key: str = "") -> Any:
    """Account ids as member names, amounts as money; for people, never for --json."""
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool) and key in MONEY_KEYS:
        return money(value)
    if isinstance(value, list):
        return [humanize(item, names, key) for item in value]
    if isinstance(value, dict):
        return {k: humanize(item, names, k) for k, item in value.items()}
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return text


def event_line(event: dict[str, Any], names: dict[str, str]) -> str:
    shown = humanize(event, names)
    attrs = " ".join(f"{k}={_short(v)}" for k, v in shown.items() if k not in ("contract", "name"))
    return f"{event['contract']}.{event['name']} {attrs}"


# ---------------------------------------------------------------------------------------------
# tx, query


def _tx(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    contract, method = parse_call(args.call, "method")
    account = cluster.account(args.as_name)
    call_args = parse_args_json(args.args, cluster)
    tx = account.build_tx(cluster.chain_id, contract, method, call_args)
    receipt, confirmed_by = asyncio.run(submit_tx(cluster, tx, args.node, reader=account))
    if args.json:
        doc = receipt.to_json()
        if confirmed_by is not None:
            doc["confirmed_by"] = confirmed_by
        print(json.dumps(doc))
    else:
        console = make_console()
        print_receipt(console, receipt, cluster.names())
        if confirmed_by is not None:
            console.print(f"confirmed by {', '.join(confirmed_by)} (matching receipts from "
                          "f + 1 nodes are needed)")
    return 0 if receipt.ok else 1


async def submit_tx(
    cluster: Cluster,
    tx: types_pb2.SignedTx,
    node_id: str | None = None,
    *,
    reader: Account | None = None,
) -> tuple[ReceiptView, list[str] | None]:
    """Submit one signed tx and wait for its receipt; (receipt, confirming node ids or None).

    On PBFT (unless one node is named) the receipt counts only once f + 1 nodes return
    matching ones, and the node ids that did are returned; elsewhere one node's word is taken.
    While no leader is elected yet the node answers UNAVAILABLE (not admitted), so resending
    is safe and done for up to NO_LEADER_RETRY_S. The receipts are read (GetTx) as `reader`,
    by default the cluster's auditor.
    """
    quorum = cluster.consensus == "pbft" and not node_id
    node_ids = {node.client_addr: node.id for node in cluster.nodes}

    async def send() -> tuple[ReceiptView, list[str] | None]:
        if quorum:  # one node's receipt is only as honest as that node: ask for f + 1
            # f comes from the validators, not from every node of the directory: observers
            # (cluster add-node) answer too, but do not make the set tolerate more faults.
            faults_max = (len(await validator_ids(cluster)) - 1) // 3
            async with QuorumClient([node.client_addr for node in cluster.nodes],
                                    faults_max=faults_max, chain_id=cluster.chain_id,
                                    reader=reader or reader_for(cluster),
                                    tls=cluster.client_tls()) as nodes:
                confirmed = (await nodes.submit_and_confirm([tx], timeout_ms=60_000))[0]
            return confirmed.receipt, [node_ids[a] for a in confirmed.vouchers]
        client = await connect(cluster, node_id)
        async with client:
            return (await client.submit_and_wait([tx]))[0], None

    deadline = time.monotonic() + NO_LEADER_RETRY_S
    while True:
        try:
            return await send()
        except LedgerError as exc:
            if exc.status != "UNAVAILABLE" or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.25)


async def validator_ids(cluster: Cluster) -> list[str]:
    """The largest validator set the nodes list (a node behind may list an older, smaller
    one, and a smaller f would accept a receipt on fewer nodes' word), else genesis's."""

    async def listed(node: ClusterNode) -> list[str]:
        try:
            async with LedgerClient(node.client_addr, timeout_s=2.0,
                                    tls=node.client_tls()) as client:
                return list((await client.chain_info()).validators)
        except LedgerError:
            return []

    sets = await asyncio.gather(*(listed(node) for node in cluster.nodes))
    return max(sets, key=len) if any(sets) else genesis_validator_ids(cluster)


async def query_view(
    cluster: Cluster, contract: str, view: str, call_args: dict[str, Any],
    node_id: str | None = None, *, reader: Account | None = None,
) -> Any:
    """A contract view's result from the named node or the first that answers, as `reader`
    sees it (by default the cluster's auditor)."""
    client = await connect(cluster, node_id, reader or reader_for(cluster))
    async with client:
        return await client.query(contract, view, call_args)


def print_receipt(console: Console, receipt: ReceiptView, names: dict[str, str]) -> None:
    if receipt.ok:
        console.print(Text.assemble(("SUCCESS", "bold green"),
                                    f" at height {receipt.height}, tx {receipt.tx_id}"))
    else:
        console.print(Text.assemble(("FAILED", "bold red"), f" {receipt.error_code}: "
                                    f"{receipt.message} (height {receipt.height}, tx "
                                    f"{receipt.tx_id})"))
    if receipt.result is not None:
        console.print(f"result: {json.dumps(humanize(receipt.result, names), ensure_ascii=False)}")
    for event in receipt.events:
        console.print(f"event: {event_line(event, names)}")


def _query(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    contract, view = parse_call(args.call, "view")
    call_args = parse_args_json(args.args, cluster)
    reader = reader_for(cluster, args.as_name)
    result = asyncio.run(query_view(cluster, contract, view, call_args, args.node,
                                    reader=reader))
    if args.json:
        print(json.dumps(result))
    else:
        make_console().print_json(json.dumps(humanize(result, cluster.names()), ensure_ascii=False))
    return 0


# ---------------------------------------------------------------------------------------------
# watch


def _watch(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)
    names = cluster.names()
    console = make_console()
    reader = reader_for(cluster, args.as_name)

    async def run() -> None:
        next_height, shown, failures = args.from_height, 0, 0
        while True:
            client = await connect(cluster, args.node, reader)
            try:
                async with client:
                    async for committed in client.subscribe(from_height=next_height):
                        failures = 0
                        if args.json:
                            print(json.dumps(block_json(committed)), flush=True)
                        else:
                            print_block(console, committed, names)
                        shown += 1
                        next_height = committed.block.header.height + 1
                        if args.count and shown >= args.count:
                            return
                why = "the stream ended"
            except LedgerError as exc:
                if args.node or failures >= WATCH_RECONNECTS_MAX:
                    raise
                why = exc.status
            failures += 1
            if failures > WATCH_RECONNECTS_MAX:
                raise ClientCommandError(f"{client.address}: {why}; giving up")
            print(f"scfchain watch: {client.address} went away ({why}); following another "
                  "node", file=sys.stderr)
            await asyncio.sleep(0.5)

    asyncio.run(run())
    return 0


def block_json(committed: types_pb2.CommittedBlock) -> dict[str, Any]:
    header = committed.block.header
    return {
        "height": header.height,
        "time_ms": header.time_ms,
        "proposer": header.proposer,
        "round": header.round,
        "block_hash": committed.block_hash.hex(),
        "app_hash": committed.app_hash.hex(),
        "txs": [
            ReceiptView.of(receipt).to_json() | {"result": None, "visible": bool(tx.body)}
            for tx, receipt in zip(committed.block.txs, committed.receipts, strict=True)
        ],
        "end_block_events": [event_dict(event) for event in committed.end_block_events],
    }


def print_block(
    console: Console, committed: types_pb2.CommittedBlock, names: dict[str, str]
) -> None:
    header = committed.block.header
    console.print(Text.assemble(
        (f"block {header.height}", "bold"),
        f" · {len(committed.receipts)} txs · by {header.proposer} (round {header.round}) · "
        f"app hash {committed.app_hash.hex()[:16]}…",
    ))
    for tx, receipt in zip(committed.block.txs, committed.receipts, strict=True):
        view = ReceiptView.of(receipt)
        outcome = "ok" if view.ok else f"FAILED {view.error_code}".rstrip()
        hidden = "" if tx.body else " (not visible to you)"
        console.print(f"  tx {view.tx_id[:12]}… {outcome}{hidden}")
        for attrs in view.events:
            console.print(f"    {event_line(attrs, names)}")
    for event in committed.end_block_events:
        console.print(f"  end of block: {event_line(event_dict(event), names)}")


# ---------------------------------------------------------------------------------------------
# voucher tree


def voucher_tree(lineage: dict[str, Any], names: dict[str, str]) -> Tree:
    """The lineage of a root voucher as a rich tree: tier, holder, amount, state."""
    records = {node["id"]: node for node in lineage["tree"]}
    core = names.get(lineage["core"], lineage["core"][:12] + "…")
    label = Text.assemble(
        (f"voucher {lineage['root'][:12]}…", "bold"),
        f" · obligor {core} · issued {money(lineage['amount'])} · "
        f"live {money(lineage['live'])} · redeemed {money(lineage['redeemed'])}",
    )
    tree = Tree(label)

    def add(parent: Tree, voucher_id: str) -> None:
        record = records[voucher_id]
        holder = names.get(record["holder"], record["holder"][:12] + "…")
        branch = parent.add(Text.assemble(
            f"tier {record['tier']} · {holder} · {money(record['amount'])} · ",
            (record["state"], STATE_STYLES.get(record["state"], "")),
            (f" · {voucher_id[:12]}…", "dim"),
        ))
        for child in record.get("children") or []:
            if child in records:
                add(branch, child)

    add(tree, lineage["root"])
    return tree


def _voucher_tree(args: argparse.Namespace) -> int:
    cluster = load_cluster(args.dir)

    reader = reader_for(cluster, args.as_name)

    async def run() -> Any:
        client = await connect(cluster, args.node, reader)
        async with client:
            return await client.query("voucher", "lineage", {"root": args.root_id})

    lineage = asyncio.run(run())
    if args.json:
        print(json.dumps(lineage))
    else:
        make_console().print(voucher_tree(lineage, cluster.names()))
    return 0


def register(sub: Any) -> None:
    """Add `tx`, `query`, `watch` and `voucher tree` to the `scfchain` parser."""

    def common(parser: argparse.ArgumentParser, *, reads: bool = True) -> None:
        if reads:
            parser.add_argument("--as", dest="as_name", metavar="NAME",
                                help="the member who signs the read and whose view it shows "
                                "(default: the cluster's auditor)")
        parser.add_argument("--dir", required=True,
                            help="the cluster directory, or an organisation's bundle")
        parser.add_argument("--node", help="ask this node (default: the first that answers)")
        parser.add_argument("--json", action="store_true", help="print JSON")

    tx = sub.add_parser("tx", help="sign a call as a member, submit it, print its receipt")
    tx.add_argument("call", metavar="CONTRACT.METHOD", help="e.g. cash.transfer")
    tx.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                    help="the member who signs (a name from cluster.json)")
    tx.add_argument("--args", default="{}", help='JSON object; "@name" = that member\'s account')
    common(tx, reads=False)
    tx.set_defaults(func=guarded("tx", _tx))

    query = sub.add_parser("query", help="call a read-only contract view")
    query.add_argument("call", metavar="CONTRACT.VIEW", help="e.g. cash.balance")
    query.add_argument("--args", default="{}", help='JSON object; "@name" = that member\'s account')
    common(query)
    query.set_defaults(func=guarded("query", _query))

    watch = sub.add_parser("watch", help="stream committed blocks and their events")
    watch.add_argument("--from", dest="from_height", type=int, default=0,
                       help="first height (default: the next block)")
    watch.add_argument("--count", type=int, default=0, help="stop after this many blocks")
    common(watch)
    watch.set_defaults(func=guarded("watch", _watch))

    voucher = sub.add_parser("voucher", help="voucher views for people")
    voucher_sub = voucher.add_subparsers(dest="voucher_command", required=True)
    tree = voucher_sub.add_parser("tree", help="the lineage tree of a root voucher")
    tree.add_argument("root_id", metavar="ROOT_ID", help="the root voucher's id (64 hex)")
    common(tree)
    tree.set_defaults(func=guarded("voucher tree", _voucher_tree))
