"""PBFT's proposal pipeline: several heights in flight, one chain, decided in height order.

The primary of a view pre-prepares height h + 1 as soon as it has pre-prepared h, on top of
its own block at h (it knows that block's hash: it proposed it, or re-proposed it from the
new-view), up to `commit height + pipeline_depth_blocks` and never above the high watermark
(`next_proposal`). A backup votes at most that far above its own commit height too.

A backup prepares a pipelined block b at h only when b's parent is settled here
(`parent_state`):
- h is the next height to commit and b's parent is the last committed block, or
- this replica holds a prepared certificate *of the current view* for b's parent at h - 1.
It validates b (signatures, limits: `BlockValidator`) as soon as it has accepted the parent in
this view, so a block's checks run while its parent is still being agreed, but it sends its
prepare only once the parent is prepared. That rule is what keeps view changes safe with
blocks in flight: whoever prepared a block also holds a certificate for its parent from the
same view, so a committed block is reported together with its ancestors by any 2f + 1 view
changes, and the new view's re-proposals (`consensus.pbft_log.select_new_view`, which keeps
only a chain) carry them all. Without it, a block could commit on a parent that 2f + 1
replicas never prepared, which a new view might replace.

Commits still come out strictly in height order (the engine emits `Commit` for h only after
h - 1), and each block's parent is checked against the last committed block when it is.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from consensus.pbft_log import Slot


class Parent(enum.Enum):
    """How a proposal's parent stands on this replica, in the current view."""

    UNKNOWN = "unknown"  # no block accepted below it in this view yet: wait
    WRONG = "wrong"  # not the block this replica has (committed, or accepted in this view)
    ACCEPTED = "accepted"  # the block accepted below it, not prepared yet: validate, wait
    READY = "ready"  # committed, or prepared in this view: the proposal may be prepared


def parent_state(
    slots: Mapping[int, Slot],
    view: int,
    height: int,
    parent_hash: bytes,
    commit_height: int,
    last_hash: bytes,
) -> Parent:
    """Where the parent (`parent_hash`) of a proposal at `height` stands here."""
    if height == commit_height + 1:
        return Parent.READY if parent_hash == last_hash else Parent.WRONG
    below = slots.get(height - 1)
    if below is None or below.accepted is None or below.accepted[0] != view:
        return Parent.UNKNOWN
    if below.accepted[1] != parent_hash:
        return Parent.WRONG
    prepared = below.prepared
    if prepared is not None and prepared.view == view and prepared.block_hash == parent_hash:
        return Parent.READY
    return Parent.ACCEPTED


def next_proposal(
    slots: Mapping[int, Slot],
    view: int,
    commit_height: int,
    last_hash: bytes,
    last_height: int,
) -> tuple[int, bytes] | None:
    """(height, parent hash) of the first height above the commit height that this replica
    has not accepted a block at in `view`, if it is at most `last_height`: the primary's next
    proposal extends the chain of blocks it accepted in this view."""
    height, parent_hash = commit_height + 1, last_hash
    while height <= last_height:
        slot = slots.get(height)
        if slot is None or slot.accepted is None or slot.accepted[0] != view:
            return height, parent_hash
        parent_hash = slot.accepted[1]
        height += 1
    return None
