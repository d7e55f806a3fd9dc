"""PBFT engine pieces in isolation: wire round-trips, config relations, quorum sizes,
certificate checks, the new-view selection rule, and what a restart must remember.

The protocol as a whole (faults, liars, view changes) is tested on the simulator in
tests/sim/test_pbft_*.py; these tests pin the small rules those runs rely on.
"""

from __future__ import annotations

import hashlib

import pytest

from consensus.codec import MESSAGES
from consensus.engine import BlockProposal, Broadcast, Commit, Persist
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig, PbftConfigError
from consensus.pbft_log import Quorum, select_new_view
from consensus.pbft_messages import (
    Checkpoint,
    CheckpointProof,
    CommitCertificate,
    CommitVote,
    NewView,
    NewViewRequest,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    Vote,
    commit_statement,
    prepare_statement,
)
from tests.sim.pbft_cluster import inspect_sim_block, sim_sign, sim_verify, validate_sim_block
from tests.sim.simulator import block_payload

NODES = ("n0", "n1", "n2", "n3")


def _engine(node_id: str, restored: dict[str, bytes] | None = None, nodes=NODES) -> PbftEngine:
    return PbftEngine(
        node_id,
        nodes,
        restored or {},
        validate=validate_sim_block,
        inspect=inspect_sim_block,
        sign=lambda statement: sim_sign(node_id, statement),
        verify=sim_verify,
    )


def _block(height: int = 1, parent: bytes = bytes(32), serial: int = 1) -> tuple[bytes, bytes]:
    payload = block_payload(height, parent, "n0", serial)
    return payload, hashlib.sha256(payload).digest()


def _commit_certificate(block_hash: bytes, signers: tuple[str, ...]) -> CommitCertificate:
    statement = commit_statement(0, 1, block_hash)
    return CommitCertificate(
        0, 1, block_hash, tuple(Vote(n, sim_sign(n, statement)) for n in signers)
    )


def test_every_pbft_message_round_trips_through_the_wire_codec() -> None:
    payload, block_hash = _block()
    vote = Vote("n1", b"s" * 32)
    proof = PreparedProof(0, 1, block_hash, payload, (vote,))
    checkpoint = CheckpointProof(4, block_hash, (vote,))
    view_change = ViewChange(1, checkpoint, (proof,), "n1", b"sig")
    for msg in (
        PrePrepare(0, 1, block_hash, payload),
        Prepare(0, 1, block_hash, b"sig"),
        CommitVote(0, 1, block_hash, b"sig"),
        Checkpoint(4, block_hash, b"sig"),
        view_change,
        NewView(1, (view_change,)),
        NewViewRequest(1),
        CommitCertificate(0, 1, block_hash, (vote,)),
    ):
        assert MESSAGES.decode(MESSAGES.encode(msg)) == msg


@pytest.mark.parametrize(
    "changes",
    [
        {"checkpoint_interval_blocks": 0},
        {"watermark_window_blocks": 8, "checkpoint_interval_blocks": 8},
        {"view_change_timeout_ms": 100, "retransmit_interval_ms": 100},
        {"view_change_timeout_max_ms": 10},
        {"sync_retry_ms": 0},
    ],
)
def test_inconsistent_pbft_settings_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(PbftConfigError):
        PbftConfig(**changes)


@pytest.mark.parametrize(("n", "f", "quorum"), [(1, 0, 1), (4, 1, 3), (7, 2, 5), (10, 3, 7)])
def test_quorum_is_two_f_plus_one_of_three_f_plus_one(n: int, f: int, quorum: int) -> None:
    q = Quorum([f"n{i}" for i in range(n)], sim_verify, inspect_sim_block)
    assert (q.f, q.size) == (f, quorum)


def test_commit_certificate_needs_two_f_plus_one_distinct_valid_signers() -> None:
    engine = _engine("n0")
    _, block_hash = _block()
    good = _commit_certificate(block_hash, ("n0", "n1", "n2"))
    assert engine.verify_certificate(1, block_hash, MESSAGES.encode(good))
    assert not engine.verify_certificate(2, block_hash, MESSAGES.encode(good))
    too_few = _commit_certificate(block_hash, ("n0", "n1"))
    assert not engine.verify_certificate(1, block_hash, MESSAGES.encode(too_few))
    repeated = CommitCertificate(0, 1, block_hash, (*too_few.votes, too_few.votes[0]))
    assert not engine.verify_certificate(1, block_hash, MESSAGES.encode(repeated))
    forged = CommitCertificate(0, 1, block_hash, (*too_few.votes, Vote("n3", b"x" * 32)))
    assert not engine.verify_certificate(1, block_hash, MESSAGES.encode(forged))
    outsider = _commit_certificate(block_hash, ("n0", "n1", "n9"))
    assert not engine.verify_certificate(1, block_hash, MESSAGES.encode(outsider))
    assert not engine.verify_certificate(1, block_hash, b"\x93garbage")


