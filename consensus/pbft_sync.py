"""When a PBFT replica asks for state transfer: the evidence that the cluster is ahead of it.

Evidence is a stable checkpoint or a commit certificate above our height (the engine passes
the highest such height as `known_decided`), or f + 1 replicas known to have committed above it
(one of them honest): a signed checkpoint says its signer committed its height, a signed vote
at h that it committed h - `pipeline_depth_blocks` (an honest replica votes no further ahead).
Held for `sync_delay_ms` it makes a `RequestSync`, retried every `sync_retry_ms` while it
brings nothing, turning through the replicas known to be furthest ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from consensus.engine import NodeId, RequestSync
from consensus.pbft_config import PbftConfig

logger = logging.getLogger(__name__)


class CatchUp:
    def __init__(self, node_id: NodeId, config: PbftConfig) -> None:
        self._node_id = node_id
        self._config = config
        self._ahead: dict[NodeId, int] = {}  # the highest height each peer is known to commit
        self._lag_since_ms: int | None = None
        self._requested_ms: int | None = None
        self._turn = 0

    def note_committed(self, sender: NodeId, height: int) -> None:
        """`sender` (by a message it signed as a validator) committed `height`."""
        if height > self._ahead.get(sender, 0):
            self._ahead[sender] = height

    def progressed(self) -> None:
        """A commit or a sync: the lag (if any) is measured afresh."""
        self._lag_since_ms = None

    def synced(self) -> None:
        self._lag_since_ms = None
        self._requested_ms = None

    def target(self, known_decided: int, f: int) -> int:
        """The highest height known decided by the cluster."""
        ahead = sorted(self._ahead.values(), reverse=True)
        if len(ahead) >= f + 1:
            return max(known_decided, ahead[f])
        return known_decided

    def request(
        self,
        now_ms: int,
        commit_height: int,
        target: int,
        deliverable: bool,
        peers: Sequence[NodeId],
    ) -> RequestSync | None:
        """A sync request, if the lag has lasted long enough and no recent one is pending."""
        if target <= commit_height or deliverable:
            self._lag_since_ms = None
            return None
        if self._lag_since_ms is None:
            self._lag_since_ms = now_ms
        if now_ms - self._lag_since_ms < self._config.sync_delay_ms:
            return None
        requested = self._requested_ms
        if requested is not None and now_ms - requested < self._config.sync_retry_ms:
            return None
        sources = sorted(
            (node for node, height in self._ahead.items() if height > commit_height),
            key=lambda node: -self._ahead[node],
        )
        if not sources:
            sources = list(peers)
        if not sources:
            return None
        source = sources[self._turn % len(sources)]
        self._turn += 1
        self._requested_ms = now_ms
        logger.info(
            "node=%s requests sync from %s at height %d (cluster at >= %d)",
            self._node_id,
            source,
            commit_height + 1,
            target,
        )
        return RequestSync(source, commit_height + 1)
