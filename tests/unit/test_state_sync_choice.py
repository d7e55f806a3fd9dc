"""Which snapshot a joining node restores, and whom it names as disagreeing
(node/state_sync.py `choose_snapshot`): pure, so every arrangement of offers is tested here."""

from __future__ import annotations

from collections import defaultdict

from node.snapshots import Snapshot
from node.state_sync import choose_snapshot, signers_needed
from proto import peer_pb2


def _offers(table: dict[str, list[tuple[int, bytes]]]):  # type: ignore[no-untyped-def]
    """{peer: [(height, app_hash)]} -> the (by_digest, signers) that StateSync builds."""
    by_digest: dict[bytes, Snapshot] = {}
    signers: dict[bytes, set[str]] = defaultdict(set)
    for peer, offered in table.items():
        for height, app_hash in offered:
            manifest = peer_pb2.SnapshotManifest(height=height, app_hash=app_hash)
            snapshot = Snapshot(manifest, manifest.SerializeToString(), peer, b"sig")
            by_digest.setdefault(snapshot.digest, snapshot)
            signers[snapshot.digest].add(peer)
    return by_digest, signers


def _pbft4(_height: int) -> int:
    return signers_needed("pbft", 4)


GOOD, BAD = b"\x01" * 32, b"\x02" * 32


def test_the_newest_height_enough_validators_sign_is_chosen() -> None:
    by_digest, signers = _offers({p: [(40, GOOD), (60, GOOD)] for p in ("n1", "n3", "n4")})
    choice = choose_snapshot(by_digest, signers, lowest=10, needed_at=_pbft4)
    assert choice.snapshot is not None and choice.snapshot.height == 60
    assert choice.signers == ("n1", "n3", "n4") and choice.dissents == ()


def test_a_liar_is_named_even_when_it_does_not_offer_the_chosen_height() -> None:
    # The liar has not written its snapshot at 60 yet; it disagrees at 40 only.
    table = {p: [(40, GOOD), (60, GOOD)] for p in ("n1", "n3", "n4")}
    table["n2"] = [(40, BAD)]
    by_digest, signers = _offers(table)
    choice = choose_snapshot(by_digest, signers, lowest=10, needed_at=_pbft4)
    assert choice.snapshot is not None and choice.snapshot.height == 60
    assert "n2" not in choice.signers
    [dissent] = choice.dissents
    assert (dissent.height, dissent.theirs, dissent.their_app_hash) == (40, ("n2",), BAD)
    assert dissent.majority == ("n1", "n3", "n4") and dissent.majority_app_hash == GOOD


def test_a_tie_or_too_few_signers_passes_to_a_lower_height() -> None:
    table = {"n1": [(40, GOOD), (60, GOOD)], "n2": [(40, GOOD), (60, BAD)],
             "n3": [(40, GOOD)]}
    by_digest, signers = _offers(table)
    choice = choose_snapshot(by_digest, signers, lowest=10, needed_at=_pbft4)
    assert choice.snapshot is not None and choice.snapshot.height == 40
    assert choice.short == ((60, 1, 2),)
    [dissent] = choice.dissents  # a tie: whichever sorts second is named, against the other
    assert dissent.height == 60 and {*dissent.theirs, *dissent.majority} == {"n1", "n2"}

def test_nothing_is_chosen_below_the_lowest_useful_height() -> None:
    by_digest, signers = _offers({p: [(40, GOOD)] for p in ("n1", "n2", "n3")})
    choice = choose_snapshot(by_digest, signers, lowest=41, needed_at=_pbft4)
    assert choice.snapshot is None and choice.signers == () and choice.short == ()
