"""Buffered contract state: overlays that read through to the store and hold writes.

A block runs over one `Overlay` on the store; each tx runs over a child overlay that is merged
into the block's only if the tx succeeds. Iteration merges buffered and stored keys in sorted
order, so contracts see one consistent, sorted view.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator
from typing import Protocol


class ReadableState(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...


class StoreState:
    """Committed state as a readable view (get and prefix scan) over a getter and a scanner."""

    def __init__(
        self,
        get: Callable[[str], bytes | None],
        scan: Callable[[str], Iterator[tuple[str, bytes]]],
    ) -> None:
        self._get = get
        self._scan = scan

    def get(self, key: str) -> bytes | None:
        return self._get(key)

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return self._scan(prefix)


class ReadCache:
    """Remembers what a base view returned, for the length of one block's execution.

    The store changes only when a block commits, after its execution, so within one block a
    key read twice (a member record, a balance) needs one store read. Writes never reach this
    layer: the block's `Overlay` above it holds them. Build a new one per block.
    """

    def __init__(self, base: ReadableState) -> None:
        self.base = base
        self._values: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = self.base.get(key)
            return value

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        return self.base.iter_prefix(prefix)


class MemoryState:
    """A dict-backed state for tests and tools; sorted iteration like the store."""

    def __init__(self, items: dict[str, bytes] | None = None) -> None:
        self.items: dict[str, bytes] = dict(items or {})

    def get(self, key: str) -> bytes | None:
        return self.items.get(key)

    def set(self, key: str, value: bytes) -> None:
        self.items[key] = value

    def delete(self, key: str) -> None:
        self.items.pop(key, None)

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for key in sorted(k for k in self.items if k.startswith(prefix)):
            yield key, self.items[key]

    def apply(self, writes: dict[str, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.items.pop(key, None)
            else:
                self.items[key] = value


INDEX_AFTER_WRITES = 64  # below this many buffered writes a prefix scan just filters them all
SCANNED_DIRS_MAX = 16  # directories indexed one by one before every directory is indexed


class Overlay:
    """Writes buffered over a base view; `None` marks a deletion.

    A block's overlay holds thousands of writes and contracts scan prefixes of it (block-end
    queues, a holder's vouchers), so past `INDEX_AFTER_WRITES` writes a scan sorts only the
    keys under the scanned prefix's "directory" (its part up to the last "/") instead of all
    writes. The keys of a directory are listed the first time it is scanned and kept up to
    date on later writes; a block scans few distinct directories (the hooks' queues), so
    indexing every directory of every write, which most writes would pay for and no scan would
    read, waits until `SCANNED_DIRS_MAX` directories were scanned.

    A directory is listed from a sorted copy of the keys written so far, made once (by the
    first listing), plus the keys written since: the hooks list half a dozen directories at
    the end of every block, and one pass over thousands of writes per directory cost more
    than one sort of them.
    """

    def __init__(self, base: ReadableState) -> None:
        self.base = base
        self.writes: dict[str, bytes | None] = {}
        self._dirs: dict[str, list[str]] | None = None  # directory -> keys written under it
        self._every_dir = False  # whether _dirs holds every directory of every write
        self._sorted: list[str] | None = None  # keys written before the first listing, sorted
        self._since: list[str] = []  # keys first written after that sort

    def get(self, key: str) -> bytes | None:
        writes = self.writes
        if key in writes:
            return writes[key]
        return self.base.get(key)

    def set(self, key: str, value: bytes) -> None:
        if self._dirs is not None and key not in self.writes:
            self._index(key)
        self.writes[key] = value

    def delete(self, key: str) -> None:
        if self._dirs is not None and key not in self.writes:
            self._index(key)
        self.writes[key] = None

    def _index(self, key: str) -> None:
        """List a newly written key under each indexed directory that holds it."""
        dirs = self._dirs
        assert dirs is not None
        if not self._every_dir:
            if self._sorted is not None:
                self._since.append(key)
            for directory, keys in dirs.items():
                if key.startswith(directory):
                    keys.append(key)
            return
        dirs.setdefault("", []).append(key)
        end = key.find("/")
        while end != -1:
            dirs.setdefault(key[: end + 1], []).append(key)
            end = key.find("/", end + 1)

    def _directory(self, directory: str) -> list[str]:
        """The written keys under directory (unsorted), indexing it from now on."""
        dirs = self._dirs
        if dirs is None:
            dirs = self._dirs = {}
        keys = dirs.get(directory)
        if keys is not None:
            return keys
        if self._every_dir:
            return []  # every directory with a written key is indexed
        if len(dirs) < SCANNED_DIRS_MAX:
            keys = dirs[directory] = self._listed(directory)
            return keys
        dirs.clear()
        self._every_dir = True
        self._sorted, self._since = None, []
        for key in self.writes:
            self._index(key)
        return dirs.get(directory, [])

    def _listed(self, directory: str) -> list[str]:
        """Every written key under directory: a range of the sorted keys, and those since."""
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self.writes)
            self._since = []
        keys: list[str] = []
        for index in range(bisect.bisect_left(ordered, directory), len(ordered)):
            key = ordered[index]
            if not key.startswith(directory):
                break
            keys.append(key)
        keys += [k for k in self._since if k.startswith(directory)]
        return keys

    def _buffered(self, prefix: str) -> list[tuple[str, bytes | None]]:
        """This overlay's writes under prefix, sorted by key."""
        writes = self.writes
        if len(writes) <= INDEX_AFTER_WRITES:
            return sorted((k, v) for k, v in writes.items() if k.startswith(prefix))
        # Every key that starts with prefix is under prefix's last directory.
        candidates = self._directory(prefix[: prefix.rfind("/") + 1])
        if not prefix.endswith("/"):
            candidates = [k for k in candidates if k.startswith(prefix)]
        return [(k, writes[k]) for k in sorted(candidates)]

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        mine = self._buffered(prefix)
        if not mine:
            yield from self.base.iter_prefix(prefix)
            return
        # Merge: buffered entries (tag 0) shadow stored ones (tag 1) with the same key.
        merged = heapq.merge(
            ((k, 0, v) for k, v in mine),
            ((k, 1, v) for k, v in self.base.iter_prefix(prefix)),
        )
        last: str | None = None
        for key, _tag, value in merged:
            if key == last:
                continue
            last = key
            if value is not None:
                yield key, value

    def merge_into_parent(self) -> None:
        """Fold this overlay's writes into its base, which must itself be an Overlay."""
        parent = self.base
        assert isinstance(parent, Overlay)
        if parent._dirs is None:
            parent.writes.update(self.writes)
            return
        writes = parent.writes
        for key, value in self.writes.items():
            if key not in writes:
                parent._index(key)
            writes[key] = value
