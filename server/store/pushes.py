"""Push notifications waiting and sent, in Redis: collapse groups, dedupe records, rate caps.

Keys (``{r}`` the recipient, ``{g}`` the collapse group, ``{o}`` the id of the event that
opened the group's window):

- ``push:items:{r}:{g}`` hash: cause key to the cause (msgpack), waiting for the window;
- ``push:open:{r}:{g}`` string: ``{o}`` while a window is open (its task is scheduled);
- ``push:batch:{r}:{g}:{o}`` hash: the causes the window's task took (kept until it is done,
  so a task run again after a crash sends the same notification);
- ``push:done:{r}:{g}`` set: cause keys already notified (a batch the push consumer applies
  again never notifies them twice);
- ``push:sent:{notification id}`` string: ``sending`` while a send is in flight, then its
  outcome; a notification whose record exists is never sent again;
- ``push:rate:{r}`` sorted set: the groups notified in the last minute (the rate cap).

Every key but the waiting items expires after ``ttl`` seconds (``push.dedupe_ttl``).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import redis

from server.domain.notifications import Pending

_ADD = """
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
local open = redis.call('GET', KEYS[2])
if open then return open end
if n == 0 then return false end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""

_DRAIN = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    redis.call('HSET', KEYS[3], all[i], all[i + 1])
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
return redis.call('HVALS', KEYS[3])
"""

_DONE = """
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

_ALLOW = """
local now = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 61000)
return 1
"""

SENDING = "sending"


class PushQueue:
    """Collapse groups, dedupe records and rate caps of push notifications (Redis)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.r = client
        self.ttl = ttl
        self._add = client.register_script(_ADD)
        self._drain = client.register_script(_DRAIN)
        self._done = client.register_script(_DONE)
        self._allow = client.register_script(_ALLOW)

    def add(self, recipient: int, group: str, causes: Sequence[Pending], opener: int
            ) -> int | None:
        """Put ``causes`` in the group (leaving out those already notified); open a window
        marked ``opener`` unless one is open. Returns the open window's opener (None when
        nothing waits): the caller schedules the window's task when it is its own."""
        args: list[object] = [opener, self.ttl]
        for p in causes:
            args += [p.key, msgpack.packb(p.to_dict(), use_bin_type=True)]
        found = self._add(keys=[f"push:items:{recipient}:{group}",
                                f"push:open:{recipient}:{group}",
                                f"push:done:{recipient}:{group}"], args=args)
        return int(found) if found is not None else None

    def drain(self, recipient: int, group: str, opener: int) -> list[Pending]:
        """The causes of the window ``opener`` opened: taken from the group the first time
        (the next cause opens a new window), the same ones again on a later call."""
        found = self._drain(keys=[f"push:items:{recipient}:{group}",
                                  f"push:open:{recipient}:{group}",
                                  f"push:batch:{recipient}:{group}:{opener}"],
                            args=[opener, self.ttl])
        return [Pending.from_dict(msgpack.unpackb(v, raw=False)) for v in found]

    def done(self, recipient: int, group: str, opener: int, keys: Sequence[str]) -> None:
        """The window's causes are notified (or given up): never again, and its batch goes."""
        self._done(keys=[f"push:done:{recipient}:{group}",
                         f"push:batch:{recipient}:{group}:{opener}"], args=[self.ttl, *keys])

    def allow(self, recipient: int, group_id: str, now_ms: int, per_minute: int) -> bool:
        """Whether ``recipient`` may get the notification ``group_id`` under the rate cap (the
        same one asked again is allowed again: a retried task)."""
        return bool(self._allow(keys=[f"push:rate:{recipient}"],
                                args=[group_id, now_ms, per_minute]))

    def claim(self, notification_id: str) -> bool:
        """Take the right to send ``notification_id``: False when it was sent, or is being
        sent, or was given up (a record exists)."""
        return bool(self.r.set(f"push:sent:{notification_id}", SENDING, nx=True, ex=self.ttl))

    def settle(self, notification_id: str, outcome: str) -> None:
        """Record how sending ended (delivered, unregistered, failed: reason)."""
        self.r.set(f"push:sent:{notification_id}", outcome[:200], ex=self.ttl)

    def release(self, notification_id: str) -> None:
        """Forget a claim whose send is to be tried again (the service said: later)."""
        self.r.delete(f"push:sent:{notification_id}")

    def outcome(self, notification_id: str) -> str | None:
        """The record of ``notification_id``: sending, delivered, ... or None."""
        found = self.r.get(f"push:sent:{notification_id}")
        return found.decode() if isinstance(found, bytes) else None
