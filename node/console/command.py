"""`scfchain console`: serve the web console for one member of a cluster (`--dir D --as NAME`)
or of any node (`--addr HOST:PORT --key FILE [--ca CA]`), on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from dataclasses import dataclass
from typing import Any

from node.client.identity import Account
from node.client.ledger import ClientTls, LedgerClient, LedgerError
from node.console.source import GrpcChainSource, NodeTarget

log = logging.getLogger(__name__)

PORT_DEFAULT = 8480
HOST_DEFAULT = "127.0.0.1"
GRACEFUL_SHUTDOWN_S = 2


class ConsoleSetupError(Exception):
    """Bad options; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class ConsoleTarget:
    """Who the console reads as, and from which nodes."""

    nodes: tuple[NodeTarget, ...]
    reader: Account
    reader_name: str
    chain_id: str


def target_from_dir(root: str, as_name: str | None, node_id: str | None) -> ConsoleTarget:
    from node.ops.cluster_dir import ClusterError, load_cluster

    try:
        cluster = load_cluster(root)
        if as_name:
            reader, name = cluster.account(as_name), as_name
        else:
            auditor = cluster.auditor()
            if auditor is None:
                names = ", ".join(a.name for a in cluster.accounts)
                raise ConsoleSetupError(f"{cluster.root} has no auditor to read as by default; "
                                        f"pass --as NAME ({names})")
            reader = auditor
            name = next(a.name for a in cluster.accounts if a.role == "auditor")
        nodes = [cluster.node(node_id)] if node_id else cluster.nodes
    except ClusterError as exc:
        raise ConsoleSetupError(str(exc)) from None
    return ConsoleTarget(
        nodes=tuple(NodeTarget(n.id, n.client_addr, n.client_tls()) for n in nodes),
        reader=reader, reader_name=name, chain_id=cluster.chain_id)


def target_from_addr(addr: str, key_file: str, ca: str | None,
                     server_name: str | None) -> ConsoleTarget:
    try:
        reader = Account.load(key_file)
    except (OSError, ValueError) as exc:
        raise ConsoleSetupError(f"cannot read the key {key_file}: {exc}") from None
    try:
        tls = ClientTls.load(ca, server_name) if ca else None
    except OSError as exc:
        raise ConsoleSetupError(f"cannot read the CA certificate {ca}: {exc}") from None

    async def chain_id() -> str:
        async with LedgerClient(addr, timeout_s=5.0, tls=tls) as client:
            return (await client.chain_info()).chain_id

    try:
        found = asyncio.run(chain_id())
    except LedgerError as exc:
        raise ConsoleSetupError(f"{addr} does not answer GetChainInfo ({exc}); is the node up"
                                f"{'' if ca else ', and does it speak TLS (pass --ca)'}?") from None
    return ConsoleTarget(nodes=(NodeTarget("", addr, tls),), reader=reader, reader_name="",
                         chain_id=found)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_target(args: argparse.Namespace) -> ConsoleTarget:
    """Who to read as and from where, from the command's options."""
    if bool(args.dir) == bool(args.addr):
        raise ConsoleSetupError("name the chain with --dir DIR (a cluster directory) or "
                                "--addr HOST:PORT --key FILE, one of the two")
    if args.dir:
        return target_from_dir(args.dir, args.as_name, args.node)
    if not args.key:
        raise ConsoleSetupError("--addr needs --key FILE: the member key that signs the "
                                "console's reads")
    return target_from_addr(args.addr, args.key, args.ca, args.server_name)


def run(args: argparse.Namespace) -> int:
    try:
        target = build_target(args)
    except ConsoleSetupError as exc:
        print(f"scfchain console: {exc}", file=sys.stderr)
        return 1
    if not _is_loopback(args.host):
        print(f"scfchain console: serving on {args.host}: anyone who reaches this port reads "
              "the chain as this member", file=sys.stderr)
    serve(target, args.host, args.port)
    return 0


def serve(target: ConsoleTarget, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(target, host, port))


async def _serve(target: ConsoleTarget, host: str, port: int) -> None:
    """Serve until interrupted (gRPC's asyncio channels are made inside the running loop)."""
    import uvicorn

    from node.console.app import create_app

    source = GrpcChainSource(target.nodes, target.reader, target.chain_id)
    try:
        app = create_app(source, reader_name=target.reader_name)
        who = target.reader_name or target.reader.account_id[:16] + "…"
        print(f"scfchain console: http://{host}:{port}/ (reading as {who})", flush=True)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        await uvicorn.Server(config).serve()
    finally:
        await source.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="a cluster directory (its cluster.json)")
    parser.add_argument("--as", dest="as_name", metavar="NAME",
                        help="with --dir: the member whose key signs the reads (default: the "
                        "cluster's auditor)")
    parser.add_argument("--node", help="with --dir: read from this node only")
    parser.add_argument("--addr", help="a node's client address host:port (instead of --dir)")
    parser.add_argument("--key", help="with --addr: the member's key file (PEM)")
    parser.add_argument("--ca", help="with --addr: the consortium CA certificate (TLS port)")
    parser.add_argument("--server-name", help="with --ca: the name in the node's certificate "
                        "when the address does not carry it (e.g. the node id)")
    parser.add_argument("--host", default=HOST_DEFAULT,
                        help=f"the address to serve on (default {HOST_DEFAULT})")
    parser.add_argument("--port", type=int, default=PORT_DEFAULT,
                        help=f"the port to serve on (default {PORT_DEFAULT})")


def main_parser() -> argparse.ArgumentParser:
    """The command's options on their own (tests, `python -m node.console.command`)."""
    parser = argparse.ArgumentParser(prog="scfchain console")
    add_arguments(parser)
    return parser


def register(sub: Any) -> None:
    """Add `console` to the `scfchain` parser."""
    parser = sub.add_parser("console", help="serve the web console for one member")
    add_arguments(parser)
    parser.set_defaults(func=run)
