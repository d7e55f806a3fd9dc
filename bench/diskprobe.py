"""How long a small synced append takes on the cluster's disk while a round runs.

Every node syncs each block (and Raft/PBFT syncs its consensus records) before it moves on, so
when the disk stalls every node on it waits at once: a round's tail latency can come from the
disk rather than from the chain. The probe appends 4 KB and `fdatasync`s it every 50 ms in the
cluster's directory, like a node's write-ahead log (an append changes the file's size, so the
sync waits for the file system's journal as the nodes' syncs do). A report then says whether a
latency spike came with a disk stall.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.report import percentile

PROBE_BYTES = 4096
PROBE_EVERY_S = 0.05
STALL_MS = 100.0
STALLS_KEPT = 50
TRUNCATE_EVERY = 1_000  # appends; the probe file stays under 4 MB


@dataclass(frozen=True)
class DiskFigures:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # (seconds since `origin_s`, ms) of each sync that took STALL_MS or more, the longest first
    stalls: list[tuple[float, float]]
    error: str = ""  # the probe could not write or sync: its figures cover the time before

    def as_dict(self) -> dict[str, object]:
        return {"samples": self.samples, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
                "max_ms": self.max_ms, "stalls": [list(s) for s in self.stalls],
                "error": self.error}


class FsyncProbe:
    """`start`, then `stop` for the figures. One thread, one small file, removed at `stop`."""

    def __init__(self, directory: str, *, every_s: float = PROBE_EVERY_S,
                 stall_ms: float = STALL_MS,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.directory = directory
        self.every_s = every_s
        self.stall_ms = stall_ms
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syncs: list[tuple[float, float]] = []  # (clock at start, ms)
        self._error: OSError | None = None

    def start(self) -> None:
        try:
            fd, path = tempfile.mkstemp(prefix=".bench-fsync-", dir=self.directory)
        except OSError as exc:  # e.g. a target directory we may not write: no probe
            self._error = exc
            return
        self._thread = threading.Thread(target=self._run, args=(fd, path), name="fsync-probe",
                                        daemon=True)
        self._thread.start()

    @property
    def samples(self) -> int:
        return len(self._syncs)

    def stop(self, origin_s: float) -> DiskFigures:
        """Stop and sum up; stall times are given as seconds since `origin_s` (the clock's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        ordered = sorted(ms for _, ms in self._syncs)
        stalls = sorted(((round(at - origin_s, 2), round(ms, 1)) for at, ms in self._syncs
                         if ms >= self.stall_ms), key=lambda s: -s[1])
        return DiskFigures(
            samples=len(ordered),
            p50_ms=round(percentile(ordered, 0.50), 2),
            p99_ms=round(percentile(ordered, 0.99), 2),
            max_ms=round(ordered[-1], 2) if ordered else 0.0,
            stalls=stalls[:STALLS_KEPT],
            error="" if self._error is None else f"{type(self._error).__name__}: {self._error}",
        )

    def _run(self, fd: int, path: str) -> None:
        block = b"\0" * PROBE_BYTES
        try:
            while not self._stop.is_set():
                if len(self._syncs) % TRUNCATE_EVERY == TRUNCATE_EVERY - 1:
                    os.ftruncate(fd, 0)
                started = self.clock()
                os.write(fd, block)
                os.fdatasync(fd)
                self._syncs.append((started, (self.clock() - started) * 1000))
                self._stop.wait(self.every_s)
        except OSError as exc:  # reported by `stop`; the round goes on without the probe
            self._error = exc
        finally:
            os.close(fd)
            os.unlink(path)
