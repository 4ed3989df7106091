"""Rate limiting and token lookup in one Redis round trip.

One Lua script looks the access token up (``tok:HASH``) and runs the token-bucket arithmetic
of ``server/domain/ratelimit.py`` on the client address's bucket and, for a valid token, the
token's bucket: it takes a token from both or from neither. Redis's own clock (``TIME``)
times the buckets, so every API process agrees. Buckets expire once they would be full.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from server.domain.ratelimit import Verdict
from server.store.tokens import TokenInfo, token_key

SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
local record = false
local keys = {KEYS[2]}
local caps = {tonumber(ARGV[1])}
if ARGV[4] == '1' then
  local r = redis.call('HGETALL', KEYS[1])
  if #r > 0 then
    record = r
    table.insert(keys, KEYS[3])
    table.insert(caps, tonumber(ARGV[2]))
  end
end
local tokens = {}
local worst, worst_wait = 0, 0
for i, key in ipairs(keys) do
  local cap = caps[i]
  local rate = cap / window
  local tok = cap
  local b = redis.call('HMGET', key, 't', 'ms')
  if b[1] then
    tok = math.min(cap, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate)
  end
  tokens[i] = tok
  if tok < 1 then
    local wait = (1 - tok) / rate
    if wait > worst_wait then worst, worst_wait = i, wait end
  end
end
if worst > 0 then
  return {record, 0, caps[worst], 0, math.max(1, math.ceil(worst_wait / 1000))}
end
local tight = 1
for i, key in ipairs(keys) do
  tokens[i] = tokens[i] - 1
  redis.call('HSET', key, 't', tostring(tokens[i]), 'ms', tostring(now))
  redis.call('PEXPIRE', key, window)
  if tokens[i] < tokens[tight] then tight = i end
end
return {record, 1, caps[tight], math.floor(tokens[tight]), 0}
"""


@dataclass(frozen=True)
class Limits:
    per_ip: int
    per_token: int
    window_s: int


class RateLimiter:
    """Checks a request against its buckets and finds its token, in one script call."""

    def __init__(self, client: redis.Redis, limits: Limits) -> None:
        self.limits = limits
        self._script = client.register_script(SCRIPT)

    def check(self, token_hash: str | None, address: str) -> tuple[TokenInfo | None, Verdict]:
        """The token's record (None: no token, or not a valid one) and the verdict."""
        keys = [token_key(token_hash or ""), f"rl:ip:{address}", f"rl:tok:{token_hash or ''}"]
        argv = [self.limits.per_ip, self.limits.per_token, self.limits.window_s * 1000,
                "1" if token_hash else "0"]
        record, allowed, limit, remaining, retry = self._script(keys=keys, args=argv)
        info = None
        if record:
            info = TokenInfo.from_fields(dict(zip(record[::2], record[1::2], strict=True)))
        return info, Verdict(bool(allowed), int(limit), int(remaining), int(retry))
