"""Requests per second through the API, next to a bare Twisted "hello" resource.

Starts a private stack, the API service (``twistd -n shutterlog``, one process) and a bare
Twisted server on the same machine, prepares users, tokens and an app directly through the
stores, then runs each scenario with 64 concurrent clients (wrk) for ``--seconds`` and prints
the rate, p50/p99 latency, and the rate as a fraction of the bare server's.

Scenarios live in ``SCENARIOS`` (name -> Scenario); later features add theirs and pick them
with ``--only``. Run: ``python -m scripts.bench.api [--seconds S] [--only a,b] [--users N]``.
Sign-ups and password grants hash or verify an argon2id password (64 MiB, t=3, p=4) by
design: that is their cost.
"""

from __future__ import annotations

import random
import secrets
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import redis

from scripts.bench.common import (
    arguments,
    bench_stack,
    machine,
    process,
    progress,
    table,
)
from scripts.bench.load import Result, Scenario, run
from scripts.seed import follow, ready_medium
from scripts.stack import free_port
from server import catalog
from server.api.users import sign_up_txn
from server.config import AccountsConfig, Config
from server.domain.accounts import Register, username_shard
from server.passwords import hash_password
from server.secretbox import SecretBox
from server.shards import ShardRouter
from server.store import apps
from server.store.apps import PURPOSE
from server.store.events import PostgresEventStore
from server.store.tokens import Tokens

PASSWORD = "benchmark password"
FORM = '{["Content-Type"] = "application/x-www-form-urlencoded"}'


@dataclass
class World:
    """What the scenarios draw from: users (ids, names, tokens) and an app."""

    ids: list[str]
    usernames: list[str]
    tokens: list[str]
    client: tuple[str, str]
    prefix: str
    media: list[str]  # ready media of the users; the first is the hot one


def prepare(cfg: Config, users: int) -> World:
    """Users with one real argon2 hash shared by all (one hash, not thousands), tokens
    issued straight into Redis, and an app."""
    catalog.load()
    router = ShardRouter(cfg.shard_map, pool_size=4, name="shutterlog-bench")
    store = PostgresEventStore(router)
    client = redis.Redis.from_url(cfg.redis.url)
    try:
        stored = hash_password(AccountsConfig(), PASSWORD)
        prefix = secrets.token_hex(3)
        client_id, secret = apps.create(store, router, SecretBox(cfg.secrets.key, PURPOSE),
                                        "bench", "https://bench.example/cb", False)
        tokens = Tokens(client, 86400, 600, 600)
        world = World([], [], [], (client_id, secret), prefix, [])
        for i in range(users):
            name = f"b{prefix}_{i}"
            shard = username_shard(name, router.count)
            user = router.database(shard).run_interaction(
                "bench_user", sign_up_txn, store, shard, Register(name, stored, "Bench"), None)
            world.ids.append(str(user.id))
            world.usernames.append(name)
            world.tokens.append(tokens.issue(user.id, client_id, "basic public_content "
                                             "relationships follower_list likes comments",
                                             False))
        seed_media(store, router, world)
        return world
    finally:
        router.close()
        client.close()


def seed_media(store: PostgresEventStore, router: ShardRouter, world: World,
               per_user_follows: int = 20, media: int = 300) -> None:
    """Ready media (one hot) and follows among the users, for the like and feed scenarios
    (home feeds are rebuilt from PostgreSQL on first read: no consumer needs to run)."""
    ids = [int(i) for i in world.ids]
    world.media = [str(ready_medium(store, router, ids[i % len(ids)], f"#bench {i}"))
                   for i in range(media)]
    rng = random.Random(1)
    follow(store, [(u, t) for u in ids for t in rng.sample(ids, per_user_follows) if t != u])


