"""Migrations: idempotent, per shard schema where the map says, and guarded against drift."""

from __future__ import annotations

import psycopg2
import pytest

from server.config import load
from server.shards import ShardRouter
from server.store.migrate import MigrationError, available, migrate, pending
from tests.integration.conftest import Env, env_for


def test_running_twice_changes_nothing(env: Env) -> None:
    """A migrated database has nothing pending, and migrating again applies nothing."""
    assert pending(env.router) == []
    assert migrate(env.router) == 0


def test_fresh_databases_get_every_migration(env: Env) -> None:
    """Empty databases get the global migrations once each and the shard ones per shard."""
    admin = psycopg2.connect(env.stack.dsn(0).rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    names = [f"{env.dbnames[0]}_fresh_{i}" for i in range(2)]
    with admin.cursor() as cur:
        for name in names:
            cur.execute(f'CREATE DATABASE "{name}"')
    router = ShardRouter(load(env=env_for(env.stack, names), search_default=False).shard_map)
    try:
        expected = 2 * len(available("global")) + 16 * len(available("shard"))
        assert len(pending(router)) == expected
        assert migrate(router) == expected
        assert pending(router) == [] and migrate(router) == 0
    finally:
        router.close()
        with admin.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def test_shard_schemas_live_where_the_map_says(env: Env) -> None:
    """Each physical database has exactly the shard schemas the shard map assigns it."""
    for db in env.router.databases():
        rows = db.run_interaction("schemas", lambda txn: txn.fetchall(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'shard_%' ORDER BY 1"
        ))
        assert [r[0] for r in rows] == [f"shard_{s:04d}" for s in env.router.shards_of(db)]


@pytest.mark.parametrize(
    "tamper, complaint",
    [
        ("UPDATE schema_migrations SET checksum = 'x' WHERE scope = 'global'", "has changed"),
        ("UPDATE schema_migrations SET state = 'running' WHERE scope = 'shard_0003'",
         "interrupted"),
        ("INSERT INTO schema_migrations VALUES ('global', 999, 'future', 'x', 'applied')",
         "does not know"),
    ],
)
def test_drift_is_detected(env: Env, tamper: str, complaint: str) -> None:
    """A changed file, a half-applied migration or an unknown one stops migrate loudly."""
    env.router.database(3).run_interaction("tamper", lambda txn: txn.execute(tamper))
    with pytest.raises(MigrationError, match=complaint):
        migrate(env.router)
