"""Configuration: one TOML file, every key overridable by an environment variable.

Keys are ``section.name`` (or a bare ``name`` at top level); the environment variable is
``SHUTTERLOG_`` + the key upper-cased with dots as underscores (``http.port`` is
``SHUTTERLOG_HTTP_PORT``, ``var`` is ``SHUTTERLOG_VAR``). The file is the one named by
``--config`` or ``SHUTTERLOG_CONFIG``, else ``./shutterlog.toml`` if it exists, else none.

Connection settings left empty are derived from the ``stack`` ports, so the defaults point at
the local stack that ``shutterlog stack up`` starts. An invalid value raises ``ConfigError``
naming the key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets as _secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server.domain.shards import ShardMap

ENV_PREFIX = "SHUTTERLOG_"
DEFAULT_FILE = "shutterlog.toml"


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the value's source."""


def _setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "secret": secret})


@dataclass(frozen=True)
class HttpConfig:
    host: str = _setting("127.0.0.1", "address the API service listens on")
    port: int = _setting(8080, "port of the API service (HTTP and WebSocket)")
    public_url: str = _setting("", "base URL used in links; empty: http://HOST:PORT")
    threads: int = _setting(16, "threads for blocking PostgreSQL and Redis calls in the service")


@dataclass(frozen=True)
class StackConfig:
    postgres_port: int = _setting(15432, "port of the local stack's PostgreSQL")
    redis_port: int = _setting(16379, "port of the local stack's Redis")
    gearman_port: int = _setting(14730, "port of the local stack's gearmand")
    databases: int = _setting(2, "physical databases the local stack creates")
    postgres_bin: str = _setting("", "directory of initdb and postgres; empty: newest installed")


@dataclass(frozen=True)
class ShardsConfig:
    count: int = _setting(16, "number of logical shards (1 to 8192); fixed once data exists")
    databases: tuple[str, ...] = _setting(
        (), "shard map: 'FIRST-LAST=DSN' entries; empty: the local stack's databases"
    )


@dataclass(frozen=True)
class PostgresConfig:
    pool_size: int = _setting(20, "connections per physical database per process")


@dataclass(frozen=True)
class RedisConfig:
    url: str = _setting("", "Redis URL; empty: the local stack's Redis")


@dataclass(frozen=True)
class GearmanConfig:
    servers: tuple[str, ...] = _setting((), "gearmand HOST:PORT list; empty: the local stack's")
    namespace: str = _setting("", "prefix of every Gearman function name (to share a gearmand)")


@dataclass(frozen=True)
class WorkersConfig:
    concurrency: int = _setting(20, "jobs one worker process runs at once")
    modules: tuple[str, ...] = _setting(
        (), "extra modules declaring consumers or task handlers (loaded by relay, workers, CLI)"
    )
    metrics_port: int = _setting(9712, "port of the worker pool's /metrics on 127.0.0.1; 0: none")
    batch_attempts: int = _setting(3, "tries of a failing batch before its events are tried alone")
    event_attempts: int = _setting(5, "tries of one failing event before it is parked")
    retry_delay: float = _setting(0.2, "seconds before the first retry; doubles with each one")
    retry_max_delay: float = _setting(30.0, "longest delay between two retries, in seconds")
    job_budget: float = _setting(
        1.0, "seconds one job advances a (consumer, shard) before re-submitting itself"
    )
    stop_timeout: float = _setting(15.0, "seconds a stopping worker lets running batches finish")
    task_lease: float = _setting(60.0, "seconds a task may run before another worker may take it")
    task_attempts: int = _setting(5, "tries of a task before it is marked failed")


@dataclass(frozen=True)
class RelayConfig:
    poll_interval: float = _setting(
        2.0, "seconds between scans that re-kick lagging consumers and re-submit late tasks"
    )
    debounce: float = _setting(0.002, "seconds the relay gathers notifications before kicking")
    metrics_port: int = _setting(9711, "port of the relay's /metrics on 127.0.0.1; 0: none")


