"""The counter cache: media like and comment counts in Redis, behind the PostgreSQL counter
columns (the truth).

Layout: hashes ``counts:{second}`` with fields ``{offset}:l`` (likes) and ``{offset}:c``
(comments), where ``second`` is the medium's creation second (``millis_of(id) // 1000``) and
``offset`` the id minus the smallest id of that second (at most 10 digits: short fields).
Instagram bucketed by ``id // 1000`` because its ids were dense; ours are not (13 shard and
10 sequence bits below the milliseconds), so ``id // 1000`` would put about one medium in
each hash and save nothing. A second holds every medium posted in it: up to 512 media keep
the hash within ``hash-max-listpack-entries 1024`` (the stack's Redis sets it), the compact
encoding that is the point of bucketing.

- The ``counters`` consumer writes exact values after the fact: for every medium whose likes
  or comments changed in a batch it reads the columns and HSETs them (one read per database
  per batch, however many likes a hot medium got). Writes through after commit from the API
  would race each other (two likes committing 5 then 6 may land 6 then 5); the consumer
  applies in log order and reads the latest value, so it converges.
- Readers read through: a miss (a flushed or new Redis) is refilled from PostgreSQL with
  HSETNX, which never overwrites the consumer's newer value. Single flight: the first reader
  of a missing key takes ``lease:counts:{id}`` (SET NX PX) and refills it; the others wait on
  the field appearing, polling briefly up to a deadline, and only read PostgreSQL themselves
  past it. There is no stale value to serve meanwhile: entries never expire, a miss means
  the whole hash was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import redis
from prometheus_client import Counter

REFILLS = Counter("shutterlog_counter_refills_total",
                  "Media counts read from PostgreSQL to refill the counter cache")
Loader = Callable[[list[int]], dict[int, tuple[int, int]]]


_SECOND = 1000 << 23  # ids per second


def slot(media_id: int) -> tuple[str, str]:
    """The hash and the field prefix of a medium's counts."""
    second, offset = divmod(media_id, _SECOND)
    return f"counts:{second}", str(offset)


def bucket(media_id: int) -> str:
    return slot(media_id)[0]


class CounterCache:
    """Read-through like and comment counts with single-flight refills."""

    def __init__(self, client: redis.Redis, load: Loader, lease_ms: int = 2000,
                 wait_s: float = 1.0, poll_s: float = 0.005, prefix: str = "") -> None:
        self.redis = client
        self.prefix = prefix  # "" live; a replay builds under its namespace's prefix
        self.load = load
        self.lease_ms = lease_ms
        self.wait_s = wait_s
        self.poll_s = poll_s

    def get(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """(likes, comments) of each medium."""
        wanted = list(dict.fromkeys(ids))
        found, missing = self._read(wanted)
        if missing:
            found.update(self._refill(missing))
        return found

    def set(self, values: dict[int, tuple[int, int]]) -> None:
        """Write exact values (the consumer, from the truth): one HSET per hash."""
        fields: dict[str, list[str | int]] = {}
        for media_id, (likes, comments) in values.items():
            key, f = slot(media_id)
            fields.setdefault(key, []).extend((f"{f}:l", likes, f"{f}:c", comments))
        pipe = self.redis.pipeline(transaction=False)
        for key, pairs in fields.items():
            pipe.execute_command("HSET", self.prefix + key, *pairs)
        pipe.execute()

    def _read(self, ids: list[int]) -> tuple[dict[int, tuple[int, int]], list[int]]:
        if not ids:
            return {}, []
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            key, f = slot(i)
            pipe.execute_command("HMGET", self.prefix + key, f"{f}:l", f"{f}:c")
        found: dict[int, tuple[int, int]] = {}
        missing: list[int] = []
        for i, (likes, comments) in zip(ids, pipe.execute(), strict=True):
            if likes is None or comments is None:
                missing.append(i)
            else:
                found[i] = (int(likes), int(comments))
        return found, missing

    def _refill(self, ids: list[int]) -> dict[int, tuple[int, int]]:
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.set(f"lease:counts:{i}", "1", nx=True, px=self.lease_ms)
        mine = [i for i, took in zip(ids, pipe.execute(), strict=True) if took]
        found: dict[int, tuple[int, int]] = {}
        if mine:
            # A refill that ended between our miss and our lease left the value: use it.
            found, again = self._read(mine)
            if found:
                self.redis.delete(*[f"lease:counts:{i}" for i in found])
            if again:
                found.update(self._fill(again))
        others = [i for i in ids if i not in found]
        deadline = time.monotonic() + self.wait_s
        while others and time.monotonic() < deadline:
            time.sleep(self.poll_s)  # waiting on a condition (the field), with a deadline
            got, others = self._read(others)
            found.update(got)
        if others:  # the refiller is late: read the truth ourselves
            found.update(self._fill(others))
        return found

    def _fill(self, ids: list[int]) -> dict[int, tuple[int, int]]:
        try:
            values = self.load(ids)
            REFILLS.inc(len(ids))
            pipe = self.redis.pipeline(transaction=False)
            for media_id, (likes, comments) in values.items():
                key, f = slot(media_id)
                pipe.execute_command("HSETNX", self.prefix + key, f"{f}:l", likes)
                pipe.execute_command("HSETNX", self.prefix + key, f"{f}:c", comments)
            pipe.execute()
        finally:
            self.redis.delete(*[f"lease:counts:{i}" for i in ids])
        return {i: values.get(i, (0, 0)) for i in ids}

