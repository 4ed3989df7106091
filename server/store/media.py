"""Media in PostgreSQL: the medium row (inline projection of its stream), and the reads that
hydrate media for the API in one query per physical database.

The row's counters (``like_count``, ``comment_count``) are moved by the likes and comments
projections; reads of media objects take counts from the Redis counter cache
(``server/store/counters.py``), which refills from ``counts`` here.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.db import Database, Txn
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.media import MediaDeleted, MediaPosted, MediaRendered, State
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.store.inline import INLINE


@dataclass(frozen=True)
class Medium:
    """A medium as the API shows it, with its owner and whether the viewer likes it."""

    id: int
    owner_id: int
    type: str
    state: State
    blob: str
    width: int
    height: int
    caption: str
    tags: tuple[str, ...]
    filter: str
    lat: float | None
    lng: float | None
    location_name: str
    location_id: int | None
    visibility: str
    images: dict[str, str]
    videos: dict[str, str]
    created_ms: int
    owner_username: str
    owner_full_name: str
    owner_private: bool
    viewer_likes: bool
    viewer_blocked: bool  # the owner blocks the viewer


#: The hydration read of one shard (``NNNN_media_reads.sql``: a function, so its plan is
#: cached); a page's read is a UNION ALL of these over a database's shards.
_SELECT = "SELECT * FROM {s}.hydrate_media(%s, %s)"


def _medium(row: tuple[Any, ...]) -> Medium:
    values = list(row)
    values[3] = State(values[3])
    values[8] = tuple(values[8])
    return Medium(*values)


# --- inline projection --------------------------------------------------------------------------


@INLINE.on("MediaPosted", "MediaRendered", "MediaDeleted")
def _media(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        schema = schema_name(e.shard)
        data = e.data
        if isinstance(data, MediaPosted):
            txn.execute(
                f"INSERT INTO {schema}.media (id, owner_id, type, state, blob, width, height, "
                "duration_ms, caption, tags, filter, lat, lng, location_name, location_id, "
                "visibility, created_ms) VALUES (%s, %s, %s, 'processing', %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (data.media_id, data.owner, data.type, data.blob, data.width, data.height,
                 data.duration_ms, data.caption, list(data.tags), data.filter, data.lat,
                 data.lng, data.location_name, data.location_id, data.visibility,
                 e.created_ms),
            )
            _reference(txn, schema, [data.blob], data.media_id)
            _count_media(txn, schema, data.owner, +1)
        elif isinstance(data, MediaRendered):
            txn.execute(
                f"UPDATE {schema}.media SET state = 'ready', images = %s, videos = %s "
                "WHERE id = %s AND state = 'processing'",
                (json.dumps(data.images), json.dumps(data.videos), data.media_id),
            )
            _reference(txn, schema, [*data.images.values(), *data.videos.values()],
                       data.media_id)
        elif isinstance(data, MediaDeleted):
            row = txn.fetchone(
                f"UPDATE {schema}.media SET state = 'deleted' WHERE id = %s "
                "AND state <> 'deleted' RETURNING owner_id",
                (data.media_id,),
            )
            if row is not None:
                _count_media(txn, schema, data.owner, -1)


def _reference(txn: Txn, schema: str, blobs: list[str], media_id: int) -> None:
    txn.execute(
        f"INSERT INTO {schema}.media_blobs (blob, media_id) SELECT b, %s FROM unnest(%s) b "
        "ON CONFLICT DO NOTHING",
        (media_id, blobs),
    )


def _count_media(txn: Txn, schema: str, owner: int, delta: int) -> None:
    txn.execute(f"UPDATE {schema}.users SET media_count = media_count + %s WHERE id = %s",
                (delta, owner))


# --- reads --------------------------------------------------------------------------------------


def by_database(router: IShardRouter, ids: Iterable[int]) -> dict[Database, dict[int, list[int]]]:
    """Ids grouped by physical database, then by logical shard (ids name their shard)."""
    out: dict[Database, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i in ids:
        shard = shard_of(i)
        out[router.database(shard)][shard].append(i)
    return out


def hydrate(router: IShardRouter, ids: Iterable[int], viewer: int) -> dict[int, Medium]:
    """Media with their owners and whether ``viewer`` likes them: ONE query per physical
    database (a UNION ALL over its shards). Missing ids are absent."""
    out: dict[int, Medium] = {}
    for db, shards in by_database(router, ids).items():
        parts, args = [], []
        for shard, mine in shards.items():
            parts.append(_SELECT.format(s=schema_name(shard)))
            args += [mine, viewer]
        rows = db.run_interaction("hydrate_media", Txn.fetchall, " UNION ALL ".join(parts),
                                  args)
        out.update((row[0], _medium(row)) for row in rows)
    return out


def counts(router: IShardRouter, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(likes, comments) of each medium, from the counter columns (the truth)."""
    out: dict[int, tuple[int, int]] = {}
    for db, shards in by_database(router, ids).items():
        sql = " UNION ALL ".join(
            f"SELECT id, like_count, comment_count FROM {schema_name(s)}.media WHERE id = ANY(%s)"
            for s in shards)
        for row in db.run_interaction("media_counts", Txn.fetchall, sql, list(shards.values())):
            out[row[0]] = (row[1], row[2])
    return out


