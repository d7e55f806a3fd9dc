"""The node process: wires storage, contracts, consensus, mempool and the gRPC services.

`scfchain node --config FILE` runs `node.process.run_node`, which builds a `Node` and runs it.
SIGTERM or SIGINT stops it gracefully: the API stops taking requests, the committer finishes
the block it is writing, the store is closed.

A node votes while its id is in the validator set in effect (genesis, then the governance
contract's state: node/validator_set.py); otherwise it is an observer that follows the chain
from validators (node/follower.py) and serves clients. It switches at the height a change takes
effect: an observer voted in builds its engine from the store's head, as after a restart; a
validator voted out stops its engine between two blocks and follows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from consensus.engine import Engine, EngineStatus
from contracts import default_runtime
from node.admission import Admission, SignatureVerifier, membership
from node.api import LedgerService, MalformedRequestInterceptor
from node.chain_params import ChainParams
from node.chain_view import ChainView, Role
from node.client.identity import Account
from node.committer import Committer
from node.config import ConfigError, NodeConfig
from node.consensus_setup import build_engine, certificate_check, signs_messages
from node.driver import Driver
from node.epochs import Epochs
from node.executor import Executor
from node.follower import Follower
from node.genesis import Genesis, load_genesis
from node.inbox import Inbox
from node.mempool import Mempool
from node.metrics import MetricsServer, NodeMetrics, NodeReadings
from node.notifier import Notifier
from node.ports import NodeObserver, NullObserver, PeerTransport, SnapshotSource
from node.proposer import HandOff, NoHandOff, PendingHandOff, Proposer
from node.snapshots import SnapshotStore, Snapshotter
from node.state_sync import StateSync
from node.storage import Storage
from node.syncer import Syncer
from node.tls import read as read_file
from node.transport import PeerTransportGrpc
from node.validator_set import ValidatorSets, ValidatorSetState
from node.verify_pool import VerifyPool
from proto import ledger_pb2, ledger_pb2_grpc

log = logging.getLogger(__name__)

GRPC_SEND_BYTES_MAX = 128 * 1024 * 1024


def _load_signer(config: NodeConfig) -> Account:
    try:
        return Account.load(config.signing_key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load signing_key {config.signing_key}: {exc}") from exc


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def open_chain(config: NodeConfig, genesis: Genesis) -> Storage:
    """Open the store; write genesis on first start; refuse a store of another chain."""
    storage = Storage(os.path.join(config.data_dir, "chain"), compression=config.store_compression)
    interrupted = storage.restore_pending()
    if interrupted is not None:
        log.warning("a state snapshot restore to height %d did not finish: emptying the store "
                    "and starting again", interrupted)
        storage.discard_partial_restore()
    found = storage.genesis_id()
    if found is None:
        writes, app_hash = genesis.state_writes()
        storage.init_genesis(genesis.genesis_id, writes, app_hash, genesis.time_ms)
        log.info("new chain %s initialised from genesis", genesis.chain_id)
    elif found != genesis.genesis_id:
        storage.close()
        raise ConfigError(
            f"the data directory {config.data_dir} holds another chain (genesis differs); "
            "use a fresh data directory or the genesis it was made with"
        )
    return storage


TransportWrapper = Callable[[PeerTransportGrpc], PeerTransport]
SnapshotWrapper = Callable[[SnapshotStore], SnapshotSource]


class Node:
    """Builds every part of a node, each given its collaborators at construction: the inbox
    before the transport that delivers into it, the transport before the parts that send.
    The engine and the driver are built when the node votes (at start, or when voted in)."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        observer: NodeObserver | None = None,
        wrap_transport: TransportWrapper | None = None,
        wrap_snapshots: SnapshotWrapper | None = None,
    ) -> None:
        self.config = config
        self.genesis = genesis = load_genesis(config.genesis)
        self.storage = storage = open_chain(config, genesis)
        self.sets = ValidatorSets(genesis, storage.get_state)
        self.params = ChainParams.of_genesis(genesis, storage.get_state)
        self.epochs = epochs = Epochs(config.node_id, self.sets, storage.head().height)
        voting = epochs.is_voter_next()
        if not voting and genesis.consensus == "solo":
            raise ConfigError(f"node {config.node_id!r} is not the validator of this solo chain")
        self.observer = observer or NullObserver()
        limits = config.limits
        self.contracts = default_runtime()
        self.mempool = mempool = Mempool(limits.mempool_txs_max, limits.mempool_bytes_max)
        self.verifier = SignatureVerifier(
            limits.verify_processes,
            limits.verified_cache_max,
            processes=VerifyPool(limits.verify_processes),
        )
        self.inbox = inbox = Inbox(config.tick_ms)
        self.notifier = Notifier()
        self.metrics = NodeMetrics(config.node_id)
        self.snapshots: SnapshotStore | None = None
        self.snapshotter: Snapshotter | None = None
        if config.tls is not None and genesis.consensus != "solo":
            self.snapshots = SnapshotStore(
                os.path.join(config.data_dir, "snapshots"), genesis.chain_id, config.node_id,
                _load_signer(config), keep=config.snapshots.keep,
                chunk_bytes=config.snapshots.chunk_bytes,
            )
            self.snapshotter = Snapshotter(self.snapshots, storage, config.snapshots.interval)
        self._wrap_snapshots = wrap_snapshots
        self.committer = committer = Committer(
            storage,
            Executor(self.contracts, genesis.chain_id),
            mempool,
            self.notifier,
            inbox,
            self.observer,
            epochs,
            self.params,
            self.snapshotter,
            self.metrics,
        )
        # Before the engine (built next) and the views below read the head; a replayed block
        # may have changed the validator set.
        if committer.replay_stored_blocks():
            voting = epochs.is_voter_next()
        # A validator's engine is built now, so a bad key or genesis stops the start-up.
        self._engine = self._build_engine() if voting else None
        self.role = Role(_NoStatus(), validator=False)
        self.chain = ChainView(
            config.node_id, genesis.chain_id, storage, mempool, self.role, committer,
            epochs=epochs,
        )
        self.admission = Admission(
            genesis.chain_id,
            limits,
            mempool,
            self.verifier,
            storage.has_tx,
            membership(storage.get_state),
            on_refused=lambda code, txs: self.metrics.refused(code, txs),
        )
        self.transport: PeerTransportGrpc | None = None
        self.sender: PeerTransport | None = None
        self.follower: Follower | None = None
        if len(genesis.validators) > 1 or (
            genesis.consensus != "solo" and (config.tls is not None or not voting)
        ):
            self.transport = self._build_transport()
            self.sender = wrap_transport(self.transport) if wrap_transport else self.transport
            self.follower = Follower(
                config.node_id,
                Syncer(self.sender, committer, inbox, certificate_check(genesis, self.sets)),
                committer,
                epochs,
                storage.get_block,
                HandOff(self.sender, mempool, storage.has_tx, _monotonic_ms),
            )
            epochs.add_listener(self._peers_changed)
        epochs.add_listener(self._engine_changed)
        self._role_changed = asyncio.Event()
        epochs.add_listener(lambda *_: self._role_changed.set())
        self.forwarder = self.sender
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None

    def _build_engine(self) -> Engine:
        return build_engine(
            self.config, self.genesis, self.storage, self.verifier.cache,
            self.verifier.processes, self.sets, self.params,
        )

    def _build_driver(self, engine: Engine) -> Driver:
        config, genesis, sender = self.config, self.genesis, self.sender
        syncer: Syncer | None = None
        hand_off: PendingHandOff = NoHandOff()
        if sender is not None:
            # A Byzantine-tolerant engine can check a fetched block's commit certificate.
            syncer = Syncer(
                sender, self.committer, self.inbox, getattr(engine, "verify_certificate", None)
            )
            hand_off = HandOff(sender, self.mempool, self.storage.has_tx, _monotonic_ms)
        proposer = Proposer(
            config.node_id,
            genesis.chain_id,
            self.params,
            self.mempool,
            self.committer,
            hand_off,
        )
        return Driver(
            engine, self.inbox, proposer, self.committer, self.storage, sender, syncer,
            self.notifier, self.observer,
        )

    def _build_transport(self) -> PeerTransportGrpc:
        if self.config.tls is None:
            raise ConfigError("a multi-node network needs a [tls] table (ca_cert, cert, key)")
        signer = _load_signer(self.config)
        known = self.sets.public_key(self.config.node_id)
        if known is not None and signer.public_key != known:
            raise ConfigError("signing_key does not match this node's key in the validator set")
        return PeerTransportGrpc(
            self.config.node_id,
            self.genesis,
            self.config.tls,
            self.storage,
            signer,
            sign_messages=signs_messages(self.genesis),
            deliver=self._deliver,
            admission=self.admission,
            is_leader=self.chain.is_leader,
            roster=self.epochs,
            snapshots=(self._wrap_snapshots(self.snapshots)
                       if self._wrap_snapshots and self.snapshots else self.snapshots),
            metrics=self.metrics,
        )

    def _deliver(self, sender: str, msg: object) -> bool:
        """Peer messages reach the engine only while this node votes: an observer has none."""
        return self.role.validator and self.inbox.deliver(sender, msg)

    # --- validator set changes (Epochs listeners, on the event loop) ------------------------

    def _peers_changed(self, state: ValidatorSetState, height: int, new_epoch: bool) -> None:
        # Until a change takes effect both sides vote on some height: keep links to both.
        side = state.validators if height + 1 >= state.effective_height else state.known()
        assert self.transport is not None
        self.transport.set_peers({v.node_id: v.peer_addr for v in side})

    def _engine_changed(self, state: ValidatorSetState, height: int, new_epoch: bool) -> None:
        if new_epoch and self.role.validator:
            self.inbox.reconfigure(state.effective_height, state.ids)

    # --- running ----------------------------------------------------------------------------

    async def _run_consensus(self) -> None:
        """Vote while in the set in effect, follow while not; switch when that changes."""
        while True:
            if self.epochs.is_voter_next():
                engine = self._engine or self._build_engine()
                self._engine = None  # a later term as validator starts from the store again
                await self._vote(engine)
            else:
                assert self.follower is not None
                self.role.use(self.follower, validator=False)
                await self.follower.run(until=self.epochs.is_voter_next)
                log.info("in the validator set from height %d: starting the engine",
                         self.committer.head.height + 1)

    async def _vote(self, engine: Engine) -> None:
        """Run the driver until this node is no longer in the set in effect."""
        driver = self._build_driver(engine)
        self.role.use(engine, validator=True)
        state = self.sets.state
        if state.epoch > 0:  # the stored set, as at every start (engines accept a repeat)
            self.inbox.reconfigure(state.effective_height, state.ids)
        task = asyncio.create_task(driver.run(), name="driver")
        try:
            while True:
                self._role_changed.clear()
                waiter = asyncio.create_task(self._role_changed.wait())
                done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task in done:
                    task.result()  # re-raises why the driver stopped
                    return
                if not self.epochs.is_voter_next():
                    break
            log.info("out of the validator set from height %d: stopping the engine",
                     self.committer.head.height + 1)
            self.role.use(_NoStatus(), validator=False)
            async with self.committer.paused():  # never between a block's execution and write
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def start_api(self) -> None:
        limits = self.config.limits
        server = grpc.aio.server(
            interceptors=[MalformedRequestInterceptor()],
            options=[
                ("grpc.max_receive_message_length", limits.request_bytes_max + 4096),
                ("grpc.max_send_message_length", GRPC_SEND_BYTES_MAX),
                ("grpc.so_reuseport", 0),
            ]
        )
        service = LedgerService(
            self.config.node_id,
            self.genesis.consensus,
            self.chain,
            self.notifier,
            self.admission,
            self.forwarder,
            self.contracts,
            limits,
            [v.node_id for v in self.genesis.validators],
            reads=self.config.reads,
        )
        ledger_pb2_grpc.add_LedgerServicer_to_server(service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            ledger_pb2.DESCRIPTOR.services_by_name["Ledger"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        try:
            if self.config.client_tls:
                assert self.config.tls is not None  # the config refuses client TLS without it
                tls = self.config.tls
                creds = grpc.ssl_server_credentials(
                    [(read_file(tls.key), read_file(tls.cert))], require_client_auth=False)
                server.add_secure_port(self.config.client_addr, creds)
            else:
                server.add_insecure_port(self.config.client_addr)
        except RuntimeError as exc:
            raise ConfigError(f"cannot listen on {self.config.client_addr}: {exc}") from exc
        await server.start()
        self.server = server
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("scfchain.Ledger", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving %s (%s) at %s (%s), height %d",
            self.genesis.chain_id,
            self.genesis.consensus,
            self.config.client_addr,
            "TLS" if self.config.client_tls else "plaintext, loopback only",
            self.chain.head.height,
        )
        if not self.epochs.is_voter_next():
            log.info("%s is not a validator at height %d: observer",
                     self.config.node_id, self.chain.head.height + 1)

    def _start_metrics(self, loop: asyncio.AbstractEventLoop) -> MetricsServer | None:
        """Serve `/metrics` and `/healthz` when the config names `metrics_addr`. Readings are
        taken on the event loop (the parts they read live there), asked from the HTTP thread."""
        if self.config.metrics_addr is None:
            return None

        async def read() -> NodeReadings:
            status = self.chain.status
            processes = self.verifier.processes
            return NodeReadings(
                height=self.committer.head.height,
                base_height=self.storage.base_height(),
                mempool_txs=len(self.mempool),
                mempool_bytes=self.mempool.bytes,
                role=status.role,
                round=status.round,
                validator=self.role.validator,
                verify_queue=processes.in_flight if processes is not None else 0,
                peers=self.transport.link_states() if self.transport is not None else {},
            )

        def readings() -> NodeReadings:
            return asyncio.run_coroutine_threadsafe(read(), loop).result(timeout=5)

        def healthy() -> bool:
            return self.server is not None and not loop.is_closed()

        self.metrics.watch(readings, self.config.data_dir)
        server = MetricsServer(self.metrics, self.config.metrics_addr, healthy)
        server.start()
        return server

    async def _watch_fall_behind(self) -> None:
        """Return when this node has fallen `sync_min_blocks` behind a snapshot its peers
        offer (checked every `fall_behind_check_s`); never, when state sync is off."""
        config, genesis = self.config, self.genesis
        every = config.snapshots.fall_behind_check_s
        if (every <= 0 or not config.snapshots.state_sync or config.tls is None
                or genesis.consensus == "solo"):
            await asyncio.Event().wait()
        assert config.tls is not None
        while True:
            await asyncio.sleep(every)
            sync = StateSync(
                config.node_id, genesis.chain_id, genesis.consensus, self.storage, self.sets,
                config.tls, min_blocks=config.snapshots.sync_min_blocks,
                observer=self.observer,
            )
            try:
                if await sync.far_behind():
                    log.warning("fell %d or more blocks behind a snapshot the validators offer: "
                                "restarting from it", config.snapshots.sync_min_blocks)
                    return
            except Exception as exc:  # a failed check must not stop the node: try next time
                log.info("fall-behind check failed: %s", exc)

    async def run(self) -> bool:
        """Serve until SIGTERM or SIGINT (False), or until this node fell far behind a state
        snapshot (True: the caller starts the process again, which restores it)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.epochs.announce()  # the stored set: peer links, and who this node is
        if self.transport is not None:
            await self.transport.start(self.config.peer_addr)
        await self.start_api()
        metrics_server = self._start_metrics(loop)
        driver_task = asyncio.create_task(self._run_consensus(), name="consensus")
        stop_task = asyncio.create_task(stop.wait(), name="stop")
        behind_task = asyncio.create_task(self._watch_fall_behind(), name="fall-behind")
        try:
            done, _ = await asyncio.wait(
                {driver_task, stop_task, behind_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if driver_task in done:
                driver_task.result()  # re-raises why the driver stopped
            return behind_task in done and not stop.is_set()
        finally:
            log.info("stopping")
            if metrics_server is not None:
                metrics_server.stop()
            await self.health.enter_graceful_shutdown()
            if self.server is not None:
                await self.server.stop(grace=1.0)
            if self.transport is not None:
                await self.transport.stop()
            for task in (driver_task, stop_task, behind_task):
                task.cancel()
            await asyncio.gather(driver_task, stop_task, behind_task, return_exceptions=True)
            # A cancelled task leaves its worker thread running: a block may still be being
            # written. Closing the store under it crashes LevelDB (SIGSEGV), so wait for every
            # worker thread to finish its job first.
            await loop.shutdown_default_executor()
            self.verifier.close()
            if self.snapshotter is not None and not self.snapshotter.wait_idle(60):
                log.warning("a snapshot is still being written; closing the store anyway")
            self.storage.close()
            log.info("stopped")


class _NoStatus:
    """The status while no engine runs and the follower has not taken over (a moment)."""

    @property
    def status(self) -> EngineStatus:
        return EngineStatus(role="observer", round=0, leader=None, commit_height=0)
