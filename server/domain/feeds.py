"""Home feeds: scores, merges, pages and the fan-out plan. Pure: no I/O.

A feed is a Redis sorted set of media ids (decimal strings) scored by the id's millisecond
part (``millis_of``): a 64-bit id does not fit a double, a 41-bit millisecond count does.
Ids of one millisecond tie on the score and Redis orders them by member; callers sort the
ids they read numerically, so the tie order never matters.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from server.domain.ids import millis_of

#: The member that marks a feed (or a user's recent media) as complete, scored 0 so that it
#: sorts first and no page of real ids (scores above 0) ever reaches it. A set without it
#: was lost (Redis flushed, a new replica) and is rebuilt from PostgreSQL.
COMPLETE = "-"


def score(media_id: int) -> int:
    return millis_of(media_id)


def score_bounds(max_id: int | None, min_id: int | None) -> tuple[str, str, list[int]]:
    """How to read the ids below ``max_id`` and above ``min_id`` exactly, whatever the number
    of ids per millisecond: the ZREVRANGEBYSCORE bounds (max, min) of the milliseconds
    strictly between theirs (a LIMIT applies there), and their own milliseconds, read whole
    and filtered by ``within`` (a LIMIT on them could be spent on ids beyond the bounds). The
    completeness marker (score 0) is never in the range."""
    hi = f"({score(max_id)}" if max_id else "+inf"
    lo = f"({score(min_id)}" if min_id else "1"
    return hi, lo, sorted({score(i) for i in (max_id, min_id) if i})


def within(media_id: int, max_id: int | None, min_id: int | None) -> bool:
    """Whether an id is strictly between the page bounds (``max_id``/``min_id`` exclusive)."""
    return (max_id is None or media_id < max_id) and (min_id is None or media_id > min_id)


def merge(sources: Iterable[Iterable[int]], max_id: int | None, min_id: int | None,
          limit: int) -> list[int]:
    """The newest ``limit`` distinct ids of all ``sources`` within the bounds, newest first:
    the home feed is the union of what was pushed and what is pulled at read time."""
    ids = {i for source in sources for i in source if within(i, max_id, min_id)}
    return sorted(ids, reverse=True)[:limit]


class Mode(enum.Enum):
    """How a post reaches its owner's followers."""

    PULL = "pull"  # too many followers: merged into their feeds at read time
    INLINE = "inline"  # few followers: pushed by the consumer itself
    CHUNKED = "chunked"  # many: pushed by durable chunk tasks, one Gearman job each


def mode(followers: int, hybrid_threshold: int, chunk_size: int) -> Mode:
    """The fan-out of an account with ``followers`` followers."""
    if followers > hybrid_threshold:
        return Mode.PULL
    return Mode.INLINE if followers <= chunk_size else Mode.CHUNKED


@dataclass(frozen=True)
class Chunk:
    """Followers ``first`` <= f < ``end`` (None: to the end) of one owner's followers."""

    first: int
    end: int | None


def chunks(starts: list[int]) -> list[Chunk]:
    """Chunks from the ascending list of each chunk's first follower id."""
    return [Chunk(first, starts[i + 1] if i + 1 < len(starts) else None)
            for i, first in enumerate(starts)]
