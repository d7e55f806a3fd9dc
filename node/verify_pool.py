"""Ed25519 signature checks in worker processes, a chunk of txs per task.

Why processes and not threads: libsodium drops the GIL while it verifies, but every check
takes it back afterwards, and while the executor thread runs a block (pure Python, holding the
GIL for up to the switch interval at a time) each re-take waits. Measured on a solo node under
load: the verify threads got about one check per switch interval each, which capped the whole
node near 4,500 tx/s with a third of the CPU idle. A worker process has its own GIL: a chunk of
a few hundred checks runs at full speed, and only the chunk crosses the pipe.

Each worker is `python -m node.verify_worker` with a pipe each way (node/verify_worker.py has
the framing). Why not `ProcessPoolExecutor`: each chunk went through its manager thread and a
queue-feeder thread (two GIL hand-offs and a pickle besides the pipe write), spawn started a
resource-tracker process (12 MB) next to the workers, and each worker imported multiprocessing.
Here the caller writes the chunk to a worker's pipe itself, one reader thread per worker
settles the futures in order, and a worker holds libsodium and two small modules.

A write never blocks the caller (the event loop): the pipe is non-blocking, and what does not
fit waits in the worker's backlog, which a writer thread drains. A worker that dies fails the
chunks it held (the txs are refused, not lost: their senders may submit again) and is started
again for the next chunk. Workers exit by themselves when the node dies (stdin closes).
"""

from __future__ import annotations

import fcntl
import logging
import marshal
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future

from node.client.sigcheck import verify_signature
from node.verify_worker import HEADER, READY, frame, read_exactly

log = logging.getLogger(__name__)

Item = tuple[bytes, bytes, bytes]  # (public key, signature, signed bytes)
PIPE_BYTES = 1 << 20  # asked of the kernel for each pipe (Linux: F_SETPIPE_SZ, capped by it)
START_TIMEOUT_S = 60.0
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class WorkerDied(RuntimeError):
    """The worker holding a chunk exited before answering it."""


def verify_chunk(items: Sequence[Item]) -> list[bool]:
    return [verify_signature(key, sig, body) for key, sig, body in items]


