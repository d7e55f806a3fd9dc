"""The Raft log in memory, its snapshot marker, and the durable records that mirror them.

Every mutation returns the records the driver must persist for the change to survive a crash:
`HardState` (term, vote), the `SnapshotMarker` (index, term, height and hash of the last
compacted entry) and one record per entry. Compacted blocks live on in the block store; the
log only remembers where it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consensus.codec import Codec, CodecError
from consensus.raft_messages import Entry, entry_bytes

RECORDS = Codec("raft-records")
RECORDS.register_class("raft.Entry", Entry)

KEY_HARD_STATE = "raft/hard_state"
KEY_SNAPSHOT = "raft/snapshot"
ENTRY_KEY_PREFIX = "raft/entry/"

Record = tuple[str, bytes | None]


class RaftStateError(Exception):
    """Persisted Raft records are corrupt or contradict each other: stop, don't guess."""


@RECORDS.register("raft.HardState")
@dataclass(frozen=True, slots=True)
class HardState:
    term: int
    voted_for: str | None


@RECORDS.register("raft.SnapshotMarker")
@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    index: int
    term: int
    height: int
    block_hash: bytes


def entry_key(index: int) -> str:
    return f"{ENTRY_KEY_PREFIX}{index:020d}"


def hard_state_record(state: HardState) -> Record:
    return (KEY_HARD_STATE, RECORDS.encode(state))


