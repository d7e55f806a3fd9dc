"""Node configuration: a TOML file loaded into frozen dataclasses and validated at start-up."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

STORE_COMPRESSIONS = ("none", "snappy")  # node/storage.py opens LevelDB with either


class ConfigError(Exception):
    """The configuration or genesis is invalid; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Limits:
    tx_bytes_max: int = 65_536
    request_txs_max: int = 10_000
    request_bytes_max: int = 32 * 1024 * 1024
    # 50,000 txs is 8-25 s of work at this machine's rates; beyond it clients are told
    # RESOURCE_EXHAUSTED and retry. A larger backlog only adds latency, and memory (with 200,000,
    # a Raft node under a 5-minute overload run, its verify workers and a 1,024-block Raft log
    # reach 672 MB).
    mempool_txs_max: int = 50_000
    mempool_bytes_max: int = 128 * 1024 * 1024
    submit_wait_ms_default: int = 30_000
    submit_wait_ms_max: int = 120_000
    subscribers_max: int = 256
    subscriber_queue_blocks_max: int = 256
    # Subscribe refuses (OUT_OF_RANGE) a from_height further than this beyond the node's head.
    subscribe_ahead_blocks_max: int = 1_000
    query_args_bytes_max: int = 16_384
    verify_processes: int = 2  # signature-check worker processes of a node
    verified_cache_max: int = 100_000  # twice the mempool: ids live from admission to block

    def validate(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) <= 0:
                raise ConfigError(f"limits.{item.name} must be positive")
        if self.tx_bytes_max > self.request_bytes_max:
            raise ConfigError("limits.tx_bytes_max must not exceed request_bytes_max")
        if self.submit_wait_ms_default > self.submit_wait_ms_max:
            raise ConfigError("limits.submit_wait_ms_default must not exceed submit_wait_ms_max")
        if self.verified_cache_max < self.request_txs_max:
            raise ConfigError("limits.verified_cache_max must be at least request_txs_max")


@dataclass(frozen=True, slots=True)
class Snapshots:
    """`[snapshots]`: state snapshots this node takes and serves, and state sync at start.

    `interval`: a snapshot after every `interval`-th block (0: none); `keep`: how many to keep;
    `state_sync`: at start, restore a peer's snapshot instead of replaying blocks when it is
    more than `sync_min_blocks` above this node's head. `chunk_bytes`: how snapshots are cut;
    the same on every node (a joining node takes a manifest only when enough validators wrote
    the very same one)."""

    interval: int = 500
    keep: int = 2
    state_sync: bool = True
    sync_min_blocks: int = 100
    chunk_bytes: int = 4 * 1024 * 1024
    # A running node asks its peers this often whether it fell `sync_min_blocks` behind a
    # snapshot, and if so restarts from it (0: never; it keeps replaying).
    fall_behind_check_s: int = 60

    def validate(self) -> None:
        if (self.interval < 0 or self.keep < 1 or self.sync_min_blocks < 1
                or self.fall_behind_check_s < 0):
            raise ConfigError("snapshots: interval >= 0, keep >= 1, sync_min_blocks >= 1, "
                              "fall_behind_check_s >= 0")
        if not 1_024 <= self.chunk_bytes <= 16 * 1024 * 1024:
            raise ConfigError("snapshots: chunk_bytes must be 1024..16777216")


@dataclass(frozen=True, slots=True)
class Reads:
    """`[reads]`: who may read through the client API (node/read_auth.py).

    `signed`: Query, GetTx, GetBlock and Subscribe must each carry a member's signature, and
    answer only what that member may see; false (anyone reads everything) is for development
    only. `window_ms`: how far a signed read's time may be from the node's clock, either way."""

    signed: bool = True
    window_ms: int = 30_000

    def validate(self) -> None:
        if not 1_000 <= self.window_ms <= 600_000:
            raise ConfigError("reads: window_ms must be 1000..600000")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: str
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    data_dir: str
    genesis: str
    client_addr: str
    peer_addr: str
    signing_key: str
    tls: TlsFiles | None = None
    limits: Limits = field(default_factory=Limits)
    log_level: str = "INFO"
    tick_ms: int = 10
    snapshots: Snapshots = field(default_factory=Snapshots)
    reads: Reads = field(default_factory=Reads)
    # Prometheus metrics and /healthz over HTTP (node/metrics.py); None: not served.
    metrics_addr: str | None = None
    # TLS on the client port with the node's certificate from the consortium CA ([tls]).
    # Plaintext (`client_tls = false`, or no [tls] table) is for development on loopback only.
    client_tls: bool = True
    log_format: str = "text"  # or "json": one JSON object per line
    # LevelDB block compression of the store: "none" (default) or "snappy". Every compaction
    # rewrites and re-compresses the state, and on a busy node Snappy alone took more CPU
    # than contract execution; "snappy" keeps the store about 40 % smaller. Either opens a
    # store written with the other.
    store_compression: str = "none"


