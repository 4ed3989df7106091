"""The ``realtime`` consumer: events to the real-time sources' histories and pub/sub.

Which sources an event reaches is decided by ``server.domain.realtime.sources``; a ready
medium's tags, location and place are read from its row (one query per database per batch).
Publishing is one pipelined round trip per batch; each message is skipped if its shard
already published that position (a re-applied batch publishes nothing twice). A side effect
(clients receive it): replay never runs it, and a new deployment starts at the log's head.
"""

from __future__ import annotations

from server.domain.log import RecordedEvent
from server.domain.media import MediaRendered, State
from server.domain.realtime import TYPES, MediumFacts, sources
from server.store import media
from workers.consumers import OnFailure, consumer
from workers.context import WorkerContext


@consumer("realtime", *TYPES, batch_size=500, on_failure=OnFailure.SKIP, from_head=True,
          side_effect=True)
def realtime(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    rendered = [e.data.media_id for e in events if isinstance(e.data, MediaRendered)]
    rows = media.hydrate(ctx.router, rendered, 0) if rendered else {}
    facts = {i: MediumFacts(m.owner_private, m.tags, m.location_id, m.lat, m.lng)
             for i, m in rows.items() if m.state is State.READY}
    items = []
    for e in events:
        medium = facts.get(e.data.media_id) if isinstance(e.data, MediaRendered) else None
        targets, body = sources(e, medium)
        items += [(source, e.shard, e.position, body) for source in targets]
    ctx.realtime.publish(items)