@dataclass(frozen=True)
class GeoConfig:
    backend: str = _setting("postgis", "geo index backend: postgis or solr")
    postgis_dsn: str = _setting(
        "", "database holding the PostGIS geo index, one of the shard map's; empty: the first"
    )
    solr_url: str = _setting(
        "", "URL of the Solr core (or collection) for backend solr, e.g. "
        "http://127.0.0.1:8983/solr/shutterlog_geo; credentials in it are sent as basic auth"
    )
    solr_commit_within_ms: int = _setting(
        1000, "Solr: new points become searchable within this many ms (commitWithin)"
    )
    timeout_ms: int = _setting(
        5000, "longest a geo index call may take: PostgreSQL statement_timeout of searches, "
        "HTTP timeout of Solr requests"
    )


@dataclass(frozen=True)
class LogConfig:
    format: str = _setting("text", "log output: text or json")
    level: str = _setting("info", "debug, info, warning or error")


@dataclass(frozen=True)
class SecretsConfig:
    key: str = _setting(
        "", "master secret (signing); empty: read or create VAR/secret.key", secret=True
    )
    encryption_keys: tuple[str, ...] = _setting(
        (),
        "Fernet keys encrypting stored credentials, newest first (the first encrypts, all "
        "decrypt); 'master' stands for the key derived from secrets.key; empty: ('master',)",
        secret=True,
    )


@dataclass(frozen=True)
class OutboundConfig:
    allow_hosts: tuple[str, ...] = _setting(
        (),
        "hosts (name, *.domain, address or network/len) exempt from the refusal of private, "
        "loopback and link-local addresses for user-given URLs",
    )
    timeout: int = _setting(10, "seconds before an outbound HTTP request times out")
    max_redirects: int = _setting(5, "redirects an outbound request may follow")


@dataclass(frozen=True)
class ShareoutConfig:
    twitter_api_url: str = _setting("https://api.x.com", "base URL of the X (Twitter) API")
    facebook_graph_url: str = _setting(
        "https://graph.facebook.com/v23.0", "base URL of the Facebook Graph API, with version"
    )
    mastodon_max_characters: int = _setting(
        500, "status length limit of Mastodon instances that do not state their own"
    )
    media_poll_seconds: int = _setting(
        120, "how long a share waits for a service to process uploaded media before retrying"
    )
    retry_base: float = _setting(
        30.0, "seconds before a failed share's first retry (doubling, with jitter, never "
        "sooner than the service asked)"
    )
    max_attempts: int = _setting(10, "tries of a share before it is recorded as failed")
    give_up_after: float = _setting(
        172800.0, "seconds after which a share still failing is recorded as failed"
    )


@dataclass(frozen=True)
class ApiConfig:
    max_body_bytes: int = _setting(
        1_048_576, "largest request body the API reads; larger ones get 413 unread"
    )
    rate_per_token: int = _setting(
        5000, "requests an access token may make per rate_window (token bucket capacity)"
    )
    rate_per_ip: int = _setting(
        5000, "requests one client address may make per rate_window (token bucket capacity)"
    )
    rate_window: int = _setting(3600, "seconds in which a bucket refills completely")


@dataclass(frozen=True)
class OAuthConfig:
    token_ttl: int = _setting(90 * 86400, "seconds an access token lives (0: until revoked)")
    code_ttl: int = _setting(600, "seconds an authorization code may wait to be exchanged")
    session_ttl: int = _setting(86400, "seconds a login on the authorize page lasts")


@dataclass(frozen=True)
class AccountsConfig:
    argon2_time_cost: int = _setting(3, "argon2id passes over memory (RFC 9106 profile: 3)")
    argon2_memory_kib: int = _setting(
        65536, "argon2id memory in KiB per password hash (RFC 9106 profile: 64 MiB)"
    )
    argon2_parallelism: int = _setting(4, "argon2id lanes (RFC 9106 profile: 4)")


