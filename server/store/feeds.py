"""Home feeds and users' recent media in Redis (a projection: rebuildable from PostgreSQL).

Keys (README, "Redis keys"), under the store's ``prefix`` ("" live; the replay CLI builds
under ``replay:{run}:`` and renames the keys over the live ones):

- ``feed:{user}``: sorted set of media ids (decimal strings) scored by ``millis_of(id)``;
  at most ``feeds.size`` entries. Written by the ``fanout`` consumer (pushes, follow merges,
  removals); read by ``GET /v1/users/self/feed``.
- ``umedia:{user}``: the same for a user's own recent ready media (``feeds.user_media_size``):
  merged into a new follower's feed, and into followers' feeds at read time when the user
  is not pushed (hybrid fan-out).
- ``fanout:pulled``: set of users whose posts were not pushed (more followers than
  ``feeds.hybrid_threshold`` when they posted): readers merge their ``umedia``.
- ``lease:feed:{user}``: who is rebuilding a lost feed (SET NX PX).

Both sorted sets hold the member ``-`` (score 0) once complete. A set without it was lost
(Redis flushed, a new replica) and has at most what pushes added since: it is rebuilt from
PostgreSQL when next read (pushes never wait for that, and a rebuild adds to what they
added, so a post that races a rebuild is kept either way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis

from zope.interface import implementer

from server.domain.feeds import COMPLETE, score, score_bounds, within
from server.interfaces import IFeedStore, IShardRouter
from server.store import media

#: Add one member to many sorted sets, each trimmed to its newest ARGV[1] entries (the
#: completeness marker, the lowest score, is kept). ARGV: cap, score, member.
_PUSH = """
local cap = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('ZADD', key, ARGV[2], ARGV[3]) == 1 then
    local n = redis.call('ZCARD', key)
    if n > cap then
      local m = redis.call('ZSCORE', key, '-') and 1 or 0
      if n - m > cap then redis.call('ZREMRANGEBYRANK', key, m, n - cap - 1) end
    end
  end