class RaftLog:
    """Entries `snapshot.index + 1 .. last_index`, contiguous, terms non-decreasing."""

    def __init__(self, snapshot: SnapshotMarker, entries: list[Entry] | None = None) -> None:
        self.snapshot = snapshot
        self._entries: list[Entry] = entries or []
        for offset, entry in enumerate(self._entries):
            assert entry.index == snapshot.index + 1 + offset, "log entries must be contiguous"

    # --- restore -----------------------------------------------------------------------------

    @classmethod
    def restore(
        cls, records: Mapping[str, bytes], fresh: SnapshotMarker
    ) -> tuple[HardState, RaftLog, list[Record]]:
        """Rebuild from persisted records; also return deletions for stray entry records."""
        try:
            hard = HardState(0, None)
            if KEY_HARD_STATE in records:
                hard = RECORDS.decode(records[KEY_HARD_STATE], HardState)
            snapshot = fresh
            if KEY_SNAPSHOT in records:
                snapshot = RECORDS.decode(records[KEY_SNAPSHOT], SnapshotMarker)
            by_index: dict[int, Entry] = {}
            for key, raw in records.items():
                if key.startswith(ENTRY_KEY_PREFIX):
                    entry = RECORDS.decode(raw, Entry)
                    if key != entry_key(entry.index):
                        raise RaftStateError(f"record {key} holds entry {entry.index}")
                    by_index[entry.index] = entry
        except CodecError as exc:
            raise RaftStateError(f"corrupt raft record: {exc}") from exc
        entries: list[Entry] = []
        index = snapshot.index + 1
        while index in by_index:
            entry = by_index[index]
            previous_term = entries[-1].term if entries else snapshot.term
            if entry.term < previous_term or entry.term > hard.term:
                raise RaftStateError(f"entry {index} has term {entry.term} out of order")
            entries.append(entry)
            index += 1
        stray = [entry_key(i) for i in sorted(by_index) if i <= snapshot.index or i >= index]
        return hard, cls(snapshot, entries), [(key, None) for key in stray]

    # --- queries -----------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.term

    @property
    def last_height(self) -> int:
        return self._entries[-1].height if self._entries else self.snapshot.height

    @property
    def last_block_hash(self) -> bytes:
        return self._entries[-1].block_hash if self._entries else self.snapshot.block_hash

    def __len__(self) -> int:
        return len(self._entries)

    def term_at(self, index: int) -> int | None:
        """The term of `index`, or None when it is compacted away or beyond the end."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if index < self.snapshot.index or index > self.last_index:
            return None
        return self._entries[index - self.snapshot.index - 1].term

    def entry(self, index: int) -> Entry:
        assert self.snapshot.index < index <= self.last_index, f"no entry {index} in the log"
        return self._entries[index - self.snapshot.index - 1]

    def entries_from(self, index: int, count_max: int, bytes_max: int) -> tuple[Entry, ...]:
        """Entries from `index` on, at most `count_max` of them and, after the first, no more
        than `bytes_max` of payload in all (the first always goes, whatever its size)."""
        assert index > self.snapshot.index and count_max >= 1
        start = index - self.snapshot.index - 1
        taken: list[Entry] = []
        size = 0
        for entry in self._entries[start : start + count_max]:
            size += entry_bytes(entry)
            if taken and size > bytes_max:
                break
            taken.append(entry)
        return tuple(taken)

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Is a log ending at (last_index, last_term) at least as up to date as this one?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def conflict_hint(self, index: int, term: int) -> int:
        """Largest index <= `index` whose term is <= `term` (etcd's findConflictByTerm), so a
        leader skips a whole divergent term in one round trip instead of one entry per trip."""
        index = min(index, self.last_index)
        while index > self.snapshot.index:
            entry_term = self.term_at(index)
            assert entry_term is not None
            if entry_term <= term:
                break
            index -= 1
        return index

    # --- mutations (each returns records to persist) -----------------------------------------

    def append(self, entry: Entry) -> list[Record]:
        assert entry.index == self.last_index + 1, "append must extend the log"
        assert entry.term >= self.last_term, "terms in the log never decrease"
        self._entries.append(entry)
        return [(entry_key(entry.index), RECORDS.encode(entry))]

    def merge(self, entries: tuple[Entry, ...], commit_index: int) -> list[Record]:
        """Follower side of AppendEntries after the prev entry matched: skip entries already
        present, truncate at the first conflict (never at or below `commit_index`), append."""
        records: list[Record] = []
        for position, entry in enumerate(entries):
            if entry.index <= self.snapshot.index:
                continue  # compacted here, hence committed, hence equal
            existing = self.term_at(entry.index)
            if existing == entry.term:
                continue
            if existing is not None:
                assert entry.index > commit_index, "a leader tried to overwrite a committed entry"
                records.extend(self._truncate_from(entry.index))
            for new in entries[position:]:
                records.extend(self.append(new))
            break
        return records

    def _truncate_from(self, index: int) -> list[Record]:
        records: list[Record] = [(entry_key(i), None) for i in range(index, self.last_index + 1)]
        del self._entries[index - self.snapshot.index - 1 :]
        return records

    def compact_to(self, marker: SnapshotMarker) -> list[Record]:
        """Drop entries up to `marker.index` (which the caller knows are applied)."""
        assert self.snapshot.index < marker.index <= self.last_index
        assert self.term_at(marker.index) == marker.term
        records: list[Record] = [
            (entry_key(i), None) for i in range(self.snapshot.index + 1, marker.index + 1)
        ]
        del self._entries[: marker.index - self.snapshot.index]
        self.snapshot = marker
        records.append((KEY_SNAPSHOT, RECORDS.encode(marker)))
        return records

    def install_snapshot(self, marker: SnapshotMarker) -> list[Record]:
        """Adopt a leader's snapshot marker whose blocks are now in the block store: keep our
        suffix if it continues from the marker, else start an empty log there."""
        if self.term_at(marker.index) == marker.term and marker.index <= self.last_index:
            if marker.index > self.snapshot.index:
                return self.compact_to(marker)
            return []
        assert marker.index > self.snapshot.index, "a snapshot never moves the log backwards"
        records: list[Record] = [
            (entry_key(i), None) for i in range(self.snapshot.index + 1, self.last_index + 1)
        ]
        self._entries = []
        self.snapshot = marker
        records.append((KEY_SNAPSHOT, RECORDS.encode(marker)))
        return records
