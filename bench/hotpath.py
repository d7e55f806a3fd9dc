"""CPU cost per tx of each stage a node runs, measured in-process on a real store.

    python -m bench.hotpath [--workload cash-transfer] [--blocks 20] [--block-txs 2000]

Whole-network figures on a shared 2-core machine move with whatever else runs; CPU time per
tx of admission parsing, signature checks, block execution and the block commit does not (much),
so this is how a speed change is judged before the network-level benchmark confirms it.
The store first gets `--blocks` committed blocks of history (so index lookups miss through
real LevelDB files), then one more block is measured stage by stage (best of `--repeat`).
`commit_write_mean_us` is the mean wall time per tx of the history blocks' synced write batches
(memtable flushes and compactions included), `commit_write_cpu_us` the process CPU they took
(less sensitive to a busy machine); `commit_write_probe_us` is the probe block's wall time alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.signing import account_for, sign_all
from bench.workloads import Sizes, make_plan, members_of
from contracts import default_runtime
from node.admission import Admission, SignatureVerifier, membership
from node.chain import block_hash_of, txs_hash
from node.config import Limits
from node.executor import Executor
from node.genesis import STATE_FORMAT_LATEST, BlockLimits, Genesis, Member
from node.mempool import Mempool
from node.state import StoreState
from node.storage import Storage
from node.verify_pool import verify_chunk
from proto import types_pb2

CHAIN_ID = "scf-bench"


def _cpu_us_per_tx(fn: Callable[[], Any], txs: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        fn()
        best = min(best, time.thread_time() - started)
    return best / txs * 1e6


def _genesis(seed: int, workload: str, accounts: int) -> Genesis:
    members = members_of(workload, accounts)
    admin = account_for(seed, "admin").account_id
    return Genesis(
        chain_id=CHAIN_ID,
        time_ms=1_700_000_000_000,
        consensus="solo",
        consensus_params={},
        validators=(),
        members=(Member("admin", admin, ("admin",)), *(
            Member(m.name, account_for(seed, m.name).account_id, m.roles) for m in members)),
        balances=tuple((account_for(seed, m.name).account_id, m.balance)
                       for m in members if m.balance),
        block=BlockLimits(),
        genesis_id=bytes(32),
        committee=(("admin", 1),),
        state_format=STATE_FORMAT_LATEST,
    )


class Chain:
    """A store with genesis and a way to execute and commit blocks like the driver does."""

    def __init__(self, path: str, genesis: Genesis) -> None:
        self.storage = Storage(path)
        writes, app_hash = genesis.state_writes()
        self.storage.init_genesis(bytes(32), writes, app_hash, genesis.time_ms)
        self.executor = Executor(default_runtime(), CHAIN_ID)
        self.state = StoreState(self.storage.get_state_for_execution, self.storage.iter_state)
        self.time_ms = genesis.time_ms

    def block(self, txs: list[types_pb2.SignedTx]) -> types_pb2.Block:
        head = self.storage.head()
        self.time_ms += 1_000
        header = types_pb2.BlockHeader(
            chain_id=CHAIN_ID, height=head.height + 1, time_ms=self.time_ms,
            parent_hash=head.block_hash, prev_app_hash=head.app_hash,
            txs_hash=txs_hash(_ids(txs)), proposer="node1",
        )
        return types_pb2.Block(header=header, txs=txs)

    def execute(self, block: types_pb2.Block) -> tuple[types_pb2.CommittedBlock, Any]:
        """Like the committer: receipts are built in the CommittedBlock that is stored."""
        head = self.storage.head()
        committed = types_pb2.CommittedBlock()
        outcome = self.executor.execute(
            block, self.state, head.app_hash, self.storage.has_tx, into=committed)
        return committed, outcome

    @staticmethod
    def seal(block: types_pb2.Block, executed: tuple[types_pb2.CommittedBlock, Any]
             ) -> tuple[types_pb2.CommittedBlock, Any]:
        """The record to store. The committer parses the block straight into it; here it is
        copied in, outside the timed stages."""
        committed, outcome = executed
        committed.block.CopyFrom(block)
        committed.block_hash = block_hash_of(block.header)
        committed.app_hash = outcome.app_hash
        return committed, outcome

    def commit(self, sealed: tuple[types_pb2.CommittedBlock, Any]) -> None:
        committed, outcome = sealed
        self.storage.commit_block(committed, outcome.writes, outcome.indexed)


def _ids(txs: list[types_pb2.SignedTx]) -> list[bytes]:
    import hashlib

    return [hashlib.sha256(tx.body).digest() for tx in txs]


def measure(workload: str, blocks: int, block_txs: int, repeat: int, seed: int = 1
            ) -> dict[str, float]:
    genesis = _genesis(seed, workload, 64)
    members = members_of(workload, 64)
    keys = {m.name: account_for(seed, m.name).public_key for m in members}
    sizes = Sizes(load=blocks * block_txs + block_txs, warmup=0,
                  time_ms=genesis.time_ms, salt=0)
    plan = make_plan(workload, seed=seed, chain_id=CHAIN_ID, public_keys=keys, sizes=sizes,
                     accounts=64)
    with tempfile.TemporaryDirectory() as root:
        chain = Chain(os.path.join(root, "chain"), genesis)
        for stage in plan.setup:
            signed = sign_all(stage, seed)
            for start in range(0, len(signed), block_txs):
                block = chain.block(signed[start : start + block_txs])
                chain.commit(chain.seal(block, chain.execute(block)))
        signed = sign_all(plan.load, seed)
        history, probe = signed[: blocks * block_txs], signed[blocks * block_txs :]
        writes_s: list[float] = []  # wall time of each history block's commit write
        writes_cpu_s = 0.0  # CPU of the process (LevelDB's compaction thread included)
        for start in range(0, len(history), block_txs):
            block = chain.block(history[start : start + block_txs])
            sealed = chain.seal(block, chain.execute(block))
            started, started_cpu = time.perf_counter(), time.process_time()
            chain.commit(sealed)
            writes_s.append(time.perf_counter() - started)
            writes_cpu_s += time.process_time() - started_cpu
        figures = _stages(chain, probe, repeat)
        if writes_s:
            # One block's write moves with memtable flushes and compactions: the mean over the
            # history's blocks is the steady cost (the probe block's alone is one sample).
            figures["commit_write_mean_us"] = round(
                sum(writes_s) / len(writes_s) / block_txs * 1e6, 2)
            figures["commit_write_cpu_us"] = round(writes_cpu_s / len(history) * 1e6, 2)
        chain.storage.close()
    return figures


def _stages(chain: Chain, probe: list[types_pb2.SignedTx], repeat: int) -> dict[str, float]:
    n = len(probe)
    limits = Limits()
    storage = chain.storage
    admission = Admission(
        CHAIN_ID, limits, Mempool(limits.mempool_txs_max, limits.mempool_bytes_max),
        SignatureVerifier(1, limits.verified_cache_max), storage.has_tx,
        membership(storage.get_state),
    )
    checked = admission.parse(probe)
    items = [(c.sender, c.tx.signature, c.tx.body) for c in checked]
    block = chain.block(probe)
    sealed = chain.seal(block, chain.execute(block))
    committed = sealed[0]
    request = types_pb2.Block(txs=probe).SerializeToString()
    figures = {
        "request_parse_us": _cpu_us_per_tx(lambda: types_pb2.Block().ParseFromString(request),
                                           n, repeat),
        "admission_parse_us": _cpu_us_per_tx(lambda: admission.parse(probe), n, repeat),
        "verify_us": _cpu_us_per_tx(lambda: verify_chunk(items), n, max(1, repeat // 2)),
        "has_tx_us": _cpu_us_per_tx(lambda: [storage.has_tx(c.tx_id) for c in checked], n,
                                    repeat),
        "execute_us": _cpu_us_per_tx(lambda: chain.execute(block), n, repeat),
    }
    figures["commit_serialize_us"] = _cpu_us_per_tx(committed.SerializeToString, n, repeat)
    started = time.perf_counter()
    chain.commit(sealed)
    figures["commit_write_probe_us"] = (time.perf_counter() - started) / n * 1e6
    figures["node_cpu_us_per_tx"] = sum(
        figures[k] for k in ("request_parse_us", "admission_parse_us", "verify_us",
                             "execute_us", "commit_serialize_us"))
    admission.verifier.close()
    return {k: round(v, 2) for k, v in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--workload", default="cash-transfer")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block-txs", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    figures = measure(args.workload, args.blocks, args.block_txs, args.repeat)
    width = max(len(k) for k in figures)
    print(f"{args.workload}: CPU per tx (best of {args.repeat}), history "
          f"{args.blocks} x {args.block_txs} txs")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
