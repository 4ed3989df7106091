"""``twistd shutterlog``: the API service's options and its service tree."""

from __future__ import annotations

import redis

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from server import catalog
from server.api.site import build_site
from server.config import ConfigError, load
from server.context import ServiceContext
from server.realtime import Hub
from server.store.migrate import require_migrated
from server.store.realtime import RealtimeStore

log = Logger()

#: Counter buckets hold 1,000 fields; a smaller listpack limit silently loses their saving.
MIN_LISTPACK_ENTRIES = 1000


class Options(usage.Options):
    optParameters = [
        ["config", "c", None, "Configuration file (TOML); default: SHUTTERLOG_CONFIG or "
         "./shutterlog.toml if present. Every key can be set by environment variable."],
    ]


class ThreadPoolService(Service):
    """Starts and stops the threadpool with the service tree."""

    def __init__(self, pool: ThreadPool, ctx: ServiceContext) -> None:
        self.pool = pool
        self.ctx = ctx

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()
        self.ctx.close()


class HubService(Service):
    """Runs the real-time pub/sub thread with the service tree."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def startService(self) -> None:
        super().startService()
        self.hub.start()

    def stopService(self) -> None:
        super().stopService()
        self.hub.stop()


def makeService(options: Options) -> MultiService:
    """The API service: threadpool, HTTP listener, start-up checks."""
    from twisted.internet import reactor

    try:
        cfg = load(options["config"])
    except ConfigError as e:
        raise SystemExit(f"shutterlog: invalid configuration: {e}") from None
    catalog.load()
    root = MultiService()
    pool = ThreadPool(minthreads=2, maxthreads=cfg.http.threads, name="shutterlog-blocking")
    ctx = ServiceContext.create(cfg, reactor, pool)
    ThreadPoolService(pool, ctx).setServiceParent(root)
    _check_database(ctx)
    _check_redis(ctx)
    endpoint_type = TCP6ServerEndpoint if ":" in cfg.http.host else TCP4ServerEndpoint
    endpoint = endpoint_type(reactor, cfg.http.port, backlog=1024, interface=cfg.http.host)
    r = cfg.realtime
    hub = Hub(RealtimeStore(ctx.redis, r.history_size, r.history_ttl * 1000), reactor,
              ctx.blocking)
    HubService(hub).setServiceParent(root)
    StreamServerEndpointService(endpoint, build_site(ctx, hub)).setServiceParent(root)
    log.info("shutterlog API on {host}:{port}", host=cfg.http.host, port=cfg.http.port)
    return root


def _check_database(ctx: ServiceContext) -> None:
    """Refuse to start on an unmigrated database; a database that is down is only reported
    (``/healthz`` says so until it is back)."""
    require_migrated(ctx.router, "shutterlog", lambda message: log.warn("{m}", m=message))


def _check_redis(ctx: ServiceContext) -> None:
    """Warn when Redis would store counter buckets without the compact listpack encoding."""
    try:
        value = ctx.redis.config_get("hash-max-listpack-entries").get("hash-max-listpack-entries")
    except redis.RedisError as e:
        log.warn("Redis is not reachable at start-up: {error}", error=str(e))
        return
    if value is not None and int(value) < MIN_LISTPACK_ENTRIES:
        log.warn(
            "Redis hash-max-listpack-entries is {value}; counter buckets of 1,000 need at least "
            "{needed}, or each takes several times the memory (set it in redis.conf)",
            value=value,
            needed=MIN_LISTPACK_ENTRIES,
        )
