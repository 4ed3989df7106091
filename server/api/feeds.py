"""``/v1/users/self/feed`` (the home feed) and ``/v1/users/self/activity``.

The home feed is the union of what the ``fanout`` consumer pushed into ``feed:{me}`` and,
read now, the recent media of the followed accounts it does not push (hybrid fan-out:
``fanout:pulled``), capped like a pushed feed at its ``feeds.size`` newest ids (a page below
``max_id`` first counts the ids above it). Then it is filtered against the truth: media
deleted, no longer visible, or of accounts the reader no longer follows are dropped (and
cleaned from the feed), so a push that raced an unfollow or a deletion never shows.

A feed found incomplete (Redis lost it) is rebuilt from PostgreSQL by the reader that takes
the rebuild lease: the followed accounts' recent media, one query per database. A reader
that finds the lease taken answers from what is there with ``meta.partial: true``.
"""

from __future__ import annotations

from typing import Any

from klein import Klein

from server.api.endpoint import API, Call, Reply
from server.api.envelope import invalid
from server.api.media import COUNT_MEDIA, MAX_ID, MIN_ID, id_param
from server.api.mediaview import MEDIA_LIST, media_json, visible
from server.api.pagination import COUNT, CURSOR, next_url
from server.api.users import USER_SHORT, short_json
from server.context import ServiceContext
from server.domain import activity as act
from server.domain.feeds import merge
from server.domain.ids import shard_of
from server.domain.media import State
from server.store import accounts, graph, media
from server.store.activity import ActivityStore
from server.store.feeds import recent_own

ACTIVITY: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["type", "text", "created_time", "users"],
              "properties": {
                  "type": {"type": "string",
                           "enum": ["like", "comment", "mention", "follow", "request",
                                    "unlinked"]},
                  "text": {"type": "string"},
                  "created_time": {"type": "string"},
                  "users": {"type": "array", "items": USER_SHORT},
                  "count": {"type": "integer"},
                  "media_id": {"type": ["string", "null"]},
                  "comment_id": {"type": ["string", "null"]}}},
}


def home(call: Call) -> Reply:
    ctx = call.ctx
    me = call.user_id
    count = call.params["count"]
    max_id, min_id = id_param(call, "max_id"), id_param(call, "min_id")
    followees = set(ctx.router.database(shard_of(me)).run_interaction(
        "followees", graph.active_followees, me))
    pushed, complete = ctx.feeds.page(me, max_id, min_id, count + 1)
    meta = None
    if not complete:
        if ctx.feeds.take_rebuild(me, ctx.config.feeds.rebuild_lease_ms):
            try:
                truth = media.recent_of_owners(ctx.router, [me, *followees], ctx.feeds.size)
                ctx.feeds.merge(me, truth, complete=True)
            finally:
                ctx.feeds.drop_rebuild(me)
            pushed, _ = ctx.feeds.page(me, max_id, min_id, count + 1)
        else:
            meta = {"partial": True}
    pulled = sorted(ctx.feeds.pulled(sorted(followees)))
    merged = recent_own(ctx.feeds, ctx.router, pulled, max_id, min_id, count + 1)
    ids = merge([pushed, *merged.values()], max_id, min_id, count + 1)
    if pulled:
        above = ctx.feeds.newer(me, pulled, max_id, ctx.feeds.size) if max_id else 0
        ids = ids[:max(0, ctx.feeds.size - above)]
    page = ids[:count]
    found = media.hydrate(ctx.router, page, me)
    shown = {m.id: m for m in visible(call, found.values(), followees)
             if m.owner_id == me or m.owner_id in followees}
    stale = [i for i in page if i not in shown]
    if stale:
        ctx.feeds.remove(stale, [me])
    counts = ctx.counters.get(shown)
    data = [media_json(call, shown[i], counts[i]) for i in page if i in shown]
    pagination: dict[str, Any] = {}
    if len(ids) > count and page:
        pagination = {"next_url": next_url(call, str(page[-1]), "max_id"),
                      "next_max_id": str(page[-1])}
    return Reply(data, pagination=pagination, meta=meta)


def activity(call: Call) -> Reply:
    ctx = call.ctx
    me = call.user_id
    count = call.params["count"]
    before_ms, after_key = _activity_cursor(call.params["cursor"])
    store = ActivityStore(ctx.redis, ctx.config.feeds.activity_size)
    items = store.page(me, before_ms, after_key, count * 5)
    groups, used = act.aggregate(items, count)
    # A medium someone else still renders is its owner's alone (a mention in its caption
    # waits for it), a deleted one is no one's
    states = media.tagged(ctx.router, {g.media_id for g in groups if g.media_id})
    groups = [g for g in groups if g.media_id is None or (
        g.media_id in states and (states[g.media_id].state is State.READY or (
            states[g.media_id].owner == me and states[g.media_id].state is not State.DELETED)))]
    users = accounts.users_by_id(ctx.router, sorted({a for g in groups for a in g.actors}))

    def name(user: int) -> str:
        return users[user].username if user in users else "someone"

    data = [{
        "type": g.kind, "text": act.describe(g, name), "created_time": str(g.created_ms // 1000),
        "users": [short_json(users[a]) for a in g.actors[:10] if a in users],
        "count": len(g.actors),
        "media_id": str(g.media_id) if g.media_id else None,
        "comment_id": str(g.comment_id) if g.comment_id else None,
    } for g in groups]
    pagination: dict[str, Any] = {}
    if used and used < len(items):
        last = items[used - 1]
        cursor = f"{last.created_ms}_{last.key}"
        pagination = {"next_url": next_url(call, cursor), "next_cursor": cursor}
    return Reply(data, pagination=pagination)


def _activity_cursor(text: str | None) -> tuple[int | None, str | None]:
    if not text:
        return None, None
    ms, sep, key = text.partition("_")
    if not sep or not ms.isdigit() or not key:
        raise invalid("cursor is not a cursor this endpoint gave out")
    return int(ms), key


def routes(app: Klein, ctx: ServiceContext) -> None:
    api = API(app, ctx)
    api.endpoint(
        "GET", "/v1/users/self/feed", "The home feed: media of the accounts the caller "
        "follows, newest first", tag="feed", params=(COUNT_MEDIA, MAX_ID, MIN_ID),
        data=MEDIA_LIST, paginated=True,
        description="pagination.next_max_id pages on. meta.partial is true while the feed "
        "is being rebuilt (after Redis lost it): the page may miss media until then.",
    )(home)
    api.endpoint(
        "GET", "/v1/users/self/activity", "What happened to the caller's media and account",
        tag="feed", params=(COUNT, CURSOR), data=ACTIVITY, paginated=True,
        description="Likes (aggregated per medium within a page), comments, mentions, "
        "follows, follow requests and accounts unlinked by share-out, newest first.",
    )(activity)
