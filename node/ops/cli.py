"""The `scfchain` command line: keys, node, and the client and cluster commands.

Each family of subcommands lives in its own module and registers itself here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable

from node.client.identity import Account

Command = Callable[[argparse.Namespace], int]


def _keys_new(args: argparse.Namespace) -> int:
    if os.path.exists(args.out):
        print(f"scfchain keys new: {args.out} exists; not overwriting a key", file=sys.stderr)
        return 2
    account = Account.generate()
    account.save(args.out)
    if args.json:
        print(json.dumps({"key_file": args.out, "account_id": account.account_id}))
    else:
        print(f"wrote {args.out}\naccount id: {account.account_id}")
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    account = Account.load(args.key)
    if args.json:
        print(json.dumps({"key_file": args.key, "account_id": account.account_id}))
    else:
        print(account.account_id)
    return 0


def _node(args: argparse.Namespace) -> int:
    if args.config is None:
        print("scfchain node: the following arguments are required: --config", file=sys.stderr)
        return 2
    from node.process import run_node

    return run_node(args.config)


def _info(args: argparse.Namespace) -> int:
    from node.client.ledger import ClientTls, LedgerClient

    async def run() -> int:
        tls = ClientTls.load(args.ca) if args.ca else None
        async with LedgerClient(args.addr, timeout_s=5, tls=tls) as client:
            info = await client.chain_info()
        doc = {
            "chain_id": info.chain_id,
            "node_id": info.node_id,
            "height": info.height,
            "app_hash": info.app_hash.hex(),
            "consensus": info.consensus,
            "role": info.role,
            "round": info.round,
            "leader": info.leader,
            "mempool_size": info.mempool_size,
            "base_height": info.base_height,
        }
        if args.json:
            print(json.dumps(doc))
        else:
            for key, value in doc.items():
                print(f"{key:>13}: {value}")
        return 0

    return asyncio.run(run())


def _demo(args: argparse.Namespace) -> int:
    from node.ops.demo import main as demo_main

    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scfchain", description="A consortium blockchain for supply-chain finance."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="make and inspect Ed25519 account keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="write a new PEM private key")
    new.add_argument("--out", required=True, help="where to write the key (PEM)")
    new.add_argument("--json", action="store_true", help="print JSON")
    new.set_defaults(func=_keys_new)
    show = keys_sub.add_parser("show", help="print a key's account id")
    show.add_argument("key", help="PEM private key file")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_keys_show)

    node = sub.add_parser("node", help="run one node (`node prune`: drop a stopped node's "
                          "old blocks)")
    node.add_argument("--config", help="the node's TOML config (required)")
    node.set_defaults(func=_node)
    from node.ops import cli_node

    cli_node.register(node)  # `scfchain node prune --config F --below H`

    info = sub.add_parser("info", help="chain info of one node")
    info.add_argument("--addr", required=True, help="the node's client address host:port")
    info.add_argument("--ca", help="the consortium CA certificate (a TLS client port; the "
                                   "nodes of `cluster up` use DIR/ca/ca.crt)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

    demo = sub.add_parser("demo", help="run the supply-chain-finance story on a local cluster")
    demo.add_argument("--keep", action="store_true", help="keep the cluster directory")
    demo.add_argument("--dir", help="run in this (new or cluster) directory, not a temporary one")
    demo.set_defaults(func=_demo)

    from node.ops import cli_client, cli_cluster, cli_gov

    cli_cluster.register(sub)
    cli_client.register(sub)
    cli_gov.register(sub)
    from node.ops import consortium_cli  # `scfchain consortium init|check|csr|sign`

    consortium_cli.register(sub)

    from bench.cli import add_parser as add_bench_parser  # `scfchain bench` lives in bench/

    add_bench_parser(sub)

    from node.ops.soak import add_parser as add_soak_parser  # `scfchain soak`: faults under load

    add_soak_parser(sub)
    from node.console.command import register as add_console_parser  # the web console

    add_console_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
