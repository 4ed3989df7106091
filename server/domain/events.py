"""Event types: declared once (name, schema version, typed fields), encoded with msgpack.

An event type is an ``Event`` subclass decorated with ``@registry.event("Name", version=N)``. The
registry encodes payloads to msgpack maps of field name to value and decodes them back,
checking every field against its annotation: an unknown type or a malformed payload raises
``EventSchemaError``, never a silent default. Old payloads are upcast on read by functions
registered with ``@registry.upcaster("Name", from_version=N)``, so replay works across releases.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import msgpack


class EventSchemaError(ValueError):
    """A payload that cannot be read as the event type it claims to be."""


class UnknownEventType(EventSchemaError):
    """An event type name that no module declared."""


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
class Event:
    """Base of every event payload class; ``TYPE`` and ``VERSION`` are set by the registry,
    which also makes each subclass a frozen, keyword-only, slotted dataclass (type checkers
    know that through ``dataclass_transform``)."""

    __slots__ = ()
    TYPE: ClassVar[str]
    VERSION: ClassVar[int]


E = TypeVar("E", bound=type[Event])
Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]
Checker = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class EventType:
    """What the registry knows of one declared type."""

    name: str
    version: int
    cls: type[Event]
    fields: tuple[tuple[str, Checker, bool], ...]  # (name, checker, required)
    names: frozenset[str] = frozenset()  # every field's name: a payload holding exactly these
    # takes the fast path of ``decode``
    secret: frozenset[str] = frozenset()  # fields never shown by tools that print events
    #: ``decode_map``'s fast path: the event of a current-version payload holding exactly the
    #: declared fields, each passing its check, else None (one generated function per type).
    fast: Callable[[Payload], Event | None] = lambda data: None


class EventRegistry:
    """Declared event types, their encoders and their upcasters."""

    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}
        self._by_class: dict[type[Event], EventType] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def event(
        self, name: str, version: int = 1, *, secret: tuple[str, ...] = ()
    ) -> Callable[[E], E]:
        """Class decorator: make ``cls`` a frozen, slotted dataclass and register it as ``name``.

        ``secret`` names fields that tools printing events (``shutterlog events``) mask, such
        as password hashes and sealed secrets.
        """

        def register(cls: E) -> E:
            if name in self._types:
                raise ValueError(f"event type {name!r} declared twice")
            if version < 1:
                raise ValueError(f"event type {name!r}: version must be >= 1")
            if not issubclass(cls, Event):
                raise TypeError(f"event type {name!r}: {cls.__name__} must subclass Event")
            dc: Any = dataclass(frozen=True, slots=True, kw_only=True)(cls)
            dc.TYPE = name
            dc.VERSION = version
            hints = typing.get_type_hints(dc)
            fields = tuple(
                (
                    f.name,
                    _checker(hints[f.name], f"{name}.{f.name}"),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(dc)
            )
            names = frozenset(f[0] for f in fields)
            if not set(secret) <= names:
                raise ValueError(f"event type {name!r}: no fields {sorted(set(secret) - names)}")
            entry = EventType(name, version, dc, fields, names, frozenset(secret),
                              _fast_path(dc, hints, fields, names))
            self._types[name] = entry
            self._by_class[dc] = entry
            return dc

        return register

    def redacted(self, event: Event) -> dict[str, Any]:
        """The event's fields as a dict for display, secret fields replaced by ``"***"`` and
        bytes by a length note."""
        entry = self._by_class.get(type(event))
        if entry is None:
            raise UnknownEventType(f"{type(event).__name__} is not a registered event type")
        out: dict[str, Any] = {}
        for field, _check, _required in entry.fields:
            value = getattr(event, field)
            if field in entry.secret:
                value = "***"
            elif isinstance(value, bytes):
                value = f"<{len(value)} bytes>"
            out[field] = value
        return out

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register ``fn(payload) -> payload`` lifting ``name`` from a version by one."""

        def register(fn: Upcaster) -> Upcaster:
            key = (name, from_version)
            if key in self._upcasters:
                raise ValueError(f"upcaster for {name} v{from_version} declared twice")
            self._upcasters[key] = fn
            return fn

        return register

    def names(self) -> list[str]:
        """Every declared type name, sorted."""
        return sorted(self._types)

    def get(self, name: str) -> EventType:
        """The declaration of ``name``; UnknownEventType if none."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventType(f"unknown event type {name!r}") from None

    def encode(self, event: Event) -> tuple[str, int, bytes]:
        """(type name, schema version, msgpack payload) of an event; checks every field."""
        entry = self._by_class.get(type(event))
        if entry is None:
            raise UnknownEventType(f"{type(event).__name__} is not a registered event type")
        payload = {}
        for field, check, _required in entry.fields:
            value = getattr(event, field)
            if not check(value):
                raise EventSchemaError(f"{entry.name}.{field}: bad value {value!r}")
            payload[field] = value
        return entry.name, entry.version, msgpack.packb(payload, use_bin_type=True)

    def decode(self, name: str, version: int, payload: bytes) -> Event:
        """The event a stored (type, version, payload) holds, upcast to the current version.

        The hot path of every log reader: a current-version payload holding exactly the
        declared fields is checked field by field and built directly (msgpack gives arrays as
        tuples already); anything else goes through ``from_payload``, which says what is wrong.
        """
        self.get(name)  # an unknown type fails before the payload is looked at
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=False)
        except Exception as e:  # msgpack raises several unrelated types for bad input
            raise EventSchemaError(f"{name} v{version}: payload is not msgpack: {e}") from None
        return self.decode_map(name, version, data)

    def decode_map(self, name: str, version: int, data: Any) -> Event:
        """``decode`` of a payload already unpacked (a reader unpacking a page of payloads
        in one go)."""
        entry = self.get(name)
        if not isinstance(data, dict):
            raise EventSchemaError(f"{name} v{version}: payload is not a map")
        if version == entry.version:
            event = entry.fast(data)
            if event is not None:
                return event
        return self.from_payload(name, version, data)

    def from_payload(self, name: str, version: int, data: Mapping[str, Any]) -> Event:
        """Build the current-version event from a decoded payload map, upcasting as needed."""
        entry = self.get(name)
        if version > entry.version:
            raise EventSchemaError(
                f"{name} v{version} is newer than this release knows (v{entry.version})"
            )
        payload = dict(data)
        while version < entry.version:
            upcast = self._upcasters.get((name, version))
            if upcast is None:
                raise EventSchemaError(f"{name}: no upcaster from v{version}")
            payload = upcast(payload)
            version += 1
        kwargs = {}
        for field, check, required in entry.fields:
            if field not in payload:
                if required:
                    raise EventSchemaError(f"{name} v{version}: missing field {field!r}")
                continue
            value = _freeze(payload.pop(field))
            if not check(value):
                raise EventSchemaError(f"{name} v{version}: bad value for {field!r}: {value!r}")
            kwargs[field] = value
        if payload:
            raise EventSchemaError(f"{name} v{version}: unknown fields {sorted(payload)}")
        return entry.cls(**kwargs)


def _freeze(value: Any) -> Any:
    """msgpack returns arrays as lists; event fields hold tuples, so convert them, nested too."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def _fast_path(cls: type[Event], hints: dict[str, Any],
               fields: tuple[tuple[str, Checker, bool], ...],
               names: frozenset[str]) -> Callable[[Payload], Event | None]:
    """``EventType.fast`` for ``cls``: one generated function testing the key set and every
    field inline (the same tests as ``_checker``'s predicates, without a call per field),
    a third of the cost of calling the predicates on the hot path of every log reader."""
    env: dict[str, Any] = {"cls": cls, "names": names}
    tests = ["data.keys() == names"]
    for i, (field, check, _required) in enumerate(fields):
        env[f"check{i}"] = check
        tests.append(_inline(hints[field], f"data[{field!r}]") or f"check{i}(data[{field!r}])")
    build = frozen_builder(cls)
    env["build"] = build
    args = ", ".join(f"data[{field!r}]" for field, _check, _required in fields)
    source = ("def fast(data):\n"
              f"    if {' and '.join(tests)}:\n"
              f"        return build({args})\n"
              "    return None\n")
    exec(source, env)  # noqa: S102 - generated from the declared annotations only
    fast: Callable[[Payload], Event | None] = env["fast"]
    return fast