end
return #KEYS
"""
#: Add many members to one sorted set, then trim as above. ARGV: cap, complete (1: also set
#: the marker), then score, member pairs.
_MERGE = """
local cap = tonumber(ARGV[1])
local key = KEYS[1]
if ARGV[2] == '1' then redis.call('ZADD', key, 0, '-') end
for i = 3, #ARGV, 2 do redis.call('ZADD', key, ARGV[i], ARGV[i + 1]) end
local n = redis.call('ZCARD', key)
local m = redis.call('ZSCORE', key, '-') and 1 or 0
if n - m > cap then redis.call('ZREMRANGEBYRANK', key, m, n - cap - 1) end
return n
"""
#: Remove members (ARGV) from many sorted sets (KEYS): like push, one call for many feeds,
#: and a script, so that it queues in a pipeline with the others.
_REMOVE = """
for _, key in ipairs(KEYS) do redis.call('ZREM', key, unpack(ARGV)) end
return #KEYS
"""
#: Keys per push call: one script call carries many feeds (one command to pack and send,
#: instead of two per feed). Redis Cluster would need them grouped by hash slot first.
PUSH_BATCH = 1000
PULLED = "fanout:pulled"


def feed_key(user: int) -> str:
    return f"feed:{user}"


def umedia_key(user: int) -> str:
    return f"umedia:{user}"


@implementer(IFeedStore)
class FeedStore:
    """Feeds and recent media of users in one Redis."""

    def __init__(self, client: redis.Redis, size: int, user_media_size: int,
                 prefix: str = "") -> None:
        self.redis = client
        self.size = size
        self.user_media_size = user_media_size
        self.prefix = prefix  # "" live; a replay builds under its namespace's prefix
        self._pulled = prefix + PULLED
        self._push = client.register_script(_PUSH)
        self._merge = client.register_script(_MERGE)
        self._remove = client.register_script(_REMOVE)

    def _feed(self, user: int) -> str:
        return self.prefix + feed_key(user)

    def _umedia(self, user: int) -> str:
        return self.prefix + umedia_key(user)

    # --- writes (the fanout consumer) ---------------------------------------------------------

    def push(self, media_id: int, users: Sequence[int]) -> None:
        args = (self.size, score(media_id), media_id)
        for i in range(0, len(users), PUSH_BATCH):
            self._push(keys=[self._feed(u) for u in users[i:i + PUSH_BATCH]], args=args)

    def merge(self, user: int, media_ids: Iterable[int], complete: bool = False) -> None:
        self._add(self._feed(user), media_ids, self.size, complete)

    def remove(self, media_ids: Sequence[int], users: Sequence[int]) -> None:
        if not media_ids:
            return
        for i in range(0, len(users), PUSH_BATCH):
            self._remove(keys=[self._feed(u) for u in users[i:i + PUSH_BATCH]],
                         args=list(media_ids))

    def add_own(self, owner: int, media_id: int) -> None:
        self._add(self._umedia(owner), [media_id], self.user_media_size, False)

    def remove_own(self, owner: int, media_id: int) -> None:
        self.redis.execute_command("ZREM", self._umedia(owner), media_id)

    def set_own(self, owner: int, media_ids: Iterable[int]) -> None:
        self._add(self._umedia(owner), media_ids, self.user_media_size, True)

    def mark_pulled(self, owner: int) -> None:
        self.redis.execute_command("SADD", self._pulled, owner)

    def _add(self, key: str, media_ids: Iterable[int], cap: int, complete: bool) -> None:
        args: list[int | str] = [cap, "1" if complete else "0"]
        for m in media_ids:
            args += [score(m), m]
        if len(args) > 2 or complete:
            self._merge(keys=[key], args=args)

    # --- reads --------------------------------------------------------------------------------

    def page(self, user: int, max_id: int | None, min_id: int | None, limit: int
             ) -> tuple[list[int], bool]:
        return self._page(self._feed(user), max_id, min_id, limit)

    def own(self, owner: int, max_id: int | None, min_id: int | None, limit: int
            ) -> tuple[list[int], bool]:
        return self._page(self._umedia(owner), max_id, min_id, limit)

    def owns(self, owners: Sequence[int], max_id: int | None, min_id: int | None, limit: int
             ) -> dict[int, tuple[list[int], bool]]:
        return dict(zip(owners, self._pages([self._umedia(o) for o in owners], max_id, min_id,
                                            limit), strict=True))

    def newer(self, user: int, owners: Sequence[int], media_id: int, limit: int) -> int:
        """How many distinct ids at or above ``media_id`` the feed of ``user`` and the recent
        media of ``owners`` hold together, counted up to ``limit``: the rank, in the merged
        feed, of the newest id below ``media_id``."""
        keys = [self._feed(user), *(self._umedia(o) for o in owners)]
        found = self._pages(keys, None, media_id - 1, limit)
        return min(limit, len({i for ids, _ in found for i in ids}))

    def pulled(self, owners: Sequence[int]) -> set[int]:
        if not owners:
            return set()
        flags = self.redis.execute_command("SMISMEMBER", self._pulled, *owners)
        return {o for o, f in zip(owners, flags, strict=True) if f}

    def _page(self, key: str, max_id: int | None, min_id: int | None, limit: int
              ) -> tuple[list[int], bool]:
        return self._pages([key], max_id, min_id, limit)[0]

    def _pages(self, keys: Sequence[str], max_id: int | None, min_id: int | None, limit: int
               ) -> list[tuple[list[int], bool]]:
        """Each set's page and completeness, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        step = 1
        for key in keys:
            pipe.execute_command("ZSCORE", key, COMPLETE)
            step = 1 + queue_page(pipe, key, max_id, min_id, limit)
        out = pipe.execute()
        return [(page_of(out[i + 1:i + step], max_id, min_id, limit), out[i] is not None)
                for i in range(0, len(out), step)]

    def take_rebuild(self, user: int, lease_ms: int) -> bool:
        return bool(self.redis.set(f"lease:feed:{user}", "1", nx=True, px=lease_ms))

    def drop_rebuild(self, user: int) -> None:
        self.redis.delete(f"lease:feed:{user}")


def queue_page(pipe: Any, key: str, max_id: int | None, min_id: int | None, limit: int
               ) -> int:
    """Queue on ``pipe`` the reads of the ids of ``key`` (a sorted set scored like feeds)
    strictly between the bounds, exactly whatever the number of ids per millisecond
    (``score_bounds``); returns how many replies they take (``page_of`` reads them)."""
    hi, lo, edges = score_bounds(max_id, min_id)
    pipe.execute_command("ZREVRANGEBYSCORE", key, hi, lo, "LIMIT", 0, limit)
    for edge in edges:
        pipe.execute_command("ZRANGEBYSCORE", key, edge, edge)
    return 1 + len(edges)


def page_of(replies: Sequence[list[bytes]], max_id: int | None, min_id: int | None,
            limit: int) -> list[int]:
    """The page ``queue_page``'s replies make: ids newest first, within the bounds."""
    ids = [int(m) for found in replies for m in found if m != COMPLETE.encode()]
    return sorted((i for i in ids if within(i, max_id, min_id)), reverse=True)[:limit]


def recent_own(feeds: IFeedStore, router: IShardRouter, owners: Sequence[int],
               max_id: int | None = None, min_id: int | None = None, limit: int | None = None
               ) -> dict[int, list[int]]:
    """Each owner's recent ready media (newest first, within the bounds), from Redis; an
    owner's set found incomplete is first rebuilt from PostgreSQL."""
    size = limit or feeds.user_media_size  # type: ignore[attr-defined]
    found = feeds.owns(owners, max_id, min_id, size) if owners else {}
    out: dict[int, list[int]] = {}
    for owner, (ids, complete) in found.items():
        if not complete:
            truth = media.recent_of_owners(router, [owner],
                                           feeds.user_media_size)  # type: ignore[attr-defined]
            feeds.set_own(owner, truth)
            ids = [i for i in truth if within(i, max_id, min_id)][:size]
        out[owner] = ids
    return out
