"""What consumer handlers are given: configuration and clients, in the worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import httpx
import redis

from plugins.shareout import SharingContext
from server.config import Config
from server.domain.push import Platform
from server.interfaces import IGeoIndex, IPushProvider
from server.shards import ShardRouter
from server.store.events import PostgresEventStore
from server.store.places import LocationStore, geo_database
from server.store.realtime import RealtimeStore
from workers.gearman import GearmanClient


@dataclass
class WorkerContext(SharingContext):
    """The worker pool's dependencies, passed to every consumer handler."""

    config: Config
    router: ShardRouter
    store: PostgresEventStore
    redis: redis.Redis
    #: Prefix of the Redis projections' keys the handlers write: "" is live; the replay CLI
    #: builds under ``replay:{run}:`` (``workers/replay.py``).
    key_prefix: str = ""
    #: PostgreSQL projection tables the handlers write, by name, when not the live ones
    #: (the replay CLI builds ``liked`` into shadow tables).
    tables: dict[str, str] = field(default_factory=dict)

    def table(self, name: str) -> str:
        """The table handlers write for projection table ``name``."""
        return self.tables.get(name, name)

    @classmethod
    def create(cls, config: Config, name: str = "shutterlog-workers") -> WorkerContext:
        router = ShardRouter(config.shard_map, pool_size=config.postgres.pool_size, name=name)
        client = redis.Redis.from_url(config.redis.url, socket_timeout=10,
                                      socket_connect_timeout=5, health_check_interval=30)
        return cls(config, router, PostgresEventStore(router), client)

    @cached_property
    def gearman(self) -> GearmanClient:
        """A client of every configured gearmand (for submitting jobs and tasks)."""
        return GearmanClient(self.config.gearman.servers)

    @cached_property
    def geo(self) -> IGeoIndex:
        """The geo index (``geo.backend``), bound to the live namespace. The replay CLI may
        set it to an index bound to a fresh namespace before running the geo consumer."""
        from plugins.geo import open_index

        return open_index(self.config, self.router)

    @cached_property
    def locations(self) -> LocationStore:
        """The locations projection (in the geo database; the replay may set another table)."""
        return LocationStore(geo_database(self.config, self.router))

    @cached_property
    def realtime(self) -> RealtimeStore:
        """The real-time sources' histories and pub/sub (Redis), under ``key_prefix``."""
        r = self.config.realtime
        return RealtimeStore(self.redis, r.history_size, r.history_ttl * 1000,
                             prefix=self.key_prefix + "rt:")

    @cached_property
    def outbound(self) -> httpx.Client:
        """An HTTP client for URLs users and apps give us (webhook callbacks): it refuses
        private, loopback and link-local addresses (``server.outbound``)."""
        from server.outbound import configured_client

        return configured_client(self.config)

    @cached_property
    def push(self) -> dict[Platform, IPushProvider]:
        """The push provider of each platform (``push.ios``, ``push.android``)."""
        from plugins.push import push_providers

        return push_providers(self.config)

    def close(self) -> None:
        self.close_sharing()
        if "geo" in self.__dict__:
            self.geo.close()
        if "outbound" in self.__dict__:
            self.outbound.close()
        if "push" in self.__dict__:
            from plugins.push import close_all

            close_all(self.push)
        self.router.close()
        self.redis.close()
        if "gearman" in self.__dict__:
            self.gearman.close()
