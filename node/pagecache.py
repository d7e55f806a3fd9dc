"""Hand back the pages a bulk scan of the store left mapped in the node.

LevelDB reads its table files through mmap, so every page a full scan touches stays in the
node's resident set for as long as the table is open: the tx index read when the store opens
(to build the tx id filter), every block's tx ids read when a state snapshot is written. At 1.5
million txs a snapshot left 53 MB of table pages resident and the open 100 MB, and both grow
with the chain. The pages are clean page cache, but they count in the node's RSS and in a
container's memory use, and nothing reads most of them again.

`page_out(directory)` asks the kernel to reclaim the pages of every table of `directory` mapped
in this process (`madvise(MADV_PAGEOUT)`, Linux 5.4 and later); a later read faults them in again
from the page cache or the disk. MADV_PAGEOUT never changes what memory holds, so a mapping
LevelDB replaces between the read of /proc/self/maps and the call is harmless (MADV_DONTNEED
would zero-fill anonymous memory that took its place). Where the call is not supported it does
nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21
TABLE_SUFFIX = ".ldb"


@dataclass(frozen=True, slots=True)
class PagedOut:
    mappings: int  # table mappings advised
    resident_before: int  # bytes of this process's file-backed pages, before and after
    resident_after: int


def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.madvise
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    call.restype = ctypes.c_int
    advise: Callable[[int, int, int], int] = call
    return advise


_MADVISE = _madvise()


def resident_file_bytes() -> int:
    """This process's resident file-backed pages (RssFile), or 0 where that is not known."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssFile:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def table_mappings(directory: str) -> list[tuple[int, int]]:
    """(start, length) of every mapping of a table file in `directory`, from /proc/self/maps."""
    prefix = os.path.join(os.path.realpath(directory), "")
    found: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) < 6:
                    continue
                path = fields[5].rstrip("\n")
                if path.startswith(prefix) and path.endswith(TABLE_SUFFIX):
                    low, high = (int(edge, 16) for edge in fields[0].split("-"))
                    found.append((low, high - low))
    except OSError:
        return []
    return found


def page_out(directory: str) -> PagedOut:
    """Reclaim the resident pages of `directory`'s mapped tables (see the module docstring)."""
    before = resident_file_bytes()
    if _MADVISE is None:
        return PagedOut(0, before, before)
    advised = 0
    for start, length in table_mappings(directory):
        if _MADVISE(start, length, MADV_PAGEOUT) == 0:
            advised += 1
        elif ctypes.get_errno() == 22:  # EINVAL: a kernel without MADV_PAGEOUT
            break
        # ENOMEM: LevelDB unmapped that table meanwhile; nothing to do
    return PagedOut(advised, before, resident_file_bytes())
