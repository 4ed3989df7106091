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


def _edge(p: Pending) -> tuple[int, int, str]:
    """(follower, followee, state) a follow-kind cause needs."""
    if p.check == rules.APPROVED:
        return p.recipient, p.actor, Edge.ACTIVE.value
    return p.actor, p.recipient, (Edge.ACTIVE if p.check == rules.FOLLOWING
                                  else Edge.REQUESTED).value


def _home(p: Pending) -> int:
    """The shard whose tables answer ``p``'s check."""
    if p.check in (rules.LIKE_EXISTS, rules.MEDIUM_EXISTS):
        return shard_of(p.media_id)
    if p.check == rules.COMMENT_EXISTS:
        return shard_of(p.comment_id)
    return shard_of(_edge(p)[0])


def _standing_txn(txn: Txn, causes: list[Pending]) -> set[str]:
    """The keys of ``causes`` still standing: one query per (shard, check, medium) for
    likes, per (shard, check) for the others, however many causes a burst brought."""
    groups: dict[tuple[int, str, int], list[Pending]] = {}
    for p in causes:
        subject = p.media_id if p.check == rules.LIKE_EXISTS else 0
        groups.setdefault((_home(p), p.check, subject), []).append(p)
    out: set[str] = set()
    for (shard, check, media_id), ps in groups.items():
        s = schema_name(shard)
        if check == rules.LIKE_EXISTS:
            found = {r[0] for r in txn.fetchall(
                f"SELECT l.user_id FROM {s}.likes l JOIN {s}.media m ON m.id = l.media_id "
                "WHERE l.media_id = %s AND l.user_id = ANY(%s) AND m.state <> 'deleted'",
                (media_id, [p.actor for p in ps]))}
            out |= {p.key for p in ps if p.actor in found}
        elif check == rules.COMMENT_EXISTS:
            found = {r[0] for r in txn.fetchall(
                f"SELECT c.id FROM {s}.comments c JOIN {s}.media m ON m.id = c.media_id "
                "WHERE c.id = ANY(%s) AND NOT c.deleted AND m.state <> 'deleted'",
                ([p.comment_id for p in ps],))}
            out |= {p.key for p in ps if p.comment_id in found}
        elif check == rules.MEDIUM_EXISTS:
            found = {r[0] for r in txn.fetchall(
                f"SELECT id FROM {s}.media WHERE id = ANY(%s) AND state <> 'deleted'",
                ([p.media_id for p in ps],))}
            out |= {p.key for p in ps if p.media_id in found}
        else:
            edges = {_edge(p) for p in ps}
            found_edges = {(r[0], r[1], r[2]) for r in txn.fetchall(
                f"SELECT follower, followee, state FROM {s}.follows "
                "WHERE follower = ANY(%s) AND followee = ANY(%s)",
                (sorted({e[0] for e in edges}), sorted({e[1] for e in edges})))}
            out |= {p.key for p in ps if _edge(p) in found_edges}
    return out


def standing(router: IShardRouter, causes: Iterable[Pending]) -> set[str]:
    """The keys of the causes whose subject still stands (the like exists, the comment and
    its medium are not deleted, the follow is still there): one transaction per database."""
    by_db: dict[Database, list[Pending]] = {}
    for p in causes:
        by_db.setdefault(router.database(_home(p)), []).append(p)
    out: set[str] = set()
    for db, group in by_db.items():
        out |= db.run_interaction("push_standing", _standing_txn, group)
    return out