def _resolve(base: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _addr(value: Any, name: str) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{name} must be 'host:port', got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be 'host:port' with a port in 1..65535, got {value!r}")
    return value


def parse_config(doc: dict[str, Any], base_dir: str) -> NodeConfig:
    try:
        node_id = doc["node_id"]
        data_dir = _resolve(base_dir, doc["data_dir"])
        genesis = _resolve(base_dir, doc["genesis"])
        signing_key = _resolve(base_dir, doc["signing_key"])
    except KeyError as exc:
        raise ConfigError(f"config: missing {exc.args[0]!r}") from None
    if not isinstance(node_id, str) or not node_id or len(node_id) > 64:
        raise ConfigError("config: node_id must be 1..64 characters")
    tls = None
    if "tls" in doc:
        try:
            tls = TlsFiles(**{k: _resolve(base_dir, v) for k, v in doc["tls"].items()})
        except TypeError as exc:
            raise ConfigError(f"config: [tls] needs ca_cert, cert and key: {exc}") from None
    known = {item.name for item in fields(Limits)}
    limits_doc = doc.get("limits", {})
    if "verify_threads" in limits_doc:
        raise ConfigError("config: limits.verify_threads is now limits.verify_processes "
                          "(it always counted worker processes)")
    unknown = sorted(set(limits_doc) - known)
    if unknown:
        raise ConfigError(f"config: unknown limits {unknown}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in limits_doc.values()):
        raise ConfigError("config: limits must be integers")
    limits = Limits(**limits_doc)
    limits.validate()
    level = str(doc.get("log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("config: log_level must be DEBUG, INFO, WARNING or ERROR")
    tick_ms = doc.get("tick_ms", 10)
    if not isinstance(tick_ms, int) or not 1 <= tick_ms <= 1000:
        raise ConfigError("config: tick_ms must be 1..1000")
    snapshots_doc = doc.get("snapshots", {})
    unknown = sorted(set(snapshots_doc) - {item.name for item in fields(Snapshots)})
    if unknown:
        raise ConfigError(f"config: unknown [snapshots] settings {unknown}")
    if not all(isinstance(v, int) for v in snapshots_doc.values()):
        raise ConfigError("config: [snapshots] settings are integers (state_sync: a boolean)")
    snapshots = Snapshots(**snapshots_doc)
    snapshots.validate()
    reads = _reads(doc.get("reads", {}))
    return NodeConfig(
        node_id=node_id,
        data_dir=data_dir,
        genesis=genesis,
        client_addr=_addr(doc.get("client_addr"), "client_addr"),
        peer_addr=_addr(doc.get("peer_addr", "127.0.0.1:0"), "peer_addr"),
        signing_key=signing_key,
        tls=tls,
        limits=limits,
        log_level=level,
        tick_ms=tick_ms,
        snapshots=snapshots,
        reads=reads,
        metrics_addr=(None if doc.get("metrics_addr") is None
                      else _addr(doc.get("metrics_addr"), "metrics_addr")),
        log_format=_log_format(doc.get("log_format", "text")),
        client_tls=_client_tls(doc, tls),
        store_compression=_store_compression(doc.get("store_compression", "none")),
    )


def _store_compression(value: Any) -> str:
    if value not in STORE_COMPRESSIONS:
        raise ConfigError("config: store_compression must be one of "
                          f"{', '.join(STORE_COMPRESSIONS)}, got {value!r}")
    return str(value)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _client_tls(doc: dict[str, Any], tls: TlsFiles | None) -> bool:
    wanted = doc.get("client_tls", tls is not None)
    if not isinstance(wanted, bool):
        raise ConfigError("config: client_tls must be true or false")
    if wanted and tls is None:
        raise ConfigError("config: client_tls needs a [tls] table (ca_cert, cert, key)")
    host = str(doc.get("client_addr", "")).rpartition(":")[0]
    if not wanted and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"config: the client port {doc.get('client_addr')} would be plaintext: a client "
            "port off loopback needs TLS (a [tls] table, and no client_tls = false)"
        )
    return wanted


def _log_format(value: Any) -> str:
    if value not in ("text", "json"):
        raise ConfigError(f"config: log_format must be \"text\" or \"json\", got {value!r}")
    return str(value)


def _reads(doc: Any) -> Reads:
    if not isinstance(doc, dict):
        raise ConfigError("config: [reads] must be a table")
    unknown = sorted(set(doc) - {item.name for item in fields(Reads)})
    if unknown:
        raise ConfigError(f"config: unknown [reads] settings {unknown}")
    if not isinstance(doc.get("signed", True), bool):
        raise ConfigError("config: reads.signed must be true or false")
    window = doc.get("window_ms", 0)
    if not isinstance(window, int) or isinstance(window, bool):
        raise ConfigError("config: reads.window_ms must be an integer")
    reads = Reads(**doc)
    reads.validate()
    return reads


def load_config(path: str) -> NodeConfig:
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
    return parse_config(doc, os.path.dirname(os.path.abspath(path)))
