"""PBFT pipelining, one engine at a time: what the primary offers, when a backup prepares a
pipelined block, what a view change carries and re-proposes, and the checks around them.

Engines run on sim blocks (`height|parent|proposer|serial`) and sim signatures; messages are
handed from one engine to another by hand, so each test sets up exactly the order it checks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from consensus.engine import Action, BlockProposal, Broadcast, Persist
from consensus.pbft import PbftEngine
from consensus.pbft_config import PbftConfig, PbftConfigError
from consensus.pbft_log import GENESIS_CHECKPOINT, select_new_view
from consensus.pbft_messages import (
    Checkpoint,
    CheckpointProof,
    CommitVote,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    Vote,
    checkpoint_statement,
    prepare_statement,
)
from tests.sim.pbft_cluster import inspect_sim_block, sim_sign, sim_verify, validate_sim_block
from tests.sim.simulator import block_payload

NODES = ("n0", "n1", "n2", "n3")
CONFIG = PbftConfig(
    checkpoint_interval_blocks=4,
    watermark_window_blocks=16,
    view_change_timeout_ms=1_000,
    view_change_timeout_max_ms=8_000,
    retransmit_interval_ms=100,
)


def _engine(
    node_id: str, depth: int = 2, validated: list[int] | None = None, **kw: Any
) -> PbftEngine:
    def validate(height: int, parent_hash: bytes, payload: bytes) -> bool:
        if validated is not None:
            validated.append(height)
        return validate_sim_block(height, parent_hash, payload)

    return PbftEngine(
        node_id,
        NODES,
        kw.pop("restored", {}),
        validate=validate,
        inspect=inspect_sim_block,
        sign=lambda statement: sim_sign(node_id, statement),
        verify=sim_verify,
        config=replace(CONFIG, pipeline_depth_blocks=depth),
        **kw,
    )


def _block(height: int, parent: bytes, serial: int = 1) -> tuple[bytes, bytes]:
    payload = block_payload(height, parent, "n0", serial)
    return payload, hashlib.sha256(payload).digest()


def _chain(length: int, parent: bytes = bytes(32)) -> list[tuple[bytes, bytes]]:
    blocks = []
    for height in range(1, length + 1):
        payload, block_hash = _block(height, parent)
        blocks.append((payload, block_hash))
        parent = block_hash
    return blocks


def _sent(actions: Sequence[Action], kind: type[Any]) -> list[Any]:
    return [a.msg for a in actions if isinstance(a, Broadcast) and isinstance(a.msg, kind)]


def _prepare(node: str, height: int, block_hash: bytes, view: int = 0) -> Prepare:
    return Prepare(
        view, height, block_hash, sim_sign(node, prepare_statement(view, height, block_hash))
    )


def _propose(engine: PbftEngine, payload: bytes, block_hash: bytes) -> list[Action]:
    identity = inspect_sim_block(payload)
    assert identity is not None
    return engine.propose(BlockProposal(identity.height, identity.parent_hash, block_hash, payload))


# --- the primary --------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_primary_offers_heights_on_its_own_blocks_up_to_the_depth(depth: int) -> None:
    primary = _engine("n0", depth)
    primary.start(0)
    parent = bytes(32)
    for height in range(1, depth + 1):
        status = primary.status
        assert (status.next_height, status.next_parent_hash) == (height, parent)
        payload, block_hash = _block(height, parent)
        assert _sent(_propose(primary, payload, block_hash), PrePrepare)
        parent = block_hash
    assert primary.status.next_height is None  # `depth` heights in flight: no more
    assert primary.status.proposals_in_flight == depth


def test_a_proposal_for_a_slot_not_offered_is_refused() -> None:
    primary = _engine("n0", 2)
    primary.start(0)
    payload, block_hash = _block(2, bytes(32))
    assert _propose(primary, payload, block_hash) == []


# --- a backup -------------------------------------------------------------------------------------


def test_a_backup_checks_a_pipelined_block_early_and_prepares_it_once_its_parent_is_prepared() -> (
    None
):
    validated: list[int] = []
    backup = _engine("n1", 2, validated)
    backup.start(0)
    (p1, h1), (p2, h2) = _chain(2)
    out = backup.receive("n0", PrePrepare(0, 1, h1, p1))
    assert [m.height for m in _sent(out, Prepare)] == [1]
    out = backup.receive("n0", PrePrepare(0, 2, h2, p2))
    assert 2 in validated  # its checks start while block 1 is still being agreed
    assert _sent(out, Prepare) == []  # but no prepare before block 1 is prepared here
    out = backup.receive("n0", _prepare("n0", 1, h1))
    assert _sent(out, Prepare) == []
    out = backup.receive("n2", _prepare("n2", 1, h1))  # 3 of 4: block 1 prepared here
    assert [m.height for m in _sent(out, CommitVote)] == [1]
    assert [(m.height, m.block_hash) for m in _sent(out, Prepare)] == [(2, h2)]


def test_a_pipelined_block_that_arrives_before_its_parent_waits_for_it() -> None:
    backup = _engine("n1", 2)
    backup.start(0)
    (p1, h1), (p2, h2) = _chain(2)
    assert _sent(backup.receive("n0", PrePrepare(0, 2, h2, p2)), Prepare) == []
    assert [m.height for m in _sent(backup.receive("n0", PrePrepare(0, 1, h1, p1)), Prepare)] == [1]
    backup.receive("n0", _prepare("n0", 1, h1))
    out = backup.receive("n2", _prepare("n2", 1, h1))
    assert [m.height for m in _sent(out, Prepare)] == [2]


def test_a_backup_never_prepares_a_block_on_another_parent_than_the_one_it_accepted() -> None:
    backup = _engine("n1", 2)
    backup.start(0)
    (p1, h1), _ = _chain(2)
    _, other_hash = _block(1, bytes(32), serial=9)
    p2, h2 = _block(2, other_hash)  # the primary's block 2 extends another block 1
    backup.receive("n0", PrePrepare(0, 1, h1, p1))
    backup.receive("n0", PrePrepare(0, 2, h2, p2))
    backup.receive("n0", _prepare("n0", 1, h1))
    out = backup.receive("n2", _prepare("n2", 1, h1))
    assert _sent(out, Prepare) == []
    assert backup._slots[2].pending is None and backup._slots[2].accepted is None


def test_a_backup_votes_no_further_than_the_depth_above_its_commit_height() -> None:
    validated: list[int] = []
    backup = _engine("n1", 2, validated)
    backup.start(0)
    chain = _chain(3)
    for height, (payload, block_hash) in enumerate(chain, start=1):
        backup.receive("n0", PrePrepare(0, height, block_hash, payload))
    for height in (1, 2):
        for node in ("n0", "n2"):
            backup.receive(node, _prepare(node, height, chain[height - 1][1]))
    assert 3 not in validated and backup._slots[3].accepted is None


# --- catch-up evidence ----------------------------------------------------------------------------


def test_votes_within_the_pipeline_are_no_evidence_that_the_cluster_is_ahead() -> None:
    """f + 1 replicas voting two heights above a replica's commit height is the pipeline at
    work, not a lag: such a replica used to think itself behind, and so never timed out a
    primary that had gone quiet."""
    backup = _engine("n1", 2)
    backup.start(0)
    _, (_, h2), (_, h3) = _chain(3)
    for node in ("n0", "n2"):
        backup.receive(node, _prepare(node, 2, h2))
    assert not backup.catching_up()
    for node in ("n0", "n2"):
        backup.receive(node, _prepare(node, 3, h3))  # three above: they committed height 1
    assert backup.catching_up()


# --- view changes ---------------------------------------------------------------------------------


def _prepared(height: int, payload: bytes, block_hash: bytes, view: int = 0) -> PreparedProof:
    statement = prepare_statement(view, height, block_hash)
    votes = tuple(Vote(n, sim_sign(n, statement)) for n in ("n0", "n1", "n2"))
    return PreparedProof(view, height, block_hash, payload, votes)


def test_a_view_change_carries_every_prepared_height_and_the_new_primary_builds_on_them() -> None:
    chain = _chain(3)
    backups = {n: _engine(n, 3) for n in ("n1", "n2", "n3")}
    for engine in backups.values():
        engine.start(0)
        for height, (payload, block_hash) in enumerate(chain, start=1):
            engine.receive("n0", PrePrepare(0, height, block_hash, payload))
            for node in ("n0", "n1", "n2", "n3"):
                if node != engine.node_id:
                    engine.receive(node, _prepare(node, height, block_hash))
        assert engine.commit_height == 0  # prepared, never committed (no commit votes)
    changes = []
    for engine in backups.values():
        out = engine.tick(CONFIG.view_change_timeout_ms)
        change = _sent(out, ViewChange)[0]  # (the tick may resend it too)
        assert [p.height for p in change.prepared] == [1, 2, 3]
        changes.append(change)
    new_primary = backups["n1"]
    out = []
    for change in changes[1:]:
        out += new_primary.receive(change.node, change)
    (new_view,) = _sent(out, NewView)
    reproposed = [(m.height, m.block_hash) for m in _sent(out, Prepare)]
    assert reproposed == [(h, chain[h - 1][1]) for h in (1, 2, 3)]
    status = new_primary.status
    assert status.round == 1 and status.role == "primary"
    assert (status.next_height, status.next_parent_hash) == (None, None)  # 3 in flight, depth 3
    backup = backups["n2"]
    out = backup.receive("n1", new_view)
    assert [m.height for m in _sent(out, Prepare)] == [1, 2, 3]


def test_new_view_re_proposals_stop_where_the_chain_breaks() -> None:
    (p1, h1), (p2, h2) = _chain(2)
    stray_payload, stray_hash = _block(3, hashlib.sha256(b"elsewhere").digest())
    changes = [
        ViewChange(1, GENESIS_CHECKPOINT, (_prepared(1, p1, h1), _prepared(2, p2, h2)), "n1", b""),
        ViewChange(1, GENESIS_CHECKPOINT, (_prepared(3, stray_payload, stray_hash),), "n2", b""),
    ]
    plan = select_new_view(changes, inspect_sim_block)
    assert [p.height for p in plan.reproposals] == [1, 2]


def test_the_first_re_proposal_must_extend_the_checkpoint_block() -> None:
    chain = _chain(5)
    statement = checkpoint_statement(4, chain[3][1])
    checkpoint = CheckpointProof(
        4, chain[3][1], tuple(Vote(n, sim_sign(n, statement)) for n in NODES[:3])
    )
    stray_payload, stray_hash = _block(5, hashlib.sha256(b"not block 4").digest())
    stale = ViewChange(1, checkpoint, (_prepared(5, stray_payload, stray_hash),), "n1", b"")
    assert select_new_view([stale], inspect_sim_block).reproposals == ()
    good = ViewChange(1, checkpoint, (_prepared(5, *chain[4]),), "n2", b"")
    assert [p.block_hash for p in select_new_view([good], inspect_sim_block).reproposals] == [
        chain[4][1]
    ]


# --- settings and restarts ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, -1, 17])
def test_a_pipeline_depth_outside_one_to_the_window_is_refused(depth: int) -> None:
    with pytest.raises(PbftConfigError, match="pipeline_depth_blocks"):
        replace(CONFIG, pipeline_depth_blocks=depth)


def test_the_default_depth_is_two_and_one_is_the_one_block_at_a_time_engine() -> None:
    assert PbftConfig().pipeline_depth_blocks == 2
    primary = _engine("n0", 1)
    primary.start(0)
    _propose(primary, *_chain(1)[0])
    assert primary.status.next_height is None


def test_a_replica_restarted_at_a_checkpoint_height_announces_that_checkpoint() -> None:
    chain = _chain(4)
    engine = _engine("n2", 2, commit_height=4, last_block_hash=chain[3][1])
    (checkpoint,) = _sent(engine.start(0), Checkpoint)
    assert (checkpoint.height, checkpoint.block_hash) == (4, chain[3][1])


def test_a_round_in_flight_is_resent_once_it_has_lasted_a_retransmit_interval() -> None:
    primary = _engine("n0", 2)
    primary.start(0)
    chain = _chain(2)
    _propose(primary, *chain[0])
    primary.tick(CONFIG.retransmit_interval_ms - 10)
    _propose(primary, *chain[1])

    def resent(now_ms: int) -> list[int]:
        return sorted(m.height for m in _sent(primary.tick(now_ms), PrePrepare))

    assert resent(CONFIG.retransmit_interval_ms) == [1]  # block 2's round has just begun
    assert resent(2 * CONFIG.retransmit_interval_ms) == [1, 2]


def test_a_restarted_replica_sends_its_prepare_and_commit_again() -> None:
    """Its records say what it voted; its signatures were in memory. Without them again, a
    height every replica prepared before restarting waited for a view change, and with blocks
    decided above it (the pipeline ran ahead) every replica thought itself behind and none
    called one."""
    backup = _engine("n1", 2)
    actions = backup.start(0)
    (p1, h1), _ = _chain(2)
    actions += backup.receive("n0", PrePrepare(0, 1, h1, p1))
    for node in ("n0", "n2"):
        actions += backup.receive(node, _prepare(node, 1, h1))
    assert [m.height for m in _sent(actions, CommitVote)] == [1]
    records: dict[str, bytes] = {}
    for action in actions:
        if isinstance(action, Persist):
            records.update({k: v for k, v in action.records if v is not None})
    restarted = _engine("n1", 2, restored=records)
    restarted.start(0)
    out = restarted.tick(CONFIG.retransmit_interval_ms)
    assert [(m.height, m.block_hash) for m in _sent(out, Prepare)] == [(1, h1)]
    assert [(m.height, m.block_hash) for m in _sent(out, CommitVote)] == [(1, h1)]
