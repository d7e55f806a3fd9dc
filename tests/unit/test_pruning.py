"""Pruned history (issue 16): a node that holds blocks from a base height on.

On a real store with ten committed blocks (two txs each): `Storage.prune_below` deletes the
blocks below the height and keeps the tx index, the head and the app hash the next header needs;
the `Ledger` service (`LedgerService` over a `ChainView` of that store) reports `base_height` and
answers GetBlock, GetTx and Subscribe below it with NOT_FOUND naming the base; `scfchain node
prune` refuses what it must (a running node, a height above the head, no store) and prunes a
stopped node's store; `cluster status` carries each node's base height.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from contracts import default_runtime
from node.api import LedgerService
from node.chain_view import ChainView
from node.config import Limits, Reads
from node.mempool import Mempool
from node.notifier import Notifier
from node.ops import cli
from node.ops.cli_cluster import status_table
from node.ops.cli_node import PruneError, prune_node
from node.ops.cluster_status import NodeStatus, node_status
from node.ops.launcher import Cluster, ClusterNode
from node.storage import ChainHead, Storage, StorageError
from proto import ledger_pb2, types_pb2

UNSIGNED = Reads(signed=False)  # who reads is not what these tests check (test_read_api.py)

HEAD = 10


def tx_id(height: int, index: int) -> bytes:
    return bytes([height, index]) * 16


def committed(height: int) -> types_pb2.CommittedBlock:
    header = types_pb2.BlockHeader(chain_id="c", height=height, time_ms=1000 + height)
    txs = [types_pb2.SignedTx(body=b"body-%d-%d" % (height, i), signature=b"s") for i in (0, 1)]
    receipts = [types_pb2.Receipt(tx_id=tx_id(height, i), height=height, index=i) for i in (0, 1)]
    return types_pb2.CommittedBlock(
        block=types_pb2.Block(header=header, txs=txs),
        receipts=receipts,
        block_hash=bytes([height]) * 32,
        app_hash=bytes([height + 100]) * 32,
    )


def fill(path: str, head: int = HEAD) -> Storage:
    """A store at `path` with genesis and blocks 1..head, two txs each."""
    store = Storage(path)
    store.init_genesis(b"g" * 32, {}, b"h" * 32, 1000)
    for height in range(1, head + 1):
        store.commit_block(committed(height), {}, [(tx_id(height, i), i) for i in (0, 1)])
    return store


@pytest.fixture
def store(tmp_path: Any) -> Any:
    storage = fill(str(tmp_path / "chain"))
    yield storage
    storage.close()


# --- the store ----------------------------------------------------------------------------


def test_prune_below_deletes_old_blocks_and_keeps_the_tx_index_and_head(store, tmp_path) -> None:
    assert store.base_height() == 0
    seen: list[int] = []
    assert store.prune_below(6, progress=seen.append) == 6
    assert seen and seen[-1] == 6
    assert store.base_height() == 6
    assert [h for h in range(1, HEAD + 1) if store.get_block(h) is None] == [1, 2, 3, 4, 5]
    assert store.get_block(6).block.header.height == 6
    # Replay protection: every committed tx id is still known, with its location.
    assert store.has_tx(tx_id(2, 1)) and store.tx_location(tx_id(2, 1)) == (2, 1)
    # The app hash below the base stays for the next header; older ones are gone.
    assert store.app_hash_at(5) == bytes([105]) * 32
    with pytest.raises(StorageError):
        store.app_hash_at(4)
    assert store.head().height == HEAD
    store.commit_block(committed(HEAD + 1), {}, [(tx_id(HEAD + 1, 0), 0)])  # commits go on
    assert store.prune_below(3) == 6  # never lowers the base
    store.close()
    reopened = Storage(str(tmp_path / "chain"))
    try:
        assert reopened.base_height() == 6 and reopened.get_block(5) is None
        assert reopened.has_tx(tx_id(1, 0))
    finally:
        reopened.close()


@pytest.mark.parametrize("height", [0, HEAD + 1])
def test_prune_below_refuses_heights_outside_the_chain(store, height) -> None:
    with pytest.raises(StorageError, match=rf"must be in 1\.\.{HEAD}"):
        store.prune_below(height)
    assert store.base_height() == 0 and store.get_block(1) is not None


# --- the Ledger service -------------------------------------------------------------------


class _Aborted(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class _Context:
    async def abort(self, code: Any, details: str) -> None:
        raise _Aborted(code, details)


class _Head:
    """The committer's part a ChainView reads: the head, straight from the store."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def head(self) -> ChainHead:
        return self.storage.head()

    def app_hash_at(self, height: int) -> bytes:
        return self.storage.app_hash_at(height)


