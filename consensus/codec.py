"""Bytes <-> engine dataclasses: a msgpack codec over a registry of allowed, typed classes.

Peer messages arrive from the network and persisted records come back from disk; both are
untrusted bytes. Only registered frozen dataclasses can come out of `decode`, every field is
checked against its annotation, and any malformed, oversized or hostile input raises
`CodecError` and nothing else. Each engine registers its own classes (raft_messages.py,
pbft_messages.py) on the shared `MESSAGES` codec or on a codec of its own (e.g. for persisted
records).

Wire form: a registered value is the msgpack array `[tag, field_1, ..., field_n]` in field
order; tuples are arrays; nested registered dataclasses nest the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

T = TypeVar("T")

MESSAGE_BYTES_MAX = 64 * 1024 * 1024
NESTING_DEPTH_MAX = 32


class CodecError(Exception):
    """The bytes are not a well-formed value of an allowed class (or a value can't be encoded)."""


_Check = Callable[[Any, int], Any]  # (wire value, depth) -> python value, raises CodecError


class Codec:
    """A registry of allowed dataclasses with their string tags, and the encode/decode pair."""

    def __init__(self, name: str, message_bytes_max: int = MESSAGE_BYTES_MAX) -> None:
        assert message_bytes_max > 0
        self.name = name
        self.message_bytes_max = message_bytes_max
        self._by_tag: dict[str, type[Any]] = {}
        self._tag_by_class: dict[type[Any], str] = {}
        self._field_names: dict[type[Any], tuple[str, ...]] = {}
        self._decoders: dict[str, _Check] = {}

    def register(self, tag: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: allow `cls` on this codec under `tag` (unique per codec)."""

        def decorate(cls: type[T]) -> type[T]:
            self.register_class(tag, cls)
            return cls

        return decorate

    def register_class(self, tag: str, cls: type[Any]) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        if tag in self._by_tag or cls in self._tag_by_class:
            raise ValueError(f"{self.name}: tag {tag!r} or class {cls.__name__} already registered")
        self._by_tag[tag] = cls
        self._tag_by_class[cls] = tag
        self._field_names[cls] = tuple(f.name for f in dataclasses.fields(cls))
        # Resolved lazily: field types may name classes registered after this one.
        self._decoders[tag] = self._lazy_class_decoder(cls)

    # --- encode ------------------------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        try:
            raw: bytes = msgpack.packb(self._to_wire(value, 0), use_bin_type=True)
        except CodecError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"{self.name}: cannot encode {type(value).__name__}: {exc}") from exc
        if len(raw) > self.message_bytes_max:
            raise CodecError(f"{self.name}: encoded size {len(raw)} over {self.message_bytes_max}")
        return raw

    def _to_wire(self, value: Any, depth: int) -> Any:
        if depth > NESTING_DEPTH_MAX:
            raise CodecError(f"{self.name}: nesting deeper than {NESTING_DEPTH_MAX}")
        tag = self._tag_by_class.get(type(value))
        if tag is not None:
            names = self._field_names[type(value)]
            return [tag, *(self._to_wire(getattr(value, name), depth + 1) for name in names)]
        if isinstance(value, tuple | list):
            return [self._to_wire(item, depth + 1) for item in value]
        if value is None or isinstance(value, bool | int | str | bytes):
            return value
        raise CodecError(f"{self.name}: {type(value).__name__} is not an allowed type")

    # --- decode ------------------------------------------------------------------------------

    def decode(self, raw: bytes, expected: type[T] | None = None) -> T:
        """Decode `raw` into a registered class (an instance of `expected`, if given)."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise CodecError(f"{self.name}: input is {type(raw).__name__}, not bytes")
        if len(raw) > self.message_bytes_max:
            raise CodecError(f"{self.name}: {len(raw)} bytes over {self.message_bytes_max}")
        try:
            wire = msgpack.unpackb(bytes(raw), raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack raises many types for hostile input; all mean "bad"
            raise CodecError(f"{self.name}: not msgpack: {type(exc).__name__}") from exc
        value = self._decode_tagged(wire, 0)
        if expected is not None and not isinstance(value, expected):
            raise CodecError(f"{self.name}: got {type(value).__name__}, not {expected.__name__}")
        return typing.cast(T, value)

    def _decode_tagged(self, wire: Any, depth: int) -> Any:
        if not isinstance(wire, list) or not wire or not isinstance(wire[0], str):
            raise CodecError(f"{self.name}: expected a tagged array")
        decoder = self._decoders.get(wire[0])
        if decoder is None:
            raise CodecError(f"{self.name}: unknown tag {wire[0][:64]!r}")
        return decoder(wire, depth)

    def _lazy_class_decoder(self, cls: type[Any]) -> _Check:
        built: list[_Check] = []

        def decode(wire: Any, depth: int) -> Any:
            if not built:
                built.append(self._class_decoder(cls))
            return built[0](wire, depth)

        return decode

    def _class_decoder(self, cls: type[Any]) -> _Check:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        checks = [self._check_for(hints[name]) for name in names]
        count = len(names)

        def decode(wire: Any, depth: int) -> Any:
            if depth > NESTING_DEPTH_MAX:
                raise CodecError(f"{self.name}: nesting deeper than {NESTING_DEPTH_MAX}")
            if not isinstance(wire, list) or len(wire) != count + 1:
                raise CodecError(f"{self.name}: {cls.__name__} needs {count} fields")
            values = [check(item, depth + 1) for check, item in zip(checks, wire[1:], strict=True)]
            try:
                return cls(*values)
            except (TypeError, ValueError, AssertionError) as exc:  # __post_init__ validation
                raise CodecError(f"{self.name}: invalid {cls.__name__}: {exc}") from exc

        return decode

    def _check_for(self, hint: Any) -> _Check:
        """Build a checker for one annotation: scalars, X | None, tuple[...], registered classes."""
        origin = typing.get_origin(hint)
        if hint is type(None) or hint is None:
            return _scalar_check(type(None), "None")
        if hint is bool:
            return _scalar_check(bool, "bool")
        if hint is int:
            return _int_check
        if hint is str:
            return _scalar_check(str, "str")
        if hint is bytes:
            return _bytes_check
        if origin in (typing.Union, types.UnionType):
            return self._union_check([self._check_for(arm) for arm in typing.get_args(hint)])
        if origin is tuple:
            return self._tuple_check(typing.get_args(hint))
        if isinstance(hint, type) and hint in self._tag_by_class:
            return self._nested_check(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            # Registered later than its user: resolve at first use.
            return self._nested_check(hint)
        raise TypeError(f"{self.name}: unsupported field type {hint!r}")

    def _nested_check(self, cls: type[Any]) -> _Check:
        def check(wire: Any, depth: int) -> Any:
            value = self._decode_tagged(wire, depth)
            if not isinstance(value, cls):
                raise CodecError(f"{self.name}: expected {cls.__name__}")
            return value

        return check

    def _tuple_check(self, args: tuple[Any, ...]) -> _Check:
        if len(args) == 2 and args[1] is Ellipsis:
            item_check = self._check_for(args[0])

            def check_homogeneous(wire: Any, depth: int) -> Any:
                if not isinstance(wire, list):
                    raise CodecError(f"{self.name}: expected an array")
                return tuple(item_check(item, depth + 1) for item in wire)

            return check_homogeneous
        checks = [self._check_for(arg) for arg in args]

        def check_fixed(wire: Any, depth: int) -> Any:
            if not isinstance(wire, list) or len(wire) != len(checks):
                raise CodecError(f"{self.name}: expected an array of {len(checks)}")
            return tuple(c(item, depth + 1) for c, item in zip(checks, wire, strict=True))

        return check_fixed

    def _union_check(self, arms: list[_Check]) -> _Check:
        def check(wire: Any, depth: int) -> Any:
            for arm in arms:
                try:
                    return arm(wire, depth)
                except CodecError:
                    continue
            raise CodecError(f"{self.name}: value matches no alternative")

        return check


def _scalar_check(kind: type[Any], label: str) -> _Check:
    def check(wire: Any, depth: int) -> Any:
        if type(wire) is not kind:
            raise CodecError(f"expected {label}, got {type(wire).__name__}")
        return wire

    return check


def _int_check(wire: Any, depth: int) -> Any:
    if type(wire) is not int:  # bool is not an int here
        raise CodecError(f"expected int, got {type(wire).__name__}")
    return wire


def _bytes_check(wire: Any, depth: int) -> Any:
    if type(wire) is not bytes:
        raise CodecError(f"expected bytes, got {type(wire).__name__}")
    return wire


MESSAGES = Codec("messages")
"""The shared codec for peer messages of every engine (Raft, PBFT); tags must be unique."""


def encode_message(msg: Any) -> bytes:
    return MESSAGES.encode(msg)


def decode_message(raw: bytes) -> Any:
    return MESSAGES.decode(raw)
