"""The ``counters`` consumer: exact like and comment counts into the Redis counter cache.

For every medium whose likes or comments changed in a batch, it reads the PostgreSQL counter
columns (one query per database, however many likes a hot medium got in the batch) and
writes them (``server/store/counters.py``). Applied in log order and always writing the
latest truth, it converges whatever the batches; applying one again writes the same values.
"""

from __future__ import annotations

from server.domain.comments import COMMENT_TYPES
from server.domain.likes import LIKE_TYPES
from server.domain.log import RecordedEvent
from server.store import media
from server.store.counters import CounterCache
from workers.consumers import consumer
from workers.context import WorkerContext


@consumer("counters", "MediaPosted", *LIKE_TYPES, *COMMENT_TYPES, batch_size=1000)
def counters(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    ids = {e.data.media_id for e in events}  # type: ignore[attr-defined]
    cache = CounterCache(ctx.redis, lambda wanted: media.counts(ctx.router, wanted),
                         prefix=ctx.key_prefix)
    cache.set(media.counts(ctx.router, ids))
