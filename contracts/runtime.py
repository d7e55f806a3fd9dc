"""The contract runtime: registry, call context, state view, errors and canonical values.

Contracts are deterministic functions of (state, tx, block time). This module gives them the
only doors they may use: a `StateView` with sorted iteration, a `Context` carrying the sender and
the block's height and time, `ContractError` for failures, and `Runtime.call` for one contract to
call another (never by reaching into another contract's keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, Protocol

from contracts.ids import derive_id

if TYPE_CHECKING:  # visibility imports this module; the runtime needs its Reader lazily
    from contracts.visibility import Reader

# Limits on what a tx may carry into a contract.
ARGS_BYTES_MAX = 16_384
ARGS_DEPTH_MAX = 8
STRING_CHARS_MAX = 256
AMOUNT_MAX = 10**15  # minor units; one quadrillion cents is far beyond any trade
RATE_BPS_MAX = 100_000
TIME_MS_MAX = 10**14  # ~ year 5138; rejects absurd maturities
CALL_DEPTH_MAX = 4

_HEX_DIGITS = frozenset("0123456789abcdef")

JsonValue = Any  # canonical JSON values: dict[str, ...], list, str, int, bool, None


class ContractError(Exception):
    """A failed contract call: a stable machine code and a message a person can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StateView(Protocol):
    """Reads and writes of contract state; iteration is always in sorted key order."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...


# ---------------------------------------------------------------------------------------------
# Canonical encoding: sorted keys, no whitespace, integers only.


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
    """
    kind = type(value)
    if kind is int:  # balances, amounts: what json.dumps writes for an int
        return str(value).encode()
    _assert_no_float(value)
    if kind is str:
        return encode_basestring_ascii(value).encode()
    if _ENCODER is None:  # pragma: no cover - CPython always has the C accelerator
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode()
    return "".join(_ENCODER(value, 0)).encode()


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


# ---------------------------------------------------------------------------------------------
# Argument readers: every contract validates through these, so codes are uniform.


class Args:
    """Typed access to a call's JSON arguments; every failure is INVALID_ARGS."""

    def __init__(self, values: Mapping[str, JsonValue]) -> None:
        self._values = values

    def raw(self) -> Mapping[str, JsonValue]:
        return self._values

    def _get(self, name: str, required: bool) -> JsonValue:
        if name not in self._values:
            if required:
                raise ContractError("INVALID_ARGS", f"missing argument {name!r}")
            return None
        value = self._values[name]
        if value is None and required:
            # An explicit null for a required argument is a bad argument, not a missing default.
            raise ContractError("INVALID_ARGS", f"argument {name!r} must not be null")
        return value

    def integer(
        self, name: str, *, minimum: int = 1, maximum: int = AMOUNT_MAX, default: int | None = None
    ) -> int:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ContractError("INVALID_ARGS", f"{name} must be an integer, got {value!r}")
        if value < minimum or value > maximum:
            raise ContractError(
                "INVALID_ARGS", f"{name} must be between {minimum} and {maximum}, got {value}"
            )
        return value

    def amount(self, name: str = "amount") -> int:
        return self.integer(name, minimum=1, maximum=AMOUNT_MAX)

    def text(
        self,
        name: str,
        *,
        default: str | None = None,
        chars_max: int = STRING_CHARS_MAX,
        ascii_only: bool = False,
    ) -> str:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str) or not value:
            raise ContractError("INVALID_ARGS", f"{name} must be a non-empty string")
        if len(value) > chars_max:
            raise ContractError("INVALID_ARGS", f"{name} is longer than {chars_max} characters")
        if ascii_only and not (value.isascii() and value.isprintable()):
            raise ContractError("INVALID_ARGS", f"{name} must be printable ASCII")
        return value

    def hex_id(self, name: str, *, length: int = 64) -> str:
        """An id in lower-case hex of a fixed length (account ids, voucher ids, hashes)."""
        value = self._get(name, True)
        if not isinstance(value, str) or len(value) != length:
            raise ContractError("INVALID_ARGS", f"{name} must be {length} lower-case hex chars")
        if not _HEX_DIGITS.issuperset(value):
            raise ContractError("INVALID_ARGS", f"{name} must be {length} lower-case hex chars")
        return value

    def account(self, name: str) -> str:
        return self.hex_id(name, length=64)

    def hex_list(self, name: str, *, items_max: int = 16, unique: bool = True) -> list[str]:
        value = self._get(name, True)
        if not isinstance(value, list) or not value or len(value) > items_max:
            raise ContractError("INVALID_ARGS", f"{name} must be a list of 1..{items_max} items")
        out = [Args({"item": item}).hex_id("item") for item in value]
        if unique and len(set(out)) != len(out):
            raise ContractError("INVALID_ARGS", f"{name} has repeated items")
        return out

    def int_list(self, name: str, *, items_max: int = 16) -> list[int]:
        value = self._get(name, True)
        if not isinstance(value, list) or not value or len(value) > items_max:
            raise ContractError("INVALID_ARGS", f"{name} must be a list of 1..{items_max} items")
        return [Args({name: item}).amount(name) for item in value]

    def choice(self, name: str, options: tuple[str, ...], *, default: str | None = None) -> str:
        value = self.text(name, default=default)
        if value not in options:
            raise ContractError("INVALID_ARGS", f"{name} must be one of {', '.join(options)}")
        return value

    def flag(self, name: str, *, default: bool | None = None) -> bool:
        value = self._get(name, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, bool):
            raise ContractError("INVALID_ARGS", f"{name} must be true or false")
        return value


