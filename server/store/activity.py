"""Activity feeds in Redis (a projection of the log, written by the ``activity`` consumer).

- ``activity:{user}``: sorted set of item keys (``server/domain/activity.py``: one per
  cause, e.g. ``l:{media}:{liker}``) scored by the cause's time in ms; newest first,
  at most ``feeds.activity_size`` items.
- ``activity:{user}:items``: hash of item key to the item as JSON.

Adding an item that exists rewrites it in place; removing one (an unlike, a deleted comment,
an unfollow) deletes both entries; trimming removes the oldest keys and their items. Each
operation is one Lua call, so the set and the hash never disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import redis

from server.domain.activity import Item

_ADD = """
local cap = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
end
local n = redis.call('ZCARD', KEYS[1])
if n > cap then
  local old = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
end
return n
"""
_REMOVE = """
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
return 1
"""


def keys(user: int, prefix: str = "") -> list[str]:
    return [f"{prefix}activity:{user}", f"{prefix}activity:{user}:items"]


class ActivityStore:
    """Activity feeds under ``prefix`` ("" live; a replay builds under its namespace's)."""

    def __init__(self, client: redis.Redis, size: int, prefix: str = "") -> None:
        self.redis = client
        self.size = size
        self.prefix = prefix
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)

    def add(self, user: int, items: list[Item]) -> None:
        args: list[int | str] = [self.size]
        for item in items:
            args += [item.created_ms, item.key, json.dumps(asdict(item), separators=(",", ":"))]
        if items:
            self._add(keys=keys(user, self.prefix), args=args)

    def remove(self, user: int, item_keys: list[str]) -> None:
        if item_keys:
            self._remove(keys=keys(user, self.prefix), args=item_keys)

    def page(self, user: int, before_ms: int | None, after_key: str | None, limit: int
             ) -> list[Item]:
        """Items newest first, starting after the item ``after_key`` of time ``before_ms``
        (the previous page's last), at most ``limit``."""
        zkey, hkey = keys(user, self.prefix)
        hi = str(before_ms) if before_ms is not None else "+inf"
        members = self.redis.zrevrangebyscore(zkey, hi, "-inf", start=0, num=limit + 64,
                                              withscores=True)
        picked: list[bytes] = []
        skipping = after_key is not None
        for member, _score in members:
            if skipping:
                # items of the cursor's millisecond up to and including the cursor item
                if member.decode() == after_key:
                    skipping = False
                continue
            picked.append(member)
            if len(picked) == limit:
                break
        if skipping:  # the cursor item is gone: restart strictly below its time
            picked = [m for m, s in members if before_ms is None or s < before_ms][:limit]
        if not picked:
            return []
        raw = self.redis.hmget(hkey, picked)
        return [Item(**json.loads(r)) for r in raw if r is not None]
