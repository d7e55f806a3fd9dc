"""Signature checks in worker processes: right answers, and no worker outlives its node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from node.client.identity import Account
from node.verify_pool import VerifyPool

CHILD = """
import sys, time
from node.verify_pool import VerifyPool
pool = VerifyPool(2)
assert pool.verify([[]]) == [[]]
time.sleep(0.5)
print(" ".join(str(pid) for pid in pool._pool._processes), flush=True)
time.sleep(60)
"""


def test_chunks_are_checked_in_workers_with_the_same_answers() -> None:
    account = Account.from_seed(b"pool")
    good = [(account.public_key, account.sign(b"m%d" % i), b"m%d" % i) for i in range(50)]
    bad = [(key, sig, body + b"!") for key, sig, body in good[:10]]
    pool = VerifyPool(2)
    try:
        first, second = pool.verify([good, bad])
        assert first == [True] * 50 and second == [False] * 10
        assert pool.submit(good[:3] + bad[:1]).result(timeout=30) == [True, True, True, False]
    finally:
        pool.close()


def test_workers_exit_by_themselves_when_the_node_is_killed() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=root, stdout=subprocess.PIPE, text=True
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


LEAN_CHILD = """
import json, sys
import grpc, node.client.ledger  # a parent holding the node's heavy modules, as a node does
from node.verify_pool import VerifyPool, loaded_modules
if __name__ == "__main__":
    pool = VerifyPool(1)
    print(json.dumps({"modules": pool._pool.submit(loaded_modules).result(timeout=60),
                      "pids": pool.pids, "main": sys.modules["__main__"].__name__}), flush=True)
    pool.close()
"""


def test_a_worker_holds_libsodium_and_not_the_node(tmp_path) -> None:
    """Run as a module (`python -m`), as the node is: spawn would make each worker import that
    main module and everything it imports; the stand-in keeps workers lean."""
    (tmp_path / "lean_parent.py").write_text(LEAN_CHILD)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-m", "lean_parent"], capture_output=True,
                            text=True, timeout=120, cwd=repo,
                            env={**os.environ, "PYTHONPATH": f"{tmp_path}:{repo}"})
    assert result.returncode == 0, result.stderr
    import json

    doc = json.loads(result.stdout)
    modules = set(doc["modules"])
    assert "node.client.sigcheck" in modules and "nacl.bindings" in modules
    assert not modules & {"grpc", "node.client.ledger", "lean_parent", "google.protobuf"}
    assert doc["main"] == "__main__" and len(doc["pids"]) == 1