# ---------------------------------------------------------------------------------------------
# Events, context and the registry.


@dataclass(frozen=True, slots=True)
class Event:
    contract: str
    name: str
    attrs: Mapping[str, JsonValue]

    def attrs_json(self) -> str:
        return encode(dict(self.attrs)).decode()


@dataclass(slots=True)
class Context:
    """One call's world: who calls, in which block, over which state."""

    runtime: Runtime
    state: StateView
    sender: str  # account id (hex of the Ed25519 public key)
    tx_id: str  # hex; ids of things a tx creates derive from it
    height: int
    time_ms: int
    events: list[Event] = field(default_factory=list)
    contract: str = ""
    depth: int = 0
    origin: str = ""  # the tx sender, unchanged through nested calls

    def emit(self, event: str, /, **attrs: JsonValue) -> None:
        self.events.append(Event(self.contract, event, attrs))

    def get(self, key: str) -> JsonValue:
        raw = self.state.get(f"{self.contract}/{key}")
        return None if raw is None else decode(raw)

    def put(self, key: str, value: JsonValue) -> None:
        self.state.set(f"{self.contract}/{key}", encode(value))

    def delete(self, key: str) -> None:
        self.state.delete(self._key(key))

    def scan(self, prefix: str, limit: int | None = None) -> Iterator[tuple[str, JsonValue]]:
        """This contract's keys under prefix, in sorted order (key returned without namespace)."""
        full = self._key(prefix)
        cut = len(self.contract) + 1
        for count, (key, raw) in enumerate(self.state.iter_prefix(full)):
            if limit is not None and count >= limit:
                return
            yield key[cut:], decode(raw)

    def derive_id(self, *parts: str | int) -> str:
        """A deterministic id from the tx id and extra parts (e.g. child index)."""
        return derive_id(self.tx_id, *parts)

    def call(self, contract: str, method: str, args: Mapping[str, JsonValue]) -> JsonValue:
        """Call another contract's internal method as this contract (sender = 'contract:NAME')."""
        if self.depth + 1 > CALL_DEPTH_MAX:
            raise ContractError("CALL_TOO_DEEP", f"nested calls deeper than {CALL_DEPTH_MAX}")
        return self.runtime.call_internal(self, contract, method, args)

    def _key(self, key: str) -> str:
        return f"{self.contract}/{key}"


Handler = Callable[[Context, Args], JsonValue]
ViewHandler = Callable[["ReadContext", Args], JsonValue]
Hook = Callable[[Context], None]