def _source_root() -> str:
    """The directory holding the `node` package, so a worker finds it even when the node was
    started from elsewhere without the package installed."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # the default 64 KB still works: the backlog takes what does not fit


class _Worker:
    """One worker process: the caller writes chunks, a reader thread settles their futures."""

    def __init__(self, name: str) -> None:
        self.name = name
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_source_root(), env.get("PYTHONPATH", "")) if p
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "node.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        _grow_pipe(self._in)
        os.set_blocking(self._in, False)
        self.pid = self.process.pid
        self.alive = True
        self._lock = threading.Lock()  # guards the pending futures, the backlog and `alive`
        self._pending: deque[tuple[Future[list[bool]], int]] = deque()
        self.items_in_flight = 0  # checks sent and not answered: where the next chunk goes
        self._backlog = bytearray()
        self._backlog_ready = threading.Condition(self._lock)
        self._ready: Future[None] = Future()
        threading.Thread(target=self._read, name=f"{name}-read", daemon=True).start()
        threading.Thread(target=self._drain, name=f"{name}-write", daemon=True).start()

    def wait_ready(self, timeout: float) -> None:
        self._ready.result(timeout=timeout)

    @property
    def chunks_in_flight(self) -> int:
        return len(self._pending)

    def submit(self, items: Sequence[Item]) -> Future[list[bool]]:
        future: Future[list[bool]] = Future()
        # Running from the start, so it cannot be cancelled: a caller that gives up (a client
        # cancelling its Submit cancels the asyncio future wrapping this one) leaves the answer
        # unread. A cancelled future would refuse its answer in the reader thread, which would
        # then take the worker for dead and fail every other caller's chunk with it.
        future.set_running_or_notify_cancel()
        data = frame(marshal.dumps(list(items)))
        with self._lock:
            if not self.alive:
                future.set_exception(WorkerDied(f"{self.name} has exited"))
                return future
            self._pending.append((future, len(items)))
            self.items_in_flight += len(items)
            if not self._backlog:
                try:
                    written = os.write(self._in, data)
                except OSError:  # full (BlockingIOError), or the worker exited: the reader
                    written = 0  # then fails the pending futures
                data = data[written:]
            if data:
                self._backlog += data
                self._backlog_ready.notify()
        return future

    def _drain(self) -> None:
        """Writes the backlog (what did not fit in the pipe at submit) with blocking writes."""
        while True:
            with self._lock:
                while self.alive and not self._backlog:
                    self._backlog_ready.wait()
                if not self.alive:
                    return
                data = bytes(self._backlog)
            try:
                os.set_blocking(self._in, True)
                written = os.write(self._in, data[:PIPE_BYTES])
            except OSError:
                return
            finally:
                try:
                    os.set_blocking(self._in, False)
                except OSError:
                    pass
            with self._lock:
                del self._backlog[:written]

    def _read(self) -> None:
        try:
            hello = self._next_frame()
            if hello != READY:
                raise WorkerDied(f"{self.name} did not start (said {hello!r})")
            self._ready.set_result(None)
            while True:
                answer = self._next_frame()
                if answer is None:
                    break
                with self._lock:
                    future, count = self._pending.popleft()
                    self.items_in_flight -= count
                if len(answer) != count:
                    future.set_exception(WorkerDied(f"{self.name} answered {len(answer)} of "
                                                    f"{count} checks"))
                else:
                    future.set_result([ok == 1 for ok in answer])
        except Exception as exc:  # a dead worker fails its chunks, never the node
            if not self._ready.done():
                self._ready.set_exception(exc)
        finally:
            self._fail_pending()

    def _next_frame(self) -> bytes | None:
        header = read_exactly(self._out, HEADER.size)
        if header is None:
            return None
        return read_exactly(self._out, HEADER.unpack(header)[0])

    def _fail_pending(self) -> None:
        with self._lock:
            self.alive = False
            pending, self._pending = self._pending, deque()
            self.items_in_flight = 0
            self._backlog.clear()
            self._backlog_ready.notify()
        if not self._ready.done():
            self._ready.set_exception(WorkerDied(f"{self.name} exited while starting"))
        for future, _ in pending:
            future.set_exception(WorkerDied(f"{self.name} exited before answering"))

    def close(self) -> None:
        with self._lock:
            self.alive = False
            self._backlog_ready.notify()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class VerifyPool:
    """A fixed set of verifier processes; `submit` a chunk, get a future of per-item results."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._closed = False
        self._workers = [_Worker(f"verify-{index}") for index in range(self.workers)]
        for worker in self._workers:  # started together, waited for together
            worker.wait_ready(START_TIMEOUT_S)

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self._workers]

    def submit(self, items: Sequence[Item]) -> Future[list[bool]]:
        """Sends the chunk to the worker with the fewest checks outstanding."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the verify pool is closed")
            for index, worker in enumerate(self._workers):
                if not worker.alive:
                    log.warning("verify worker %s (pid %d) exited; starting another",
                                worker.name, worker.pid)
                    worker.close()
                    self._workers[index] = worker = _Worker(worker.name)
            target = min(self._workers, key=lambda w: w.items_in_flight)
        return target.submit(items)

    @property
    def in_flight(self) -> int:
        """Chunks submitted and not yet checked (the metrics' queue length)."""
        return sum(worker.chunks_in_flight for worker in self._workers)

    def verify(self, groups: Sequence[Sequence[Item]]) -> list[list[bool]]:
        """Blocking: each group checked in a worker, results in order."""
        futures = [self.submit(group) for group in groups]
        return [future.result() for future in futures]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.close()