@dataclass(frozen=True)
class PushConfig:
    ios: str = _setting("log", "push provider for iOS devices: log, apns or fcm")
    android: str = _setting("log", "push provider for Android devices: log or fcm")
    ca_file: str = _setting("", "CA bundle (PEM) that APNs/FCM servers are verified against; "
                            "empty: the system's trust store")
    timeout: int = _setting(10, "seconds to wait for a push service (connect, send, answer)")
    concurrency: int = _setting(
        100, "notifications a worker sends at once (HTTP/2 streams on one connection)")
    apns_url: str = _setting("https://api.push.apple.com",
                             "APNs base URL; sandbox: https://api.sandbox.push.apple.com")
    apns_key_file: str = _setting("", "path of the .p8 token signing key (its content is "
                                  "secret and never logged)")
    apns_key_id: str = _setting("", "the signing key's 10-character key id (JWT kid)")
    apns_team_id: str = _setting("", "the 10-character team id (JWT iss)")
    apns_topic: str = _setting("", "apns-topic when a notification names none: the bundle id")
    apns_jwt_lifetime: int = _setting(
        3000, "seconds a provider token (JWT) is used before a new one is made (1200-3600)")
    fcm_credentials_file: str = _setting(
        "", "path of the service account JSON key file (its private key is never logged)")
    fcm_project: str = _setting("", "Firebase project id; empty: the key file's project_id")
    fcm_url: str = _setting("https://fcm.googleapis.com", "FCM HTTP v1 base URL")
    fcm_token_uri: str = _setting("", "OAuth2 token endpoint; empty: the key file's token_uri")
    collapse_window: float = _setting(
        10.0, "seconds notifications about the same thing wait to be collapsed into one "
        "(counted from the first one's event; 0: each sent at once)")
    user_rate_per_minute: int = _setting(
        30, "notifications one user receives per minute at most (more are dropped; the "
        "activity feed keeps them)")
    dedupe_ttl: int = _setting(
        172800, "seconds the record that a notification was sent is kept (a redone batch or "
        "task within that time never sends it again)")


@dataclass(frozen=True)
class MediaConfig:
    blob_dir: str = _setting("", "directory of the blob store; empty: VAR/blobs")
    photo_max_bytes: int = _setting(15 * 1024 * 1024, "largest photo upload, in bytes")
    video_max_bytes: int = _setting(100 * 1024 * 1024, "largest video upload, in bytes")
    max_pixels: int = _setting(
        50_000_000, "largest photo in pixels (width x height): larger ones are refused as "
        "decompression bombs"
    )
    video_max_seconds: int = _setting(60, "longest video, in seconds")
    video_max_pixels: int = _setting(
        3840 * 2160, "largest video frame in pixels (width x height; 4K by default): each "
        "rendition decodes every frame"
    )
    gc_grace: int = _setting(
        3600, "seconds a blob no medium references is kept before 'shutterlog blobs gc' "
        "removes it (covers uploads between storing the blob and appending the event)"
    )
    ffmpeg: str = _setting("ffmpeg", "the ffmpeg program (renditions of videos)")
    ffprobe: str = _setting("ffprobe", "the ffprobe program (checks uploaded videos)")


@dataclass(frozen=True)
class FeedsConfig:
    size: int = _setting(800, "entries a home feed keeps (older ones are trimmed)")
    user_media_size: int = _setting(
        800, "recent media kept per user in Redis (follow merges, hybrid fan-out)"
    )
    activity_size: int = _setting(300, "items an activity feed keeps")
    chunk_size: int = _setting(
        5000, "followers per fan-out step: an account with more is fanned out by durable "
        "chunk tasks of this many followers, each its own Gearman job"
    )
    hybrid_threshold: int = _setting(
        100_000, "accounts with more followers are not pushed: their recent media are "
        "merged into feeds at read time"
    )
    rebuild_lease_ms: int = _setting(
        10_000, "how long one reader may take to rebuild a lost feed before another may"
    )


