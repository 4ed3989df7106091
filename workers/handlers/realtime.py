"""The ``realtime`` consumer: events to the real-time sources' histories and pub/sub.

Which sources an event reaches is decided by ``server.domain.realtime.sources``; a ready
medium's tags, location and place are read from its row (one query per database per batch).
A post reaches the home ``feed`` sources of the owner's followers whose feed is live (someone
subscribes to it: ``RealtimeStore.mark_live``), found with one query on the owner's shard.
Publishing is one pipelined round trip per batch; each message is skipped if its shard
already published that position (a re-applied batch publishes nothing twice). A side effect
(clients receive it): replay never runs it, and a new deployment starts at the log's head.
"""

from __future__ import annotations

import time

from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaRendered, State
from server.domain.realtime import TYPES, MediumFacts, sources
from server.store import graph, media
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext


@consumer("realtime", *TYPES, batch_size=500, on_failure=OnFailure.SKIP, from_head=True,
          side_effect=True)
def realtime(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    rendered = [e.data.media_id for e in events if isinstance(e.data, MediaRendered)]
    rows = media.hydrate(ctx.router, rendered, 0) if rendered else {}
    facts = {i: MediumFacts(m.owner_private, m.tags, m.location_id, m.lat, m.lng)
             for i, m in rows.items() if m.state is State.READY}
    live = ctx.realtime.live_feeds(int(time.time() * 1000)) if facts else []
    items = []
    for e in events:
        medium, feeds = None, []
        if isinstance(e.data, MediaRendered) and e.data.media_id in facts:
            medium = facts[e.data.media_id]
            feeds = _live_followers(ctx, e.data.owner, live)
        targets, body = sources(e, medium, feeds)
        items += [(source, e.shard, e.position, body) for source in targets]
    ctx.realtime.publish(items)


def _live_followers(ctx: WorkerContext, owner: int, live: list[int]) -> list[int]:
    """The owner and those of their followers whose home feed is live."""
    if not live:
        return []
    others = [u for u in live if u != owner]
    found = ctx.router.database(shard_of(owner)).run_interaction(
        "live_followers", graph.active_followers_among, owner, others) if others else []
    return ([owner] if owner in live else []) + found
