"""The real servers for integration tests.

One local stack (PostgreSQL, Redis, gearmand) per test session, on free loopback ports in a
temporary directory, torn down at the end. Its two databases are migrated once and used as
templates: every test gets two fresh physical databases cloned from them, an empty Redis and
its own Gearman namespace, so tests never see each other's state.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from scripts.stack import LocalStack, free_port
from server.config import Config, load, stack_dsn
from server.shards import ShardRouter
from server.store.events import PostgresEventStore
from server.store.migrate import migrate

SHARDS = 16
_counter = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def config_for(stack: LocalStack, dbnames: list[str], namespace: str = "") -> Config:
    """Configuration pointing at ``stack``, with the shard map over ``dbnames``."""
    return load(env=env_for(stack, dbnames, namespace), search_default=False)


def env_for(stack: LocalStack, dbnames: list[str], namespace: str = "") -> dict[str, str]:
    """Environment variables pointing our processes at ``stack`` and ``dbnames``."""
    port = stack.ports["postgres"]
    per = SHARDS // len(dbnames)
    entries = [
        f"{i * per}-{(i + 1) * per - 1}={stack_dsn(port, 0).rsplit('/', 1)[0]}/{name}"
        for i, name in enumerate(dbnames)
    ]
    return stack.env() | {
        "SHUTTERLOG_SHARDS_COUNT": str(SHARDS),
        "SHUTTERLOG_SHARDS_DATABASES": ";".join(entries),
        "SHUTTERLOG_GEARMAN_NAMESPACE": namespace,
        "SHUTTERLOG_SECRETS_KEY": "test-secret-key",
        "SHUTTERLOG_POSTGRES_POOL_SIZE": "8",
    }


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    var = Path(tempfile.mkdtemp(prefix="shutterlog-test-"))
    s = LocalStack(
        var, postgres_port=free_port(), redis_port=free_port(), gearman_port=free_port(),
        databases=2, ephemeral=True,
    )
    try:
        s.up()
        router = ShardRouter(config_for(s, ["shutterlog_0", "shutterlog_1"]).shard_map,
                             pool_size=1)
        migrate(router)
        router.close()
        yield s
    finally:
        s.down()
        shutil.rmtree(var, ignore_errors=True)


@dataclass
class Env:
    """A fresh, migrated world for one test."""

    stack: LocalStack
    config: Config
    vars: dict[str, str]  # environment for our processes (twistd, relay, workers)
    router: ShardRouter
    store: PostgresEventStore
    redis: redis.Redis
    dbnames: list[str]


def _admin(stack: LocalStack) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(stack_dsn(stack.ports["postgres"], 0).rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    return conn


@contextlib.contextmanager
def fresh_env(stack: LocalStack) -> Iterator[Env]:
    """Two fresh migrated databases, an empty Redis and a Gearman namespace of their own."""
    n = next(_counter)
    dbnames = [f"test{n}_0", f"test{n}_1"]
    admin = _admin(stack)
    with admin.cursor() as cur:
        for i, name in enumerate(dbnames):
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "shutterlog_{i}" STRATEGY FILE_COPY')
    client = redis.Redis.from_url(stack.redis_url)
    client.flushall()
    blobs = Path(tempfile.mkdtemp(prefix=f"shutterlog-blobs{n}-"))
    variables = env_for(stack, dbnames, namespace=f"t{n}.") | {
        "SHUTTERLOG_MEDIA_BLOB_DIR": str(blobs)}
    cfg = load(env=variables, search_default=False)
    router = ShardRouter(cfg.shard_map, pool_size=8, name="shutterlog-test")
    try:
        yield Env(stack, cfg, variables, router, PostgresEventStore(router), client, dbnames)
    finally:
        router.close()
        client.close()
        shutil.rmtree(blobs, ignore_errors=True)
        with admin.cursor() as cur:
            for name in dbnames:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def env(stack: LocalStack) -> Iterator[Env]:
    with fresh_env(stack) as e:
        yield e


@pytest.fixture(scope="module")
def module_env(stack: LocalStack) -> Iterator[Env]:
    """One world for a whole test module (a service started once); tests keep their data
    apart by using names of their own."""
    with fresh_env(stack) as e:
        yield e


@pytest.fixture(scope="module")
def service(request: pytest.FixtureRequest, module_env: Env) -> Iterator[Any]:
    """The API service for a test module (settings: the module's ``SERVICE_ENV``)."""
    from tests.integration.apiclient import start_service

    svc = start_service(module_env, **getattr(request.module, "SERVICE_ENV", {}))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def api(module_env: Env, service: Any) -> Iterator[Any]:
    """The test's view of its module's service (``tests.integration.apiclient.Api``)."""
    from tests.integration.apiclient import Api

    api = Api(module_env, service)
    try:
        yield api
    finally:
        api.close()