@dataclass(frozen=True)
class RealtimeConfig:
    history_size: int = _setting(
        500, "messages each real-time source keeps in Redis for resuming clients")
    history_ttl: int = _setting(
        3600, "seconds a source's history outlives its last message")
    max_buffer_bytes: int = _setting(
        1_048_576, "bytes a WebSocket may have waiting to be sent before it is cut off as too "
        "slow (close code 4008)")
    ping_interval: float = _setting(20.0, "seconds between WebSocket pings (0: none)")
    ping_timeout: float = _setting(10.0, "seconds to wait for a pong before closing")
    auth_timeout: float = _setting(
        10.0, "seconds a WebSocket without a token in its URL has to send its auth frame")
    max_channels: int = _setting(200, "channels one WebSocket may subscribe to")


@dataclass(frozen=True)
class WebhooksConfig:
    attempts: int = _setting(
        8, "tries of one webhook delivery (5xx, 408, 429, timeouts) before its subscriptions "
        "are disabled")
    retry_delay: float = _setting(
        5.0, "seconds before a failed webhook delivery's first retry, doubling")
    retry_max_delay: float = _setting(
        900.0, "longest wait between two tries of a webhook delivery, in seconds")
    max_updates: int = _setting(100, "updates one webhook POST carries at most")
    max_subscriptions: int = _setting(100, "subscriptions one app may hold (active or disabled)")