def service_for(storage: Storage, node_id: str = "node3") -> LedgerService:
    engine: Any = SimpleNamespace(status=SimpleNamespace(role="solo", round=0, leader=node_id))
    chain = ChainView(node_id, "c", storage, Mempool(100, 1_000_000), engine, _Head(storage))
    unused: Any = None  # admission: nothing here submits
    return LedgerService(node_id, "solo", chain, Notifier(), unused, None, default_runtime(),
                         Limits(), [node_id], reads=UNSIGNED)


def pruned_text(what: str) -> str:
    return (f"{what} is pruned on node3: it holds blocks from height 6 on (restored from a "
            "snapshot or pruned); ask a node with base_height 0")


async def test_chain_info_reports_the_base_height(store) -> None:
    service = service_for(store)
    info = await service.GetChainInfo(ledger_pb2.GetChainInfoRequest(), _Context())
    assert (info.height, info.base_height) == (HEAD, 0)
    store.prune_below(6)
    info = await service.GetChainInfo(ledger_pb2.GetChainInfoRequest(), _Context())
    assert (info.height, info.base_height) == (HEAD, 6)


async def test_get_block_below_the_base_is_not_found_naming_it(store) -> None:
    service = service_for(store)
    assert (await service.GetBlock(ledger_pb2.GetBlockRequest(height=2), _Context())
            ).block.header.height == 2
    store.prune_below(6)
    with pytest.raises(_Aborted) as caught:
        await service.GetBlock(ledger_pb2.GetBlockRequest(height=2), _Context())
    assert (caught.value.code.name, caught.value.details) == ("NOT_FOUND", pruned_text("block 2"))
    for height in (6, HEAD, 0):  # 0: the latest
        block = await service.GetBlock(ledger_pb2.GetBlockRequest(height=height), _Context())
        assert block.block.header.height == (height or HEAD)
    with pytest.raises(_Aborted) as caught:  # above the head: the answer it always gave
        await service.GetBlock(ledger_pb2.GetBlockRequest(height=HEAD + 1), _Context())
    assert (caught.value.code.name, caught.value.details) == (
        "NOT_FOUND", f"no block {HEAD + 1}; the chain is at {HEAD}")


async def test_get_tx_in_a_pruned_block_is_not_found_naming_its_height_and_the_base(
    store,
) -> None:
    service = service_for(store)
    store.prune_below(6)
    old = tx_id(2, 1)
    with pytest.raises(_Aborted) as caught:
        await service.GetTx(ledger_pb2.GetTxRequest(tx_id=old), _Context())
    assert caught.value.code.name == "NOT_FOUND"
    assert caught.value.details == pruned_text(f"tx {old.hex()} committed in block 2, which")
    kept = await service.GetTx(ledger_pb2.GetTxRequest(tx_id=tx_id(7, 1)), _Context())
    assert kept.receipt.tx_id == tx_id(7, 1) and kept.tx.body == b"body-7-1"
    with pytest.raises(_Aborted) as caught:
        await service.GetTx(ledger_pb2.GetTxRequest(tx_id=b"\x09" * 32), _Context())
    assert (caught.value.code.name, caught.value.details) == ("NOT_FOUND", "no such tx")


async def test_subscribe_below_the_base_is_refused_naming_it(store) -> None:
    service = service_for(store)
    store.prune_below(6)
    stream = service.Subscribe(ledger_pb2.SubscribeRequest(from_height=3), _Context())
    with pytest.raises(_Aborted) as caught:
        await anext(stream)
    assert caught.value.code.name == "NOT_FOUND"
    assert caught.value.details == pruned_text("from_height 3: block 3")
    assert service.notifier.subscriber_count == 0  # a refused stream takes no slot
    stream = service.Subscribe(ledger_pb2.SubscribeRequest(from_height=6), _Context())
    heights = [(await anext(stream)).block.header.height for _ in range(HEAD - 5)]
    await stream.aclose()
    assert heights == list(range(6, HEAD + 1))


# --- scfchain node prune ------------------------------------------------------------------


def write_config(root: Any, node_id: str = "node3") -> str:
    path = root / "config.toml"
    path.write_text(f'node_id = "{node_id}"\ndata_dir = "data"\ngenesis = "genesis.json"\n'
                    'signing_key = "node.pem"\nclient_addr = "127.0.0.1:7001"\n'
                    'peer_addr = "127.0.0.1:7002"\n')
    return str(path)


@pytest.fixture
def stopped_node(tmp_path: Any) -> str:
    """A node's config whose store (data/chain) holds blocks 1..10, closed as after a stop."""
    fill(str(tmp_path / "data" / "chain")).close()
    return write_config(tmp_path)


