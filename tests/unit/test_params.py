"""Parameter parsing and checking: types, limits, bodies, and errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from server.api.envelope import APIError
from server.api.params import Param, collect, parse_body, parse_query, signable

FORM = "application/x-www-form-urlencoded"


def error(fn: Any, *args: Any) -> str:
    with pytest.raises(APIError) as e:
        fn(*args)
    return e.value.message


def test_types_from_forms_and_json() -> None:
    """Integers and booleans come as text or as JSON; strings must be strings."""
    count = Param("count", int, minimum=1, maximum=10)
    flag = Param("flag", bool)
    name = Param("name", max_length=3, pattern=r"^[a-z]+$")
    assert count.coerce("7") == 7 and count.coerce(7) == 7
    assert flag.coerce("true") is True and flag.coerce(False) is False
    assert name.coerce("abc") == "abc"
    assert error(count.coerce, "7x") == "count must be an integer"
    assert error(count.coerce, True) == "count must be an integer"
    assert error(count.coerce, "11") == "count must be at most 10"
    assert error(flag.coerce, "yes") == "flag must be a boolean (true or false)"
    assert error(name.coerce, 5) == "name must be a string"
    assert error(name.coerce, "abcd") == "name must be at most 3 characters"
    assert error(name.coerce, "ab\n") == "name is not in the expected form"
    assert error(count.coerce, "12\n") == "count must be an integer"


def test_bodies() -> None:
    """Forms and JSON objects parse; anything else is refused precisely."""
    assert parse_body(FORM, b"a=1&b=") == {"a": "1", "b": ""}
    assert parse_body("application/json; charset=utf-8", b'{"a": [1]}') == {"a": [1]}
    assert parse_body("application/json", b"  ") == {}
    assert "not valid JSON" in error(parse_body, "application/json", b"{")
    assert "must be an object" in error(parse_body, "application/json", b'"x"')
    assert "more than once" in error(parse_body, FORM, b"a=1&a=2")
    assert "UTF-8" in error(parse_body, FORM, b"a=\xff")
    with pytest.raises(APIError) as e:
        parse_body("image/png", b"\x89PNG")
    assert e.value.code == 415
    assert "more than once" in error(parse_query, b"count=1&count=2")


def test_collect_defaults_required_and_sources() -> None:
    """Declared parameters get their defaults; required ones must be there; body parameters
    may come in the query."""
    params = (Param("user_id", where="path", required=True), Param("action", where="body",
              required=True), Param("count", int, default=20))
    assert collect(params, {"user_id": "5"}, {"action": "follow"}, {}) == {
        "user_id": "5", "action": "follow", "count": 20}
    assert collect(params, {"user_id": "5"}, {"count": ""}, {"action": "x"})["count"] == 20
    assert error(collect, params, {"user_id": "5"}, {}, {}) == "action is required"


def test_signable_parameters() -> None:
    """A sig covers the query and the body, non-string JSON values in their JSON form."""
    assert signable({"a": "1"}, {"b": True, "c": "x", "d": [1, 2]}) == {
        "a": "1", "b": "true", "c": "x", "d": "[1,2]"}
