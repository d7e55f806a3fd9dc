"""`scfchain node prune`: drop the old blocks of a stopped node (issue 16, pruned history).

`scfchain node --config F` runs a node (node/ops/cli.py); `scfchain node prune --config F
--below H` opens that node's store offline and deletes its blocks below height H
(`Storage.prune_below`). The node must be stopped: its LevelDB lock is held while it runs, and
this says so. The tx id index is kept whole (replay protection needs every tx id ever
committed), as are the state and the head block; the node then reports `base_height` H in
ChainInfo and answers GetBlock, GetTx and Subscribe below H with NOT_FOUND naming it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from node.config import ConfigError, load_config
from node.storage import Storage, StorageError

log = logging.getLogger(__name__)


class PruneError(Exception):
    """The store cannot be pruned as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class PruneResult:
    node: str
    base_height: int  # the lowest height whose block the store now holds
    head: int
    removed: int  # blocks deleted by this run (0: the store held none below the height)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def store_path(config_path: str) -> tuple[str, str]:
    """The node id and the path of its store, from its config."""
    config = load_config(config_path)
    return config.node_id, os.path.join(config.data_dir, "chain")


def open_store(path: str) -> Storage:
    """Open an existing store, saying clearly when the node still runs on it."""
    if not os.path.exists(os.path.join(path, "CURRENT")):
        raise PruneError(f"no store at {path}: this node has not run yet, so there is nothing "
                         "to prune")
    try:
        return Storage(path)
    except StorageError as exc:
        if "LOCK:" in str(exc):  # LevelDB's lock file: a running node holds it
            raise PruneError(f"the store at {path} is in use (its LevelDB lock is held): stop "
                             "the node first, then prune") from exc
        raise PruneError(str(exc)) from exc


def newest_snapshot(data_dir: str) -> int | None:
    """The height of the newest state snapshot the node holds (node/snapshots.py), if any."""
    try:
        heights = [int(n) for n in os.listdir(os.path.join(data_dir, "snapshots")) if n.isdigit()]
    except FileNotFoundError:
        return None
    return max(heights, default=None)


def prune_store(
    storage: Storage, node_id: str, below: int,
    progress: Callable[[int, int, int], None] | None = None,
    *, keep_from: int | None = None,
) -> PruneResult:
    """Delete the blocks of `storage` below `below`. `progress(done, first, below)` is called
    after each batch with the height pruned up to. `keep_from`: the newest snapshot's height;
    the blocks from it on stay, so a peer that restores it can replay the blocks after it."""
    if storage.restore_pending() is not None:
        raise PruneError("the store holds a state-snapshot restore that did not finish; start "
                         "the node to finish it, then prune")
    if storage.genesis_id() is None:
        raise PruneError(f"the store at {storage.path} holds no chain")
    head = storage.head().height
    base = storage.base_height()
    if below < 1:
        raise PruneError(f"--below {below}: the height must be at least 1")
    if below > head:
        raise PruneError(f"--below {below} is above the head ({head}): the head block is always "
                         f"kept; prune below a height up to {head}")
    if keep_from is not None and below > keep_from:
        raise PruneError(f"--below {below} would delete blocks after this node's newest state "
                         f"snapshot (height {keep_from}), which a peer restoring it must replay; "
                         f"prune below {keep_from} at most, or pass --force")
    if below <= base:
        log.info("%s already holds blocks from height %d on; nothing to prune", node_id, base)
        return PruneResult(node_id, base, head, 0)
    first = max(base, 1)
    new_base = storage.prune_below(
        below, progress=None if progress is None else lambda done: progress(done, first, below)
    )
    log.info("%s: pruned blocks %d..%d; it holds blocks %d..%d", node_id, first, below - 1,
             new_base, head)
    return PruneResult(node_id, new_base, head, below - first)


