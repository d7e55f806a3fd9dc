"""The node process: `scfchain node --config FILE` runs `run_node` — the state sync a node far
behind does before it starts, the `Node` (node/server.py) until SIGTERM or SIGINT, and the exit
status (0 stopped cleanly, 2 configuration or store refused, 3 FATAL: this node's state
diverged from the chain)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys

from node.config import ConfigError, NodeConfig, load_config
from node.effects import FatalError
from node.genesis import load_genesis
from node.logs import setup_logging
from node.malloc_tuning import tune_malloc
from node.ports import NodeObserver, NullObserver
from node.server import Node, SnapshotWrapper, TransportWrapper, open_chain
from node.state_sync import StateSync, StateSyncError
from node.storage import StorageError
from node.validator_set import ValidatorSets

log = logging.getLogger(__name__)


def run_node(
    config_path: str,
    *,
    observer: NodeObserver | None = None,
    wrap_transport: TransportWrapper | None = None,
    wrap_snapshots: SnapshotWrapper | None = None,
) -> int:
    """Run a node until SIGTERM or SIGINT; the exit status. `observer`, `wrap_transport` and
    `wrap_snapshots` let a harness (node/faults/) watch the node or rewrite what it sends."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"scfchain node: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.node_id, config.log_level, config.log_format)
    tune_malloc()  # before the node starts its threads (node/malloc_tuning.py says why)
    # Block execution and LevelDB reads run in worker threads that drop and re-take the GIL
    # around each store read; a short switch interval keeps them from waiting up to 5 ms for
    # the event loop thread each time.
    sys.setswitchinterval(0.0005)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        runner = asyncio.run
    try:
        runner(_serve(config, observer, wrap_transport, wrap_snapshots))
    except (ConfigError, StorageError, OSError) as exc:
        log.critical("%s", exc)
        return _exit_now(2)
    except (FatalError, BaseExceptionGroup) as exc:
        fatal = _fatal_errors(exc)
        if not fatal:
            raise
        for error in fatal:
            log.critical("FATAL: %s", error)
        return _exit_now(3)
    return _exit_now(0)


def _exit_now(code: int) -> int:
    """End the process here, once the node has stopped and its store is closed: the
    interpreter's own teardown (C-extension threads of gRPC and the metrics server) was seen to
    crash with SIGSEGV after a clean stop, turning a clean exit into a failed one."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _serve(
    config: NodeConfig,
    observer: NodeObserver | None,
    wrap_transport: TransportWrapper | None,
    wrap_snapshots: SnapshotWrapper | None,
) -> None:
    await state_sync(config, observer or NullObserver())
    node = Node(config, observer=observer, wrap_transport=wrap_transport,
                wrap_snapshots=wrap_snapshots)
    # What start-up built (modules, the genesis, the engine: ~50,000 objects) lives as long as
    # the process; frozen, the collector's full passes (which hold the GIL) skip it.
    gc.freeze()
    if await node.run():
        # Far behind a snapshot: start again as this same command, which restores it at
        # start. A fresh process, not a second Node in this one: rebuilding in place crashed
        # (SIGSEGV) in gRPC's native layer.
        log.warning("restarting the process to restore the snapshot")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


async def state_sync(config: NodeConfig, observer: NodeObserver) -> int | None:
    """Before the node is built: restore a peer's state snapshot when this node is far behind
    (node/state_sync.py); the restored height, or None. A restore that fails leaves the store
    as genesis made it, and the node replays blocks instead."""
    if not config.snapshots.state_sync or config.tls is None:
        return None
    genesis = load_genesis(config.genesis)
    if genesis.consensus == "solo":
        return None
    storage = open_chain(config, genesis)
    try:
        sync = StateSync(
            config.node_id, genesis.chain_id, genesis.consensus, storage,
            ValidatorSets(genesis, storage.get_state), config.tls,
            min_blocks=config.snapshots.sync_min_blocks, observer=observer,
        )
        try:
            return await sync.run()
        except StateSyncError as exc:
            log.error("state sync failed (%s); replaying blocks from genesis instead", exc)
            writes, app_hash = genesis.state_writes()
            storage.init_genesis(genesis.genesis_id, writes, app_hash, genesis.time_ms)
            return None
    finally:
        storage.close()


def _fatal_errors(exc: BaseException) -> list[BaseException]:
    """The FatalError / StorageError inside a (possibly nested) exception group."""
    if isinstance(exc, FatalError | StorageError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [inner for sub in exc.exceptions for inner in _fatal_errors(sub)]
    return []
