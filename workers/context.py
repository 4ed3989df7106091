"""What consumer handlers are given: configuration and clients, in the worker process."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from server.config import Config
from server.shards import ShardRouter
from server.store.events import PostgresEventStore


@dataclass
class WorkerContext:
    """The worker pool's dependencies, passed to every consumer handler."""

    config: Config
    router: ShardRouter
    store: PostgresEventStore
    redis: redis.Redis

    @classmethod
    def create(cls, config: Config, name: str = "shutterlog-workers") -> WorkerContext:
        router = ShardRouter(config.shard_map, pool_size=config.postgres.pool_size, name=name)
        client = redis.Redis.from_url(config.redis.url, socket_timeout=10,
                                      socket_connect_timeout=5, health_check_interval=30)
        return cls(config, router, PostgresEventStore(router), client)

    def close(self) -> None:
        self.router.close()
        self.redis.close()
