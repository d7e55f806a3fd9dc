"""The PBFT wire vocabulary: peer messages and certificates, registered on the message codec.

Votes that another replica may have to relay as proof (prepares inside a prepared certificate,
commits inside a commit certificate, checkpoints inside a stable-checkpoint proof, view changes
inside a new-view) carry their signer's signature over a fixed statement (`*_statement`); the
transport authenticates only the hop, not what is relayed. Statements start with a 0xff byte,
which no UTF-8 node id (the transport signs `node_id || 0x00 || payload`) can start with.

Sequence numbers are block heights: one block per height, chained by parent hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from dataclasses import dataclass

from consensus.codec import MESSAGES

_DOMAIN = b"\xffscfchain-pbft/"
INDEX_MAX = 2**62
HASH_BYTES_MAX = 64
SIGNATURE_BYTES_MAX = 128
NODE_ID_CHARS_MAX = 256


@MESSAGES.register("pbft.Vote")
@dataclass(frozen=True, slots=True)
class Vote:
    """One replica's signature inside a certificate."""

    node: str
    signature: bytes


@MESSAGES.register("pbft.PrePrepare")
@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary of `view` proposes `payload` (whose identity is `block_hash`) at `height`."""

    view: int
    height: int
    block_hash: bytes
    payload: bytes


@MESSAGES.register("pbft.Prepare")
@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    height: int
    block_hash: bytes
    signature: bytes


@MESSAGES.register("pbft.Commit")
@dataclass(frozen=True, slots=True)
class CommitVote:
    view: int
    height: int
    block_hash: bytes
    signature: bytes


@MESSAGES.register("pbft.Checkpoint")
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The sender committed `block_hash` at `height` (a multiple of the checkpoint interval)."""

    height: int
    block_hash: bytes
    signature: bytes


@MESSAGES.register("pbft.CheckpointProof")
@dataclass(frozen=True, slots=True)
class CheckpointProof:
    """A stable checkpoint: 2f + 1 signed checkpoints on (`height`, `block_hash`). Height 0
    with no votes is the starting point every replica holds."""

    height: int
    block_hash: bytes
    votes: tuple[Vote, ...]


@MESSAGES.register("pbft.PreparedProof")
@dataclass(frozen=True, slots=True)
class PreparedProof:
    """A prepared certificate: 2f + 1 signed prepares on (`view`, `height`, `block_hash`),
    with the block itself so a new primary can propose it again."""

    view: int
    height: int
    block_hash: bytes
    payload: bytes
    votes: tuple[Vote, ...]


@MESSAGES.register("pbft.CommitCertificate")
@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """2f + 1 signed commits on (`view`, `height`, `block_hash`): proof the block is decided."""

    view: int
    height: int
    block_hash: bytes
    votes: tuple[Vote, ...]


@MESSAGES.register("pbft.ViewChange")
@dataclass(frozen=True, slots=True)
class ViewChange:
    """`node` moves to `view`: its stable checkpoint and every prepared certificate above it."""

    view: int
    checkpoint: CheckpointProof
    prepared: tuple[PreparedProof, ...]
    node: str
    signature: bytes


@MESSAGES.register("pbft.NewView")
@dataclass(frozen=True, slots=True)
class NewView:
    """The primary of `view` starts it with 2f + 1 view changes; every replica derives the same
    re-proposals from them (`consensus.pbft_log.select_new_view`)."""

    view: int
    view_changes: tuple[ViewChange, ...]


@MESSAGES.register("pbft.NewViewRequest")
@dataclass(frozen=True, slots=True)
class NewViewRequest:
    """A replica that saw traffic of `view` but missed its new-view asks the primary for it."""

    view: int


PbftMessage = PrePrepare | Prepare | CommitVote | Checkpoint | ViewChange | NewView | NewViewRequest

PBFT_MESSAGE_TYPES: tuple[type[PbftMessage], ...] = (
    PrePrepare,
    Prepare,
    CommitVote,
    Checkpoint,
    ViewChange,
    NewView,
    NewViewRequest,
)


# --- signed statements -----------------------------------------------------------------------


def prepare_statement(view: int, height: int, block_hash: bytes) -> bytes:
    return _DOMAIN + b"prepare" + struct.pack(">QQ", view, height) + block_hash


def commit_statement(view: int, height: int, block_hash: bytes) -> bytes:
    return _DOMAIN + b"commit" + struct.pack(">QQ", view, height) + block_hash


def checkpoint_statement(height: int, block_hash: bytes) -> bytes:
    return _DOMAIN + b"checkpoint" + struct.pack(">Q", height) + block_hash


def view_change_statement(msg: ViewChange) -> bytes:
    """The view change's canonical encoding without its signature, hashed."""
    unsigned = dataclasses.replace(msg, signature=b"")
    return _DOMAIN + b"view-change" + hashlib.sha256(MESSAGES.encode(unsigned)).digest()


# --- shape checks ----------------------------------------------------------------------------


def _ok(*numbers: int) -> bool:
    return all(0 <= n < INDEX_MAX for n in numbers)


def _hash_ok(block_hash: bytes) -> bool:
    return 0 < len(block_hash) <= HASH_BYTES_MAX


def _votes_ok(votes: tuple[Vote, ...], votes_max: int) -> bool:
    return len(votes) <= votes_max and all(
        0 < len(v.node) <= NODE_ID_CHARS_MAX and len(v.signature) <= SIGNATURE_BYTES_MAX
        for v in votes
    )


def _checkpoint_proof_ok(proof: CheckpointProof, votes_max: int) -> bool:
    return (
        _ok(proof.height)
        and len(proof.block_hash) <= HASH_BYTES_MAX
        and _votes_ok(proof.votes, votes_max)
    )


def _view_change_ok(msg: ViewChange, votes_max: int, proofs_max: int) -> bool:
    return (
        _ok(msg.view)
        and _checkpoint_proof_ok(msg.checkpoint, votes_max)
        and len(msg.prepared) <= proofs_max
        and all(
            _ok(p.view, p.height) and _hash_ok(p.block_hash) and _votes_ok(p.votes, votes_max)
            for p in msg.prepared
        )
        and 0 < len(msg.node) <= NODE_ID_CHARS_MAX
        and len(msg.signature) <= SIGNATURE_BYTES_MAX
    )


def is_well_formed(msg: PbftMessage, votes_max: int, proofs_max: int) -> bool:
    """Shape checks the codec cannot express; a peer's malformed message is dropped."""
    match msg:
        case PrePrepare():
            return _ok(msg.view, msg.height) and _hash_ok(msg.block_hash) and msg.height > 0
        case Prepare() | CommitVote():
            return (
                _ok(msg.view, msg.height)
                and msg.height > 0
                and _hash_ok(msg.block_hash)
                and len(msg.signature) <= SIGNATURE_BYTES_MAX
            )
        case Checkpoint():
            return (
                _ok(msg.height)
                and msg.height > 0
                and _hash_ok(msg.block_hash)
                and len(msg.signature) <= SIGNATURE_BYTES_MAX
            )
        case ViewChange():
            return _view_change_ok(msg, votes_max, proofs_max)
        case NewView():
            return (
                _ok(msg.view)
                and len(msg.view_changes) <= votes_max
                and all(_view_change_ok(vc, votes_max, proofs_max) for vc in msg.view_changes)
            )
        case NewViewRequest():
            return _ok(msg.view)
    return False
