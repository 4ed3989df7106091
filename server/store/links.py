"""Linked accounts in PostgreSQL: the ``linked_accounts`` rows (inline projection of the link
streams, in the user's shard) and their reads. The credentials column holds the Fernet token
the event carries; only the share-out worker decrypts it."""

from __future__ import annotations

from typing import Any

from server.db import Txn
from server.domain.ids import shard_of
from server.domain.links import LINK_TYPES, AccountLinked, Link
from server.domain.log import RecordedEvent
from server.domain.shards import schema_name
from server.store.inline import INLINE

_COLUMNS = "user_id, service, account, credentials, link_id, linked_ms"


@INLINE.on(*LINK_TYPES)
def _links(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        data = e.data
        schema = schema_name(e.shard)
        if isinstance(data, AccountLinked):
            txn.execute(
                f"INSERT INTO {schema}.linked_accounts ({_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id, service) DO UPDATE SET "
                "account = excluded.account, credentials = excluded.credentials, "
                "link_id = excluded.link_id, linked_ms = excluded.linked_ms",
                (data.user_id, data.service, data.account, data.credentials, e.id,
                 e.created_ms))
        else:
            txn.execute(
                f"DELETE FROM {schema}.linked_accounts WHERE user_id = %s AND service = %s "
                "AND link_id = %s",
                (data.user_id, data.service, data.link_id))  # type: ignore[attr-defined]


def links_txn(txn: Txn, user_id: int, service: str | None = None) -> list[Link]:
    """The user's current links (one service's if ``service``), by service name."""
    rows = txn.fetchall(
        f"SELECT {_COLUMNS} FROM {schema_name(shard_of(user_id))}.linked_accounts "
        "WHERE user_id = %s AND (%s::text IS NULL OR service = %s) ORDER BY service",
        (user_id, service, service))
    return [_link(r) for r in rows]


def _link(r: tuple[Any, ...]) -> Link:
    return Link(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]))


def shard_links_txn(txn: Txn, schema: str) -> list[Link]:
    """Every link of one logical shard (``schema``), for key rotation."""
    rows = txn.fetchall(f"SELECT {_COLUMNS} FROM {schema}.linked_accounts ORDER BY 1, 2")
    return [_link(r) for r in rows]


def link_txn(txn: Txn, user_id: int, service: str) -> Link | None:
    """The user's current link to ``service``, or None."""
    found = links_txn(txn, user_id, service)
    return found[0] if found else None