T = TypeVar("T")


def frozen_builder(cls: type[T]) -> Callable[..., T]:
    """A constructor of the frozen, slotted dataclass ``cls`` taking every field
    positionally, in declaration order, and setting the slots directly: half the cost of
    the dataclass ``__init__`` (one ``object.__setattr__`` per field). For readers building
    many instances of values already checked; a class with ``__post_init__`` gets its own
    constructor."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        return cls
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def build({', '.join(names)}):", "    o = new(cls)"]
    for i, name in enumerate(names):
        env[f"set{i}"] = getattr(cls, name).__set__
        lines.append(f"    set{i}(o, {name})")
    lines.append("    return o")
    exec("\n".join(lines) + "\n", env)  # noqa: S102 - generated from the field names only
    build: Callable[..., T] = env["build"]
    return build


#: Annotations whose test ``_inline`` writes out: the exact type the value must have.
_EXACT = {int: "int", str: "str", bytes: "bytes"}


def _inline(hint: Any, value: str) -> str | None:
    """The expression ``_checker(hint)`` evaluates, over the expression ``value``, or None
    when the predicate must be called."""
    if hint in _EXACT:
        return f"type({value}) is {_EXACT[hint]}"
    if hint is bool:
        return f"({value} is True or {value} is False)"
    if hint is float:
        return f"(type({value}) is float or type({value}) is int)"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if len(args) == 2 and type(None) in args:
            other = _inline(next(a for a in args if a is not type(None)), value)
            return f"({value} is None or {other})" if other else None
        return None
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _EXACT:
            return (f"(isinstance({value}, tuple) and "
                    f"set(map(type, {value})) <= {{{_EXACT[args[0]]}}})")
    if typing.get_origin(hint) is dict:
        key, item = typing.get_args(hint) or (None, None)
        if key is str and item in _EXACT:
            return (f"(isinstance({value}, dict) and set(map(type, {value})) <= {{str}} and "
                    f"set(map(type, {value}.values())) <= {{{_EXACT[item]}}})")
    return None


def _checker(hint: Any, where: str) -> Checker:
    """A predicate for values of the annotation ``hint`` (the types msgpack round-trips)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return lambda v: True
    if hint is type(None):
        return lambda v: v is None
    if hint is bool:
        return lambda v: v is True or v is False
    if hint is int:
        return lambda v: type(v) is int
    if hint is float:
        return lambda v: type(v) in (float, int)
    if hint in (str, bytes):
        return lambda v: type(v) is hint
    if origin in (typing.Union, types.UnionType):
        checks = tuple(_checker(a, where) for a in args)
        return lambda v: any(c(v) for c in checks)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _checker(args[0], where)
        return lambda v: isinstance(v, tuple) and all(item(x) for x in v)
    if origin is dict and args and args[0] is str:
        val = _checker(args[1], where)
        return lambda v: isinstance(v, dict) and all(
            type(k) is str and val(x) for k, x in v.items()
        )
    if hint is datetime:
        raise TypeError(f"{where}: store times as int milliseconds, not datetime")
    raise TypeError(f"{where}: unsupported field type {hint!r}")


#: The registry every feature module declares its event types in.
EVENTS = EventRegistry()
