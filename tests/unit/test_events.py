"""Event types: declaration, msgpack encoding, validation and upcasting."""

import msgpack
import pytest

from server.domain.events import (
    Event,
    EventRegistry,
    EventSchemaError,
    UnknownEventType,
    frozen_builder,
)

REG = EventRegistry()


@REG.event("Liked", version=3)
class Liked(Event):
    media_id: int
    user_id: int
    source: str = "app"
    tags: tuple[str, ...] = ()
    extra: dict[str, int] | None = None


@REG.upcaster("Liked", from_version=1)
def _v1(payload: dict) -> dict:
    payload["user_id"] = payload.pop("liker")
    return payload


@REG.upcaster("Liked", from_version=2)
def _v2(payload: dict) -> dict:
    payload.setdefault("source", "legacy")
    return payload


def test_round_trip_keeps_every_field() -> None:
    """Encoding then decoding gives back an equal event, with tuples for arrays."""
    reg = REG
    event = Liked(media_id=1, user_id=2, tags=("a", "b"), extra={"x": 1})
    name, version, payload = reg.encode(event)
    assert (name, version) == ("Liked", 3)
    assert reg.decode(name, version, payload) == event


def test_old_versions_are_upcast_on_read() -> None:
    """A v1 payload passes through each upcaster in turn to the current shape."""
    reg = REG
    old = msgpack.packb({"media_id": 1, "liker": 9})
    event = reg.decode("Liked", 1, old)
    assert isinstance(event, Liked)
    assert (event.user_id, event.source) == (9, "legacy")


def test_unknown_type_is_an_error() -> None:
    """A type no module declared raises UnknownEventType, never a default."""
    with pytest.raises(UnknownEventType):
        REG.decode("Nope", 1, msgpack.packb({}))


@pytest.mark.parametrize(
    "payload, complaint",
    [
        ({"media_id": 1}, "missing field 'user_id'"),
        ({"media_id": "1", "user_id": 2}, "bad value for 'media_id'"),
        ({"media_id": True, "user_id": 2}, "bad value for 'media_id'"),
        ({"media_id": 1, "user_id": 2, "tags": [1]}, "bad value for 'tags'"),
        ({"media_id": 1, "user_id": 2, "surprise": 1}, "unknown fields"),
        # every field present (the fast path), one of them wrong
        ({"media_id": 1, "user_id": 2, "source": "a", "tags": ("x", 2), "extra": None},
         "bad value for 'tags'"),
        ({"media_id": 1, "user_id": True, "source": "a", "tags": (), "extra": None},
         "bad value for 'user_id'"),
        ({"media_id": 1, "user_id": 2, "source": None, "tags": (), "extra": None},
         "bad value for 'source'"),
        ({"media_id": 1, "user_id": 2, "source": "a", "tags": "xy", "extra": None},
         "bad value for 'tags'"),
        ({"media_id": 1, "user_id": 2, "source": "a", "tags": (), "extra": {"x": "1"}},
         "bad value for 'extra'"),
    ],
)
def test_malformed_payloads_are_errors(payload: dict, complaint: str) -> None:
    """Missing, mistyped or unknown fields raise EventSchemaError naming the field."""
    with pytest.raises(EventSchemaError, match=complaint):
        REG.decode("Liked", 3, msgpack.packb(payload))


def test_the_fast_path_builds_the_declared_event() -> None:
    """A current payload with every field decodes to an event equal to the constructor's,
    still frozen; ``frozen_builder`` builds the same value as the dataclass."""
    event = REG.decode("Liked", 3, msgpack.packb(
        {"media_id": 1, "user_id": 2, "source": "a", "tags": ["x"], "extra": None}))
    assert event == Liked(media_id=1, user_id=2, source="a", tags=("x",), extra=None)
    with pytest.raises(AttributeError):
        event.media_id = 5  # type: ignore[misc]
    built = frozen_builder(Liked)(1, 2, "b", (), {"k": 3})
    assert built == Liked(media_id=1, user_id=2, source="b", tags=(), extra={"k": 3})


@REG.event("Placed")
class Placed(Event):
    lat: float | None
    names: dict[str, str]


@pytest.mark.parametrize("lat, names, ok", [
    (1.5, {"a": "b"}, True), (2, {}, True), (None, {"a": "b"}, True),
    ("1.5", {}, False), (True, {}, False), (1.0, {"a": 1}, False), (1.0, {1: "a"}, False),
])
def test_the_fast_path_checks_floats_and_maps(lat: object, names: dict, ok: bool) -> None:
    """Floats take ints too (never bools or strings); maps are checked key and value."""
    payload = msgpack.packb({"lat": lat, "names": names}, strict_types=False)
    if ok:
        assert REG.decode_map("Placed", 1, msgpack.unpackb(payload, strict_map_key=False)) \
            == Placed(lat=lat, names=names)  # type: ignore[arg-type]
    else:
        with pytest.raises(EventSchemaError, match="bad value"):
            REG.decode_map("Placed", 1, msgpack.unpackb(payload, strict_map_key=False))


def test_garbage_and_future_versions_are_errors() -> None:
    """Bytes that are not a msgpack map, and versions newer than the code, are refused."""
    reg = REG
    with pytest.raises(EventSchemaError, match="not msgpack"):
        reg.decode("Liked", 3, b"\xc1")
    with pytest.raises(EventSchemaError, match="not a map"):
        reg.decode("Liked", 3, msgpack.packb([1, 2]))
    with pytest.raises(EventSchemaError, match="newer"):
        reg.decode("Liked", 4, msgpack.packb({"media_id": 1, "user_id": 2}))


def test_encoding_checks_field_types() -> None:
    """An event built with a wrong type cannot be written."""
    reg = REG
    with pytest.raises(EventSchemaError, match="media_id"):
        reg.encode(Liked(media_id="x", user_id=2))  # type: ignore[arg-type]


def test_declarations_are_checked() -> None:
    """Duplicate names and unsupported field types fail at import time."""
    reg = REG
    with pytest.raises(ValueError, match="twice"):

        @reg.event("Liked")
        class Again(Event):
            n: int

    with pytest.raises(TypeError, match="unsupported"):

        @reg.event("Odd")
        class Odd(Event):
            n: set[int]


def test_secret_fields_are_masked_for_display() -> None:
    """redacted() hides declared secret fields and summarizes bytes; undeclared names fail."""
    reg = EventRegistry()

    @reg.event("Signed", secret=("token",))
    class Signed(Event):
        user_id: int
        token: str
        blob: bytes

    shown = reg.redacted(Signed(user_id=1, token="hunter2", blob=b"abc"))
    assert shown == {"user_id": 1, "token": "***", "blob": "<3 bytes>"}
    with pytest.raises(ValueError, match="no fields"):

        @reg.event("Bad", secret=("nope",))
        class Bad(Event):
            n: int
