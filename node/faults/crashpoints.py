"""Test-only crash points: `SCFCHAIN_CRASH_POINT=name[:n]` makes the node `os._exit(97)` the
n-th time (default 1st) it reaches the named point, to prove recovery from a crash exactly there.

Points, and the `NodeObserver` moment each one is: `after_persist_before_send`
(`consensus_persisted`: consensus records synced, messages not yet sent), `mid_block_commit`
(`block_executed`: block executed, its write batch not yet written), `after_commit_before_reply`
(`block_written`: block written, clients not yet answered), `during_state_transfer`
(`block_synced`: a block fetched from a peer applied, the rest of the sync not),
`during_snapshot_restore` (`snapshot_chunk_restored`: a snapshot chunk written, the restore
not finished).
`python -m node.faults` reads the variable (`armed_from_env`) and runs the node with a
`CrashObserver`; `scfchain node` never looks at it.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "SCFCHAIN_CRASH_POINT"
POINTS = (
    "after_persist_before_send",
    "mid_block_commit",
    "after_commit_before_reply",
    "during_state_transfer",
    "during_snapshot_restore",
)
EXIT_CODE = 97


def parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}: unknown point {name!r}; known: {POINTS}")
    return name, int(count or "1")


def armed_from_env() -> tuple[str, int] | None:
    return parse(os.environ.get(ENV, ""))


class CrashObserver:
    """A `NodeObserver` that exits the process at the `hits`-th time `point` is reached
    (counted from the node's start)."""

    def __init__(self, point: str, hits: int) -> None:
        self.point = point
        self.hits = hits
        self._reached = 0

    def consensus_persisted(self) -> None:
        self._at("after_persist_before_send")

    def block_executed(self, height: int) -> None:
        self._at("mid_block_commit")

    def block_written(self, height: int) -> None:
        self._at("after_commit_before_reply")

    def block_synced(self, height: int) -> None:
        self._at("during_state_transfer")

    def snapshot_chunk_restored(self, index: int) -> None:
        self._at("during_snapshot_restore")

    def _at(self, point: str) -> None:
        if point != self.point:
            return
        self._reached += 1
        if self._reached >= self.hits:
            log.critical("crash point %s reached (hit %d): exiting now", point, self._reached)
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stderr.flush()
            os._exit(EXIT_CODE)
