"""Tags in Redis (a projection of the log, written by the ``tags`` consumer).

- ``tag:{name}``: sorted set of the ids of ready public media carrying the tag, scored like
  feeds (``millis_of(id)``); its size is the tag's ``media_count``. Not capped, so the count
  is exact and re-applying an event (ZADD/ZREM of the same member) changes nothing.
- ``tags:names``: every tag with media, all scored 0, so ZRANGEBYLEX finds names by prefix
  (``/v1/tags/search``). A tag leaves it when its last medium goes (atomically, in Lua, so a
  medium tagged meanwhile by another shard's consumer cannot lose its tag's name).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from server.domain.feeds import score, score_range, within

NAMES = "tags:names"
_ADD = """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[1], ARGV[2])
  redis.call('ZADD', 'tags:names', 0, string.sub(key, 5))
end
return #KEYS
"""
_REMOVE = """
for i, key in ipairs(KEYS) do
  redis.call('ZREM', key, ARGV[1])
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', 'tags:names', string.sub(key, 5)) end
end
return #KEYS
"""


def tag_key(name: str) -> str:
    return f"tag:{name}"


class TagStore:
    """The tag sets and the name index."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)

    def add(self, media_id: int, tags: Iterable[str]) -> None:
        keys = [tag_key(t) for t in tags]
        if keys:
            self._add(keys=keys, args=[score(media_id), media_id])

    def remove(self, media_id: int, tags: Iterable[str]) -> None:
        keys = [tag_key(t) for t in tags]
        if keys:
            self._remove(keys=keys, args=[media_id])

    def count(self, name: str) -> int:
        return int(self.redis.zcard(tag_key(name)))

    def counts(self, names: list[str]) -> list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for n in names:
            pipe.zcard(tag_key(n))
        return [int(c) for c in pipe.execute()]

    def page(self, name: str, max_id: int | None, min_id: int | None, limit: int) -> list[int]:
        """Ids tagged ``name`` between the bounds (exclusive), newest first."""
        hi, lo = score_range(max_id, min_id)
        members = self.redis.zrevrangebyscore(tag_key(name), hi, lo, start=0, num=limit + 8)
        ids = sorted((int(m) for m in members), reverse=True)
        return [i for i in ids if within(i, max_id, min_id)][:limit]

    def search(self, prefix: str, limit: int) -> list[str]:
        """Tag names starting with ``prefix``, in name order."""
        found = self.redis.zrangebylex(NAMES, f"[{prefix}", f"[{prefix}\xff", start=0,
                                       num=limit)
        return [n.decode() for n in found]
