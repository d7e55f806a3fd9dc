"""Canonical values of contract state, args, results and events: JSON with sorted keys, no
whitespace, integers only (no floats ever), and the failure type of every contract call.

`encode` is exactly `json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=True)`; `decode` is `json.loads`; `parse_args` reads a tx's args within bounds.
The runtime (contracts/runtime.py) re-exports all of these.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

# Limits on what a tx may carry into a contract.
ARGS_BYTES_MAX = 16_384
ARGS_DEPTH_MAX = 8

JsonValue = Any  # canonical JSON values: dict[str, ...], list, str, int, bool, None


class ContractError(Exception):
    """A failed contract call: a stable machine code and a message a person can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message




def _reject_float(text: str) -> Any:
    raise ContractError("INVALID_ARGS", f"floats are not allowed: {text}")


def _reject_constant(text: str) -> Any:
    raise ContractError("INVALID_ARGS", f"{text} is not allowed")


def _depth(value: JsonValue, limit: int) -> int:
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


# Built once: `json.loads(text, parse_float=..., parse_constant=...)` builds a decoder per call.
_ARGS_DECODER = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant)


def parse_args(raw: bytes) -> dict[str, JsonValue]:
    """Parse tx args: a UTF-8 JSON object of bounded size and depth, with no floats."""
    if len(raw) > ARGS_BYTES_MAX:
        raise ContractError("INVALID_ARGS", f"args are {len(raw)} bytes; at most {ARGS_BYTES_MAX}")
    if not raw:
        return {}
    # Refuse deep nesting before json recurses into it.
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > 4 * ARGS_DEPTH_MAX and _bracket_depth(raw) > ARGS_DEPTH_MAX:
        raise ContractError("INVALID_ARGS", f"args nest deeper than {ARGS_DEPTH_MAX}")
    text = ""
    try:
        text = raw.decode("utf-8")
        value = _ARGS_DECODER.decode(text)  # what json.loads does with those hooks
    except ContractError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ContractError("INVALID_ARGS", json_problem("args", text, exc)) from None
    if not isinstance(value, dict):
        raise ContractError("INVALID_ARGS", "args must be a JSON object")
    # Each container needs an opening bracket, and _depth counts one more level for the values
    # inside the deepest: with few brackets the depth cannot exceed the limit.
    if brackets + 1 > ARGS_DEPTH_MAX and _depth(value, ARGS_DEPTH_MAX) > ARGS_DEPTH_MAX:
        raise ContractError("INVALID_ARGS", f"args nest deeper than {ARGS_DEPTH_MAX}")
    return value


def json_problem(subject: str, text: str, exc: ValueError | RecursionError) -> str:
    """What is wrong with `text` (the decoded `subject`), in our words rather than the json
    module's (which speak of Python: "Expecting value: line 1 column 1 (char 0)",
    "use sys.set_int_max_str_digits()"). Deterministic: it goes into receipts."""
    if isinstance(exc, UnicodeDecodeError):
        return f"{subject} are not UTF-8: byte {exc.start + 1} is not part of a valid character"
    if isinstance(exc, RecursionError):
        return f"{subject} nest too deeply"
    if not isinstance(exc, json.JSONDecodeError):  # int() refusing a huge number
        return f"{subject} hold an integer with too many digits"
    if text.startswith("\ufeff"):
        return f"{subject} start with a byte order mark; send UTF-8 JSON without one"
    at = f"at character {exc.pos + 1}"
    if exc.pos >= len(text.rstrip()):
        problem = "the text ends before the JSON value is complete"
    elif exc.msg == "Extra data":
        problem = f"more text after the JSON value, {at}"
    elif exc.msg.startswith("Unterminated string"):
        problem = f"the string that starts {at} is never closed"
    elif exc.msg.startswith("Invalid control character"):
        problem = f"a control character inside a string, {at}; escape it"
    elif exc.msg.startswith("Invalid \\"):
        problem = f"a bad backslash escape in a string, {at}"
    elif exc.msg.startswith("Expecting property name"):
        problem = f"an object key that is not a double-quoted string, {at}"
    else:
        problem = f"unexpected {text[exc.pos]!r} {at}"
    return f"{subject} are not valid JSON: {problem}"


def _bracket_depth(raw: bytes) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


_DEFAULT = json.JSONEncoder().default  # raises TypeError for what JSON cannot hold
_SCAN_ONCE = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# One C encoder for every call (sort_keys, compact, ASCII). It is built without a markers
# dict: contract values come from JSON and cannot be cyclic, and a shared markers dict could
# keep a stale entry after a failed call.
_ENCODER = (
    c_make_encoder(None, _DEFAULT, encode_basestring_ascii, None, ":", ",", True, False, True)
    if c_make_encoder is not None
    else None
)


def encode(value: JsonValue) -> bytes:
    """Canonical bytes of a JSON value (sorted keys, compact, ASCII-safe).

    Exactly `json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`,
    without building a `JSONEncoder` and its closures on every call (this runs several times per
    tx): the same C encoder json.dumps ends up in, called directly.

    A float anywhere in value is refused (AssertionError).
    """
    return encode_text(value).encode()


def encode_text(value: JsonValue) -> str:
    """`encode(value).decode()` without the round trip through bytes (receipts carry results
    and event attributes as text)."""
    kind = type(value)
    if kind is int:  # balances, amounts: what json.dumps writes for an int
        return str(value)
    _assert_no_float(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if _ENCODER is None:  # pragma: no cover - CPython always has the C accelerator
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "".join(_ENCODER(value, 0))


def decode(raw: bytes) -> JsonValue:
    """`json.loads(raw)`; canonical bytes (what encode wrote) take a direct path to the scanner.

    Anything the direct path does not consume exactly (a BOM, whitespace, another encoding, bad
    input) goes through json.loads itself, so results and errors are json.loads's.
    """
    try:
        text = raw.decode()
        value, end = _SCAN_ONCE(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration, RecursionError):
        pass
    return json.loads(raw)


_PLAIN = frozenset((str, int, bool, type(None)))


def _assert_no_float(value: JsonValue) -> None:
    # Same walk as with isinstance() everywhere, with exact-type fast paths for common values.
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind is dict:
            for child in item.values():
                if type(child) not in _PLAIN:
                    push(child)
        elif kind is list or kind is tuple:
            for child in item:
                if type(child) not in _PLAIN:
                    push(child)
        elif isinstance(item, float):
            raise AssertionError("floats must never reach contract state")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
