"""Notification settings (inline projection of ``NotificationSettingsChanged``, in the
user's shard) and the send-time reads: which causes of a notification still stand.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.db import Database, Txn
from server.domain import notifications as rules
from server.domain.graph import Edge
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.notifications import NotificationSettingsChanged, Pending
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.store import graph
from server.store.inline import INLINE


@INLINE.on("NotificationSettingsChanged")
def _settings(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        d = e.data
        assert isinstance(d, NotificationSettingsChanged)
        txn.execute(
            f"INSERT INTO {schema_name(shard_of(d.user_id))}.notification_settings "
            "(user_id, disabled) VALUES (%s, %s) "
            "ON CONFLICT (user_id) DO UPDATE SET disabled = excluded.disabled",
            (d.user_id, list(d.disabled)))


def disabled_txn(txn: Txn, user_id: int) -> frozenset[str]:
    """The kinds ``user_id`` switched off (``txn`` on the user's database)."""
    row = txn.fetchone(
        f"SELECT disabled FROM {schema_name(shard_of(user_id))}.notification_settings "
        "WHERE user_id = %s", (user_id,))
    return frozenset(row[0]) if row else frozenset()


def recipient_txn(txn: Txn, user_id: int, actors: list[int]
                  ) -> tuple[frozenset[str], frozenset[int]]:
    """(kinds switched off, the ``actors`` the user blocks), on the user's database."""
    rows = txn.fetchall(
        f"SELECT blocked FROM {schema_name(shard_of(user_id))}.blocks "
        "WHERE blocker = %s AND blocked = ANY(%s)", (user_id, actors))
    return disabled_txn(txn, user_id), frozenset(int(r[0]) for r in rows)


def _standing_txn(txn: Txn, p: Pending) -> bool:
    if p.check == rules.LIKE_EXISTS:
        s = schema_name(shard_of(p.media_id))
        sql = (f"SELECT 1 FROM {s}.likes l JOIN {s}.media m ON m.id = l.media_id "
               "WHERE l.media_id = %s AND l.user_id = %s AND m.state <> 'deleted'")
        return txn.fetchone(sql, (p.media_id, p.actor)) is not None
    if p.check == rules.COMMENT_EXISTS:
        s = schema_name(shard_of(p.comment_id))
        sql = (f"SELECT 1 FROM {s}.comments c JOIN {s}.media m ON m.id = c.media_id "
               "WHERE c.id = %s AND NOT c.deleted AND m.state <> 'deleted'")
        return txn.fetchone(sql, (p.comment_id,)) is not None
    if p.check == rules.MEDIUM_EXISTS:
        sql = (f"SELECT 1 FROM {schema_name(shard_of(p.media_id))}.media "
               "WHERE id = %s AND state <> 'deleted'")
        return txn.fetchone(sql, (p.media_id,)) is not None
    if p.check == rules.APPROVED:
        return graph.edge(txn, p.recipient, p.actor)[0] is Edge.ACTIVE
    wanted = Edge.ACTIVE if p.check == rules.FOLLOWING else Edge.REQUESTED
    return graph.edge(txn, p.actor, p.recipient)[0] is wanted


def _home(p: Pending) -> int:
    """The shard whose database answers ``p``'s check."""
    if p.check in (rules.LIKE_EXISTS, rules.MEDIUM_EXISTS):
        return shard_of(p.media_id)
    if p.check == rules.COMMENT_EXISTS:
        return shard_of(p.comment_id)
    return shard_of(p.recipient if p.check == rules.APPROVED else p.actor)


def _standing_keys_txn(txn: Txn, causes: list[Pending]) -> set[str]:
    return {p.key for p in causes if _standing_txn(txn, p)}


def standing(router: IShardRouter, causes: Iterable[Pending]) -> set[str]:
    """The keys of the causes whose subject still stands (the like exists, the comment and
    its medium are not deleted, the follow is still there): one transaction per database."""
    by_db: dict[Database, list[Pending]] = {}
    for p in causes:
        by_db.setdefault(router.database(_home(p)), []).append(p)
    out: set[str] = set()
    for db, group in by_db.items():
        out |= db.run_interaction("push_standing", _standing_keys_txn, group)
    return out
