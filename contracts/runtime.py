"""The contract runtime: registry, call context, state view and argument readers.

Contracts are deterministic functions of (state, tx, block time). This module gives them the
only doors they may use: a `StateView` with sorted iteration, a `Context` carrying the sender and
the block's height and time, `ContractError` for failures, and `Runtime.call` for one contract to
call another (never by reaching into another contract's keys). Canonical values and
`ContractError` live in contracts/canonical.py and are re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from contracts import binary_records
from contracts.canonical import ARGS_BYTES_MAX as ARGS_BYTES_MAX
from contracts.canonical import ARGS_DEPTH_MAX as ARGS_DEPTH_MAX
from contracts.canonical import ContractError as ContractError
from contracts.canonical import JsonValue as JsonValue
from contracts.canonical import decode as decode
from contracts.canonical import encode as encode
from contracts.canonical import encode_text as encode_text
from contracts.canonical import json_problem as json_problem
from contracts.canonical import parse_args as parse_args
from contracts.ids import derive_id

if TYPE_CHECKING:  # visibility imports this module; the runtime needs its Reader lazily
    from contracts.visibility import Reader

# Limits on what a tx may carry into a contract (args' size and depth: contracts/canonical.py).
STRING_CHARS_MAX = 256
AMOUNT_MAX = 10**15  # minor units; one quadrillion cents is far beyond any trade
RATE_BPS_MAX = 100_000
TIME_MS_MAX = 10**14  # ~ year 5138; rejects absurd maturities
CALL_DEPTH_MAX = 4

_HEX_ONLY = re.compile("[0-9a-f]*").fullmatch  # lower-case hex digits and nothing else


class StateView(Protocol):
    """Reads and writes of contract state; iteration is always in sorted key order."""

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def iter_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...


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
        if _HEX_ONLY(value) is None:
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


def decode_state(raw: bytes) -> JsonValue:
    """A stored value: canonical JSON, or a record in binary (a chain of state format 2,
    contracts/binary_records.py), told apart by the first byte."""
    return binary_records.unpack(raw) if raw[:1] in _BINARY else decode(raw)


_BINARY = frozenset(bytes((tag,)) for tag in binary_records.TAGS)


# ---------------------------------------------------------------------------------------------
# Events, context and the registry.


class Event(NamedTuple):
    """What a call emitted (immutable; a tuple: every tx builds one or more)."""

    contract: str
    name: str
    attrs: Mapping[str, JsonValue]

    def attrs_json(self) -> str:
        attrs = self.attrs  # `emit` gives a dict of its own: no copy to encode
        return encode_text(attrs if type(attrs) is dict else dict(attrs))


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
        return None if raw is None else decode_state(raw)

    def put(self, key: str, value: JsonValue) -> None:
        self.state.set(f"{self.contract}/{key}", encode(value))

    def put_encoded(self, key: str, raw: bytes) -> None:
        """`put(key, value)` for a caller that holds the value's bytes already: `encode(value)`
        (from a record encoder specialized for one shape, tested against `encode`) or a binary
        record that `decode_state` reads back as `value`."""
        self.state.set(f"{self.contract}/{key}", raw)

    def delete(self, key: str) -> None:
        self.state.delete(self._key(key))

    def scan(self, prefix: str, limit: int | None = None) -> Iterator[tuple[str, JsonValue]]:
        """This contract's keys under prefix, in sorted order (key returned without namespace)."""
        full = self._key(prefix)
        cut = len(self.contract) + 1
        for count, (key, raw) in enumerate(self.state.iter_prefix(full)):
            if limit is not None and count >= limit:
                return
            yield key[cut:], decode_state(raw)

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
        return None if raw is None else decode_state(raw)

    def scan(self, prefix: str, limit: int | None = None) -> Iterator[tuple[str, JsonValue]]:
        cut = len(self.contract) + 1
        for count, (key, raw) in enumerate(self.state.iter_prefix(f"{self.contract}/{prefix}")):
            if limit is not None and count >= limit:
                return
            yield key[cut:], decode_state(raw)

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
