"""The validator set as the node reads it from state (node/validator_set.py), the epoch
wiring that carries a change to the engine, the peer links and the role switch (node/epochs.py,
the driver's Reconfigure), the observer's certificate check (consensus_setup.certificate_check)
and the forwarding trust boundary (a tx forwarded by a non-voter has its signature re-checked).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from consensus.codec import MESSAGES
from consensus.pbft_messages import CommitCertificate, Vote, commit_statement
from node.client.identity import Account
from node.consensus_setup import certificate_check
from node.driver import Driver
from node.epochs import Epochs
from node.genesis import Genesis, parse_genesis
from node.inbox import Inbox
from node.notifier import Notifier
from node.transport import PeerTransportGrpc
from node.validator_set import (
    VALIDATORS_KEY,
    ValidatorSetError,
    ValidatorSets,
    parse_validator_set,
    read_validator_set,
)

KEYS = {f"node{i}": Account.generate() for i in range(1, 6)}


def _genesis(consensus: str = "pbft", nodes: int = 4) -> Genesis:
    doc = {
        "chain_id": "c",
        "genesis_time_ms": 1,
        "consensus": {"engine": consensus},
        "validators": [
            {"id": f"node{i}", "public_key": KEYS[f"node{i}"].public_key.hex(),
             "peer_addr": f"127.0.0.1:{7000 + i}"}
            for i in range(1, nodes + 1)
        ],
        "members": [{"name": "admin", "account": "ab" * 32, "roles": ["admin"]}],
    }
    return parse_genesis(json.dumps(doc).encode())


def _entry(node_id: str) -> dict[str, str]:
    return {"node_id": node_id, "public_key": KEYS[node_id].public_key.hex(),
            "tls_cert_pem": "PEM", "peer_addr": f"10.0.0.{node_id[-1]}:7000"}


def _raw(epoch: int, effective: int, ids: list[str], previous: list[str]) -> bytes:
    return json.dumps({
        "epoch": epoch, "effective_height": effective,
        "validators": [_entry(n) for n in ids], "previous": [_entry(n) for n in previous],
    }, sort_keys=True).encode()


class State:
    """Committed state as the node reads it: one key."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.values.get(key)


FOUR = ["node1", "node2", "node3", "node4"]
FIVE = [*FOUR, "node5"]


# --- reading the set ---------------------------------------------------------------------------


def test_without_governance_state_the_genesis_validators_are_the_set_at_epoch_0() -> None:
    state = read_validator_set(State().get, _genesis())
    assert state.epoch == 0 and state.effective_height == 0
    assert state.ids == tuple(FOUR) and state.ids_at(1) == tuple(FOUR)


def test_the_stored_set_applies_from_its_effective_height_and_the_previous_one_before() -> None:
    state = parse_validator_set(_raw(1, 14, FIVE, FOUR))
    assert state.epoch == 1
    assert state.ids_at(13) == tuple(FOUR)
    assert state.ids_at(14) == tuple(FIVE)
    assert state.validators[4].peer_addr == "10.0.0.5:7000"
    assert state.validators[4].public_key == KEYS["node5"].public_key
    assert [v.node_id for v in state.known()] == FIVE


@pytest.mark.parametrize("raw", [
    b"not json",
    b"[]",
    json.dumps({"epoch": "1", "effective_height": 0, "validators": []}).encode(),
    json.dumps({"epoch": 1, "effective_height": 0, "validators": []}).encode(),
    json.dumps({"epoch": 1, "effective_height": 0,
                "validators": [{"node_id": "node1"}]}).encode(),
    json.dumps({"epoch": 1, "effective_height": 0,
                "validators": [_entry("node1"), _entry("node1")]}).encode(),
    json.dumps({"epoch": 1, "effective_height": 0,
                "validators": [{**_entry("node1"), "public_key": "zz"}]}).encode(),
])
def test_a_malformed_stored_set_is_refused(raw: bytes) -> None:
    with pytest.raises(ValidatorSetError):
        parse_validator_set(raw)


