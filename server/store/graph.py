"""The social graph in PostgreSQL: follow edges on both sides, blocks, and their counts.

- ``follows`` (the follower's shard) and ``users.follows_count``: inline projections of the
  follow stream's events, written in the append's transaction.
- ``blocks`` (the blocker's shard): inline projection of the block stream.
- ``followers`` (the followee's shard) and ``users.followed_by_count``: inline projections
  of the followers-side events (``FollowerRequested``/``FollowerAdded``/``FollowerRemoved``
  on ``followers:{followee}:{follower}`` streams), which the ``followers`` consumer appends
  in the followee's shard. So a followee's new followers and its posts are ordered by one
  shard's log, and the ``fanout`` consumer sees them in that order.

Both sides use ``set_edge``: it sets an edge to an absolute state and reports how the active
count changed, so applying the same events again (after a crash between apply and
checkpoint) changes nothing, and a count moves only when its edge did.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from server.db import Txn
from server.domain.graph import (
    BLOCK_TYPES,
    EDGE_AFTER,
    FOLLOW_TYPES,
    FOLLOWER_EDGE_AFTER,
    FOLLOWER_TYPES,
    Edge,
)
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.store.inline import INLINE

#: The two sides of an edge: table, and the users column counting its active edges.
FOLLOWS = ("follows", "follows_count")
FOLLOWERS = ("followers", "followed_by_count")


def set_edge(
    txn: Txn, side: tuple[str, str], follower: int, followee: int, state: Edge, edge_id: int,
    created_ms: int,
) -> int:
    """Set the edge (follower, followee) on ``side`` to ``state``; returns the change in its
    owner's active count (-1, 0 or +1). The owner is the follower on the follows side and the
    followee on the followers side; the edge lives in the owner's shard."""
    table = side[0]
    owner = follower if side is FOLLOWS else followee
    schema = schema_name(shard_of(owner))
    row = txn.fetchone(
        f"SELECT state FROM {schema}.{table} WHERE follower = %s AND followee = %s FOR UPDATE",
        (follower, followee),
    )
    old = Edge(row[0]) if row else Edge.NONE
    if old is state:
        return 0
    if state is Edge.NONE:
        txn.execute(
            f"DELETE FROM {schema}.{table} WHERE follower = %s AND followee = %s",
            (follower, followee),
        )
    elif old is Edge.NONE:
        txn.execute(
            f"INSERT INTO {schema}.{table} (follower, followee, state, id, created_ms) "
            "VALUES (%s, %s, %s, %s, %s)",
            (follower, followee, state.value, edge_id, created_ms),
        )
    else:
        txn.execute(
            f"UPDATE {schema}.{table} SET state = %s WHERE follower = %s AND followee = %s",
            (state.value, follower, followee),
        )
    return int(state is Edge.ACTIVE) - int(old is Edge.ACTIVE)


def apply_edges(txn: Txn, side: tuple[str, str], events: list[RecordedEvent]) -> int:
    """Apply follow-stream events (FOLLOWS) or followers-side events (FOLLOWERS) in log
    order, then adjust the owners' counts (in id order, so concurrent writers lock count rows
    in the same order). Returns how many edges changed."""
    deltas: dict[int, int] = defaultdict(int)
    changed = 0
    for e in events:
        follower, followee = e.data.follower, e.data.followee  # type: ignore[attr-defined]
        owner = follower if side is FOLLOWS else followee
        before = deltas[owner]
        state = (EDGE_AFTER if side is FOLLOWS else FOLLOWER_EDGE_AFTER)[e.type]
        delta = set_edge(txn, side, follower, followee, state, e.id, e.created_ms)
        deltas[owner] = before + delta
        changed += 1 if delta else 0
    for owner in sorted(deltas):
        if deltas[owner]:
            txn.execute(
                f"UPDATE {schema_name(shard_of(owner))}.users SET {side[1]} = {side[1]} + %s "
                "WHERE id = %s",
                (deltas[owner], owner),
            )
    return changed


@INLINE.on(*FOLLOW_TYPES)
def _follows(txn: Txn, events: list[RecordedEvent]) -> None:
    apply_edges(txn, FOLLOWS, events)


@INLINE.on(*FOLLOWER_TYPES)
def _followers(txn: Txn, events: list[RecordedEvent]) -> None:
    apply_edges(txn, FOLLOWERS, events)


