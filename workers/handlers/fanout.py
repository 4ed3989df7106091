"""The ``fanout`` consumer: home feeds from posts, deletions and followers.

It reads the owner's shard, where a medium's events and the owner's followers-side events
are ordered by one log, so a follow racing a post is always resolved: whichever comes first
in the log, the other's handler sees its effect (the followers table, or the ready medium).

- ``MediaRendered`` (the medium became visible): into the owner's recent media, then to the
  owner's own feed and each active follower's, by how many followers there are
  (``server.domain.feeds.mode``): pushed here (up to ``feeds.chunk_size``), by durable chunk
  tasks (``fanout`` tasks of ``chunk_size`` followers each, one Gearman job each: a post
  with a million followers never holds this consumer, so the next post of an account with
  ten is delivered at once), or not at all above ``feeds.hybrid_threshold`` (the owner is
  marked pulled: readers merge its recent media).
- ``MediaDeleted``: out of the owner's recent media and every follower's feed (the same way).
  Readers drop deleted media anyway; this frees the slots.
- ``FollowerAdded``: the followee's recent media into the new follower's feed (unless the
  followee is pulled). ``FollowerRemoved`` (unfollow, block): out again.

Every write is idempotent (ZADD/ZREM of ids), so a batch applied again changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from server.domain.feeds import Mode, chunks, mode
from server.domain.graph import FollowerAdded, FollowerRemoved
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaDeleted, MediaRendered
from server.store import graph
from server.store.feeds import FeedStore, recent_own
from workers.consumers import consumer
from workers.context import WorkerContext
from workers.tasks import submit_tasks, task_handler

log = logging.getLogger(__name__)
FOLLOWER_EVENTS = ("FollowerAdded", "FollowerRemoved")


def feed_store(ctx: WorkerContext, client: Any = None) -> FeedStore:
    """The feeds the handlers write (under ``ctx.key_prefix``), through ``client`` if given
    (a pipeline)."""
    f = ctx.config.feeds
    return FeedStore(client or ctx.redis, f.size, f.user_media_size, ctx.key_prefix)


@consumer("fanout", "MediaRendered", "MediaDeleted", *FOLLOWER_EVENTS, batch_size=500)
def fanout(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    feeds = feed_store(ctx)
    run: list[RecordedEvent] = []
    for i, e in enumerate(events):
        if e.type in FOLLOWER_EVENTS:
            run.append(e)
            if i + 1 == len(events) or events[i + 1].type not in FOLLOWER_EVENTS:
                followers_changed(ctx, feeds, run)
                run = []
        else:
            run.append(e)
            if i + 1 == len(events) or events[i + 1].type in FOLLOWER_EVENTS:
                media_changed(ctx, run)
                run = []


def media_changed(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    """A run of MediaRendered/MediaDeleted: the owners' followers read once per shard, then
    every feed write of the run in one pipelined round trip, in log order."""
    settings = ctx.config.feeds
    owners = sorted({e.data.owner for e in events})  # type: ignore[attr-defined]
    most = min(settings.chunk_size, settings.hybrid_threshold)
    facts: dict[int, tuple[int, list[int]]] = {}
    for db in ctx.router.databases():
        mine = [o for o in owners if ctx.router.database(shard_of(o)) is db]
        if mine:
            facts.update(db.run_interaction("fanout_facts", graph.fanout_facts_txn, mine, most))
    pipe = ctx.redis.pipeline(transaction=False)
    feeds = feed_store(ctx, pipe)
    for e in events:
        data = e.data
        if isinstance(data, MediaRendered):
            feeds.add_own(data.owner, data.media_id)
            spread(ctx, feeds, "push", data.media_id, data.owner, facts[data.owner])
        elif isinstance(data, MediaDeleted):
            feeds.remove_own(data.owner, data.media_id)
            spread(ctx, feeds, "remove", data.media_id, data.owner, facts[data.owner])
    pipe.execute()


def spread(ctx: WorkerContext, feeds: FeedStore, op: str, media_id: int, owner: int,
           facts: tuple[int, list[int]]) -> None:
    """Push a medium to (or remove it from) the feeds of its owner and followers, given
    the owner's followers count and (when few enough to push here) followers."""
    settings = ctx.config.feeds
    count, followers = facts
    how = mode(count, settings.hybrid_threshold, settings.chunk_size)
    apply(feeds, op, media_id, [owner])
    if how is Mode.PULL:
        if op == "push":
            feeds.mark_pulled(owner)
        return
    if how is Mode.INLINE:
        apply(feeds, op, media_id, followers)
        return
    db = ctx.router.database(shard_of(owner))
    starts = db.run_interaction("chunk_starts", graph.chunk_starts, owner, settings.chunk_size)
    payloads = [{"op": op, "media": media_id, "owner": owner, "first": c.first, "end": c.end}
                for c in chunks(starts)]
    submit_tasks(ctx, "fanout", payloads, shard=shard_of(owner))
    log.info("fanout: %s of %d to %d followers in %d chunk tasks", op, media_id, count,
             len(payloads))


