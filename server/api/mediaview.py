"""Media as the API shows them: who may see which, hydration, and the v1 media object.

Hydration reads media rows (with owner and the viewer's like) in one query per physical
database, counts from the counter cache, and the viewer's follows only when a private
account's media are among them (one query on the viewer's shard).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from server.api.endpoint import Call
from server.api.envelope import not_found
from server.api.params import Param
from server.api.users import not_allowed
from server.domain import media as rules
from server.domain.ids import shard_of
from server.domain.media import State, Viewer
from server.domain.renditions import IMAGE_SIZES, VIDEO_SIZES, even, square_side
from server.shards import mapped_shard
from server.store import graph
from server.store.media import Medium, hydrate
from server.store.shares import Share, shares_of

MEDIA_ID = Param("media_id", where="path", required=True,
                 pattern=r"^[0-9]{1,19}(_[0-9]{1,19})?$",
                 description="a media id (Instagram's MEDIAID_USERID form is accepted too)")

_URL = {"type": "object", "properties": {"url": {"type": "string"},
                                         "width": {"type": "integer"},
                                         "height": {"type": "integer"}}}
_FROM = {"type": "object", "properties": {k: {"type": "string"} for k in
                                          ("id", "username", "full_name", "profile_picture")}}
COMMENT: dict[str, Any] = {
    "type": "object", "required": ["id", "text", "created_time", "from"],
    "properties": {"id": {"type": "string"}, "text": {"type": "string"},
                   "created_time": {"type": "string"}, "from": _FROM},
}
SHARE: dict[str, Any] = {
    "type": "object", "required": ["service", "state"],
    "properties": {
        "service": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "posted", "failed", "cancelled",
                                             "deleting", "deleted", "delete_failed"]},
        "remote_id": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
        "updated_time": {"type": "string"}},
}
MEDIA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "images", "user", "likes", "comments", "created_time", "link"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["image", "video"]},
        "state": {"type": "string", "enum": ["processing", "ready"],
                  "description": "processing until the renditions exist (owner only)"},
        "images": {"type": "object", "additionalProperties": _URL},
        "videos": {"type": "object", "additionalProperties": _URL},
        "caption": {"oneOf": [COMMENT, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "location": {"oneOf": [{"type": "object"}, {"type": "null"}]},
        "likes": {"type": "object", "properties": {"count": {"type": "integer"}}},
        "comments": {"type": "object", "properties": {"count": {"type": "integer"}}},
        "user": _FROM,
        "user_has_liked": {"type": "boolean"},
        "link": {"type": "string"},
        "filter": {"type": "string"},
        "created_time": {"type": "string"},
        "users_in_photo": {"type": "array"},
        "attribution": {"type": "null"},
        "shares": {"type": "array", "items": SHARE,
                   "description": "share-out to the owner's linked accounts (owner only)"},
    },
}
MEDIA_LIST: dict[str, Any] = {"type": "array", "items": MEDIA}


def media_id_of(call: Call, name: str = "media_id") -> int:
    """The medium a path names; an id that cannot exist is 404."""
    media_id = int(call.params[name].split("_", 1)[0])
    check_id(call, media_id)
    return media_id


def check_id(call: Call, media_id: int) -> None:
    if mapped_shard(call.ctx.router, media_id) is None:
        raise not_found("invalid media id")


def viewer_follows(call: Call, owners: Iterable[int]) -> set[int]:
    """Which of ``owners`` the caller follows (active edges): one query on their shard."""
    wanted = set(owners) - {call.user_id}
    if not wanted:
        return set()
    me = call.user_id
    followees = call.ctx.router.database(shard_of(me)).run_interaction(
        "followees", graph.active_followees, me)
    return wanted & set(followees)


def visible(call: Call, found: Iterable[Medium], follows: set[int] | None = None
            ) -> list[Medium]:
    """The media the caller may see (``follows``: the owners the caller follows, if known)."""
    found = list(found)
    if follows is None:
        follows = viewer_follows(call, {m.owner_id for m in found if m.owner_private})
    return [m for m in found if rules.may_see(viewing(call.user_id, m, follows), m.state)]


def viewing(viewer: int, m: Medium, follows: set[int]) -> Viewer:
    return Viewer(viewer, m.owner_id, m.owner_private, m.owner_id in follows, m.viewer_blocked)


def one(call: Call, media_id: int) -> Medium:
    """The medium, if the caller may see it: 404 when missing, deleted, not ready for a
    non-owner, or hidden by a block; APINotAllowedError for a private account's medium."""
    found = hydrate(call.ctx.router, [media_id], call.user_id).get(media_id)
    if found is None:
        raise not_found("invalid media id")
    if visible(call, [found]):
        return found
    if found.state is State.READY and found.owner_private and not found.viewer_blocked:
        raise not_allowed()
    raise not_found("invalid media id")


