"""Configuration: defaults, file, environment, validation and masking."""

from pathlib import Path

import pytest

from server.config import ConfigError, env_name, load, mask_dsn, masked


def cfg(tmp_path: Path, env: dict[str, str] | None = None, text: str | None = None):
    variables = {"SHUTTERLOG_VAR": str(tmp_path / "var")} | (env or {})
    path = None
    if text is not None:
        path = tmp_path / "shutterlog.toml"
        path.write_text(text)
    return load(path, env=variables, search_default=False)


def test_defaults_point_at_the_local_stack(tmp_path: Path) -> None:
    """With nothing set, connections derive from the stack ports: two databases, 16 shards."""
    c = cfg(tmp_path)
    assert (c.http.host, c.http.port) == ("127.0.0.1", 8080)
    assert c.shards.count == 16
    assert len(c.shard_map.dsns()) == 2
    assert c.shard_map.dsn_for(15).endswith(":15432/shutterlog_1")
    assert c.redis.url == "redis://127.0.0.1:16379/0"
    assert c.gearman.servers == ("127.0.0.1:14730",)


def test_environment_overrides_file(tmp_path: Path) -> None:
    """A key set in both the file and the environment takes the environment's value."""
    c = cfg(
        tmp_path,
        {"SHUTTERLOG_HTTP_PORT": "9001", "SHUTTERLOG_STACK_REDIS_PORT": "7000"},
        '[http]\nport = 9000\nhost = "0.0.0.0"\n[log]\nformat = "json"\n',
    )
    assert (c.http.host, c.http.port, c.log.format) == ("0.0.0.0", 9001, "json")
    assert c.redis.url == "redis://127.0.0.1:7000/0"


def test_list_settings_from_environment(tmp_path: Path) -> None:
    """Lists are ';'-separated in environment variables."""
    c = cfg(tmp_path, {
        "SHUTTERLOG_SHARDS_COUNT": "4",
        "SHUTTERLOG_SHARDS_DATABASES": "0-1=postgresql://a/x; 2-3=postgresql://b/y",
        "SHUTTERLOG_GEARMAN_SERVERS": "10.0.0.1:4730;10.0.0.2:4730",
    })
    assert c.shard_map.dsn_for(3) == "postgresql://b/y"
    assert c.gearman.servers == ("10.0.0.1:4730", "10.0.0.2:4730")


@pytest.mark.parametrize(
    "env, text, complaint",
    [
        ({"SHUTTERLOG_HTTP_PORT": "eighty"}, None, r"http\.port \(from SHUTTERLOG_HTTP_PORT\)"),
        ({"SHUTTERLOG_HTTP_PORT": "70000"}, None, r"http\.port.*port number"),
        ({"SHUTTERLOG_NOPE": "1"}, None, "SHUTTERLOG_NOPE: no such setting"),
        ({}, "[http]\nprot = 1\n", r"http\.prot .*no such setting"),
        ({}, "[log]\nformat = 'xml'\n", r"log\.format.*'text' or 'json'"),
        ({}, "[shards]\ncount = 0\n", r"shards\.count"),
        ({"SHUTTERLOG_SHARDS_DATABASES": "0-3=postgresql://a/x"}, None,
         r"shards\.databases.*not mapped"),
        ({"SHUTTERLOG_GEARMAN_SERVERS": "nohost"}, None, r"gearman\.servers.*HOST:PORT"),
        ({"SHUTTERLOG_REDIS_URL": "http://x"}, None, r"redis\.url"),
        ({}, "this is = not toml [", "not valid TOML"),
        ({"SHUTTERLOG_RELAY_POLL_INTERVAL": "inf"}, None, r"relay\.poll_interval.*seconds"),
        ({"SHUTTERLOG_REALTIME_PING_INTERVAL": "inf"}, None, r"realtime\.ping_interval"),
    ],
)
def test_invalid_configuration_names_the_key(tmp_path, env, text, complaint) -> None:
    """Every invalid value stops loading with a message naming the key and its source."""
    with pytest.raises(ConfigError, match=complaint):
        cfg(tmp_path, env, text)


def test_secrets_and_passwords_are_masked(tmp_path: Path) -> None:
    """config show's view hides the master secret and database passwords."""
    c = cfg(tmp_path, {
        "SHUTTERLOG_SECRETS_KEY": "hunter2",
        "SHUTTERLOG_SHARDS_DATABASES": "0-15=postgresql://app:s3cret@db/x",
        "SHUTTERLOG_REDIS_URL": "redis://:r3dis@cache:6379/0",
    })
    shown = str(masked(c))
    for secret in ("hunter2", "s3cret", "r3dis"):
        assert secret not in shown
    assert "postgresql://app:***@db/x" in shown
    assert mask_dsn("postgresql://db/x") == "postgresql://db/x"
    assert mask_dsn("host=db password='p w' dbname=x") == "host=db password=*** dbname=x"


