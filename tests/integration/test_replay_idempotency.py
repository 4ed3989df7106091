"""Re-applying every consumer's batches changes nothing (what a crash between apply and
checkpoint does): in a world of its own, so no other test's manipulation of Redis shows."""

from __future__ import annotations

from typing import Any

from server.db import Txn
from server.domain.ids import shard_of
from server.domain.shards import schema_name
from tests.drive import Driver
from tests.integration.apiclient import Api
from tests.integration.conftest import Env
from tests.integration.mediakit import CONSUMERS, post, settle


def snapshot(env: Env) -> dict[str, Any]:
    """Every projection key in Redis, with its content (sessions and rate limits left out)."""
    out: dict[str, Any] = {}
    r = env.redis
    for key in r.scan_iter():
        name = key.decode()
        kind = r.type(key).decode()
        if kind == "zset":
            out[name] = r.zrange(key, 0, -1, withscores=True)
        elif kind == "hash" and not name.startswith(("rl:", "tok", "session")):
            out[name] = r.hgetall(key)
        elif kind == "set":
            out[name] = sorted(r.smembers(key))
    return out


def test_applying_every_consumer_again_changes_nothing(api: Api, module_env: Env) -> None:
    """Re-applying every consumer from the origin of the log (what a crash between apply
    and checkpoint does, many times over) leaves Redis and PostgreSQL as they were."""
    (a, ta), (b, tb) = api.user(), api.user()
    api.relate(tb, a["id"], "follow")
    m = post(api, ta, caption="#again @" + b["username"])
    api.post(f"/v1/media/{m}/likes", tb)
    api.post(f"/v1/media/{m}/comments", tb, text="yes")
    settle(module_env)
    before = snapshot(module_env), counts(module_env, a, b)
    Driver(module_env).drive(*CONSUMERS)
    after = snapshot(module_env), counts(module_env, a, b)
    changed = {k for k in set(before[0]) | set(after[0]) if before[0].get(k) != after[0].get(k)}
    assert not changed, {k: (before[0].get(k), after[0].get(k)) for k in changed}
    assert after[1] == before[1]


def counts(env: Env, *users: dict[str, Any]) -> list[Any]:
    out = []
    for u in users:
        uid = int(u["id"])
        out.append(env.router.database(shard_of(uid)).run_interaction(
            "c", Txn.fetchall,
            f"SELECT media_count, follows_count, followed_by_count FROM "
            f"{schema_name(shard_of(uid))}.users WHERE id = %s", (uid,)))
    return out