def scenarios(world: World) -> dict[str, Scenario]:
    """The API scenarios (the bare server's ``hello`` runs separately)."""
    client_id, secret = world.client
    return {
        "get_user": Scenario("GET /v1/users/{id}", """
function request()
  local n = next_n()
  local headers = {Authorization = "Bearer " .. tokens[n % #tokens + 1]}
  return wrk.format("GET", "/v1/users/" .. ids[(n * 7) % #ids + 1], headers)
end""", lambda: {"tokens": world.tokens, "ids": world.ids}),
        "follow": Scenario("follows (POST relationship)", f"""
function request()
  local n = next_n()
  local N = #tokens
  local a = n % N + 1
  local b = (a - 1 + 1 + math.floor(n / N) % (N - 1)) % N + 1
  local headers = {FORM}
  headers["Authorization"] = "Bearer " .. tokens[a]
  return wrk.format("POST", "/v1/users/" .. ids[b] .. "/relationship", headers,
                    "action=follow")
end""", lambda: {"tokens": world.tokens, "ids": world.ids}),
        "like": Scenario("likes (POST/DELETE /v1/media/{id}/likes)", """
function request()
  local n = next_n()
  local N = #tokens
  local round = math.floor(n / N)
  local medium = media[1]
  if math.floor(round / 2) % 2 == 1 then medium = media[(n * 7) % #media + 1] end
  local method = "POST"
  if round % 2 == 1 then method = "DELETE" end
  local headers = {Authorization = "Bearer " .. tokens[n % N + 1]}
  return wrk.format(method, "/v1/media/" .. medium .. "/likes", headers)
end""", lambda: {"tokens": world.tokens, "media": world.media}),
        "feed": Scenario("GET /v1/users/self/feed (20, hydrated)", """
function request()
  local n = next_n()
  local headers = {Authorization = "Bearer " .. tokens[n % #tokens + 1]}
  return wrk.format("GET", "/v1/users/self/feed?count=20", headers)
end""", lambda: {"tokens": world.tokens}),
        "token": Scenario("token grants (password)", f"""
function request()
  local n = next_n()
  local body = "client_id={client_id}&client_secret={secret}&grant_type=password"
    .. "&scope=basic&password=benchmark+password&username=" .. usernames[n % #usernames + 1]
  return wrk.format("POST", "/oauth/access_token", {FORM}, body)
end""", lambda: {"usernames": world.usernames}),
        "signup": Scenario("sign-ups", f"""
function request()
  local body = "username=s{world.prefix}_" .. next_n()
    .. "&password=benchmark+password&full_name=Bench"
  return wrk.format("POST", "/v1/users", {FORM}, body)
end"""),
    }


def drain(healthz: str) -> None:
    """Wait until the service has worked off what the last phase left queued (wrk stops
    with up to 64 requests in flight, which for argon2 phases is seconds of work): /healthz
    runs in the same threadpool and answers 503 while its probes wait in that queue."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(healthz, timeout=60):
                return
        except urllib.error.HTTPError:
            continue
    raise SystemExit("the service did not become idle within 300 s")


HELLO = Scenario("bare Twisted hello", 'function request() return wrk.format("GET", "/") end')


def main() -> None:
    p = arguments(__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    p.add_argument("--users", type=int, default=300, help="users to prepare (default: 300)")
    p.add_argument("--connections", type=int, default=64, help="concurrent clients")
    args = p.parse_args()
    with bench_stack(durable=args.durable) as bench:
        progress(f"preparing {args.users} users, their tokens and an app")
        world = prepare(bench.config, args.users)
        chosen = scenarios(world)
        if args.only:
            chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
        api_port, hello_port = free_port(), free_port()
        env = bench.env | {"SHUTTERLOG_HTTP_PORT": str(api_port),
                           "SHUTTERLOG_API_RATE_PER_IP": "1000000000",
                           "SHUTTERLOG_API_RATE_PER_TOKEN": "1000000000",
                           "SHUTTERLOG_LOG_LEVEL": "warning"}
        twistd = str(Path(sys.executable).parent / "twistd")
        results: list[Result] = []
        with process([sys.executable, "-m", "scripts.bench.hello", str(hello_port)], {},
                     f"http://127.0.0.1:{hello_port}/"):
            progress(f"bare hello for {args.seconds:.0f}s")
            bare = run(HELLO, f"http://127.0.0.1:{hello_port}", args.seconds,
                       args.connections)
        with process([twistd, "--logger", "server.logs.observer", "--pidfile", "", "-n",
                      "shutterlog"], env,
                     f"http://127.0.0.1:{api_port}/healthz"):
            for name, scenario in chosen.items():
                progress(f"{name} for {args.seconds:.0f}s")
                results.append(run(scenario, f"http://127.0.0.1:{api_port}", args.seconds,
                                   args.connections))
                drain(f"http://127.0.0.1:{api_port}/healthz")
    rows = [[r.name, f"{r.rate:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
             f"{r.rate / bare.rate:.1%}" if bare.rate else "-", str(r.errors + r.non_2xx)]
            for r in [bare, *results]]
    table(f"API requests/s, {args.connections} concurrent clients ({machine()}; one API "
          f"process; PostgreSQL {'durable' if args.durable else 'fsync off'}; "
          f"{args.seconds:.0f}s each)",
          ["scenario", "req/s", "p50 ms", "p99 ms", "of bare", "failed"], rows)


if __name__ == "__main__":
    main()