def owner_page(txn: Txn, owner: int, max_id: int | None, min_id: int | None,
               min_ms: int | None, max_ms: int | None, limit: int,
               include_processing: bool) -> list[int]:
    """Ids of the owner's media, newest first, within the bounds (ids exclusive, times in
    Unix ms inclusive), ready ones only unless ``include_processing`` (the owner's view)."""
    states = ["ready", "processing"] if include_processing else ["ready"]
    rows = txn.fetchall(
        f"SELECT id FROM {schema_name(shard_of(owner))}.media WHERE owner_id = %s "
        "AND state = ANY(%s) AND id < %s AND id > %s AND created_ms BETWEEN %s AND %s "
        "ORDER BY id DESC LIMIT %s",
        (owner, states, max_id or 2**63 - 1, min_id or 0, min_ms or 0,
         max_ms if max_ms is not None else 2**62, limit),
    )
    return [int(r[0]) for r in rows]


def recent_of_owners(router: IShardRouter, owners: Iterable[int], limit: int) -> list[int]:
    """The newest ``limit`` ready media of any of ``owners``, newest first: one query per
    physical database (feed rebuilds, per-user recent media)."""
    found: list[int] = []
    for db, shards in by_database(router, owners).items():
        parts = [
            f"(SELECT id FROM {schema_name(s)}.media WHERE owner_id = ANY(%s) "
            "AND state = 'ready' ORDER BY id DESC LIMIT %s)"
            for s in shards
        ]
        args: list[Any] = []
        for mine in shards.values():
            args += [mine, limit]
        sql = f"SELECT id FROM ({' UNION ALL '.join(parts)}) t ORDER BY 1 DESC LIMIT %s"
        rows = db.run_interaction("recent_media", Txn.fetchall, sql, [*args, limit])
        found += [int(r[0]) for r in rows]
    return sorted(found, reverse=True)[:limit]


def state_of_txn(txn: Txn, media_id: int) -> State | None:
    """A medium's state, or None (``txn`` on its database)."""
    row = txn.fetchone(f"SELECT state FROM {schema_name(shard_of(media_id))}.media "
                       "WHERE id = %s FOR UPDATE", (media_id,))
    return State(row[0]) if row else None


@dataclass(frozen=True)
class Tagged:
    """What the tag projection needs of a medium."""

    id: int
    owner: int
    state: State
    visibility: str
    tags: tuple[str, ...]


def tagged(router: IShardRouter, ids: Iterable[int]) -> dict[int, Tagged]:
    """Owner, state, visibility and tags of media: one query per physical database."""
    out: dict[int, Tagged] = {}
    for db, shards in by_database(router, ids).items():
        sql = " UNION ALL ".join(
            f"SELECT id, owner_id, state, visibility, tags FROM {schema_name(s)}.media "
            "WHERE id = ANY(%s)" for s in shards)
        for row in db.run_interaction("tagged_media", Txn.fetchall, sql, list(shards.values())):
            out[row[0]] = Tagged(row[0], row[1], State(row[2]), row[3], tuple(row[4]))
    return out


def referenced(router: IShardRouter, blobs: list[str]) -> set[str]:
    """Which of ``blobs`` a medium that is not deleted references (blob GC)."""
    out: set[str] = set()
    if not blobs:
        return out
    for db in router.databases():
        sql = " UNION ".join(
            f"SELECT b.blob FROM {schema_name(s)}.media_blobs b JOIN {schema_name(s)}.media m "
            "ON m.id = b.media_id WHERE b.blob = ANY(%s) AND m.state <> 'deleted'"
            for s in router.shards_of(db))
        rows = db.run_interaction("blob_refs", Txn.fetchall, sql,
                                  [blobs] * len(router.shards_of(db)))
        out |= {r[0] for r in rows}
    return out
