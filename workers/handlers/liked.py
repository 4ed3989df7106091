"""The ``liked`` consumer: the liker's side of likes (``liked`` rows in the liker's shard),
for ``/v1/users/self/media/liked``. Like streams live in the medium's shard; this copies
each like and unlike, in log order, to the liker's shard, one transaction per database."""

from __future__ import annotations

from server.db import Database
from server.domain.ids import shard_of
from server.domain.likes import LIKE_TYPES
from server.domain.log import RecordedEvent
from server.store import likes
from workers.consumers import consumer
from workers.context import WorkerContext


@consumer("liked", *LIKE_TYPES, batch_size=1000)
def liked(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    by_db: dict[Database, list[RecordedEvent]] = {}
    for e in events:
        by_db.setdefault(ctx.router.database(shard_of(e.data.user_id)),  # type: ignore
                         []).append(e)
    for db, mine in by_db.items():
        db.run_interaction("liked", likes.apply_liked, mine, ctx.table("liked"))
