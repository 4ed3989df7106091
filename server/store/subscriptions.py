"""Webhook subscriptions in PostgreSQL: the ``subscriptions`` table of each shard, the inline
projection of the subscription events, in the shard of the app's client id (a subscription's
id comes from that shard's ``next_id()``, so it says where the row is); reads for the API and
for the ``webhooks`` consumer: the active subscriptions a batch of new media could match
(``candidates``, from ``server.domain.subscriptions.lookup``: by object id, and geographies by
a bounding box around the batch's points), one query per physical database.
"""

from __future__ import annotations

from typing import Any

from server.db import Txn
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.domain.subscriptions import (
    SUBSCRIPTION_TYPES,
    Lookup,
    Subscription,
    SubscriptionCreated,
    SubscriptionDeleted,
    SubscriptionDisabled,
)
from server.interfaces import IShardRouter
from server.shards import mapped_shard
from server.store.inline import INLINE
from server.store.media import by_database

_COLUMNS = ("id, client_id, object, object_id, lat, lng, radius_m, callback_url, status, "
            "reason, created_ms, disabled_ms")


@INLINE.on(*SUBSCRIPTION_TYPES)
def _subscriptions(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        schema = schema_name(e.shard)
        d = e.data
        if isinstance(d, SubscriptionCreated):
            txn.execute(
                f"INSERT INTO {schema}.subscriptions (id, client_id, object, object_id, lat, "
                "lng, radius_m, callback_url, created_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (d.subscription_id, d.client_id, d.object, d.object_id, d.lat, d.lng,
                 d.radius_m, d.callback_url, e.created_ms))
        elif isinstance(d, SubscriptionDeleted):
            txn.execute(f"UPDATE {schema}.subscriptions SET status = 'deleted' WHERE id = %s",
                        (d.subscription_id,))
        elif isinstance(d, SubscriptionDisabled):
            txn.execute(
                f"UPDATE {schema}.subscriptions SET status = 'disabled', reason = %s, "
                "disabled_ms = %s WHERE id = %s AND status = 'active'",
                (d.reason, e.created_ms, d.subscription_id))


def _row(row: tuple[Any, ...]) -> Subscription:
    return Subscription(*row)


#: First key of the transaction advisory locks that serialize an app's new subscriptions
#: ("SUBS"; the second key is ``hashtext(client_id)``).
_LOCK_SPACE = 0x53554253


def lock_app_txn(txn: Txn, client_id: str) -> None:
    """Hold, until ``txn`` ends, the lock that serializes the app's new subscriptions (so a
    count of them followed by an append cannot race another request's)."""
    txn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_SPACE, client_id))


def of_app_txn(txn: Txn, shard: int, client_id: str) -> list[Subscription]:
    """The app's subscriptions that are not deleted (active and disabled), oldest first."""
    return [_row(r) for r in txn.fetchall(
        f"SELECT {_COLUMNS} FROM {schema_name(shard)}.subscriptions "
        "WHERE client_id = %s AND status <> 'deleted' ORDER BY id", (client_id,))]


def get(router: IShardRouter, subscription_id: int) -> Subscription | None:
    """One subscription (whatever its status), or None."""
    shard = mapped_shard(router, subscription_id)
    if shard is None:
        return None
    row = router.database(shard).run_interaction("get_subscription", Txn.fetchone,
                                                 f"SELECT {_COLUMNS} FROM "
                                                 f"{schema_name(shard)}.subscriptions "
                                                 "WHERE id = %s", (subscription_id,))
    return _row(row) if row else None


def by_ids(router: IShardRouter, ids: list[int]) -> dict[int, Subscription]:
    """Subscriptions by id (whatever their status): one query per database."""
    out: dict[int, Subscription] = {}
    known = [i for i in ids if mapped_shard(router, i) is not None]
    for db, shards in by_database(router, known).items():
        sql = " UNION ALL ".join(f"SELECT {_COLUMNS} FROM {schema_name(s)}.subscriptions "
                                 "WHERE id = ANY(%s)" for s in shards)
        out.update({r[0]: _row(r) for r in db.run_interaction(
            "subscriptions_by_id", Txn.fetchall, sql, list(shards.values()))})
    return out


#: The lookup's values, bound once per query (every shard's SELECTs read them): the keys of
#: user, tag and location subscriptions, and the boxes the geographies' centres may lie in.
_LOOKUP = (
    "WITH k AS (SELECT %(users)s::text[] AS users, %(tags)s::text[] AS tags, "
    "%(locations)s::text[] AS locations), "
    "b (min_lat, max_lat, min_lng, max_lng) AS (SELECT * FROM unnest(%(min_lat)s::float8[], "
    "%(max_lat)s::float8[], %(min_lng)s::float8[], %(max_lng)s::float8[])) ")
#: A shard's candidates by object id (the ``subscriptions_object`` index: one bitmap scan per
#: kind) and geographies by their centre (``subscriptions_geography``: a range scan per box).
_BY_KEY = (
    "SELECT {columns} FROM {s}.subscriptions, k WHERE status = 'active' AND ("
    "object = 'user' AND (object_id IS NULL OR object_id = ANY(k.users)) "
    "OR object = 'tag' AND object_id = ANY(k.tags) "
    "OR object = 'location' AND object_id = ANY(k.locations))")
_BY_AREA = (
    "SELECT {columns} FROM b JOIN {s}.subscriptions ON status = 'active' "
    "AND object = 'geography' AND lat BETWEEN b.min_lat AND b.max_lat "
    "AND lng BETWEEN b.min_lng AND b.max_lng")


def candidates_sql(shards: list[int]) -> str:
    """The statement ``candidates`` runs on a database holding ``shards`` (separate so tests
    can EXPLAIN it)."""
    return _LOOKUP + " UNION ALL ".join(
        part.format(columns=_COLUMNS, s=schema_name(s)) for s in shards
        for part in (_BY_KEY, _BY_AREA))


def candidates_params(lookup: Lookup) -> dict[str, list[Any]]:
    """The parameters of ``candidates_sql`` for ``lookup``: arrays, each bound once."""
    return {"users": list(lookup.users), "tags": list(lookup.tags),
            "locations": list(lookup.locations),
            "min_lat": [b.min_lat for b in lookup.boxes],
            "max_lat": [b.max_lat for b in lookup.boxes],
            "min_lng": [b.min_lng for b in lookup.boxes],
            "max_lng": [b.max_lng for b in lookup.boxes]}


def candidates(router: IShardRouter, lookup: Lookup) -> list[Subscription]:
    """The active subscriptions ``lookup`` names (what a batch of new media could match;
    ``matches`` decides), in id order: one query per physical database, its shards' SELECTs
    UNION ALLed."""
    params = candidates_params(lookup)
    out: dict[int, Subscription] = {}
    for db in router.databases():
        rows = db.run_interaction("subscription_candidates", Txn.fetchall,
                                  candidates_sql(router.shards_of(db)), params)
        out.update((r[0], _row(r)) for r in rows)  # a centre in two boxes comes twice
    return [out[i] for i in sorted(out)]
