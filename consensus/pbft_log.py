"""PBFT's message log per height, its durable records, and the checks on relayed proofs.

`Slot` holds what one height has gathered: the block this replica accepted in which view,
candidate payloads (by hash), prepare and commit votes (bounded per sender, so a Byzantine
replica cannot flood a slot), its own highest prepared certificate, and the decision.
`Quorum` checks certificates signed by others (prepared, commit, checkpoint, view change) and
`select_new_view` is the one deterministic rule by which a new primary and every backup derive
the same re-proposals from a set of view changes.

Durable records (own codec): the view (and whether a view change is under way), the stable
checkpoint, the last new-view, and per height the accepted (view, hash) and prepared proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from consensus.codec import Codec, CodecError
from consensus.engine import Action, NodeId, Persist
from consensus.pbft_config import BlockIdentity, BlockInspector, Verify
from consensus.pbft_messages import (
    CheckpointProof,
    CommitCertificate,
    CommitVote,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    Vote,
    checkpoint_statement,
    commit_statement,
    prepare_statement,
)

Record = tuple[str, bytes | None]
RECORDS = Codec("pbft-records")
for _tag, _cls in (
    ("pbft.Vote", Vote),
    ("pbft.CheckpointProof", CheckpointProof),
    ("pbft.PreparedProof", PreparedProof),
    ("pbft.ViewChange", ViewChange),
    ("pbft.NewView", NewView),
):
    RECORDS.register_class(_tag, _cls)

KEY_VIEW = "pbft/view"
KEY_STABLE = "pbft/stable"
KEY_NEW_VIEW = "pbft/new_view"
SLOT_KEY_PREFIX = "pbft/slot/"
VOTES_PER_SENDER_MAX = 4  # distinct (view, hash) votes one sender may hold in a slot
PAYLOADS_PER_SLOT_MAX = 8
CHECKPOINTS_PER_SENDER_MAX = 4

GENESIS_CHECKPOINT = CheckpointProof(0, b"", ())


class PbftStateError(Exception):
    """Persisted PBFT records are corrupt: stop, don't guess."""


@RECORDS.register("pbft.ViewRecord")
@dataclass(frozen=True, slots=True)
class ViewRecord:
    view: int
    active: bool  # False: a view change to `view` is under way


@RECORDS.register("pbft.SlotRecord")
@dataclass(frozen=True, slots=True)
class SlotRecord:
    height: int
    accepted_view: int
    accepted_hash: bytes
    prepared: PreparedProof | None


def slot_key(height: int) -> str:
    return f"{SLOT_KEY_PREFIX}{height:020d}"


VoteKey = tuple[int, bytes]  # (view, block hash)


@dataclass(slots=True)
class Slot:
    height: int
    accepted: VoteKey | None = None  # this replica sent a prepare for it
    payloads: dict[bytes, bytes] = field(default_factory=dict)  # hash -> payload (checked)
    pending: tuple[int, bytes] | None = None  # (view, hash) from the primary, not yet validated
    prepares: dict[VoteKey, dict[NodeId, bytes]] = field(default_factory=dict)
    commits: dict[VoteKey, dict[NodeId, bytes]] = field(default_factory=dict)
    prepared: PreparedProof | None = None  # this replica's highest prepared certificate
    commit_sent_view: int = -1
    decided: CommitCertificate | None = None
    accepted_ms: int = 0  # when this replica accepted (in memory: 0 after a restart)

    @classmethod
    def restored(cls, record: SlotRecord) -> Slot:
        slot = cls(record.height, accepted=(record.accepted_view, record.accepted_hash))
        if record.prepared is not None:
            slot.prepared = record.prepared
            slot.add_payload(record.prepared.block_hash, record.prepared.payload, True)
            slot.commit_sent_view = record.prepared.view
        return slot

    def record(self) -> Record:
        assert self.accepted is not None
        value = SlotRecord(self.height, self.accepted[0], self.accepted[1], self.prepared)
        return (slot_key(self.height), RECORDS.encode(value))

    def add_payload(self, block_hash: bytes, payload: bytes, trusted: bool = False) -> None:
        """Keep a (hash-checked) candidate block. When the slot is full, an untrusted one (a
        pre-prepare of some view's primary) is dropped, while a trusted one (the current
        primary's, our own, one from a prepared certificate) evicts the oldest candidate that
        is neither accepted nor decided here, so a liar cannot crowd out the real block."""
        if block_hash in self.payloads:
            return
        if len(self.payloads) >= PAYLOADS_PER_SLOT_MAX:
            if not trusted:
                return
            protected = {self.accepted[1] if self.accepted else b""}
            if self.decided is not None:
                protected.add(self.decided.block_hash)
            victim = next((h for h in self.payloads if h not in protected), None)
            if victim is None:
                return
            del self.payloads[victim]
        self.payloads[block_hash] = payload

    def own_round(
        self, node: NodeId, view: int, is_primary: bool
    ) -> list[PrePrepare | Prepare | CommitVote]:
        """This replica's part of the slot's round in `view`, to resend: the pre-prepare (if it
        is the primary), its prepare and its commit, as far as it got."""
        if self.accepted is None or self.accepted[0] != view:
            return []
        block_hash = self.accepted[1]
        out: list[PrePrepare | Prepare | CommitVote] = []
        payload = self.payloads.get(block_hash)
        if is_primary and payload is not None:
            out.append(PrePrepare(view, self.height, block_hash, payload))
        mine = self.prepares.get(self.accepted, {}).get(node)
        if mine is not None:
            out.append(Prepare(view, self.height, block_hash, mine))
        commit = self.commits.get(self.accepted, {}).get(node)
        if commit is not None:
            out.append(CommitVote(view, self.height, block_hash, commit))
        return out

    def check_decided(self, quorum_size: int) -> None:
        """A commit certificate from any view decides the height (no vote of ours needed)."""
        for (view, block_hash), votes in self.commits.items():
            if len(votes) < quorum_size:
                continue
            if self.decided is not None:
                assert self.decided.block_hash == block_hash, (
                    f"two commit certificates for height {self.height}: more than f liars"
                )
                return
            self.decided = CommitCertificate(view, self.height, block_hash, as_votes(votes))