def objects(call: Call, ids: list[int], follows: set[int] | None = None) -> list[dict[str, Any]]:
    """The media objects of ``ids`` the caller may see, in the order given; the caller's own
    carry their ``shares`` (one more query per database, only when there are such)."""
    found = hydrate(call.ctx.router, ids, call.user_id)
    shown = {m.id: m for m in visible(call, found.values(), follows)}
    counts = call.ctx.counters.get(shown)
    own = [i for i, m in shown.items() if m.owner_id == call.user_id]
    ledger = shares_of(call.ctx.router, own) if own else {}
    return [media_json(call, shown[i], counts[i],
                       ledger.get(i, []) if shown[i].owner_id == call.user_id else None)
            for i in ids if i in shown]


def public_objects(call: Call, ids: list[int]) -> list[dict[str, Any]]:
    """The media objects of ``ids`` anyone may see (ready, of public accounts), in the order
    given: for endpoints an app calls without a user's token."""
    found = hydrate(call.ctx.router, ids, 0)
    shown = {m.id: m for m in found.values()
             if rules.may_see(viewing(0, m, set()), m.state)}
    counts = call.ctx.counters.get(shown)
    return [media_json(call, shown[i], counts[i]) for i in ids if i in shown]


def user_short(m: Medium) -> dict[str, Any]:
    return {"id": str(m.owner_id), "username": m.owner_username,
            "full_name": m.owner_full_name, "profile_picture": ""}


def blob_url(call: Call, name: str) -> str:
    return f"{call.ctx.config.http.public_url.rstrip('/')}/blobs/{name}"


def media_json(call: Call, m: Medium, counts: tuple[int, int],
               shares: list[Share] | None = None) -> dict[str, Any]:
    """The v1 media object (with ``shares`` when given: the owner's view)."""
    seconds = str(m.created_ms // 1000)
    images = {name: {"url": blob_url(call, m.images[name]), "width": side, "height": side}
              for name, side in _sides(m, IMAGE_SIZES).items() if name in m.images}
    out: dict[str, Any] = {
        "id": str(m.id), "type": m.type, "state": m.state.value, "images": images,
        "caption": ({"id": str(m.id), "text": m.caption, "created_time": seconds,
                     "from": user_short(m)} if m.caption else None),
        "tags": list(m.tags),
        "location": ({"latitude": m.lat, "longitude": m.lng, "name": m.location_name,
                      "id": str(m.location_id) if m.location_id else None}
                     if m.lat is not None else None),
        "likes": {"count": counts[0]}, "comments": {"count": counts[1]},
        "user": user_short(m), "user_has_liked": m.viewer_likes,
        "link": rules.permalink(call.ctx.config.http.public_url, m.id),
        "filter": m.filter, "created_time": seconds, "users_in_photo": [], "attribution": None,
    }
    if shares is not None:
        out["shares"] = [share.json() for share in shares]
    if m.type == "video":
        out["videos"] = {name: {"url": blob_url(call, m.videos[name]), "width": side,
                                "height": side}
                         for name, side in _sides(m, VIDEO_SIZES).items() if name in m.videos}
    return out


def _sides(m: Medium, sizes: dict[str, int]) -> dict[str, int]:
    """Each rendition's side (as the renderers made it)."""
    video = sizes is VIDEO_SIZES
    return {name: even(square_side(m.width, m.height, t)) if video
            else square_side(m.width, m.height, t) for name, t in sizes.items()}
