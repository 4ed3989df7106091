"""The real-time history and fan-in in Redis: one capped stream per source, and PUBLISH.

Keys (README, "Redis keys"), all under the store's ``prefix`` (``rt:`` live; the replay CLI
may build elsewhere):

- ``{prefix}{source}``: a stream of the source's messages (field ``m``: the JSON body), at
  most ``size`` entries, expiring ``ttl_ms`` after the last publish. Its ids are the cursors
  clients resume from.
- ``{prefix}{source}:meta``: hash; per logical shard the position (zero-padded, so strings
  compare in log order) of the last event published from that shard, which makes a
  re-applied batch publish nothing again; ``low``: the newest id trimmed away or, before
  anything was, the history's **floor** (a resume from before it cannot be served).
  A history begins with its floor: an id made by adding an entry and trimming it at once,
  so it is below every message of the history and above every id the source had before (a
  history that expired is older by at least ``ttl_ms``; a feed's restarted history keeps
  its stream key, whose ids only grow). A cursor from an earlier history is then below the
  floor and gets ``reset`` rather than the new history's messages.
- pub/sub channel ``{prefix}{source}``: each message is ``{cursor} {body}``.
- ``{prefix}live:feed:{user}`` (string, PX) and ``{prefix}live`` (sorted set of users by
  expiry): the home feeds someone subscribes to (below).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from server.domain.log import Position
from server.domain.realtime import Cursor, Message, must_reset, parse_cursor

#: Begin a new history of a source at a floor (above every earlier id of the stream key,
#: below every later one). Prefixed to the scripts below.
_BEGIN = """
local function begin(stream, meta)
  local floor = redis.call('XADD', stream, '*', 'm', '')
  redis.call('XTRIM', stream, 'MAXLEN', 0)
  redis.call('HSET', meta, 'low', floor)
end
"""

#: Publish one message to one source unless its shard already published this position or a
#: later one, or (a feed) its live marker is missing; a source without a history begins
#: one. KEYS: stream, meta, marker or "". ARGV: shard, padded position, body, cap, ttl ms,
#: "1" to PUBLISH too (a replay rebuilding histories appends without publishing: clients
#: got those messages when they happened).
_PUBLISH = _BEGIN + """
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local last = redis.call('HGET', KEYS[2], ARGV[1])
if last and last >= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then begin(KEYS[1], KEYS[2]) end
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local cap = tonumber(ARGV[4])
local n = redis.call('XLEN', KEYS[1])
if n > cap then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - cap)
  redis.call('HSET', KEYS[2], 'low', old[#old][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', cap)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[6] == '1' then redis.call('PUBLISH', KEYS[1], id .. ' ' .. ARGV[3]) end
return 1
"""


#: Mark a feed live; one that was not begins a new history (posts were dropped meanwhile).
#: KEYS: marker, stream, meta, index. ARGV: ttl ms, expiry ms, user.
_LIVE = _BEGIN + """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  begin(KEYS[2], KEYS[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[3])
return 1
"""


@dataclass(frozen=True)
class History:
    """What a source's history holds after a cursor: the messages in order, the newest
    cursor (its floor with no message yet, ``START`` with no history), and whether the cursor
    is too old to be served."""

    messages: list[Message]
    last: str
    reset: bool


def _padded(shard: int, position: Position) -> tuple[str, str]:
    return str(shard), f"{position.txid:020d}.{position.id:020d}"


class RealtimeStore:
    """Histories and pub/sub of the real-time sources, under ``prefix``."""

    def __init__(self, client: redis.Redis, size: int, ttl_ms: int, prefix: str = "rt:",
                 publish: bool = True) -> None:
        self.redis = client
        self.publish_too = publish
        self.size = size
        self.ttl_ms = ttl_ms
        self.prefix = prefix
        self._publish = client.register_script(_PUBLISH)
        self._live = client.register_script(_LIVE)

    def channel(self, source: str) -> str:
        """The Redis stream key and pub/sub channel of ``source``."""
        return f"{self.prefix}{source}"

    def source_of(self, channel: str | bytes) -> str:
        name = channel.decode() if isinstance(channel, bytes) else channel
        return name[len(self.prefix):]

    def publish(self, items: Iterable[tuple[str, int, Position, str]]) -> int:
        """Append and publish (source, shard, position, body) items, in order, in one round
        trip; items already published (same shard, same or later position) are skipped, and
        so are ``feed:`` items whose feed is not live. Returns how many were new."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for source, shard, position, body in items:
            key = self.channel(source)
            field, pos = _padded(shard, position)
            marker = self._marker(source) if source.startswith("feed:") else ""
            self._publish(keys=[key, f"{key}:meta", marker],
                          args=[field, pos, body, self.size, self.ttl_ms,
                                "1" if self.publish_too else "0"], client=pipe)
            n += 1
        return sum(int(r) for r in pipe.execute()) if n else 0

    # --- live feeds ----------------------------------------------------------------------
    # A home feed's source is only written while someone subscribes to it (publishing every
    # post to every follower's feed source would double the fan-out): ``{prefix}live:{source}``
    # marks it live (expiring ``ttl_ms`` after the last refresh) and ``{prefix}live`` indexes
    # the live users by expiry. Marking a feed live that was not begins a new history (at a
    # floor above the old one's ids): it covers, without a hole, everything since.

    def _marker(self, source: str) -> str:
        return f"{self.prefix}live:{source}"

    def mark_live(self, users: Iterable[int], now_ms: int) -> None:
        """Mark the users' feeds live (refresh them); a feed that was not live begins a new
        history (a cursor from the old one is then reset)."""
        pipe = self.redis.pipeline(transaction=False)
        for user in users:
            source = f"feed:{user}"
            key = self.channel(source)
            self._live(keys=[self._marker(source), key, f"{key}:meta", f"{self.prefix}live"],
                       args=[self.ttl_ms, now_ms + self.ttl_ms, user], client=pipe)
        pipe.execute()

    def live_feeds(self, now_ms: int) -> list[int]:
        """Users whose feed someone subscribes to (forgetting expired ones)."""
        index = f"{self.prefix}live"
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(index, "-inf", now_ms)
        pipe.zrange(index, 0, -1)
        return [int(u) for u in pipe.execute()[1]]

    def history(self, source: str, after: str | None) -> History:
        """The messages of ``source`` after the cursor ``after`` (None: none, only the newest
        cursor: the newest message's or, with none, the floor's), read atomically with the
        trim mark."""
        key = self.channel(source)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(f"{key}:meta", "low")
        pipe.xrevrange(key, count=1)
        if after is not None:
            pipe.xrange(key, min=f"({after}" if after != "0-0" else "-", count=self.size + 1)
        low, newest, *rest = pipe.execute()
        last = newest[0][0].decode() if newest else low.decode() if low else None
        if after is None:
            return History([], last or "0-0", False)
        low_c: Cursor | None = parse_cursor(low.decode()) if low else None
        if must_reset(parse_cursor(after), low_c,
                      parse_cursor(last) if last is not None else None):
            return History([], last or "0-0", True)
        messages = [Message.parse(i.decode(), f[b"m"].decode()) for i, f in rest[0]]
        return History(messages, last or "0-0", False)
