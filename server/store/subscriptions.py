"""Webhook subscriptions in PostgreSQL: the ``subscriptions`` table of each shard, the inline
projection of the subscription events, in the shard of the app's client id (a subscription's
id comes from that shard's ``next_id()``, so it says where the row is); reads for the API and
for the ``webhooks`` consumer (every active subscription: one query per physical database).
"""

from __future__ import annotations

from typing import Any

from server.db import Txn
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.domain.subscriptions import (
    SUBSCRIPTION_TYPES,
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


def active(router: IShardRouter) -> list[Subscription]:
    """Every active subscription of every app: one query per physical database."""
    out: list[Subscription] = []
    for db in router.databases():
        sql = " UNION ALL ".join(f"SELECT {_COLUMNS} FROM {schema_name(s)}.subscriptions "
                                 "WHERE status = 'active'" for s in router.shards_of(db))
        out += [_row(r) for r in db.run_interaction("active_subscriptions", Txn.fetchall, sql)]
    return sorted(out, key=lambda s: s.id)