def apply(feeds: FeedStore, op: str, media_id: int, users: list[int]) -> None:
    if op == "push":
        feeds.push(media_id, users)
    else:
        feeds.remove([media_id], users)


@task_handler("fanout")
def fanout_chunk(ctx: WorkerContext, payload: Any) -> None:
    """One chunk of a large fan-out: the followers in [first, end) of the owner.

    A push reads its followers, then writes their feeds, unordered against the consumer
    applying an unfollow (``FollowerRemoved``) or the medium's deletion meanwhile, or before
    (a chunk run again). So it writes nothing once the medium is deleted, and after writing
    reads its followers again and takes the medium back out of the feeds of those who are
    no longer followers (all of them if the medium was deleted since). An unfollow or a
    deletion committed before that second read is seen by it; one committed after it is
    applied by the consumer after our write, and removes the medium itself."""
    op, media_id = payload["op"], payload["media"]
    feeds = feed_store(ctx)
    followers = _chunk(ctx, payload)
    apply(feeds, op, media_id, followers)
    if op == "push" and followers:
        still = set(_chunk(ctx, payload))
        left = [f for f in followers if f not in still]
        if left:
            feeds.remove([media_id], left)
            log.info("fanout: %d taken back out of %d feeds (unfollowed or deleted "
                     "meanwhile)", media_id, len(left))


def _chunk(ctx: WorkerContext, payload: Any) -> list[int]:
    """The followers of a chunk task (of a push: none unless the medium is ready)."""
    owner = payload["owner"]
    ready = payload["media"] if payload["op"] == "push" else None
    return ctx.router.database(shard_of(owner)).run_interaction(
        "followers", graph.followers_range, owner, payload["first"], payload["end"], ready)


def followers_changed(ctx: WorkerContext, feeds: FeedStore, events: list[RecordedEvent]
                      ) -> None:
    """A run of FollowerAdded/FollowerRemoved: the followees' recent media read once, then
    merged into or removed from each follower's feed, in log order, in one round trip."""
    followees = sorted({e.data.followee for e in events})  # type: ignore[attr-defined]
    pulled = feeds.pulled(followees)  # merged at read time: nothing to merge now
    recent = recent_own(feeds, ctx.router, followees)
    pipe = ctx.redis.pipeline(transaction=False)
    writes = feed_store(ctx, pipe)
    for e in events:
        data = e.data
        media_ids = recent.get(data.followee, [])  # type: ignore[attr-defined]
        if not media_ids:
            continue
        if isinstance(data, FollowerAdded) and data.followee not in pulled:
            writes.merge(data.follower, media_ids)
        elif isinstance(data, FollowerRemoved):
            writes.remove(media_ids, [data.follower])
    if len(pipe):
        pipe.execute()