@dataclass(frozen=True)
class Config:
    var: Path = _setting(Path("var"), "state directory: database cluster, Redis data, logs, blobs")
    http: HttpConfig = field(default_factory=HttpConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    gearman: GearmanConfig = field(default_factory=GearmanConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    geo: GeoConfig = field(default_factory=GeoConfig)
    log: LogConfig = field(default_factory=LogConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    outbound: OutboundConfig = field(default_factory=OutboundConfig)
    shareout: ShareoutConfig = field(default_factory=ShareoutConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    oauth: OAuthConfig = field(default_factory=OAuthConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    push: PushConfig = field(default_factory=PushConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    feeds: FeedsConfig = field(default_factory=FeedsConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)

    @property
    def shard_map(self) -> ShardMap:
        """The validated shard map (derived defaults already applied by ``load``)."""
        return ShardMap.parse(self.shards.count, self.shards.databases)

    def entries(self) -> list[tuple[str, Any, str, bool]]:
        """(key, value, doc, secret) for every setting, in declaration order."""
        return [(key, value, meta["doc"], meta["secret"]) for key, value, meta in _walk(self)]


# --- loading -------------------------------------------------------------------------------


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    search_default: bool = True,
) -> Config:
    """Read the configuration: defaults, then the file, then the environment.

    ``search_default=False`` skips looking for ``./shutterlog.toml`` (tests pass their own).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    file = path or env.get(ENV_PREFIX + "CONFIG")
    if not file and search_default and Path(DEFAULT_FILE).exists():
        file = DEFAULT_FILE
    if file:
        try:
            with open(file, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read configuration file {file}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file}: not valid TOML: {e}") from None
        for key, value in _flatten_toml(data):
            values[key] = value
            sources[key] = str(file)
    known = {key for key, _, _ in _walk(Config())}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        setting = _key_for_env(name, known)
        if setting is None:
            raise ConfigError(f"{name}: no such setting (known: {', '.join(sorted(known))})")
        values[setting] = text
        sources[setting] = name
    return _build(values, sources)


def env_name(key: str) -> str:
    """The environment variable that overrides ``key``."""
    return ENV_PREFIX + key.upper().replace(".", "_")


def _key_for_env(name: str, known: set[str]) -> str | None:
    for key in known:
        if env_name(key) == name:
            return key
    return None


def _flatten_toml(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        if isinstance(v, dict):
            out.extend(_flatten_toml(v, f"{prefix}{k}."))
        else:
            out.append((prefix + k, v))
    return out


def _walk(obj: Any, prefix: str = "") -> list[tuple[str, Any, Mapping[str, Any]]]:
    out: list[tuple[str, Any, Mapping[str, Any]]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.extend(_walk(value, f"{prefix}{f.name}."))
        else:
            out.append((prefix + f.name, value, f.metadata))
    return out


def _build(values: dict[str, Any], sources: dict[str, str]) -> Config:
    defaults = Config()
    known = {key: (value, meta) for key, value, meta in _walk(defaults)}
    for key in values:
        if key not in known:
            where = sources.get(key, "override")
            raise ConfigError(f"{key} (from {where}): no such setting")
    parsed: dict[str, Any] = {}
    for key, (default, meta) in known.items():
        if key not in values:
            parsed[key] = default
            continue
        try:
            parsed[key] = _parse(key, default, values[key])
        except (TypeError, ValueError) as e:
            # a secret's value is never shown, not even a wrong one
            why = f"not a valid {type(default).__name__} value" if meta["secret"] else e
            raise ConfigError(f"{key} (from {sources.get(key, 'override')}): {why}") from None
    _derive(parsed)
    cfg = _assemble(parsed)
    try:
        cfg.shard_map  # noqa: B018  (validates that every logical shard is mapped once)
    except ValueError as e:
        key = "shards.databases"
        raise ConfigError(f"{key} (from {sources.get(key, 'defaults')}): {e}") from None
    _check_geo(cfg, sources)
    return cfg


def _check_geo(cfg: Config, sources: dict[str, str]) -> None:
    """The geo settings that depend on others: the PostGIS index lives in a database that
    ``shutterlog migrate`` migrates (one of the shard map's); Solr needs a URL."""
    if cfg.geo.postgis_dsn not in cfg.shard_map.dsns():
        key = "geo.postgis_dsn"
        raise ConfigError(
            f"{key} (from {sources.get(key, 'defaults')}): must be one of the shard map's "
            f"databases (migrations create the geo index there), got "
            f"{mask_dsn(cfg.geo.postgis_dsn)!r}"
        )
    if cfg.geo.backend == "solr" and not cfg.geo.solr_url:
        raise ConfigError(
            f"geo.solr_url (from {sources.get('geo.backend', 'defaults')}): required when "
            "geo.backend is solr"
        )


def _assemble(flat: dict[str, Any]) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in flat.items():
        section, _, name = key.rpartition(".")
        if section:
            sections.setdefault(section, {})[name] = value
        else:
            top[name] = value
    defaults = Config()
    return Config(**top, **{s: type(getattr(defaults, s))(**kw) for s, kw in sections.items()})


_CHECKS: dict[str, Callable[[Any], None]] = {}


def _check(*keys: str) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        for k in keys:
            _CHECKS[k] = fn
        return fn

    return register


@_check("http.port", "stack.postgres_port", "stack.redis_port", "stack.gearman_port",
        "workers.metrics_port", "relay.metrics_port")
def _port(v: int) -> None:
    if not 0 <= v <= 65535:
        raise ValueError(f"must be a port number (0-65535), got {v}")


@_check("shards.count")
def _shard_count(v: int) -> None:
    if not 1 <= v <= 8192:
        raise ValueError(f"must be between 1 and 8192, got {v}")


@_check(
    "http.threads", "postgres.pool_size", "stack.databases", "outbound.timeout",
    "shareout.mastodon_max_characters", "shareout.media_poll_seconds", "shareout.max_attempts",
    "workers.concurrency",
    "workers.batch_attempts", "workers.event_attempts", "workers.task_attempts", "geo.timeout_ms",
    "api.max_body_bytes", "api.rate_per_token", "api.rate_per_ip", "api.rate_window",
    "oauth.code_ttl", "oauth.session_ttl", "accounts.argon2_time_cost",
    "accounts.argon2_parallelism", "push.timeout", "push.concurrency", "push.user_rate_per_minute",
    "push.dedupe_ttl", "media.photo_max_bytes",
    "media.video_max_bytes", "media.max_pixels", "media.video_max_seconds",
    "media.video_max_pixels", "feeds.size",
    "feeds.user_media_size", "feeds.activity_size", "feeds.chunk_size", "feeds.rebuild_lease_ms",
    "realtime.history_size", "realtime.history_ttl", "realtime.max_buffer_bytes",
    "realtime.max_channels", "webhooks.attempts", "webhooks.max_updates",
    "webhooks.max_subscriptions",
)
def _positive(v: int) -> None:
    if v < 1:
        raise ValueError(f"must be at least 1, got {v}")


@_check("workers.retry_delay", "workers.retry_max_delay", "workers.job_budget",
        "workers.stop_timeout", "workers.task_lease", "relay.poll_interval",
        "realtime.auth_timeout", "webhooks.retry_delay", "webhooks.retry_max_delay",
        "shareout.retry_base", "shareout.give_up_after")
def _positive_seconds(v: float) -> None:
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"must be a positive number of seconds, got {v}")


@_check("relay.debounce", "realtime.ping_interval", "realtime.ping_timeout",
        "push.collapse_window")
def _seconds(v: float) -> None:
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"must be a number of seconds (0 or more), got {v}")


@_check("accounts.argon2_memory_kib")
def _argon2_memory(v: int) -> None:
    if v < 8:
        raise ValueError(f"must be at least 8 (KiB), got {v}")


@_check("log.format")
def _log_format(v: str) -> None:
    if v not in ("text", "json"):
        raise ValueError(f"must be 'text' or 'json', got {v!r}")


@_check("log.level")
def _log_level(v: str) -> None:
    if v not in ("debug", "info", "warning", "error"):
        raise ValueError(f"must be debug, info, warning or error, got {v!r}")


@_check("push.ios")
def _ios_provider(v: str) -> None:
    if v not in ("log", "apns", "fcm"):
        raise ValueError(f"must be log, apns or fcm, got {v!r}")


@_check("push.android")
def _android_provider(v: str) -> None:
    if v not in ("log", "fcm"):
        raise ValueError(f"must be log or fcm (APNs serves only Apple devices), got {v!r}")


@_check("push.apns_jwt_lifetime")
def _jwt_lifetime(v: int) -> None:
    if not 1200 <= v <= 3600:
        raise ValueError(f"must be 1200 to 3600 seconds (APNs: refresh no more than once every "
                         f"20 minutes, at least once an hour), got {v}")


@_check("push.apns_url", "push.fcm_url", "push.fcm_token_uri")
def _https_url(v: str) -> None:
    parts = urlsplit(v)
    if v and (parts.scheme != "https" or not parts.netloc):
        raise ValueError(f"{v!r} is not an https:// URL")


@_check("gearman.servers")
def _hostports(v: tuple[str, ...]) -> None:
    for item in v:
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT")


@_check("geo.backend")
def _geo_backend(v: str) -> None:
    if v not in ("postgis", "solr"):
        raise ValueError(f"must be 'postgis' or 'solr', got {v!r}")


@_check("outbound.max_redirects", "geo.solr_commit_within_ms", "oauth.token_ttl",
        "media.gc_grace", "feeds.hybrid_threshold")
def _not_negative(v: int) -> None:
    if v < 0:
        raise ValueError(f"must be 0 or more, got {v}")


@_check("outbound.allow_hosts")
def _allow_hosts(v: tuple[str, ...]) -> None:
    from server.domain.outbound import OutboundPolicy

    OutboundPolicy.parse(v)


@_check("shareout.twitter_api_url", "shareout.facebook_graph_url")
def _http_url(v: str) -> None:
    if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
        raise ValueError(f"{v!r} is not an http:// or https:// URL")


@_check("geo.solr_url")
def _optional_http_url(v: str) -> None:
    if v:
        _http_url(v)


@_check("secrets.encryption_keys")
def _encryption_keys(v: tuple[str, ...]) -> None:
    from server.crypto import check_key

    for entry in v:
        check_key(entry)


@_check("redis.url")
def _redis_url(v: str) -> None:
    if v and urlsplit(v).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{mask_dsn(v)!r} is not a redis://, rediss:// or unix:// URL")


def _parse(key: str, default: Any, raw: Any) -> Any:
    """Coerce a TOML value or an environment string to the type of ``default``, then check it."""
    kind = type(default)
    value: Any
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(f"must be an integer, got {raw!r}")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
    elif kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"must be a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
    elif kind is tuple:
        if isinstance(raw, str):
            value = tuple(p.strip() for p in raw.replace("\n", ";").split(";") if p.strip())
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            value = tuple(raw)
        else:
            raise ValueError(f"must be a list of strings, got {raw!r}")
    elif issubclass(kind, Path):
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"must be a path, got {raw!r}")
        value = Path(raw)
    else:
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, got {raw!r}")
        value = raw
    check = _CHECKS.get(key)
    if check:
        check(value)
    return value


def _derive(p: dict[str, Any]) -> None:
    """Fill empty connection settings from the local stack's ports."""
    if not p["http.public_url"]:
        p["http.public_url"] = f"http://{p['http.host']}:{p['http.port']}"
    if not p["shards.databases"]:
        port = p["stack.postgres_port"]
        n = min(p["stack.databases"], p["shards.count"])
        dsns = [stack_dsn(port, i) for i in range(n)]
        p["shards.databases"] = tuple(
            str(r) for r in ShardMap.split(p["shards.count"], dsns).ranges
        )
    if not p["redis.url"]:
        p["redis.url"] = f"redis://127.0.0.1:{p['stack.redis_port']}/0"
    if not p["gearman.servers"]:
        p["gearman.servers"] = (f"127.0.0.1:{p['stack.gearman_port']}",)
    if not p["geo.postgis_dsn"]:
        try:
            shard_map = ShardMap.parse(p["shards.count"], p["shards.databases"])
            p["geo.postgis_dsn"] = shard_map.dsns()[0]
        except ValueError:
            pass  # reported for shards.databases once the configuration is assembled
    if not p["secrets.key"]:
        p["secrets.key"] = _secret_from_file(Path(p["var"]) / "secret.key")


def stack_dsn(port: int, index: int, host: str = "127.0.0.1") -> str:
    """The DSN of the local stack's ``index``-th physical database."""
    return f"postgresql://postgres@{host}:{port}/shutterlog_{index}"


def _secret_from_file(path: Path) -> str:
    """The master secret kept in the state directory, created (mode 0600) on first use:
    written whole to a file of its own, then linked into place, so no process ever reads a
    half-written (empty) secret; a process that loses the race uses the winner's."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(_secrets.token_urlsafe(32) + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(draft, path)
            except FileExistsError:
                pass  # another process won the race: its secret is the one
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if not key:
        raise ConfigError(f"{path} is empty: put the master secret in it, or delete it to "
                          "have a new one made (what it sealed can then not be opened)")
    return key


# --- display -------------------------------------------------------------------------------


def mask_dsn(dsn: str) -> str:
    """A DSN, URL or shard-map entry (``0-7=DSN``) with any password replaced by ``***``."""
    prefix, sep, rest = dsn.partition("=")
    if sep and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", prefix):
        return f"{prefix}={mask_dsn(rest)}"
    if "://" not in dsn:  # keyword form: "host=db password=... dbname=x"
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc if parts.password is None else parts.netloc.replace(
        f":{parts.password}@", ":***@", 1)
    query = re.sub(r"((?:^|&)password=)[^&]*", r"\1***", parts.query)  # libpq allows it
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def masked(cfg: Config) -> dict[str, Any]:
    """The effective configuration as a flat mapping, secrets and passwords masked."""
    out: dict[str, Any] = {}
    for key, value, _doc, secret in cfg.entries():
        if secret:
            value = "***" if value else ""
        elif key == "shards.databases":
            value = [mask_dsn(v) for v in value]
        elif key in ("redis.url", "geo.postgis_dsn", "geo.solr_url"):
            value = mask_dsn(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out
