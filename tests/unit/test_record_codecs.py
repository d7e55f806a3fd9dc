"""Record encoders specialized for one shape give exactly `encode`'s bytes, or defer to it.

`voucher_bytes` writes a voucher record with a format string instead of the generic encoder
(for speed: bench/hotpath.py); these properties compare it with `encode` on records of the
usual shape and on records that differ from it in any way (extra or missing fields, other
types, floats, text that needs escaping).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.canonical import encode
from contracts.voucher_state import STATES, voucher_bytes

hex_ids = st.text("0123456789abcdef", min_size=64, max_size=64)
texts = st.text(max_size=8)  # any text, escapes and non-ASCII included
ints = st.integers(-(10**20), 10**20)
odd = st.none() | st.booleans() | ints | texts | st.floats() | st.lists(ints, max_size=2) | (
    st.dictionaries(texts, ints, max_size=2))


def _voucher(draw: Any) -> dict[str, Any]:
    return {
        "id": draw(hex_ids),
        "root": draw(hex_ids),
        "parent": draw(st.none() | hex_ids | texts),
        "seq": draw(ints),
        "tier": draw(ints),
        "core": draw(hex_ids | texts),
        "holder": draw(hex_ids | texts),
        "amount": draw(ints),
        "maturity_ms": draw(ints),
        "state": draw(st.sampled_from(STATES) | texts),
        "created_ms": draw(ints),
        "children": draw(st.lists(hex_ids | texts, max_size=3)),
        "discount": draw(st.none() | st.fixed_dictionaries(
            {"financier": hex_ids, "rate_bps": ints, "applied_ms": ints})),
    }


vouchers = st.composite(lambda draw: _voucher(draw))()


@st.composite
def odd_vouchers(draw: Any) -> dict[str, Any]:
    record = _voucher(draw)
    field = draw(st.sampled_from(sorted(record)))
    change = draw(st.sampled_from(("replace", "drop", "add")))
    if change == "replace":
        record[field] = draw(odd)
    elif change == "drop":
        del record[field]
    else:
        record[draw(texts)] = draw(odd)
    return record


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except Exception as exc:  # the same failure (a float, an unencodable value) either way
        return "error", type(exc).__name__


@settings(max_examples=500, deadline=None)
@given(vouchers)
def test_voucher_bytes_is_encode_for_records_of_the_usual_shape(record: dict[str, Any]) -> None:
    assert voucher_bytes(record) == encode(record)


@settings(max_examples=500, deadline=None)
@given(odd_vouchers())
def test_voucher_bytes_is_encode_for_any_other_record(record: dict[str, Any]) -> None:
    assert outcome(voucher_bytes, record) == outcome(encode, record)


def test_voucher_bytes_refuses_floats_like_encode() -> None:
    record = {"id": "a", "root": "a", "parent": None, "seq": 0, "tier": 1, "core": "c",
              "holder": "h", "amount": 1.5, "maturity_ms": 1, "state": "ACTIVE",
              "created_ms": 0, "children": [], "discount": None}
    with pytest.raises(AssertionError, match="floats"):
        voucher_bytes(record)
    with pytest.raises(AssertionError, match="floats"):
        voucher_bytes({**record, "amount": 1, "discount": {"rate_bps": 0.5}})