@dataclass(slots=True)
class ReadContext:
    """A read-only view for queries: reads this contract's keys or calls other views, for one
    reader (contracts/visibility.py says what it may see)."""

    runtime: Runtime
    state: StateView
    contract: str
    height: int
    reader: Reader

    def get(self, key: str) -> JsonValue:
        raw = self.state.get(f"{self.contract}/{key}")
        return None if raw is None else decode(raw)

    def scan(self, prefix: str, limit: int | None = None) -> Iterator[tuple[str, JsonValue]]:
        cut = len(self.contract) + 1
        for count, (key, raw) in enumerate(self.state.iter_prefix(f"{self.contract}/{prefix}")):
            if limit is not None and count >= limit:
                return
            yield key[cut:], decode(raw)

    def view(self, contract: str, view: str, args: Mapping[str, JsonValue]) -> JsonValue:
        return self.runtime.query(self.state, contract, view, args, self.height, self.reader)


@dataclass(slots=True)
class Contract:
    """A contract family: public tx methods, internal methods, read-only views, block-end hooks.

    `internal` methods may only be reached through `Context.call` from another contract; the
    callee sees `ctx.sender == "contract:<caller>"`.
    """

    name: str
    methods: dict[str, Handler] = field(default_factory=dict)
    internal: dict[str, Handler] = field(default_factory=dict)
    views: dict[str, ViewHandler] = field(default_factory=dict)
    end_block: list[Hook] = field(default_factory=list)

    def method(self, fn: Handler) -> Handler:
        self.methods[fn.__name__] = fn
        return fn

    def internal_method(self, fn: Handler) -> Handler:
        self.internal[fn.__name__] = fn
        return fn

    def view(self, fn: ViewHandler) -> ViewHandler:
        self.views[fn.__name__] = fn
        return fn

    def hook(self, fn: Hook) -> Hook:
        self.end_block.append(fn)
        return fn


MEMBER_SUMMARIES_MAX = 4_096


@dataclass(frozen=True, slots=True)
class MemberSummary:
    suspended: bool
    name: Any
    roles: tuple[str, ...]


class Runtime:
    """The registry of contracts and the dispatcher of calls, views and block-end hooks."""

    def __init__(self, contracts: list[Contract]) -> None:
        self._members: dict[bytes, MemberSummary] = {}  # by the stored record's bytes
        self.contracts: dict[str, Contract] = {}
        for contract in contracts:
            assert contract.name not in self.contracts, contract.name
            self.contracts[contract.name] = contract

    def _contract(self, name: str) -> Contract:
        contract = self.contracts.get(name)
        if contract is None:
            raise ContractError("UNKNOWN_CONTRACT", f"no contract named {name!r}")
        return contract

    def execute(
        self,
        state: StateView,
        *,
        sender: str,
        tx_id: str,
        height: int,
        time_ms: int,
        contract: str,
        method: str,
        args_raw: bytes,
    ) -> tuple[JsonValue, list[Event]]:
        """Run one tx's call. Raises ContractError; the caller discards the tx's writes then."""
        target = self._contract(contract)
        handler = target.methods.get(method)
        if handler is None:
            raise ContractError("UNKNOWN_METHOD", f"{contract} has no method {method!r}")
        args = Args(parse_args(args_raw))
        ctx = Context(
            runtime=self,
            state=state,
            sender=sender,
            tx_id=tx_id,
            height=height,
            time_ms=time_ms,
            contract=contract,
            origin=sender,
        )
        # Membership and suspension are checked for every call, in one place.
        if contract != "consortium" or method not in ("bootstrap",):
            self.require_active_member(ctx, sender)
        result = handler(ctx, args)
        return result, ctx.events

    def require_active_member(self, ctx: Context, account: str) -> None:
        member = self.member_summary(ctx.state, account)
        if member is None:
            raise ContractError("UNKNOWN_MEMBER", f"account {account[:16]}… is not a member")
        if member.suspended:
            raise ContractError("MEMBER_SUSPENDED", f"member {member.name} is suspended")

    def member_summary(self, state: StateView, account: str) -> MemberSummary | None:
        """What every call checks about a member, decoded once per distinct stored record
        (every tx reads its sender's record, and most read another member's)."""
        raw = state.get(member_key(account))
        if raw is None:
            return None
        cache = self._members
        summary = cache.get(raw)
        if summary is None:
            member: Any = decode(raw)
            summary = MemberSummary(
                bool(member.get("suspended")),
                member.get("name"),
                tuple(member.get("roles", ())),
            )
            if len(cache) >= MEMBER_SUMMARIES_MAX:
                cache.clear()
            cache[raw] = summary
        return summary

    def call_internal(
        self, caller: Context, contract: str, method: str, args: Mapping[str, JsonValue]
    ) -> JsonValue:
        target = self._contract(contract)
        handler = target.internal.get(method)
        if handler is None:
            raise ContractError("UNKNOWN_METHOD", f"{contract} has no internal method {method!r}")
        ctx = Context(
            runtime=self,
            state=caller.state,
            sender=f"contract:{caller.contract}",
            tx_id=caller.tx_id,
            height=caller.height,
            time_ms=caller.time_ms,
            events=caller.events,
            contract=contract,
            depth=caller.depth + 1,
            origin=caller.origin,
        )
        return handler(ctx, Args(args))

    def query(
        self,
        state: StateView,
        contract: str,
        view: str,
        args: Mapping[str, JsonValue],
        height: int,
        reader: Reader | None = None,
    ) -> JsonValue:
        """Run a view for reader (None: `Reader.internal()`, which sees everything)."""
        target = self._contract(contract)
        handler = target.views.get(view)
        if handler is None:
            raise ContractError("UNKNOWN_VIEW", f"{contract} has no view {view!r}")
        if reader is None:
            from contracts.visibility import Reader

            reader = Reader.internal()
        return handler(ReadContext(self, state, contract, height, reader), Args(args))

    def hooks(self) -> list[tuple[str, Hook]]:
        """Every block-end hook with its contract's name, in a fixed order (contract name)."""
        return [
            (name, hook)
            for name in sorted(self.contracts)
            for hook in self.contracts[name].end_block
        ]

    def run_hook(
        self, state: StateView, contract: str, hook: Hook, *, tx_id: str, height: int, time_ms: int
    ) -> list[Event]:
        """Run one block-end hook over `state`; the caller gives each hook its own savepoint."""
        ctx = Context(
            runtime=self,
            state=state,
            sender=f"block:{height}",
            tx_id=tx_id,
            height=height,
            time_ms=time_ms,
            contract=contract,
            origin=f"block:{height}",
        )
        hook(ctx)
        return ctx.events

    def end_block(
        self, state: StateView, *, tx_id: str, height: int, time_ms: int
    ) -> list[Event]:
        """Run every block-end hook in order over one state (tools and tests; the executor
        runs `hooks()` one by one with a savepoint each)."""
        events: list[Event] = []
        for name, hook in self.hooks():
            events += self.run_hook(
                state, name, hook, tx_id=tx_id, height=height, time_ms=time_ms
            )
        return events


