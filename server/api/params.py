"""Request parameters: declared once, parsed from the query, the path and the body, checked
with errors that name the field, and described in the OpenAPI document from the same
declaration.

Bodies may be form-encoded or JSON objects. Form values are text; JSON values must already
have the declared type (a number where a string is declared is an error naming the field),
except that integers and booleans are also accepted as their text forms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from server.api.envelope import APIError, invalid

FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
MAX_FIELDS = 100
_INT = re.compile(r"^-?[0-9]{1,19}$")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}
_KINDS = {str: "string", int: "integer", bool: "boolean"}


@dataclass(frozen=True)
class Param:
    """One parameter of an endpoint."""

    name: str
    kind: type = str  # str, int or bool
    where: str = "query"  # query, body or path
    required: bool = False
    default: Any = None
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None

    def schema(self) -> dict[str, Any]:
        """The parameter's JSON schema (for the OpenAPI document)."""
        out: dict[str, Any] = {"type": _KINDS[self.kind]}
        for key, value in (("minimum", self.minimum), ("maximum", self.maximum),
                           ("minLength", self.min_length), ("maxLength", self.max_length),
                           ("pattern", self.pattern), ("default", self.default)):
            if value is not None:
                out[key] = value
        if self.enum:
            out["enum"] = list(self.enum)
        return out

    def coerce(self, raw: Any) -> Any:
        """The typed, checked value of ``raw``; APIError 400 naming the field otherwise."""
        value = self._typed(raw)
        if isinstance(value, str):
            if self.min_length is not None and len(value) < self.min_length:
                raise invalid(f"{self.name} must be at least {self.min_length} characters")
            if self.max_length is not None and len(value) > self.max_length:
                raise invalid(f"{self.name} must be at most {self.max_length} characters")
            if self.pattern is not None and not re.search(_strict_end(self.pattern), value):
                raise invalid(f"{self.name} is not in the expected form")
            if self.enum is not None and value not in self.enum:
                raise invalid(f"{self.name} must be one of: {', '.join(self.enum)}")
        if isinstance(value, int) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                raise invalid(f"{self.name} must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise invalid(f"{self.name} must be at most {self.maximum}")
        return value

    def _typed(self, raw: Any) -> Any:
        if self.kind is str:
            if not isinstance(raw, str):
                raise invalid(f"{self.name} must be a string")
            if "\x00" in raw:
                raise invalid(f"{self.name} must not contain NUL characters")
            if not raw.isascii():
                try:  # JSON can carry a lone surrogate ("\ud800"): no text can hold it
                    raw.encode()
                except UnicodeEncodeError:
                    raise invalid(f"{self.name} must be valid Unicode text") from None
            return raw
        if self.kind is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in _BOOLS:
                return _BOOLS[raw.lower()]
            raise invalid(f"{self.name} must be a boolean (true or false)")
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and _INT.fullmatch(raw):
            return int(raw)
        raise invalid(f"{self.name} must be an integer")


def _strict_end(pattern: str) -> str:
    """A JSON Schema pattern for Python: ``$`` ends the text (in Python it also matches
    before a final newline, which JSON Schema's ``$`` does not)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\Z"
    return pattern


def parse_query(query: bytes) -> dict[str, str]:
    """The query string's parameters; a parameter given twice is an error."""
    return _unique(_pairs(query, "the query string"), "in the query string")


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The body's fields: a form or a JSON object (an empty body has none)."""
    if not body.strip():
        return {}
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == JSON_TYPE or kind.endswith("+json"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise invalid("the body is not valid JSON") from None
        except RecursionError:  # arrays or objects nested thousands deep
            raise invalid("the JSON body is nested too deeply") from None
        if not isinstance(data, dict):
            raise invalid("the JSON body must be an object")
        if len(data) > MAX_FIELDS:
            raise invalid(f"the body has more than {MAX_FIELDS} fields")
        return data
    if kind in (FORM, ""):
        return _unique(_pairs(body, "the body"), "in the body")
    raise APIError(415, "APIInvalidParametersError",
                   f"unsupported body type {kind!r}: send {FORM} or {JSON_TYPE}")


def signable(query: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, str]:
    """The parameters a ``sig`` covers, as text: the query's and the body's (JSON values that
    are not strings in their JSON form)."""
    out = dict(query)
    for key, value in body.items():
        out[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return out


def collect(params: tuple[Param, ...], path: Mapping[str, str], query: Mapping[str, str],
            body: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared parameter's value (or default), checked. Body parameters may also come
    in the query string, as some Instagram clients send them."""
    values: dict[str, Any] = {}
    for p in params:
        source: Mapping[str, Any] = path if p.where == "path" else query
        if p.where == "body" and p.name in body:
            source = body
        if p.name in source and not (source[p.name] == "" and not p.required
                                     and p.kind is not str):
            values[p.name] = p.coerce(source[p.name])
        elif p.required:
            raise invalid(f"{p.name} is required")
        else:
            values[p.name] = p.default
    return values


def _pairs(raw: bytes, where: str) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                         max_num_fields=MAX_FIELDS, errors="strict")
    except UnicodeDecodeError:
        raise invalid(f"{where} is not valid UTF-8") from None
    except ValueError:
        raise invalid(f"{where} has more than {MAX_FIELDS} fields") from None


def _unique(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise invalid(f"{key} is given more than once {where}")
        out[key] = value
    return out
