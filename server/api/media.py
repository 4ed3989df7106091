"""``/v1/media``: upload, a medium, its short code, deletion, a user's recent media, and the
media the caller liked.

An upload appends ``MediaPosted`` in ONE transaction on the owner's shard (the id from that
shard's ``next_id()``; the owner's privacy read there for the event's ``visibility``; a
retry with the same Idempotency-Key answers the first medium). The medium is ``processing``
and visible to its owner alone until the ``media_render`` consumer appends ``MediaRendered``.
A deletion appends ``MediaDeleted``: readers drop the medium at once, the consumers then take
it out of feeds, tags and the owner's recent media.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import APIError, invalid, not_found
from server.api.links import check_share_to
from server.api.mediaview import MEDIA, MEDIA_ID, MEDIA_LIST, media_id_of, objects, one
from server.api.pagination import next_url
from server.api.params import Param
from server.api.uploads import OVERHEAD, Upload, receive
from server.api.users import USER_ID, not_allowed, target_id, visible_user
from server.context import ServiceContext
from server.db import Txn
from server.domain import tags as tagging
from server.domain.geo import GeoValueError, parse_timestamp_ms
from server.domain.graph import may_view
from server.domain.ids import shard_of
from server.domain.locations import SAME_PLACE_M, same_place
from server.domain.log import AppendRequest, NewEvent
from server.domain.media import (
    Details,
    MediaDeleted,
    MediaPosted,
    State,
    from_shortcode,
    media_stream,
)
from server.store import accounts, graph, likes
from server.store import media as store

MAX_ID = Param("max_id", pattern=r"^[0-9]{1,19}$", description="media with smaller ids")
MIN_ID = Param("min_id", pattern=r"^[0-9]{1,19}$", description="media with larger ids")
COUNT_MEDIA = Param("count", int, minimum=1, maximum=100, default=20,
                    description="how many media a page holds")


def id_param(call: Call, name: str) -> int | None:
    text = call.params.get(name)
    return int(text) if text else None


def media_page(call: Call, ids: list[int], cursor: str = "max_id", more: bool = True,
               follows: set[int] | None = None, meta: dict[str, Any] | None = None) -> Reply:
    """A page of media objects; ``ids`` holds up to ``count + 1`` candidates, newest first."""
    count = call.params["count"]
    page = ids[:count]
    data = objects(call, page, follows)
    pagination: dict[str, Any] = {}
    if more and len(ids) > count and page:
        last = str(page[-1])
        pagination = {"next_url": next_url(call, last, cursor), f"next_{cursor}": last}
    return Reply(data, pagination=pagination, meta=meta)


def resolve_location(call: Call, d: Details) -> Details:
    """The upload's place as a known location: ``location_id`` must name a recorded one (its
    name wins); a ``location_name`` alone takes the id of the same-named place nearby, if
    any (else ``post_txn`` mints it: the medium's own id)."""
    if d.location_id is not None:
        known = call.ctx.locations.get(d.location_id)
        if known is None:
            raise invalid("location_id names no known location")
        return replace(d, location_name=known.name)
    if d.location_name and d.lat is not None and d.lng is not None:
        for known in call.ctx.locations.near(d.lat, d.lng, SAME_PLACE_M, 20, d.location_name):
            if same_place(known, d.location_name, d.lat, d.lng):
                return replace(d, location_id=known.id)
    return d


def post_txn(txn: Txn, call: Call, up: Upload, key: str | None) -> int:
    store_ = call.ctx.store
    owner = call.user_id
    shard = shard_of(owner)
    if key is not None:
        replay = store_.replayed_txn(txn, shard, key)
        if replay is not None:
            first = store_.get_txn(txn, replay.event_ids[0])
            assert first is not None and isinstance(first.data, MediaPosted)
            return first.data.media_id
    user = accounts.get_user(txn, owner)
    if user is None:
        raise not_found("this user does not exist")
    media_id = accounts.new_id(txn, shard)
    d, p = up.details, up.probe
    event = MediaPosted(
        media_id=media_id, owner=owner, type=p.type, blob=up.blob, width=p.width,
        height=p.height, duration_ms=p.duration_ms, caption=d.caption,
        tags=tagging.hashtags(d.caption), mentions=tagging.mentions(d.caption),
        filter=d.filter, lat=d.lat, lng=d.lng, location_name=d.location_name,
        location_id=media_id if d.location_name and d.location_id is None else d.location_id,
        share_to=d.share_to,
        visibility="private" if user.is_private else "public",
    )
    store_.append_txn(txn, [AppendRequest(shard, media_stream(media_id),
                                          (NewEvent(event, actor=owner),),
                                          expected_version=0, idempotency_key=key)])
    return media_id


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    limit = max(ctx.config.media.photo_max_bytes, ctx.config.media.video_max_bytes) + OVERHEAD

    @api.endpoint(
        "POST", "/v1/media", "Upload a photo or a video", scope="basic", data=MEDIA,
        tag="media", stream=True, max_body=limit, body_types=("multipart/form-data",),
        params=tuple(Param(n, where="body", description=d) for n, d in (
            ("caption", "at most 2,200 characters; #hashtags and @mentions are picked out"),
            ("filter", "the filter's name (default Normal)"),
            ("lat", "latitude of the place, with lng"), ("lng", "longitude of the place"),
            ("location_name", "the place's name (needs lat and lng)"),
            ("location_id", "the place's id (needs lat and lng)"),
            ("share_to", "services to share it to, comma-separated: twitter, facebook, "
             "mastodon, webhook; each must be linked (/v1/users/self/linked_accounts)"))),
        description="multipart/form-data with a `photo` (JPEG, PNG or WebP) or `video` (MP4) "
        "file part; the type is decided from the bytes. The medium is `processing` (seen by "
        "its owner only) until its renditions exist. Errors: 413 APIMediaTooLargeError "
        "(bytes, pixels, duration), 415 APIInvalidMediaError (not a readable JPEG, PNG, "
        "WebP or MP4), 400 APIInvalidParametersError (fields, share_to naming a service "
        "not linked).",
    )
    def upload(call: Call) -> Reply:
        up = receive(call, lambda d: check_share_to(call, d.share_to))
        up = replace(up, details=resolve_location(call, up.details))
        key = call.idempotency_key(f"u{call.user_id}")
        media_id = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "post_media", post_txn, call, up, key)
        return Reply(objects(call, [media_id])[0])

    @api.endpoint("GET", "/v1/media/{media_id}", "A medium", scope="basic", tag="media",
                  params=(MEDIA_ID,), data=MEDIA,
                  description="Others' media need public_content. A private account's media "
                  "are seen by its approved followers only.")
    def get_media(call: Call) -> Reply:
        media_id = media_id_of(call)
        m = one(call, media_id)
        if m.owner_id != call.user_id:
            call.require_scope("public_content")
        return Reply(objects(call, [media_id])[0])

    @api.endpoint("GET", "/v1/media/shortcode/{shortcode}", "A medium by its short code",
                  scope="basic", tag="media", data=MEDIA,
                  params=(Param("shortcode", where="path", required=True,
                                pattern=r"^[A-Za-z0-9_-]{1,11}$"),))
    def by_shortcode(call: Call) -> Reply:
        try:
            media_id = from_shortcode(call.params["shortcode"])
        except ValueError:
            raise not_found("invalid shortcode") from None
        call.params["media_id"] = str(media_id)
        return get_media(call)

    @api.endpoint("DELETE", "/v1/media/{media_id}", "Delete a medium (its owner only)",
                  scope="basic", tag="media", params=(MEDIA_ID,), data={"type": "null"},
                  description="The medium leaves every feed, tag and search.")
    def delete_media(call: Call) -> Reply:
        media_id = media_id_of(call)
        m = one(call, media_id)
        if m.owner_id != call.user_id:
            raise APIError(400, "APINotAllowedError", "only the owner may delete a medium")
        stream = media_stream(media_id)

        def txn_fn(txn: Txn) -> None:
            found = store.state_of_txn(txn, media_id)
            if found is None or found is State.DELETED:
                return
            ctx.store.append_txn(txn, [AppendRequest(
                shard_of(media_id), stream,
                (NewEvent(MediaDeleted(media_id=media_id, owner=m.owner_id),
                          actor=call.user_id),))])

        ctx.router.database(shard_of(media_id)).run_interaction("delete_media", txn_fn)
        return Reply(None)

    @api.endpoint(
        "GET", "/v1/users/{user_id}/media/recent", "A user's most recent media",
        tag="media", data=MEDIA_LIST, paginated=True,
        params=(USER_ID, COUNT_MEDIA, MAX_ID, MIN_ID,
                Param("min_timestamp", pattern=r"^[0-9]{1,12}$",
                      description="media posted at or after this Unix time"),
                Param("max_timestamp", pattern=r"^[0-9]{1,12}$",
                      description="media posted at or before this Unix time")),
        description="Scope basic for self; public_content for others. Newest first; "
        "pagination.next_max_id pages on. The owner also sees media still processing.")
    def user_recent(call: Call) -> Reply:
        owner = target_id(call)
        mine = owner == call.user_id
        if not mine:
            call.require_scope("public_content")
            user = visible_user(call, owner)
            if user.is_private:
                edge = ctx.router.database(shard_of(call.user_id)).run_interaction(
                    "edge", graph.edge, call.user_id, owner)[0]
                if not may_view(True, edge, False):
                    raise not_allowed()
        try:
            lo = parse_timestamp_ms(call.params["min_timestamp"], "min_timestamp")
            hi = parse_timestamp_ms(call.params["max_timestamp"], "max_timestamp", end=True)
        except GeoValueError as e:
            raise invalid(str(e)) from None
        ids = ctx.router.database(shard_of(owner)).run_interaction(
            "owner_media", store.owner_page, owner, id_param(call, "max_id"),
            id_param(call, "min_id"), lo, hi, call.params["count"] + 1, mine)
        return media_page(call, ids, follows={owner} if not mine else set())

    @api.endpoint("GET", "/v1/users/self/media/liked", "The media the caller liked",
                  scope="basic", tag="media", data=MEDIA_LIST, paginated=True,
                  params=(COUNT_MEDIA, Param("max_like_id", pattern=r"^[0-9]{1,19}$",
                                             description="likes older than this")),
                  description="Newest like first; pagination.next_max_like_id pages on. "
                  "Written by a consumer of the log: eventually consistent.")
    def liked(call: Call) -> Reply:
        rows = ctx.router.database(shard_of(call.user_id)).run_interaction(
            "liked", likes.liked_page, call.user_id, id_param(call, "max_like_id"),
            call.params["count"] + 1)
        count = call.params["count"]
        page = rows[:count]
        pagination: dict[str, Any] = {}
        if len(rows) > count and page:
            last = str(page[-1][0])
            pagination = {"next_url": next_url(call, last, "max_like_id"),
                          "next_max_like_id": last}
        return Reply(objects(call, [m for _, m in page]), pagination=pagination,
                     headers=((b"x-consistency", b"eventual"),))

