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
#: KEYS: the name index, then tag sets; ARGV: score, member, length of the sets' key prefix.
_ADD = """
local skip = tonumber(ARGV[3]) + 1
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[1], 0, string.sub(KEYS[i], skip))
end
return #KEYS - 1
"""
#: KEYS: the name index, then tag sets; ARGV: member, length of the sets' key prefix.
_REMOVE = """
local skip = tonumber(ARGV[2]) + 1
for i = 2, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('ZREM', KEYS[1], string.sub(KEYS[i], skip))
  end
end
return #KEYS - 1
"""


def tag_key(name: str) -> str:
    return f"tag:{name}"


class TagStore:
    """The tag sets and the name index."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.redis = client
        self.prefix = prefix  # "" live; a replay builds under its namespace's prefix
        self._names = prefix + NAMES
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)

    def update(self, changes: Iterable[tuple[int, Iterable[str], Iterable[str]]]) -> None:
        """For each (medium, tags it leaves, tags it joins), in order: one round trip for
        them all (a script call per medium and direction, pipelined)."""
        pipe = self.redis.pipeline(transaction=False)
        skip = len(self._key(""))
        for media_id, leaves, joins in changes:
            gone = [self._key(t) for t in leaves]
            if gone:
                self._remove(keys=[self._names, *gone], args=[media_id, skip], client=pipe)
            new = [self._key(t) for t in joins]
            if new:
                self._add(keys=[self._names, *new], args=[score(media_id), media_id, skip],
                          client=pipe)
        if len(pipe):
            pipe.execute()

    def _key(self, name: str) -> str:
        return self.prefix + tag_key(name)

    def count(self, name: str) -> int:
        return int(self.redis.zcard(self._key(name)))

    def counts(self, names: list[str]) -> list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for n in names:
            pipe.zcard(self._key(n))
        return [int(c) for c in pipe.execute()]

    def page(self, name: str, max_id: int | None, min_id: int | None, limit: int) -> list[int]:
        """Ids tagged ``name`` between the bounds (exclusive), newest first."""
        hi, lo = score_range(max_id, min_id)
        members = self.redis.zrevrangebyscore(self._key(name), hi, lo, start=0, num=limit + 8)
        ids = sorted((int(m) for m in members), reverse=True)
        return [i for i in ids if within(i, max_id, min_id)][:limit]

    def search(self, prefix: str, limit: int) -> list[str]:
        """Tag names starting with ``prefix``, in name order."""
        found = self.redis.zrangebylex(self._names, f"[{prefix}", f"[{prefix}\xff", start=0,
                                       num=limit)
        return [n.decode() for n in found]
