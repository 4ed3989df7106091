"""Comments in PostgreSQL: rows and ``media.comment_count`` (inline projections of the
comment streams, in the medium's shard); owners' comments add their hashtags to the medium's
``tags``; reads of a medium's comments and of one comment.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from server.db import Txn
from server.domain import tags as tagging
from server.domain.comments import COMMENT_TYPES, CommentAdded, CommentDeleted
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.store.inline import INLINE


@dataclass(frozen=True)
class Comment:
    id: int
    media_id: int
    author: int
    text: str
    created_ms: int
    deleted: bool


@INLINE.on(*COMMENT_TYPES)
def _comments(txn: Txn, events: list[RecordedEvent]) -> None:
    deltas: dict[int, int] = defaultdict(int)
    schema = schema_name(events[0].shard)
    for e in events:
        data = e.data
        if isinstance(data, CommentAdded):
            row = txn.fetchone(
                f"INSERT INTO {schema}.comments (id, media_id, author, text, created_ms) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (data.comment_id, data.media_id, data.author, data.text, e.created_ms))
            deltas[data.media_id] += 1 if row else 0
            if row and data.tags:
                txn.execute(
                    f"UPDATE {schema}.media SET tags = ARRAY(SELECT DISTINCT t FROM "
                    "unnest(tags || %s::text[]) t ORDER BY t) WHERE id = %s",
                    (list(data.tags), data.media_id))
        elif isinstance(data, CommentDeleted):
            row = txn.fetchone(
                f"UPDATE {schema}.comments SET deleted = true WHERE id = %s AND NOT deleted "
                "RETURNING author", (data.comment_id,))
            deltas[data.media_id] -= 1 if row else 0
            if row and data.author == data.media_owner:
                _retag(txn, schema, data.media_id)
    for media_id in sorted(deltas):
        if deltas[media_id]:
            txn.execute(
                f"UPDATE {schema}.media SET comment_count = comment_count + %s WHERE id = %s",
                (deltas[media_id], media_id))


def _retag(txn: Txn, schema: str, media_id: int) -> None:
    """Recompute a medium's tags from its caption and its owner's remaining comments."""
    row = txn.fetchone(f"SELECT owner_id, caption FROM {schema}.media WHERE id = %s",
                       (media_id,))
    if row is None:
        return
    owner, caption = row
    texts = [caption] + [r[0] for r in txn.fetchall(
        f"SELECT text FROM {schema}.comments WHERE media_id = %s AND author = %s "
        "AND NOT deleted ORDER BY id", (media_id, owner))]
    found = sorted({t for text in texts for t in tagging.hashtags(text)})
    txn.execute(f"UPDATE {schema}.media SET tags = %s WHERE id = %s", (found, media_id))


def get_txn(txn: Txn, comment_id: int) -> Comment | None:
    row = txn.fetchone(
        f"SELECT id, media_id, author, text, created_ms, deleted FROM "
        f"{schema_name(shard_of(comment_id))}.comments WHERE id = %s", (comment_id,))
    return Comment(*row) if row else None


def page(txn: Txn, media_id: int, after: int | None, limit: int) -> list[Comment]:
    """The medium's comments, oldest first (as the v1 API listed them), ids above ``after``."""
    rows = txn.fetchall(
        f"SELECT id, media_id, author, text, created_ms, deleted FROM "
        f"{schema_name(shard_of(media_id))}.comments WHERE media_id = %s AND NOT deleted "
        "AND id > %s ORDER BY id LIMIT %s", (media_id, after or 0, limit))
    return [Comment(*r) for r in rows]
