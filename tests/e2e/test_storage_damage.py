"""Storage damage: a torn or corrupted tail of the LevelDB write-ahead log, a full disk and a
read-only data directory.

- Consensus log damage (Raft follower and leader, in turn): SIGKILL the node, then truncate,
  bit-flip or append garbage to the newest `.log` file of `data/chain`, and restart. The node
  must either start and rejoin with the same chain as the others (the damaged tail dropped and
  re-fetched), or refuse to start with a clear message; it must never run with a diverging chain.
- Disk full (RLIMIT_FSIZE on a solo node, so writes fail with EFBIG as on a full disk): the node
  stops (exit 3) with a clear "write ... failed" message instead of acknowledging what it could
  not store; restarted with room, it holds every tx it had acknowledged.
- Read-only data directory: the node refuses to start with a clear message (exit 2); made
  writable again, it starts with everything it had committed.
"""

from __future__ import annotations

import asyncio
import glob
import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest

from node.client.ledger import LedgerClient, LedgerError
from node.ops.localnet import NodeProcess, tail, write_network
from tests.e2e.reliability import (
    MEMBERS,
    PAYEE,
    PAYER,
    Load,
    check_ledger,
    make_cluster,
    reader,
    wait_exit,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def newest_wal(data_dir: str) -> str:
    logs = glob.glob(os.path.join(data_dir, "chain", "*.log"))
    assert logs, f"no LevelDB log in {data_dir}"
    return max(logs, key=lambda p: (os.path.getsize(p) > 0, os.path.getmtime(p)))


def damage(path: str, how: str) -> int:
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        if how == "truncate":
            handle.truncate(max(0, size - 137))  # cut into the last record
        elif how == "flip":
            for offset in range(max(0, size - 200), size, 17):
                handle.seek(offset)
                byte = handle.read(1)
                handle.seek(offset)
                handle.write(bytes([byte[0] ^ 0x5A]) if byte else b"\x00")
        elif how == "garbage":
            handle.seek(0, os.SEEK_END)
            handle.write(os.urandom(3000))
    return size


DAMAGE_PLAN = (("follower", "truncate"), ("leader", "flip"), ("follower", "garbage"))


async def test_damaged_log_tail_is_dropped_or_refused_never_diverges(tmp_path) -> None:
    """One cluster, three damages in turn: a follower's log truncated into its last record,
    the leader's last records bit-flipped, a follower's log with garbage appended."""
    cluster = await make_cluster(str(tmp_path), "raft")
    load = Load(cluster)
    outcomes = []
    try:
        await cluster.start()
        for role, how in DAMAGE_PLAN:
            leader = await cluster.wait_leader()
            victim = leader if role == "leader" else next(
                n for n in reversed(cluster.ids) if n != leader)
            load = Load(cluster)
            load.start()
            await asyncio.sleep(1.0)
            proc = cluster.procs[victim]
            proc.kill()
            await load.stop()
            damage(newest_wal(proc.layout.data_dir), how)
            cluster.start_node(victim)
            try:
                await proc.wait_healthy(30)
                outcome = "started and rejoined"
            except (RuntimeError, TimeoutError):
                # Refusal is allowed, but only loudly and cleanly.
                code = await wait_exit(proc, 10)
                log = tail(proc.layout.log_file, 10)
                assert code in (2, 3), (code, log)
                assert "store" in log or "FATAL" in log, log
                outcome = f"refused to start (exit {code})"
                # The operator's repair: wipe the node's data; it re-syncs from its peers.
                shutil.rmtree(os.path.join(proc.layout.data_dir, "chain"))
                await cluster.restart(victim)
            await check_ledger(cluster, load)
            outcomes.append((role, how, outcome))
    finally:
        await load.stop()
        await cluster.stop()
    print(f"\nwal damage: {outcomes}")
    assert len(outcomes) == len(DAMAGE_PLAN)


# --- disk full and read-only -------------------------------------------------------------


def _start_with_file_size_limit(proc: NodeProcess, limit_bytes: int) -> subprocess.Popen:
    def limit() -> None:  # in the child, before exec: writes past the limit fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    log = open(proc.layout.log_file, "ab")  # noqa: SIM115 - owned by the child
    proc.process = subprocess.Popen(
        [sys.executable, "-m", "node.ops.cli", "node", "--config", proc.layout.config_path],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit, start_new_session=True)
    log.close()
    return proc.process


async def _acknowledged_until_failure(net, proc: NodeProcess, seconds_max: float,
                                      nonce: int = 0) -> set[bytes]:
    """Batches of transfers (nonces after `nonce`) until the node fails or time is up."""
    payer, payee = net.account(PAYER), net.account(PAYEE)
    acknowledged: set[bytes] = set()
    async with LedgerClient(proc.layout.client_addr, timeout_s=5) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds_max
        while proc.alive() and loop.time() < deadline:
            txs = [payer.build_tx(net.chain_id, "cash", "transfer",
                                  {"to": payee.account_id, "amount": 1, "memo": "m" * 120},
                                  nonce=(nonce := nonce + 1)) for _ in range(100)]
            try:
                receipts = await client.submit_and_wait(txs, timeout_ms=3_000)
            except LedgerError:
                await asyncio.sleep(0.05)
                continue
            acknowledged |= {bytes.fromhex(r.tx_id) for r in receipts if r.ok}
    return acknowledged


async def _all_present(net, proc: NodeProcess, acknowledged: set[bytes]) -> None:
    async with reader(net).client(proc.layout.client_addr, timeout_s=10) as client:
        for tx_id in acknowledged:
            got = await client.get_tx(tx_id)
            assert got.receipt.status == 1
        balance = await client.query("cash", "balance",
                                     {"account": net.account(PAYEE).account_id})
    assert balance["balance"] >= len(acknowledged)


async def test_disk_full_stops_the_node_loudly_and_loses_nothing(tmp_path) -> None:
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="disk-full", block={"interval_ms": 20})
    proc = NodeProcess(net.nodes[0])
    try:
        _start_with_file_size_limit(proc, 1024 * 1024)
        await proc.wait_healthy()
        acknowledged = await _acknowledged_until_failure(net, proc, 60)
        code = await wait_exit(proc, 20)
        log = tail(proc.layout.log_file, 30)
        assert code == 3, (code, log)
        assert "failed" in log and ("File too large" in log or "write" in log), log
        assert len(acknowledged) > 100
        proc.start()  # room again (no limit)
        await proc.wait_healthy()
        await _all_present(net, proc, acknowledged)
    finally:
        proc.stop()
    print(f"\ndisk full: stopped with exit {code} after {len(acknowledged)} acknowledged txs")