FERNET = "uIF8QGmeZ6I0yBdp6pR8rqVg2aZ7Mfb9n7jOYm9x9hM="


@pytest.mark.parametrize("env, text, secret", [
    ({"SHUTTERLOG_SHARDS_DATABASES": "postgresql://app:s3cret@db/x"}, None, "s3cret"),
    ({"SHUTTERLOG_REDIS_URL": "valkey://:r3dis@cache:6379/0"}, None, "r3dis"),
    ({}, f'[secrets]\nencryption_keys = ["{FERNET}", 5]\n', FERNET),
    ({}, "[secrets]\nkey = 918273645546372819\n", "918273645546372819"),
])
def test_errors_never_show_a_secret(tmp_path: Path, env: dict[str, str], text: str | None,
                                    secret: str) -> None:
    """A shard-map entry without its range, a Redis URL of another scheme, a key list with
    a wrong entry, a master secret of the wrong type: refused without the secret shown."""
    with pytest.raises(ConfigError) as e:
        cfg(tmp_path, env, text)
    assert secret not in str(e.value)


def test_a_password_in_a_dsn_query_is_masked(tmp_path: Path) -> None:
    """libpq takes the password as a query parameter too; config show hides it there."""
    c = cfg(tmp_path, {"SHUTTERLOG_SHARDS_DATABASES":
                       "0-15=postgresql://app@db/x?sslmode=require&password=s3cret"})
    assert "s3cret" not in str(masked(c))
    assert mask_dsn("postgresql://db/x?password=p&a=1") == "postgresql://db/x?password=***&a=1"


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    """An empty VAR/secret.key is an error naming it, never an empty master secret."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret.key").write_text("\n")
    with pytest.raises(ConfigError, match="secret.key is empty"):
        cfg(tmp_path)


def test_master_secret_is_created_once(tmp_path: Path) -> None:
    """Without a configured secret, one is generated into VAR/secret.key (0600) and reused."""
    first = cfg(tmp_path).secrets.key
    assert len(first) >= 32
    assert cfg(tmp_path).secrets.key == first
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_env_names() -> None:
    """Keys map to SHUTTERLOG_SECTION_NAME."""
    assert env_name("http.port") == "SHUTTERLOG_HTTP_PORT"
    assert env_name("var") == "SHUTTERLOG_VAR"


def test_geo_index_defaults_to_postgis_in_the_first_database(tmp_path: Path) -> None:
    """The geo index is PostGIS in the shard map's first database unless configured."""
    c = cfg(tmp_path, {"SHUTTERLOG_SHARDS_DATABASES": "0-7=postgresql://a/x;8-15=postgresql://b/y"})
    assert (c.geo.backend, c.geo.postgis_dsn) == ("postgis", "postgresql://a/x")
    assert (c.geo.timeout_ms, c.geo.solr_commit_within_ms) == (5000, 1000)
    c = cfg(tmp_path, {
        "SHUTTERLOG_SHARDS_DATABASES": "0-7=postgresql://a/x;8-15=postgresql://b/y",
        "SHUTTERLOG_GEO_POSTGIS_DSN": "postgresql://b/y",
    })
    assert c.geo.postgis_dsn == "postgresql://b/y"
    c = cfg(tmp_path, {"SHUTTERLOG_GEO_BACKEND": "solr",
                       "SHUTTERLOG_GEO_SOLR_URL": "http://u:s0lr@solr:8983/solr/geo"})
    assert c.geo.backend == "solr"
    assert "s0lr" not in str(masked(c)) and "http://u:***@solr:8983/solr/geo" in str(masked(c))


@pytest.mark.parametrize(
    "env, complaint",
    [
        ({"SHUTTERLOG_GEO_BACKEND": "elastic"}, r"geo\.backend.*'postgis' or 'solr'"),
        ({"SHUTTERLOG_GEO_BACKEND": "solr"}, r"geo\.solr_url.*required when geo\.backend is solr"),
        ({"SHUTTERLOG_GEO_SOLR_URL": "solr:8983"}, r"geo\.solr_url.*not an http"),
        ({"SHUTTERLOG_GEO_POSTGIS_DSN": "postgresql://elsewhere/geo"},
         r"geo\.postgis_dsn \(from SHUTTERLOG_GEO_POSTGIS_DSN\): must be one of the shard map's"),
        ({"SHUTTERLOG_GEO_TIMEOUT_MS": "0"}, r"geo\.timeout_ms.*at least 1"),
        ({"SHUTTERLOG_GEO_SOLR_COMMIT_WITHIN_MS": "-1"}, r"geo\.solr_commit_within_ms.*0 or more"),
    ],
)
def test_invalid_geo_settings_name_the_key(tmp_path, env, complaint) -> None:
    """Bad geo settings stop loading with the key, its source and what is expected."""
    with pytest.raises(ConfigError, match=complaint):
        cfg(tmp_path, env)