def open_node_store(config_path: str) -> tuple[str, Storage]:
    """The node id and the opened store of the (stopped) node configured by `config_path`."""
    try:
        node_id, path = store_path(config_path)
    except ConfigError as exc:
        raise PruneError(str(exc)) from exc
    return node_id, open_store(path)


def _keep_from(storage: Storage, force: bool) -> int | None:
    return None if force else newest_snapshot(os.path.dirname(storage.path))


def prune_node(
    config_path: str, below: int, progress: Callable[[int, int, int], None] | None = None,
    *, force: bool = False,
) -> PruneResult:
    """Prune the store of the (stopped) node configured by `config_path` below `below`."""
    node_id, storage = open_node_store(config_path)
    try:
        return prune_store(storage, node_id, below, progress,
                           keep_from=_keep_from(storage, force))
    except StorageError as exc:
        raise PruneError(str(exc)) from exc
    finally:
        storage.close()


class _PlainProgress:
    """A line on stderr at every tenth of the work (a pipe or a log file gets no bar)."""

    def __init__(self) -> None:
        self._shown = -1

    def __call__(self, done: int, first: int, below: int) -> None:
        total = max(below - first, 1)
        tenth = (done - first) * 10 // total
        if tenth > self._shown:
            self._shown = tenth
            print(f"scfchain node prune: {done - first} of {total} blocks removed",
                  file=sys.stderr, flush=True)


def _prune(args: argparse.Namespace) -> int:
    if args.config is None:
        print("scfchain node prune: the following arguments are required: --config",
              file=sys.stderr)
        return 2
    try:
        node_id, storage = open_node_store(args.config)  # refusals come before any bar
        try:
            keep_from = _keep_from(storage, args.force)
            if sys.stderr.isatty() and not args.json:
                result = _prune_with_bar(storage, node_id, args.below, keep_from)
            else:
                result = prune_store(storage, node_id, args.below, _PlainProgress(),
                                     keep_from=keep_from)
        except StorageError as exc:
            raise PruneError(str(exc)) from exc
        finally:
            storage.close()
    except PruneError as exc:
        print(f"scfchain node prune: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"node": result.node, "base_height": result.base_height,
                          "head": result.head}))
    elif result.removed:
        print(f"{result.node}: removed {result.removed} blocks; it holds blocks "
              f"{result.base_height}..{result.head} (the tx index is kept whole)")
    else:
        print(f"{result.node}: nothing to prune; it holds blocks "
              f"{result.base_height or 1}..{result.head}")
    return 0


def _prune_with_bar(storage: Storage, node_id: str, below: int,
                    keep_from: int | None) -> PruneResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("pruning"), BarColumn(), MofNCompleteColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("prune", total=None)

        def show(done: int, first: int, upto: int) -> None:
            bar.update(task, completed=done - first, total=upto - first)

        return prune_store(storage, node_id, below, show, keep_from=keep_from)


def _height(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a height: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a height of at least 1, not {value}")
    return value


def register(node: argparse.ArgumentParser) -> None:
    """Add `prune` under `scfchain node` (which alone, with --config, runs the node)."""
    actions = node.add_subparsers(dest="node_command", metavar="{prune}")
    prune = actions.add_parser(
        "prune", help="delete a stopped node's blocks below a height (keeps the tx index)",
        description="Delete the blocks below HEIGHT from a stopped node's store. The state, the "
                    "head block and the tx id index are kept; the node then reports "
                    "base_height HEIGHT and answers NOT_FOUND for older blocks.",
    )
    # SUPPRESS: `scfchain node --config F prune ...` keeps the --config given before `prune`.
    prune.add_argument("--config", default=argparse.SUPPRESS, help="the node's TOML config")
    prune.add_argument("--below", type=_height, required=True, metavar="HEIGHT",
                       help="delete blocks below this height (at most the head)")
    prune.add_argument("--json", action="store_true",
                       help='print {"node", "base_height", "head"}')
    prune.add_argument("--force", action="store_true",
                       help="prune past the node's newest state snapshot too")
    prune.set_defaults(func=_prune)