def test_new_view_reproposes_the_prepared_block_of_the_highest_view() -> None:
    genesis = CheckpointProof(0, b"", ())
    older, older_hash = _block(serial=1)
    newer, newer_hash = _block(serial=2)
    low = PreparedProof(1, 1, older_hash, older, ())
    high = PreparedProof(2, 1, newer_hash, newer, ())
    plan = select_new_view(
        [ViewChange(3, genesis, (low,), "n1", b""), ViewChange(3, genesis, (high,), "n2", b"")],
        inspect_sim_block,
    )
    assert [p.block_hash for p in plan.reproposals] == [newer_hash]


def test_single_validator_commits_its_own_proposal_at_once() -> None:
    engine = _engine("n0", nodes=("n0",))
    engine.start(0)
    status = engine.status
    assert status.role == "primary" and status.next_height == 1
    payload, block_hash = _block()

    actions = engine.propose(BlockProposal(1, bytes(32), block_hash, payload))
    commits = [a for a in actions if isinstance(a, Commit)]
    assert [c.height for c in commits] == [1]
    assert engine.verify_certificate(1, block_hash, commits[0].certificate)


def test_backup_persists_its_prepare_before_sending_it_and_remembers_it_after_restart() -> None:
    backup = _engine("n1")
    backup.start(0)
    payload, block_hash = _block()
    actions = backup.receive("n0", PrePrepare(0, 1, block_hash, payload))
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("Persist") < kinds.index("Broadcast")
    records = {k: v for a in actions if isinstance(a, Persist) for k, v in a.records if v}
    # Restarted, it refuses a different block for the same height and view.
    other, other_hash = _block(serial=2)
    restarted = _engine("n1", records)
    restarted.start(0)
    again = restarted.receive("n0", PrePrepare(0, 1, other_hash, other))
    assert not [a for a in again if isinstance(a, Broadcast) and isinstance(a.msg, Prepare)]


def test_prepare_with_a_bad_signature_is_not_counted() -> None:
    backup = _engine("n1")
    backup.start(0)
    payload, block_hash = _block()
    backup.receive("n0", PrePrepare(0, 1, block_hash, payload))
    backup.receive(
        "n0", Prepare(0, 1, block_hash, sim_sign("n0", prepare_statement(0, 1, block_hash)))
    )
    actions = backup.receive("n2", Prepare(0, 1, block_hash, b"forged" * 6))
    assert not [a for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, CommitVote)]
    good = sim_sign("n2", prepare_statement(0, 1, block_hash))
    actions = backup.receive("n2", Prepare(0, 1, block_hash, good))
    assert [a for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, CommitVote)]


def _votes_far_ahead(engine: PbftEngine, height: int, senders: tuple[str, ...]) -> None:
    """Signed commits from `senders` at `height`, above the engine's high watermark."""
    block_hash = hashlib.sha256(b"far").digest()
    for sender in senders:
        signature = sim_sign(sender, commit_statement(0, height, block_hash))
        engine.receive(sender, CommitVote(0, height, block_hash, signature))


def test_restarted_replica_syncs_on_f_plus_one_votes_above_its_window_without_a_view_change(
) -> None:
    """A backup restarted far behind hears signed votes from f + 1 = 2 replicas at a height
    beyond its watermark window: it asks for blocks at once (not at the next stable
    checkpoint), and its view timer firing while it catches up starts no view change."""
    from consensus.engine import RequestSync

    engine = _engine("n1")
    engine.start(0)
    far = PbftConfig().watermark_window_blocks + 500
    _votes_far_ahead(engine, far, ("n2",))
    assert not [a for a in engine.tick(1_000) if isinstance(a, RequestSync)]  # one is not proof
    _votes_far_ahead(engine, far, ("n3",))
    actions = engine.tick(2_000)
    assert [a.from_height for a in actions if isinstance(a, RequestSync)] == [1]
    actions = engine.tick(10 * PbftConfig().view_change_timeout_ms)
    assert not [a for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, ViewChange)]
    assert engine.status.round == 0


def test_a_proposal_whose_validation_is_not_done_yet_is_prepared_on_a_later_tick() -> None:
    """The node's validator answers "not yet" while a block's signatures are being checked off
    its event loop: the backup asks again on each tick and prepares once the answer is yes."""
    verdicts: list[bool] = []
    asked: list[int] = []

    def validate(height: int, parent_hash: bytes, payload: bytes) -> bool:
        asked.append(height)
        return bool(verdicts) and verdicts[-1]

    backup = PbftEngine(
        "n1",
        NODES,
        {},
        validate=validate,
        inspect=inspect_sim_block,
        sign=lambda statement: sim_sign("n1", statement),
        verify=sim_verify,
    )
    backup.start(0)
    payload, block_hash = _block()

    def prepares(actions: list) -> list:
        return [a for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, Prepare)]

    assert not prepares(backup.receive("n0", PrePrepare(0, 1, block_hash, payload)))
    before_tick = len(asked)
    assert not prepares(backup.tick(10))
    assert len(asked) == before_tick + 1 and set(asked) == {1}
    verdicts.append(True)
    [prepare] = prepares(backup.tick(20))
    assert prepare.msg.block_hash == block_hash
    prepared_after = len(asked)
    backup.tick(30)
    assert len(asked) == prepared_after  # prepared: not asked again
