"""Raft's tunables, with the relations between them checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import MESSAGE_BYTES_MAX


class RaftConfigError(ValueError):
    """A Raft setting is out of range or inconsistent with another."""


@dataclass(frozen=True, slots=True)
class RaftConfig:
    # etcd's defaults (100 ms heartbeat, 1 s election timeout). With 300-600 ms, three nodes and
    # a load generator sharing two cores under a long bench saw event-loop and fsync pauses of
    # 200-490 ms (logged by the driver), and each one near a timeout cost an election. A leader
    # lost to a crash is still replaced within about 2-3 s.
    election_timeout_min_ms: int = 1_000
    election_timeout_max_ms: int = 2_000
    heartbeat_interval_ms: int = 100
    # Entries per AppendEntries message (batching) and unacknowledged appends per follower
    # (pipelining).
    append_entries_max: int = 64
    appends_in_flight_max: int = 8
    # ... and bounded by bytes (block payloads), so a follower behind by big blocks gets them:
    # 64 entries of 4 MB blocks made a 77 MB message that never fit the peer message limit
    # (issue 13). An append carries at least one entry whatever its size; genesis keeps a
    # block well under the message limit. In-flight bytes bound what a follower is sent
    # ahead of its acknowledgements, and so the transport's bulk queue to it (64 MiB).
    append_entries_bytes_max: int = 8 * 1024 * 1024
    appends_in_flight_bytes_max: int = 32 * 1024 * 1024
    # Blocks the leader may have proposed but not yet committed; the driver's pipeline depth.
    proposals_in_flight_max: int = 4
    # Compact when this many committed entries sit in the log; keep the newest
    # `log_retained_entries` of them so briefly-lagging followers still catch up from the log.
    # Entries hold whole blocks (up to the block byte limit each), so the log is compacted
    # often: with 1,024 entries a Raft node (with its verify workers) reached 405-475 MB in a
    # 5-minute run at 2,000 tx/s. Followers further behind fetch blocks by height instead.
    log_compaction_entries: int = 256
    log_retained_entries: int = 64
    # Resend a sync request this long after the previous one if no `synced` came back.
    sync_retry_ms: int = 1000
    pre_vote: bool = True
    check_quorum: bool = True

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.heartbeat_interval_ms <= 0:
            problems.append("heartbeat_interval_ms must be > 0")
        if self.election_timeout_min_ms < 2 * self.heartbeat_interval_ms:
            problems.append("election_timeout_min_ms must be >= 2 * heartbeat_interval_ms")
        if self.election_timeout_max_ms <= self.election_timeout_min_ms:
            problems.append("election_timeout_max_ms must be > election_timeout_min_ms")
        if self.append_entries_max < 1:
            problems.append("append_entries_max must be >= 1")
        if self.appends_in_flight_max < 1:
            problems.append("appends_in_flight_max must be >= 1")
        if not 1 <= self.append_entries_bytes_max <= MESSAGE_BYTES_MAX // 2:
            problems.append(
                f"append_entries_bytes_max must be 1..{MESSAGE_BYTES_MAX // 2} (half the peer "
                "message limit)"
            )
        if self.appends_in_flight_bytes_max < self.append_entries_bytes_max:
            problems.append("appends_in_flight_bytes_max must be >= append_entries_bytes_max")
        if self.proposals_in_flight_max < 1:
            problems.append("proposals_in_flight_max must be >= 1")
        if self.log_retained_entries < 0:
            problems.append("log_retained_entries must be >= 0")
        if self.log_compaction_entries <= self.log_retained_entries:
            problems.append("log_compaction_entries must be > log_retained_entries")
        if self.sync_retry_ms <= 0:
            problems.append("sync_retry_ms must be > 0")
        if problems:
            raise RaftConfigError("; ".join(problems))