def _make_read_only(path: str) -> list[list[str]]:
    """Make a directory tree unwritable even for root; returns the commands that undo it."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", path], check=True)
        return [["chmod", "-R", "u+w", path]]
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    subprocess.run(["chattr", "-R", "+i", path], check=True)
    return [["chattr", "-R", "-i", path]]


async def test_read_only_data_dir_is_refused_at_start_and_nothing_is_lost(tmp_path) -> None:
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="read-only", block={"interval_ms": 20})
    proc = NodeProcess(net.nodes[0])
    chain = os.path.join(proc.layout.data_dir, "chain")
    undo: list[list[str]] = []
    try:
        proc.start()
        await proc.wait_healthy()
        acknowledged = await _acknowledged_until_failure(net, proc, 2)
        assert proc.stop() == 0
        undo = _make_read_only(chain)
        proc.start()
        code = await wait_exit(proc, 30)
        log = tail(proc.layout.log_file, 10)
        assert code == 2, (code, log)
        assert "cannot open the store" in log, log
        for command in undo:
            subprocess.run(command, check=True)
        undo = []
        proc.start()
        await proc.wait_healthy()
        await _all_present(net, proc, acknowledged)
    finally:
        for command in undo:
            subprocess.run(command, check=False)
        proc.stop()


def _state_files(chain: str) -> list[str]:
    """The state database's own files (the store's directory without its sub-databases)."""
    return [os.path.join(chain, name) for name in os.listdir(chain)
            if os.path.isfile(os.path.join(chain, name))]


async def test_a_power_loss_of_unsynced_state_batches_is_replayed_from_the_blocks(
    tmp_path
) -> None:
    """A block commit syncs the block, and its state batch once a second (node/storage.py). A
    power loss's image is made by hand: the state database as it was at an earlier stop, the
    block database with every block since. The node applies those blocks again at start and
    holds every tx it had acknowledged."""
    net = write_network(str(tmp_path), nodes=1, consensus="solo", members=MEMBERS,
                        chain_id="power-loss", block={"interval_ms": 20})
    proc = NodeProcess(net.nodes[0])
    chain = os.path.join(proc.layout.data_dir, "chain")
    saved = str(tmp_path / "state-at-first-stop")
    try:
        proc.start()
        await proc.wait_healthy()
        acknowledged = await _acknowledged_until_failure(net, proc, 2)
        assert proc.stop() == 0
        os.makedirs(saved)
        for path in _state_files(chain):
            shutil.copy2(path, saved)
        proc.start()
        await proc.wait_healthy()
        later = await _acknowledged_until_failure(net, proc, 2, nonce=10**9)
        assert proc.stop() == 0
        assert later and not later & acknowledged
        for path in _state_files(chain):
            os.unlink(path)
        for name in os.listdir(saved):
            shutil.copy2(os.path.join(saved, name), chain)
        proc.start()
        await proc.wait_healthy()
        log = tail(proc.layout.log_file, 40)
        assert "replayed" in log and "stored blocks" in log, log
        await _all_present(net, proc, acknowledged | later)
    finally:
        proc.stop()