@INLINE.on(*BLOCK_TYPES)
def _blocks(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        blocker, blocked = e.data.blocker, e.data.blocked  # type: ignore[attr-defined]
        schema = schema_name(shard_of(blocker))
        if e.type == "UserBlocked":
            txn.execute(
                f"INSERT INTO {schema}.blocks (blocker, blocked, id) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (blocker, blocked, e.id),
            )
        else:
            txn.execute(
                f"DELETE FROM {schema}.blocks WHERE blocker = %s AND blocked = %s",
                (blocker, blocked),
            )


def edge(txn: Txn, follower: int, followee: int) -> tuple[Edge, int | None]:
    """The follower-side edge and its id (``txn`` on the follower's database)."""
    row = txn.fetchone(
        f"SELECT state, id FROM {schema_name(shard_of(follower))}.follows "
        "WHERE follower = %s AND followee = %s",
        (follower, followee),
    )
    return (Edge(row[0]), int(row[1])) if row else (Edge.NONE, None)


def block_id(txn: Txn, blocker: int, blocked: int) -> int | None:
    """The id of the event that made ``blocker`` block ``blocked``, or None (``txn`` on the
    blocker's database)."""
    row = txn.fetchone(
        f"SELECT id FROM {schema_name(shard_of(blocker))}.blocks "
        "WHERE blocker = %s AND blocked = %s",
        (blocker, blocked),
    )
    return int(row[0]) if row else None


def page(
    txn: Txn, side: tuple[str, str], owner: int, state: Edge, before: int | None, limit: int
) -> list[tuple[int, int]]:
    """(edge id, other user) of the owner's edges in ``state``, newest first, with ids below
    ``before``: keyset pagination on the immutable edge id, so concurrent writes never shift
    a page (``txn`` on the owner's database)."""
    table = side[0]
    mine, other = ("follower", "followee") if side is FOLLOWS else ("followee", "follower")
    rows = txn.fetchall(
        f"SELECT id, {other} FROM {schema_name(shard_of(owner))}.{table} "
        f"WHERE {mine} = %s AND state = %s AND id < %s ORDER BY id DESC LIMIT %s",
        (owner, state.value, before if before is not None else 2**63 - 1, limit),
    )
    return [(int(a), int(b)) for a, b in rows]


def followers_count_txn(txn: Txn, user: int) -> int:
    """The user's active followers (``users.followed_by_count``; ``txn`` on its database)."""
    row = txn.fetchone(
        f"SELECT followed_by_count FROM {schema_name(shard_of(user))}.users WHERE id = %s",
        (user,))
    return int(row[0]) if row else 0


def fanout_facts_txn(txn: Txn, owners: Sequence[int], most: int
                     ) -> dict[int, tuple[int, list[int]]]:
    """For each owner (all on ``txn``'s database): its active followers' count and, when
    there are at most ``most``, the followers themselves (ascending); one query per shard
    for a whole batch of posts."""
    by_shard: dict[int, list[int]] = defaultdict(list)
    for o in owners:
        by_shard[shard_of(o)].append(o)
    out: dict[int, tuple[int, list[int]]] = {}
    for shard, mine in by_shard.items():
        schema = schema_name(shard)
        counts = dict(txn.fetchall(
            f"SELECT id, followed_by_count FROM {schema}.users WHERE id = ANY(%s)", (mine,)))
        few = [o for o in mine if counts.get(o, 0) <= most]
        listed: dict[int, list[int]] = defaultdict(list)
        for followee, follower in txn.fetchall(
                f"SELECT followee, follower FROM {schema}.followers WHERE followee = ANY(%s) "
                "AND state = 'active' ORDER BY followee, follower", (few,)) if few else ():
            listed[int(followee)].append(int(follower))
        for o in mine:
            out[o] = (int(counts.get(o, 0)), listed.get(o, []))
    return out


def followers_range(txn: Txn, followee: int, first: int, end: int | None,
                    ready: int | None = None) -> list[int]:
    """The followee's active followers ``first <= f < end`` (None: no end), ascending; with
    ``ready`` (a medium of the followee's), none unless that medium is ready (not deleted)."""
    schema = schema_name(shard_of(followee))
    rows = txn.fetchall(
        f"SELECT follower FROM {schema}.followers WHERE followee = %s "
        "AND state = 'active' AND follower >= %s AND follower < %s AND (%s::bigint IS NULL "
        f"OR EXISTS (SELECT 1 FROM {schema}.media WHERE id = %s AND state = 'ready')) "
        "ORDER BY follower",
        (followee, first, end if end is not None else 2**63 - 1, ready, ready))
    return [int(r[0]) for r in rows]


def chunk_starts(txn: Txn, followee: int, size: int) -> list[int]:
    """The first follower id of each run of ``size`` active followers (ascending ids): the
    boundaries of fan-out chunks, from one index-only pass over the followee's edges."""
    rows = txn.fetchall(
        f"SELECT follower FROM (SELECT follower, row_number() OVER (ORDER BY follower) AS n "
        f"FROM {schema_name(shard_of(followee))}.followers WHERE followee = %s "
        "AND state = 'active') t WHERE (n - 1) %% %s = 0 ORDER BY follower",
        (followee, size))
    return [int(r[0]) for r in rows]


def active_followees(txn: Txn, follower: int) -> list[int]:
    """Everyone the user follows (active edges; ``txn`` on the follower's database)."""
    rows = txn.fetchall(
        f"SELECT followee FROM {schema_name(shard_of(follower))}.follows WHERE follower = %s "
        "AND state = 'active'", (follower,))
    return [int(r[0]) for r in rows]


def blocked_users(txn: Txn, blocker: int) -> list[int]:
    """Everyone ``blocker`` blocks (``txn`` on the blocker's database)."""
    rows = txn.fetchall(f"SELECT blocked FROM {schema_name(shard_of(blocker))}.blocks "
                        "WHERE blocker = %s", (blocker,))
    return [int(r[0]) for r in rows]


def active_followers_among(txn: Txn, followee: int, candidates: list[int]) -> list[int]:
    """Which of ``candidates`` follow ``followee`` (active edges; ``txn`` on the followee's
    database)."""
    rows = txn.fetchall(
        f"SELECT follower FROM {schema_name(shard_of(followee))}.followers WHERE followee = %s "
        "AND state = 'active' AND follower = ANY(%s)", (followee, candidates))
    return [int(r[0]) for r in rows]