def test_prune_cli_prunes_a_stopped_node_and_prints_json(stopped_node, tmp_path,
                                                         capsys) -> None:
    assert cli.main(["node", "prune", "--config", stopped_node, "--below", "6", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"node": "node3", "base_height": 6, "head": HEAD}
    assert "5 of 5 blocks removed" in err.splitlines()[-1]
    storage = Storage(str(tmp_path / "data" / "chain"))
    try:
        assert storage.base_height() == 6 and storage.get_block(5) is None
        assert storage.get_block(6) is not None and storage.has_tx(tx_id(1, 0))
    finally:
        storage.close()
    # Again below a lower height: nothing to do, and it says what the node holds.
    assert cli.main(["node", "--config", stopped_node, "prune", "--below", "4"]) == 0
    assert capsys.readouterr().out == f"node3: nothing to prune; it holds blocks 6..{HEAD}\n"


def test_prune_cli_refuses_a_height_above_the_head(stopped_node, tmp_path, capsys) -> None:
    assert cli.main(["node", "prune", "--config", stopped_node, "--below", str(HEAD + 1)]) == 1
    err = capsys.readouterr().err
    assert f"--below {HEAD + 1} is above the head ({HEAD})" in err
    with pytest.raises(SystemExit):  # argparse: not a height
        cli.main(["node", "prune", "--config", stopped_node, "--below", "0"])
    storage = Storage(str(tmp_path / "data" / "chain"))
    try:
        assert storage.base_height() == 0 and storage.get_block(1) is not None
    finally:
        storage.close()


def test_prune_keeps_the_blocks_after_the_newest_snapshot_unless_forced(
    stopped_node, tmp_path, capsys,
) -> None:
    os.makedirs(tmp_path / "data" / "snapshots" / "4")
    assert cli.main(["node", "prune", "--config", stopped_node, "--below", "6"]) == 1
    assert "newest state snapshot (height 4)" in capsys.readouterr().err
    assert prune_node(stopped_node, 4).base_height == 4
    assert cli.main(["node", "prune", "--config", stopped_node, "--below", "6", "--force",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["base_height"] == 6


def test_prune_cli_tells_to_stop_a_running_node_first(stopped_node, tmp_path, capsys) -> None:
    running = Storage(str(tmp_path / "data" / "chain"))  # holds the LevelDB lock, as a node does
    try:
        assert cli.main(["node", "prune", "--config", stopped_node, "--below", "6"]) == 1
        err = capsys.readouterr().err
        assert "is in use (its LevelDB lock is held): stop the node first" in err
        assert running.base_height() == 0
    finally:
        running.close()


def test_prune_refuses_a_node_that_never_ran_without_making_a_store(tmp_path) -> None:
    config = write_config(tmp_path)
    with pytest.raises(PruneError, match="has not run yet"):
        prune_node(config, 3)
    assert not os.path.exists(tmp_path / "data" / "chain")
    with pytest.raises(PruneError, match="cannot read config"):
        prune_node(str(tmp_path / "missing.toml"), 3)


def test_node_without_prune_still_runs_a_node(capsys) -> None:
    args = cli.build_parser().parse_args(["node", "--config", "n/config.toml"])
    assert args.func is cli._node and args.config == "n/config.toml"
    assert args.node_command is None
    assert cli.main(["node"]) == 2
    assert "required: --config" in capsys.readouterr().err


# --- cluster status -----------------------------------------------------------------------


def test_cluster_status_carries_each_nodes_base_height() -> None:
    node = ClusterNode("node3", "127.0.0.1:7005", "127.0.0.1:7006", None, "/d", "/l", "/c")
    info = ledger_pb2.ChainInfo(node_id="node3", height=900, base_height=500, role="follower",
                                validators=["node3"], validator=True)
    status = node_status(node, 42, info, in_validator_set=True)
    assert status.base_height == 500 and status.to_json()["base_height"] == 500
    down = node_status(node, None, None, in_validator_set=True)
    assert down.to_json()["base_height"] == 0


def test_the_status_table_shows_a_base_column_only_when_some_node_is_pruned() -> None:
    cluster = Cluster(root="/r", chain_id="c", consensus="raft", nodes=[])

    def table_text(statuses: list[NodeStatus]) -> str:
        console = Console(width=200, record=True)
        console.print(status_table(cluster, statuses))
        return console.export_text()

    full = NodeStatus("node1", True, 1, "a1", height=900, role="leader", validator=True)
    pruned = NodeStatus("node3", True, 3, "a3", height=900, role="follower", validator=True,
                        base_height=500)
    assert " base " not in table_text([full])
    text = table_text([full, pruned])
    header = next(line for line in text.splitlines() if "height" in line)
    assert header.index("height") < header.index("base") < header.index("app hash")
    row = next(line for line in text.splitlines() if "│ node3" in line)
    assert [cell.strip() for cell in row.split("│")][4:6] == ["900", "500"]
