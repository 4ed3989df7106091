"""Consumers' progress through the log: checkpoints, lag, job keys, retry delays. Pure: no I/O.

A consumer keeps one checkpoint per logical shard: the position of the last event it has
fully applied. "Advance consumer C on shard S" is one Gearman job whose unique key is
``C:S`` (gearmand coalesces repeated kicks of one key), and the worker running it holds a
PostgreSQL advisory lock derived from the same pair.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from server.domain.log import Position

RUNNING = "running"
STOPPED = "stopped"
#: The channel the events table's trigger notifies at commit.
NOTIFY_CHANNEL = "shutterlog_events"
#: gearmand refuses longer unique keys.
MAX_JOB_KEY = 64


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a consumer stands in one shard's log."""

    consumer: str
    shard: int
    position: Position
    status: str = RUNNING
    reason: str | None = None  # why it stopped
    failures: int = 0  # failed attempts at the batch after ``position``
    last_error: str | None = None

    @property
    def stopped(self) -> bool:
        return self.status == STOPPED


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a checkpoint is behind its shard's head."""

    events: int  # events of the consumer's types after the checkpoint (up to a cap's scan)
    capped: bool  # the scan stopped at its cap: there may be more
    seconds: float  # age of the oldest wanted event not yet applied; 0 when caught up

    @property
    def behind(self) -> bool:
        return self.events > 0


def lag(wanted: int, scanned: int, cap: int, oldest_wanted_ms: int | None,
        now_ms: int) -> Lag:
    """The lag of a checkpoint followed by ``scanned`` events (counted up to ``cap``), of
    which ``wanted`` are of the consumer's types, the oldest of those written at
    ``oldest_wanted_ms``, seen at ``now_ms``. Events of other types are no lag: the consumer
    has nothing to do for them (the relay moves it past them now and then, ``kick_due``)."""
    capped = scanned >= cap
    if wanted <= 0 or oldest_wanted_ms is None:
        return Lag(0, capped, 0.0)
    return Lag(min(wanted, cap), capped, max(0.0, (now_ms - oldest_wanted_ms) / 1000))


#: Events of other types after a checkpoint before the relay kicks its consumer anyway, so
#: that the checkpoint moves past them and the scans behind it stay short. Every scan walks
#: the events of other types waiting behind each such checkpoint: with 1,000, a dozen
#: consumers each behind a few hundred events they do not read cost PostgreSQL 67 ms per
#: database and scan; with 100, 14-17 ms, for a cheap sweep job per pair every 100 events.
SWEEP_AFTER = 100


def kick_due(lag: Lag, scanned: int) -> bool:
    """Whether the relay's scan should kick a pair: it has events to apply, or enough events
    of other types behind its checkpoint to be worth moving past."""
    return lag.behind or lag.capped or scanned >= SWEEP_AFTER


def parse_notification(payload: str) -> tuple[int, frozenset[str] | None]:
    """The shard and the event types appended, from the log's notification payload
    ``SHARD:TYPE,TYPE`` (the trigger of ``0004_notify_types.sql``); a bare ``SHARD`` (the
    trigger before it) names no types, which means every consumer. ValueError if malformed."""
    shard, sep, types = payload.partition(":")
    if not shard.isdigit():
        raise ValueError(f"not a log notification: {payload!r}")
    return int(shard), frozenset(types.split(",")) if sep and types else None


def job_key(consumer: str, shard: int) -> str:
    """The Gearman unique key of "advance ``consumer`` on ``shard``"; ValueError if too long."""
    key = f"{consumer}:{shard}"
    if len(key.encode()) > MAX_JOB_KEY:
        raise ValueError(f"consumer name {consumer!r} is too long for a Gearman unique key "
                         f"({MAX_JOB_KEY} bytes with ':SHARD')")
    return key


def parse_job_key(key: str) -> tuple[str, int]:
    """(consumer, shard) of a job key; ValueError if it is not one."""
    consumer, sep, shard = key.rpartition(":")
    if not sep or not consumer or not shard.isdigit():
        raise ValueError(f"not a consumer job key: {key!r}")
    return consumer, int(shard)


def lock_key(consumer: str, shard: int) -> int:
    """The advisory lock (one signed bigint) held while advancing ``consumer`` on ``shard``.

    50 bits of a hash of the name, then the 13-bit shard. Bigint keys never collide with the
    two-int4 keys the id function and migrations use (PostgreSQL keeps the forms apart); two
    names sharing a hash would only serialize each other, never break anything.
    """
    digest = int.from_bytes(hashlib.blake2b(consumer.encode(), digest_size=8).digest(), "big")
    key = (digest >> 14) << 13 | shard  # 50 bits of hash, 13 of shard: 63 bits, non-negative
    return key


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``base`` doubling, at most
    ``cap``."""
    if attempt < 1:
        raise ValueError(f"attempt must be 1 or more, got {attempt}")
    return float(min(cap, base * 2 ** min(attempt - 1, 62)))
