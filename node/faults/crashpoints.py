"""Test-only crash points: `SCFCHAIN_CRASH_POINT=name[:n]` makes the node `os._exit(97)` the
n-th time (default 1st) it reaches the named point, to prove recovery from a crash exactly there.

Points: `after_persist_before_send` (consensus records synced, messages not yet sent),
`mid_block_commit` (block executed, its write batch not yet written),
`after_commit_before_reply` (block written, clients not yet answered),
`during_state_transfer` (a block fetched from a peer applied, the rest of the sync not).
Unset in production: `reached` is then a dictionary lookup and nothing else.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

POINTS = (
    "after_persist_before_send",
    "mid_block_commit",
    "after_commit_before_reply",
    "during_state_transfer",
)
EXIT_CODE = 97


def _parse(spec: str) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"SCFCHAIN_CRASH_POINT: unknown point {name!r}; known: {POINTS}")
    return name, int(count or "1")


_armed = _parse(os.environ.get("SCFCHAIN_CRASH_POINT", ""))
_hits: dict[str, int] = {}


def reached(point: str) -> None:
    """Call at a crash point; exits the process if this point is armed and its count is due."""
    if _armed is None or _armed[0] != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= _armed[1]:
        log.critical("crash point %s reached (hit %d): exiting now", point, _hits[point])
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODE)
