"""A power loss takes the last state batches, never their blocks, and the node applies those
blocks again at start (node/storage.py, `Committer.replay_stored_blocks`).

A power loss is made by hand: the state database's files are copied while the store is closed
at height 2, more blocks are committed, and the copy is put back. That is what LevelDB leaves
after a power loss that took the unsynced state batches: the state database at an earlier
head, the block database (synced on every commit) with every block.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts import default_runtime
from node.chain import app_hash_height, block_hash_of, txs_hash
from node.client.identity import Account
from node.committer import Committer
from node.effects import FatalError
from node.executor import Executor
from node.genesis import BlockLimits, Genesis, Member
from node.inbox import Inbox
from node.mempool import Mempool
from node.notifier import Notifier
from node.ports import NullObserver
from node.storage import Storage
from proto import types_pb2

CHAIN = "replay-chain"
alice, bob = Account.from_seed(b"alice"), Account.from_seed(b"bob")
GENESIS = Genesis(
    chain_id=CHAIN,
    time_ms=1_700_000_000_000,
    consensus="solo",
    consensus_params={},
    validators=(),
    members=(Member("alice", alice.account_id, ("admin", "supplier")),
             Member("bob", bob.account_id, ("supplier",))),
    balances=((alice.account_id, 1_000_000),),
    block=BlockLimits(),
    genesis_id=bytes(32),
    committee=(("alice", 1),),
)
NEVER = 3600.0  # no state batch is synced by the interval within a test


def open_store(path: Path) -> Storage:
    return Storage(str(path), state_sync_interval_s=NEVER)


def committer_of(store: Storage) -> Committer:
    return Committer(store, Executor(default_runtime(), CHAIN), Mempool(100, 1_000_000),
                     Notifier(), Inbox(10), NullObserver())


def commit_transfers(committer: Committer, blocks: int, nonce: int) -> None:
    """`blocks` blocks of one transfer each, committed as the commit loop does."""
    for _ in range(blocks):
        nonce += 1
        head = committer.head
        tx = alice.build_tx(CHAIN, "cash", "transfer", {"to": bob.account_id, "amount": nonce},
                            nonce=nonce)
        header = types_pb2.BlockHeader(
            chain_id=CHAIN, height=head.height + 1, time_ms=head.time_ms + 1_000,
            parent_hash=head.block_hash,
            prev_app_hash=committer.app_hash_at(app_hash_height(head.height + 1)),
            txs_hash=txs_hash([hashlib.sha256(tx.body).digest()]), proposer="node1",
        )
        committed = types_pb2.CommittedBlock(block=types_pb2.Block(header=header, txs=[tx]))
        committer._execute_and_store(committed, block_hash_of(header), b"")


def state_files(path: Path) -> list[Path]:
    """The state database's own files: the store's directory without its two sub-databases."""
    return [p for p in path.iterdir() if p.is_file()]


def lose_power(path: Path, saved: Path) -> None:
    """Put back the state database as it was saved, leaving the block database as it is."""
    for file in state_files(path):
        file.unlink()
    for file in saved.iterdir():
        shutil.copy2(file, path / file.name)


def chain_at_2_then_4(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A store whose state database is at height 2 and whose block database holds 1..4, and
    what the store looked like at 4."""
    path, saved = tmp_path / "chain", tmp_path / "saved-state"
    store = open_store(path)
    store.init_genesis(bytes(32), *GENESIS.state_writes(), GENESIS.time_ms)
    commit_transfers(committer_of(store), 2, nonce=0)
    store.close()
    saved.mkdir()
    for file in state_files(path):
        shutil.copy2(file, saved / file.name)
    store = open_store(path)
    commit_transfers(committer_of(store), 2, nonce=2)
    at_4 = {
        "head": store.head(),
        "bob": store.get_state(f"cash/bal/{bob.account_id}"),
        "block4": store.get_block_raw(4),
        "tx_ids": [r.tx_id for h in (3, 4) for r in store.get_block(h).receipts],
    }
    store.close()
    lose_power(path, saved)
    return path, at_4


def test_blocks_whose_state_was_lost_are_applied_again_at_start(tmp_path) -> None:
    path, at_4 = chain_at_2_then_4(tmp_path)
    store = open_store(path)
    assert store.head().height == 2  # the power loss took blocks 3 and 4's state batches
    assert [b.block.header.height for b in store.blocks_above_head()] == [3, 4]
    assert not any(store.has_tx(tx_id) for tx_id in at_4["tx_ids"])
    committer = committer_of(store)
    assert committer.replay_stored_blocks() == 2
    assert store.head() == at_4["head"] and committer.head == at_4["head"]
    assert store.get_state(f"cash/bal/{bob.account_id}") == at_4["bob"]
    assert store.get_block_raw(4) == at_4["block4"]  # the same receipts, the same bytes
    assert all(store.has_tx(tx_id) for tx_id in at_4["tx_ids"])
    assert list(store.blocks_above_head()) == []
    assert committer.replay_stored_blocks() == 0  # nothing left to apply
    store.close()
    again = open_store(path)  # the replay's state was synced before it returned
    assert again.head() == at_4["head"]
    again.close()


def test_a_stored_block_that_does_not_extend_the_head_is_left_to_consensus(tmp_path) -> None:
    path, at_4 = chain_at_2_then_4(tmp_path)
    store = open_store(path)
    other = types_pb2.CommittedBlock()
    other.ParseFromString(at_4["block4"])
    other.block.header.height = 3  # block 4's header at height 3: its parent is not head 2's
    store._blocks.put(b"b/" + (3).to_bytes(8, "big"), other.SerializeToString())
    assert committer_of(store).replay_stored_blocks() == 0
    assert store.head().height == 2
    store.close()


def test_a_replayed_block_that_executes_differently_stops_the_node(tmp_path) -> None:
    path, _ = chain_at_2_then_4(tmp_path)
    store = open_store(path)
    stored = next(store.blocks_above_head())
    stored.app_hash = b"\x01" * 32  # not what block 3 executes to
    store._blocks.put(b"b/" + (3).to_bytes(8, "big"), stored.SerializeToString())
    with pytest.raises(FatalError, match="not deterministic"):
        committer_of(store).replay_stored_blocks()
    store.close()


class _Batches:
    """The state database, recording the `sync` of every write batch asked of it."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.syncs: list[bool] = []

    def write_batch(self, *, sync: bool = False) -> Any:
        self.syncs.append(sync)
        return self._db.write_batch(sync=sync)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.mark.parametrize(("interval_s", "synced"), [(0.0, [True] * 3), (NEVER, [False] * 3)])
def test_a_commits_state_batch_is_synced_once_the_interval_has_passed(
    tmp_path, interval_s: float, synced: list[bool]
) -> None:
    store = Storage(str(tmp_path), state_sync_interval_s=interval_s)
    store.init_genesis(bytes(32), *GENESIS.state_writes(), GENESIS.time_ms)
    batches = _Batches(store._db)
    store._db = batches
    commit_transfers(committer_of(store), 3, nonce=0)
    assert batches.syncs == synced
    store._db = batches._db
    store.close()
    assert os.path.isdir(tmp_path / "blocks")
