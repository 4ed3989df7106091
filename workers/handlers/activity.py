"""The ``activity`` consumer: what happened to each user's things, in ``activity:{user}``.

Likes and comments of a user's media (never their own), mentions of a user in captions and
comments, follows and follow requests, and linked accounts that share-out had to unlink
because their service refused the credentials. The undoing of a cause (an unlike, a deleted comment,
an unfollow) removes its item. Items are keyed by cause (``server/domain/activity.py``), so
an event applied again rewrites the same item.
"""

from __future__ import annotations

from collections import defaultdict

from server.domain import activity as act
from server.domain import tags as tagging
from server.domain.accounts import username_shard
from server.domain.comments import CommentAdded, CommentDeleted
from server.domain.graph import FollowerAdded, FollowerRemoved, FollowerRequested
from server.domain.likes import MediaLiked, MediaUnliked
from server.domain.links import CREDENTIAL_DEAD, AccountUnlinked
from server.domain.log import RecordedEvent
from server.domain.media import MediaPosted
from server.store import accounts, comments
from server.store.activity import ActivityStore
from workers.consumers import consumer
from workers.context import WorkerContext

TYPES = ("MediaPosted", "MediaLiked", "MediaUnliked", "CommentAdded", "CommentDeleted",
         "FollowerAdded", "FollowerRequested", "FollowerRemoved", "AccountUnlinked")


def resolve(ctx: WorkerContext, usernames: tuple[str, ...]) -> list[int]:
    """The ids of the users with these usernames (unknown ones are left out)."""
    found = []
    for name in usernames:
        shard = username_shard(name, ctx.router.count)
        user = ctx.router.database(shard).run_interaction(
            "username_owner", accounts.username_owner, shard, name)
        if user is not None:
            found.append(user)
    return found


@consumer("activity", *TYPES, batch_size=500)
def activity(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    # The last operation on each (user, item key) in log order wins.
    ops: dict[int, dict[str, act.Item | None]] = defaultdict(dict)

    def add(user: int, item: act.Item) -> None:
        if user != item.actor:
            ops[user].pop(item.key, None)
            ops[user][item.key] = item

    def remove(user: int, key: str) -> None:
        ops[user].pop(key, None)
        ops[user][key] = None

    for e in events:
        d = e.data
        ms = e.created_ms
        if isinstance(d, MediaLiked):
            add(d.media_owner, act.Item(act.like_key(d.media_id, d.user_id), act.LIKE,
                                        d.user_id, ms, d.media_id))
        elif isinstance(d, MediaUnliked):
            remove(d.media_owner, act.like_key(d.media_id, d.user_id))
        elif isinstance(d, CommentAdded):
            add(d.media_owner, act.Item(act.comment_key(d.comment_id), act.COMMENT, d.author,
                                        ms, d.media_id, d.comment_id, d.text))
            for user in resolve(ctx, d.mentions):
                add(user, act.Item(act.mention_key(d.comment_id), act.MENTION, d.author, ms,
                                   d.media_id, d.comment_id, d.text))
        elif isinstance(d, CommentDeleted):
            remove(d.media_owner, act.comment_key(d.comment_id))
            found = ctx.router.database(e.shard).run_interaction(
                "comment", comments.get_txn, d.comment_id)
            for user in resolve(ctx, tagging.mentions(found.text) if found else ()):
                remove(user, act.mention_key(d.comment_id))
        elif isinstance(d, MediaPosted):
            for user in resolve(ctx, d.mentions):
                add(user, act.Item(act.mention_key(d.media_id), act.MENTION, d.owner, ms,
                                   d.media_id, None, d.caption))
        elif isinstance(d, FollowerAdded):
            remove(d.followee, act.request_key(d.follower))
            add(d.followee, act.Item(act.follow_key(d.follower), act.FOLLOW, d.follower, ms))
        elif isinstance(d, FollowerRequested):
            add(d.followee, act.Item(act.request_key(d.follower), act.REQUEST, d.follower, ms))
        elif isinstance(d, FollowerRemoved):
            remove(d.followee, act.follow_key(d.follower))
            remove(d.followee, act.request_key(d.follower))
        elif isinstance(d, AccountUnlinked) and d.reason == CREDENTIAL_DEAD:
            ops[d.user_id][act.unlinked_key(e.id)] = act.Item(
                act.unlinked_key(e.id), act.UNLINKED, d.user_id, ms, text=d.service)
    pipe = ctx.redis.pipeline(transaction=False)  # every user's writes in one round trip
    store = ActivityStore(pipe, ctx.config.feeds.activity_size, ctx.key_prefix)
    for user, last in ops.items():
        store.remove(user, [k for k, item in last.items() if item is None])
        store.add(user, [item for item in last.values() if item is not None])
    if len(pipe):
        pipe.execute()

