"""Versioned, idempotent migrations over every physical database.

Migrations are SQL files in ``sql/global`` (once per physical database) and ``sql/shard``
(once per logical shard, with ``@schema@`` and ``@shard@`` filled in), named
``NNNN_name.sql`` (numbers increase; gaps are allowed). Each is recorded in
``schema_migrations`` with its checksum. A migration runs in one transaction with its
record, so it applies wholly or not at all; a file whose
first line is ``-- shutterlog: no-transaction`` is marked ``running`` first and ``applied``
after, so an interrupted one is detected and reported instead of being run twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import psycopg2.extensions

from server.db import Database
from server.domain.shards import schema_name
from server.interfaces import IShardRouter

GLOBAL = "global"
NO_TRANSACTION = "-- shutterlog: no-transaction"
_LOCK = (1397244992, -1)  # advisory lock taken while migrating a database
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database is in a state migrations cannot safely continue from."""


@dataclass(frozen=True)
class Migration:
    scope_kind: str  # "global" or "shard"
    version: int
    name: str
    sql: str

    def render(self, scope: str, shard: int | None) -> str:
        if shard is None:
            return self.sql
        return self.sql.replace("@schema@", scope).replace("@shard@", str(shard))

    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def transactional(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)


def available(kind: str) -> list[Migration]:
    """The migrations shipped for ``kind`` ("global" or "shard"), in version order."""
    out = []
    for entry in resources.files("server.store").joinpath("sql", kind).iterdir():
        found = _NAME.match(entry.name)
        if found:
            out.append(Migration(kind, int(found.group(1)), found.group(2), entry.read_text()))
    out.sort(key=lambda m: (m.version, m.name))
    # Numbers are handed out per feature ahead of time, so a release may have gaps; two files
    # with one number would make the record of what was applied ambiguous.
    for prev, m in zip(out, out[1:], strict=False):
        if m.version == prev.version:
            raise MigrationError(
                f"{kind} migrations {prev.version:04d}_{prev.name} and "
                f"{m.version:04d}_{m.name} share a number"
            )
    return out


def _scopes(router: IShardRouter, db: Database) -> list[tuple[str, int | None, list[Migration]]]:
    scopes: list[tuple[str, int | None, list[Migration]]] = [(GLOBAL, None, available("global"))]
    shard_migrations = available("shard")
    for shard in router.shards_of(db):
        scopes.append((schema_name(shard), shard, shard_migrations))
    return scopes


def pending(router: IShardRouter) -> list[str]:
    """Descriptions of migrations not yet applied, over every database (empty: up to date)."""
    out = []
    for db in router.databases():
        conn = db.connect(autocommit=True)
        try:
            applied = _applied(conn)
            for scope, _shard, migrations in _scopes(router, db):
                done = applied.get(scope, {})
                out += [
                    f"{db.dsn_label} {scope} {m.version:04d}_{m.name}"
                    for m in migrations
                    if done.get(m.version, ("", ""))[1] != "applied"
                ]
        finally:
            conn.close()
    return out


def require_migrated(router: IShardRouter, program: str, warn: Callable[[str], None]) -> None:
    """Refuse to start ``program`` (SystemExit) while migrations are pending: the code of a
    release relies on its schema (the API's statements, the workers' ``consumer_lock``).
    A database that is down is only reported through ``warn`` (the program's logger): its
    connections are retried anyway."""
    try:
        todo = pending(router)
    except psycopg2.OperationalError as e:
        warn(f"PostgreSQL is not reachable at start-up: {str(e).strip()}")
        return
    if todo:
        raise SystemExit(
            f"{program}: the database is not migrated; run 'shutterlog migrate' first "
            f"({len(todo)} pending, first: {todo[0]})"
        )


def migrate(router: IShardRouter, say: Callable[[str], None] = lambda msg: None) -> int:
    """Apply every pending migration to every database; returns how many were applied."""
    count = 0
    for db in router.databases():
        conn = db.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s, %s)", _LOCK)
                _ensure_table(cur)
                applied = _applied(conn)
                for scope, shard, migrations in _scopes(router, db):
                    count += _migrate_scope(conn, db, scope, shard, migrations, applied, say)
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", _LOCK)
        finally:
            conn.close()
    return count


def _migrate_scope(
    conn: psycopg2.extensions.connection,
    db: Database,
    scope: str,
    shard: int | None,
    migrations: list[Migration],
    applied: dict[str, dict[int, tuple[str, str]]],
    say: Callable[[str], None],
) -> int:
    done = applied.get(scope, {})
    count = 0
    for m in migrations:
        label = f"{db.dsn_label} {scope} {m.version:04d}_{m.name}"
        if m.version in done:
            checksum, state = done[m.version]
            if state != "applied":
                raise MigrationError(
                    f"{label} was interrupted while being applied (state {state!r}); "
                    "repair it by hand, then mark it applied in schema_migrations"
                )
            if checksum != m.checksum():
                raise MigrationError(f"{label} has changed since it was applied")
            continue
        say(f"applying {label}")
        sql = m.render(scope, shard)
        with conn.cursor() as cur:
            if m.transactional:
                cur.execute("BEGIN")
                try:
                    cur.execute(sql)
                    _record(cur, scope, m, "applied")
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            else:
                _record(cur, scope, m, "running")
                cur.execute(sql)
                cur.execute(
                    "UPDATE schema_migrations SET state = 'applied', applied_at = now() "
                    "WHERE scope = %s AND version = %s",
                    (scope, m.version),
                )
        count += 1
    extra = sorted(set(done) - {m.version for m in migrations})
    if extra:
        raise MigrationError(
            f"{db.dsn_label} {scope} has migrations {extra} that this release does not know: "
            "is the database newer than the code?"
        )
    return count


def _ensure_table(cur: psycopg2.extensions.cursor) -> None:
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            scope      text        NOT NULL,
            version    integer     NOT NULL,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            state      text        NOT NULL CHECK (state IN ('running', 'applied')),
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, version)
        )
        """
    )


def _record(cur: psycopg2.extensions.cursor, scope: str, m: Migration, state: str) -> None:
    cur.execute(
        "INSERT INTO schema_migrations (scope, version, name, checksum, state) "
        "VALUES (%s, %s, %s, %s, %s)",
        (scope, m.version, m.name, m.checksum(), state),
    )


def _applied(conn: psycopg2.extensions.connection) -> dict[str, dict[int, tuple[str, str]]]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = cur.fetchone()
        if not row or not row[0]:
            return {}
        cur.execute("SELECT scope, version, checksum, state FROM schema_migrations")
        out: dict[str, dict[int, tuple[str, str]]] = {}
        for scope, version, checksum, state in cur.fetchall():
            out.setdefault(scope, {})[version] = (checksum, state)
        return out
