"""Likes in PostgreSQL: the ``likes`` rows and ``media.like_count`` (inline projections of
the like streams, in the medium's shard), the liker-side ``liked`` rows (written by the
``liked`` consumer in the liker's shard), and the reads of both.

The like transaction is kept lean: one prepared statement reads everything the decision
needs (the medium, its owner's privacy, a block, the current like, the stream's version);
the append inserts the event; the projection inserts or deletes the like row and moves the
counter LAST, so the hot medium row is locked only from that UPDATE to the commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from server.db import Txn
from server.domain.ids import shard_of
from server.domain.likes import LIKE_TYPES
from server.domain.log import RecordedEvent
from server.domain.media import State
from server.domain.shards import schema_name
from server.store.inline import INLINE


@dataclass(frozen=True)
class LikeState:
    """What deciding a like needs, read in one statement on the medium's shard."""

    owner: int
    state: State
    owner_private: bool
    blocked: bool  # the owner blocks the liker
    liked: bool
    version: int  # of the stream like:{media}:{user}


def _state_sql(shard: int) -> str:
    s = schema_name(shard)
    return (
        "SELECT m.owner_id, m.state, u.is_private, "
        f"EXISTS (SELECT 1 FROM {s}.blocks b WHERE b.blocker = m.owner_id AND b.blocked = $2), "
        f"EXISTS (SELECT 1 FROM {s}.likes l WHERE l.media_id = $1 AND l.user_id = $2), "
        "(SELECT coalesce(max(version), 0) FROM events WHERE stream = $3) "
        f"FROM {s}.media m JOIN {s}.users u ON u.id = m.owner_id WHERE m.id = $1 "
        # the medium cannot be deleted under the decision (the deletion locks it FOR UPDATE);
        # likers, who update its counter (FOR NO KEY UPDATE), do not wait on each other
        "FOR KEY SHARE OF m"
    )


def like_state_txn(txn: Txn, media_id: int, user_id: int, stream: str) -> LikeState | None:
    """The like decision's state, or None when the medium does not exist."""
    shard = shard_of(media_id)
    txn.execute_prepared(f"shutterlog_like_state_{shard}", _state_sql(shard),
                         (media_id, user_id, stream))
    row = txn.cursor.fetchone()
    if row is None:
        return None
    return LikeState(int(row[0]), State(row[1]), row[2], row[3], row[4], int(row[5]))


@INLINE.on(*LIKE_TYPES)
def _likes(txn: Txn, events: list[RecordedEvent]) -> None:
    deltas: dict[int, int] = defaultdict(int)
    schema = schema_name(events[0].shard)
    for e in events:
        media_id, user_id = e.data.media_id, e.data.user_id  # type: ignore[attr-defined]
        if e.type == "MediaLiked":
            row = txn.fetchone(
                f"INSERT INTO {schema}.likes (media_id, user_id, id, created_ms) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (media_id, user_id, e.id, e.created_ms))
            deltas[media_id] += 1 if row else 0
        else:
            row = txn.fetchone(
                f"DELETE FROM {schema}.likes WHERE media_id = %s AND user_id = %s RETURNING 1",
                (media_id, user_id))
            deltas[media_id] -= 1 if row else 0
    for media_id in sorted(deltas):  # last in the transaction, in id order (no deadlocks)
        if deltas[media_id]:
            txn.execute(f"UPDATE {schema}.media SET like_count = like_count + %s WHERE id = %s",
                        (deltas[media_id], media_id))


def likers_page(txn: Txn, media_id: int, before: int | None, limit: int
                ) -> list[tuple[int, int]]:
    """(like id, user) of the medium's likers, newest first, like ids below ``before``."""
    rows = txn.fetchall(
        f"SELECT id, user_id FROM {schema_name(shard_of(media_id))}.likes WHERE media_id = %s "
        "AND id < %s ORDER BY id DESC LIMIT %s",
        (media_id, before if before is not None else 2**63 - 1, limit))
    return [(int(a), int(b)) for a, b in rows]


def apply_liked(txn: Txn, events: list[RecordedEvent], table: str = "liked") -> None:
    """The liker-side rows of like events, in log order (``txn`` on the likers' database):
    absolute writes keyed by (liker, medium), so applying them again changes nothing.
    ``table``: the table in each liker's shard schema (a replay's shadow table).

    Only each pair's last event in the batch matters (a like sets the row, an unlike removes
    an older one), so a batch is two statements per schema, rows in key order."""
    last: dict[tuple[int, int], RecordedEvent] = {}
    for e in events:
        key = (e.data.user_id, e.data.media_id)  # type: ignore[attr-defined]
        last.pop(key, None)
        last[key] = e
    by_schema: dict[str, tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]] = {}
    for (user_id, media_id), e in sorted(last.items()):
        likes, unlikes = by_schema.setdefault(schema_name(shard_of(user_id)), ([], []))
        (likes if e.type == "MediaLiked" else unlikes).append((user_id, media_id, e.id))
    for schema, (likes, unlikes) in by_schema.items():
        if likes:
            txn.execute(
                f"INSERT INTO {schema}.{table} (user_id, media_id, like_id) SELECT * FROM "
                "unnest(%s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT (user_id, "
                "media_id) DO UPDATE SET like_id = excluded.like_id", _columns(likes))
        if unlikes:
            txn.execute(
                f"DELETE FROM {schema}.{table} t USING unnest(%s::bigint[], %s::bigint[], "
                "%s::bigint[]) AS u(user_id, media_id, before) WHERE t.user_id = u.user_id "
                "AND t.media_id = u.media_id AND t.like_id < u.before", _columns(unlikes))


def _columns(rows: list[tuple[int, int, int]]) -> tuple[list[int], list[int], list[int]]:
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def liked_page(txn: Txn, user_id: int, before: int | None, limit: int
               ) -> list[tuple[int, int]]:
    """(like id, medium) the user liked, newest like first, like ids below ``before``."""
    rows = txn.fetchall(
        f"SELECT like_id, media_id FROM {schema_name(shard_of(user_id))}.liked "
        "WHERE user_id = %s AND like_id < %s ORDER BY like_id DESC LIMIT %s",
        (user_id, before if before is not None else 2**63 - 1, limit))
    return [(int(a), int(b)) for a, b in rows]
