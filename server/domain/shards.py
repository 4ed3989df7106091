"""The shard map: which physical database (DSN) holds each logical shard. Pure: no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.domain.ids import MAX_SHARDS

_ENTRY = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*=\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class ShardRange:
    """Logical shards ``first..last`` (inclusive) live in the database at ``dsn``."""

    first: int
    last: int
    dsn: str

    def __contains__(self, shard: object) -> bool:
        return isinstance(shard, int) and self.first <= shard <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}={self.dsn}"


@dataclass(frozen=True, slots=True)
class ShardMap:
    """Ranges covering every logical shard ``0..count-1`` exactly once."""

    count: int
    ranges: tuple[ShardRange, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        owner: list[str | None] = [None] * self.count
        for r in self.ranges:
            if r.first > r.last:
                raise ValueError(f"range {r.first}-{r.last} is empty")
            if r.last >= self.count:
                raise ValueError(
                    f"range {r.first}-{r.last} goes past the last shard {self.count - 1}"
                )
            for s in range(r.first, r.last + 1):
                if owner[s] is not None:
                    raise ValueError(f"shard {s} is mapped twice")
                owner[s] = r.dsn
        missing = [s for s, o in enumerate(owner) if o is None]
        if missing:
            raise ValueError(f"shards not mapped to any database: {_ranges_text(missing)}")

    @classmethod
    def parse(cls, count: int, entries: list[str] | tuple[str, ...]) -> ShardMap:
        """Read ``["0-7=postgresql://...", "8-15=..."]``; ValueError names the bad entry."""
        ranges = []
        for number, entry in enumerate(entries, 1):
            m = _ENTRY.match(entry)
            if not m:  # the entry itself is not shown: its DSN may hold a password
                raise ValueError(f"entry {number} is not a 'FIRST-LAST=DSN' entry "
                                 "(such as '0-7=postgresql://host/db')")
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) is not None else first
            ranges.append(ShardRange(first, last, m.group(3)))
        return cls(count, tuple(ranges))

    @classmethod
    def split(cls, count: int, dsns: list[str]) -> ShardMap:
        """Spread ``count`` shards over ``dsns`` in contiguous, near-equal ranges."""
        if not dsns or len(dsns) > count:
            raise ValueError("need between 1 and shard-count databases")
        per, extra = divmod(count, len(dsns))
        ranges, first = [], 0
        for i, dsn in enumerate(dsns):
            size = per + (1 if i < extra else 0)
            ranges.append(ShardRange(first, first + size - 1, dsn))
            first += size
        return cls(count, tuple(ranges))

    def dsn_for(self, shard: int) -> str:
        """The DSN of the database holding ``shard``; ValueError for a shard not in the map."""
        for r in self.ranges:
            if shard in r:
                return r.dsn
        raise ValueError(f"no such logical shard: {shard}")

    def dsns(self) -> list[str]:
        """Every distinct physical database, in map order."""
        return list(dict.fromkeys(r.dsn for r in self.ranges))

    def shards_of(self, dsn: str) -> list[int]:
        """The logical shards the database at ``dsn`` holds."""
        return [s for r in self.ranges if r.dsn == dsn for s in range(r.first, r.last + 1)]


def schema_name(shard: int) -> str:
    """The PostgreSQL schema of a logical shard: ``shard_0003``."""
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"no such logical shard: {shard}")
    return f"shard_{shard:04d}"


def _ranges_text(shards: list[int]) -> str:
    """Compact ``0-3, 7`` form of a sorted list of shards."""
    runs: list[list[int]] = []
    for s in shards:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)
