"""Cursor pagination, as the Instagram API answered it: ``pagination`` holds ``next_url`` and
``next_cursor`` while more remains, and is empty at the end.

Cursors are keyset positions on immutable, unique sort keys (an edge's id, a lower-case
username), never offsets: a page starts strictly after the last item of the previous one,
so items added or removed meanwhile never shift a page (no duplicates, no gaps among items
that stayed). Handlers fetch ``count + 1`` rows and pass them to ``paginate``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from server.api.endpoint import Call
from server.api.envelope import invalid
from server.api.params import Param

T = TypeVar("T")

COUNT = Param("count", int, minimum=1, maximum=100, default=50,
              description="how many items a page holds")
CURSOR = Param("cursor", str, max_length=200, pattern=r"^[\x21-\x7e]+$",
               description="next_cursor of the previous page; empty for the first page")

#: The OpenAPI schema of ``pagination``.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "next_url": {"type": "string", "description": "the next page, ready to GET"},
        "next_cursor": {"type": "string", "description": "the cursor of the next page"},
    },
}


def id_cursor(call: Call) -> int | None:
    """The ``cursor`` parameter as an edge id (None on the first page)."""
    text = call.params.get("cursor")
    if not text:
        return None
    if not text.isdigit() or len(text) > 19:
        raise invalid("cursor is not a cursor this endpoint gave out")
    return int(text)


def paginate(
    call: Call, rows: Sequence[T], cursor_of: Callable[[T], str]
) -> tuple[list[T], dict[str, Any]]:
    """The page (the first ``count`` rows) and its ``pagination`` (``count + 1`` rows given
    means there is more, and the last row of the page is the next cursor)."""
    count = call.params["count"]
    page = list(rows[:count])
    if len(rows) <= count or not page:
        return page, {}
    cursor = cursor_of(page[-1])
    return page, {"next_url": next_url(call, cursor), "next_cursor": cursor}


def next_url(call: Call, cursor: str, name: str = "cursor") -> str:
    """This request's URL with the next cursor (in parameter ``name``: ``max_id`` and its
    kin for media lists, as the v1 API named them). The query's other parameters stay (the
    ``access_token`` too, when it came in the query, as Instagram's next_url carried it);
    ``sig`` goes, since a new query needs a new signature."""
    query = {k: v for k, v in call.query.items() if k not in (name, "sig")}
    query[name] = cursor
    base = call.ctx.config.http.public_url.rstrip("/")
    return f"{base}{call.raw.path}?{urlencode(query)}"
