"""Operator statistics of the event log: counts by type and shard, size, time span."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from server.db import Txn


@dataclass
class LogStats:
    """The log of one physical database, or of all of them merged."""

    by_type: dict[str, int] = field(default_factory=dict)
    by_shard: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    @property
    def events(self) -> int:
        return sum(self.by_shard.values())

    def merge(self, other: LogStats) -> None:
        for t, n in other.by_type.items():
            self.by_type[t] = self.by_type.get(t, 0) + n
        for s, n in other.by_shard.items():
            self.by_shard[s] = self.by_shard.get(s, 0) + n
        self.bytes += other.bytes
        if other.oldest and (self.oldest is None or other.oldest < self.oldest):
            self.oldest = other.oldest
        if other.newest and (self.newest is None or other.newest > self.newest):
            self.newest = other.newest


def stats_txn(txn: Txn) -> LogStats:
    """Counts (a full scan of ``events``: an operator command, not a hot path) and size."""
    out = LogStats()
    for shard, type_, count in txn.fetchall(
        "SELECT shard, type, count(*) FROM events GROUP BY shard, type"
    ):
        out.by_type[type_] = out.by_type.get(type_, 0) + count
        out.by_shard[shard] = out.by_shard.get(shard, 0) + count
    row = txn.fetchone(
        "SELECT pg_total_relation_size('events'), min(created_at), max(created_at) FROM events"
    )
    if row:
        out.bytes, out.oldest, out.newest = row
    return out
