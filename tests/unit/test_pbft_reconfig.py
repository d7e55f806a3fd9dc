"""PBFT validator-set changes on single engines fed by hand: quorums and the primary rotation
switch exactly at the effective height, a removed replica stops voting and its votes stop
counting, certificates are checked against the set of their height (also after a restart from
the stored history), and view changes across the boundary need a quorum of every set involved.

The same rules under faults (crashes, partitions, liars around the boundary) run on the
simulator in tests/sim/test_pbft_reconfig.py.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from consensus.codec import MESSAGES
from consensus.engine import Action, Broadcast, Commit, Persist, RequestSync, Send
from consensus.pbft import PbftEngine
from consensus.pbft_log import GENESIS_CHECKPOINT, view_record
from consensus.pbft_membership import Membership
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
    checkpoint_statement,
    commit_statement,
    prepare_statement,
    view_change_statement,
)
from tests.sim.pbft_cluster import inspect_sim_block, sim_sign, sim_verify, validate_sim_block
from tests.sim.simulator import block_payload

FOUR = ("n0", "n1", "n2", "n3")
FIVE = ("n0", "n1", "n2", "n3", "n4")


def _engine(
    node_id: str,
    genesis: tuple[str, ...] = FOUR,
    restored: dict[str, bytes] | None = None,
    commit_height: int = 0,
    last_hash: bytes = bytes(32),
) -> PbftEngine:
    engine = PbftEngine(
        node_id,
        genesis,
        restored or {},
        validate=validate_sim_block,
        inspect=inspect_sim_block,
        sign=lambda statement: sim_sign(node_id, statement),
        verify=sim_verify,
        commit_height=commit_height,
        last_block_hash=last_hash,
    )
    engine.start(0)
    return engine


def _chain(length: int) -> list[tuple[bytes, bytes]]:
    """(payload, hash) of blocks 1..length, each on the one before."""
    blocks: list[tuple[bytes, bytes]] = []
    parent = bytes(32)
    for height in range(1, length + 1):
        payload = block_payload(height, parent, "p", height)
        parent = hashlib.sha256(payload).digest()
        blocks.append((payload, parent))
    return blocks


def _prepare(node: str, height: int, block_hash: bytes, view: int = 0) -> Prepare:
    return Prepare(
        view, height, block_hash, sim_sign(node, prepare_statement(view, height, block_hash))
    )


def _commit(node: str, height: int, block_hash: bytes, view: int = 0) -> CommitVote:
    return CommitVote(
        view, height, block_hash, sim_sign(node, commit_statement(view, height, block_hash))
    )


def _sent(actions: list[Action], kind: type) -> list[Any]:
    return [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, kind)]


def _records(actions: list[Action]) -> dict[str, bytes]:
    return {k: v for a in actions if isinstance(a, Persist) for k, v in a.records if v}


def _certificate(height: int, block_hash: bytes, signers: tuple[str, ...]) -> bytes:
    statement = commit_statement(0, height, block_hash)
    votes = tuple(Vote(n, sim_sign(n, statement)) for n in signers)
    return MESSAGES.encode(CommitCertificate(0, height, block_hash, votes))


def _drive(engine: PbftEngine, height: int, block: tuple[bytes, bytes], voters: tuple[str, ...]):
    """The primary's pre-prepare, then prepares from `voters` one by one; returns the
    number of prepares heard when this replica sent its commit (None: never)."""
    payload, block_hash = block
    primary = engine._sets.at(height).primary(0)
    actions = (
        []
        if primary == engine.node_id
        else engine.receive(primary, PrePrepare(0, height, block_hash, payload))
    )
    if _sent(actions, CommitVote):
        return 0
    for count, voter in enumerate(voters, start=1):
        if voter == engine.node_id:
            continue
        if _sent(engine.receive(voter, _prepare(voter, height, block_hash)), CommitVote):
            return count
    return None


# --- quorums and rotation ------------------------------------------------------------------------


def test_adding_a_fifth_replica_moves_the_quorum_from_3_of_4_to_4_of_5_at_the_boundary() -> None:
    chain = _chain(3)
    engine = _engine("n1", commit_height=1, last_hash=chain[0][1])
    actions = engine.reconfigure(3, FIVE)
    assert "pbft/validators" in _records(actions)
    # Height 2 is still the old set's: n0's pre-prepare, n0's prepare and our own make 3.
    assert _drive(engine, 2, chain[1], ("n0", "n2", "n3")) == 2
    for voter in ("n0", "n2"):
        engine.receive(voter, _commit(voter, 2, chain[1][1]))
    assert engine.status.commit_height == 2
    # Height 3 is the new set's: 3 prepares (with ours) are no longer enough, the 4th is.
    assert _drive(engine, 3, chain[2], ("n0", "n2", "n3", "n4")) == 3
    commits = []
    for voter in ("n0", "n2", "n4"):
        commits += [
            a
            for a in engine.receive(voter, _commit(voter, 3, chain[2][1]))
            if isinstance(a, Commit)
        ]
        if voter == "n2":
            assert not commits, "3 of 5 commits decided height 3"
    assert [c.height for c in commits] == [3]
    assert engine.status.extra["validators"] == 5 and engine.status.extra["epoch"] == 1


def test_a_removed_replica_stops_voting_and_its_votes_no_longer_count() -> None:
    chain = _chain(3)
    removal = ("n0", "n1", "n2", "n3")
    # Genesis of five (f = 1, quorum 4); n4 leaves from height 3 (four, quorum 3).
    stays = _engine("n1", genesis=FIVE, commit_height=2, last_hash=chain[1][1])
    stays.reconfigure(3, removal)
    payload, block_hash = chain[2]
    stays.receive("n0", PrePrepare(0, 3, block_hash, payload))
    assert not _sent(stays.receive("n4", _prepare("n4", 3, block_hash)), CommitVote)
    assert not _sent(stays.receive("n0", _prepare("n0", 3, block_hash)), CommitVote)
    assert _sent(stays.receive("n2", _prepare("n2", 3, block_hash)), CommitVote)
    stays.receive("n4", _commit("n4", 3, block_hash))
    stays.receive("n0", _commit("n0", 3, block_hash))
    assert stays.status.commit_height == 2, "n4's commit counted towards height 3"
    stays.receive("n2", _commit("n2", 3, block_hash))
    assert stays.status.commit_height == 3
    # n4 itself: an observer from height 3 on, it neither prepares nor checkpoints there,
    # but still follows the chain on the others' commits.
    leaver = _engine("n4", genesis=FIVE, commit_height=2, last_hash=chain[1][1])
    leaver.reconfigure(3, removal)
    assert leaver.status.role == "observer" and leaver.status.next_height is None
    assert not _sent(leaver.receive("n0", PrePrepare(0, 3, block_hash, payload)), Prepare)
    for voter in ("n0", "n1", "n2"):
        leaver.receive(voter, _prepare(voter, 3, block_hash))
        leaver.receive(voter, _commit(voter, 3, block_hash))
    assert leaver.status.commit_height == 3


def test_a_removed_replicas_checkpoint_does_not_count_in_the_new_set() -> None:
    chain = _chain(16)
    engine = _engine("n1", genesis=FIVE, commit_height=15, last_hash=chain[14][1])
    engine.reconfigure(10, FOUR)
    block_hash = chain[15][1]
    for node in ("n4", "n0"):
        signature = sim_sign(node, checkpoint_statement(16, block_hash))
        engine.receive(node, Checkpoint(16, block_hash, signature))
    signature = sim_sign("n2", checkpoint_statement(16, block_hash))
    engine.receive("n2", Checkpoint(16, block_hash, signature))
    assert engine.stable_checkpoint.height == 0, "n4's checkpoint counted at height 16"
    signature = sim_sign("n3", checkpoint_statement(16, block_hash))
    engine.receive("n3", Checkpoint(16, block_hash, signature))
    assert engine.stable_checkpoint.height == 16
    assert {v.node for v in engine.stable_checkpoint.votes} == {"n0", "n2", "n3"}


def test_the_primary_rotation_follows_the_set_of_the_height() -> None:
    sets = Membership(FOUR, {}, sim_verify, inspect_sim_block)
    sets.add(10, FIVE)
    assert [sets.at(9).primary(v) for v in range(5)] == ["n0", "n1", "n2", "n3", "n0"]
    assert [sets.at(10).primary(v) for v in range(5)] == ["n0", "n1", "n2", "n3", "n4"]
    # In view 4, n0 is the primary through height 9 and n4 from height 10.
    restored = dict([view_record(4, True)])
    chain = _chain(9)
    before = _engine("n0", restored=restored, commit_height=8, last_hash=chain[7][1])
    before.reconfigure(10, FIVE)
    assert before.status.role == "primary" and before.status.next_height == 9
    at = _engine("n4", restored=restored, commit_height=9, last_hash=chain[8][1])
    assert at.status.role == "observer"
    at.reconfigure(10, FIVE)
    assert at.status.role == "primary" and at.status.next_height == 10
    old_primary = _engine("n0", restored=restored, commit_height=9, last_hash=chain[8][1])
    old_primary.reconfigure(10, FIVE)
    assert old_primary.status.role == "backup" and old_primary.status.leader == "n4"


def test_a_sender_in_no_set_is_ignored() -> None:
    engine = _engine("n1")
    payload, block_hash = _chain(1)[0]
    assert not engine.receive("n9", PrePrepare(0, 1, block_hash, payload))
    assert not engine.receive("n9", _prepare("n9", 1, block_hash))


# --- certificates and restarts -------------------------------------------------------------------


def test_certificates_are_checked_against_the_set_of_their_height_also_after_a_restart() -> None:
    engine = _engine("n1")
    records = _records(engine.reconfigure(5, FIVE))
    block = hashlib.sha256(b"b").digest()
    assert engine.verify_certificate(4, block, _certificate(4, block, ("n0", "n1", "n2")))
    assert not engine.verify_certificate(4, block, _certificate(4, block, ("n0", "n1", "n4")))
    assert not engine.verify_certificate(5, block, _certificate(5, block, ("n0", "n1", "n2")))
    assert engine.verify_certificate(5, block, _certificate(5, block, ("n0", "n1", "n2", "n4")))
    # Restarted at height 7 from its records (the node passes the genesis set): the same.
    restarted = _engine("n1", restored=records, commit_height=7)
    assert restarted.verify_certificate(4, block, _certificate(4, block, ("n0", "n1", "n2")))
    assert not restarted.verify_certificate(6, block, _certificate(6, block, ("n0", "n1", "n2")))
    assert restarted.verify_certificate(6, block, _certificate(6, block, ("n1", "n2", "n3", "n4")))
    # The node repeats the stored set at start-up: nothing happens.
    assert restarted.reconfigure(5, FIVE) == []
    assert restarted.status.extra["epoch"] == 1


def test_a_change_already_in_effect_at_start_up_is_taken_as_is() -> None:
    """A node restarted after its engine records were lost (or built anew) hears the stored
    set with an effective height at or below its head: it applies from there."""
    engine = _engine("n4", commit_height=20)
    assert engine.status.role == "observer"
    actions = engine.reconfigure(12, FIVE)
    assert _records(actions) and engine.status.role != "observer"
    block = hashlib.sha256(b"b").digest()
    assert not engine.verify_certificate(15, block, _certificate(15, block, ("n0", "n1", "n2")))


@pytest.mark.parametrize(
    ("effective_height", "validators"),
    [
        (5, ("n0", "n1", "n2")),  # n would drop below 4
        (5, ("n0", "n1", "n2", "n2")),  # not distinct
        (0, FIVE),  # the genesis set is not changed
    ],
)
def test_a_set_pbft_cannot_run_with_is_refused(
    effective_height: int, validators: tuple[str, ...]
) -> None:
    engine = _engine("n1")
    with pytest.raises(ValueError):
        engine.reconfigure(effective_height, validators)
    assert engine.status.extra["epoch"] == 0


def test_a_change_that_contradicts_the_history_is_refused() -> None:
    engine = _engine("n1")
    engine.reconfigure(10, FIVE)
    with pytest.raises(ValueError):
        engine.reconfigure(10, ("n0", "n1", "n2", "n4"))
    with pytest.raises(ValueError):
        engine.reconfigure(8, ("n0", "n1", "n2", "n4"))
    assert engine.reconfigure(10, FIVE) == []
    engine.reconfigure(14, FOUR)  # the next change, in order
    assert engine.status.extra["epoch"] == 0 and engine._sets.epoch_index(14) == 2


# --- a replica added later ------------------------------------------------------------------------


def test_an_added_replica_follows_as_an_observer_then_votes_from_the_effective_height() -> None:
    chain = _chain(3)
    added = _engine("n4")
    added.reconfigure(3, FIVE)
    for height in (1, 2):
        payload, block_hash = chain[height - 1]
        assert not _sent(added.receive("n0", PrePrepare(0, height, block_hash, payload)), Prepare)
        for voter in ("n0", "n1", "n2"):
            added.receive(voter, _commit(voter, height, block_hash))
    assert added.status.commit_height == 2 and added.status.role == "backup"
    payload, block_hash = chain[2]
    [prepare] = _sent(added.receive("n0", PrePrepare(0, 3, block_hash, payload)), Prepare)
    assert prepare.height == 3


def test_an_added_replica_learns_the_current_view_from_its_traffic() -> None:
    added = _engine("n4")
    added.reconfigure(3, FIVE)
    view_changes = tuple(_view_change(n, 2, GENESIS_CHECKPOINT) for n in FIVE[:4])
    new_view = NewView(2, view_changes)
    payload, block_hash = _chain(1)[0]
    asked = added.receive("n2", PrePrepare(2, 1, block_hash, payload))
    assert [(a.to, a.msg) for a in asked if isinstance(a, Send)] == [("n2", NewViewRequest(2))]
    added.receive("n2", new_view)
    assert added.status.round == 2 and added.status.extra["phase"] == "normal"


# --- view changes across the boundary -------------------------------------------------------------


def _view_change(node: str, view: int, checkpoint: CheckpointProof) -> ViewChange:
    unsigned = ViewChange(view, checkpoint, (), node, b"")
    return ViewChange(view, checkpoint, (), node, sim_sign(node, view_change_statement(unsigned)))


def _stable(height: int, signers: tuple[str, ...]) -> CheckpointProof:
    block_hash = hashlib.sha256(b"cp%d" % height).digest()
    statement = checkpoint_statement(height, block_hash)
    return CheckpointProof(
        height, block_hash, tuple(Vote(n, sim_sign(n, statement)) for n in signers)
    )


def test_a_new_view_across_the_boundary_needs_a_quorum_of_each_set_above_its_checkpoint() -> None:
    """Four validators, n4 added from height 5. From checkpoint 0 a new view may re-propose
    heights of both sets: 3 of the old four are a quorum of it but not 4 of the five."""
    sets = Membership(FOUR, {}, sim_verify, inspect_sim_block)
    sets.add(5, FIVE)
    window = 64
    three = tuple(_view_change(n, 1, GENESIS_CHECKPOINT) for n in ("n0", "n1", "n2"))
    assert not sets.new_view_ok(NewView(1, three), window)
    with_added = (*three, _view_change("n4", 1, GENESIS_CHECKPOINT))
    assert sets.new_view_ok(NewView(1, with_added), window)
    # Above a checkpoint past the boundary only the new set matters: still 4 of the five.
    late = _stable(8, ("n0", "n1", "n2", "n4"))
    assert sets.at(8).checkpoint_ok(late)
    three_late = tuple(_view_change(n, 1, late) for n in ("n0", "n1", "n4"))
    assert not sets.new_view_ok(NewView(1, three_late), window)
    assert sets.new_view_ok(NewView(1, (*three_late, _view_change("n3", 1, late))), window)


def test_a_removed_replicas_view_change_counts_only_below_its_last_height() -> None:
    sets = Membership(FIVE, {}, sim_verify, inspect_sim_block)
    sets.add(9, FOUR)  # n4 orders heights up to 8
    early = _stable(4, ("n0", "n1", "n2", "n4"))
    assert sets.view_change_ok(_view_change("n4", 1, early), 64)
    late = _stable(8, ("n0", "n1", "n2", "n4"))  # height 8 is still the five's: n4 signs it
    assert sets.at(8).checkpoint_ok(late)
    assert not sets.view_change_ok(_view_change("n4", 1, late), 64)
    assert sets.view_change_ok(_view_change("n3", 1, late), 64)


def test_restored_history_survives_a_restart_even_when_the_node_passes_another_set() -> None:
    engine = _engine("n1")
    records = _records(engine.reconfigure(5, FIVE))
    restarted = _engine("n1", genesis=("a", "b", "c", "d"), restored=records, commit_height=6)
    assert restarted._sets.epochs == engine._sets.epochs


def test_a_decision_not_yet_delivered_is_re_derived_when_a_change_covers_its_height() -> None:
    """Height 3 gathered 3 commits (a quorum of four) while height 2 is still open; then the
    node tells of n4 joining from height 3: those commits are not a quorum of five any more,
    and the height is decided only once a fourth commit arrives."""
    chain = _chain(3)
    engine = _engine("n1", commit_height=1, last_hash=chain[0][1])
    block_hash = chain[2][1]
    for voter in ("n0", "n2", "n3"):
        engine.receive(voter, _commit(voter, 3, block_hash))
    assert engine._slots[3].decided is not None
    engine.reconfigure(3, FIVE)
    assert engine._slots[3].decided is None
    engine.receive("n4", _commit("n4", 3, block_hash))
    assert engine._slots[3].decided is not None
    assert {v.node for v in engine._slots[3].decided.votes} == {"n0", "n2", "n3", "n4"}


def test_a_replica_added_after_a_view_change_votes_in_that_view_without_another() -> None:
    """The demo's case: the four move to view 1 (its new-view holds three view changes of the
    four, from checkpoint 0, made before anyone knew of n4), then n4 is voted in from height 3.
    n4 follows heights 1 and 2 in view 0, sees view 1's traffic at height 3, asks for the
    new-view and must enter view 1 with it and prepare height 3: the new-view cannot hold a
    quorum of the five, which did not exist when it was made, and nothing at height 3 or above
    could have been ordered before view 1 (its view changes report nothing above 0)."""
    chain = _chain(3)
    new_view = NewView(1, tuple(_view_change(n, 1, GENESIS_CHECKPOINT) for n in ("n0", "n2", "n3")))
    added = _engine("n4")
    added.reconfigure(3, FIVE)
    for height in (1, 2):
        payload, block_hash = chain[height - 1]
        added.receive("n1", PrePrepare(1, height, block_hash, payload))
        for voter in ("n0", "n1", "n2"):
            added.receive(voter, _commit(voter, height, block_hash, view=1))
    assert added.status.commit_height == 2
    payload, block_hash = chain[2]
    primary = added._sets.at(3).primary(1)
    added.receive(primary, PrePrepare(1, 3, block_hash, payload))  # asks for view 1's new-view
    actions = added.receive("n2", new_view)
    assert added.status.round == 1 and added.status.extra["phase"] == "normal"
    actions += added.receive(primary, PrePrepare(1, 3, block_hash, payload))
    assert [(p.view, p.height) for p in _sent(actions, Prepare)] == [(1, 3)]


def test_a_new_view_may_lack_a_later_set_only_where_this_replica_never_prepared() -> None:
    """The exemption of the rule above: a set starting above every height the new-view's view
    changes report need not hold a quorum in it, unless this replica prepared at some height of
    that set (then a block it prepared there may have committed before the view, and only a
    quorum of that set would carry it over)."""
    sets = Membership(FOUR, {}, sim_verify, inspect_sim_block)
    sets.add(5, FIVE)
    window = 64
    three = NewView(1, tuple(_view_change(n, 1, GENESIS_CHECKPOINT) for n in ("n0", "n1", "n2")))
    assert sets.new_view_ok(three, window, voted_from=lambda height: False)
    assert not sets.new_view_ok(three, window, voted_from=lambda height: height <= 7)
    assert not sets.new_view_ok(three, window)  # the primary's own count stays strict
    # A view change reporting height 4 prepared: height 5 may have been ordered before view 1.
    chain = _chain(4)
    payload, block_hash = chain[3]
    statement = prepare_statement(0, 4, block_hash)
    proof = PreparedProof(
        0, 4, block_hash, payload, tuple(Vote(n, sim_sign(n, statement)) for n in FOUR[:3])
    )
    unsigned = ViewChange(1, GENESIS_CHECKPOINT, (proof,), "n0", b"")
    reporting = ViewChange(
        1, GENESIS_CHECKPOINT, (proof,), "n0", sim_sign("n0", view_change_statement(unsigned))
    )
    late = NewView(1, (reporting, *three.view_changes[1:]))
    assert sets.view_change_ok(reporting, window)
    assert not sets.new_view_ok(late, window, voted_from=lambda height: False)


def test_a_removed_replica_fetches_its_last_height_when_its_votes_stop_coming() -> None:
    """n4 orders heights up to 3. The others drop their links to it once they committed 3, so
    at height 2 it may never hear the votes that decide 3: after `sync_delay_ms` without a
    commit it asks for height 3 by state transfer (retried while that brings nothing), as a
    replica staying in the set does not."""
    chain = _chain(2)
    leaving = _engine("n4", genesis=FIVE, commit_height=2, last_hash=chain[1][1])
    staying = _engine("n1", genesis=FIVE, commit_height=2, last_hash=chain[1][1])
    for engine in (leaving, staying):
        engine.reconfigure(4, FOUR)
    delay = leaving.config.sync_delay_ms
    assert not [a for a in leaving.tick(1) if isinstance(a, RequestSync)]
    [request] = [a for a in leaving.tick(delay + 1) if isinstance(a, RequestSync)]
    assert request.from_height == 3 and request.from_node in FOUR
    assert not [a for a in staying.tick(1) + staying.tick(delay + 1) if isinstance(a, RequestSync)]
    retry = delay + 1 + leaving.config.sync_retry_ms
    assert [a for a in leaving.tick(retry) if isinstance(a, RequestSync)]
    leaving.synced(3, _chain(3)[2][1])
    later = retry + 10 * (delay + leaving.config.sync_retry_ms)
    assert not [a for a in leaving.tick(later) if isinstance(a, RequestSync)]
