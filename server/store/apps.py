"""Apps (OAuth clients) in PostgreSQL: the ``apps`` table, an inline projection of
``AppCreated`` and ``AppRevoked``, each app in the shard its client id hashes to.

The client secret is stored sealed (``server/secretbox.py``): signed requests need the secret
itself for their HMAC, so a one-way hash would not do; the sealing key derives from
``secrets.key``, which never enters the database or the log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from server.db import Txn
from server.domain.log import NewEvent, RecordedEvent
from server.domain.oauth import (
    AppCreated,
    AppRevoked,
    app_shard,
    app_stream,
    check_redirect_uri_format,
)
from server.domain.shards import schema_name
from server.interfaces import IEventStore, IShardRouter
from server.secretbox import SecretBox
from server.store.inline import INLINE

PURPOSE = "app client secrets"


@dataclass(frozen=True)
class App:
    client_id: str
    name: str
    redirect_uri: str
    secret_box: bytes
    require_signed: bool
    revoked: bool
    created_ms: int

    def secret(self, box: SecretBox) -> str:
        return box.open(self.secret_box).decode()


_COLUMNS = "client_id, name, redirect_uri, secret_box, require_signed, revoked, created_ms"


@INLINE.on("AppCreated", "AppRevoked")
def _apps(txn: Txn, events: list[RecordedEvent]) -> None:
    for e in events:
        schema = schema_name(e.shard)
        data = e.data
        if isinstance(data, AppCreated):
            txn.execute(
                f"INSERT INTO {schema}.apps (client_id, name, redirect_uri, secret_box, "
                "require_signed, created_ms) VALUES (%s, %s, %s, %s, %s, %s)",
                (data.client_id, data.name, data.redirect_uri, data.secret_box,
                 data.require_signed, e.created_ms),
            )
        elif isinstance(data, AppRevoked):
            txn.execute(f"UPDATE {schema}.apps SET revoked = true WHERE client_id = %s",
                        (data.client_id,))


def _row(row: tuple[Any, ...]) -> App:
    return App(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6])


def get(router: IShardRouter, client_id: str) -> App | None:
    """The app with this client id (revoked ones included), or None."""
    if not client_id or len(client_id) > 64:
        return None
    shard = app_shard(client_id, router.count)
    row = router.database(shard).run_interaction(
        "get_app",
        lambda txn: txn.fetchone(
            f"SELECT {_COLUMNS} FROM {schema_name(shard)}.apps WHERE client_id = %s",
            (client_id,),
        ),
    )
    return _row(row) if row else None


def all_apps(router: IShardRouter) -> list[App]:
    """Every app, oldest first."""
    out: list[App] = []
    for db in router.databases():
        sql = " UNION ALL ".join(
            f"SELECT {_COLUMNS} FROM {schema_name(s)}.apps" for s in router.shards_of(db)
        )
        out += [_row(r) for r in db.run_interaction("list_apps", Txn.fetchall, sql)]
    return sorted(out, key=lambda a: (a.created_ms, a.client_id))


def create(
    store: IEventStore, router: IShardRouter, box: SecretBox, name: str, redirect_uri: str,
    require_signed: bool,
) -> tuple[str, str]:
    """Register an app; returns (client_id, client_secret). The secret is shown once."""
    check_redirect_uri_format(redirect_uri)
    if not name.strip() or len(name) > 100:
        raise ValueError("the app name must be 1-100 characters")
    client_id = secrets.token_hex(16)
    secret = secrets.token_hex(16)
    event = AppCreated(client_id=client_id, name=name, redirect_uri=redirect_uri,
                       secret_box=box.seal(secret.encode()), require_signed=require_signed)
    store.append(app_shard(client_id, router.count), app_stream(client_id), [NewEvent(event)],
                 expected_version=0)
    return client_id, secret


def revoke(store: IEventStore, router: IShardRouter, client_id: str) -> bool:
    """Mark the app revoked (its tokens are the caller's to delete); False if unknown or
    already revoked."""
    app = get(router, client_id)
    if app is None or app.revoked:
        return False
    store.append(app_shard(client_id, router.count), app_stream(client_id),
                 [NewEvent(AppRevoked(client_id=client_id))])
    return True