# ---------------------------------------------------------------------------------------------
def member_key(account: str) -> str:
    """The full state key of a member's record (the consortium contract's `m/<account>`); the
    node reads it to refuse txs from non-members before they reach a block."""
    return f"consortium/m/{account}"


# Roles: the consortium contract stores them; every contract asks through these two functions.

ROLES = (
    "admin",
    "core_enterprise",
    "supplier",
    "dealer",
    "financier",
    "warehouse",
    "exchange",
    "auditor",
)


def roles_of(ctx: Context | ReadContext, account: str) -> tuple[str, ...]:
    """The roles of an active member, () for a stranger or a suspended member."""
    member = ctx.runtime.member_summary(ctx.state, account)
    if member is None or member.suspended:
        return ()
    return member.roles


def require_role(ctx: Context, account: str, *roles: str) -> None:
    """Refuse unless account is an active member holding one of roles."""
    held = roles_of(ctx, account)
    if not any(role in held for role in roles):
        who = "the caller" if account == ctx.sender else f"account {account[:16]}…"
        raise ContractError(
            "NOT_AUTHORIZED", f"{who} needs role {' or '.join(roles)} (has {list(held) or 'none'})"
        )


def require_party_role(ctx: Context, account: str, *roles: str) -> None:
    """Refuse unless account is a registered member holding one of roles, suspended or not.

    For a party of a deal already made, who is only paid or served by this step: suspension
    stops a member's own txs, not what it owes or is owed (DOMAIN.md).
    """
    member = ctx.runtime.member_summary(ctx.state, account)
    held = () if member is None else member.roles
    if not any(role in held for role in roles):
        raise ContractError(
            "NOT_AUTHORIZED",
            f"account {account[:16]}… needs role {' or '.join(roles)} "
            f"(has {list(held) or 'none'})",
        )
