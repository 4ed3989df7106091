"""The ``followers`` consumer: the followee's side of every follow edge, as events.

Follow-stream events live in the follower's shard. For each one this consumer appends its
mirror (``FollowerRequested``, ``FollowerAdded`` or ``FollowerRemoved``) to the stream
``followers:{followee}:{follower}`` in the followee's shard; the followers table and
``users.followed_by_count`` there are inline projections of those events. Writing the
followers side as events (not rows) puts a followee's new followers and its posts in one
shard's log, in commit order, so the ``fanout`` consumer never misses a post that raced a
follow (DESIGN.md; issue 5).

Each mirror carries the idempotency key ``fw:{source event id}``: a batch applied again after
a crash appends nothing new. Appends are grouped per physical database in one transaction;
when one batch holds several events of the same edge, they go in successive appends (an
append names each stream once), keeping their order.
"""

from __future__ import annotations

import logging

from server.domain.graph import FOLLOW_TYPES, followers_stream, mirror
from server.domain.ids import shard_of
from server.domain.log import AppendRequest, NewEvent, RecordedEvent
from workers.consumers import consumer
from workers.context import WorkerContext

log = logging.getLogger(__name__)


def mirror_request(e: RecordedEvent) -> AppendRequest:
    """The append of ``e``'s followers-side mirror, keyed by ``e``'s id."""
    follower, followee = e.data.follower, e.data.followee  # type: ignore[attr-defined]
    return AppendRequest(
        shard_of(followee), followers_stream(followee, follower),
        (NewEvent(mirror(e.data, e.id), actor=e.actor),), idempotency_key=f"fw:{e.id}",
    )


def rounds(requests: list[AppendRequest]) -> list[list[AppendRequest]]:
    """Split requests, in order, so that no round names a stream twice."""
    out: list[list[AppendRequest]] = [[]]
    seen: set[str] = set()
    for r in requests:
        if r.stream in seen:
            out.append([])
            seen = set()
        out[-1].append(r)
        seen.add(r.stream)
    return out


@consumer("followers", *FOLLOW_TYPES, batch_size=500)
def followers(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    appended = 0
    for batch in rounds([mirror_request(e) for e in events]):
        results = ctx.store.append_many(batch)
        appended += sum(1 for r in results if not r.replayed)
    log.debug("followers: %d events, %d mirrors appended", len(events), appended)
