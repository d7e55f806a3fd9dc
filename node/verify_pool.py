"""Ed25519 signature checks in worker processes, a chunk of txs per task.

Why processes and not threads: libsodium drops the GIL while it verifies, but every check
takes it back afterwards, and while the executor thread runs a block (pure Python, holding the
GIL for up to the switch interval at a time) each re-take waits. Measured on a solo node under
load: the verify threads got about one check per switch interval each, which capped the whole
node near 4,500 tx/s with a third of the CPU idle. A worker process has its own GIL: a chunk of
a few hundred checks runs at full speed, and only the chunk crosses the pipe.

Workers are started with `spawn` (the node has gRPC threads; forking it is unsafe) and each
one exits by itself if the node dies, even by SIGKILL, so nothing is left behind. A spawned
worker first imports the parent's `__main__` module — for `python -m node.ops.cli node`, every
module of the node, about 45 MB per worker — so while the workers start, `__main__` is a
stand-in naming node/client/sigcheck.py: a worker holds libsodium and this module only
(17 MB instead of 45).
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from node.client.sigcheck import verify_signature

PARENT_POLL_S = 0.5

Item = tuple[bytes, bytes, bytes]  # (public key, signature, signed bytes)


def verify_chunk(items: Sequence[Item]) -> list[bool]:
    return [verify_signature(key, sig, body) for key, sig, body in items]


def _exit_with_parent(parent_pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ready() -> int:
    return os.getpid()


def loaded_modules() -> list[str]:
    """The modules a worker holds (what tests/unit/test_verify_pool.py checks)."""
    return sorted(sys.modules)


@contextlib.contextmanager
def _light_main() -> Iterator[None]:
    """While held, processes that `spawn` starts import node.client.sigcheck as their main module
    instead of the node's (multiprocessing reads `sys.modules["__main__"].__spec__` as each
    process starts)."""
    saved = sys.modules["__main__"]
    stand_in = types.ModuleType("__main__")
    stand_in.__spec__ = importlib.util.find_spec("node.client.sigcheck")
    sys.modules["__main__"] = stand_in
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


class VerifyPool:
    """A fixed set of verifier processes; `submit` a chunk, get a future of per-item results."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        with _light_main():  # start the workers now, not on the first request
            started = [self._pool.submit(_ready) for _ in range(self.workers)]
        self.pids = [future.result(timeout=60) for future in started]

    def submit(self, items: Sequence[Item]) -> Future[list[bool]]:
        with self._lock:
            self._in_flight += 1
        future = self._pool.submit(verify_chunk, list(items))
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[list[bool]]) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Chunks submitted and not yet checked (the metrics' queue length)."""
        return self._in_flight

    def verify(self, groups: Sequence[Sequence[Item]]) -> list[list[bool]]:
        """Blocking: each group checked in a worker, results in order."""
        futures = [self.submit(group) for group in groups]
        return [future.result() for future in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
