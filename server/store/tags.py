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

from server.domain.feeds import score
from server.store.feeds import page_of, queue_page

NAMES = "tags:names"
#: Many media's tag changes in one call. KEYS: the name index, then for each medium the
#: sets it leaves, then those it joins. ARGV: length of the sets' key prefix, then for each
#: medium: id, score, how many sets it leaves, how many it joins. A set emptied by a removal
#: leaves the name index (atomically, so a medium tagged meanwhile by another shard's consumer
#: cannot lose its tag's name).
_UPDATE = """
local skip = tonumber(ARGV[1]) + 1
local k = 2
for i = 2, #ARGV, 4 do
  local member, score = ARGV[i], ARGV[i + 1]
  for _ = 1, tonumber(ARGV[i + 2]) do
    redis.call('ZREM', KEYS[k], member)
    if redis.call('EXISTS', KEYS[k]) == 0 then
      redis.call('ZREM', KEYS[1], string.sub(KEYS[k], skip))
    end
    k = k + 1
  end
  for _ = 1, tonumber(ARGV[i + 3]) do
    redis.call('ZADD', KEYS[k], score, member)
    redis.call('ZADD', KEYS[1], 0, string.sub(KEYS[k], skip))
    k = k + 1
  end
end
return k - 2
"""
#: Media per script call (a call blocks Redis while it runs).
UPDATE_BATCH = 1000


def tag_key(name: str) -> str:
    return f"tag:{name}"


class TagStore:
    """The tag sets and the name index."""

    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.redis = client
        self.prefix = prefix  # "" live; a replay builds under its namespace's prefix
        self._names = prefix + NAMES
        self._update = client.register_script(_UPDATE)

    def update(self, changes: Iterable[tuple[int, Iterable[str], Iterable[str]]]) -> None:
        """For each (medium, tags it leaves, tags it joins), in order: one script call per
        ``UPDATE_BATCH`` media."""
        todo = [(m, [self._key(t) for t in gone], [self._key(t) for t in new])
                for m, gone, new in changes]
        todo = [t for t in todo if t[1] or t[2]]
        skip = len(self._key(""))
        for i in range(0, len(todo), UPDATE_BATCH):
            keys: list[str] = [self._names]
            args: list[int | str] = [skip]
            for media_id, gone, new in todo[i:i + UPDATE_BATCH]:
                keys += gone + new
                args += [media_id, score(media_id), len(gone), len(new)]
            self._update(keys=keys, args=args)

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
        pipe = self.redis.pipeline(transaction=False)
        queue_page(pipe, self._key(name), max_id, min_id, limit)
        return page_of(pipe.execute(), max_id, min_id, limit)

    def search(self, prefix: str, limit: int) -> list[str]:
        """Tag names starting with ``prefix``, in name order."""
        found = self.redis.zrangebylex(self._names, f"[{prefix}", f"[{prefix}\xff", start=0,
                                       num=limit)
        return [n.decode() for n in found]
