"""The ``followers`` consumer: the followee's side of every follow edge.

Follow-stream events live in the follower's shard; this consumer writes the edge into the
followee's shard (``followers``) and moves ``users.followed_by_count`` there, in one
transaction per physical database per batch. ``set_edge`` sets absolute states and moves a
count only when its edge changed, so a batch applied twice changes nothing and the counts
equal the edges under any interleaving of follows and unfollows.
"""

from __future__ import annotations

import logging

from server.db import Database
from server.domain.graph import FOLLOW_TYPES
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.store import graph
from workers.consumers import consumer
from workers.context import WorkerContext

log = logging.getLogger(__name__)


@consumer("followers", *FOLLOW_TYPES, batch_size=500)
def followers(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    by_db: dict[Database, list[RecordedEvent]] = {}
    for e in events:  # log order is kept within each database, so per edge too
        followee = e.data.followee  # type: ignore[attr-defined]
        by_db.setdefault(ctx.router.database(shard_of(followee)), []).append(e)
    for db, mine in by_db.items():
        changed = db.run_interaction("followers", graph.apply_edges, graph.FOLLOWERS, mine)
        log.debug("followers: %d events, %d edges changed on %s", len(mine), changed, db)
