"""The ``tags`` consumer: ``tag:{name}`` sets of ready public media, and the name index.

A medium's tags are its caption's hashtags and those of its owner's comments (the medium
row's ``tags``, kept inline). For every medium an event touches, the consumer reads the row
and makes Redis agree with it: in every tag set of its tags while ready and public, in none
once deleted; a deleted owner's comment's tags leave unless the caption or another of the
owner's comments still has them. Reading the current row makes the result the same however
often, and in whatever batches, the events are applied.
"""

from __future__ import annotations

from server.domain import tags as tagging
from server.domain.comments import CommentDeleted
from server.domain.log import RecordedEvent
from server.domain.media import State
from server.store import comments, media
from server.store.tags import TagStore
from workers.consumers import consumer
from workers.context import WorkerContext


@consumer("tags", "MediaRendered", "MediaDeleted", "CommentAdded", "CommentDeleted",
          batch_size=500)
def tags(ctx: WorkerContext, events: list[RecordedEvent]) -> None:
    candidates: dict[int, set[str]] = {}
    for e in events:
        media_id = e.data.media_id  # type: ignore[attr-defined]
        extra = candidates.setdefault(media_id, set())
        if isinstance(e.data, CommentDeleted) and e.data.author == e.data.media_owner:
            found = ctx.router.database(e.shard).run_interaction(
                "comment", comments.get_txn, e.data.comment_id)
            if found is not None:
                extra.update(tagging.hashtags(found.text))
    rows = media.tagged(ctx.router, candidates)
    changes = []
    for media_id, extra in candidates.items():
        row = rows.get(media_id)
        if row is None:
            continue
        live = row.state is State.READY and row.visibility == "public"
        wanted = set(row.tags) if live else set()
        changes.append((media_id, sorted((set(row.tags) | extra) - wanted), sorted(wanted)))
    TagStore(ctx.redis, ctx.key_prefix).update(changes)

