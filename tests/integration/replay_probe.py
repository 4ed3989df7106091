"""A side-effect consumer for the replay tests, loaded through ``workers.modules`` by the
replay CLI only: it counts every call in Redis, so a test can prove replay never runs it."""

from __future__ import annotations

from server.domain.log import RecordedEvent
from workers.consumers import consumer
from workers.context import WorkerContext

CALLS = "probe:calls"
TYPES = ("MediaPosted", "MediaRendered", "MediaLiked", "CommentAdded", "FollowerAdded",
         "UserFollowed", "UserBlocked", "MediaDeleted")


@consumer("replay_probe", *TYPES, side_effect=True)
def replay_probe(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    ctx.redis.incrby(CALLS, len(events))
