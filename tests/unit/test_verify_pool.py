"""Signature checks in worker processes: right answers in order, chunks larger than a pipe,
a dead worker replaced, no worker outliving its node, and workers that hold libsodium only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from node.client.identity import Account
from node.verify_pool import VerifyPool, WorkerDied

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = """
import sys, time
from node.verify_pool import VerifyPool
pool = VerifyPool(2)
assert pool.verify([[]]) == [[]]
print(" ".join(str(pid) for pid in pool.pids), flush=True)
time.sleep(60)
"""


def _signed(count: int, size: int = 8) -> list[tuple[bytes, bytes, bytes]]:
    account = Account.from_seed(b"pool")
    bodies = [b"m%d" % i + b"." * max(0, size - 8) for i in range(count)]
    return [(account.public_key, account.sign(body), body) for body in bodies]


def test_chunks_are_checked_in_workers_with_the_same_answers() -> None:
    good = _signed(50)
    bad = [(key, sig, body + b"!") for key, sig, body in good[:10]]
    pool = VerifyPool(2)
    try:
        first, second = pool.verify([good, bad])
        assert first == [True] * 50 and second == [False] * 10
        assert pool.submit(good[:3] + bad[:1]).result(timeout=30) == [True, True, True, False]
        assert pool.in_flight == 0
    finally:
        pool.close()


def test_chunks_larger_than_the_pipe_arrive_whole_and_in_order() -> None:
    """1,500 txs of 1 KB make a chunk larger than the pipe: the caller's write must not block,
    and the backlog must reach the worker in order."""
    good = _signed(1_500, size=1_000)
    bad = [(key, sig, body[:-1] + b"!") for key, sig, body in good]
    pool = VerifyPool(1)
    try:
        started = time.monotonic()
        futures = [pool.submit(good if i % 2 == 0 else bad) for i in range(4)]
        submitted = time.monotonic() - started
        results = [future.result(timeout=60) for future in futures]
        assert results == [[True] * 1_500, [False] * 1_500] * 2
        assert submitted < 1.0, f"submitting 6 MB took {submitted:.2f} s: a write blocked"
    finally:
        pool.close()


def test_a_killed_worker_fails_its_chunks_and_is_replaced() -> None:
    good = _signed(20)
    pool = VerifyPool(1)
    try:
        (first_pid,) = pool.pids
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        failed = None
        while time.monotonic() < deadline:  # until the pool has noticed the exit
            future = pool.submit(good)
            try:
                future.result(timeout=10)
            except WorkerDied as exc:
                failed = exc
                break
            if pool.pids != [first_pid]:
                break
            time.sleep(0.05)
        assert pool.submit(good).result(timeout=30) == [True] * 20
        assert pool.pids != [first_pid], "the dead worker was not replaced"
        assert failed is None or "exited" in str(failed)
    finally:
        pool.close()


def test_a_closed_pool_refuses_work_and_its_workers_exit() -> None:
    pool = VerifyPool(2)
    pids = pool.pids
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(_signed(1))
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_workers_exit_by_themselves_when_the_node_is_killed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == 2, line
        assert all(psutil.pid_exists(pid) for pid in workers)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [
                pid for pid in workers
                if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
            ]
        assert not alive, f"verify workers {alive} outlived the killed node"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_a_worker_holds_libsodium_and_not_the_node() -> None:
    """The parent holds gRPC and protobuf, as a node does; its workers map libsodium's module
    and neither of those (read from the kernel's list of each worker's mappings)."""
    import grpc  # noqa: F401 - loaded in this parent on purpose

    pool = VerifyPool(1)
    try:
        assert pool.verify([_signed(1)]) == [[True]]
        (pid,) = pool.pids
        process = psutil.Process(pid)
        assert process.cmdline()[-2:] == ["-m", "node.verify_worker"]
        maps = {m.path for m in process.memory_maps()}
        assert any("_sodium" in path for path in maps), sorted(maps)
        assert not any("cygrpc" in path or "_message" in path for path in maps), sorted(maps)
        assert process.memory_info().rss < 30 * 2**20
    finally:
        pool.close()


def test_a_caller_giving_up_on_its_chunk_leaves_the_worker_serving_the_others() -> None:
    """A client cancelling its Submit cancels the asyncio future wrapping a chunk's: the answer
    must then be dropped, not make the reader thread fail the worker and everyone's chunks."""
    import asyncio

    good = _signed(200)
    pool = VerifyPool(1)

    async def give_up_then_verify() -> list[list[bool]]:
        abandoned = [asyncio.wrap_future(pool.submit(good)) for _ in range(5)]
        kept = [asyncio.wrap_future(pool.submit(good[:10])) for _ in range(5)]
        for future in abandoned:
            future.cancel()
        return list(await asyncio.wait_for(asyncio.gather(*kept), timeout=30))

    try:
        (pid,) = pool.pids
        assert asyncio.run(give_up_then_verify()) == [[True] * 10] * 5
        assert pool.submit(good[:3]).result(timeout=30) == [True] * 3
        assert pool.pids == [pid], "the worker was taken for dead and replaced"
    finally:
        pool.close()