def test_observe_reports_a_new_epoch_once_and_keys_of_removed_validators_stay_known() -> None:
    store = State()
    sets = ValidatorSets(_genesis(), store.get)
    assert sets.observe() is None  # nothing stored yet
    store.values[VALIDATORS_KEY] = _raw(1, 10, FIVE, FOUR)
    changed = sets.observe()
    assert changed is not None and changed.epoch == 1
    assert sets.observe() is None  # the same epoch again
    assert sets.public_key("node5") == KEYS["node5"].public_key
    store.values[VALIDATORS_KEY] = _raw(2, 20, ["node2", "node3", "node4", "node5"], FIVE)
    assert sets.observe() is not None
    # node1 is out, but a certificate it signed for an old height can still be checked.
    assert sets.public_key("node1") == KEYS["node1"].public_key
    assert not sets.is_voter("node1", 20) and sets.is_voter("node1", 19)


def test_voters_are_both_sides_of_a_pending_change_until_it_takes_effect() -> None:
    store = State()
    store.values[VALIDATORS_KEY] = _raw(1, 10, ["node2", "node3", "node4", "node5"], FOUR)
    sets = ValidatorSets(_genesis(), store.get)
    assert sets.voters_around(5) == frozenset(FIVE)
    assert sets.voters_around(9) == frozenset(["node2", "node3", "node4", "node5"])


def test_a_signature_is_checked_with_the_key_the_state_names() -> None:
    store = State()
    store.values[VALIDATORS_KEY] = _raw(1, 10, FIVE, FOUR)
    sets = ValidatorSets(_genesis(), store.get)
    good = KEYS["node5"].sign(b"statement")
    assert sets.verify("node5", b"statement", good)
    assert not sets.verify("node4", b"statement", good)
    assert not sets.verify("stranger", b"statement", good)


# --- epochs: what listeners hear ---------------------------------------------------------------


def test_listeners_hear_each_new_epoch_after_its_block_and_when_it_takes_effect() -> None:
    store = State()
    sets = ValidatorSets(_genesis(), store.get)
    epochs = Epochs("node5", sets, head_height=5)
    heard: list[tuple[int, int, bool]] = []
    epochs.add_listener(lambda state, height, new: heard.append((state.epoch, height, new)))
    epochs.announce()
    assert heard == [(0, 5, True)] and not epochs.is_voter_next()

    store.values[VALIDATORS_KEY] = _raw(1, 10, FIVE, FOUR)
    epochs.block_stored(6)  # the store thread: the set is read at once ...
    assert sets.ids_at(10) == tuple(FIVE)
    assert heard == [(0, 5, True)]  # ... listeners hear of it on the loop
    epochs.block_committed(6)
    assert heard[-1] == (1, 6, True) and not epochs.is_voter_next()
    for height in (7, 8):
        epochs.block_stored(height)
        epochs.block_committed(height)
    assert len(heard) == 2
    epochs.block_stored(9)
    epochs.block_committed(9)  # the next block is the first the new set votes on
    assert heard[-1] == (1, 9, False) and epochs.is_voter_next()
    assert epochs.voters() == frozenset(FIVE)


def test_a_catch_up_run_crossing_a_change_tells_listeners_in_order() -> None:
    store = State()
    sets = ValidatorSets(_genesis(), store.get)
    epochs = Epochs("node1", sets, head_height=0)
    heard: list[tuple[int, int, bool]] = []
    epochs.add_listener(lambda state, height, new: heard.append((state.epoch, height, new)))
    for height in range(1, 9):
        if height == 3:
            store.values[VALIDATORS_KEY] = _raw(1, 7, FIVE, FOUR)
        epochs.block_stored(height)
    epochs.block_committed(8)  # one run of eight fetched blocks, announced after it
    assert heard == [(1, 8, True), (1, 8, False)]


# --- the driver hands a change to the engine ---------------------------------------------------


class _Engine:
    def __init__(self) -> None:
        self.calls: list[tuple[int, tuple[str, ...]]] = []

    def reconfigure(self, effective_height: int, validators: tuple[str, ...]) -> list[Any]:
        self.calls.append((effective_height, validators))
        return []


async def test_the_engine_loop_calls_reconfigure_between_batches() -> None:
    engine = _Engine()
    inbox = Inbox(10)
    unused: Any = None
    driver = Driver(engine, inbox, unused, unused, unused, None, None, Notifier(), unused)
    inbox.reconfigure(14, tuple(FIVE))
    assert driver._reconfigure(next(iter(await inbox.next_batch()))) == []  # type: ignore[arg-type]
    assert engine.calls == [(14, tuple(FIVE))]