class CheckpointVotes:
    """Signed checkpoints heard, the newest few per sender (a liar cannot flood them)."""

    def __init__(self) -> None:
        self._held: dict[NodeId, dict[tuple[int, bytes], bytes]] = {}

    def add(
        self, sender: NodeId, height: int, block_hash: bytes, signature: bytes
    ) -> dict[NodeId, bytes]:
        """Record a checkpoint; returns every signature held for (`height`, `block_hash`)."""
        held = self._held.setdefault(sender, {})
        held[(height, block_hash)] = signature
        while len(held) > CHECKPOINTS_PER_SENDER_MAX:
            del held[min(held)]
        return {
            node: sigs[(height, block_hash)]
            for node, sigs in self._held.items()
            if (height, block_hash) in sigs
        }

    def forget_below(self, height: int) -> None:
        for held in self._held.values():
            for key in [k for k in held if k[0] < height]:
                del held[key]


def add_vote(
    table: dict[VoteKey, dict[NodeId, bytes]], key: VoteKey, sender: NodeId, signature: bytes
) -> bool:
    """Record a vote; False when it is a repeat or the sender has used up its share."""
    votes = table.get(key)
    if votes is not None and sender in votes:
        return False
    if sum(1 for v in table.values() if sender in v) >= VOTES_PER_SENDER_MAX:
        return False
    table.setdefault(key, {})[sender] = signature
    return True


def as_votes(signatures: Mapping[NodeId, bytes]) -> tuple[Vote, ...]:
    return tuple(Vote(node, sig) for node, sig in sorted(signatures.items()))


class Quorum:
    """One validator set, its quorum size, and checks of certificates signed by others (checks
    that span sets, view changes and new-views, are `consensus.pbft_membership.Membership`'s)."""

    def __init__(
        self, validators: Sequence[NodeId], verify: Verify, inspect: BlockInspector
    ) -> None:
        self.validators = tuple(validators)
        self.members = frozenset(validators)
        self.n = len(validators)
        self.f = (self.n - 1) // 3
        # The smallest size at which any two quorums share f + 1 replicas, so at least one
        # honest one: 2f + 1 when n = 3f + 1, but more when a change of the set leaves n
        # between (n = 5: 4, since two sets of 3 may share only one replica, maybe a liar).
        self.size = (self.n + self.f) // 2 + 1
        assert 2 * self.size - self.n >= self.f + 1, "quorums must intersect in an honest replica"
        self._verify = verify
        self._inspect = inspect

    def primary(self, view: int) -> NodeId:
        return self.validators[view % self.n]

    def signed_by(self, node: NodeId, statement: bytes, signature: bytes) -> bool:
        return node in self.members and self._verify(node, statement, signature)

    def _signed_by_quorum(self, votes: Iterable[Vote], statement: bytes) -> bool:
        signers: set[NodeId] = set()
        for vote in votes:
            if vote.node not in self.members or vote.node in signers:
                return False
            if not self._verify(vote.node, statement, vote.signature):
                return False
            signers.add(vote.node)
        return len(signers) >= self.size

    def commit_certificate_ok(self, cert: CommitCertificate) -> bool:
        statement = commit_statement(cert.view, cert.height, cert.block_hash)
        return self._signed_by_quorum(cert.votes, statement)

    def checkpoint_ok(self, proof: CheckpointProof) -> bool:
        if proof.height == 0:
            return not proof.votes
        return self._signed_by_quorum(
            proof.votes, checkpoint_statement(proof.height, proof.block_hash)
        )

    def prepared_ok(self, proof: PreparedProof) -> bool:
        identity = self.identity(proof.payload)
        if identity is None or identity.block_hash != proof.block_hash:
            return False
        if identity.height != proof.height:
            return False
        statement = prepare_statement(proof.view, proof.height, proof.block_hash)
        return self._signed_by_quorum(proof.votes, statement)

    def identity(self, payload: bytes) -> BlockIdentity | None:
        return self._inspect(payload)


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    """What a new view starts from: the highest stable checkpoint among the view changes and
    the blocks to propose again above it, one per height, contiguous."""

    checkpoint: CheckpointProof
    reproposals: tuple[PreparedProof, ...]


