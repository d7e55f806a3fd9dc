"""The message codec: registered dataclasses round-trip; anything else raises `CodecError`.

Round trips cover every Raft message; hostile input is random bytes, random msgpack values,
byte-flipped valid encodings and hand-made type confusions (hypothesis drives the random ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import Codec, CodecError, decode_message, encode_message
from consensus.raft_log import RECORDS, HardState, SnapshotMarker
from consensus.raft_messages import (
    AppendEntries,
    AppendResponse,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    RequestVote,
    VoteResponse,
)

BLOCK = Entry(term=3, index=7, height=5, block_hash=b"\x01" * 32, payload=b"block bytes")
NOOP = Entry(term=4, index=8, height=5, block_hash=b"\x01" * 32, payload=None)

RAFT_MESSAGES = [
    AppendEntries(term=4, prev_index=6, prev_term=3, entries=(BLOCK, NOOP), leader_commit=6),
    AppendEntries(term=4, prev_index=0, prev_term=0, entries=(), leader_commit=0),
    AppendResponse(term=4, success=False, index=6, hint_index=2),
    Heartbeat(term=4, commit=6),
    HeartbeatResponse(term=4),
    RequestVote(term=5, last_index=8, last_term=4, pre_vote=True),
    VoteResponse(term=5, granted=True, pre_vote=False),
    InstallSnapshot(term=4, index=100, snapshot_term=3, height=90, block_hash=b"\x02" * 32),
]


@pytest.mark.parametrize("msg", RAFT_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_raft_message_round_trips_unchanged(msg: object) -> None:
    """encode then decode gives an equal value of the same class."""
    decoded = decode_message(encode_message(msg))
    assert decoded == msg
    assert type(decoded) is type(msg)


def test_persisted_records_round_trip_on_their_own_codec_only() -> None:
    """Hard state and snapshot markers decode from the record codec, not from the wire."""
    for record in (
        HardState(term=3, voted_for="n1"),
        HardState(term=0, voted_for=None),
        SnapshotMarker(index=9, term=2, height=7, block_hash=b"h"),
    ):
        raw = RECORDS.encode(record)
        assert RECORDS.decode(raw) == record
        with pytest.raises(CodecError):
            decode_message(raw)


def test_decode_checks_the_expected_class() -> None:
    """`expected` rejects a valid value of another registered class."""
    raw = RECORDS.encode(HardState(term=1, voted_for=None))
    with pytest.raises(CodecError):
        RECORDS.decode(raw, SnapshotMarker)


@pytest.mark.parametrize(
    "wire",
    [
        ["raft.Heartbeat", True, 1],  # bool where int is declared
        ["raft.Heartbeat", 1],  # missing field
        ["raft.Heartbeat", 1, 2, 3],  # extra field
        ["raft.Heartbeat", "1", 2],  # str for int
        ["raft.Nope", 1, 2],  # unknown tag
        [1, 2, 3],  # untagged
        [],
        {"term": 1},
        ["raft.HeartbeatResponse", 2**64 - 1 + 0],  # fits msgpack, fine as int
        ["raft.AppendEntries", 1, 0, 0, [["raft.Heartbeat", 1, 1]], 0],  # wrong nested class
        ["raft.AppendEntries", 1, 0, 0, "not a list", 0],
        ["raft.Entry", 1, 1, 1, "str not bytes", None],
        ["raft.VoteResponse", 1, 1, 0],  # ints for bools
    ],
)
def test_type_confusions_raise_codec_error(wire: object) -> None:
    """A payload of the wrong shape or type is refused with CodecError (or decodes only when
    it genuinely matches the declared types)."""
    raw = msgpack.packb(wire, use_bin_type=True)
    try:
        value = decode_message(raw)
    except CodecError:
        return
    assert isinstance(value, HeartbeatResponse)  # the one well-typed entry above


def test_non_bytes_oversized_and_trailing_garbage_are_refused() -> None:
    """Input must be bytes, within the size bound, and exactly one msgpack value."""
    small = Codec("small", message_bytes_max=16)
    small.register_class("hb", Heartbeat)
    with pytest.raises(CodecError):
        small.decode(b"\x00" * 17)
    with pytest.raises(CodecError):
        decode_message("text")  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        decode_message(encode_message(Heartbeat(1, 1)) + b"\x00")


def test_encoding_an_unregistered_or_unencodable_value_raises_codec_error() -> None:
    """Only registered classes and plain scalars/tuples inside them can be encoded."""

    @dataclass(frozen=True, slots=True)
    class Stranger:
        term: int

    with pytest.raises(CodecError):
        encode_message(Stranger(1))
    with pytest.raises(CodecError):
        encode_message(Heartbeat(term=2**70, commit=0))
    with pytest.raises(CodecError):
        encode_message(Heartbeat(term=1.5, commit=0))  # type: ignore[arg-type]


def test_a_tag_or_class_can_be_registered_only_once_per_codec() -> None:
    """Duplicate registrations fail loudly at import time rather than shadowing a class."""
    codec = Codec("dup")
    codec.register_class("hb", Heartbeat)
    with pytest.raises(ValueError):
        codec.register_class("hb", HeartbeatResponse)
    with pytest.raises(ValueError):
        codec.register_class("other", Heartbeat)
    with pytest.raises(TypeError):
        codec.register_class("x", int)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_codec_error(raw: bytes) -> None:
    """Arbitrary bytes never escape as anything but CodecError (or a valid message)."""
    try:
        decode_message(raw)
    except CodecError:
        pass


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.sampled_from(["raft.Entry", "raft.AppendEntries", "raft.Heartbeat", "raft.VoteResponse"]),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(_msgpack_values)
def test_random_msgpack_structures_raise_only_codec_error(wire: object) -> None:
    """Well-formed msgpack of the wrong shape, including known tags, is refused cleanly."""
    try:
        decode_message(msgpack.packb(wire, use_bin_type=True))
    except CodecError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_byte_flipped_valid_messages_decode_or_raise_codec_error(data: st.DataObject) -> None:
    """Corrupting a valid encoding yields CodecError or some well-typed message, nothing else."""
    raw = bytearray(encode_message(data.draw(st.sampled_from(RAFT_MESSAGES))))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        value = decode_message(bytes(raw))
    except CodecError:
        return
    assert type(value) in {type(m) for m in RAFT_MESSAGES}
