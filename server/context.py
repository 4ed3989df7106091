"""What the service's request handlers are given: configuration and clients, and the bridge
that runs blocking store code off the reactor thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ParamSpec, TypeVar

import redis

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from plugins.shareout import SharingContext
from server.config import Config
from server.interfaces import IBlobStore, IGeoIndex
from server.secretbox import SecretBox
from server.shards import ShardRouter
from server.store import media
from server.store.apps import PURPOSE
from server.store.counters import CounterCache
from server.store.events import PostgresEventStore
from server.store.feeds import FeedStore
from server.store.places import LocationStore, geo_database
from server.store.ratelimit import Limits, RateLimiter
from server.store.tokens import Tokens

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class ServiceContext(SharingContext):
    """The service's dependencies, passed to every route module."""

    config: Config
    reactor: Any  # IReactorTime & IReactorThreads & IReactorTCP
    pool: ThreadPool
    router: ShardRouter
    store: PostgresEventStore
    redis: redis.Redis

    @classmethod
    def create(cls, config: Config, reactor: Any, pool: ThreadPool) -> ServiceContext:
        router = ShardRouter(config.shard_map, pool_size=config.postgres.pool_size,
                             name="shutterlog-api")
        client = redis.Redis.from_url(
            config.redis.url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        return cls(config, reactor, pool, router, PostgresEventStore(router), client)

    @cached_property
    def tokens(self) -> Tokens:
        """Access tokens, authorization codes and login sessions (Redis)."""
        o = self.config.oauth
        return Tokens(self.redis, o.token_ttl, o.code_ttl, o.session_ttl)

    @cached_property
    def limiter(self) -> RateLimiter:
        """Token lookup and rate limiting in one Redis round trip."""
        a = self.config.api
        return RateLimiter(self.redis, Limits(a.rate_per_ip, a.rate_per_token, a.rate_window))

    @cached_property
    def box(self) -> SecretBox:
        """Seals and opens app client secrets."""
        return SecretBox(self.config.secrets.key, PURPOSE)

    @cached_property
    def blobs(self) -> IBlobStore:
        """The blob store (uploads, renditions, blob URLs)."""
        from plugins.blobs import open_store

        return open_store(self.config)

    @cached_property
    def feeds(self) -> FeedStore:
        """Home feeds and users' recent media (Redis)."""
        f = self.config.feeds
        return FeedStore(self.redis, f.size, f.user_media_size)

    @cached_property
    def counters(self) -> CounterCache:
        """Media like and comment counts (Redis, read through to PostgreSQL)."""
        return CounterCache(self.redis, lambda ids: media.counts(self.router, ids))

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

    def blocking(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Deferred[R]:
        """Run ``fn`` in the threadpool; the Deferred fires with its result."""
        return deferToThreadPool(self.reactor, self.pool, fn, *args, **kwargs)

    def close(self) -> None:
        self.close_sharing()
        if "geo" in self.__dict__:
            self.geo.close()
        self.router.close()
        self.redis.close()
