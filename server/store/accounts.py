"""Accounts in PostgreSQL: the users table and the username claims (inline projections of
``UserRegistered``), and the reads the API serves from them.

A username claim is inserted in the sign-up's own transaction; the primary key on
``lower(username)`` in the username's shard is the global uniqueness check, so of two racing
sign-ups exactly one commits and the other gets ``UsernameTaken``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.db import Txn
from server.domain.accounts import (
    AccountPrivacyChanged,
    UsernameTaken,
    UserRegistered,
    normalize,
)
from server.domain.ids import shard_of
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.interfaces import IShardRouter
from server.store.inline import INLINE


@dataclass(frozen=True)
class User:
    """A user row, as the API shows it (the password hash stays in the store)."""

    id: int
    username: str
    full_name: str
    bio: str
    website: str
    is_private: bool
    created_ms: int
    media: int
    follows: int
    followed_by: int


_COLUMNS = ("id", "username", "full_name", "bio", "website", "is_private", "created_ms",
            "media_count", "follows_count", "followed_by_count")
_USER_COLUMNS = ", ".join(_COLUMNS)
_JOINED_COLUMNS = ", ".join("u." + c for c in _COLUMNS)


@INLINE.on("UserRegistered")
def _registered(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        data = e.data
        assert isinstance(data, UserRegistered)
        schema = schema_name(e.shard)
        row = txn.fetchone(
            f"INSERT INTO {schema}.usernames (username_lower, user_id) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING RETURNING user_id",
            (normalize(data.username), data.user_id),
        )
        if row is None:
            raise UsernameTaken(data.username)
        txn.execute(
            f"INSERT INTO {schema}.users (id, username, full_name, bio, website, email, "
            "password_hash, is_private, created_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (data.user_id, data.username, data.full_name, data.bio, data.website, data.email,
             data.password_hash, data.is_private, e.created_ms),
        )


@INLINE.on("AccountPrivacyChanged")
def _privacy(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        data = e.data
        assert isinstance(data, AccountPrivacyChanged)
        txn.execute(f"UPDATE {schema_name(e.shard)}.users SET is_private = %s WHERE id = %s",
                    (data.is_private, data.user_id))


def new_id(txn: Txn, shard: int) -> int:
    """A fresh id from the shard's id function."""
    row = txn.fetchone(f"SELECT {schema_name(shard)}.next_id()")
    assert row is not None
    return int(row[0])


def username_owner(txn: Txn, shard: int, username: str) -> int | None:
    """The id of the user holding ``username`` (any case) in its shard, or None."""
    row = txn.fetchone(
        f"SELECT user_id FROM {schema_name(shard)}.usernames WHERE username_lower = %s",
        (normalize(username),),
    )
    return int(row[0]) if row else None


def get_user(txn: Txn, user_id: int) -> User | None:
    """The user ``user_id`` (its shard is in the id; ``txn`` must be on that database)."""
    row = txn.fetchone(
        f"SELECT {_USER_COLUMNS} FROM {schema_name(shard_of(user_id))}.users WHERE id = %s",
        (user_id,),
    )
    return User(*row) if row else None


def login(txn: Txn, shard: int, username: str) -> tuple[int, str] | None:
    """(user id, password hash) of the username in its shard, or None."""
    row = txn.fetchone(
        f"SELECT u.id, u.password_hash FROM {schema_name(shard)}.usernames n "
        f"JOIN {schema_name(shard)}.users u ON u.id = n.user_id WHERE n.username_lower = %s",
        (normalize(username),),
    )
    return (int(row[0]), str(row[1])) if row else None


def users_by_id(router: IShardRouter, ids: list[int]) -> dict[int, User]:
    """Users by id, fetched with one query per physical database (missing ids are absent)."""
    by_db: dict[Any, dict[int, list[int]]] = {}
    for user_id in ids:
        shard = shard_of(user_id)
        by_db.setdefault(router.database(shard), {}).setdefault(shard, []).append(user_id)
    out: dict[int, User] = {}
    for db, shards in by_db.items():
        sql = " UNION ALL ".join(
            f"SELECT {_USER_COLUMNS} FROM {schema_name(s)}.users WHERE id = ANY(%s)"
            for s in shards
        )
        rows = db.run_interaction("users_by_id", Txn.fetchall, sql, list(shards.values()))
        out.update({row[0]: User(*row) for row in rows})
    return out


def search(router: IShardRouter, prefix: str, after: str, limit: int,
           viewer: int) -> list[tuple[str, User]]:
    """Users whose username starts with ``prefix`` (case-insensitive), ordered by lower-case
    username, after the cursor ``after``, but not those who block ``viewer`` (to whom they
    do not exist): one query per physical database over its shards (a user's blocks live
    on the user's shard)."""
    pattern = like_prefix(normalize(prefix))
    found: list[tuple[str, User]] = []
    for db in router.databases():
        parts = [
            f"(SELECT n.username_lower, {_JOINED_COLUMNS} "
            f"FROM {schema_name(s)}.usernames n JOIN {schema_name(s)}.users u ON u.id = n.user_id "
            f"WHERE n.username_lower LIKE %s AND n.username_lower > %s "
            f"AND NOT EXISTS (SELECT 1 FROM {schema_name(s)}.blocks b "
            f"WHERE b.blocker = u.id AND b.blocked = %s) "
            f"ORDER BY n.username_lower LIMIT %s)"
            for s in router.shards_of(db)
        ]
        sql = " UNION ALL ".join(parts) + " ORDER BY 1 LIMIT %s"
        args: list[Any] = []
        for _ in parts:
            args += [pattern, after, viewer, limit]
        args.append(limit)
        rows = db.run_interaction("search_users", Txn.fetchall, sql, args)
        found += [(row[0], User(*row[1:])) for row in rows]
    found.sort(key=lambda pair: pair[0])
    return found[:limit]


def like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