def test_a_set_the_engine_refuses_stops_the_node_with_a_clear_error() -> None:
    from consensus.solo import SoloEngine
    from node.effects import FatalError
    from node.inbox import Reconfigure

    unused: Any = None
    solo = SoloEngine("node1", 0, bytes(32))
    driver = Driver(solo, Inbox(10), unused, unused, unused, None, None, Notifier(),
                    unused)
    with pytest.raises(FatalError, match="from height 14 to node1,node2"):
        driver._reconfigure(Reconfigure(14, ("node1", "node2")))


# --- an observer's certificate check -----------------------------------------------------------


def _certificate(height: int, block_hash: bytes, signers: list[str], view: int = 0) -> bytes:
    statement = commit_statement(view, height, block_hash)
    votes = tuple(Vote(n, KEYS[n].sign(statement)) for n in sorted(signers))
    return MESSAGES.encode(CommitCertificate(view, height, block_hash, votes))


def test_a_commit_certificate_needs_2f_plus_1_of_the_set_in_effect_at_its_height() -> None:
    store = State()
    store.values[VALIDATORS_KEY] = _raw(1, 10, FIVE, FOUR)
    check = certificate_check(_genesis(), ValidatorSets(_genesis(), store.get))
    assert check is not None
    block = b"\x07" * 32
    # n = 4 below height 10: f = 1, three signatures of the old set
    assert check(9, block, _certificate(9, block, ["node1", "node2", "node3"]))
    assert not check(9, block, _certificate(9, block, ["node1", "node2"]))
    assert not check(9, block, _certificate(9, block, ["node1", "node2", "node5"]))
    # n = 5 from height 10: f = 1, still three, and node5 counts
    assert check(10, block, _certificate(10, block, ["node2", "node3", "node5"]))
    # a certificate for another block or height, or a forged vote, is refused
    assert not check(10, b"\x08" * 32, _certificate(10, block, ["node2", "node3", "node5"]))
    assert not check(11, block, _certificate(10, block, ["node2", "node3", "node5"]))
    forged = CommitCertificate(0, 10, block, (
        Vote("node2", KEYS["node2"].sign(commit_statement(0, 10, block))),
        Vote("node3", KEYS["node3"].sign(commit_statement(0, 10, block))),
        Vote("node5", KEYS["node4"].sign(commit_statement(0, 10, block))),
    ))
    assert not check(10, block, MESSAGES.encode(forged))
    assert not check(10, block, b"garbage")


def test_crash_fault_engines_have_no_certificates_to_check() -> None:
    assert certificate_check(_genesis("raft", 3), ValidatorSets(_genesis("raft", 3),
                                                                 State().get)) is None


# --- the forwarding trust boundary -------------------------------------------------------------


class _Admission:
    def __init__(self) -> None:
        self.checked: list[bool] = []

    async def admit(self, txs: list[Any], *, signatures_checked: bool = False) -> list[bytes]:
        self.checked.append(signatures_checked)
        return [b"id"] * len(txs)


class _Roster:
    def voters(self) -> frozenset[str]:
        return frozenset(FOUR)

    def public_key(self, node_id: str) -> bytes | None:
        return None


def _transport(sign_messages: bool) -> tuple[PeerTransportGrpc, _Admission]:
    transport = PeerTransportGrpc.__new__(PeerTransportGrpc)
    admission = _Admission()
    transport.node_id = "node1"
    transport.sign_messages = sign_messages
    transport.is_leader = lambda: True
    transport.admission = admission  # type: ignore[assignment]
    transport.roster = _Roster()
    return transport, admission


def test_raft_trusts_a_forwarding_validator_but_rechecks_what_an_observer_forwards() -> None:
    transport, admission = _transport(sign_messages=False)
    asyncio.run(transport.admit_forwarded([object()], "node2"))  # type: ignore[list-item]
    asyncio.run(transport.admit_forwarded([object()], "node5"))  # type: ignore[list-item]
    assert admission.checked == [True, False]


def test_pbft_rechecks_every_forwarded_tx() -> None:
    transport, admission = _transport(sign_messages=True)
    asyncio.run(transport.admit_forwarded([object()], "node2"))  # type: ignore[list-item]
    assert admission.checked == [False]


def test_only_voters_are_peers_whose_messages_reach_the_engine() -> None:
    transport, _ = _transport(sign_messages=True)
    assert transport.is_peer("node2")
    assert not transport.is_peer("node5")  # an observer
    assert not transport.is_peer("node1")  # itself
