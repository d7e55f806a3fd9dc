"""The engine's fast canonical codec gives exactly what the plain json calls give.

`encode`, `decode` and `parse_args` skip work json.dumps / json.loads repeat on every call (for
speed, bench/RESULTS.md); these properties compare them with the plain calls they replace, on
generated values and on hostile bytes, including the errors and their messages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.canonical import (
    ARGS_BYTES_MAX,
    ARGS_DEPTH_MAX,
    ContractError,
    _bracket_depth,
    _depth,
    _reject_constant,
    _reject_float,
    decode,
    encode,
    encode_text,
    json_problem,
    parse_args,
)

scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.text(max_size=12)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20,
)


def reference_encode(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def reference_parse_args(raw: bytes) -> dict[str, Any]:
    """parse_args as it was before the fast path (the specification)."""
    if len(raw) > ARGS_BYTES_MAX:
        raise ContractError("INVALID_ARGS", f"args are {len(raw)} bytes; at most {ARGS_BYTES_MAX}")
    if not raw:
        return {}
    if raw.count(b"[") + raw.count(b"{") > 4 * ARGS_DEPTH_MAX and _bracket_depth(raw) > (
        ARGS_DEPTH_MAX
    ):
        raise ContractError("INVALID_ARGS", f"args nest deeper than {ARGS_DEPTH_MAX}")
    text = ""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_float=_reject_float, parse_constant=_reject_constant)
    except ContractError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContractError("INVALID_ARGS", json_problem("args", text, exc)) from None
    if not isinstance(value, dict):
        raise ContractError("INVALID_ARGS", "args must be a JSON object")
    if _depth(value, ARGS_DEPTH_MAX) > ARGS_DEPTH_MAX:
        raise ContractError("INVALID_ARGS", f"args nest deeper than {ARGS_DEPTH_MAX}")
    return value


def outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(arg)
    except ContractError as exc:
        return "contract", (exc.code, exc.message)
    except Exception as exc:
        return "error", (type(exc).__name__, str(exc))


@settings(max_examples=300, deadline=None)
@given(values)
def test_encode_equals_json_dumps_and_decode_round_trips(value: Any) -> None:
    raw = encode(value)
    assert raw == reference_encode(value)
    assert decode(raw) == json.loads(raw) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | values.map(lambda v: json.dumps(v).encode()))
def test_decode_gives_json_loads_results_and_errors(raw: bytes) -> None:
    mine, theirs = outcome(decode, raw), outcome(json.loads, raw)
    assert mine[0] == theirs[0]
    if mine[0] == "ok":
        assert mine[1] == theirs[1]
    else:
        assert mine[1][0] == theirs[1][0]


HOSTILE = [
    b"", b"{}", b" {}", b"{} ", b"\xef\xbb\xbf{}", b'{"a":1.5}', b'{"a":NaN}', b'{"a":1e3}',
    b"[1]", b"{\"a\":" * 9 + b"1" + b"}" * 9, b"{\"a\":" * 7 + b"1" + b"}" * 7,
    b'{"a":[[[[[[[1]]]]]]]}', b'{"a":[[[[[[1]]]]]]}', b'{"a":"[[[[[[[[[["}', b"\xff",
    b'{"a":1}x', '{"a":"\u00e9"}'.encode(), b'{"a":1,"a":2}', b"null", b'"x"',
    b"[" * 40 + b"]" * 40, b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_parse_args_matches_the_plain_parser_on_hostile_input(raw: bytes) -> None:
    assert outcome(parse_args, raw) == outcome(reference_parse_args, raw)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), values, max_size=4).map(
    lambda d: json.dumps(d).encode()) | st.binary(max_size=30))
def test_parse_args_matches_the_plain_parser(raw: bytes) -> None:
    assert outcome(parse_args, raw) == outcome(reference_parse_args, raw)


floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e16, 1e-05, 0.0, -0.0, 1.0, 123456789.0, 1e300])
with_a_float = st.recursive(
    floats,
    lambda inner: st.tuples(inner, st.lists(values, max_size=3), st.integers(0, 3)).map(
        lambda t: [*t[1][: t[2]], t[0], *t[1][t[2] :]])  # a float-holding item among others
    | st.dictionaries(st.text(max_size=3), inner, min_size=1),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(with_a_float)
def test_encode_refuses_a_float_wherever_it_hides(value: Any) -> None:
    """Floats of every form (exponents, infinities, NaN, -0.0) deep in lists and dicts: encode
    refuses them all."""
    with pytest.raises(AssertionError, match="floats"):
        encode(value)


def test_encode_still_refuses_floats_anywhere() -> None:
    for value in (1.5, [1, [2.0]], {"a": {"b": (1, 0.1)}}):
        with pytest.raises(AssertionError, match="floats"):
            encode(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode({"a": {1, 2}})


@settings(max_examples=300, deadline=None)
@given(values)
def test_encode_text_is_encode_as_text(value: Any) -> None:
    assert encode_text(value) == encode(value).decode()


def test_encode_text_refuses_floats_like_encode() -> None:
    for value in (1.5, [1, [2.0]], {"a": {"b": (1, 0.1)}}):
        with pytest.raises(AssertionError, match="floats"):
            encode_text(value)
