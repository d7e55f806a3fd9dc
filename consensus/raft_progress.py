"""The leader's view of one follower: how much of the log it holds and how to send it more.

Modeled on etcd-io/raft's `tracker.Progress`: a follower is probed one append at a time until
an append lands (`PROBE`), then sent appends optimistically with a bounded number in flight
(`REPLICATE`), or waits while it fetches compacted blocks out of band (`SNAPSHOT`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int
    next: int
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False  # PROBE: paused until a response or heartbeat response
    snapshot_index: int = 0  # SNAPSHOT: the marker index the follower is catching up to
    recent_active: bool = False  # heard from since the last CheckQuorum round
    # REPLICATE: (last index, payload bytes) per unacknowledged append, and their byte total.
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    inflight_bytes: int = 0

    def is_paused(self, appends_in_flight_max: int, inflight_bytes_max: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return (
                len(self.inflight) >= appends_in_flight_max
                or self.inflight_bytes >= inflight_bytes_max
            )
        return True

    def _clear_inflight(self) -> None:
        self.inflight.clear()
        self.inflight_bytes = 0

    def _free_oldest(self) -> None:
        _, size = self.inflight.popleft()
        self.inflight_bytes -= size

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self._clear_inflight()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self._clear_inflight()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.snapshot_index = snapshot_index
        self.probe_sent = False
        self._clear_inflight()

    def sent_append(self, last_index: int, entry_count: int, size_bytes: int) -> None:
        """Record an append covering entries up to `last_index` (`entry_count` of them,
        `size_bytes` of payload)."""
        if self.state is ProgressState.REPLICATE:
            if entry_count:
                self.next = last_index + 1
                self.inflight.append((last_index, size_bytes))
                self.inflight_bytes += size_bytes
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def acknowledge(self, index: int) -> bool:
        """The follower matches up to `index`; return whether `match` advanced."""
        advanced = index > self.match
        if advanced:
            self.match = index
        self.next = max(self.next, index + 1)
        self.probe_sent = False
        while self.inflight and self.inflight[0][0] <= index:
            self._free_oldest()
        return advanced

    def reject(self, rejected_index: int, hint_index: int) -> bool:
        """An append at `rejected_index` failed; return whether to resend (False if stale)."""
        if self.state is ProgressState.REPLICATE:
            if rejected_index <= self.match:
                return False
            self.become_probe()
            return True
        if self.state is ProgressState.SNAPSHOT or self.next - 1 != rejected_index:
            return False
        if rejected_index <= self.match:
            # Either the follower no longer holds entries it acknowledged (a damaged log tail
            # dropped on restart) or this is a duplicated old rejection: forget the match, or
            # probing could never go below it. The next acknowledgement restores it.
            self.match = 0
        self.next = max(min(rejected_index, hint_index + 1), self.match + 1)
        self.probe_sent = False
        return True

    def heard_heartbeat(self) -> None:
        """A heartbeat came back: unpause a probe, free one slot of a (possibly lost) pipeline."""
        self.probe_sent = False
        if self.state is ProgressState.REPLICATE and self.inflight:
            self._free_oldest()