def select_new_view(view_changes: Sequence[ViewChange], inspect: BlockInspector) -> NewViewPlan:
    """For each height above the highest checkpoint, the prepared certificate of the highest
    view (ties: the smallest hash, so every replica picks the same), as long as the chosen
    blocks form a chain: stops at the first height no one prepared, or whose chosen block does
    not extend the one chosen below it (the checkpoint's block, at the first height above it).

    Why nothing committed is cut off, with blocks pipelined (several heights in flight): an
    honest replica prepares block b at h only once b's parent is committed there or holds a
    prepared certificate of the same view at h - 1 (`consensus.pbft_pipeline`). If b committed
    in view w, f + 1 honest replicas prepared b and its parent in w, and any 2f + 1 view
    changes include one of them: at h and h - 1 the highest certificates are of view >= w, and
    by the classic argument (induction over the views after w) every certificate of a view
    >= w at those heights is for b and its parent. So the chosen blocks at h - 1 and h chain,
    and so on down to the checkpoint. A chain broken above the last committed height is one a
    primary cut short (a block prepared on a parent that never prepared at 2f + 1 replicas in
    a later view): what lies above the break was never committed and is proposed afresh."""
    checkpoint = max(
        (vc.checkpoint for vc in view_changes),
        key=lambda c: (c.height, c.block_hash),
        default=GENESIS_CHECKPOINT,
    )
    best: dict[int, PreparedProof] = {}
    for vc in view_changes:
        for proof in vc.prepared:
            if proof.height <= checkpoint.height:
                continue
            held = best.get(proof.height)
            if held is None or (proof.view, _neg(proof.block_hash)) > (
                held.view,
                _neg(held.block_hash),
            ):
                best[proof.height] = proof
    chosen: list[PreparedProof] = []
    height = checkpoint.height + 1
    # The genesis checkpoint names no block: block 1's parent is the chain's genesis hash.
    below: bytes | None = checkpoint.block_hash if checkpoint.height > 0 else None
    while height in best:
        proof = best[height]
        identity = inspect(proof.payload)
        if identity is None or (below is not None and identity.parent_hash != below):
            break
        chosen.append(proof)
        below = proof.block_hash
        height += 1
    return NewViewPlan(checkpoint, tuple(chosen))


def _neg(block_hash: bytes) -> bytes:
    return bytes(255 - b for b in block_hash)


@dataclass(slots=True)
class Restored:
    view: ViewRecord
    stable: CheckpointProof
    new_view: NewView | None
    slots: dict[int, SlotRecord]


def restore(records: Mapping[str, bytes]) -> Restored:
    """Rebuild PBFT's durable state from its records (or a fresh one if there are none)."""
    try:
        view = ViewRecord(0, True)
        if KEY_VIEW in records:
            view = RECORDS.decode(records[KEY_VIEW], ViewRecord)
        stable = GENESIS_CHECKPOINT
        if KEY_STABLE in records:
            stable = RECORDS.decode(records[KEY_STABLE], CheckpointProof)
        new_view = None
        if KEY_NEW_VIEW in records:
            new_view = RECORDS.decode(records[KEY_NEW_VIEW], NewView)
        slots: dict[int, SlotRecord] = {}
        for key, raw in records.items():
            if key.startswith(SLOT_KEY_PREFIX):
                slot = RECORDS.decode(raw, SlotRecord)
                if slot_key(slot.height) != key:
                    raise PbftStateError(f"slot record {key} holds height {slot.height}")
                if slot.height > stable.height:
                    slots[slot.height] = slot
    except CodecError as exc:
        raise PbftStateError(f"corrupt PBFT record: {exc}") from exc
    return Restored(view, stable, new_view, slots)


def view_record(view: int, active: bool) -> Record:
    return (KEY_VIEW, RECORDS.encode(ViewRecord(view, active)))


def stable_record(proof: CheckpointProof) -> Record:
    return (KEY_STABLE, RECORDS.encode(proof))


def new_view_record(msg: NewView) -> Record:
    return (KEY_NEW_VIEW, RECORDS.encode(msg))


def persist(out: list[Action], records: list[Record]) -> None:
    """Append a `Persist` of `records` (if any) to the engine's actions."""
    if records:
        out.append(Persist(tuple(records)))
