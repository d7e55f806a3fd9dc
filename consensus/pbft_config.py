"""PBFT's tunables and the functions a PBFT engine is given (it cannot read blocks or keys).

Blocks are opaque to the engine, but a replica must know what a proposed payload *is* before it
votes for it: `BlockInspector` parses a payload into its identity (height, hash, parent hash)
so a primary cannot announce one hash and ship another block. Signing is injected too: `Sign`
signs with this node's key, `Verify` checks another validator's signature; both are pure
functions of their arguments, so the engine stays a pure state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.engine import NodeId


class PbftConfigError(ValueError):
    """A PBFT setting is out of range or inconsistent with another."""


@dataclass(frozen=True, slots=True)
class BlockIdentity:
    height: int
    block_hash: bytes
    parent_hash: bytes


# payload -> its identity, or None when the payload is not a well-formed block.
BlockInspector = Callable[[bytes], BlockIdentity | None]
Sign = Callable[[bytes], bytes]
# (signer, statement, signature) -> valid?
Verify = Callable[[NodeId, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class PbftConfig:
    # Every replica announces a checkpoint at heights that are multiples of this.
    checkpoint_interval_blocks: int = 16
    # Heights above `stable checkpoint + window` are not accepted (the high watermark).
    watermark_window_blocks: int = 64
    # No commit for this long (the node proposes an empty block every second when idle, so
    # silence means a faulty or cut-off primary): start a view change. Doubles with each view
    # change that brings no commit, up to the maximum.
    view_change_timeout_ms: int = 4_000
    view_change_timeout_max_ms: int = 32_000
    # Resend this replica's part of the current round (lost messages are the engine's to resend).
    retransmit_interval_ms: int = 300
    # A lag (f + 1 replicas, a commit certificate or a stable checkpoint above our height) seen
    # for this long triggers a sync; a sync that brought nothing is retried after `sync_retry_ms`.
    sync_delay_ms: int = 200
    sync_retry_ms: int = 1_000
    # Heights the primary keeps in flight: it pre-prepares h + 1 while h is still being agreed,
    # up to `commit height + pipeline_depth_blocks` (and never above the high watermark); a
    # backup votes that far above its own commit height. 1: one block at a time. The node's
    # block format bounds what it uses: a header carries the app hash APP_HASH_LAG (2) blocks
    # below, which a proposer must have executed (node/chain.py), so more than 2 changes
    # nothing in a node today (docs/consensus.md, "Pipelining").
    pipeline_depth_blocks: int = 2

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.checkpoint_interval_blocks < 1:
            problems.append("checkpoint_interval_blocks must be >= 1")
        if self.watermark_window_blocks < 2 * self.checkpoint_interval_blocks:
            problems.append("watermark_window_blocks must be >= 2 * checkpoint_interval_blocks")
        if self.retransmit_interval_ms <= 0:
            problems.append("retransmit_interval_ms must be > 0")
        if self.view_change_timeout_ms < 2 * self.retransmit_interval_ms:
            problems.append("view_change_timeout_ms must be >= 2 * retransmit_interval_ms")
        if self.view_change_timeout_max_ms < self.view_change_timeout_ms:
            problems.append("view_change_timeout_max_ms must be >= view_change_timeout_ms")
        if not 1 <= self.pipeline_depth_blocks <= self.watermark_window_blocks:
            problems.append("pipeline_depth_blocks must be in [1, watermark_window_blocks]")
        if self.sync_delay_ms < 0 or self.sync_retry_ms <= 0:
            problems.append("sync_delay_ms must be >= 0 and sync_retry_ms > 0")
        if problems:
            raise PbftConfigError("; ".join(problems))
